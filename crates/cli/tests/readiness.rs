//! `/readyz` says ready only once the node can serve what it was started
//! with: a script that waits for readiness and then calls an example finds
//! it deployed.

mod common;

use common::{TestNode, http};
use std::time::{Duration, Instant};

#[test]
fn the_first_call_after_readyz_finds_the_examples() {
    let tmp = tempfile::tempdir().unwrap();
    // Only as far as the addresses: not waiting for the rest of the output,
    // as a script that polls /readyz would not.
    let node = TestNode::launch(&tmp.path().join("data"), &["--examples"]);
    let start = Instant::now();
    let mut saw_not_ready = false;
    loop {
        let (status, _, body) = http(&node, "GET", "/readyz", b"");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("starting"));
        saw_not_ready = true;
        assert!(start.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, _, body) = http(&node, "POST", "/v1/functions/hello/invoke", b"world");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "Hello, world!"));
    let (status, _, _) = http(&node, "POST", "/v1/functions/counter/invoke", b"visits");
    assert_eq!(status, 200);
    drop(node);
    // Deploying the examples takes a while (compiling them): the poll saw
    // the node not ready first, or the test would not show anything.
    eprintln!("saw not ready first: {saw_not_ready}");
}
