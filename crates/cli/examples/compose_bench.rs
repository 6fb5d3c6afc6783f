//! Squall's side of the task benchmarks of `../shared/peers` (Ray, Dask),
//! from a native client: the same requests as `bench/squall_tasks.py`, over
//! one kept-alive HTTP/1.1 connection (hyper), so the difference between the
//! two shows what the Python client costs. Prints one JSON object with the
//! peers' keys. Run by `bench/compose_node.sh`:
//!
//! ```sh
//! cargo build --release -p squall-cli --example compose_bench
//! bench/compose_node.sh target/release/examples/compose_bench
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

type Client = SendRequest<Full<Bytes>>;

/// One kept-alive connection to `node`: `http://`, or `https://` trusting
/// the certificates in `SQUALL_CACERT`.
async fn connect(node: &str) -> Client {
    let (tls, addr) = match node.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, node.trim_start_matches("http://")),
    };
    let addr = addr.trim_end_matches('/').to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.expect("the node listens");
    stream.set_nodelay(true).unwrap();
    if !tls {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        return sender;
    }
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::env::var("SQUALL_CACERT").expect("an https:// node needs SQUALL_CACERT");
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h).to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, stream).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A request to the node; one with a token gets SQUALL_TOKEN, as squall's own commands send it.
fn request(method: Method, path: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(path).header("host", "localhost");
    if let Ok(token) = std::env::var("SQUALL_TOKEN")
        && !token.is_empty()
    {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Full::new(body)).unwrap()
}

async fn call(c: &mut Client, method: Method, path: &str, body: Bytes, want: StatusCode) -> Bytes {
    c.ready().await.unwrap();
    let req = request(method.clone(), path, body);
    let resp = c.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, want, "{method} {path}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    body
}

fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let k = (samples.len() - 1) as f64 * q;
        let (lo, hi) = (k as usize, (k as usize + 1).min(samples.len() - 1));
        samples[lo] + (samples[hi] - samples[lo]) * (k - lo as f64)
    };
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    json!({"n": samples.len(), "p50_us": round(at(0.5)), "p99_us": round(at(0.99)), "mean_us": round(mean)})
}

/// `n` sequential requests after `warmup` untimed ones: p50/p99/mean in µs.
async fn latency(
    c: &mut Client,
    n: usize,
    warmup: usize,
    method: Method,
    path: &str,
    body: Bytes,
    want: &[u8],
) -> Value {
    let ok = if method == Method::PUT { StatusCode::NO_CONTENT } else { StatusCode::OK };
    let mut samples = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let t = Instant::now();
        let got = call(c, method.clone(), path, body.clone(), ok).await;
        if i >= warmup {
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
        assert!(want.is_empty() || got == want, "{path}: {:?}", String::from_utf8_lossy(&got[..got.len().min(100)]));
    }
    summary(samples)
}

async fn run_map(c: &mut Client, n: usize) -> Vec<Value> {
    let body = json!({"function": "inc", "inputs": (0..n).collect::<Vec<_>>()}).to_string();
    let job: Value =
        serde_json::from_slice(&call(c, Method::POST, "/v1/jobs", body.into(), StatusCode::ACCEPTED).await).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    loop {
        let j: Value = serde_json::from_slice(
            &call(c, Method::GET, &format!("/v1/jobs/{id}"), Bytes::new(), StatusCode::OK).await,
        )
        .unwrap();
        if j["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut results = Vec::with_capacity(n);
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or_else(|| "limit=10000".to_string(), |a| format!("after={a}&limit=10000"));
        let page: Value = serde_json::from_slice(
            &call(c, Method::GET, &format!("/v1/jobs/{id}/results?{q}"), Bytes::new(), StatusCode::OK).await,
        )
        .unwrap();
        results.extend(page["results"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = Some(next),
            None => return results,
        }
    }
}

/// Registers a chain DAG: created, or replaced when it is already there.
async fn put_dag(c: &mut Client, name: &str, chain: &[&str]) {
    c.ready().await.unwrap();
    let body = json!({ "chain": chain }).to_string();
    let resp = c.send_request(request(Method::PUT, &format!("/v1/dags/{name}"), Bytes::from(body))).await.unwrap();
    let status = resp.status();
    resp.into_body().collect().await.unwrap();
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "PUT /v1/dags/{name}: {status}");
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let node = arg(&args, "--node").expect("--node URL");
    let n: usize = arg(&args, "--n").map_or(1000, |v| v.parse().unwrap());
    let warmup: usize = arg(&args, "--warmup").map_or(100, |v| v.parse().unwrap());
    let map_n: usize = arg(&args, "--map-n").map_or(10_000, |v| v.parse().unwrap());
    let mut c = connect(&node).await;
    let mut out = json!({"bench": "squall-native", "client": "rust hyper, keep-alive", "cpus": std::thread::available_parallelism().map_or(0, |n| n.get())});
    if let Some(s) = arg(&args, "--cluster-start-s") {
        out["cluster_start_s"] = json!(s.parse::<f64>().unwrap());
    }
    for (name, chain) in [("incsq", ["inc", "square"]), ("pass1m", ["blob", "size"])] {
        put_dag(&mut c, name, &chain).await;
    }

    // `--only task_reads_ref` (or another row's key) times just that row, to profile it.
    let only = arg(&args, "--only");
    if only.as_deref() == Some("map_10k") {
        let t = Instant::now();
        run_map(&mut c, map_n).await;
        println!(
            "{}",
            json!({"map_10k": {"n": map_n, "tasks_per_s": (map_n as f64 / t.elapsed().as_secs_f64()).round()}})
        );
        return;
    }
    if let Some(row) = only.as_deref() {
        let (path, body, want): (&str, &'static [u8], &[u8]) = match row {
            "single_task" => ("/v1/functions/inc/invoke", b"1", b"2"),
            "chain2" => ("/v1/dags/incsq/invoke", b"1", b"4"),
            "task_reads_ref" => ("/v1/dags/pass1m/invoke", b"1048576", b"1048576"),
            other => panic!("--only {other}: single_task, chain2, map_10k or task_reads_ref"),
        };
        let got = latency(&mut c, n, warmup, Method::POST, path, Bytes::from_static(body), want).await;
        println!("{}", serde_json::to_string_pretty(&json!({ row: got })).unwrap());
        return;
    }
    out["single_task"] =
        latency(&mut c, n, warmup, Method::POST, "/v1/functions/inc/invoke", Bytes::from_static(b"1"), b"2").await;
    out["chain2"] =
        latency(&mut c, n, warmup, Method::POST, "/v1/dags/incsq/invoke", Bytes::from_static(b"1"), b"4").await;

    run_map(&mut c, 1000).await;
    let t = Instant::now();
    let results = run_map(&mut c, map_n).await;
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(results.len(), map_n);
    assert_eq!(results[map_n - 1]["output"], map_n.to_string());
    out["map_10k"] = json!({"n": map_n, "wall_s": (wall * 1000.0).round() / 1000.0, "tasks_per_s": (map_n as f64 / wall * 10.0).round() / 10.0});

    let payload =
        Bytes::from((0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<u8>>());
    let put = latency(&mut c, n, warmup, Method::PUT, "/v1/kv/blob", payload.clone(), b"").await;
    let get = latency(&mut c, n, warmup, Method::GET, "/v1/kv/blob", Bytes::new(), &payload).await;
    let task =
        latency(&mut c, n, warmup, Method::POST, "/v1/dags/pass1m/invoke", Bytes::from_static(b"1048576"), b"1048576")
            .await;
    out["obj_1mib"] = json!({"put": put, "get": get, "task_reads_ref": task});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
