//! The HTTP API and the `squall` CLI against a running node.

mod common;

use common::{TestNode, http, json, squall};
use redis::Commands;
use std::process::Output;

#[test]
fn keys_over_http() {
    let node = TestNode::start(&["--durability", "async"]);
    assert_eq!(http(&node, "PUT", "/v1/kv/greeting", b"hello").0, 204);
    let (status, head, body) = http(&node, "GET", "/v1/kv/greeting", b"");
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
    assert!(head.contains("x-squall-type: register"));
    // Binary values and keys with slashes and spaces.
    assert_eq!(http(&node, "PUT", "/v1/kv/dir/sub%20key", &[0, 159, 255]).0, 204);
    assert_eq!(http(&node, "GET", "/v1/kv/dir/sub%20key", b"").2, vec![0, 159, 255]);
    // Other types render as JSON; they were written over RESP.
    let mut c = node.redis();
    let _: () = c.sadd("tags", &["x", "y"]).unwrap();
    let _: () = c.incr("hits", 7).unwrap();
    let _: () = c.hset("user", "name", "ada").unwrap();
    let (_, head, body) = http(&node, "GET", "/v1/kv/tags", b"");
    assert!(head.contains("application/json"));
    let v = json(&body);
    assert_eq!(v["type"], "set");
    assert_eq!(v["members"].as_array().unwrap().len(), 2);
    assert_eq!(json(&http(&node, "GET", "/v1/kv/hits", b"").2)["value"], 7);
    assert_eq!(json(&http(&node, "GET", "/v1/kv/user", b"").2)["fields"]["name"], "ada");
    // Missing keys and bad requests: JSON errors with stable codes.
    let (status, _, body) = http(&node, "GET", "/v1/kv/missing", b"");
    assert_eq!(status, 404);
    assert_eq!(json(&body)["error"]["code"], "key_not_found");
    assert_eq!(http(&node, "DELETE", "/v1/kv/greeting", b"").0, 204);
    assert_eq!(http(&node, "DELETE", "/v1/kv/greeting", b"").0, 404);
    // Before the window log's reach: a clear error (tests/time_travel.rs reads the past).
    let (status, _, body) = http(&node, "GET", "/v1/kv/tags?at=2026-01-01T00:00:00Z", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("out_of_window")));
    let (status, _, body) = http(&node, "GET", "/v2/nothing", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _, body) = http(&node, "PATCH", "/v1/kv/x", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    // Lattice updates over HTTP.
    let post = |key: &str, body: &str| {
        let (status, _, reply) = http(&node, "POST", &format!("/v1/kv/{key}"), body.as_bytes());
        (status, json(&reply))
    };
    assert_eq!(post("h-hits", r#"{"incr": 5}"#), (200, serde_json::json!({"value": 5})));
    assert_eq!(post("h-hits", r#"{"incr": -2}"#), (200, serde_json::json!({"value": 3})));
    assert_eq!(post("h-crew", r#"{"sadd": ["ann", "bo", "ann"]}"#), (200, serde_json::json!({"added": 2})));
    assert_eq!(post("h-crew", r#"{"srem": ["bo", "cy"]}"#), (200, serde_json::json!({"removed": 1})));
    assert_eq!(post("h-pet", r#"{"hset": {"name": "rex", "legs": "4"}}"#), (200, serde_json::json!({"added": 2})));
    assert_eq!(post("h-pet", r#"{"hdel": ["legs"]}"#), (200, serde_json::json!({"removed": 1})));
    assert_eq!(json(&http(&node, "GET", "/v1/kv/h-crew", b"").2)["members"], serde_json::json!(["ann"]));
    assert_eq!(json(&http(&node, "GET", "/v1/kv/h-hits", b"").2)["value"], 3);
    let (status, reply) = post("h-crew", r#"{"incr": 1}"#);
    assert_eq!((status, reply["error"]["code"].as_str()), (409, Some("wrong_type")));
    for bad in ["", "{}", r#"{"incr": 1, "sadd": ["a"]}"#, r#"{"sadd": []}"#, r#"{"colour": 1}"#] {
        let (status, reply) = post("h-crew", bad);
        assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
    // Malformed query strings get JSON errors too.
    let (status, _, body) = http(&node, "GET", "/v1/kv?limit=-1", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, _, body) = http(&node, "PUT", "/v1/kv/x?ttl=abc", b"v");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, _, body) = http(&node, "PUT", "/v1/kv/x?ttl=99999999999999999", b"v");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_request")));
    let big = vec![b'x'; 9 * 1024 * 1024];
    let (status, _, body) = http(&node, "PUT", "/v1/kv/big", &big);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (413, Some("payload_too_large")));
    // Expiry over HTTP.
    assert_eq!(http(&node, "PUT", "/v1/kv/brief?ttl=1", b"b").0, 204);
    let ttl: i64 = c.ttl("brief").unwrap();
    assert_eq!(ttl, 1);
    // Scan by prefix.
    for i in 0..30 {
        let _: () = c.set(format!("page:{i}"), i).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let v = json(&http(&node, "GET", &format!("/v1/kv?prefix=page:&limit=7&cursor={cursor}"), b"").2);
        seen.extend(v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
        cursor = v["cursor"].as_str().unwrap().to_string();
        if v["done"].as_bool().unwrap() {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30);
}

#[test]
fn health_readiness_and_metrics() {
    let node = TestNode::start(&["--durability", "async"]);
    assert_eq!(json(&http(&node, "GET", "/healthz", b"").2)["status"], "ok");
    assert_eq!(json(&http(&node, "GET", "/readyz", b"").2)["status"], "ready");
    let mut c = node.redis();
    for i in 0..20 {
        let _: () = c.set(format!("k{i}"), "v").unwrap();
    }
    let _: Option<String> = c.get("k1").unwrap();
    let (status, head, body) = http(&node, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"));
    let text = String::from_utf8(body).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(value("squall_shard_keys{"), 20.0);
    assert!(value("squall_shard_writes_total{") >= 20.0);
    assert!(value("squall_shard_reads_total{") >= 1.0);
    assert!(value("squall_resp_commands_total") >= 21.0);
    assert!(value("squall_shard_bytes{") > 0.0);
    assert!(text.contains("squall_resp_command_duration_seconds_bucket{le=\"+Inf\"}"));
}

fn run(node: &TestNode, args: &[&str]) -> Output {
    squall().args(args).args(["--node", &node.http]).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn the_cli_reads_and_writes_keys() {
    let node = TestNode::start(&["--durability", "async"]);
    let o = run(&node, &["kv", "put", "app/name", "squall"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&run(&node, &["kv", "get", "app/name"])), "squall");
    let o = run(&node, &["kv", "get", "app/name", "--json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["value"], "squall");
    run(&node, &["kv", "put", "app/version", "1"]);
    run(&node, &["kv", "put", "other", "x"]);
    assert_eq!(stdout(&run(&node, &["kv", "scan", "app/"])), "app/name\napp/version");
    assert!(run(&node, &["kv", "del", "app/name"]).status.success());
    let o = run(&node, &["kv", "get", "app/name"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "error: no key 'app/name' (key_not_found)");
    // A node that is not there: one clear line.
    let o = squall().args(["kv", "get", "x", "--node", "http://127.0.0.1:1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: cannot reach the node at http://127.0.0.1:1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn bad_flags_and_taken_ports_give_one_clear_line() {
    let o = squall().args(["up", "--shards", "lots"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'lots' for '--shards"));
    let o = squall().args(["up", "--durability", "eventually"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("use sync or async"));
    let node = TestNode::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let o = squall()
        .args(["up", "--http", node.http.trim_start_matches("http://"), "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot listen on") && err.contains("another process is using it"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The same data dir twice.
    let o = squall()
        .args(["up", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--data-dir"])
        .arg(&node.data_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is in use by another process"));
    let help = squall().args(["up", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--data-dir", "--http", "--resp", "--shards", "--durability"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
