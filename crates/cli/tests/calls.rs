//! Calls between functions end to end: real components (`examples/tree`,
//! `fanout`, `inc`, `ping`/`pong`) on a real node over HTTP. A request is
//! one atomic unit however many functions it touches.

mod common;

use common::{TestNode, header, http, json};
use redis::Commands;

fn deploy(node: &TestNode, name: &str, wasm: &[u8]) {
    let (status, _, body) = http(node, "PUT", &format!("/v1/functions/{name}"), wasm);
    assert!(status == 200 || status == 201, "deploy {name}: {status} {}", String::from_utf8_lossy(&body));
}

fn node() -> TestNode {
    let node = TestNode::start(&[]);
    for (name, wasm) in [
        ("tree", squall_guests::TREE),
        ("inc", squall_guests::INC),
        ("fanout", squall_guests::FANOUT),
        ("ping", squall_guests::PING),
        ("pong", squall_guests::PONG),
    ] {
        deploy(&node, name, wasm);
    }
    node
}

/// Runs `tree` with `script`: (status, head, body as text).
fn tree(node: &TestNode, script: &str) -> (u16, String, String) {
    let (status, head, body) = http(node, "POST", "/v1/functions/tree/invoke", script.as_bytes());
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

fn get(node: &TestNode, key: &str) -> Option<String> {
    node.redis().get(key).unwrap()
}

#[test]
fn a_fan_out_of_100_spawned_calls_sums_their_outputs() {
    let node = node();
    let (status, head, body) = http(&node, "POST", "/v1/functions/fanout/invoke", b"100");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "5050"));
    let timing = header(&head, "server-timing").unwrap();
    assert!(timing.contains("calls;dur="), "the root's timing says what went to its callees: {timing}");

    // Each callee's log is reachable from the root's invocation id.
    let root = header(&head, "x-squall-invocation-id").unwrap();
    let (status, _, body) = http(&node, "GET", &format!("/v1/invocations/{root}"), b"");
    assert_eq!(status, 200);
    let logs = json(&body)["logs"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 101, "the root and its 100 callees");
    let callees: Vec<_> = logs.iter().filter(|l| l["root"] == root).collect();
    assert_eq!(callees.len(), 100);
    assert!(callees.iter().all(|l| l["function"] == "inc" && l["status"] == "ok"));
}

#[test]
fn a_callee_reads_the_callers_writes_and_its_writes_commit_with_the_root() {
    let node = node();
    let (status, _, body) = tree(&node, "put a 5;call tree get a,put b 6;get b");
    assert_eq!((status, body.as_str()), (200, "5 6"), "the callee saw a, the caller then saw b");
    assert_eq!(get(&node, "a").as_deref(), Some("5"));
    assert_eq!(get(&node, "b").as_deref(), Some("6"));
}

#[test]
fn a_nested_trap_drops_the_callees_writes_and_the_root_goes_on() {
    let node = node();
    let (status, _, body) = tree(&node, "call tree put child 1,trap;put after 1");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:failed:trap:"), "{body}");
    assert!(body.contains("trap requested"), "the callee's panic message reaches the caller: {body}");
    assert_eq!(get(&node, "child"), None, "the trapped callee's write is dropped");
    assert_eq!(get(&node, "after").as_deref(), Some("1"));
}

#[test]
fn a_root_that_fails_after_successful_calls_leaves_nothing_written() {
    let node = node();
    let (status, _, body) = tree(&node, "put mine 1;call tree put theirs 1,incr hits 1;fail no thanks");
    assert_eq!(status, 422, "{body}");
    assert_eq!(json(body.as_bytes())["error"]["code"], "function_error");
    for key in ["mine", "theirs", "hits"] {
        assert_eq!(get(&node, key), None, "{key} was written by a request that failed");
    }
}

#[test]
fn spawned_callees_merge_their_writes_into_the_caller_in_await_order() {
    let node = node();
    let script = "incr c 1;put r caller;sadd s a;\
                  spawn tree incr c 2,put r first,sadd s b;\
                  spawn tree incr c 3,put r second,sadd s c;\
                  put r after-spawn;awaitall;get c;get r";
    let (status, _, body) = tree(&node, script);
    assert_eq!(status, 200, "{body}");
    // Counters add up; the register holds the last awaited callee's put
    // (it came after the caller's own put before the await); sets unite.
    assert_eq!(body, "  6 second");
    assert_eq!(get(&node, "c").as_deref(), Some("6"));
    assert_eq!(get(&node, "r").as_deref(), Some("second"));
    let mut members: Vec<String> = node.redis().smembers("s").unwrap();
    members.sort();
    assert_eq!(members, ["a", "b", "c"]);
}

#[test]
fn a_callee_whose_writes_cannot_follow_the_callers_is_an_error_and_writes_nothing() {
    let node = node();
    // The callee counts on `k`; the caller makes `k` a set before it awaits.
    let (status, _, body) = tree(&node, "spawn tree incr k 1,put other 1;sadd k x;awaitall");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:invalid:join_failed"), "{body}");
    let members: Vec<String> = node.redis().smembers("k").unwrap();
    assert_eq!(members, ["x"], "the caller's own write commits, the callee's do not");
    assert_eq!(get(&node, "other"), None, "none of the callee's writes joined");
}

#[test]
fn limits_on_calls_have_their_codes_and_write_nothing() {
    let node = node();
    // A cycle of calls ends at the depth limit, not in a hang.
    let (status, _, body) = tree(&node, "incr depth 1;recurse");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("depth_limit"), "{body}");
    assert_eq!(get(&node, "depth"), None);

    // More calls running at once than an invocation may have (200): the
    // 201st spawn is refused while the others wait (3 s) for a message.
    let script = format!("put spawned 1;{}awaitall", "spawn tree recv 3000;".repeat(201));
    let (status, _, body) = tree(&node, &script);
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:limit:fanout_limit"), "{}", &body[..body.len().min(300)]);
    assert_eq!(body.matches("none").count(), 200, "the other 200 ran");

    // More calls in one request than it may make (in batches, so none is over the fan-out).
    let (status, _, body) = http(&node, "POST", "/v1/functions/fanout/invoke", b"10001 100");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("call_limit"), "{body}");

    // An unknown function.
    let (status, _, body) = tree(&node, "put x 1;call nosuch hello");
    assert_eq!((status, body.as_str()), (200, "E:not-found:nosuch"));

    // The node goes on serving.
    let (status, _, body) = http(&node, "POST", "/v1/functions/fanout/invoke", b"10");
    assert_eq!((status, body.as_slice()), (200, &b"55"[..]));
}

#[test]
fn the_roots_deadline_bounds_the_tree() {
    let node = node();
    let started = std::time::Instant::now();
    let (status, _, body) = common::http_with(
        &node,
        "POST",
        "/v1/functions/tree/invoke",
        &[("x-squall-timeout-ms", "300")],
        b"put slow 1;call tree spin 5000;spin 5000",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "the tree ran past the root's deadline");
    assert_eq!(get(&node, "slow"), None);
}

#[test]
fn two_running_invocations_trade_messages() {
    let node = node();
    let (status, _, body) = http(&node, "POST", "/v1/functions/ping/invoke", b"3");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "pong 1, pong 2, pong 3; pong heard 3 pings"));
}

#[test]
fn bad_messages_get_errors_the_sender_sees() {
    let node = node();
    // Unknown (or finished) invocation.
    let (status, _, body) = tree(&node, "send 0000-nosuch hello");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:no invocation \"0000-nosuch\" is running"), "{body}");

    // A full mailbox: the callee waits a moment before reading.
    let (status, _, body) = tree(&node, "spawn tree spin 50,recv 10;tell 100 10;awaitall");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:mailbox_full"), "{body}");

    // An oversized message.
    let (status, _, body) = tree(&node, "spawn tree recv 10;tell 1 2000000;awaitall");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("E:message_too_large"), "{body}");

    // A function that never sends: recv times out with nothing.
    let (status, _, body) = tree(&node, "spawn tree recv 2000;recv 50;awaitall");
    assert_eq!((status, body.as_str()), (200, "none none"), "{body}");
}
