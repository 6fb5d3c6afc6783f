//! `/readyz` says ready only once the node can serve what it was started
//! with: a script that waits for readiness and then calls an example finds
//! it deployed.

mod common;

use common::{http_at, squall};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn the_first_call_after_readyz_finds_the_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = squall()
        .args(["up", "--examples", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("SQUALL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Only as far as the address: not waiting for the rest of the output,
    // as a script that polls /readyz would not.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("http").map(|rest| rest.trim().to_string()))
        .expect("squall says where it listens");
    std::thread::spawn(move || for _ in lines {});
    let start = Instant::now();
    let mut saw_not_ready = false;
    loop {
        let (status, _, body) = http_at(&http, "GET", "/readyz", &[], b"");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("starting"));
        saw_not_ready = true;
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, _, body) = http_at(&http, "POST", "/v1/functions/hello/invoke", &[], b"world");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "Hello, world!"));
    let (status, _, _) = http_at(&http, "POST", "/v1/functions/counter/invoke", &[], b"visits");
    assert_eq!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
    // Deploying the examples takes a while (compiling them): the poll saw
    // the node not ready first, or the test would not show anything.
    eprintln!("saw not ready first: {saw_not_ready}");
}
