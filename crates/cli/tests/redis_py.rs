//! redis-py, the Python client, against a real node: the script in
//! `tests/py/redis_py_check.py` uses strings, hashes, sets, keys, pipelines,
//! WATCH transactions from several threads, databases, pub/sub, keyspace
//! notifications and RESP3 as an application would (every assertion in it
//! also holds against Redis). The test makes its own venv with redis-py
//! from PyPI, once, under the target dir.

mod common;

use common::{TestNode, venv_with};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The redis-py release the script was checked with.
const REDIS_PY: &str = "redis==5.2.1";

/// A venv's python with redis-py in it, made if missing.
fn python_with_redis_py() -> Option<PathBuf> {
    let ready = |bin: &Path| {
        Command::new(bin.join("python")).args(["-c", "import redis"]).output().is_ok_and(|o| o.status.success())
    };
    Some(venv_with("redis-py-venv", REDIS_PY, ready)?.join("python"))
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
