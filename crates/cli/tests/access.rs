//! No one gets in uninvited: a node with a token asks every HTTP request but
//! `/healthz` for it, and every Redis-protocol connection to `AUTH` first;
//! a node refuses to listen beyond loopback without one.

mod common;

use common::{TestNode, http, http_with, json, squall};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What the node answers to `commands`, sent at once on a new connection.
fn resp(addr: &str, commands: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.write_all(commands).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn without_the_token_only_healthz_answers_and_redis_says_noauth() {
    let node = TestNode::start(&["--token", "s3cret"]);
    let bearer = [("Authorization", "Bearer s3cret")];
    assert_eq!(http(&node, "GET", "/healthz", b"").0, 200);
    for (method, path) in [
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("PUT", "/v1/kv/k"),
        ("GET", "/v1/kv/k"),
        ("GET", "/v1/kv?prefix="),
        ("GET", "/v1/functions"),
        ("POST", "/v1/functions/hello/invoke"),
        ("PUT", "/v1/dags/d"),
        ("POST", "/v1/jobs"),
    ] {
        let (status, head, body) = http(&node, method, path, b"x");
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(json(&body)["error"]["code"], "unauthorized", "{method} {path}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        let wrong = [("Authorization", "Bearer nope")];
        assert_eq!(http_with(&node, method, path, &wrong, b"x").0, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(http_with(&node, "PUT", "/v1/kv/k", &bearer, b"v").0, 204);
    let (status, _, body) = http_with(&node, "GET", "/v1/kv/k", &bearer, b"");
    assert_eq!((status, body.as_slice()), (200, &b"v"[..]));

    // The Redis protocol: nothing before AUTH, a wrong password is WRONGPASS.
    let addr = node.resp_addr();
    let said = resp(&addr, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n");
    assert_eq!(said, "-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n");
    let said = resp(&addr, b"*2\r\n$4\r\nAUTH\r\n$4\r\nnope\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert!(said.starts_with("-WRONGPASS"), "{said}");
    assert!(said.ends_with("-NOAUTH Authentication required.\r\n"), "{said}");
    let said = resp(&addr, b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(said, "+OK\r\n$1\r\nv\r\n");
    let said = resp(&addr, b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(said, "+OK\r\n+PONG\r\n");
    let said = resp(&addr, b"*1\r\n$5\r\nHELLO\r\n");
    assert!(said.starts_with("-NOAUTH HELLO must be called"), "{said}");
    let said = resp(
        &addr,
        b"*5\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n",
    );
    assert!(said.starts_with("*14\r\n") && said.ends_with("+PONG\r\n"), "{said}");
    // A client library with the password in its URL.
    let client = redis::Client::open(format!("redis://:s3cret@{addr}/")).unwrap();
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(v, "v");
    // Nothing was written by the refused commands.
    let (_, _, body) = http_with(&node, "GET", "/v1/kv/k", &bearer, b"");
    assert_eq!(body, b"v");

    // squall's own commands send SQUALL_TOKEN.
    let out = squall().args(["kv", "get", "k", "--node", &node.http]).env("SQUALL_TOKEN", "s3cret").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.trim_ascii(), b"v");
    let out = squall().args(["kv", "get", "k", "--node", &node.http]).env_remove("SQUALL_TOKEN").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_node_refuses_to_listen_beyond_loopback_without_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let out = squall()
        .args(["up", "--http", "0.0.0.0:0", "--resp", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_remove("SQUALL_TOKEN")
        .env("SQUALL_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0 for HTTP without credentials"), "{err}");
    assert!(!tmp.path().join("data").exists(), "it refused before touching the data dir");
    // With a token it starts; so it does with --insecure.
    for extra in [&["--token", "s3cret"][..], &["--insecure"][..]] {
        let mut child = squall()
            .args(["up", "--http", "0.0.0.0:0", "--resp", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path().join(extra[0]))
            .args(extra)
            .env_remove("SQUALL_TOKEN")
            .env("SQUALL_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let line = std::io::BufRead::lines(stdout)
            .map(Result::unwrap)
            .find(|l| l.trim_start().starts_with("http"))
            .expect("it says where it listens");
        let port = line.rsplit(':').next().unwrap().trim().to_string();
        let (status, _, _) = common::http_at(&format!("http://127.0.0.1:{port}"), "GET", "/healthz", &[], b"");
        assert_eq!(status, 200, "{extra:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as
/// `cert.pem` and `key.pem` in `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn tls_with_a_self_signed_certificate_serves_curl_and_redis_cli() {
    let (Some(curl), Some(redis_cli)) = (common::tool("curl"), common::tool("redis-cli")) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let node = TestNode::start(&["--token", "s3cret", "--tls-cert", cert_s, "--tls-key", key_s]);
    assert!(node.http.starts_with("https://"), "{}", node.http);
    let port = node.resp_port.to_string();

    // HTTPS through curl, trusting the certificate; the token still asked.
    let url = format!("{}/v1/kv/greeting", node.http);
    let (ok, out) = run(std::process::Command::new(&curl)
        .args(["-sS", "--fail-with-body", "--cacert", cert_s])
        .args(["-H", "Authorization: Bearer s3cret", "-X", "PUT", "--data-binary", "hello over tls", &url]));
    assert!(ok, "{out}");
    let (ok, out) = run(std::process::Command::new(&curl).args([
        "-sS",
        "--cacert",
        cert_s,
        "-H",
        "Authorization: Bearer s3cret",
        &url,
    ]));
    assert!(ok && out == "hello over tls", "{out}");
    let (_, out) = run(std::process::Command::new(&curl).args([
        "-sS",
        "--cacert",
        cert_s,
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &url,
    ]));
    assert_eq!(out, "401", "without the token");
    // Not trusting it, curl refuses the certificate; plain HTTP gets nowhere.
    let (ok, _) = run(std::process::Command::new(&curl).args(["-sS", &url]));
    assert!(!ok, "curl trusted a self-signed certificate");
    let plain = url.replace("https://", "http://");
    let (ok, _) = run(std::process::Command::new(&curl).args(["-sS", "-m", "5", &plain]));
    assert!(!ok, "plain HTTP was answered on the TLS port");

    // redis-cli --tls: the key written over HTTPS, written and read back.
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&redis_cli);
        cmd.args(["--tls", "--cacert", cert_s, "-h", "127.0.0.1", "-p", &port, "--no-auth-warning", "-a", "s3cret"]);
        run(cmd.args(args))
    };
    assert_eq!(cli(&["GET", "greeting"]), (true, "hello over tls\n".into()));
    assert_eq!(cli(&["SET", "via", "redis-cli"]), (true, "OK\n".into()));
    assert_eq!(cli(&["GET", "via"]), (true, "redis-cli\n".into()));
    // squall's own client commands, trusting SQUALL_CACERT.
    let (ok, out) = run(squall()
        .args(["kv", "get", "via", "--node", &node.http])
        .env("SQUALL_TOKEN", "s3cret")
        .env("SQUALL_CACERT", cert_s));
    assert!(ok && out.trim_end() == "redis-cli", "{out}");
    let (ok, out) = run(squall().args(["kv", "get", "via", "--node", &node.http]).env("SQUALL_TOKEN", "s3cret"));
    assert!(!ok && out.contains("SQUALL_CACERT"), "{out}");
    // A client that speaks plain RESP to the TLS port gets no answer.
    let said = resp(&node.resp_addr(), b"*1\r\n$4\r\nPING\r\n");
    assert!(!said.contains("PONG"), "{said}");
    // A node whose key does not load does not start.
    let out = squall()
        .args(["up", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--tls-cert", cert_s, "--tls-key", cert_s])
        .arg("--data-dir")
        .arg(tmp.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS key"), "{}", String::from_utf8_lossy(&out.stderr));
}
