//! Pub/sub and keyspace notifications, on the wire: channels, patterns and
//! shard channels, the subscribed context of RESP2 and the push messages of
//! RESP3, PUBSUB's counts, a slow subscriber cut off, and the events writes
//! make (from Redis clients, over HTTP, and the reaper's expiries). The
//! replies were checked against Redis 7 on this machine when written.

mod common;

use common::{TestNode, http, wait_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A client on a raw socket, to see the bytes as they come.
struct Raw {
    s: TcpStream,
    got: Vec<u8>,
}

impl Raw {
    fn connect(node: &TestNode) -> Raw {
        let s = TcpStream::connect(node.resp_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Raw { s, got: Vec::new() }
    }

    fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.s.write_all(out.as_bytes()).unwrap();
    }

    /// Waits for exactly `want` to arrive next (and fails on anything else).
    fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.got.len() < want.len() && Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        let n = want.len().min(self.got.len());
        let got: Vec<u8> = self.got.drain(..n).collect();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    /// Nothing more arrives for a while.
    fn quiet(&mut self) {
        let mut buf = [0u8; 64];
        std::thread::sleep(Duration::from_millis(200));
        match self.s.read(&mut buf) {
            Ok(n) if n > 0 => panic!("unexpected: {:?}", String::from_utf8_lossy(&buf[..n])),
            _ => {}
        }
        assert!(self.got.is_empty(), "unexpected: {:?}", String::from_utf8_lossy(&self.got));
    }
}

fn push(words: &[&str], resp3: bool) -> String {
    let mut out = format!("{}{}\r\n", if resp3 { '>' } else { '*' }, words.len());
    for w in words {
        match w.strip_prefix(':') {
            Some(n) => out.push_str(&format!(":{n}\r\n")),
            None => out.push_str(&format!("${}\r\n{w}\r\n", w.len())),
        }
    }
    out
}

fn query<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn channels_patterns_and_shard_channels_deliver_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut sub = Raw::connect(&node);
    let mut c = node.redis();

    sub.send(&["SUBSCRIBE", "news", "sport"]);
    sub.expect(&push(&["subscribe", "news", ":1"], false));
    sub.expect(&push(&["subscribe", "sport", ":2"], false));
    sub.send(&["PSUBSCRIBE", "n*"]);
    sub.expect(&push(&["psubscribe", "n*", ":3"], false));
    // Subscribing again to the same name changes nothing.
    sub.send(&["SUBSCRIBE", "news"]);
    sub.expect(&push(&["subscribe", "news", ":3"], false));

    assert_eq!(query::<i64>(&mut c, &["PUBLISH", "news", "hello"]), 2);
    sub.expect(&push(&["message", "news", "hello"], false));
    sub.expect(&push(&["pmessage", "n*", "news", "hello"], false));
    assert_eq!(query::<i64>(&mut c, &["PUBLISH", "nothing-here", "x"]), 1);
    sub.expect(&push(&["pmessage", "n*", "nothing-here", "x"], false));
    assert_eq!(query::<i64>(&mut c, &["PUBLISH", "weather", "x"]), 0);

    let mut channels: Vec<String> = query(&mut c, &["PUBSUB", "CHANNELS"]);
    channels.sort();
    assert_eq!(channels, ["news", "sport"]);
    assert_eq!(query::<Vec<String>>(&mut c, &["PUBSUB", "CHANNELS", "s*"]), ["sport"]);
    let numsub: Vec<redis::Value> = query(&mut c, &["PUBSUB", "NUMSUB", "news", "weather"]);
    assert_eq!(
        redis::from_redis_value::<Vec<(String, i64)>>(&redis::Value::Array(numsub)).unwrap(),
        [("news".to_string(), 1), ("weather".to_string(), 0)]
    );
    assert_eq!(query::<i64>(&mut c, &["PUBSUB", "NUMPAT"]), 1);
    let e = redis::cmd("PUBSUB").arg("NOPE").query::<()>(&mut c).unwrap_err();
    assert!(e.to_string().contains("unknown subcommand 'NOPE'. Try PUBSUB HELP."), "{e}");
    let e = redis::cmd("PUBSUB").arg("CHANNELS").arg("a").arg("b").query::<()>(&mut c).unwrap_err();
    assert!(e.to_string().contains("unknown subcommand or wrong number of arguments for 'CHANNELS'"), "{e}");

    // RESP2's subscribed context: only (un)subscribing, PING, QUIT and RESET.
    sub.send(&["GET", "k"]);
    sub.expect(
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in \
         this context\r\n",
    );
    sub.send(&["PING"]);
    sub.expect(&push(&["pong", ""], false));
    sub.send(&["PING", "hi"]);
    sub.expect(&push(&["pong", "hi"], false));

    // Shard channels are their own: counted apart, no patterns.
    sub.send(&["SSUBSCRIBE", "orders"]);
    sub.expect(&push(&["ssubscribe", "orders", ":1"], false));
    assert_eq!(query::<i64>(&mut c, &["SPUBLISH", "orders", "o1"]), 1);
    sub.expect(&push(&["smessage", "orders", "o1"], false));
    assert_eq!(query::<i64>(&mut c, &["PUBLISH", "orders", "o2"]), 0);
    assert_eq!(query::<Vec<String>>(&mut c, &["PUBSUB", "SHARDCHANNELS"]), ["orders"]);

    sub.send(&["UNSUBSCRIBE", "sport"]);
    sub.expect(&push(&["unsubscribe", "sport", ":2"], false));
    sub.send(&["PUNSUBSCRIBE"]);
    sub.expect(&push(&["punsubscribe", "n*", ":1"], false));
    sub.send(&["UNSUBSCRIBE"]);
    sub.expect(&push(&["unsubscribe", "news", ":0"], false));
    // Nothing left of the kind: one reply with a nil name.
    sub.send(&["UNSUBSCRIBE"]);
    sub.expect("*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    // Still in the context through the shard channel; RESET leaves it.
    sub.send(&["RESET"]);
    sub.expect("+RESET\r\n");
    sub.send(&["GET", "k"]);
    sub.expect("$-1\r\n");
    assert_eq!(query::<i64>(&mut c, &["SPUBLISH", "orders", "o3"]), 0);
    sub.quiet();

    // A subscriber that goes away is no longer counted.
    sub.send(&["SUBSCRIBE", "gone"]);
    sub.expect(&push(&["subscribe", "gone", ":1"], false));
    drop(sub);
    wait_for(|| (query::<i64>(&mut c, &["PUBLISH", "gone", "x"]) == 0).then_some(()));

    // PUBLISH inside MULTI runs at EXEC; SUBSCRIBE cannot be queued.
    let mut other = Raw::connect(&node);
    other.send(&["SUBSCRIBE", "tx"]);
    other.expect(&push(&["subscribe", "tx", ":1"], false));
    let (n,): (i64,) = redis::pipe().atomic().cmd("PUBLISH").arg("tx").arg("in-multi").query(&mut c).unwrap();
    assert_eq!(n, 1);
    other.expect(&push(&["message", "tx", "in-multi"], false));
}

#[test]
fn resp3_subscribers_get_push_messages_and_may_run_any_command() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut sub = Raw::connect(&node);
    let mut c = node.redis();
    sub.send(&["HELLO", "3"]);
    sub.expect("%7\r\n");
    // The rest of HELLO's map, whatever its values.
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 4096];
    let _ = sub.s.read(&mut buf);
    sub.got.clear();

    sub.send(&["SUBSCRIBE", "a"]);
    sub.expect(&push(&["subscribe", "a", ":1"], true));
    sub.send(&["SET", "k", "v"]);
    sub.expect("+OK\r\n");
    assert_eq!(query::<i64>(&mut c, &["PUBLISH", "a", "pushed"]), 1);
    sub.expect(&push(&["message", "a", "pushed"], true));
    sub.send(&["PING"]);
    sub.expect("+PONG\r\n");
    sub.send(&["UNSUBSCRIBE", "a"]);
    sub.expect(&push(&["unsubscribe", "a", ":0"], true));
}

#[test]
fn a_slow_subscriber_is_cut_off_and_counted_and_the_rest_go_on() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let _: () = query(&mut c, &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 0 0"]);
    let mut slow = Raw::connect(&node);
    slow.send(&["SUBSCRIBE", "firehose"]);
    slow.expect(&push(&["subscribe", "firehose", ":1"], false));
    let mut good = node.redis();
    let _: () = query(&mut good, &["SUBSCRIBE", "firehose"]);
    // The slow one never reads again; the publisher never waits for it.
    let payload = "x".repeat(256 << 10);
    let started = Instant::now();
    for _ in 0..128 {
        let _: i64 = query(&mut c, &["PUBLISH", "firehose", &payload]);
        let got = good.recv_response().unwrap();
        assert!(matches!(got, redis::Value::Push { .. } | redis::Value::Array(_)), "{got:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    wait_for(|| {
        let subs: Vec<(String, i64)> = query(&mut c, &["PUBSUB", "NUMSUB", "firehose"]);
        (subs[0].1 == 1).then_some(())
    });
    let (_, _, metrics) = http(&node, "GET", "/metrics", b"");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("squall_resp_pubsub_slow_closed_total 1"), "{metrics}");
    let info: String = query(&mut c, &["INFO", "stats"]);
    assert!(info.contains("client_output_buffer_limit_disconnections:1"), "{info}");
    assert_eq!(query::<String>(&mut c, &["PING"]), "PONG");
}

#[test]
fn keyspace_notifications_say_what_writes_did_however_they_came() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let e = redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg("KQ").query::<()>(&mut c).unwrap_err();
    assert!(e.to_string().contains("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."), "{e}");
    let _: () = query(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    assert_eq!(
        query::<Vec<String>>(&mut c, &["CONFIG", "GET", "notify-keyspace-events"]),
        ["notify-keyspace-events", "AKE"]
    );
    let mut sub = Raw::connect(&node);
    sub.send(&["PSUBSCRIBE", "__key*__:*"]);
    sub.expect(&push(&["psubscribe", "__key*__:*", ":1"], false));
    let event = |sub: &mut Raw, key: &str, event: &str| {
        let space = format!("__keyspace@0__:{key}");
        sub.expect(&push(&["pmessage", "__key*__:*", &space, event], false));
        let ev = format!("__keyevent@0__:{event}");
        sub.expect(&push(&["pmessage", "__key*__:*", &ev, key], false));
    };
    let _: () = query(&mut c, &["SET", "k", "v"]);
    event(&mut sub, "k", "set");
    let _: i64 = query(&mut c, &["SADD", "s", "a"]);
    event(&mut sub, "s", "sadd");
    // The last member removed takes the key, and says so.
    let _: i64 = query(&mut c, &["SREM", "s", "a"]);
    event(&mut sub, "s", "srem");
    event(&mut sub, "s", "del");
    let _: i64 = query(&mut c, &["HSET", "h", "f", "v"]);
    event(&mut sub, "h", "hset");
    let _: i64 = query(&mut c, &["INCR", "n"]);
    event(&mut sub, "n", "incrby");
    let _: i64 = query(&mut c, &["EXPIRE", "k", "100"]);
    event(&mut sub, "k", "expire");
    // A write that changes nothing says nothing.
    let _: i64 = query(&mut c, &["DEL", "missing"]);
    let _: i64 = query(&mut c, &["DEL", "k"]);
    event(&mut sub, "k", "del");
    // Over HTTP: the events come from the store, not from the Redis port.
    assert_eq!(http(&node, "PUT", "/v1/kv/web", b"x").0, 204);
    event(&mut sub, "web", "set");
    // SET with a time to live, then the reaper's expiry.
    let _: () = query(&mut c, &["SET", "e", "1", "PX", "50"]);
    event(&mut sub, "e", "set");
    event(&mut sub, "e", "expire");
    event(&mut sub, "e", "expired");
    sub.quiet();

    // Only the classes asked for: keyevent of generic commands.
    let _: () = query(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "Eg"]);
    std::thread::sleep(Duration::from_millis(100));
    let _: () = query(&mut c, &["SET", "k2", "v"]);
    let _: i64 = query(&mut c, &["DEL", "k2"]);
    sub.expect(&push(&["pmessage", "__key*__:*", "__keyevent@0__:del", "k2"], false));
    let _: () = query(&mut c, &["CONFIG", "SET", "notify-keyspace-events", ""]);
    std::thread::sleep(Duration::from_millis(100));
    let _: () = query(&mut c, &["SET", "k3", "v"]);
    let _: i64 = query(&mut c, &["DEL", "k3"]);
    sub.quiet();
}
