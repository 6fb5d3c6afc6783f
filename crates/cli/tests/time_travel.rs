//! Reading the past end to end: Redis clients and invocations write
//! concurrently to a real node while the test keeps a model of what each
//! acknowledged write made of its keys; then reads (`GET /v1/kv/KEY?at=`)
//! and scans (`GET /v1/kv?prefix=&at=`) at the times the test noted must
//! equal the model exactly (an atomic unit is never half there), live,
//! after a restart and after `kill -9`.

mod common;

use common::{TestNode, header, http, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq)]
enum V {
    Reg(String),
    Count(i64),
    Set(BTreeSet<String>),
    Map(BTreeMap<String, String>),
}

type Model = BTreeMap<String, V>;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A worker's keys: two registers, a counter, a set, and four keys one
/// invocation of `multi-write` writes together.
fn keys(w: usize) -> Vec<String> {
    ["r0", "r1", "c", "s", "i0", "i1", "i2", "i3"].iter().map(|k| format!("w{w}:{k}")).collect()
}

fn count(model: &Model, key: &str) -> i64 {
    match model.get(key) {
        Some(V::Count(n)) => *n,
        _ => 0,
    }
}

fn add_member(model: &mut Model, key: &str, member: &str) {
    match model.entry(key.to_string()).or_insert_with(|| V::Set(BTreeSet::new())) {
        V::Set(s) => {
            s.insert(member.to_string());
        }
        other => panic!("{key} is {other:?}"),
    }
}

/// Runs a worker's writes, noting after some of them the time and the model
/// (each noted time is after one write was acknowledged and before the next
/// was sent).
fn worker(node: &TestNode, w: usize, steps: usize) -> Vec<(u64, Model)> {
    let mut con = node.redis();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((w as u64 + 1) * 0x9e37_79b9));
    let mut model = Model::new();
    let mut noted = Vec::new();
    let k = |name: &str| format!("w{w}:{name}");
    for step in 0..steps {
        match rng.below(8) {
            0 => {
                let (key, v) = (k(["r0", "r1"][rng.below(2) as usize]), format!("v{step}"));
                let _: () = redis::cmd("SET").arg(&key).arg(&v).query(&mut con).unwrap();
                model.insert(key, V::Reg(v));
            }
            1 => {
                let key = k(["r0", "r1", "c", "s"][rng.below(4) as usize]);
                let _: i64 = redis::cmd("DEL").arg(&key).query(&mut con).unwrap();
                model.remove(&key);
            }
            2 => {
                let d = rng.below(9) as i64 - 4;
                let n: i64 = redis::cmd("INCRBY").arg(k("c")).arg(d).query(&mut con).unwrap();
                assert_eq!(n, count(&model, &k("c")) + d);
                model.insert(k("c"), V::Count(n));
            }
            3 => {
                let m = format!("m{}", rng.below(5));
                let _: i64 = redis::cmd("SADD").arg(k("s")).arg(&m).query(&mut con).unwrap();
                add_member(&mut model, &k("s"), &m);
            }
            4 => {
                let m = format!("m{}", rng.below(5));
                let _: i64 = redis::cmd("SREM").arg(k("s")).arg(&m).query(&mut con).unwrap();
                if let Some(V::Set(s)) = model.get_mut(&k("s")) {
                    s.remove(&m);
                    if s.is_empty() {
                        model.remove(&k("s"));
                    }
                }
            }
            5 => {
                // One atomic unit over keys on different shards.
                let (v, m) = (format!("x{step}"), format!("m{}", rng.below(5)));
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(k("r0"))
                    .arg(&v)
                    .ignore()
                    .cmd("INCRBY")
                    .arg(k("c"))
                    .arg(10)
                    .ignore()
                    .cmd("SADD")
                    .arg(k("s"))
                    .arg(&m)
                    .ignore()
                    .query(&mut con)
                    .unwrap();
                model.insert(k("r0"), V::Reg(v));
                let n = count(&model, &k("c")) + 10;
                model.insert(k("c"), V::Count(n));
                add_member(&mut model, &k("s"), &m);
            }
            6 => {
                let (a, b) = (format!("a{step}"), format!("b{step}"));
                let _: () = redis::cmd("MSET").arg(k("r0")).arg(&a).arg(k("r1")).arg(&b).query(&mut con).unwrap();
                model.insert(k("r0"), V::Reg(a));
                model.insert(k("r1"), V::Reg(b));
            }
            _ => {
                let input = format!("{} {} {} {}", k("i0"), k("i1"), k("i2"), k("i3"));
                let (status, _, body) = http(node, "POST", "/v1/functions/multi-write/invoke", input.as_bytes());
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                model.insert(k("i0"), V::Reg("written".into()));
                let n = count(&model, &k("i1")) + 1;
                model.insert(k("i1"), V::Count(n));
                add_member(&mut model, &k("i2"), "member");
                model.insert(k("i3"), V::Map(BTreeMap::from([("field".to_string(), "value".to_string())])));
            }
        }
        if step % 3 == 0 {
            let t = now_ms();
            noted.push((t, model.clone()));
            while now_ms() <= t + 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    noted
}

/// `key` as `GET /v1/kv/KEY?at=` renders it.
fn read_at(node: &TestNode, key: &str, at: &str) -> Option<V> {
    let (status, head, body) = http(node, "GET", &format!("/v1/kv/{key}?at={at}"), b"");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{key} at {at}: {}", String::from_utf8_lossy(&body));
    let v = json_or_text(&head, &body);
    Some(v)
}

fn json_or_text(head: &str, body: &[u8]) -> V {
    match header(head, "x-squall-type") {
        Some("register") => V::Reg(String::from_utf8(body.to_vec()).unwrap()),
        Some("counter") => V::Count(json(body)["value"].as_i64().unwrap()),
        Some("set") => {
            V::Set(json(body)["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().into()).collect())
        }
        Some("map") => V::Map(
            json(body)["fields"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(f, v)| (f.clone(), v.as_str().unwrap().into()))
                .collect(),
        ),
        other => panic!("type {other:?}"),
    }
}

fn scan_at(node: &TestNode, prefix: &str, at: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let (status, _, body) =
            http(node, "GET", &format!("/v1/kv?prefix={prefix}&at={at}&limit=3&cursor={cursor}"), b"");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let page = json(&body);
        keys.extend(page["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()));
        if page["done"].as_bool().unwrap() {
            return keys;
        }
        cursor = page["cursor"].as_str().unwrap().to_string();
    }
}

fn check(node: &TestNode, noted: &[Vec<(u64, Model)>], when: &str) {
    for (w, history) in noted.iter().enumerate() {
        for (t, model) in history {
            // A stamp: every write within millisecond `t` is at or before it.
            let at = format!("{t}.65535");
            for key in keys(w) {
                assert_eq!(read_at(node, &key, &at), model.get(&key).cloned(), "{when}: {key} at {t}");
            }
            let present: BTreeSet<String> = model.keys().cloned().collect();
            assert_eq!(scan_at(node, &format!("w{w}:"), &at), present, "{when}: scan at {t}");
        }
    }
}

#[test]
fn reads_of_the_past_match_the_model_live_after_a_restart_and_after_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--shards", "2", "--retention", "5m"];
    let mut node = TestNode::start_in(&dir, &args);
    let (status, _, body) = http(&node, "PUT", "/v1/functions/multi-write", squall_guests::MULTI_WRITE);
    assert!(status == 200 || status == 201, "{}", String::from_utf8_lossy(&body));
    let before_any = now_ms();
    std::thread::sleep(Duration::from_millis(5));
    let noted: Vec<Vec<(u64, Model)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|w| {
                s.spawn({
                    let node = &node;
                    move || worker(node, w, 90)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    check(&node, &noted, "live");
    // Before the first write, nothing was there.
    assert_eq!(read_at(&node, "w0:r0", &format!("{before_any}.0")), None);
    assert!(scan_at(&node, "w", &format!("{before_any}.0")).is_empty());

    assert!(node.stop().success());
    let mut node = TestNode::start_in(&dir, &args);
    check(&node, &noted, "after a restart");

    node.kill9();
    let node = TestNode::start_in(&dir, &args);
    check(&node, &noted, "after kill -9");

    // Outside the window: a clear error naming the oldest time it reaches.
    let (status, _, body) = http(&node, "GET", "/v1/kv/w0:r0?at=-10m", b"");
    let e = json(&body);
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("out_of_window")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("reaches back to 20"), "{e}");
    // Times people write: RFC 3339 and relative, and a time that is not one.
    let (status, _, _) = http(&node, "GET", "/v1/kv/w0:r0?at=-1s", b"");
    assert!(status == 200 || status == 404, "{status}");
    let (status, _, body) = http(&node, "GET", "/v1/kv?at=2000-01-01T00:00:00Z", b"");
    assert_eq!(json(&body)["error"]["code"], "out_of_window", "{status}");
    let (status, _, body) = http(&node, "GET", "/v1/kv/w0:r0?at=yesterday", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_time")));
    let (status, _, body) = http(&node, "PUT", "/v1/kv/w0:r0?at=-1s", b"x");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_request")));
}

#[test]
fn snapshots_show_one_time_move_to_another_and_go_away() {
    let node = TestNode::start(&[]);
    let mut con = node.redis();
    let _: () = redis::cmd("SET").arg("k").arg("one").query(&mut con).unwrap();
    let _: () = redis::cmd("SADD").arg("s").arg("a").query(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let t1 = now_ms();
    std::thread::sleep(Duration::from_millis(3));
    let _: () = redis::cmd("SET").arg("k").arg("two").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("new").arg("x").query(&mut con).unwrap();
    let _: i64 = redis::cmd("DEL").arg("s").query(&mut con).unwrap();

    // Through the CLI, as a user would.
    let out = common::squall()
        .args(["snapshot", "create", "--at", &format!("{t1}.65535"), "--json", "--node", &node.http])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = snap["id"].as_str().unwrap().to_string();
    assert_eq!(snap["stamp"], format!("{t1}.65535"));
    let get = |key: &str| http(&node, "GET", &format!("/v1/snapshots/{id}/kv/{key}"), b"");
    assert_eq!(get("k").2, b"one");
    assert_eq!(get("new").0, 404);
    assert_eq!(json(&get("s").2)["members"], serde_json::json!(["a"]));
    let keys = |node: &TestNode| {
        let (status, _, body) = http(node, "GET", &format!("/v1/snapshots/{id}/kv?limit=10"), b"");
        assert_eq!(status, 200);
        let mut keys: Vec<String> =
            json(&body)["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&node), ["k", "s"]);
    let out = common::squall().args(["snapshot", "get", &id, "k", "--node", &node.http]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");

    // Moved to now, it shows what is live.
    let (status, _, body) = http(&node, "PATCH", &format!("/v1/snapshots/{id}"), br#"{"at": "-0s"}"#);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(get("k").2, b"two");
    assert_eq!(keys(&node), ["k", "new"]);
    let (_, _, body) = http(&node, "GET", "/v1/snapshots", b"");
    assert_eq!(json(&body)["snapshots"].as_array().unwrap().len(), 1);

    // Another namespace sees none of it.
    let (status, _, _) = http(&node, "GET", &format!("/v1/ns/other/snapshots/{id}/kv/k"), b"");
    assert_eq!(status, 404);
    // Bad times and bodies are clear errors; a time the window does not reach too.
    let (status, _, body) = http(&node, "POST", "/v1/snapshots", br#"{"at": "1999-01-01T00:00:00Z"}"#);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("out_of_window")));
    let (status, _, body) = http(&node, "POST", "/v1/snapshots", br#"{"when": "-1s"}"#);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("bad_request")));

    // Removed, it is gone.
    assert_eq!(http(&node, "DELETE", &format!("/v1/snapshots/{id}"), b"").0, 204);
    let (status, _, body) = get("k");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("snapshot_not_found")));

    // Bounded in number.
    for _ in 0..64 {
        assert_eq!(http(&node, "POST", "/v1/snapshots", br#"{"at": "-0s", "ttl": 60}"#).0, 201);
    }
    let (status, _, body) = http(&node, "POST", "/v1/snapshots", br#"{"at": "-0s"}"#);
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (429, Some("too_many_snapshots")));
}

#[test]
fn a_replay_runs_the_version_deployed_then_against_the_past_and_writes_nothing() {
    let node = TestNode::start(&[]);
    let before_deploy = now_ms();
    std::thread::sleep(Duration::from_millis(3));
    let (status, _, _) = http(&node, "PUT", "/v1/functions/count", squall_guests::COUNTER);
    assert!(status == 200 || status == 201);
    let invoke = || http(&node, "POST", "/v1/functions/count/invoke", b"visits");
    let (_, head, body) = invoke();
    assert_eq!(body, b"1");
    let first_id = header(&head, "x-squall-invocation-id").unwrap().to_string();
    std::thread::sleep(Duration::from_millis(3));
    let t1 = now_ms();
    std::thread::sleep(Duration::from_millis(3));
    assert_eq!(invoke().2, b"2");
    assert_eq!(invoke().2, b"3");
    // Another component under the name since.
    let (status, _, _) = http(&node, "PUT", "/v1/functions/count", squall_guests::HELLO);
    assert!(status == 200 || status == 201);
    assert_ne!(invoke().2, b"4");

    let (status, _, body) = http(&node, "POST", &format!("/v1/functions/count/invoke?at={t1}.65535"), b"visits");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r = json(&body);
    assert_eq!(r["output"], "2", "{r}");
    assert_eq!(r["version"], 1, "{r}");
    assert_eq!(r["writes"], serde_json::json!([{"key": "visits", "command": "INCRBY visits 1"}]), "{r}");
    // Nothing was written: live, the counter is where the calls left it.
    let (_, _, body) = http(&node, "GET", "/v1/kv/visits", b"");
    assert_eq!(json(&body)["value"], 3);

    // The CLI prints the output and what would have been written.
    let out = common::squall()
        .args(["invoke", "count", "visits", "--at", &format!("{t1}.65535"), "--node", &node.http])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("2\n") && text.contains("INCRBY visits 1"), "{text}");

    // The changes of the past name the invocation whose commit made them.
    let (_, _, body) = http(&node, "GET", &format!("/v1/changes?from={before_deploy}.0&prefix=visits"), b"");
    let steps = json(&body);
    assert_eq!(steps["steps"][0]["invocation_id"], first_id.as_str(), "{steps}");
    assert_eq!(steps["steps"].as_array().unwrap().len(), 3, "{steps}");

    // Functions of one replay talk to each other as they would live.
    for (name, wasm) in [("ping", squall_guests::PING), ("pong", squall_guests::PONG)] {
        assert!(matches!(http(&node, "PUT", &format!("/v1/functions/{name}"), wasm).0, 200 | 201));
    }
    std::thread::sleep(Duration::from_millis(3));
    let (status, _, body) = http(&node, "POST", "/v1/functions/ping/invoke?at=-0s", b"2");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["output"], "pong 1, pong 2; pong heard 2 pings");

    // Before it was deployed there was nothing to run; the far past is out of the window.
    let (status, _, body) = http(&node, "POST", &format!("/v1/functions/count/invoke?at={before_deploy}.0"), b"x");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (404, Some("function_not_found")));
    let (status, _, body) = http(&node, "POST", "/v1/functions/count/invoke?at=-1h", b"x");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("out_of_window")));
}

#[test]
fn steps_and_diff_give_exactly_the_units_of_a_scripted_history() {
    let node = TestNode::start(&["--shards", "2"]);
    let mut con = node.redis();
    let _: () = redis::cmd("SET").arg("a").arg("0").query(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let t0 = format!("{}.65535", now_ms());
    std::thread::sleep(Duration::from_millis(3));
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("a")
        .arg("1")
        .ignore()
        .cmd("INCRBY")
        .arg("c")
        .arg(5)
        .ignore()
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET").arg("a").arg("2").query(&mut con).unwrap();
    let _: i64 = redis::cmd("SADD").arg("s").arg("x").query(&mut con).unwrap();
    let _: i64 = redis::cmd("DEL").arg("a").query(&mut con).unwrap();
    std::thread::sleep(Duration::from_millis(3));
    let t1 = format!("{}.65535", now_ms());
    std::thread::sleep(Duration::from_millis(3));
    let _: () = redis::cmd("SET").arg("a").arg("9").query(&mut con).unwrap();

    let reg = |v: &str| serde_json::json!({"type": "register", "value": v});
    let (status, _, body) = http(&node, "GET", &format!("/v1/changes?from={t0}&to={t1}"), b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let steps = json(&body);
    assert_eq!(steps["complete"], true);
    let got: Vec<serde_json::Value> = steps["steps"].as_array().unwrap().iter().map(|s| s["keys"].clone()).collect();
    let k = |key: &str, before: serde_json::Value, after: serde_json::Value| serde_json::json!({"key": key, "before": before, "after": after});
    let null = serde_json::Value::Null;
    assert_eq!(
        got,
        vec![
            serde_json::json!([
                k("a", reg("0"), reg("1")),
                k("c", null.clone(), serde_json::json!({"type": "counter", "value": 5}))
            ]),
            serde_json::json!([k("a", reg("1"), reg("2"))]),
            serde_json::json!([k("s", null.clone(), serde_json::json!({"members": ["x"], "type": "set"}))]),
            serde_json::json!([k("a", reg("2"), null.clone())]),
        ],
        "{steps}"
    );
    // One stamp per unit, in order.
    let stamps: Vec<&str> = steps["steps"].as_array().unwrap().iter().map(|s| s["stamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");

    let (_, _, body) = http(&node, "GET", &format!("/v1/changes?from={t0}&to={t1}&prefix=s"), b"");
    assert_eq!(json(&body)["steps"].as_array().unwrap().len(), 1);

    let (_, _, body) = http(&node, "GET", &format!("/v1/diff?from={t0}&to={t1}"), b"");
    assert_eq!(
        json(&body)["keys"],
        serde_json::json!([
            k("a", reg("0"), null.clone()),
            k("c", null.clone(), serde_json::json!({"type": "counter", "value": 5})),
            k("s", null, serde_json::json!({"members": ["x"], "type": "set"})),
        ])
    );

    let out = common::squall()
        .args(["snapshot", "steps", "--from", &t0, "--to", &t1, "--prefix", "a", "--node", &node.http])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  a: \"0\" -> \"1\"") && text.contains("  a: \"2\" -> (none)"), "{text}");
    let (status, _, body) = http(&node, "GET", "/v1/changes?from=-2h", b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (400, Some("out_of_window")));

    // The first time a predicate held: the unit that made it, in stamp order.
    let find = |pred: &str| {
        let q = pred.replace(' ', "%20").replace('"', "%22").replace('>', "%3E").replace('=', "%3D");
        let (status, _, body) = http(&node, "GET", &format!("/v1/find?from={t0}&to={t1}&where={q}"), b"");
        (status, json(&body))
    };
    let (status, found) = find("c > 3");
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["stamp"], steps["steps"][0]["stamp"], "{found}");
    assert_eq!(found["step"]["keys"], steps["steps"][0]["keys"]);
    assert_eq!(find("a == 2 and not s has x").1["stamp"], steps["steps"][1]["stamp"]);
    assert_eq!(find("s has x").1["stamp"], steps["steps"][2]["stamp"]);
    assert_eq!(find("not a and c").1["stamp"], steps["steps"][3]["stamp"]);
    // Held at the start already; never held.
    let (_, at_start) = find("a == \"0\"");
    assert_eq!((at_start["found"].as_bool(), at_start["step"].is_null()), (Some(true), true), "{at_start}");
    assert_eq!(find("c > 100 or zz").1["found"], false);
    let (status, e) = find("c >");
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("bad_predicate")));
    let out = common::squall()
        .args(["snapshot", "find", "--from", &t0, "--to", &t1, "--where", "s has x", "--node", &node.http])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("first held at ") && text.contains("  s: (none) -> [\"x\"]"), "{text}");
}
