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

const USERS: &str = r#"
[[users]]
name = "alice"
password = "alice-secret"
namespaces = ["acme"]
deploy = true

[[users]]
name = "bob"
password = "bob-secret-1"
namespaces = ["globex"]

[[users]]
name = "ops"
password = "ops-secret-1"
namespaces = ["*"]
deploy = true
"#;

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {token}"))]
}

/// A request as the user whose secret is `token`.
fn as_user(node: &TestNode, token: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let [(name, value)] = bearer(token);
    let (status, _, body) = http_with(node, method, path, &[(name, value.as_str())], body);
    (status, body)
}

fn redis_as(node: &TestNode, user: &str, password: &str) -> redis::Connection {
    let mut c = node.redis();
    let _: () = redis::cmd("AUTH").arg(user).arg(password).query(&mut c).unwrap();
    c
}

#[test]
fn a_user_limited_to_a_namespace_cannot_reach_another() {
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users.toml");
    std::fs::write(&users, USERS).unwrap();
    let node = TestNode::start(&["--users-file", users.to_str().unwrap()]);
    let code = |body: &[u8]| json(body)["error"]["code"].as_str().unwrap_or_default().to_string();

    // alice works in acme (her only namespace, so also without /v1/ns/acme).
    assert_eq!(as_user(&node, "alice-secret", "PUT", "/v1/kv/k", b"acme value").0, 204);
    assert_eq!(as_user(&node, "alice-secret", "GET", "/v1/ns/acme/kv/k", b""), (200, b"acme value".to_vec()));
    // bob, of globex, sees none of it and cannot reach it.
    assert_eq!(as_user(&node, "bob-secret-1", "GET", "/v1/kv/k", b"").0, 404);
    for (method, path) in [
        ("GET", "/v1/ns/acme/kv/k"),
        ("PUT", "/v1/ns/acme/kv/k"),
        ("DELETE", "/v1/ns/acme/kv/k"),
        ("GET", "/v1/ns/acme/kv?prefix="),
        ("GET", "/v1/ns/acme/functions"),
        ("POST", "/v1/ns/acme/functions/counter/invoke"),
        ("GET", "/v1/ns/default/kv/k"),
        ("GET", "/metrics"),
    ] {
        let (status, body) = as_user(&node, "bob-secret-1", method, path, b"x");
        assert_eq!((status, code(&body).as_str()), (403, "forbidden"), "bob: {method} {path}");
    }
    // bob may not deploy, even in his own namespace.
    let (status, body) = as_user(&node, "bob-secret-1", "PUT", "/v1/functions/counter", squall_guests::COUNTER);
    assert_eq!((status, code(&body).as_str()), (403, "forbidden"));
    assert_eq!(as_user(&node, "x", "GET", "/v1/kv/k", b"").0, 401);

    // Functions are the namespace's: alice's counter writes acme's keys.
    assert_eq!(as_user(&node, "alice-secret", "PUT", "/v1/functions/counter", squall_guests::COUNTER).0, 201);
    assert_eq!(as_user(&node, "alice-secret", "POST", "/v1/functions/counter/invoke", b"visits").0, 200);
    let (status, visits) = as_user(&node, "ops-secret-1", "GET", "/v1/ns/acme/kv/visits", b"");
    assert_eq!((status, &json(&visits)["value"]), (200, &serde_json::json!(1)));
    assert_eq!(as_user(&node, "ops-secret-1", "GET", "/v1/kv/visits", b"").0, 404, "written in default");
    assert_eq!(as_user(&node, "ops-secret-1", "POST", "/v1/functions/counter/invoke", b"visits").0, 404);
    let (_, listed) = as_user(&node, "ops-secret-1", "GET", "/v1/ns/acme/functions", b"");
    assert_eq!(json(&listed)["functions"][0]["name"], "counter");
    // ...and the functions they call are looked up in it: acme's fanout
    // does not find default's inc until acme has its own.
    assert_eq!(as_user(&node, "ops-secret-1", "PUT", "/v1/functions/inc", squall_guests::INC).0, 201);
    assert_eq!(as_user(&node, "alice-secret", "PUT", "/v1/functions/fanout", squall_guests::FANOUT).0, 201);
    let (status, body) = as_user(&node, "alice-secret", "POST", "/v1/functions/fanout/invoke", b"3");
    assert_ne!(status, 200, "acme's fanout called default's inc: {}", String::from_utf8_lossy(&body));
    assert_eq!(as_user(&node, "alice-secret", "PUT", "/v1/functions/inc", squall_guests::INC).0, 201);
    assert_eq!(as_user(&node, "alice-secret", "POST", "/v1/functions/fanout/invoke", b"3"), (200, b"6".to_vec()));
    let (status, metrics) = as_user(&node, "ops-secret-1", "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains(r#"{namespace="acme",function="counter",code="ok"} 1"#), "{metrics}");

    // squall's client commands pick the namespace with SQUALL_NAMESPACE.
    let out = squall()
        .args(["kv", "get", "k", "--node", &node.http])
        .env("SQUALL_TOKEN", "ops-secret-1")
        .env("SQUALL_NAMESPACE", "acme")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "acme value");

    // The Redis protocol: the same users, namespaces chosen with SELECT.
    let mut bob = redis_as(&node, "bob", "bob-secret-1");
    assert_eq!(redis::cmd("GET").arg("k").query::<Option<String>>(&mut bob).unwrap(), None);
    for db in ["acme", "0", "default"] {
        let err = redis::cmd("SELECT").arg(db).query::<()>(&mut bob).unwrap_err();
        assert_eq!(err.code(), Some("NOPERM"), "SELECT {db}: {err}");
    }
    let mut alice = redis_as(&node, "alice", "alice-secret");
    assert_eq!(redis::cmd("GET").arg("k").query::<String>(&mut alice).unwrap(), "acme value");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut alice).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut ops = redis_as(&node, "ops", "ops-secret-1");
    assert_eq!(redis::cmd("GET").arg("k").query::<Option<String>>(&mut ops).unwrap(), None);
    let _: () = redis::cmd("SELECT").arg("acme").query(&mut ops).unwrap();
    assert_eq!(redis::cmd("GET").arg("k").query::<String>(&mut ops).unwrap(), "acme value");
    // Numbered databases are namespaces of their own.
    let _: () = redis::cmd("SELECT").arg(3).query(&mut ops).unwrap();
    assert_eq!(redis::cmd("GET").arg("k").query::<Option<String>>(&mut ops).unwrap(), None);

    // The users file is read again when it changes: bob gains acme, alice
    // is gone (her open connection is refused from its next command on).
    std::fs::write(&users, USERS.replace("\"globex\"]", "\"globex\", \"acme\"]").replace("alice", "carol")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while as_user(&node, "bob-secret-1", "GET", "/v1/ns/acme/kv/k", b"").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the users file was not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _: () = redis::cmd("SELECT").arg("acme").query(&mut bob).unwrap();
    assert_eq!(redis::cmd("GET").arg("k").query::<String>(&mut bob).unwrap(), "acme value");
    let err = redis::cmd("GET").arg("k").query::<String>(&mut alice).unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
    assert_eq!(as_user(&node, "alice-secret", "GET", "/v1/kv/k", b"").0, 401);
    // A file that does not parse changes nothing.
    std::fs::write(&users, "[[users]]\nname = ").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(as_user(&node, "bob-secret-1", "GET", "/v1/ns/acme/kv/k", b"").0, 200);
}

#[test]
fn an_open_node_answers_only_loopback_names_and_closes_http_on_the_redis_port() {
    let node = TestNode::start(&[]);
    // A page whose name was made to resolve to 127.0.0.1 (DNS rebinding)
    // sends its own name as Host: refused.
    let (status, _, body) = http_with(&node, "GET", "/v1/kv/k", &[("Host", "evil.example:7700")], b"");
    assert_eq!((status, json(&body)["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(http_with(&node, "GET", "/v1/kv/k", &[("Host", "localhost:7700")], b"").0, 404);
    // A browser's POST to the Redis port is closed before any command runs.
    let said = resp(
        &node.resp_addr(),
        b"POST / HTTP/1.1\r\nHost: evil.example\r\n\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
    );
    assert!(!said.contains("+OK"), "{said}");
    assert_eq!(http(&node, "GET", "/v1/kv/k", b"").0, 404, "the SET after the POST ran");
}

#[test]
fn logins_are_held_to_their_rules() {
    // A users file with no users yet: the node is closed, not open.
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users.toml");
    std::fs::write(&users, "").unwrap();
    let node = TestNode::start(&["--users-file", users.to_str().unwrap()]);
    assert_eq!(http(&node, "GET", "/v1/kv/k", b"").0, 401);
    let said = resp(&node.resp_addr(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert!(said.starts_with("-NOAUTH"), "{said}");
    // Five wrong passwords close the connection.
    let wrong = b"*3\r\n$4\r\nAUTH\r\n$3\r\nbob\r\n$8\r\nnot-this\r\n".repeat(8);
    let said = resp(&node.resp_addr(), &wrong);
    assert_eq!(said.matches("-WRONGPASS").count(), 5, "{said}");
    // A password changed in the file ends the sessions opened with the old one.
    std::fs::write(&users, "[[users]]\nname = \"bob\"\npassword = \"first-pass\"\nnamespaces = [\"*\"]\n").unwrap();
    let mut bob = common::wait_for(|| {
        let mut c = node.redis();
        redis::cmd("AUTH").arg("bob").arg("first-pass").query::<()>(&mut c).ok().map(|_| c)
    });
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut bob).unwrap();
    // SELECT inside MULTI is refused, and the transaction discarded.
    let _: () = redis::cmd("MULTI").query(&mut bob).unwrap();
    assert!(redis::cmd("SELECT").arg("other").query::<()>(&mut bob).is_err());
    let _: () = redis::cmd("SET").arg("k").arg("w").query(&mut bob).unwrap();
    assert_eq!(redis::cmd("EXEC").query::<()>(&mut bob).unwrap_err().code(), Some("EXECABORT"));
    assert_eq!(redis::cmd("GET").arg("k").query::<String>(&mut bob).unwrap(), "v");
    std::fs::write(&users, "[[users]]\nname = \"bob\"\npassword = \"second-pass\"\nnamespaces = [\"*\"]\n").unwrap();
    common::wait_for(|| {
        let err = redis::cmd("GET").arg("k").query::<String>(&mut bob).err()?;
        (err.code() == Some("NOAUTH")).then_some(())
    });
}
