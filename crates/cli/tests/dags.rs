//! DAGs of functions end to end: registered over HTTP and with the CLI,
//! invoked on a real node, kept across a restart.

mod common;

use common::{TestNode, http, json, squall};
use redis::Commands;

fn deploy(node: &TestNode, name: &str, wasm: &[u8]) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/functions/{name}"), wasm);
    assert!(status == 200 || status == 201, "deploy {name}: {status} {}", String::from_utf8_lossy(&body));
}

fn deploy_all(node: &TestNode) {
    for (name, wasm) in [
        ("inc", squall_guests::INC),
        ("square", squall_guests::SQUARE),
        ("tree", squall_guests::TREE),
        ("echo", squall_guests::KV_ECHO),
    ] {
        deploy(node, name, wasm);
    }
}

fn put_dag(node: &TestNode, name: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/dags/{name}"), body.as_bytes());
    (status, json(&body))
}

fn invoke(node: &TestNode, name: &str, input: &str) -> (u16, String) {
    let (status, _, body) = http(node, "POST", &format!("/v1/dags/{name}/invoke"), input.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_chain_passes_outputs_along_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[]);
    deploy_all(&node);

    // With the CLI: `squall dag create NAME --chain a,b`.
    let out =
        squall().args(["dag", "create", "incsq", "--chain", "inc,square", "--node", &node.http]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("square = square(inc)"));
    let out = squall().args(["dag", "invoke", "incsq", "3", "--node", &node.http]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "16");

    // A function that comes twice in a chain.
    let (status, d) = put_dag(&node, "twice", r#"{"chain": ["inc", "inc", "square"]}"#);
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["order"], serde_json::json!(["inc", "inc.2", "square"]));
    assert_eq!(invoke(&node, "twice", "1"), (200, "9".into()));

    let (_, _, body) = http(&node, "GET", "/v1/dags", b"");
    let list = json(&body);
    let names: Vec<&str> = list["dags"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["incsq", "twice"]);

    assert!(node.stop().success());
    let node = TestNode::start_in(dir.path(), &[]);
    assert_eq!(invoke(&node, "incsq", "3"), (200, "16".into()), "the DAG is still there after a restart");
    let out = squall().args(["dag", "ls", "--node", &node.http]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("incsq\t2 steps\tsink square"));

    let (status, _, _) = http(&node, "DELETE", "/v1/dags/twice", b"");
    assert_eq!(status, 200);
    let (status, body) = invoke(&node, "twice", "1");
    assert_eq!((status, json(body.as_bytes())["error"]["code"].as_str()), (404, Some("dag_not_found")));
}

#[test]
fn a_join_gets_its_predecessors_outputs_and_the_whole_dag_commits_at_once() {
    let node = TestNode::start(&[]);
    deploy_all(&node);
    let (status, d) = put_dag(
        &node,
        "diamond",
        r#"{"steps": {"plus": "inc", "times": "square", "both": "echo"},
            "edges": [["plus", "both"], ["times", "both"]]}"#,
    );
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["sink"], "both");
    let (status, out) = invoke(&node, "diamond", "3");
    assert_eq!(status, 200, "{out}");
    assert_eq!(json(out.as_bytes()), serde_json::json!({"plus": "4", "times": "9"}));
    // The sink's write (`echo:<its invocation id>`) is in the store.
    let keys: Vec<String> = node.redis().keys("echo:*").unwrap();
    assert_eq!(keys.len(), 1);

    // A step that writes, then a step that fails: nothing of the DAG is written.
    let (status, _) = put_dag(&node, "fails", r#"{"chain": ["tree", "inc"]}"#);
    assert_eq!(status, 201);
    let (status, out) = invoke(&node, "fails", "put dagkey 1");
    assert_eq!(status, 422, "{out}");
    let e = json(out.as_bytes());
    assert_eq!(e["error"]["code"], "function_error");
    assert!(e["error"]["message"].as_str().unwrap().contains("step \"inc\" (function \"inc\") failed"), "{e}");
    assert_eq!(node.redis().get::<_, Option<String>>("dagkey").unwrap(), None, "a failed DAG wrote something");
}

#[test]
fn registration_refuses_bad_dags_saying_why() {
    let node = TestNode::start(&[]);
    deploy_all(&node);
    let cases = [
        (r#"{"steps": ["inc", "square"], "edges": [["inc", "square"], ["square", "inc"]]}"#, 400, "bad_dag", "cycle"),
        (r#"{"chain": ["inc", "nosuch"]}"#, 404, "function_not_found", "nosuch"),
        (
            r#"{"steps": ["inc", "square", "tree"], "edges": [["inc", "square"], ["inc", "tree"]]}"#,
            400,
            "bad_dag",
            "exactly one sink",
        ),
        (r#"{"steps": ["inc", "square", "tree"], "edges": [["inc", "square"]]}"#, 400, "bad_dag", "not connected"),
        (r#"{"chain": []}"#, 400, "bad_dag", "at least one step"),
        (r#"{"steps": ["inc"], "edges": [["inc", "zz"]]}"#, 400, "bad_dag", "no step \"zz\""),
        (r#"not json"#, 400, "bad_dag", "not a DAG description"),
        (
            r#"{"steps": ["inc", "square"], "edges": [["inc", "square"], ["inc", "square"]]}"#,
            400,
            "bad_dag",
            "appears twice",
        ),
    ];
    for (body, status, code, says) in cases {
        let (got, e) = put_dag(&node, "bad", body);
        assert_eq!((got, e["error"]["code"].as_str().unwrap()), (status, code), "{body}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let (status, _, _) = http(&node, "GET", "/v1/dags/bad", b"");
    assert_eq!(status, 404, "no bad DAG was kept");
}
