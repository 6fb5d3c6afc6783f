//! `squall deploy`, `squall invoke`, `squall fn ls|show|rm`, `squall logs`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::NodeArgs;
use crate::client::{self, encode_path, encode_query};

#[derive(Args)]
pub struct DeployArgs {
    /// The function's name (letters, digits, '-', '_')
    name: String,
    /// A component (.wasm), a Python file (app.py) or directory (with app.py,
    /// and a requirements.txt if it needs packages), or the directory of a
    /// Rust crate to build for wasm32-wasip2
    path: PathBuf,
    /// Time limit per invocation, e.g. 500ms, 30s, 2m [default: 30s]
    #[arg(long)]
    timeout: Option<String>,
    /// Memory limit, e.g. 64MiB, 1GiB [default: 128MiB]
    #[arg(long)]
    memory: Option<String>,
    /// Invocations that may run at once [default: 64]
    #[arg(long)]
    concurrency: Option<u32>,
    /// Invocations that may wait for a turn; more are refused with 429 [default: 1024]
    #[arg(long)]
    queue: Option<u32>,
    /// An environment value the function sees (repeat for more)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args)]
pub struct InvokeArgs {
    /// The function's name
    name: String,
    /// The input (`-` reads standard input) [default: empty]
    input: Option<String>,
    /// Run at most once for this key: a retry gets the first call's answer
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Print where the time went (to standard error)
    #[arg(long)]
    timing: bool,
    /// Replay: run the version deployed at this past time against the keys
    /// as they were then, changing nothing, and print what it would have
    /// written (RFC 3339, -5m, or a stamp)
    #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
    at: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
pub enum FnCommand {
    /// List deployed functions
    Ls {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Show a function's settings
    Show {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Remove a function
    Rm {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Args)]
pub struct LogsArgs {
    /// The function's name
    name: String,
    /// Only this invocation
    #[arg(long)]
    invocation: Option<String>,
    /// How many recent invocations to print
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Keep printing new invocations as they finish
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    node: NodeArgs,
}

/// Builds the Rust crate in `dir` for wasm32-wasip2 and returns the component's path.
fn build_crate(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} is a directory without a Cargo.toml: give a .wasm file or a Rust crate", dir.display());
    }
    eprintln!("building {} for wasm32-wasip2 ...", dir.display());
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo (is Rust installed?)")?;
    if !out.status.success() {
        bail!("the build failed (see above); is the target installed? `rustup target add wasm32-wasip2`");
    }
    let canonical = manifest.canonicalize().unwrap_or_else(|_| manifest.clone());
    let mut found = None;
    for line in out.stdout.split(|b| *b == b'\n') {
        let Ok(msg) = serde_json::from_slice::<CargoMessage>(line) else { continue };
        let ours = msg.manifest_path.as_deref().is_some_and(|m| Path::new(m) == canonical);
        if msg.reason != "compiler-artifact" || !ours {
            continue;
        }
        if let Some(f) = msg.filenames.into_iter().rfind(|f| f.ends_with(".wasm")) {
            found = Some(PathBuf::from(f));
        }
    }
    found.context("the crate built no .wasm: is it a library with crate-type = [\"cdylib\"]?")
}

/// What `build_crate` reads of one line of cargo's `--message-format=json`.
#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    manifest_path: Option<String>,
    #[serde(default)]
    filenames: Vec<String>,
}

pub(crate) fn print_json_or(
    node: &NodeArgs,
    v: &impl Serialize,
    text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = std::io::stdout();
    if node.json {
        writeln!(out, "{}", serde_json::to_string(v)?)?;
    } else {
        text(&mut out)?;
    }
    Ok(())
}

fn mib(n: u64) -> String {
    format!("{} MiB", n >> 20)
}

pub async fn deploy(a: DeployArgs) -> Result<()> {
    let mut q = Vec::new();
    let bytes = if crate::python::is_python(&a.path) {
        let built = crate::python::build(&a.path)?;
        for (k, v) in built.env {
            q.push(format!("env={}", encode_query(&format!("{k}={v}"))));
        }
        built.component
    } else {
        let file = if a.path.is_dir() { build_crate(&a.path)? } else { a.path.clone() };
        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
    };
    if let Some(t) = &a.timeout {
        q.push(format!("timeout={}", encode_path(t)));
    }
    if let Some(m) = &a.memory {
        q.push(format!("memory={}", encode_path(m)));
    }
    if let Some(c) = a.concurrency {
        q.push(format!("concurrency={c}"));
    }
    if let Some(n) = a.queue {
        q.push(format!("queue={n}"));
    }
    for e in &a.env {
        if !e.contains('=') {
            bail!("--env takes KEY=VALUE, not {e:?}");
        }
        q.push(format!("env={}", encode_query(e)));
    }
    let query = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    let path = format!("/v1/functions/{}{query}", encode_path(&a.name));
    let r = client::call(&a.node.node, Method::PUT, &path, Bytes::from(bytes)).await?.ok()?;
    let m: squall_api::Function = r.json()?;
    print_json_or(&a.node, &m, |out| {
        writeln!(
            out,
            "deployed {} version {} ({} bytes, digest {})",
            a.name,
            m.version,
            m.size,
            m.digest.get(..12).unwrap_or_default()
        )
    })
}

/// An input given on the command line: the text itself, `-` for standard input, or nothing.
pub(crate) fn read_input(input: Option<&str>) -> Result<Vec<u8>> {
    Ok(match input {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the input from standard input")?;
            buf
        }
        Some(s) => s.as_bytes().to_vec(),
        None => Vec::new(),
    })
}

pub async fn invoke(a: InvokeArgs) -> Result<()> {
    let input = read_input(a.input.as_deref())?;
    let mut headers = Vec::new();
    if let Some(k) = &a.idempotency_key {
        headers.push(("idempotency-key", k.clone()));
    }
    let path = format!("/v1/functions/{}/invoke", encode_path(&a.name));
    if let Some(at) = &a.at {
        let path = format!("{path}?at={}", client::encode_query(at));
        let r = client::call_with(&a.node.node, Method::POST, &path, &headers, Bytes::from(input)).await?.ok()?;
        let replay: squall_api::Replay = r.json()?;
        return print_json_or(&a.node, &replay, |out| {
            writeln!(out, "{}", replay.output)?;
            writeln!(
                out,
                "-- version {} at {} (stamp {}); would write, not applied:",
                replay.version, replay.at, replay.stamp
            )?;
            for w in &replay.writes {
                writeln!(out, "{}", w.command)?;
            }
            Ok(())
        });
    }
    run_invocation(&a.node, &path, &headers, input, a.timing).await
}

/// Sends an invocation (of a function or a DAG) and prints its output.
pub(crate) async fn run_invocation(
    node: &NodeArgs,
    path: &str,
    headers: &[(&str, String)],
    input: Vec<u8>,
    timing: bool,
) -> Result<()> {
    let r = client::call_with(&node.node, Method::POST, path, headers, Bytes::from(input)).await?;
    let header = |h: &str| r.headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (id, server_timing) = (header("x-squall-invocation-id"), header("server-timing"));
    let replayed = header("x-squall-idempotent-replay") == "true";
    if timing {
        eprintln!("invocation {id}: {server_timing}");
    }
    let r = r.ok().with_context(|| format!("invocation {id} failed"))?;
    let mut out = std::io::stdout();
    if node.json {
        let v = serde_json::json!({
            "invocation_id": id,
            "output": String::from_utf8_lossy(&r.body),
            "server_timing": server_timing,
            "replayed": replayed,
        });
        writeln!(out, "{v}")?;
    } else {
        out.write_all(&r.body)?;
        if !r.body.ends_with(b"\n") && std::io::IsTerminal::is_terminal(&out) {
            writeln!(out)?;
        }
    }
    Ok(())
}

pub async fn fn_command(cmd: FnCommand) -> Result<()> {
    match cmd {
        FnCommand::Ls { node } => {
            let r = client::call(&node.node, Method::GET, "/v1/functions", Bytes::new()).await?.ok()?;
            let v: squall_api::FunctionList = r.json()?;
            print_json_or(&node, &v, |out| {
                let fns = &v.functions;
                if fns.is_empty() {
                    return writeln!(out, "no functions deployed (squall deploy NAME FILE.wasm)");
                }
                writeln!(
                    out,
                    "{:<24} {:>7} {:>9} {:>10} {:>11}",
                    "NAME", "VERSION", "TIMEOUT", "MEMORY", "CONCURRENCY"
                )?;
                for f in fns {
                    writeln!(
                        out,
                        "{:<24} {:>7} {:>8}s {:>10} {:>11}",
                        f.name,
                        f.version,
                        f.timeout_ms as f64 / 1000.0,
                        mib(f.memory_bytes),
                        f.concurrency
                    )?;
                }
                Ok(())
            })
        }
        FnCommand::Show { name, node } => {
            let path = format!("/v1/functions/{}", encode_path(&name));
            let r = client::call(&node.node, Method::GET, &path, Bytes::new()).await?.ok()?;
            let f: squall_api::Function = r.json()?;
            print_json_or(&node, &f, |out| {
                writeln!(out, "name         {}", f.name)?;
                writeln!(out, "version      {}", f.version)?;
                writeln!(out, "digest       {}", f.digest)?;
                writeln!(out, "size         {} bytes", f.size)?;
                writeln!(out, "timeout      {} ms", f.timeout_ms)?;
                writeln!(out, "memory       {}", mib(f.memory_bytes))?;
                writeln!(out, "concurrency  {} (queue {})", f.concurrency, f.queue)?;
                for (k, v) in &f.env {
                    if k == crate::python::SOURCE_ENV {
                        writeln!(out, "python       {}", crate::python::describe(v))?;
                    } else {
                        writeln!(out, "env          {k}={v}")?;
                    }
                }
                writeln!(out, "created      {} ms since the Unix epoch", f.created_ms)
            })
        }
        FnCommand::Rm { name, node } => {
            let path = format!("/v1/functions/{}", encode_path(&name));
            let r = client::call(&node.node, Method::DELETE, &path, Bytes::new()).await?.ok()?;
            let f: squall_api::Function = r.json()?;
            print_json_or(&node, &f, |out| writeln!(out, "removed {name}"))
        }
    }
}

fn print_log(out: &mut dyn Write, l: &squall_api::InvocationLog) -> std::io::Result<()> {
    writeln!(
        out,
        "== {} {} v{} {} in {:.3} ms{}",
        l.invocation_id,
        l.function,
        l.version,
        l.status,
        l.duration_us as f64 / 1000.0,
        l.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )?;
    for line in &l.lines {
        writeln!(out, "   {:<6} {}", line.level, line.message.replace('\n', "\n          "))?;
    }
    Ok(())
}

pub async fn logs(a: LogsArgs) -> Result<()> {
    let mut after: Option<u64> = None;
    let mut out = std::io::stdout();
    loop {
        let mut q = format!("/v1/functions/{}/logs?limit={}", encode_path(&a.name), a.limit.max(1));
        if let Some(id) = &a.invocation {
            q.push_str(&format!("&invocation={}", encode_path(id)));
        }
        if let Some(n) = after {
            q.push_str(&format!("&after={n}"));
        }
        let r = client::call(&a.node.node, Method::GET, &q, Bytes::new()).await?.ok()?;
        let v: squall_api::Logs = r.json()?;
        for l in &v.logs {
            if a.node.json {
                writeln!(out, "{}", serde_json::to_string(l)?)?;
            } else {
                print_log(&mut out, l)?;
            }
        }
        out.flush()?;
        after = Some(v.after);
        if !a.follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
