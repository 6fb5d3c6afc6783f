//! Builds the example functions in `examples/` for wasm32-wasip2 with a
//! nested cargo (its own target dir, so it does not wait on the outer build's
//! lock) and copies the components into OUT_DIR for `include_bytes!`.
//!
//! The examples a node deploys (`hello`, `counter`, `inc`...) and the
//! benchmark helpers are always built; the
//! test guests (`kv-echo`, `hostile`, `wrong-world`, `bad-init`, `multi-write`, `tree`) only with the
//! `test-guests` feature, which only dev-dependencies turn on, so the release
//! binary does not carry them.
//!
//! rustup installs the targets `rust-toolchain.toml` lists only when it
//! installs the toolchain itself; on a machine whose stable toolchain was
//! already there, wasm32-wasip2 is missing. This script adds it then
//! (`rustup target add`), so a fresh clone builds with nothing done by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (cargo package, artifact name) of every guest, and whether it is a test guest.
const GUESTS: &[(&str, &str, bool)] = &[
    ("hello", "hello", false),
    ("counter", "counter", false),
    ("inc", "inc", false),
    ("square", "square", false),
    ("fanout", "fanout", false),
    ("ping", "ping", false),
    ("pong", "pong", false),
    ("blob", "blob", false),
    ("size", "size", false),
    ("wordcount", "wordcount", false),
    ("retwis", "retwis", false),
    ("tree", "tree", true),
    ("kv-echo", "kv_echo", true),
    ("hostile", "hostile", true),
    ("wrong-world", "wrong_world", true),
    ("bad-init", "bad_init", true),
    ("multi-write", "multi_write", true),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    let examples = root.join("examples");
    for dir in [examples.clone(), root.join("crates/sdk"), root.join("wit"), root.join("rust-toolchain.toml")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let with_tests = std::env::var_os("CARGO_FEATURE_TEST_GUESTS").is_some();
    let guests: Vec<_> = GUESTS.iter().filter(|(_, _, test)| with_tests || !test).collect();

    ensure_target(&examples);

    let target_dir = root.join("target").join("guests");
    let mut cmd = nested(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())));
    cmd.current_dir(&examples)
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(examples.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _, _) in &guests {
        cmd.args(["-p", package]);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the example functions: {e}"));
    if !status.success() {
        panic!("building the example functions for {TARGET} failed ({status}); see the errors above");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for (_, name, _) in &guests {
        let built = target_dir.join(TARGET).join("release").join(format!("{name}.wasm"));
        std::fs::copy(&built, out.join(format!("{name}.wasm"))).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    }
}

/// A command that runs with the toolchain `rust-toolchain.toml` names, not
/// with the outer build's settings (wrappers such as clippy-driver, flags
/// for the host target, the outer target dir).
fn nested(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "CARGO_MAKEFLAGS" || key == "CARGO_NET_OFFLINE";
        if (key.starts_with("CARGO_") && !keep)
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
            || key == "TARGET"
            || key == "HOST"
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Makes sure the toolchain that builds the guests has the wasm32-wasip2
/// standard library, adding it through rustup when it is missing.
fn ensure_target(examples: &Path) {
    let sysroot = nested(Command::new("rustc"))
        .current_dir(examples)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).join("lib").is_dir();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; adding it with `rustup target add {TARGET}`");
    let added = nested(Command::new("rustup")).current_dir(examples).args(["target", "add", TARGET]).status();
    match added {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`rustup target add {TARGET}` failed ({s}); the example functions need that target: \
             add it by hand, or check that rustup can reach its download server"
        ),
        Err(e) => panic!(
            "the {TARGET} target is not installed and rustup cannot be run ({e}); install the target \
             for the toolchain in rust-toolchain.toml (the example functions are built for it)"
        ),
    }
}
