//! `cargo xtask ci`: every check CI runs, in order, stopping at the first failure.
//!
//! All steps share one target directory and one set of flags (lints come from
//! `[workspace.lints]`, never from `RUSTFLAGS`), so the workspace is compiled
//! once for checking and once for testing; nothing is rebuilt with other flags.

use std::time::Instant;

use crate::cmd::{Error, cargo, exec, target_directory};
use crate::codegen;

/// The crates published to crates.io, in dependency order.
const PUBLISHED: &[&str] = &[
    "session-core",
    "session-wire",
    "session-server",
    "session-client",
];

struct Step {
    name: &'static str,
    run: fn() -> Result<(), Error>,
}

const STEPS: &[Step] = &[
    Step {
        name: "format",
        run: || {
            let mut cmd = cargo();
            cmd.args(["fmt", "--all", "--", "--check"]);
            exec(cmd)
        },
    },
    Step {
        name: "codegen",
        run: codegen::check,
    },
    Step {
        name: "clippy",
        run: || {
            let mut cmd = cargo();
            cmd.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "server without default features",
        run: || {
            // The library with the system allocator, as an embedder who
            // turns the `jemalloc` feature off builds it.
            let mut cmd = cargo();
            cmd.args([
                "check",
                "-p",
                "session-server",
                "--no-default-features",
                "--locked",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "docs",
        run: || {
            let mut cmd = cargo();
            cmd.env("RUSTDOCFLAGS", "-D warnings").args([
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--locked",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "build tests and benches",
        run: || {
            let mut cmd = cargo();
            cmd.args([
                "test",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--locked",
                "--no-run",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "release server",
        run: || {
            // The shutdown test runs the binary as it ships, not a debug build.
            let mut cmd = cargo();
            cmd.args([
                "build",
                "--release",
                "--locked",
                "-p",
                "session-server",
                "--bin",
                "session-server",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "tests",
        run: || {
            let server = target_directory()?
                .join("release")
                .join(format!("session-server{}", std::env::consts::EXE_SUFFIX));
            println!("tests that run the server binary use {}", server.display());
            let mut cmd = cargo();
            cmd.env("SESSION_SERVER_BIN", server).args([
                "test",
                "--workspace",
                "--all-features",
                "--locked",
            ]);
            exec(cmd)
        },
    },
    Step {
        name: "package",
        run: || {
            // Packaging the crates together lets cargo verify each against its
            // freshly packaged siblings (a local registry under target/package),
            // so a crate whose siblings are not on crates.io yet is still built
            // from exactly the files it would publish.
            println!(
                "packaging and verifying {} against their packaged siblings \
                 (cargo package, with verification)",
                PUBLISHED.join(", ")
            );
            let mut cmd = cargo();
            cmd.args(["package", "--locked", "--allow-dirty"]);
            for name in PUBLISHED {
                cmd.args(["-p", name]);
            }
            exec(cmd)
        },
    },
];

/// Runs every step; `--from NAME` skips the steps before NAME.
pub(crate) fn run(args: &[String]) -> Result<(), Error> {
    let from = match args {
        [] => None,
        [flag, name] if flag == "--from" => Some(name.as_str()),
        _ => return Err("usage: cargo xtask ci [--from STEP]".into()),
    };
    let start_index = match from {
        None => 0,
        Some(name) => STEPS
            .iter()
            .position(|step| step.name == name)
            .ok_or_else(|| {
                let names: Vec<_> = STEPS.iter().map(|step| step.name).collect();
                format!("no step `{name}`; steps: {}", names.join(", "))
            })?,
    };
    let started = Instant::now();
    let total = STEPS.len();
    for (index, step) in STEPS.iter().enumerate().skip(start_index) {
        println!("\n==> [{}/{total}] {}", index + 1, step.name);
        let step_started = Instant::now();
        (step.run)().map_err(|err| format!("step `{}` failed: {err}", step.name))?;
        println!(
            "==> {} passed in {:.1}s",
            step.name,
            step_started.elapsed().as_secs_f64()
        );
    }
    println!("\n==> ci passed in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
