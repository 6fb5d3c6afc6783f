//! redis-py, the Python client, against a real node: the script in
//! `tests/py/redis_py_check.py` uses strings, hashes, sets, keys, pipelines,
//! WATCH transactions from several threads, databases, pub/sub, keyspace
//! notifications and RESP3 as an application would (every assertion in it
//! also holds against Redis). The test makes its own venv with redis-py
//! from PyPI, once, under the target dir.

mod common;

use common::{TestNode, tool};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The redis-py release the script was checked with.
const REDIS_PY: &str = "redis==5.2.1";

/// A venv's python with redis-py in it, made if missing.
fn python_with_redis_py() -> Option<PathBuf> {
    let python3 = tool("python3")?;
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("redis-py-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| Command::new(p).args(["-c", "import redis"]).output().is_ok_and(|o| o.status.success());
    if ready(&python) {
        return Some(python);
    }
    let made = Command::new(&python3).args(["-m", "venv"]).arg(&venv).output().expect("python3 runs");
    if !made.status.success() {
        let why = String::from_utf8_lossy(&made.stderr).into_owned();
        assert!(std::env::var_os("CI").is_none(), "python3 -m venv failed (.ci/run installs python3-venv): {why}");
        eprintln!("skipping: python3 -m venv failed: {why}");
        return None;
    }
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", REDIS_PY])
        .output()
        .expect("pip runs");
    assert!(pip.status.success(), "pip install {REDIS_PY}: {}", String::from_utf8_lossy(&pip.stderr));
    assert!(ready(&python), "redis-py is not importable after pip install");
    Some(python)
}

#[test]
fn redis_py_works_as_it_does_against_redis() {
    let Some(python) = python_with_redis_py() else { return };
    let node = TestNode::start(&["--durability", "async"]);
    let port = node.resp_addr().rsplit(':').next().unwrap().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/redis_py_check.py");
    let out = Command::new(python).arg(script).arg(port).output().expect("the script runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.trim_end().ends_with("ok"), "stdout:\n{stdout}\nstderr:\n{stderr}");
}
