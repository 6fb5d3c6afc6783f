//! Warm invocation over HTTP keep-alive, side by side with a bare hyper echo
//! server built here (the floor: on its own thread, and on the client's
//! runtime) and with the node's `/healthz` (its HTTP layer without an
//! invocation); and the first invocation after a deploy.
//!
//! `cargo bench -p squall-node --bench http_invoke` (REQUESTS, ROUNDS, CONNECTIONS to change the load)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use squall_node::{Config, Node, StoreDurability};

/// The squall binary's allocator (the echo servers in this process use it too).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A bare hyper HTTP/1 server answering with the request's body. On the
/// client's runtime (`own_thread` false) a request and its answer can be
/// handled by one thread with no wake-up between threads, which no server in
/// another process gets; on a thread of its own, with a current-thread
/// runtime like each of Squall's shard threads, it pays what a real server
/// pays.
async fn echo_server(own_thread: bool) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    };
    if own_thread {
        std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(serve);
            })
            .unwrap();
    } else {
        tokio::spawn(serve);
    }
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A request for `path`: a GET if it is `/healthz`, else a POST of `body`.
async fn call(sender: &mut Sender, addr: SocketAddr, path: &str, body: &'static [u8]) -> Bytes {
    sender.ready().await.unwrap();
    let req = if path == "/healthz" { Request::get(path) } else { Request::post(path) };
    let body = if path == "/healthz" { Bytes::new() } else { Bytes::from_static(body) };
    let req = req.header("host", addr.to_string()).body(Full::new(body)).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.into_body().collect().await.unwrap().to_bytes()
}

struct Run {
    p50: Duration,
    p99: Duration,
    per_sec: f64,
}

/// `requests` calls spread over `connections` keep-alive connections; latencies of each call.
async fn load(addr: SocketAddr, path: &'static str, requests: usize, connections: usize) -> Run {
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let mut lat = Vec::with_capacity(requests / connections);
                for _ in 0..requests / connections {
                    let t = Instant::now();
                    call(&mut sender, addr, path, b"bench").await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Run { p50: pick(0.5), p99: pick(0.99), per_sec: all.len() as f64 / elapsed.as_secs_f64() }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The component with a custom section appended: same code, a new digest (so a cold compile).
fn variant(n: usize) -> Bytes {
    let mut v = squall_guests::HELLO.to_vec();
    let name = b"bench";
    let payload = n.to_le_bytes();
    v.push(0);
    v.push((1 + name.len() + payload.len()) as u8);
    v.push(name.len() as u8);
    v.extend_from_slice(name);
    v.extend_from_slice(&payload);
    Bytes::from(v)
}

fn main() {
    let requests = env("REQUESTS", 20_000);
    let rounds = env("ROUNDS", 3);
    let connections = env("CONNECTIONS", 8);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            http: "127.0.0.1:0".parse().unwrap(),
            resp: "127.0.0.1:0".parse().unwrap(),
            durability: StoreDurability::Async,
            shards: env("SHARDS", Config::default().shards),
            ..Config::default()
        };
        let node = Node::start(config).await.unwrap();
        node.functions().deploy("hello", Bytes::from_static(squall_guests::HELLO), Default::default()).await.unwrap();
        let squall = node.http_addr();
        let shared = echo_server(false).await;
        let echo = echo_server(true).await;
        let targets: [(&str, SocketAddr, &'static str); 4] = [
            ("echo, client's runtime", shared, "/echo"),
            ("echo, own thread", echo, "/echo"),
            ("squall hello", squall, "/v1/functions/hello/invoke"),
            ("squall /healthz", squall, "/healthz"),
        ];
        // Warm them up.
        for (_, addr, path) in targets {
            load(addr, path, 2000, 1).await;
        }
        println!("warm invocation over HTTP keep-alive: {requests} requests per run, {rounds} rounds, alternating");
        let mut p50s: [Vec<f64>; 4] = Default::default();
        let mut p99s: [Vec<f64>; 4] = Default::default();
        let mut tputs: [Vec<f64>; 4] = Default::default();
        for round in 0..rounds {
            for (i, (name, addr, path)) in targets.iter().enumerate() {
                let one = load(*addr, path, requests / 4, 1).await;
                let many = load(*addr, path, requests, connections).await;
                println!(
                    "  round {round} {name:<22} 1 conn: p50 {:>6.1} us  p99 {:>7.1} us  {:>6.0}/s | {connections} conns: p50 {:>7.1} us  p99 {:>7.1} us  {:>6.0}/s",
                    us(one.p50),
                    us(one.p99),
                    one.per_sec,
                    us(many.p50),
                    us(many.p99),
                    many.per_sec
                );
                p50s[i].push(us(one.p50));
                p99s[i].push(us(one.p99));
                tputs[i].push(many.per_sec);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let p50: Vec<f64> = p50s.iter_mut().map(median).collect();
        let p99: Vec<f64> = p99s.iter_mut().map(median).collect();
        let tput: Vec<f64> = tputs.iter_mut().map(median).collect();
        println!("medians over the rounds, 1 connection: p50 / p99; {connections} connections: throughput");
        for (i, (name, _, _)) in targets.iter().enumerate() {
            println!("  {name:<22} {:>6.1} us / {:>7.1} us  {:>6.0}/s", p50[i], p99[i], tput[i]);
        }
        println!(
            "squall / echo on its own thread: p50 ratio {:.2} (target <= 2.0), p99 ratio {:.2}, throughput ratio {:.2}",
            p50[2] / p50[1],
            p99[2] / p99[1],
            tput[2] / tput[1]
        );
        println!(
            "squall / echo on the client's runtime: p50 ratio {:.2}, throughput ratio {:.2}",
            p50[2] / p50[0],
            tput[2] / tput[0]
        );

        println!("first invocation after deploy (a new digest each time: compile included in deploy):");
        let mut sender = connect(squall).await;
        for n in 0..3 {
            let name = format!("fresh{n}");
            let t = Instant::now();
            node.functions().deploy(&name, variant(n), Default::default()).await.unwrap();
            let deploy = t.elapsed();
            let path: &'static str = Box::leak(format!("/v1/functions/{name}/invoke").into_boxed_str());
            let t = Instant::now();
            call(&mut sender, squall, path, b"x").await;
            let first = t.elapsed();
            let t = Instant::now();
            call(&mut sender, squall, path, b"x").await;
            let second = t.elapsed();
            println!(
                "  deploy {:.1} ms, first invocation {:.1} us, second {:.1} us",
                deploy.as_secs_f64() * 1e3,
                us(first),
                us(second)
            );
        }
        node.shutdown().await;
    });
}
