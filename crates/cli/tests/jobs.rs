//! Map jobs end to end: a real node runs a function over many inputs,
//! retries what fails, keeps each element's result with its effects, and
//! carries on after `kill -9`.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, http, json, squall};
use redis::Commands;

fn deploy(node: &TestNode, name: &str, wasm: &[u8]) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/functions/{name}"), wasm);
    assert!(status == 200 || status == 201, "deploy {name}: {status} {}", String::from_utf8_lossy(&body));
}

fn start_job(node: &TestNode, body: &serde_json::Value) -> String {
    let (status, _, resp) = http(node, "POST", "/v1/jobs", body.to_string().as_bytes());
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&resp));
    json(&resp)["id"].as_str().unwrap().to_string()
}

fn job(node: &TestNode, id: &str) -> serde_json::Value {
    let (status, _, body) = http(node, "GET", &format!("/v1/jobs/{id}"), b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)
}

fn wait_done(node: &TestNode, id: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let j = job(node, id);
        if j["state"] != "running" {
            return j;
        }
        assert!(Instant::now() < until, "job {id} still running: {j}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every result of job `id`, in input order, paged.
fn results(node: &TestNode, id: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(|| "limit=3000".to_string(), |a| format!("after={a}&limit=3000"));
        let (status, _, body) = http(node, "GET", &format!("/v1/jobs/{id}/results?{q}"), b"");
        assert_eq!(status, 200);
        let page = json(&body);
        all.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => return all,
        }
    }
}

#[test]
fn a_ten_thousand_element_job_retries_what_fails_once_and_reports_what_always_fails() {
    let node = TestNode::start(&[]);
    deploy(&node, "tree", squall_guests::TREE);
    let inputs: Vec<String> = (0..10_000)
        .map(|i| match i {
            17 => "failfirst;incr jobsum 1;say 17".to_string(),
            42 => "fail always".to_string(),
            i => format!("incr jobsum 1;say {i}"),
        })
        .collect();
    let id = start_job(&node, &serde_json::json!({ "function": "tree", "inputs": inputs }));
    let j = wait_done(&node, &id);
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["counts"], serde_json::json!({"done": 9999, "failed": 1, "pending": 0, "running": 0}));
    // The element that failed once counted once; the one that always failed, never.
    assert_eq!(node.redis().get::<_, i64>("jobsum").unwrap(), 9999);

    let all = results(&node, &id);
    assert_eq!(all.len(), 10_000);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        match i {
            17 => assert_eq!((&r["state"], &r["output"], &r["attempts"]), (&"done".into(), &"17".into(), &2.into())),
            42 => {
                assert_eq!((&r["state"], &r["attempts"]), (&"failed".into(), &3.into()), "{r}");
                assert_eq!(r["error"], serde_json::json!({"code": "function_error", "message": "always"}));
            }
            i => assert_eq!((&r["state"], r["output"].as_str()), (&"done".into(), Some(i.to_string().as_str())), "{r}"),
        }
    }
    let (_, _, body) = http(&node, "GET", "/v1/jobs", b"");
    assert_eq!(json(&body)["jobs"][0]["id"], id.as_str());
}

#[test]
fn squall_map_writes_outputs_in_order_and_its_exit_code_says_if_all_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&[]);
    deploy(&node, "inc", squall_guests::INC);
    let inputs = dir.path().join("in.jsonl");
    std::fs::write(&inputs, (0..500).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
    let out = dir.path().join("out.jsonl");
    let run = squall()
        .args(["map", "inc", "--inputs"])
        .arg(&inputs)
        .arg("--out")
        .arg(&out)
        .args(["--concurrency", "8", "--node", &node.http])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(String::from).collect();
    let want: Vec<String> = (1..=500).map(|i| i.to_string()).collect();
    assert_eq!(lines, want);
    assert!(String::from_utf8_lossy(&run.stderr).contains("500/500 finished"), "plain progress lines off a terminal");

    // An input inc cannot read: the job fails, the summary names it, the exit code says so.
    std::fs::write(&inputs, "1\n\"two\"\n3\n").unwrap();
    let run = squall()
        .args(["map", "inc", "--retries", "0", "--inputs"])
        .arg(&inputs)
        .args(["--node", &node.http])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("element 1 (input \"two\") after 1 attempts: function_error"), "{stderr}");
    assert!(stderr.contains("1 of 3 elements failed"), "{stderr}");

    // Not JSON: refused before anything runs.
    std::fs::write(&inputs, "1\nnot json\n").unwrap();
    let run = squall().args(["map", "inc", "--inputs"]).arg(&inputs).args(["--node", &node.http]).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("line 2"), "{}", String::from_utf8_lossy(&run.stderr));

    let ls = squall().args(["jobs", "ls", "--node", &node.http]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert_eq!(ls.lines().count(), 2, "{ls}");
    assert!(ls.lines().next().unwrap().contains("\tinc\tdone\t500/500 done"), "{ls}");
}

#[test]
fn a_job_cut_by_kill_9_finishes_after_a_restart_running_every_element_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[]);
    deploy(&node, "counter", squall_guests::COUNTER);
    let total = 10_000;
    let inputs: Vec<String> = (0..total).map(|i| format!("e{i}")).collect();
    let id = start_job(&node, &serde_json::json!({ "function": "counter", "inputs": inputs, "concurrency": 4 }));
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(&node, &id);
        let done = j["counts"]["done"].as_u64().unwrap();
        assert!(done < total, "the job ended before it could be cut: make it longer");
        if done >= 500 {
            break;
        }
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10));
    }
    node.kill9();

    let node = TestNode::start_in(dir.path(), &[]);
    let j = wait_done(&node, &id);
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["counts"]["done"], total);
    // Each element's effect is there exactly once (the key is the input's JSON text).
    let mut con = node.redis();
    let mut wrong = Vec::new();
    for i in 0..total {
        let n: Option<i64> = con.get(format!("\"e{i}\"")).unwrap();
        if n != Some(1) {
            wrong.push((i, n));
        }
    }
    assert!(wrong.is_empty(), "elements not run exactly once: {:?}", &wrong[..wrong.len().min(20)]);
}

#[test]
fn bad_job_requests_get_clear_errors_and_cancel_stops_a_job() {
    let node = TestNode::start(&[]);
    deploy(&node, "tree", squall_guests::TREE);
    for (body, status, code) in [
        ("not json", 400, "bad_request"),
        (r#"{"function": "tree"}"#, 400, "bad_request"),
        (r#"{"function": "nosuch", "inputs": [1]}"#, 404, "function_not_found"),
        (r#"{"function": "tree", "inputs": [1], "retries": 99}"#, 400, "bad_request"),
        (r#"{"function": "tree", "inputs": [1], "concurrency": 0}"#, 400, "bad_request"),
        (r#"{"function": "tree", "inputs": [1], "prefix": "p"}"#, 400, "bad_request"),
    ] {
        let (got, _, resp) = http(&node, "POST", "/v1/jobs", body.as_bytes());
        assert_eq!((got, json(&resp)["error"]["code"].as_str().unwrap()), (status, code), "{body}");
    }
    let (status, _, resp) = http(&node, "GET", "/v1/jobs/job-nosuch", b"");
    assert_eq!((status, json(&resp)["error"]["code"].as_str()), (404, Some("job_not_found")));

    // Inputs from a prefix of keys, and a cancel while it runs.
    let mut con = node.redis();
    for i in 0..50 {
        let _: () = con.set(format!("work:{i}"), "spin 100").unwrap();
    }
    let id = start_job(&node, &serde_json::json!({ "function": "tree", "prefix": "work:", "concurrency": 2 }));
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, resp) = http(&node, "DELETE", &format!("/v1/jobs/{id}"), b"");
    assert_eq!(status, 200);
    let j = json(&resp);
    assert_eq!(j["state"], "cancelled", "{j}");
    let done = j["counts"]["done"].as_u64().unwrap();
    assert!(done > 0 && done < 50, "{j}");
    assert_eq!(j["counts"]["running"], 0);
}

#[test]
fn out_prefix_puts_each_output_under_its_own_key() {
    let node = TestNode::start(&[]);
    deploy(&node, "inc", squall_guests::INC);
    let id = start_job(
        &node,
        &serde_json::json!({ "function": "inc", "inputs": (0..100).collect::<Vec<_>>(), "out_prefix": "inc:" }),
    );
    let j = wait_done(&node, &id);
    assert_eq!((&j["state"], &j["out_prefix"]), (&"done".into(), &"inc:".into()), "{j}");
    let mut con = node.redis();
    for i in 0..100 {
        let v: String = con.get(format!("inc:{i}")).unwrap();
        assert_eq!(v, (i + 1).to_string());
    }
    let all = results(&node, &id);
    assert!(all.iter().all(|r| r["state"] == "done" && r.get("output").is_none()), "{:?}", &all[..2]);

    // An ended job is removed by DELETE (`squall jobs rm`), results and all; its outputs stay.
    let rm = squall().args(["jobs", "rm", &id, "--node", &node.http]).output().unwrap();
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/results")] {
        let (status, _, body) = http(&node, "GET", &path, b"");
        assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("job_not_found")), "{path}");
    }
    assert_eq!(con.get::<_, String>("inc:99").unwrap(), "100");
}
