//! Builds the example functions in `examples/` for wasm32-wasip2 with a
//! nested cargo (its own target dir, so it does not wait on the outer build's
//! lock) and copies the components into OUT_DIR for `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &["hello", "counter", "kv_echo", "hostile", "wrong_world"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().parent().unwrap().to_path_buf();
    let examples = root.join("examples");
    for dir in [examples.clone(), root.join("crates/sdk"), root.join("wit")] {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&examples)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(examples.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (wrappers such as clippy-driver, flags for
    // the host target, the outer target dir) must not leak into this one.
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
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the example functions: {e}"));
    if !status.success() {
        panic!(
            "building the example functions failed ({status}); is the wasm32-wasip2 target installed? \
             (`rustup target add wasm32-wasip2`; rust-toolchain.toml asks for it)"
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for name in GUESTS {
        let built = target_dir.join("wasm32-wasip2/release").join(format!("{name}.wasm"));
        std::fs::copy(&built, out.join(format!("{name}.wasm"))).unwrap_or_else(|e| panic!("{}: {e}", built.display()));
    }
}
