//! Running child commands with a printed header, from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Errors of an xtask step, printed as one line.
pub(crate) type Error = Box<dyn std::error::Error>;

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("invariant: xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo` as chosen by the `cargo` that started us, so toolchain overrides hold.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs `cmd`, failing with its rendering when it exits non-zero.
pub(crate) fn exec(mut cmd: Command) -> Result<(), Error> {
    let shown = render(&cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed with {status}").into())
    }
}

fn render(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    parts.push(program);
    parts.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Where cargo puts build output (honours CARGO_TARGET_DIR and config).
pub(crate) fn target_directory() -> Result<PathBuf, Error> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err("cargo metadata failed".into());
    }
    let json = String::from_utf8(output.stdout)?;
    let key = "\"target_directory\":\"";
    let start = json
        .find(key)
        .ok_or("cargo metadata printed no target_directory")?
        + key.len();
    let end = json[start..]
        .find('"')
        .ok_or("cargo metadata: unterminated target_directory")?;
    Ok(PathBuf::from(
        json[start..start + end].replace("\\\\", "\\"),
    ))
}
