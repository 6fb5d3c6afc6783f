//! Real Redis clients against a real node: the `redis` crate (a client
//! library), redis-cli and redis-benchmark.

mod common;

use common::{TestNode, tool};
use redis::{Commands, RedisResult, Value};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_client_library_can_use_every_type() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let _: () = c.set("greeting", "hello").unwrap();
    assert_eq!(c.get::<_, String>("greeting").unwrap(), "hello");
    assert_eq!(c.incr::<_, _, i64>("visits", 1).unwrap(), 1);
    assert_eq!(c.incr::<_, _, i64>("visits", 41).unwrap(), 42);
    assert_eq!(c.decr::<_, _, i64>("visits", 2).unwrap(), 40);
    assert_eq!(c.get::<_, String>("visits").unwrap(), "40");
    assert_eq!(c.sadd::<_, _, i64>("tags", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(c.sadd::<_, _, i64>("tags", "a").unwrap(), 0);
    assert_eq!(c.srem::<_, _, i64>("tags", "b").unwrap(), 1);
    let mut members: Vec<String> = c.smembers("tags").unwrap();
    members.sort();
    assert_eq!(members, ["a", "c"]);
    assert!(c.sismember::<_, _, bool>("tags", "c").unwrap());
    assert_eq!(c.scard::<_, i64>("tags").unwrap(), 2);
    let _: () = c.hset_multiple("user:1", &[("name", "ada"), ("lang", "rust")]).unwrap();
    assert_eq!(c.hget::<_, _, String>("user:1", "name").unwrap(), "ada");
    assert_eq!(c.hlen::<_, i64>("user:1").unwrap(), 2);
    assert_eq!(c.hdel::<_, _, i64>("user:1", "lang").unwrap(), 1);
    let all: std::collections::HashMap<String, String> = c.hgetall("user:1").unwrap();
    assert_eq!(all.len(), 1);
    let t: String = redis::cmd("TYPE").arg("user:1").query(&mut c).unwrap();
    assert_eq!(t, "hash");

    // A command on a key of another type answers WRONGTYPE, as Redis does.
    let err = c.get::<_, String>("tags").unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    let err = c.incr::<_, _, i64>("greeting", 1).unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");

    let _: () = c.mset(&[("m1", "1"), ("m2", "2")]).unwrap();
    let got: Vec<Option<String>> = c.mget(&["m1", "missing", "m2", "tags"]).unwrap();
    assert_eq!(got, [Some("1".into()), None, Some("2".into()), None]);
    assert_eq!(c.del::<_, i64>(&["m1", "m2", "missing"]).unwrap(), 2);
    assert_eq!(c.exists::<_, i64>(&["greeting", "tags", "missing"]).unwrap(), 2);

    let mut keys: Vec<String> = c.scan_match("user:*").unwrap().collect();
    keys.sort();
    assert_eq!(keys, ["user:1"]);
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, 4);

    // A conditional write is decided by the key's owner.
    let set: Value = redis::cmd("SET").arg("greeting").arg("x").arg("NX").query(&mut c).unwrap();
    assert_eq!(set, Value::Nil);
    let err: RedisResult<Value> = redis::cmd("NOSUCHCOMMAND").query(&mut c);
    assert!(err.unwrap_err().to_string().contains("unknown command"));
    // ... and the connection keeps working.
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_transactional_pipeline_applies_all_together() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let (a, b, n): (String, String, i64) = redis::pipe()
        .atomic()
        .set("acct:a", "90")
        .ignore()
        .set("acct:b", "110")
        .ignore()
        .get("acct:a")
        .get("acct:b")
        .incr("transfers", 1)
        .query(&mut c)
        .unwrap();
    assert_eq!((a.as_str(), b.as_str(), n), ("90", "110", 1));
    // A transaction with a malformed command is discarded whole.
    let r: RedisResult<Value> = redis::pipe().atomic().set("acct:a", "0").cmd("SET").arg("only-key").query(&mut c);
    assert!(r.is_err());
    assert_eq!(c.get::<_, String>("acct:a").unwrap(), "90");
    // A long plain pipeline answers every command, in order.
    let mut p = redis::pipe();
    for i in 0..2_000 {
        p.incr("piped", 1);
        p.get(format!("k{}", i % 7));
    }
    let replies: Vec<Value> = p.query(&mut c).unwrap();
    assert_eq!(replies.len(), 4_000);
    assert_eq!(replies[3_998], Value::Int(2_000));
}

#[test]
fn keys_expire() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let _: () = c.set_ex("session", "s", 1).unwrap();
    let _: () = c.set("later", "l").unwrap();
    assert!(c.pexpire::<_, bool>("later", 300).unwrap());
    let _: () = c.set("kept", "k").unwrap();
    assert!(c.expire::<_, bool>("kept", 1).unwrap());
    assert!(c.persist::<_, bool>("kept").unwrap());
    let ttl: i64 = c.ttl("session").unwrap();
    assert_eq!(ttl, 1);
    let pttl: i64 = c.pttl("later").unwrap();
    assert!(pttl > 0 && pttl <= 300, "{pttl}");
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(c.get::<_, Option<String>>("later").unwrap(), None);
    assert_eq!(c.ttl::<_, i64>("later").unwrap(), -2);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.get::<_, Option<String>>("session").unwrap(), None);
    assert_eq!(c.get::<_, Option<String>>("kept").unwrap(), Some("k".into()));
    assert_eq!(c.ttl::<_, i64>("kept").unwrap(), -1);
}

fn cli(node: &TestNode, args: &[&str]) -> String {
    let out =
        Command::new(tool("redis-cli").unwrap()).args(["-p", &node.resp_port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_cli_works() {
    if tool("redis-cli").is_none() {
        return;
    }
    let node = TestNode::start(&["--durability", "async"]);
    assert_eq!(cli(&node, &["SET", "k", "v"]), "OK");
    assert_eq!(cli(&node, &["GET", "k"]), "v");
    assert_eq!(cli(&node, &["INCR", "n"]), "1");
    assert_eq!(cli(&node, &["SADD", "s", "x", "y"]), "2");
    assert_eq!(cli(&node, &["HSET", "h", "f", "v"]), "1");
    assert_eq!(cli(&node, &["HGET", "h", "f"]), "v");
    assert_eq!(cli(&node, &["GET", "s"]), "WRONGTYPE Operation against a key holding the wrong kind of value");
    assert_eq!(
        cli(&node, &["HSET", "k", "f", "v"]),
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    assert_eq!(cli(&node, &["PING"]), "PONG");
    assert!(cli(&node, &["INFO"]).contains("redis_version"));
    let mut keys: Vec<String> = cli(&node, &["--scan"]).lines().map(String::from).collect();
    keys.sort();
    assert_eq!(keys, ["h", "k", "n", "s"]);
}

#[test]
fn redis_benchmark_runs_without_errors() {
    let Some(bench) = tool("redis-benchmark") else { return };
    let node = TestNode::start(&["--durability", "async"]);
    for pipeline in ["1", "16"] {
        let out = Command::new(&bench)
            .args([
                "-p",
                &node.resp_port.to_string(),
                "-t",
                "set,get,incr,sadd",
                "-n",
                "5000",
                "-r",
                "1000",
                "-c",
                "10",
                "-q",
                "-P",
                pipeline,
            ])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        for t in ["SET", "GET", "INCR", "SADD"] {
            assert!(text.contains(&format!("{t}: ")), "no {t} result in: {text}");
        }
        assert!(!text.contains("ERR") && !text.contains("rror"), "{text}");
    }
}

/// A pipeline's commands for other shards travel in groups; every reply must
/// still see the writes sent before it on the same connection, also across
/// multi-key commands and transactions in the middle of the pipeline.
#[test]
fn pipelines_keep_read_your_writes_across_shards() {
    let node = TestNode::start(&["--durability", "async", "--shards", "3"]);
    let mut c = node.redis();
    let mut p = redis::pipe();
    for i in 0..300 {
        p.set(format!("key:{i}"), i).ignore();
        p.get(format!("key:{i}"));
        if i % 50 == 49 {
            p.mget((i - 2..=i).map(|j| format!("key:{j}")).collect::<Vec<_>>());
            p.cmd("MULTI").ignore().incr(format!("key:{i}"), 1).ignore().cmd("EXEC").ignore();
            p.get(format!("key:{i}"));
        }
    }
    let replies: Vec<Value> = p.query(&mut c).unwrap();
    let mut it = replies.into_iter();
    for i in 0..300i64 {
        assert_eq!(redis::from_redis_value::<i64>(&it.next().unwrap()).unwrap(), i, "GET key:{i}");
        if i % 50 == 49 {
            let m: Vec<i64> = redis::from_redis_value(&it.next().unwrap()).unwrap();
            assert_eq!(m, [i - 2, i - 1, i]);
            assert_eq!(redis::from_redis_value::<i64>(&it.next().unwrap()).unwrap(), i + 1, "after MULTI INCR");
        }
    }
    assert!(it.next().is_none());
}
