//! String, hash and set commands beyond the basics, through a client
//! library, each answered as Redis answers it (checked against Redis 7 on
//! this machine when written; the one deliberate difference, INCRBYFLOAT's
//! digits, is in the README).

mod common;

use common::TestNode;
use redis::{Connection, Value};

/// What a command should answer: a value, or an error containing a text.
enum Want {
    Is(Value),
    /// An array of these strings, in any order (a hash's or set's order is its own).
    Sorted(Vec<&'static str>),
    Error(&'static str),
}

fn int(i: i64) -> Want {
    Want::Is(Value::Int(i))
}

fn bulk(s: &str) -> Want {
    Want::Is(Value::BulkString(s.as_bytes().to_vec()))
}

fn array(items: Vec<Value>) -> Want {
    Want::Is(Value::Array(items))
}

fn b(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn check(c: &mut Connection, script: Vec<(&str, Want)>) {
    for (line, want) in script {
        let args: Vec<&str> = line.split(' ').map(|a| if a == "''" { "" } else { a }).collect();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let got: redis::RedisResult<Value> = cmd.query(c);
        match (got, want) {
            (Ok(v), Want::Is(w)) => assert_eq!(v, w, "{line}"),
            (Ok(Value::Array(items)), Want::Sorted(w)) => {
                let mut got: Vec<String> = items.iter().map(|v| redis::from_redis_value(v).unwrap()).collect();
                got.sort();
                assert_eq!(got, w, "{line}");
            }
            (Err(e), Want::Error(text)) => assert!(e.to_string().contains(text), "{line}: {e}"),
            (got, Want::Is(w)) => panic!("{line}: got {got:?}, want {w:?}"),
            (got, Want::Sorted(w)) => panic!("{line}: got {got:?}, want {w:?}"),
            (got, Want::Error(text)) => panic!("{line}: got {got:?}, want an error with {text:?}"),
        }
    }
}

#[test]
fn string_commands_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("SET s hello", Want::Is(Value::Okay)),
            ("APPEND s _world", int(11)),
            ("APPEND fresh abc", int(3)),
            ("STRLEN s", int(11)),
            ("STRLEN nope", int(0)),
            ("GETRANGE s 0 4", bulk("hello")),
            ("GETRANGE s -5 -1", bulk("world")),
            ("GETRANGE s 3 100", bulk("lo_world")),
            ("GETRANGE s 5 2", bulk("")),
            ("GETRANGE nope 0 -1", bulk("")),
            ("GETRANGE s -100 2", bulk("hel")),
            ("SETRANGE s 6 Redis", int(11)),
            ("GET s", bulk("hello_Redis")),
            ("SETRANGE pad 3 x", int(4)),
            ("GET pad", Want::Is(Value::BulkString(b"\0\0\0x".to_vec()))),
            ("SETRANGE nope2 0 ''", int(0)),
            ("EXISTS nope2", int(0)),
            ("SETRANGE s -1 x", Want::Error("offset is out of range")),
            ("SETRANGE s 536870912 x", Want::Error("string exceeds maximum allowed size")),
            ("SETRANGE s 536870912 x", Want::Error("string exceeds maximum allowed size")),
            ("SETRANGE s 536870912 ''", int(11)),
            ("INCRBYFLOAT f 10.5", bulk("10.5")),
            ("INCRBYFLOAT f 0.1", bulk("10.6")),
            ("INCRBYFLOAT f -5", bulk("5.6")),
            ("SET i 10", Want::Is(Value::Okay)),
            ("INCRBYFLOAT i 1.5", bulk("11.5")),
            ("INCRBYFLOAT i 5.0e3", bulk("5011.5")),
            ("INCRBYFLOAT s 1", Want::Error("value is not a valid float")),
            ("INCRBYFLOAT f abc", Want::Error("value is not a valid float")),
            ("INCRBYFLOAT f inf", Want::Error("increment would produce NaN or Infinity")),
            ("INCR cnt", int(1)),
            ("APPEND cnt 5", int(2)),
            ("GET cnt", bulk("15")),
            // GETEX reads, and changes the expiry as asked.
            ("GETEX s", bulk("hello_Redis")),
            ("SET e v", Want::Is(Value::Okay)),
            ("GETEX e EX 100", bulk("v")),
            ("TTL e", int(100)),
            ("GETEX e PERSIST", bulk("v")),
            ("TTL e", int(-1)),
            ("GETEX e PX 0", Want::Error("invalid expire time in 'getex' command")),
            ("GETEX e EX 10 PX 5", Want::Error("syntax error")),
            ("GETEX nope EX 10", Want::Is(Value::Nil)),
            ("GETEX e PXAT 1", bulk("v")),
            ("EXISTS e", int(0)),
            // An APPEND keeps the key's expiry, as Redis does.
            ("SET t v EX 100", Want::Is(Value::Okay)),
            ("APPEND t w", int(2)),
            ("TTL t", int(100)),
            ("SADD set m", int(1)),
            ("APPEND set x", Want::Error("WRONGTYPE")),
            ("STRLEN set", Want::Error("WRONGTYPE")),
            ("GETRANGE set 0 1", Want::Error("WRONGTYPE")),
            ("GETEX set", Want::Error("WRONGTYPE")),
            // The encodings Redis 7.2 gives such values.
            ("SET small 12345", Want::Is(Value::Okay)),
            ("OBJECT ENCODING small", bulk("int")),
            ("OBJECT ENCODING fresh", bulk("embstr")),
            ("SET long aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Want::Is(Value::Okay)),
            ("OBJECT ENCODING long", bulk("raw")),
            ("OBJECT ENCODING cnt", bulk("int")),
            ("SADD ints 1 2 3", int(3)),
            ("OBJECT ENCODING ints", bulk("intset")),
            ("OBJECT ENCODING set", bulk("listpack")),
            ("OBJECT ENCODING nope", Want::Is(Value::Nil)),
            ("OBJECT FREQ small", Want::Error("LFU maxmemory policy is not selected")),
            ("OBJECT FREQ nope", Want::Is(Value::Nil)),
            ("OBJECT REFCOUNT small", int(1)),
            ("OBJECT IDLETIME small", Want::Error("unknown subcommand 'IDLETIME'")),
            ("MEMORY USAGE nope", Want::Is(Value::Nil)),
            ("MEMORY USAGE long SAMPLES x", Want::Error("not an integer")),
        ],
    );
    let bytes: i64 = redis::cmd("MEMORY").arg("USAGE").arg("long").query(&mut c).unwrap();
    assert!((60..1000).contains(&bytes), "{bytes}");
    let time: Vec<String> = redis::cmd("TIME").query(&mut c).unwrap();
    let secs: u64 = time[0].parse().unwrap();
    let micros: u64 = time[1].parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(secs.abs_diff(now) <= 5 && micros < 1_000_000, "{time:?}");
}

#[test]
fn hash_and_set_commands_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("HSET h a 1 b 2", int(2)),
            ("HMGET h a x b", array(vec![b("1"), Value::Nil, b("2")])),
            ("HKEYS h", Want::Sorted(vec!["a", "b"])),
            ("HVALS h", Want::Sorted(vec!["1", "2"])),
            ("HEXISTS h a", int(1)),
            ("HEXISTS h z", int(0)),
            ("HSTRLEN h a", int(1)),
            ("HSTRLEN h z", int(0)),
            ("HINCRBY h a 5", int(6)),
            ("HINCRBY h n -3", int(-3)),
            ("HINCRBY h a x", Want::Error("value is not an integer or out of range")),
            ("HSET h t text", int(1)),
            ("HINCRBY h t 1", Want::Error("hash value is not an integer")),
            ("HINCRBY h a 9223372036854775807", Want::Error("increment or decrement would overflow")),
            ("HSETNX h a 9", int(0)),
            ("HSETNX h q 9", int(1)),
            ("HGET h q", bulk("9")),
            ("HMGET nope a b", array(vec![Value::Nil, Value::Nil])),
            ("HKEYS nope", array(vec![])),
            ("HEXISTS nope a", int(0)),
            ("SADD st a b", int(2)),
            ("SMISMEMBER st a z b", array(vec![Value::Int(1), Value::Int(0), Value::Int(1)])),
            ("SMISMEMBER nope a", array(vec![Value::Int(0)])),
            ("SET s v", Want::Is(Value::Okay)),
            ("SMISMEMBER s a", Want::Error("WRONGTYPE")),
            ("HMGET s a", Want::Error("WRONGTYPE")),
            ("HINCRBY s a 1", Want::Error("WRONGTYPE")),
            ("HSETNX s a 1", Want::Error("WRONGTYPE")),
            ("HKEYS s", Want::Error("WRONGTYPE")),
            ("HMGET h", Want::Error("wrong number of arguments for 'hmget' command")),
            ("SMISMEMBER st", Want::Error("wrong number of arguments for 'smismember' command")),
        ],
    );
    // On a hash too big for whole undo records (the window log keeps the
    // fields these name; crates/store/tests/window.rs checks their past).
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.hset("big", format!("f{i}"), i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    check(&mut c, vec![("HINCRBY big f7 100", int(107)), ("HSETNX big new 1", int(1)), ("HLEN big", int(101))]);
}

#[test]
fn set_algebra_moves_and_pops_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("SADD a 1 2 3 4", int(4)),
            ("SADD b 3 4 5", int(3)),
            ("SADD c 4 6", int(2)),
            ("SINTER a b", Want::Sorted(vec!["3", "4"])),
            ("SINTER a b c", Want::Sorted(vec!["4"])),
            ("SINTER a nope", Want::Sorted(vec![])),
            ("SUNION a b c", Want::Sorted(vec!["1", "2", "3", "4", "5", "6"])),
            ("SDIFF a b", Want::Sorted(vec!["1", "2"])),
            ("SDIFF a b c", Want::Sorted(vec!["1", "2"])),
            ("SDIFF nope a", Want::Sorted(vec![])),
            ("SINTERCARD 2 a b", int(2)),
            ("SINTERCARD 2 a b LIMIT 1", int(1)),
            ("SINTERCARD 3 a b c LIMIT 0", int(1)),
            ("SINTERCARD 0 a", Want::Error("numkeys should be greater than 0")),
            ("SINTERCARD 3 a b", Want::Error("Number of keys can't be greater than number of args")),
            ("SINTERCARD 1 a LIMIT -1", Want::Error("LIMIT can't be negative")),
            ("SINTERSTORE d a b", int(2)),
            ("SMEMBERS d", Want::Sorted(vec!["3", "4"])),
            ("SUNIONSTORE d a c", int(5)),
            ("SMEMBERS d", Want::Sorted(vec!["1", "2", "3", "4", "6"])),
            ("SDIFFSTORE d a a", int(0)),
            ("EXISTS d", int(0)),
            ("SINTERSTORE a a b", int(2)),
            ("SMEMBERS a", Want::Sorted(vec!["3", "4"])),
            ("SMOVE a b 3", int(1)),
            ("SMOVE a b 3", int(0)),
            ("SMOVE a fresh 4", int(1)),
            ("EXISTS a", int(0)),
            ("SMEMBERS fresh", Want::Sorted(vec!["4"])),
            ("SMEMBERS b", Want::Sorted(vec!["3", "4", "5"])),
            ("SET str v", Want::Is(Value::Okay)),
            ("SINTER b str", Want::Error("WRONGTYPE")),
            ("SUNIONSTORE d b str", Want::Error("WRONGTYPE")),
            ("SMOVE b str 3", Want::Error("WRONGTYPE")),
            ("SMOVE str b 3", Want::Error("WRONGTYPE")),
            ("SMOVE nope str 3", int(0)),
            ("SPOP str", Want::Error("WRONGTYPE")),
            ("SRANDMEMBER str", Want::Error("WRONGTYPE")),
            ("SPOP nope", Want::Is(Value::Nil)),
            ("SPOP nope 3", Want::Sorted(vec![])),
            ("SRANDMEMBER nope", Want::Is(Value::Nil)),
            ("SRANDMEMBER nope 3", Want::Sorted(vec![])),
            ("SPOP b -1", Want::Error("value is out of range, must be positive")),
            ("SPOP b 1 2", Want::Error("syntax error")),
            ("SPOP b abc", Want::Error("value is out of range, must be positive")),
            ("SRANDMEMBER b 5", Want::Sorted(vec!["3", "4", "5"])),
            ("SPOP b 0", Want::Sorted(vec![])),
            ("SPOP b 5", Want::Sorted(vec!["3", "4", "5"])),
            ("EXISTS b", int(0)),
        ],
    );
    // Picks are members, distinct up to the set's size, repeated with a negative count.
    let _: () = redis::cmd("SADD").arg("p").arg(&["x", "y", "z"]).query(&mut c).unwrap();
    let two: Vec<String> = redis::cmd("SRANDMEMBER").arg("p").arg(2).query(&mut c).unwrap();
    assert_eq!(two.len(), 2);
    assert_ne!(two[0], two[1]);
    let many: Vec<String> = redis::cmd("SRANDMEMBER").arg("p").arg(-10).query(&mut c).unwrap();
    assert_eq!(many.len(), 10);
    assert!(many.iter().all(|m| ["x", "y", "z"].contains(&m.as_str())));
    let popped: String = redis::cmd("SPOP").arg("p").query(&mut c).unwrap();
    let left: Vec<String> = redis::cmd("SMEMBERS").arg("p").query(&mut c).unwrap();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&popped));
}

#[test]
fn sscan_hscan_and_zscan_page_through_a_collection() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("SADD s a", int(1)),
            ("SSCAN s 0 MATCH a", array(vec![b("0"), Value::Array(vec![b("a")])])),
            ("SSCAN s 0 MATCH b", array(vec![b("0"), Value::Array(vec![])])),
            ("HSET h f1 v1 g2 v2", int(2)),
            ("HSCAN h 0 MATCH f*", array(vec![b("0"), Value::Array(vec![b("f1"), b("v1")])])),
            ("ZADD z 1.5 a", int(1)),
            ("ZSCAN z 0", array(vec![b("0"), Value::Array(vec![b("a"), b("1.5")])])),
            ("SSCAN nope 0", array(vec![b("0"), Value::Array(vec![])])),
            ("SSCAN h 0", Want::Error("WRONGTYPE")),
            ("ZSCAN s 0", Want::Error("WRONGTYPE")),
            ("HSCAN h x", Want::Error("invalid cursor")),
            ("SSCAN s 0 COUNT 0", Want::Error("syntax error")),
            ("SSCAN s 0 TYPE set", Want::Error("syntax error")),
            ("SSCAN s", Want::Error("wrong number of arguments for 'sscan' command")),
        ],
    );
    // A small collection comes in one page, whatever its COUNT.
    let _: () = redis::cmd("SADD").arg("s").arg(&["b", "c"]).query(&mut c).unwrap();
    let (next, mut page): (u64, Vec<String>) =
        redis::cmd("SSCAN").arg("s").arg(0).arg("COUNT").arg(1).query(&mut c).unwrap();
    page.sort();
    assert_eq!((next, page), (0, vec!["a".to_string(), "b".into(), "c".into()]));
    // A big set comes in pages that end with cursor 0 and hold each member.
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let _: () = redis::cmd("SADD").arg("big").arg(&members).query(&mut c).unwrap();
    let (mut cursor, mut seen, mut pages) = (0u64, Vec::new(), 0);
    loop {
        let (next, page): (u64, Vec<String>) =
            redis::cmd("SSCAN").arg("big").arg(cursor).arg("COUNT").arg(100).query(&mut c).unwrap();
        assert!(page.len() <= 100, "a page of {}", page.len());
        seen.extend(page);
        pages += 1;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(pages >= 10, "{pages} pages");
    seen.sort();
    let mut want = members.clone();
    want.sort();
    assert_eq!(seen, want);
    // MATCH filters what a page walked.
    let mut matched = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) =
            redis::cmd("SSCAN").arg("big").arg(cursor).arg("MATCH").arg("m99*").query(&mut c).unwrap();
        matched.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    matched.sort();
    assert_eq!(matched, vec!["m99", "m990", "m991", "m992", "m993", "m994", "m995", "m996", "m997", "m998", "m999"]);
}

#[test]
fn config_set_and_select_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("CONFIG SET hash-max-ziplist-entries 256 save ''", Want::Is(Value::Okay)),
            ("CONFIG GET hash-max-ziplist-entries", array(vec![b("hash-max-ziplist-entries"), b("256")])),
            ("CONFIG GET save", array(vec![b("save"), b("")])),
            ("CONFIG SET notify-keyspace-events ''", Want::Is(Value::Okay)),
            ("CONFIG SET notify-keyspace-events KEA", Want::Is(Value::Okay)),
            ("CONFIG SET notify-keyspace-events ''", Want::Is(Value::Okay)),
            ("CONFIG SET maxclients 10", Want::Error("--max-clients")),
            ("CONFIG SET proto-max-bulk-len 10", Want::Error("between 1048576 and")),
            ("CONFIG SET proto-max-bulk-len 1mb", Want::Is(Value::Okay)),
            ("CONFIG SET proto-max-bulk-len 512mb", Want::Is(Value::Okay)),
            ("CONFIG SET foo bar", Want::Error("Unknown option or number of arguments for CONFIG SET - 'foo'")),
            ("CONFIG SET save", Want::Error("wrong number of arguments for 'config|set' command")),
            // All or nothing: the unknown one stops the known one too.
            ("CONFIG SET hz 20 foo bar", Want::Error("Unknown option")),
            ("CONFIG GET hz", array(vec![])),
            ("CONFIG RESETSTAT", Want::Is(Value::Okay)),
            ("CONFIG FOO", Want::Error("unknown subcommand 'FOO'")),
            // The numbered databases are namespaces.
            ("SELECT 1", Want::Is(Value::Okay)),
            ("SET k one", Want::Is(Value::Okay)),
            ("SELECT 0", Want::Is(Value::Okay)),
            ("GET k", Want::Is(Value::Nil)),
            ("SELECT 15", Want::Is(Value::Okay)),
            ("SELECT 16", Want::Error("DB index is out of range")),
            ("SELECT -1", Want::Error("DB index is out of range")),
            ("SELECT 01", Want::Error("value is not an integer or out of range")),
            ("SELECT +1", Want::Error("value is not an integer or out of range")),
            ("SELECT 1", Want::Is(Value::Okay)),
            ("GET k", bulk("one")),
            ("CONFIG GET databases", array(vec![b("databases"), b("16")])),
        ],
    );
    // Each parameter once, however many patterns name it.
    let max: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxclients").arg("max*").query(&mut c).unwrap();
    assert_eq!(max.len(), 2, "{max:?}");
    // INFO by section, with the fields clients read.
    let mut info = |section: Option<&str>| -> String {
        let mut cmd = redis::cmd("INFO");
        if let Some(s) = section {
            cmd.arg(s);
        }
        cmd.query(&mut c).unwrap()
    };
    let all = info(None);
    for field in ["# Server", "redis_version:", "# Memory", "used_memory:", "# CPU", "used_cpu_user:", "# Keyspace"] {
        assert!(all.contains(field), "{field} missing from {all}");
    }
    let memory = info(Some("memory"));
    assert!(memory.starts_with("# Memory\r\nused_memory:") && !memory.contains("# Server"), "{memory}");
    let cpu = info(Some("CPU"));
    let user: f64 = cpu.lines().find_map(|l| l.strip_prefix("used_cpu_user:")).unwrap().trim().parse().unwrap();
    assert!(user >= 0.0, "{cpu}");
    assert_eq!(info(Some("nosuchsection")), "");
    // FLUSHDB empties the database it is in, over many pages; FLUSHALL all 16.
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.set(format!("many:{i}"), i).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    check(
        &mut c,
        vec![
            ("DBSIZE", int(10_001)),
            ("FLUSHDB FOO", Want::Error("syntax error")),
            ("FLUSHDB ASYNC", Want::Is(Value::Okay)),
            ("DBSIZE", int(0)),
            ("SELECT 0", Want::Is(Value::Okay)),
            ("SET zero z", Want::Is(Value::Okay)),
            ("SELECT 2", Want::Is(Value::Okay)),
            ("SET two t", Want::Is(Value::Okay)),
            ("FLUSHDB", Want::Is(Value::Okay)),
            ("SELECT 0", Want::Is(Value::Okay)),
            ("GET zero", bulk("z")),
            ("SELECT 2", Want::Is(Value::Okay)),
            ("SET two t", Want::Is(Value::Okay)),
            ("FLUSHALL SYNC", Want::Is(Value::Okay)),
            ("DBSIZE", int(0)),
            ("SELECT 0", Want::Is(Value::Okay)),
            ("DBSIZE", int(0)),
        ],
    );
}

#[test]
fn rename_and_copy_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("SET a 1", Want::Is(Value::Okay)),
            ("RENAME a b", Want::Is(Value::Okay)),
            ("GET b", bulk("1")),
            ("EXISTS a", int(0)),
            ("RENAME nope x", Want::Error("no such key")),
            ("RENAMENX nope x", Want::Error("no such key")),
            ("RENAME b b", Want::Is(Value::Okay)),
            ("RENAMENX b b", int(0)),
            ("SET c 2", Want::Is(Value::Okay)),
            ("RENAMENX b c", int(0)),
            ("RENAMENX b d", int(1)),
            ("GET d", bulk("1")),
            // Any type, with its expiry.
            ("SADD s x y", int(2)),
            ("EXPIRE s 100", int(1)),
            ("RENAME s t", Want::Is(Value::Okay)),
            ("TTL t", int(100)),
            ("SMEMBERS t", Want::Sorted(vec!["x", "y"])),
            ("COPY t u", int(1)),
            ("COPY t u", int(0)),
            ("COPY t u REPLACE", int(1)),
            ("SMEMBERS u", Want::Sorted(vec!["x", "y"])),
            ("TTL u", int(100)),
            ("COPY nope v", int(0)),
            ("COPY t t", Want::Error("source and destination objects are the same")),
            ("COPY t w FOO", Want::Error("syntax error")),
            ("COPY t w DB 1", Want::Error("not supported yet")),
            ("INCR n", int(1)),
            ("COPY n m", int(1)),
            ("INCR m", int(2)),
            ("GET n", bulk("1")),
            ("HSET h f v", int(1)),
            ("RENAME h c", Want::Is(Value::Okay)),
            ("HGET c f", bulk("v")),
            ("TYPE c", Want::Is(Value::SimpleString("hash".into()))),
            // Inside MULTI a RENAME sees what was queued before it, and
            // what comes after sees the rename.
            ("MULTI", Want::Is(Value::Okay)),
            ("HSET c g w", Want::Is(Value::SimpleString("QUEUED".into()))),
            ("RENAME c e", Want::Is(Value::SimpleString("QUEUED".into()))),
            ("HGET e g", Want::Is(Value::SimpleString("QUEUED".into()))),
            ("EXISTS c", Want::Is(Value::SimpleString("QUEUED".into()))),
            ("EXEC", Want::Is(Value::Array(vec![Value::Int(1), Value::Okay, b("w"), Value::Int(0)]))),
            ("HGET e f", bulk("v")),
            ("EXISTS c", int(0)),
        ],
    );
}

/// A client that negotiates RESP3 (`HELLO 3` on connect) gets maps, sets
/// and nulls; one that does not, RESP2's arrays.
#[test]
fn a_resp3_client_gets_maps_sets_and_nulls() {
    let node = TestNode::start(&["--durability", "async"]);
    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", node.resp_addr())).unwrap();
    let mut c = client.get_connection_with_timeout(std::time::Duration::from_secs(5)).unwrap();
    check(&mut c, vec![("HSET h a 1", int(1)), ("SADD s x", int(1))]);
    let all: Value = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert_eq!(all, Value::Map(vec![(b("a"), b("1"))]));
    let members: Value = redis::cmd("SMEMBERS").arg("s").query(&mut c).unwrap();
    assert_eq!(members, Value::Set(vec![b("x")]));
    let inter: Value = redis::cmd("SINTER").arg("s").arg("s").query(&mut c).unwrap();
    assert_eq!(inter, Value::Set(vec![b("x")]));
    let config: Value = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut c).unwrap();
    assert_eq!(config, Value::Map(vec![(b("save"), b(""))]));
    let nothing: Value = redis::cmd("GET").arg("nope").query(&mut c).unwrap();
    assert_eq!(nothing, Value::Nil);
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut c).unwrap();
    let Value::Map(fields) = hello else { panic!("HELLO 3 answers a map: {hello:?}") };
    assert!(fields.contains(&(b("proto"), Value::Int(3))), "{fields:?}");
    // The same commands on a RESP2 connection.
    let mut old = node.redis();
    let all: Value = redis::cmd("HGETALL").arg("h").query(&mut old).unwrap();
    assert_eq!(all, Value::Array(vec![b("a"), b("1")]));
    check(&mut old, vec![("HELLO 4", Want::Error("unsupported protocol version"))]);
}

#[test]
fn client_list_info_and_kill() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut me = node.redis();
    let mut other = node.redis();
    check(&mut me, vec![("CLIENT SETNAME me", Want::Is(Value::Okay))]);
    check(&mut other, vec![("CLIENT SETNAME other", Want::Is(Value::Okay)), ("SELECT 3", Want::Is(Value::Okay))]);
    let other_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut other).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut me).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let theirs = lines.iter().find(|l| l.starts_with(&format!("id={other_id} "))).expect("the other client is listed");
    assert!(
        theirs.contains(" name=other ") && theirs.contains(" db=3 ") && theirs.contains(" addr=127.0.0.1:"),
        "{theirs}"
    );
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut me).unwrap();
    assert!(info.contains(" name=me ") && info.contains(" db=0 ") && info.contains(" resp=2 "), "{info}");
    check(
        &mut me,
        vec![
            ("CLIENT KILL 10.0.0.1:1", Want::Error("No such client")),
            ("CLIENT KILL ID 999999", int(0)),
            ("CLIENT KILL ID abc", Want::Error("client-id should be greater than 0")),
            ("CLIENT KILL FOO bar", Want::Error("syntax error")),
            ("CLIENT KILL USER default SKIPME yes", int(1)),
        ],
    );
    // The other connection is closed; this one goes on.
    let gone: redis::RedisResult<String> = redis::cmd("PING").query(&mut other);
    assert!(gone.is_err(), "the killed connection still answers");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut me).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
}

fn list(items: &[&str]) -> Want {
    array(items.iter().map(|i| b(i)).collect())
}

#[test]
fn list_commands_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("RPUSH l a b c", int(3)),
            ("LPUSH l z y", int(5)),
            ("LRANGE l 0 -1", list(&["y", "z", "a", "b", "c"])),
            ("LRANGE l -2 -1", list(&["b", "c"])),
            ("LRANGE l -100 100", list(&["y", "z", "a", "b", "c"])),
            ("LRANGE l 3 1", list(&[])),
            ("LRANGE nol 0 -1", list(&[])),
            ("LLEN l", int(5)),
            ("LLEN nol", int(0)),
            ("LINDEX l -1", bulk("c")),
            ("LINDEX l 5", Want::Is(Value::Nil)),
            ("LINDEX l x", Want::Error("value is not an integer or out of range")),
            ("LSET l 1 Z", Want::Is(Value::Okay)),
            ("LSET l 9 x", Want::Error("index out of range")),
            ("LSET nol 0 x", Want::Error("no such key")),
            ("RPUSH l a a b a", int(9)),
            ("LREM l 2 a", int(2)),
            ("LREM l -1 a", int(1)),
            ("LRANGE l 0 -1", list(&["y", "Z", "b", "c", "a", "b"])),
            ("LREM l 0 b", int(2)),
            ("LTRIM l 1 -2", Want::Is(Value::Okay)),
            ("LRANGE l 0 -1", list(&["Z", "c"])),
            // Trimming everything takes the key, as popping the last item does.
            ("LTRIM l 5 10", Want::Is(Value::Okay)),
            ("EXISTS l", int(0)),
            ("RPUSH l 1 2 3 4 5", int(5)),
            ("LPOP l", bulk("1")),
            ("RPOP l", bulk("5")),
            ("LPOP l 2", list(&["2", "3"])),
            ("RPOP l 0", list(&[])),
            ("RPOP l 5", list(&["4"])),
            ("EXISTS l", int(0)),
            ("LPOP l", Want::Is(Value::Nil)),
            ("LPOP l 1", Want::Is(Value::Nil)),
            ("LPOP l -1", Want::Error("value is out of range, must be positive")),
            ("LPUSHX l a", int(0)),
            ("LPUSH l a", int(1)),
            ("RPUSHX l b", int(2)),
            ("SET s x", Want::Is(Value::Okay)),
            ("LPUSH s a", Want::Error("WRONGTYPE")),
            ("LRANGE s 0 1", Want::Error("WRONGTYPE")),
            ("TYPE l", Want::Is(Value::SimpleString("list".into()))),
            // LMOVE, RPOPLPUSH, and a list moved onto itself (a rotation).
            ("LMOVE l l2 LEFT UP", Want::Error("syntax error")),
            ("LMOVE l l2 left right", bulk("a")),
            ("RPOPLPUSH l l2", bulk("b")),
            ("LRANGE l2 0 -1", list(&["b", "a"])),
            ("EXISTS l", int(0)),
            ("LMOVE nol l2 left left", Want::Is(Value::Nil)),
            ("LMOVE l2 s left left", Want::Error("WRONGTYPE")),
            ("LMOVE l2 l2 left right", bulk("b")),
            ("LRANGE l2 0 -1", list(&["a", "b"])),
            // Blocking forms answer at once when there is an item.
            ("BLPOP nol l2 0.1", list(&["l2", "a"])),
            ("BLPOP nol 0.05", Want::Is(Value::Nil)),
            ("BLPOP nol -1", Want::Error("timeout is negative")),
            ("BLPOP nol x", Want::Error("timeout is not a float or out of range")),
            ("BLMOVE l2 l3 right left 0.1", bulk("b")),
            ("BRPOPLPUSH nol l3 0.05", Want::Is(Value::Nil)),
        ],
    );

    // A blocked client is woken by a push from another, and only one of
    // two waiters gets each item.
    let addr = node.resp_addr();
    let waiter = |key: &'static str| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            let got: Option<(String, String)> = redis::cmd("BRPOP").arg(key).arg(5).query(&mut c).unwrap();
            got
        })
    };
    let (a, b) = (waiter("jobs"), waiter("jobs"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("LPUSH jobs one", int(1))]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("LPUSH jobs two", int(1))]);
    let mut got: Vec<String> = [a.join().unwrap(), b.join().unwrap()].into_iter().map(|g| g.unwrap().1).collect();
    got.sort();
    assert_eq!(got, ["one", "two"]);
    check(&mut c, vec![("LLEN jobs", int(0))]);

    // A blocked BLMOVE is woken too; a timeout answers nil.
    let blmove = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            let got: Option<String> =
                redis::cmd("BLMOVE").arg("src").arg("dst").arg("LEFT").arg("RIGHT").arg(5).query(&mut c).unwrap();
            got
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("RPUSH src item", int(1))]);
    assert_eq!(blmove.join().unwrap().as_deref(), Some("item"));
    check(&mut c, vec![("LRANGE dst 0 -1", list(&["item"])), ("EXISTS src", int(0))]);

    // A blocked client that hangs up takes nothing: the next push stays.
    {
        use std::io::Write;
        let mut gone = std::net::TcpStream::connect(&addr).unwrap();
        gone.write_all(b"*3\r\n$5\r\nBLPOP\r\n$6\r\norphan\r\n$1\r\n0\r\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("RPUSH orphan job", int(1))]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("LRANGE orphan 0 -1", list(&["job"]))]);
}

#[test]
fn lmpop_zmpop_and_bzpopmin_pop_from_the_first_key_that_has_something() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let nested = |key: &str, items: &[&str]| array(vec![b(key), Value::Array(items.iter().map(|i| b(i)).collect())]);
    let scored = |key: &str, pairs: &[(&str, &str)]| {
        let pairs = pairs.iter().map(|(m, s)| Value::Array(vec![b(m), b(s)])).collect();
        array(vec![b(key), Value::Array(pairs)])
    };
    check(
        &mut c,
        vec![
            ("RPUSH l a b c d", int(4)),
            ("ZADD z 1 a 2.5 b 3 c", int(3)),
            ("LMPOP 2 nol l LEFT", nested("l", &["a"])),
            ("LMPOP 1 l RIGHT COUNT 2", nested("l", &["d", "c"])),
            ("LMPOP 1 l LEFT COUNT 5", nested("l", &["b"])),
            ("LMPOP 1 l LEFT", Want::Is(Value::Nil)),
            ("LMPOP 0 l LEFT", Want::Error("numkeys should be greater than 0")),
            ("LMPOP 1 l UP", Want::Error("syntax error")),
            ("LMPOP 2 l LEFT", Want::Error("syntax error")),
            ("LMPOP 1 l LEFT COUNT 0", Want::Error("count should be greater than 0")),
            ("LMPOP 1 l LEFT COUNT 1 COUNT 2", Want::Error("syntax error")),
            ("ZMPOP 1 z MIN", scored("z", &[("a", "1")])),
            ("ZMPOP 1 z MAX COUNT 5", scored("z", &[("c", "3"), ("b", "2.5")])),
            ("ZMPOP 1 z MAX", Want::Is(Value::Nil)),
            ("ZMPOP 1 z LEFT", Want::Error("syntax error")),
            ("BZPOPMIN z 0.05", Want::Is(Value::Nil)),
            ("ZADD z 4 d 5 e", int(2)),
            ("BZPOPMAX nol z 0", array(vec![b("z"), b("e"), b("5")])),
            ("BZPOPMIN z 0", array(vec![b("z"), b("d"), b("4")])),
            ("BLMPOP 0.05 1 l LEFT", Want::Is(Value::Nil)),
            ("BZMPOP -1 1 z MIN", Want::Error("timeout is negative")),
            ("SET s v", Want::Is(Value::Okay)),
            ("LMPOP 1 s LEFT", Want::Error("WRONGTYPE")),
            ("BZPOPMIN s 0", Want::Error("WRONGTYPE")),
        ],
    );
    // A blocked BZPOPMIN and a blocked BLMPOP are woken by a write.
    let addr = node.resp_addr();
    let blocked = |args: &'static [&'static str]| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
            let mut c = client.get_connection().unwrap();
            let got: Value = redis::cmd(args[0]).arg(&args[1..]).query(&mut c).unwrap();
            got
        })
    };
    let zpop = blocked(&["BZPOPMIN", "zq", "5"]);
    let lmpop = blocked(&["BLMPOP", "5", "2", "nol", "lq", "RIGHT", "COUNT", "2"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    check(&mut c, vec![("ZADD zq 7 m", int(1)), ("RPUSH lq x y z", int(3))]);
    assert_eq!(zpop.join().unwrap(), Value::Array(vec![b("zq"), b("m"), b("7")]));
    assert_eq!(lmpop.join().unwrap(), Value::Array(vec![b("lq"), Value::Array(vec![b("z"), b("y")])]));
}

#[test]
fn lpos_linsert_hrandfield_zrandmember_hincrbyfloat_touch_and_expiretime_answer_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let ints = |v: &[i64]| array(v.iter().map(|i| Value::Int(*i)).collect());
    check(
        &mut c,
        vec![
            ("RPUSH l a b c a b c a", int(7)),
            ("LPOS l a", int(0)),
            ("LPOS l a RANK 2", int(3)),
            ("LPOS l a RANK -1", int(6)),
            ("LPOS l a COUNT 0", ints(&[0, 3, 6])),
            ("LPOS l a COUNT 2 RANK -1", ints(&[6, 3])),
            ("LPOS l a MAXLEN 3 COUNT 0", ints(&[0])),
            ("LPOS l x", Want::Is(Value::Nil)),
            ("LPOS l x COUNT 1", ints(&[])),
            ("LPOS nol a COUNT 1", ints(&[])),
            ("LPOS l a RANK 0", Want::Error("RANK can't be zero")),
            ("LPOS l a COUNT -1", Want::Error("COUNT can't be negative")),
            ("LPOS l a MAXLEN -1", Want::Error("MAXLEN can't be negative")),
            ("LPOS l a RANK", Want::Error("syntax error")),
            ("RPUSH ins a b c d e", int(5)),
            ("LINSERT ins BEFORE c X", int(6)),
            ("LINSERT ins AFTER c Y", int(7)),
            ("LINSERT ins BEFORE a H", int(8)),
            ("LINSERT ins AFTER e T", int(9)),
            ("LINSERT ins AFTER X X2", int(10)),
            ("LRANGE ins 0 -1", list(&["H", "a", "b", "X", "X2", "c", "Y", "d", "e", "T"])),
            ("LINSERT ins BEFORE nope Z", int(-1)),
            ("LINSERT nol BEFORE a b", int(0)),
            ("LINSERT ins MIDDLE a b", Want::Error("syntax error")),
            ("HSET h f v", int(1)),
            ("HRANDFIELD h", bulk("f")),
            ("HRANDFIELD h 2", list(&["f"])),
            ("HRANDFIELD h -2 WITHVALUES", list(&["f", "v", "f", "v"])),
            ("HRANDFIELD h 1 x", Want::Error("syntax error")),
            ("HRANDFIELD h x", Want::Error("value is not an integer or out of range")),
            ("HRANDFIELD noh", Want::Is(Value::Nil)),
            ("HRANDFIELD noh 2", list(&[])),
            ("HSET n s abc f 10.5", int(2)),
            ("HINCRBYFLOAT n f 0.1", bulk("10.6")),
            ("HINCRBYFLOAT n new 5e3", bulk("5000")),
            ("HINCRBYFLOAT n f -10.6", bulk("0")),
            ("HINCRBYFLOAT n s 1", Want::Error("hash value is not a float")),
            ("HINCRBYFLOAT n f x", Want::Error("value is not a valid float")),
            ("HINCRBYFLOAT n f inf", Want::Error("value is NaN or Infinity")),
            ("ZADD z 1.5 m", int(1)),
            ("ZRANDMEMBER z", bulk("m")),
            ("ZRANDMEMBER z 1 WITHSCORES", list(&["m", "1.5"])),
            ("ZRANDMEMBER z -2", list(&["m", "m"])),
            ("ZRANDMEMBER h", Want::Error("WRONGTYPE")),
            ("SET k v PXAT 4102444800000", Want::Is(Value::Okay)),
            ("TOUCH k h nokey", int(2)),
            ("SUBSTR k 0 0", bulk("v")),
            ("PEXPIRETIME k", int(4_102_444_800_000)),
            ("EXPIRETIME k", int(4_102_444_800)),
            ("PEXPIRETIME h", int(-1)),
            ("EXPIRETIME nokey", int(-2)),
        ],
    );
    // A few distinct picks of a big hash, with their values.
    let fields: Vec<(String, String)> = (0..500).map(|i| (format!("f{i}"), format!("v{i}"))).collect();
    let _: () = redis::cmd("HSET").arg("big").arg(&fields).query(&mut c).unwrap();
    let picked: Vec<(String, String)> =
        redis::cmd("HRANDFIELD").arg("big").arg(10).arg("WITHVALUES").query(&mut c).unwrap();
    assert_eq!(picked.len(), 10);
    assert!(picked.iter().all(|(f, v)| f[1..] == v[1..]), "{picked:?}");
    let distinct: std::collections::HashSet<&String> = picked.iter().map(|(f, _)| f).collect();
    assert_eq!(distinct.len(), 10);
}

#[test]
fn zunion_zinter_zdiff_zintercard_and_zlexcount_combine_as_redis_does() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("ZADD a 1 x 2 y 3 z", int(3)),
            ("ZADD b 10 y 20 z 30 w", int(3)),
            ("SADD s x w", int(2)),
            ("SET str v", Want::Is(Value::Okay)),
            ("ZUNION 2 a b", list(&["x", "y", "z", "w"])),
            ("ZUNION 2 a b WITHSCORES", list(&["x", "1", "y", "12", "z", "23", "w", "30"])),
            ("ZUNION 2 a b WEIGHTS 2 1 AGGREGATE MAX WITHSCORES", list(&["x", "2", "y", "10", "z", "20", "w", "30"])),
            ("ZINTER 2 a b WITHSCORES", list(&["y", "12", "z", "23"])),
            ("ZINTER 2 a s", list(&["x"])),
            ("ZDIFF 2 a b WITHSCORES", list(&["x", "1"])),
            ("ZDIFF 2 a s", list(&["y", "z"])),
            ("ZDIFF 1 a WEIGHTS 1", Want::Error("syntax error")),
            ("ZDIFFSTORE d 2 a b", int(1)),
            ("ZRANGE d 0 -1 WITHSCORES", list(&["x", "1"])),
            ("ZDIFFSTORE d 1 a WITHSCORES", Want::Error("syntax error")),
            ("ZINTERCARD 2 a b", int(2)),
            ("ZINTERCARD 2 a b LIMIT 1", int(1)),
            ("ZINTERCARD 0 a", Want::Error("at least 1 input key is needed for 'zintercard' command")),
            ("ZINTERCARD 3 a b", Want::Error("syntax error")),
            ("ZINTERCARD 1 a LIMIT -1", Want::Error("LIMIT can't be negative")),
            ("ZUNION 0 a", Want::Error("at least 1 input key is needed for 'zunion' command")),
            ("ZUNION 2 a str", Want::Error("WRONGTYPE")),
            ("ZUNION 1 nokey", list(&[])),
            ("ZADD lex 0 a 0 b 0 c 0 d", int(4)),
            ("ZLEXCOUNT lex - +", int(4)),
            ("ZLEXCOUNT lex [b (d", int(2)),
            ("ZLEXCOUNT lex x +", Want::Error("min or max not valid string range item")),
            ("ZLEXCOUNT nokey - +", int(0)),
        ],
    );
}

#[test]
fn msetnx_sets_all_or_nothing_and_randomkey_picks_a_key() {
    let node = TestNode::start(&["--durability", "async", "--shards", "2"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("RANDOMKEY", Want::Is(Value::Nil)),
            ("MSETNX a 1 b 2", int(1)),
            ("MSETNX b 3 c 4", int(0)),
            ("MGET a b c", array(vec![b("1"), b("2"), Value::Nil])),
            ("MSETNX x 1 x 2", int(1)),
            ("GET x", bulk("2")),
            ("MSETNX a", Want::Error("wrong number of arguments for 'msetnx' command")),
        ],
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
        seen.insert(key);
    }
    assert!(seen.len() > 1 && seen.iter().all(|k| ["a", "b", "x"].contains(&k.as_str())), "{seen:?}");
}

#[test]
fn info_counts_commands_and_errors_until_resetstat() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    check(
        &mut c,
        vec![
            ("SET a 1", Want::Is(Value::Okay)),
            ("GET a", bulk("1")),
            ("GET a", bulk("1")),
            ("LPUSH a x", Want::Error("WRONGTYPE")),
            ("NOSUCH", Want::Error("unknown command")),
        ],
    );
    let info = |c: &mut Connection, section: &str| -> String { redis::cmd("INFO").arg(section).query(c).unwrap() };
    let stats = info(&mut c, "commandstats");
    assert!(stats.contains("cmdstat_get:calls=2,usec="), "{stats}");
    assert!(stats.contains("cmdstat_set:calls=1,usec="), "{stats}");
    let errors = info(&mut c, "errorstats");
    assert!(errors.contains("errorstat_ERR:count=1") && errors.contains("errorstat_WRONGTYPE:count=1"), "{errors}");
    // Not among the default sections; errorstats is.
    let default: String = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(!default.contains("cmdstat_") && default.contains("errorstat_ERR"), "{default}");
    check(&mut c, vec![("CONFIG RESETSTAT", Want::Is(Value::Okay))]);
    assert!(!info(&mut c, "errorstats").contains("errorstat_"));
}

/// COMMAND answers each command's flags, key positions and ACL categories
/// as Redis 7.0.15 does (what cluster clients read to route a command).
#[test]
fn command_info_gives_flags_and_key_positions() {
    let node = TestNode::start(&["--durability", "async"]);
    let mut c = node.redis();
    let info: Vec<Value> =
        redis::cmd("COMMAND").arg("INFO").arg("get").arg("mset").arg("nosuch").query(&mut c).unwrap();
    assert_eq!(info.len(), 3);
    let Value::Array(get) = &info[0] else { panic!("{info:?}") };
    assert_eq!(get[0], b("get"));
    assert_eq!(get[1], Value::Int(2));
    assert_eq!(get[2], Value::Array(vec![Value::SimpleString("readonly".into()), Value::SimpleString("fast".into())]));
    assert_eq!(&get[3..6], &[Value::Int(1), Value::Int(1), Value::Int(1)]);
    let Value::Array(mset) = &info[1] else { panic!("{info:?}") };
    // MSET's keys: from the first argument to the last, every second one.
    assert_eq!(&mset[3..6], &[Value::Int(1), Value::Int(-1), Value::Int(2)]);
    assert_eq!(info[2], Value::Nil);
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut c).unwrap();
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut c).unwrap();
    assert_eq!((all.len() as i64, names.len() as i64), (count, count));
    // Every command has its entry from Redis: none without ACL categories.
    for entry in &all {
        let Value::Array(e) = entry else { panic!("{entry:?}") };
        assert!(matches!(&e[6], Value::Array(acl) if !acl.is_empty()), "{e:?}");
    }
}
