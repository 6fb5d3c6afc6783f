//! The Python client (`clients/python`), tested with pytest against a real
//! node: its own tests in `clients/python/tests` start `squall up
//! --examples` with the squall built here, map plain Python functions over
//! 10,000 inputs, submit calls, and round-trip the store's types. The test
//! makes a venv with the client installed (and pytest, tqdm from PyPI),
//! once, under the target dir; componentize-py (for the Python runtime the
//! client ships functions to) comes from the Python functions' venv.

mod common;

use common::{venv_with, venv_with_componentize_py};
use std::path::Path;
use std::process::Command;

#[test]
fn the_python_client_passes_its_tests_against_a_real_node() {
    let Some(componentize) = venv_with_componentize_py() else { return };
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python");
    let ready = |bin: &Path| {
        Command::new(bin.join("python")).args(["-c", "import pytest"]).output().is_ok_and(|o| o.status.success())
    };
    let Some(bin) = venv_with("squall-client-venv", "pytest==8.3.4", ready) else { return };
    // The client as it is in the tree now (with its dependencies from PyPI).
    for args in [&["--force-reinstall", "--no-deps"][..], &[][..]] {
        let pip = Command::new(bin.join("pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .args(args)
            .arg(&client)
            .output()
            .expect("pip runs");
        assert!(pip.status.success(), "pip install {}: {}", client.display(), String::from_utf8_lossy(&pip.stderr));
    }
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(bin.join("python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(client.join("tests"))
        .env("SQUALL_BIN", env!("CARGO_BIN_EXE_squall"))
        .env("SQUALL_COMPONENTIZE_PY", componentize.join("componentize-py"))
        .env("SQUALL_CACHE_DIR", cache.path())
        .output()
        .expect("pytest runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" passed"), "{stdout}");
}
