//! `cargo xtask codegen [--check]`: the Rust code generated from session-wire's
//! `.proto` files.
//!
//! The `.proto` files are compiled in-process by protox (no `protoc` anywhere)
//! and handed to tonic-prost-build; the output is formatted with the
//! toolchain's `rustfmt` (so `cargo fmt` leaves it alone) and gets a header
//! with a SHA-256 of the inputs, which session-wire's unit test recomputes to
//! catch a stale checkout without needing protox.
//!
//! Without `--check` the files under `session-wire/src/generated/` are
//! replaced; with it they are generated into a temporary directory and
//! compared, and the task fails naming every file that differs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::cmd::{Error, workspace_root};

/// The `.proto` files compiled, relative to `session-wire/proto/`.
const PROTOS: &[&str] = &[
    "session/admin/v1/admin.proto",
    "session/peer/v1/peer.proto",
    "session/v1/session.proto",
];

/// Where the `.proto` files live, relative to the workspace root.
const PROTO_DIR: &str = "session-wire/proto";

/// Where the generated files are checked in, relative to the workspace root.
const GENERATED_DIR: &str = "session-wire/src/generated";

/// Runs the task with its command-line arguments.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    match args {
        [] => write(),
        [flag] if flag == "--check" => check(),
        _ => Err("usage: cargo xtask codegen [--check]".into()),
    }
}

/// Regenerates the checked-in files.
fn write() -> Result<(), Error> {
    let root = workspace_root();
    let scratch = Scratch::new()?;
    let generated = generate(&root, scratch.path())?;
    let target = root.join(GENERATED_DIR);
    fs::create_dir_all(&target)
        .map_err(|err| format!("cannot create {}: {err}", target.display()))?;
    for stale in list_rs_files(&target)? {
        if !generated.iter().any(|(name, _)| *name == stale) {
            let path = target.join(&stale);
            fs::remove_file(&path)
                .map_err(|err| format!("cannot remove {}: {err}", path.display()))?;
            println!("removed {GENERATED_DIR}/{stale}");
        }
    }
    for (name, contents) in &generated {
        let path = target.join(name);
        let unchanged = fs::read_to_string(&path).is_ok_and(|old| old == *contents);
        if !unchanged {
            fs::write(&path, contents)
                .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
            println!("wrote {GENERATED_DIR}/{name}");
        }
    }
    println!("codegen: {} files up to date", generated.len());
    Ok(())
}

/// Fails when a checked-in file differs from what `write` would produce.
pub(crate) fn check() -> Result<(), Error> {
    let root = workspace_root();
    let scratch = Scratch::new()?;
    let generated = generate(&root, scratch.path())?;
    let target = root.join(GENERATED_DIR);
    let mut problems = Vec::new();
    for (name, contents) in &generated {
        let path = target.join(name);
        match fs::read_to_string(&path) {
            Ok(old) if old == *contents => {}
            Ok(_) => problems.push(format!("{GENERATED_DIR}/{name} is stale")),
            Err(err) => problems.push(format!("{GENERATED_DIR}/{name} is missing ({err})")),
        }
    }
    for name in list_rs_files(&target)? {
        if !generated.iter().any(|(generated, _)| *generated == name) {
            problems.push(format!(
                "{GENERATED_DIR}/{name} is not generated from any .proto file"
            ));
        }
    }
    if problems.is_empty() {
        println!("codegen: {} generated files up to date", generated.len());
        Ok(())
    } else {
        Err(format!(
            "{}; run `cargo xtask codegen` and commit the result",
            problems.join("; ")
        )
        .into())
    }
}

/// Generates every file into `out_dir` and returns (file name, final contents),
/// sorted by name.
fn generate(root: &Path, out_dir: &Path) -> Result<Vec<(String, String)>, Error> {
    let proto_dir = root.join(PROTO_DIR);
    let files: Vec<PathBuf> = PROTOS.iter().map(|proto| proto_dir.join(proto)).collect();
    let descriptors = protox::compile(&files, [&proto_dir])
        .map_err(|err| format!("cannot compile the .proto files: {err}"))?;
    tonic_prost_build::configure()
        .out_dir(out_dir)
        // Every `bytes` field (node data, passwords) becomes `bytes::Bytes`, so
        // decoding from a frame's `Bytes` slices it instead of copying.
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)
        .map_err(|err| format!("code generation failed: {err}"))?;

    let digest = proto_digest(&proto_dir)?;
    let mut generated = Vec::new();
    for name in list_rs_files(out_dir)? {
        let path = out_dir.join(&name);
        let raw = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        let formatted = rustfmt(root, &raw).map_err(|err| format!("{name}: {err}"))?;
        let contents = format!(
            "// @generated by `cargo xtask codegen` from {PROTO_DIR}; do not edit.\n\
             // proto-sha256: {digest}\n{formatted}"
        );
        generated.push((name, contents));
    }
    if generated.is_empty() {
        return Err("code generation produced no files".into());
    }
    Ok(generated)
}

/// SHA-256 over every `.proto` file under `dir`, sorted by relative path
/// (with `/` separators): for each file, its relative path, a NUL byte, its
/// length as 8 big-endian bytes, then its bytes. session-wire's
/// `generated_code_is_fresh` test computes the same digest.
fn proto_digest(dir: &Path) -> Result<String, Error> {
    let mut files = Vec::new();
    collect_protos(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in files {
        let path = dir.join(&relative);
        let bytes =
            fs::read(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

fn collect_protos(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let entries =
        fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|err| format!("cannot list {}: {err}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_protos(base, &path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            let relative = path
                .strip_prefix(base)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            let parts: Vec<_> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

/// The names of the `.rs` files directly in `dir`, sorted.
fn list_rs_files(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rs") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Formats `source` with the toolchain's rustfmt as `cargo fmt` would, so the
/// checked-in files survive `cargo fmt --all` unchanged.
fn rustfmt(root: &Path, source: &str) -> Result<String, Error> {
    let rustfmt = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(rustfmt)
        .args(["--edition", "2024", "--emit", "stdout"])
        .current_dir(root.join(GENERATED_DIR).parent().unwrap_or(root))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot start rustfmt: {err}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or("rustfmt was started without a stdin pipe")?;
    let input = source.to_owned();
    // Written from a thread so a large file cannot deadlock against rustfmt's
    // full stdout pipe.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|err| format!("rustfmt failed: {err}"))?;
    writer
        .join()
        .map_err(|_| "the thread feeding rustfmt panicked")?
        .map_err(|err| format!("cannot feed rustfmt: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    String::from_utf8(output.stdout).map_err(|err| format!("rustfmt output: {err}").into())
}

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("xtask-codegen-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir harms nothing.
        let _ = fs::remove_dir_all(&self.0);
    }
}
