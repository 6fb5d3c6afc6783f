//! No client can exhaust a node: connection floods at a low open-file
//! limit, slow headers, bodies that never arrive and bodies declared too
//! large. Real nodes, real sockets.

mod common;

use common::{TestNode, http, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What the node says to a fresh connection that sends `hello`, within 5 s
/// (empty if it says nothing and keeps the connection open).
fn first_words(addr: &str, hello: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(hello);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_connection_flood_at_a_low_fd_limit_is_refused_clearly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // 256 descriptors: 128 kept for the store and the rest, 64 clients per listener.
    let mut node = TestNode::start_with_fd_limit(&dir, &[], 256);
    let http_addr = node.http.trim_start_matches("http://").to_string();
    let resp_addr = node.resp_addr();
    for i in 0..50 {
        let (status, _, _) = http(&node, "PUT", &format!("/v1/kv/before-{i}"), b"kept");
        assert_eq!(status, 204);
    }

    // 300 idle connections to each listener: far more than either may hold,
    // and more than the process could open at all.
    let mut flood = Vec::new();
    for _ in 0..300 {
        for addr in [&http_addr, &resp_addr] {
            if let Ok(s) = TcpStream::connect(addr) {
                flood.push(s);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    // A new client is told why, at once, in its protocol.
    let said = first_words(&http_addr, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let said = String::from_utf8_lossy(&said).to_string();
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.to_ascii_lowercase().contains("retry-after: 1"), "{said}");
    assert!(said.contains("\"code\":\"max_clients\""), "{said}");
    let said = first_words(&resp_addr, b"PING\r\n");
    assert_eq!(String::from_utf8_lossy(&said), "-ERR max number of clients reached\r\n");

    // The flood goes; the node serves again, and it never lost its store.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let said = first_words(&http_addr, b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        if said.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {}", String::from_utf8_lossy(&said));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut redis = node.redis();
    let v: String = redis::cmd("GET").arg("before-7").query(&mut redis).unwrap();
    assert_eq!(v, "kept");
    let _: () = redis::cmd("SET").arg("after").arg("also kept").query(&mut redis).unwrap();
    drop(redis);

    // And what was acknowledged is there after a kill -9.
    node.kill9();
    let node = TestNode::start_with_fd_limit(&dir, &[], 256);
    for key in ["before-0", "before-49"] {
        let (status, _, body) = http(&node, "GET", &format!("/v1/kv/{key}"), b"");
        assert_eq!((status, body.as_slice()), (200, b"kept".as_slice()), "{key}");
    }
    let (status, _, body) = http(&node, "GET", "/v1/kv/after", b"");
    assert_eq!((status, body.as_slice()), (200, b"also kept".as_slice()));
}

#[test]
fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let node = TestNode::start(&["--http-header-timeout", "1"]);
    let addr = node.http.trim_start_matches("http://").to_string();

    // Slowloris: a byte of header now and then, never the end of the head.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut buf = [0u8; 256];
        if slow.read(&mut buf).is_ok() {
            // The end of the stream (or an error answer): closed by the node.
            cut = true;
            break;
        }
    }
    assert!(cut, "a connection sending a header byte every 200 ms was kept for 10 s");
    assert!(started.elapsed() < Duration::from_secs(5), "cut only after {:?}", started.elapsed());

    // An idle keep-alive connection: one answer, then silence, then closed.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection got more: {}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_secs(5), "closed only after {:?}", started.elapsed());

    // The node still answers everyone else.
    let (status, _, _) = http(&node, "GET", "/healthz", b"");
    assert_eq!(status, 200);
}

#[test]
fn bodies_declared_too_large_or_too_slow_are_answered_and_write_nothing() {
    let node = TestNode::start(&["--http-body-timeout", "1"]);
    let addr = node.http.trim_start_matches("http://").to_string();

    // Declared far over the limit, 3 bytes sent: 413 at once, not a hang.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PUT /v1/kv/huge HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000000\r\n\r\nabc").unwrap();
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).expect("an answer within 5 s");
    let said = String::from_utf8_lossy(&out[..n]).to_string();
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
    assert!(said.contains("\"code\":\"payload_too_large\""), "{said}");

    // The same for an invocation's input.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /v1/functions/hello/invoke HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    let n = s.read(&mut out).expect("an answer within 5 s");
    assert!(out[..n].starts_with(b"HTTP/1.1 413"), "{}", String::from_utf8_lossy(&out[..n]));

    // Declared within the limit but never finished: 408 once the body's time is up.
    for (path, what) in [("/v1/kv/slow", "a key"), ("/v1/functions/hello/invoke", "an invocation")] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let method = if path.starts_with("/v1/kv") { "PUT" } else { "POST" };
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc").as_bytes(),
        )
        .unwrap();
        let n = s.read(&mut out).expect("an answer within 10 s");
        let said = String::from_utf8_lossy(&out[..n]).to_string();
        assert!(said.starts_with("HTTP/1.1 408"), "{what}: {said}");
        assert!(said.contains("\"code\":\"body_timeout\""), "{what}: {said}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: after {:?}", started.elapsed());
    }
    // Chunked, a chunk at a time and never the last: cut off the same way.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PUT /v1/kv/chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
        .unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(400));
                if s.write_all(b"1\r\nb\r\n").is_err() {
                    return;
                }
            }
        })
    };
    let n = s.read(&mut out).expect("an answer within 10 s");
    let said = String::from_utf8_lossy(&out[..n]).to_string();
    assert!(said.starts_with("HTTP/1.1 408"), "chunked: {said}");
    writer.join().unwrap();

    // Nothing of them was written; the node serves on.
    for key in ["huge", "slow", "chunked"] {
        let (status, _, body) = http(&node, "GET", &format!("/v1/kv/{key}"), b"");
        assert_eq!(status, 404, "{key}: {}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["error"]["code"], "key_not_found");
    }
    let (status, _, _) = http(&node, "PUT", "/v1/kv/fine", b"ok");
    assert_eq!(status, 204);
}

/// Retries `f` every 100 ms for up to 10 s until it holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn namespace_quotas_refuse_with_quota_exceeded_and_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("squall.toml");
    std::fs::write(
        &config,
        "[quotas.small]\nkeys = 5\n\n[quotas.rated]\ninvocations-per-second = 3\n\n[quotas.one]\ninstances = 1\n",
    )
    .unwrap();
    let node = TestNode::start(&["--config", config.to_str().unwrap()]);
    let mut redis = node.redis();
    let _: () = redis::cmd("SELECT").arg("small").query(&mut redis).unwrap();
    for i in 0..5 {
        let _: () = redis::cmd("SET").arg(format!("k{i}")).arg("v").query(&mut redis).unwrap();
    }
    // Counted within a second or so: then writes that could add a key are refused...
    eventually("the key quota was not applied", || {
        redis::cmd("SET").arg("extra").arg("v").query::<()>(&mut redis).is_err()
    });
    let err = redis::cmd("SADD").arg("k0").arg("m").query::<()>(&mut redis).unwrap_err();
    assert!(err.to_string().contains("quota exceeded") && err.to_string().contains("its quota is 5"), "{err}");
    let (status, head, body) = http(&node, "PUT", "/v1/ns/small/kv/other", b"v");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (429, Some("quota_exceeded")));
    assert!(common::header(&head, "retry-after").is_some());
    // ...and so are a function's, while other namespaces write on.
    assert_eq!(http(&node, "PUT", "/v1/ns/small/functions/counter", squall_guests::COUNTER).0, 201);
    let (status, _, body) = http(&node, "POST", "/v1/ns/small/functions/counter/invoke", b"visits");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (429, Some("quota_exceeded")));
    let _: () = redis::cmd("SET").arg("elsewhere").arg("v").query(&mut node.redis()).unwrap();
    // Deletes still work, and bring it under.
    let _: () = redis::cmd("DEL").arg("k0").arg("k1").query(&mut redis).unwrap();
    eventually("the namespace stayed full after deletes", || {
        redis::cmd("SET").arg("extra").arg("v").query::<()>(&mut redis).is_ok()
    });

    // Invocations a second: a burst past 3 is refused, the rest answer.
    assert_eq!(http(&node, "PUT", "/v1/ns/rated/functions/hello", squall_guests::HELLO).0, 201);
    // 20 in a row: even at 50 ms each the bucket refills by 3 while they run.
    let codes: Vec<u16> = (0..20).map(|_| http(&node, "POST", "/v1/ns/rated/functions/hello/invoke", b"x").0).collect();
    assert!(codes.iter().filter(|c| **c == 200).count() >= 3, "{codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    assert_eq!(http(&node, "PUT", "/v1/functions/hello", squall_guests::HELLO).0, 201);
    assert!((0..10).all(|_| http(&node, "POST", "/v1/functions/hello/invoke", b"x").0 == 200));

    // Instances: one at a time.
    assert_eq!(http(&node, "PUT", "/v1/ns/one/functions/hostile?timeout=10s", squall_guests::HOSTILE).0, 201);
    let slow = {
        let base = node.http.clone();
        std::thread::spawn(move || {
            common::http_at(&base, "POST", "/v1/ns/one/functions/hostile/invoke", &[], b"sleep 1500 slept").0
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (status, _, body) = http(&node, "POST", "/v1/ns/one/functions/hostile/invoke", b"env X");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (429, Some("quota_exceeded")));
    assert!(json(&body)["error"]["message"].as_str().unwrap().contains("at most 1 invocations at once"));
    assert_eq!(slow.join().unwrap(), 200);
    assert_eq!(http(&node, "POST", "/v1/ns/one/functions/hostile/invoke", b"env X").0, 200);
    // The calls a function makes count too: fanout's callees find no room.
    assert_eq!(http(&node, "PUT", "/v1/ns/one/functions/inc", squall_guests::INC).0, 201);
    assert_eq!(http(&node, "PUT", "/v1/ns/one/functions/fanout", squall_guests::FANOUT).0, 201);
    let (status, _, body) = http(&node, "POST", "/v1/ns/one/functions/fanout/invoke", b"2");
    assert_ne!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("quota_exceeded"), "{}", String::from_utf8_lossy(&body));
}

#[test]
fn idle_redis_connections_hold_little_memory() {
    // This process holds the client side of every connection.
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { maximum, .. } = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: maximum.or(Some(8192)), maximum });
    let node = TestNode::start(&[]);
    let n = 2000;
    let before = node.rss_mib();
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(node.resp_addr()).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        let mut pong = [0u8; 7];
        s.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
    }
    let grown = node.rss_mib().saturating_sub(before);
    let each_kib = grown * 1024 / n;
    eprintln!("{n} idle connections: RSS +{grown} MiB, {each_kib} KiB each");
    // Buffers are made when a request needs them (16 KiB each way held
    // by every connection was 10,000 x ~20 KiB resident). 13 KiB is
    // measured now (12 before the triggers and proto-max-bulk-len change;
    // not explained yet): 16 still catches buffers held by every connection.
    assert!(each_kib <= 16, "{n} idle connections took {grown} MiB, {each_kib} KiB each");
}
