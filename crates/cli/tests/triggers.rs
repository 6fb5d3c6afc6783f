//! Triggers end to end: real nodes run functions on pub/sub messages, key
//! changes and cron ticks, once per event even across `kill -9`; a function
//! that always fails leaves its events in the dead letters; a trigger that
//! fires itself stops at the depth limit.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, http, json, squall};
use redis::Commands;

fn deploy(node: &TestNode, name: &str, wasm: &[u8]) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/functions/{name}"), wasm);
    assert!(status == 200 || status == 201, "deploy {name}: {status} {}", String::from_utf8_lossy(&body));
}

/// `squall trigger add ARGS`, which must succeed.
fn add(node: &TestNode, args: &[&str]) -> String {
    let out = squall().args(["trigger", "add"]).args(args).args(["--node", &node.http]).output().unwrap();
    assert!(out.status.success(), "trigger add {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The runs of `counter` for trigger `id`: the counter named by each
/// event's envelope, by envelope.
fn runs(con: &mut redis::Connection, id: &str) -> Runs {
    let keys: Vec<String> = con.keys(format!("{{\"trigger\":\"{id}\"*")).unwrap();
    Runs(
        keys.into_iter()
            .map(|k| {
                let n: i64 = con.get(&k).unwrap();
                (serde_json::from_str(&k).unwrap(), n)
            })
            .collect(),
    )
}

/// Envelopes, with how many times each ran.
#[derive(Debug)]
struct Runs(Vec<(serde_json::Value, i64)>);

impl Runs {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn keys(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.0.iter().map(|(e, _)| e)
    }
    fn values(&self) -> impl Iterator<Item = &i64> {
        self.0.iter().map(|(_, n)| n)
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn each_kind_of_trigger_runs_once_per_event_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(dir.path(), &[]);
    deploy(&node, "counter", squall_guests::COUNTER);
    add(&node, &["counter", "--channel", "orders", "--id", "orders"]);
    add(&node, &["counter", "--channel", "audit.*", "--id", "audit"]);
    add(&node, &["counter", "--keys", "user:*", "--events", "set,del", "--id", "users"]);
    add(&node, &["counter", "--cron", "* * * * * *", "--id", "tick"]);
    let ls = squall().args(["trigger", "ls", "--node", &node.http]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("users\tcounter\tkeys user:* (del,set)\tretries 3"), "{ls}");
    assert!(ls.contains("tick\tcounter\tcron \"* * * * * *\""), "{ls}");

    let mut con = node.redis();
    for i in 0..40 {
        let _: i64 = con.publish("orders", format!("m{i}")).unwrap();
        let _: i64 = con.publish("audit.login", format!("a{i}")).unwrap();
        let _: () = con.set(format!("user:{i}"), i).unwrap();
        let _: () = con.set(format!("other:{i}"), i).unwrap();
    }
    for i in 0..10 {
        let _: i64 = con.del(format!("user:{i}")).unwrap();
    }
    // No waiting: some events are queued and not run yet, maybe some key
    // events not even queued, when the node dies.
    node.kill9();

    let node = TestNode::start_in(dir.path(), &[]);
    let mut con = node.redis();
    for i in 40..50 {
        let _: i64 = con.publish("orders", format!("m{i}")).unwrap();
    }
    wait_until("every order's run", || runs(&mut con, "orders").len() == 50);
    wait_until("every key event's run", || runs(&mut con, "users").len() == 50);
    wait_until("every audit message's run", || runs(&mut con, "audit").len() == 40);
    let orders = runs(&mut con, "orders");
    let mut messages: Vec<String> = orders.keys().map(|e| e["message"].as_str().unwrap().to_string()).collect();
    messages.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(messages, want);
    assert!(orders.values().all(|n| *n == 1), "a message ran twice: {orders:?}");
    let audit = runs(&mut con, "audit");
    assert!(audit.keys().all(|e| e["channel"] == "audit.login" && e["pattern"] == "audit.*"), "{audit:?}");
    assert!(audit.values().all(|n| *n == 1), "{audit:?}");

    let users = runs(&mut con, "users");
    assert!(users.values().all(|n| *n == 1), "a key event ran twice: {users:?}");
    let sets = users.keys().filter(|e| e["event"] == "set").count();
    let dels: Vec<&str> = users.keys().filter(|e| e["event"] == "del").map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!((sets, dels.len()), (40, 10), "{users:?}");
    assert!(dels.iter().all(|k| k.strip_prefix("user:").unwrap().parse::<u32>().unwrap() < 10));
    assert!(users.keys().all(|e| e["kind"] == "key" && e["stamp"].is_string() && e["depth"] == 0));

    // Ticks keep coming after the restart, each run once.
    let before = runs(&mut con, "tick").len();
    wait_until("two more ticks", || runs(&mut con, "tick").len() >= before + 2);
    let ticks = runs(&mut con, "tick");
    assert!(ticks.values().all(|n| *n == 1), "a tick ran twice: {ticks:?}");
    assert!(ticks.keys().all(|e| e["time_ms"].as_u64().unwrap() % 1000 == 0), "{ticks:?}");

    // Nothing failed; removing a trigger stops it.
    let (status, _, body) = http(&node, "GET", "/v1/triggers/orders/dead", b"");
    assert_eq!((status, json(&body)["total"].as_u64()), (200, Some(0)));
    let rm = squall().args(["trigger", "rm", "orders", "--node", &node.http]).output().unwrap();
    assert!(String::from_utf8_lossy(&rm.stdout).contains("removed orders"));
    let _: i64 = con.publish("orders", "late").unwrap();
    let _: () = con.set("user:late", 1).unwrap();
    wait_until("the late key's run", || runs(&mut con, "users").len() == 51);
    assert_eq!(runs(&mut con, "orders").len(), 50, "a removed trigger ran");
}

#[test]
fn failing_runs_end_in_the_dead_letters_and_a_trigger_that_fires_itself_stops() {
    let node = TestNode::start(&[]);
    deploy(&node, "fails", squall_guests::HOSTILE);
    deploy(&node, "counter", squall_guests::COUNTER);

    // Bad triggers are refused, saying why.
    for (body, status, code) in [
        (r#"{"function":"counter"}"#, 400, "bad_trigger"),
        (r#"{"function":"counter","channel":"a","cron":"* * * * *"}"#, 400, "bad_trigger"),
        (r#"{"function":"counter","cron":"every day"}"#, 400, "bad_trigger"),
        (r#"{"function":"counter","channel":"a","retries":99}"#, 400, "bad_trigger"),
        (r#"{"function":"nope","channel":"a"}"#, 404, "function_not_found"),
        ("not json", 400, "bad_trigger"),
    ] {
        let (s, _, b) = http(&node, "PUT", "/v1/triggers/t", body.as_bytes());
        assert_eq!((s, json(&b)["error"]["code"].as_str().unwrap()), (status, code), "{body}");
    }
    let (s, _, b) = http(&node, "GET", "/v1/triggers/t", b"");
    assert_eq!((s, json(&b)["error"]["code"].as_str().unwrap()), (404, "trigger_not_found"));

    let (s, _, _) = http(&node, "PUT", "/v1/triggers/bad", br#"{"function":"fails","channel":"jobs","retries":1}"#);
    assert_eq!(s, 201);
    let mut con = node.redis();
    let _: i64 = con.publish("jobs", "one").unwrap();
    let _: i64 = con.publish("jobs", "two").unwrap();
    wait_until("two dead letters", || {
        let (_, _, b) = http(&node, "GET", "/v1/triggers/bad/dead", b"");
        json(&b)["total"] == 2
    });
    let (_, _, b) = http(&node, "GET", "/v1/triggers/bad/dead?limit=1", b"");
    let page = json(&b);
    assert_eq!(page["letters"].as_array().unwrap().len(), 1);
    let letter = &page["letters"][0];
    assert_eq!((letter["attempts"].as_u64(), letter["code"].as_str()), (Some(2), Some("function_error")), "{letter}");
    assert_eq!(letter["event"]["channel"], "jobs");
    let dead = squall().args(["trigger", "dead", "bad", "--node", &node.http]).output().unwrap();
    let dead = String::from_utf8_lossy(&dead.stdout);
    assert!(dead.contains("2 runs\tfunction_error") && dead.ends_with("2 dead letters\n"), "{dead}");

    // counter writes the key its input (the event) names, which fires the
    // trigger again: the chain stops at the depth limit, in the dead letters.
    add(&node, &["counter", "--keys", "{\"trigger\":\"loop\"*", "--events", "set", "--id", "loop"]);
    let _: () = con.set("{\"trigger\":\"loop\" seed", 1).unwrap();
    wait_until("the chain's end", || {
        let (_, _, b) = http(&node, "GET", "/v1/triggers/loop/dead", b"");
        json(&b)["total"] == 1
    });
    let (_, _, b) = http(&node, "GET", "/v1/triggers/loop/dead", b"");
    let letter = &json(&b)["letters"][0];
    assert_eq!(letter["code"], "trigger_depth", "{letter}");
    assert_eq!(letter["event"]["depth"], 9, "{letter}");
    // The seed and one key for each run of depth 0 to 8.
    let keys: Vec<String> = con.keys("{\"trigger\":\"loop\"*").unwrap();
    assert_eq!(keys.len(), 10, "{keys:?}");
    // A key whose time runs out fires an `expired` trigger (and not a `del` one).
    add(&node, &["counter", "--keys", "tmp:*", "--events", "expired", "--id", "gone"]);
    let _: () = redis::cmd("SET").arg("tmp:a").arg(1).arg("PX").arg(50).query(&mut con).unwrap();
    let _: () = con.set("tmp:b", 1).unwrap();
    let _: i64 = con.del("tmp:b").unwrap();
    wait_until("the expired key's run", || runs(&mut con, "gone").len() == 1);
    let gone = runs(&mut con, "gone");
    let e = gone.keys().next().unwrap();
    assert_eq!((e["key"].as_str(), e["event"].as_str()), (Some("tmp:a"), Some("expired")), "{gone:?}");

    // A trigger removed while its event waits to be tried again takes the
    // event with it: no dead letter (the metric below stays at 3).
    let (s, _, _) =
        http(&node, "PUT", "/v1/triggers/gone-soon", br#"{"function":"fails","channel":"later","retries":2}"#);
    assert_eq!(s, 201);
    let _: i64 = con.publish("later", "x").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (s, _, _) = http(&node, "DELETE", "/v1/triggers/gone-soon", b"");
    assert_eq!(s, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let metrics = http(&node, "GET", "/metrics", b"").2;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("squall_trigger_events_total{outcome=\"dead\"} 3"), "{metrics}");
}
