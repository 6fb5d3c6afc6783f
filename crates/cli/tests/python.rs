//! Python functions, end to end: `squall deploy NAME app.py` builds the
//! examples in `examples/python` with componentize-py (the test puts it in a
//! venv of its own, once, under the target dir), deploys them on a real
//! node, and calls them over HTTP; their counter is the Rust example's too.
//! Also the deploy checks that refuse what is not a component.

mod common;

use common::{TestNode, http, json, squall, venv_with_componentize_py};
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python")
}

/// `squall deploy` of a Python function with the venv's tools; (success, stdout, stderr).
fn deploy_py(
    node: &TestNode,
    bin: &Path,
    cache: &Path,
    name: &str,
    path: &Path,
    extra: &[&str],
) -> (bool, String, String) {
    let out = squall()
        .args(["deploy", name])
        .arg(path)
        .args(extra)
        .args(["--node", &node.http])
        .env("SQUALL_COMPONENTIZE_PY", bin.join("componentize-py"))
        .env("SQUALL_PYTHON_BIN", bin.join("python"))
        .env("SQUALL_CACHE_DIR", cache)
        .output()
        .expect("squall runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn invoke(node: &TestNode, name: &str, input: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = http(node, "POST", &format!("/v1/functions/{name}/invoke"), input);
    (status, body)
}

#[test]
fn python_functions_deploy_run_and_share_one_runtime() {
    let Some(bin) = venv_with_componentize_py() else { return };
    let node = TestNode::start(&[]);
    let cache = tempfile::tempdir().unwrap();

    let (ok, out, err) = deploy_py(&node, &bin, cache.path(), "pyhello", &examples().join("hello/app.py"), &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(invoke(&node, "pyhello", b"Bob"), (200, b"Hello, Bob!".to_vec()));
    assert_eq!(invoke(&node, "pyhello", b""), (200, b"Hello, world!".to_vec()));

    // A second function (a directory with app.py) deploys on the same
    // runtime: the same component, found in the cache, compiled once.
    let compiles = |node: &TestNode| -> u64 {
        let (_, _, body) = http(node, "GET", "/metrics", b"");
        let text = String::from_utf8_lossy(&body).into_owned();
        let line = text.lines().find(|l| l.starts_with("squall_compiles_total")).expect("the metric");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let before = compiles(&node);
    let (ok, out, err) = deploy_py(&node, &bin, cache.path(), "pycounter", &examples().join("counter"), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(!err.contains("building the Python runtime"), "the runtime was built again: {err}");
    assert_eq!(compiles(&node), before, "the shared runtime was compiled again");
    let digest = |name: &str| json(&http(&node, "GET", &format!("/v1/functions/{name}"), b"").2)["digest"].clone();
    assert_eq!(digest("pyhello"), digest("pycounter"));

    // A component a function runs deploys again by its digest, without its bytes.
    let d = digest("pyhello").as_str().unwrap().to_string();
    let (status, _, body) = http(&node, "PUT", &format!("/v1/functions/again?digest={d}"), b"");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(digest("again"), digest("pyhello"));
    let (status, _, body) = http(&node, "PUT", &format!("/v1/functions/again?digest={}", "0".repeat(64)), b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("component_not_found")));

    // Its counter is the Rust counter's and Redis's.
    assert_eq!(invoke(&node, "pycounter", b"visits"), (200, b"1".to_vec()));
    assert_eq!(invoke(&node, "pycounter", b""), (200, b"2".to_vec()));
    assert_eq!(http(&node, "PUT", "/v1/functions/counter", squall_guests::COUNTER).0, 201);
    assert_eq!(invoke(&node, "counter", b"visits"), (200, b"3".to_vec()));
    assert_eq!(invoke(&node, "pycounter", b"visits"), (200, b"4".to_vec()));
    let mut redis = node.redis();
    assert_eq!(redis::cmd("GET").arg("visits").query::<String>(&mut redis).unwrap(), "4");

    // An exception is the function's error: nothing written, the traceback in its log.
    let (status, body) = invoke(&node, "pycounter", &[b'k'; 600]);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let error = &json(&body)["error"];
    assert_eq!(error["code"], "function_error");
    assert_eq!(error["message"], "ValueError: a key of 600 bytes is too long for this counter (512 at most)");
    let (_, _, logs) = http(&node, "GET", "/v1/functions/pycounter/logs", b"");
    let logs = String::from_utf8_lossy(&logs).into_owned();
    assert!(logs.contains("Traceback") && logs.contains("app.py"), "{logs}");
    // A store error raised through the SDK names its code.
    redis::cmd("SADD").arg("tags").arg("x").query::<i64>(&mut redis).unwrap();
    let (status, body) = invoke(&node, "pycounter", b"tags");
    assert_eq!((status, json(&body)["error"]["message"].as_str().unwrap()), (422, "StoreError: wrong_type"));

    // A module that does not import fails each call with why, from init.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("app.py"), "def handle(input):\n    return (\n").unwrap();
    let (ok, out, err) = deploy_py(&node, &bin, cache.path(), "broken", &broken.path().join("app.py"), &[]);
    assert!(ok, "{out}\n{err}");
    let (status, body) = invoke(&node, "broken", b"");
    let message = json(&body)["error"]["message"].as_str().unwrap_or_default().to_string();
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (422, Some("function_error")), "{message}");
    assert!(
        message.starts_with("init: ") && message.contains("SyntaxError") && message.contains("app.py"),
        "{message}"
    );

    // The memory limit must hold what the runtime starts with.
    let (ok, _, err) = deploy_py(&node, &bin, cache.path(), "small", &examples().join("hello"), &["--memory", "4MiB"]);
    assert!(!ok);
    assert!(err.contains("memory limit of 4 MiB is below the") && err.contains("start with"), "{err}");
    assert_eq!(http(&node, "GET", "/v1/functions/small", b"").0, 404);
}

#[test]
fn a_python_function_with_requirements_gets_a_component_of_its_own() {
    let Some(bin) = venv_with_componentize_py() else { return };
    let node = TestNode::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // six is pure Python, one file, on PyPI.
    std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
    std::fs::write(dir.path().join("helper.py"), "def shout(s: str) -> str:\n    return s.upper()\n").unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import six\nfrom helper import shout\n\ndef handle(input: bytes) -> str:\n    return shout(six.ensure_str(input))\n",
    )
    .unwrap();
    let (ok, out, err) = deploy_py(&node, &bin, cache.path(), "shout", dir.path(), &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(invoke(&node, "shout", b"quiet"), (200, b"QUIET".to_vec()));
}

#[test]
fn what_is_not_a_component_is_refused_with_how_to_build_it() {
    let node = TestNode::start(&[]);
    let source = std::fs::read(examples().join("counter/app.py")).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("py", &source, "looks like Python source"),
        ("js", b"export function handle(input) {\n  return input;\n}\n", "looks like JavaScript source"),
        ("core", b"\0asm\x01\0\0\0", "core WebAssembly module"),
        ("text", b"hello there\n", "this is text"),
    ];
    for (name, bytes, says) in cases {
        let (status, _, body) = http(&node, "PUT", &format!("/v1/functions/{name}"), bytes);
        let error = &json(&body)["error"];
        assert_eq!((status, error["code"].as_str().unwrap()), (400, "bad_component"), "{name}");
        assert!(error["message"].as_str().unwrap().contains(says), "{name}: {error}");
    }
    // A component that does not link leaves nothing compiled on disk, nor
    // does one whose init export has the wrong type.
    let (status, _, _) = http(&node, "PUT", "/v1/functions/other", squall_guests::WRONG_WORLD);
    assert_eq!(status, 400);
    let (status, _, body) = http(&node, "PUT", "/v1/functions/badinit", squall_guests::BAD_INIT);
    let error = &json(&body)["error"];
    assert_eq!((status, error["code"].as_str()), (400, Some("bad_component")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("init"), "{error}");
    let compiled = node.data_dir.join("compiled");
    let left: Vec<_> =
        std::fs::read_dir(&compiled).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A memory limit below what the component's memories start with.
    let (status, _, body) = http(&node, "PUT", "/v1/functions/hello?memory=1MiB", squall_guests::HELLO);
    let message = json(&body)["error"]["message"].as_str().unwrap().to_string();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("memory limit of 1 MiB is below the"), "{message}");
    assert_eq!(http(&node, "PUT", "/v1/functions/hello?memory=4MiB", squall_guests::HELLO).0, 201);
}
