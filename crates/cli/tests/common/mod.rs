//! Starts real `squall` processes on ephemeral loopback ports, the way a user would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestNode {
    pub child: Child,
    pub http: String,
    pub resp_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn squall() -> Command {
    Command::new(env!("CARGO_BIN_EXE_squall"))
}

impl TestNode {
    /// A node with a fresh data dir.
    pub fn start(extra: &[&str]) -> TestNode {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut node = TestNode::start_in(&dir, extra);
        node._tmp = Some(tmp);
        node
    }

    /// A node on `dir` (kept by the caller, for restarts).
    pub fn start_in(dir: &Path, extra: &[&str]) -> TestNode {
        TestNode::spawn(dir, extra, true, None)
    }

    /// A node on `dir`, returned as soon as it says where it listens, before
    /// it has finished starting (deploying `--examples`, say).
    pub fn launch(dir: &Path, extra: &[&str]) -> TestNode {
        TestNode::spawn(dir, extra, false, None)
    }

    /// A node on `dir` whose process may open at most `fds` files (soft and
    /// hard limit, as `ulimit -n` would set them).
    pub fn start_with_fd_limit(dir: &Path, extra: &[&str], fds: u64) -> TestNode {
        TestNode::spawn(dir, extra, true, Some(fds))
    }

    /// Starts `squall up` and reads its output as far as the addresses, or
    /// (`started`) as far as the line it prints once it has started.
    fn spawn(dir: &Path, extra: &[&str], started: bool, fds: Option<u64>) -> TestNode {
        // A file limit is set the way a user would: `ulimit -n` in a shell
        // that then becomes the node.
        let mut cmd = match fds {
            None => squall(),
            Some(fds) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {fds} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_squall")]);
                sh
            }
        };
        cmd.args(["up", "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("SQUALL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("squall starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut resp_port) = (String::new(), 0);
        for line in lines.by_ref() {
            let line = line.expect("squall prints where it listens");
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("http") {
                http = rest.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("redis") {
                let url = rest.split_whitespace().next().unwrap();
                resp_port = url.rsplit(':').next().unwrap().parse().unwrap();
            } else if line.starts_with("stop with") {
                break;
            }
            if !started && !http.is_empty() && resp_port != 0 {
                break;
            }
        }
        assert!(!http.is_empty() && resp_port != 0, "squall did not say where it listens");
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestNode { child, http, resp_port, data_dir: dir.to_path_buf(), _tmp: None }
    }

    pub fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.resp_port)).unwrap();
        client.get_connection_with_timeout(Duration::from_secs(5)).expect("redis client connects")
    }

    pub fn resp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.resp_port)
    }

    /// SIGKILL: no shutdown, no final sync.
    /// The node's resident memory, in MiB.
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() >> 10
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        sigterm(self.child.id());
        self.child.wait().unwrap()
    }
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command-line tool the test needs; in CI its absence is a failure, not a skip.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{name} is not installed; .ci/run installs it");
        eprintln!("skipping: {name} is not installed (apt-get install redis-tools)");
    }
    found
}

/// The bin directory of a venv under the target dir with `package` from
/// PyPI in it, made once; `ready` says whether a bin directory works.
/// `None` (a skip) when python3 is missing or cannot make venvs, outside CI.
pub fn venv_with(name: &str, package: &str, ready: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    // Tests of one binary run in parallel: one makes the venv, the others wait.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let python3 = tool("python3")?;
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let bin = venv.join("bin");
    if ready(&bin) {
        return Some(bin);
    }
    let made = Command::new(&python3).args(["-m", "venv"]).arg(&venv).output().expect("python3 runs");
    if !made.status.success() {
        let why = String::from_utf8_lossy(&made.stderr).into_owned();
        assert!(std::env::var_os("CI").is_none(), "python3 -m venv failed (.ci/run installs python3-venv): {why}");
        eprintln!("skipping: python3 -m venv failed: {why}");
        return None;
    }
    let pip = Command::new(bin.join("pip"))
        .args(["install", "-q", "--disable-pip-version-check", package])
        .output()
        .expect("pip runs");
    assert!(pip.status.success(), "pip install {package}: {}", String::from_utf8_lossy(&pip.stderr));
    assert!(ready(&bin), "{package} does not work after pip install");
    Some(bin)
}

/// The componentize-py release the Python SDK is built with (as `squall` says).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// A venv with componentize-py, made if missing: its bin directory.
pub fn venv_with_componentize_py() -> Option<PathBuf> {
    let ready = |bin: &Path| {
        Command::new(bin.join("componentize-py")).arg("--version").output().is_ok_and(|o| o.status.success())
    };
    venv_with("componentize-py-venv", COMPONENTIZE_PY, ready)
}

/// A raw HTTP/1.1 request; returns (status, lowercased head, body).
pub fn http(node: &TestNode, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    http_with(node, method, path, &[], body)
}

/// Like [`http`], with extra headers.
pub fn http_with(
    node: &TestNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    http_at(&node.http, method, path, headers, body)
}

/// A request to the node at `base` (`http://host:port`).
pub fn http_at(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The node may answer (and close) before reading a body it refuses.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out)
        && out.is_empty()
    {
        panic!("no answer to {method} {path}: {e}");
    }
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), out[split + 4..].to_vec())
}

/// A response header's value (from a lowercased head).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

/// What `f` gives once it gives something, tried every 100 ms for up to 10 s.
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "still not so after 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
