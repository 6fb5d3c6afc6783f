//! The `squall` command: run a node, or talk to one. Thin: parsing flags and
//! printing; the work is in the library crates.

mod client;
mod dags;
mod functions;
mod jobs;
mod python;
mod snapshots;
mod triggers;

/// mimalloc rather than the system allocator: an invocation allocates many
/// small, short-lived objects (wasmtime's store and instance, the WASI
/// context, the transaction), and mimalloc serves them in fewer cycles.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hyper::Method;
use squall_node::{Config, Node, Overrides, StoreDurability};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "squall",
    version,
    about = "Squall: a stateful serverless platform with a lattice key-value store",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a node: the key-value store, its Redis-protocol listener and the HTTP API
    Up(Box<UpArgs>),
    /// Read and write keys on a running node (over its HTTP API)
    #[command(subcommand)]
    Kv(KvCommand),
    /// Deploy a function: a component (FILE.wasm), Python (app.py, or a directory with app.py) built with componentize-py, or a Rust crate (DIR) built for wasm32-wasip2
    Deploy(functions::DeployArgs),
    /// Invoke a function and print its output
    Invoke(functions::InvokeArgs),
    /// List, show and remove deployed functions
    #[command(subcommand, name = "fn")]
    Fn(functions::FnCommand),
    /// Print a function's recent invocations and their logs
    Logs(functions::LogsArgs),
    /// Register, invoke, list, show and remove DAGs of functions
    #[command(subcommand)]
    Dag(dags::DagCommand),
    /// Run a function on every input of a file (a map job), with progress
    Map(jobs::MapArgs),
    /// List, show, wait for and cancel map jobs
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Read-only views of the keys as they were at a past time
    #[command(subcommand)]
    Snapshot(snapshots::SnapshotCommand),
    /// Run functions on pub/sub messages, key changes and schedules
    #[command(subcommand)]
    Trigger(triggers::TriggerCommand),
}

#[derive(Args)]
struct UpArgs {
    /// Configuration file [default: ./squall.toml if it exists]
    #[arg(long, env = "SQUALL_CONFIG")]
    config: Option<PathBuf>,
    /// Where data lives [default: ./squall-data]
    #[arg(long, env = "SQUALL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:7700]
    #[arg(long, env = "SQUALL_HTTP")]
    http: Option<SocketAddr>,
    /// Redis-protocol address [default: 127.0.0.1:6380]
    #[arg(long, env = "SQUALL_RESP")]
    resp: Option<SocketAddr>,
    /// Number of shard threads [default: one per core but one, at least one]
    #[arg(long, env = "SQUALL_SHARDS")]
    shards: Option<usize>,
    /// sync: acknowledge writes once fsynced; async: at once, fsync within a second [default: sync]
    #[arg(long, env = "SQUALL_DURABILITY")]
    durability: Option<StoreDurability>,
    /// This node's id [default: made up on first start and kept in the data dir]
    #[arg(long, env = "SQUALL_NODE_ID")]
    node_id: Option<u64>,
    /// Pooled function instance slots, shared by running invocations and
    /// instances kept ready for warm calls (at most a quarter) [default: 256]
    #[arg(long, env = "SQUALL_INSTANCES")]
    instances: Option<u32>,
    /// Connections each listener (HTTP, Redis protocol) holds at once; more
    /// are refused [default: half the open-file limit left after 128 kept for
    /// the store, at most 10000]
    #[arg(long, env = "SQUALL_MAX_CLIENTS")]
    max_clients: Option<usize>,
    /// Seconds an HTTP connection may take to send a request's headers,
    /// counted from its start or its last response (so idle keep-alive
    /// connections close after it too) [default: 30]
    #[arg(long, env = "SQUALL_HTTP_HEADER_TIMEOUT", value_name = "SECONDS")]
    http_header_timeout: Option<u64>,
    /// The secret clients must present (HTTP `Authorization: Bearer`, Redis
    /// `AUTH`); needed to listen beyond loopback. squall's client commands
    /// send SQUALL_TOKEN
    #[arg(long, env = "SQUALL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Listen beyond loopback with no token (anyone who can reach the node
    /// can read, write and run code)
    #[arg(long)]
    insecure: bool,
    /// How long the window log keeps changes, for reads of the past
    /// (`?at=`): 15m, 90s, 2h; 0 turns it off [default: 15m]
    #[arg(long, env = "SQUALL_RETENTION", value_name = "DURATION")]
    retention: Option<String>,
    /// The most the window log holds (all shards): bytes, or 256mb, 1gb [default: 256mb]
    #[arg(long, env = "SQUALL_RETENTION_BYTES", value_name = "SIZE")]
    retention_bytes: Option<String>,
    /// Seconds an HTTP request's body may take to arrive [default: 60]
    #[arg(long, env = "SQUALL_HTTP_BODY_TIMEOUT", value_name = "SECONDS")]
    http_body_timeout: Option<u64>,
    /// How much a Redis-protocol client's unread replies may hold, in Redis's
    /// form "normal <hard> <soft> <seconds>": over hard, or over soft for
    /// that long, the client is closed; 0 turns a limit off [default: normal 256mb 64mb 60]
    #[arg(long, env = "SQUALL_CLIENT_OUTPUT_BUFFER_LIMIT", value_name = "LIMIT")]
    client_output_buffer_limit: Option<String>,
    /// Longest value a Redis-protocol request may carry: bytes, or 512mb, 1gb
    /// (at most 1gb; CONFIG SET proto-max-bulk-len changes it) [default: 512mb]
    #[arg(long, env = "SQUALL_PROTO_MAX_BULK_LEN", value_name = "SIZE")]
    proto_max_bulk_len: Option<String>,
    /// A PEM certificate (chain) to serve TLS with, on HTTP and the Redis
    /// protocol both (with --tls-key)
    #[arg(long, env = "SQUALL_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, env = "SQUALL_TLS_KEY", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// A file of users (`[[users]]` with name, password, namespaces,
    /// deploy), read again whenever it changes
    #[arg(long, env = "SQUALL_USERS_FILE", value_name = "TOML")]
    users_file: Option<PathBuf>,
    /// Deploy the example functions on start (hello, counter, inc, square, fanout, ping, pong, wordcount, retwis)
    #[arg(long)]
    examples: bool,
}

#[derive(Args)]
pub(crate) struct NodeArgs {
    /// The node's HTTP address
    #[arg(long, env = "SQUALL_NODE", default_value = "http://127.0.0.1:7700", global = true)]
    pub(crate) node: String,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Print a key's value (a register's bytes as they are; other types as JSON)
    Get {
        key: String,
        /// Its value at a past time: RFC 3339 (2026-12-01T16:00:00Z), before
        /// now (-5m, -30s) or a stamp (MS.COUNTER)
        #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
        at: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Set a key to a value (`-` reads the value from standard input)
    Put {
        key: String,
        value: String,
        /// Expire the key after this many seconds
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Delete a key
    Del {
        key: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List keys (sorted), optionally only those starting with PREFIX
    Scan {
        prefix: Option<String>,
        /// At most this many keys
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// The keys as they were at a past time (as for `kv get --at`)
        #[arg(long, allow_hyphen_values = true, value_name = "TIME")]
        at: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn main() {
    // Transparent huge pages make the allocator's sparsely used regions
    // resident in 2 MiB steps; like Redis, which warns about them and turns
    // them off for itself, a key-value store is better off without.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(*args).await,
            Command::Kv(cmd) => kv(cmd).await,
            Command::Deploy(args) => functions::deploy(args).await,
            Command::Invoke(args) => functions::invoke(args).await,
            Command::Fn(cmd) => functions::fn_command(cmd).await,
            Command::Logs(args) => functions::logs(args).await,
            Command::Dag(cmd) => dags::dag_command(cmd).await,
            Command::Map(args) => jobs::map(args).await,
            Command::Jobs(cmd) => jobs::jobs_command(cmd).await,
            Command::Snapshot(cmd) => snapshots::run(cmd).await,
            Command::Trigger(cmd) => triggers::trigger_command(cmd).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn up(args: UpArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQUALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let overrides = Overrides {
        data_dir: args.data_dir,
        http: args.http,
        resp: args.resp,
        shards: args.shards,
        durability: args.durability,
        node_id: args.node_id,
        max_body_bytes: None,
        instances: args.instances,
        max_clients: args.max_clients,
        http_header_timeout_s: args.http_header_timeout,
        http_body_timeout_s: args.http_body_timeout,
        token: args.token.map(squall_node::Secret),
        insecure: args.insecure.then_some(true),
        client_output_buffer_limit: args.client_output_buffer_limit,
        proto_max_bulk_len: args.proto_max_bulk_len,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        users: None,
        users_file: args.users_file,
        quotas: None,
        retention: args.retention,
        retention_bytes: args.retention_bytes,
    };
    let config = Config::resolve(args.config.as_deref(), overrides)?;
    let node = Node::start(config).await?;
    let c = node.config();
    let store = node.store().context("the store is not running")?;
    println!(
        "squall {} node {} ({} shards, durability {}, data in {})",
        env!("CARGO_PKG_VERSION"),
        store.node_id(),
        c.shards,
        c.durability,
        c.data_dir.display()
    );
    let (scheme, resp_port) = (if c.tls_cert.is_some() { "https" } else { "http" }, node.resp_addr().port());
    println!("  http   {scheme}://{}", node.http_addr());
    match &c.tls_cert {
        None => println!("  redis  redis://{}   try: redis-cli -p {resp_port}", node.resp_addr()),
        Some(cert) => println!(
            "  redis  rediss://{}   try: redis-cli --tls --cacert {} -p {resp_port}",
            node.resp_addr(),
            cert.display()
        ),
    }
    if args.examples {
        for (name, bytes) in squall_guests::DEFAULT_EXAMPLES {
            let digest = squall_node::scheduler::digest(bytes);
            if let Ok(m) = node
                .functions()
                .show(name)
                .map_err(|_| ())
                .and_then(|m| if m.digest == digest { Ok(m) } else { Err(()) })
            {
                println!("  function {name} (version {}, already deployed)", m.version);
                continue;
            }
            let meta = node
                .functions()
                .deploy(name, Bytes::from_static(bytes), Default::default())
                .await
                .with_context(|| format!("deploying the example {name}"))?;
            println!("  function {name} (version {})", meta.version);
        }
        let base = format!("{scheme}://{}", node.http_addr());
        println!("  try: curl -d world {base}/v1/functions/hello/invoke");
        println!("       curl -d visits {base}/v1/functions/counter/invoke");
    }
    node.ready();
    println!("stop with Ctrl-C");
    let _ = std::io::stdout().flush();
    let failed = tokio::select! {
        _ = shutdown_signal() => None,
        why = node.disk_failed() => Some(why),
    };
    if let Some(why) = &failed {
        eprintln!("the disk failed ({why}); writes are refused, so the node stops");
    }
    eprintln!("stopping: finishing requests and syncing the disk");
    node.shutdown().await;
    eprintln!("stopped");
    if failed.is_some() {
        // EX_SOFTWARE: a supervisor restarts the node (on a healthy disk).
        std::process::exit(70);
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Prints the key `path` answers (`GET /v1/kv/KEY` or a snapshot's).
pub(crate) async fn print_key(node: &NodeArgs, path: &str) -> Result<()> {
    let mut out = std::io::stdout();
    let r = client::call(&node.node, Method::GET, path, Bytes::new()).await?.ok()?;
    let kind = r.headers.get("x-squall-type").and_then(|v| v.to_str().ok()).unwrap_or("register").to_string();
    if node.json {
        if kind == "register" {
            let value = serde_json::json!({ "type": "register", "value": String::from_utf8_lossy(&r.body) });
            writeln!(out, "{value}")?;
        } else {
            // The node answers `null` for a tombstone.
            let value: Option<squall_api::Value> = r.json()?;
            writeln!(out, "{}", serde_json::to_string(&value)?)?;
        }
    } else {
        out.write_all(&r.body)?;
        if !r.body.ends_with(b"\n") {
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Prints up to `limit` keys (sorted) of the scan at `base` (`/v1/kv` or a
/// snapshot's), `query` added to each page's request.
pub(crate) async fn print_scan(
    node: &NodeArgs,
    base: &str,
    prefix: Option<&str>,
    limit: usize,
    query: &str,
) -> Result<()> {
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    let mut out = std::io::stdout();
    let mut keys = Vec::new();
    let mut cursor = String::from("0");
    loop {
        let mut q = format!("{base}?cursor={cursor}&limit={}{query}", (limit - keys.len()).min(1000));
        if let Some(p) = prefix {
            q.push_str(&format!("&prefix={}", client::encode_query(p)));
        }
        let r = client::call(&node.node, Method::GET, &q, Bytes::new()).await?.ok()?;
        let page: squall_api::ScanPage = r.json()?;
        keys.extend(page.keys);
        cursor = page.cursor;
        if page.done || keys.len() >= limit {
            break;
        }
    }
    keys.truncate(limit);
    // The node pages in hash order; people read lists sorted.
    keys.sort();
    if node.json {
        writeln!(out, "{}", serde_json::json!({ "keys": keys }))?;
    } else {
        for k in keys {
            writeln!(out, "{k}")?;
        }
    }
    Ok(())
}

async fn kv(cmd: KvCommand) -> Result<()> {
    let mut out = std::io::stdout();
    match cmd {
        KvCommand::Get { key, at, node } => {
            let at = at.map(|t| format!("?at={}", client::encode_query(&t))).unwrap_or_default();
            print_key(&node, &format!("/v1/kv/{}{at}", client::encode_path(&key))).await?;
        }
        KvCommand::Put { key, value, ttl, node } => {
            let body = if value == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).context("reading the value from standard input")?;
                Bytes::from(buf)
            } else {
                Bytes::from(value)
            };
            let query = ttl.map(|t| format!("?ttl={t}")).unwrap_or_default();
            client::call(&node.node, Method::PUT, &format!("/v1/kv/{}{query}", client::encode_path(&key)), body)
                .await?
                .ok()?;
            if node.json {
                writeln!(out, "{}", serde_json::json!({ "ok": true, "key": key }))?;
            } else {
                writeln!(out, "OK")?;
            }
        }
        KvCommand::Del { key, node } => {
            client::call(&node.node, Method::DELETE, &format!("/v1/kv/{}", client::encode_path(&key)), Bytes::new())
                .await?
                .ok()?;
            if node.json {
                writeln!(out, "{}", serde_json::json!({ "deleted": key }))?;
            } else {
                writeln!(out, "deleted {key}")?;
            }
        }
        KvCommand::Scan { prefix, limit, at, node } => {
            let at = at.map(|t| format!("&at={}", client::encode_query(&t))).unwrap_or_default();
            print_scan(&node, "/v1/kv", prefix.as_deref(), limit, &at).await?;
        }
    }
    Ok(())
}
