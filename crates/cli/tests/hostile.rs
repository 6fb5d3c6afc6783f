//! Malformed and hostile Redis-protocol input gets an error reply (and at
//! worst a closed connection); the node keeps serving everyone else.

mod common;

use common::TestNode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `bytes`, then reads until the server closes or goes quiet.
fn send(addr: &str, bytes: &[u8]) -> Vec<u8> {
    send_waiting(addr, bytes, 300)
}

fn send_waiting(addr: &str, bytes: &[u8], wait_ms: u64) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(wait_ms))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn ping(addr: &str) {
    let reply = send(addr, b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(reply, b"+PONG\r\n", "the node stopped serving");
}

#[test]
fn hostile_frames_get_errors_and_the_node_keeps_serving() {
    let node = TestNode::start(&["--durability", "async"]);
    let addr = node.resp_addr();
    let corpus: &[&[u8]] = &[
        b"*-5\r\n",
        b"*99999999999999999999\r\n",
        b"*2\r\n$-3\r\n",
        b"*1\r\n$9999999999\r\n",
        b"*1\r\n$3\r\nabcX\r\n",
        b"*1\r\nfoo\r\n",
        b"*3000000\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk",
        b"\"unbalanced\r\n",
        b"*1\r\n$-1\r\n",
        b"*x\r\n",
        b"$3\r\nfoo\r\n",
        b"\x00\x01\x02\xff\xfe\r\n",
        b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n",
        b"*1\r\n$4\r\nEXEC\r\n",
        b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$21\r\n999999999999999999999\r\n",
    ];
    for frame in corpus {
        let reply = send(&addr, frame);
        // Either an error reply, or nothing for a frame that is still incomplete.
        assert!(
            reply.is_empty() || reply.starts_with(b"-"),
            "{:?} got {:?}",
            String::from_utf8_lossy(frame),
            String::from_utf8_lossy(&reply)
        );
        ping(&addr);
    }
    // A negative multibulk count is an empty command, ignored (as in Redis):
    // the connection goes on.
    assert_eq!(send(&addr, b"*-5\r\n*1\r\n$4\r\nPING\r\n"), b"+PONG\r\n");
    // A line longer than the inline limit, and random bytes in many shapes.
    let reply = send(&addr, &vec![b'a'; 100_000]);
    assert!(reply.starts_with(b"-ERR Protocol error"), "{:?}", String::from_utf8_lossy(&reply[..reply.len().min(80)]));
    let mut seed = 0x2545F4914F6CDD1Du64;
    for _ in 0..200 {
        let len = (seed % 200) as usize;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Lean towards protocol characters so the junk gets past the first byte.
                b"*$\r\n-:+0123456789abc"[(seed % 20) as usize]
            })
            .collect();
        send_waiting(&addr, &junk, 10);
    }
    ping(&addr);
    // Data written before all this is intact.
    let mut c = node.redis();
    redis::cmd("SET").arg("k").arg("v").query::<()>(&mut c).unwrap();
    for frame in corpus {
        send(&addr, frame);
    }
    assert_eq!(redis::cmd("GET").arg("k").query::<String>(&mut c).unwrap(), "v");
}

#[test]
fn a_request_over_the_size_limit_is_refused_without_taking_the_memory() {
    let node = TestNode::start(&["--durability", "async"]);
    let addr = node.resp_addr();
    // A bulk string longer than proto-max-bulk-len (512 MiB): refused from its header.
    let reply = send(&addr, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$600000000\r\n");
    assert!(reply.starts_with(b"-ERR Protocol error"), "{:?}", String::from_utf8_lossy(&reply));
    // CONFIG SET lowers it for every connection: a 2 MiB value is refused, then taken again.
    let mut c = node.redis();
    redis::cmd("CONFIG").arg("SET").arg("proto-max-bulk-len").arg("1mb").query::<()>(&mut c).unwrap();
    let two = vec![b'x'; 2 << 20];
    assert!(redis::cmd("SET").arg("k").arg(&two).query::<()>(&mut node.redis()).is_err());
    redis::cmd("CONFIG").arg("SET").arg("proto-max-bulk-len").arg("512mb").query::<()>(&mut c).unwrap();
    let mut fresh = node.redis();
    redis::cmd("SET").arg("k").arg(&two).query::<()>(&mut fresh).unwrap();
    assert_eq!(redis::cmd("STRLEN").arg("k").query::<usize>(&mut fresh).unwrap(), 2 << 20);
    // Too many arguments.
    let reply = send(&addr, b"*2000000\r\n");
    assert!(reply.starts_with(b"-ERR Protocol error"), "{:?}", String::from_utf8_lossy(&reply));
    ping(&addr);
}

#[test]
fn slow_and_broken_clients_do_not_block_others() {
    let node = TestNode::start(&["--durability", "async"]);
    let addr = node.resp_addr();
    // Half-sent frames held open.
    let mut idle: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab").unwrap();
            s
        })
        .collect();
    let mut c = node.redis();
    for i in 0..100 {
        redis::cmd("SET").arg(format!("x{i}")).arg(i).query::<()>(&mut c).unwrap();
    }
    idle.clear();
    ping(&addr);
}

#[test]
fn a_multi_over_its_queue_limit_is_refused_and_discarded() {
    let node = TestNode::start(&["--durability", "async"]);
    let addr = node.resp_addr();
    // 100,000 commands may be queued; the 100,001st is refused, and EXEC
    // then discards the transaction: nothing of it is written.
    let mut req = b"*1\r\n$5\r\nMULTI\r\n".to_vec();
    for i in 0..100_001 {
        let key = format!("multi:{i}");
        req.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n", key.len()).as_bytes());
    }
    req.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || s.write_all(&req).unwrap())
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while !out.ends_with(b"previous errors.\r\n") {
        let n = s.read(&mut buf).expect("the replies come");
        assert!(n > 0, "closed after {} bytes", out.len());
        out.extend_from_slice(&buf[..n]);
    }
    writer.join().unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some("+OK"));
    assert_eq!(lines.by_ref().take(100_000).filter(|l| *l == "+QUEUED").count(), 100_000);
    let refused = lines.next().unwrap();
    assert!(refused.starts_with("-ERR MULTI queue full: at most 100000 commands"), "{refused}");
    assert_eq!(lines.next(), Some("-EXECABORT Transaction discarded because of previous errors."));
    // Nothing was written, and the connection and the node serve on.
    s.write_all(b"*2\r\n$3\r\nGET\r\n$7\r\nmulti:0\r\n").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"$-1\r\n");
    ping(&addr);
}

/// Writes `req`, waits `idle` without reading, then reads until the server
/// closes: how many bytes came, and whether it did close.
fn read_after(addr: &str, req: &[u8], idle: Duration) -> (usize, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req).unwrap();
    std::thread::sleep(idle);
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, true),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (total, true),
            Err(_) => return (total, false),
        }
    }
}

fn gets(key: &str, n: usize) -> Vec<u8> {
    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).repeat(n).into_bytes()
}

#[test]
fn replies_over_the_output_buffer_limit_close_the_client() {
    let node = TestNode::start(&["--durability", "async", "--client-output-buffer-limit", "normal 64mb 256kb 2"]);
    let addr = node.resp_addr();
    let mut redis = node.redis();
    let big = vec![b'x'; 1 << 20];
    let _: () = redis::cmd("SET").arg("big").arg(&big).query(&mut redis).unwrap();
    let limit: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("client-output-buffer-limit").query(&mut redis).unwrap();
    assert_eq!(
        limit,
        [
            "client-output-buffer-limit",
            &format!("normal {} {} 2 pubsub {} {} 60", 64 << 20, 256 << 10, 32 << 20, 8 << 20)
        ]
    );
    // A client that reads what it asked for gets it all, over the soft limit.
    let (got, closed) = read_after(&addr, &[gets("big", 8), b"*1\r\n$4\r\nQUIT\r\n".to_vec()].concat(), Duration::ZERO);
    assert_eq!((got, closed), (8 * ((1 << 20) + 12) + 5, true));
    // 100 MiB of replies asked for at once are over the hard limit: the
    // client is cut off without them.
    let (got, closed) = read_after(&addr, &gets("big", 100), Duration::ZERO);
    assert!(closed && got < 64 << 20, "got {got} bytes, closed: {closed}");
    // 24 MiB left unread (under the hard limit, over the soft one) for
    // longer than 2 s: cut off too.
    let (got, closed) = read_after(&addr, &gets("big", 24), Duration::from_secs(4));
    assert!(closed && got < 24 << 20, "got {got} bytes, closed: {closed}");
    let metrics = common::http(&node, "GET", "/metrics", b"").2;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("squall_resp_output_limit_closed_total 2"), "{metrics}");
    ping(&addr);
}

#[test]
fn keys_over_the_output_buffer_limit_is_refused_and_scan_still_works() {
    let node = TestNode::start(&["--durability", "async", "--client-output-buffer-limit", "normal 1mb 0 0"]);
    let mut redis = node.redis();
    let prefix = "k".repeat(100);
    for chunk in 0..10 {
        let mut mset = redis::cmd("MSET");
        for i in 0..1000 {
            mset.arg(format!("{prefix}:{chunk}:{i}")).arg("v");
        }
        let _: () = mset.query(&mut redis).unwrap();
    }
    let err = redis::cmd("KEYS").arg("*").query::<Vec<String>>(&mut redis).unwrap_err();
    assert!(err.to_string().contains("over the client output buffer limit"), "{err}");
    // The connection serves on: a smaller KEYS and a whole SCAN.
    let some: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:3:*")).query(&mut redis).unwrap();
    assert_eq!(some.len(), 1000);
    let all: Vec<String> = redis::Commands::scan(&mut redis).unwrap().collect();
    assert_eq!(all.len(), 10_000);
    // 50 of those KEYS pipelined (6 MB of answers, six times the hard limit)
    // are written out as they are made: a client that reads gets them all.
    let mut pipe = redis::pipe();
    for _ in 0..50 {
        pipe.cmd("KEYS").arg(format!("{prefix}:3:*"));
    }
    let answers: Vec<Vec<String>> = pipe.query(&mut redis).unwrap();
    assert!(answers.len() == 50 && answers.iter().all(|a| a.len() == 1000));
}
