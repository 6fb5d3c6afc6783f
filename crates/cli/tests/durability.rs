//! Acknowledged writes survive SIGKILL with `durability = sync`, and a batch
//! that spans shards is whole or absent after the crash.

mod common;

use common::TestNode;
use redis::Commands;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Acked {
    registers: Vec<(String, String)>,
    increments: std::collections::HashMap<String, i64>,
    members: Vec<(String, String)>,
    batches: Vec<u64>,
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = TestNode::start_in(&dir, &["--durability", "sync", "--shards", "2"]);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6 {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut c = node.redis();
        writers.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = match i % 4 {
                    0 => {
                        let (k, v) = (format!("reg:{w}:{i}"), format!("v{i}"));
                        c.set::<_, _, ()>(&k, &v).map(|_| acked.lock().unwrap().registers.push((k, v)))
                    }
                    1 => {
                        let k = format!("count:{}", i % 5);
                        c.incr::<_, _, i64>(&k, 1).map(|_| *acked.lock().unwrap().increments.entry(k).or_default() += 1)
                    }
                    2 => {
                        let m = format!("{w}:{i}");
                        c.sadd::<_, _, i64>("members", &m)
                            .map(|_| acked.lock().unwrap().members.push(("members".into(), m)))
                    }
                    _ => {
                        // A transaction over keys on both shards: all of it or none.
                        let id = (w as u64) << 32 | i;
                        let mut p = redis::pipe();
                        p.atomic();
                        for k in 0..6 {
                            p.set(format!("batch:{k}"), id).ignore();
                        }
                        p.query::<()>(&mut c).map(|_| acked.lock().unwrap().batches.push(id))
                    }
                };
                if r.is_err() {
                    break; // the node is gone
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    assert!(acked.registers.len() > 50, "too few writes to mean anything: {}", acked.registers.len());

    let node = TestNode::start_in(&dir, &["--durability", "sync", "--shards", "2"]);
    let mut c = node.redis();
    for (k, v) in &acked.registers {
        assert_eq!(c.get::<_, Option<String>>(k).unwrap().as_ref(), Some(v), "acknowledged SET {k} lost");
    }
    for (k, n) in &acked.increments {
        // Increments in flight at the kill may have landed without an answer; acknowledged ones must all be there.
        let got: i64 = c.get::<_, Option<i64>>(k).unwrap().unwrap_or(0);
        assert!(got >= *n, "{k}: {got} < {n} acknowledged increments");
    }
    let members: std::collections::HashSet<String> = c.smembers("members").unwrap();
    for (_, m) in &acked.members {
        assert!(members.contains(m), "acknowledged SADD {m} lost");
    }
    let batch: Vec<Option<u64>> = c.mget((0..6).map(|k| format!("batch:{k}")).collect::<Vec<_>>()).unwrap();
    assert!(batch.iter().all(|v| *v == batch[0]), "a batch is torn after the crash: {batch:?}");
    if let Some(last) = acked.batches.last() {
        assert!(batch[0].is_some(), "acknowledged batch {last} lost");
    }
}

#[test]
fn a_clean_stop_keeps_async_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = TestNode::start_in(&dir, &["--durability", "async"]);
    let mut c = node.redis();
    for i in 0..500 {
        c.set::<_, _, ()>(format!("k{i}"), i).unwrap();
    }
    assert!(node.stop().success());
    let node = TestNode::start_in(&dir, &[]);
    let mut c = node.redis();
    assert_eq!(c.get::<_, i64>("k499").unwrap(), 499);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 500);
}

/// SIGTERM drains: an invocation running when the node is told to stop
/// finishes, commits and is answered, and the node exits cleanly.
#[test]
fn a_stop_lets_a_running_invocation_finish_and_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = TestNode::start_in(&dir, &["--durability", "sync"]);
    let (status, _, body) = common::http(&node, "PUT", "/v1/functions/slow", squall_guests::HOSTILE);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let base = node.http.clone();
    let call = std::thread::spawn(move || {
        common::http_at(&base, "POST", "/v1/functions/slow/invoke", &[], b"sleep 1500 drained")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(node.stop().success(), "the node did not exit cleanly");
    let (status, _, body) = call.join().unwrap();
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "ok"));
    let node = TestNode::start_in(&dir, &[]);
    let mut c = node.redis();
    assert_eq!(c.get::<_, Option<String>>("drained").unwrap().as_deref(), Some("after the sleep"));
}
