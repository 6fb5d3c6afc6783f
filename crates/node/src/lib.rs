//! A Squall node: configuration, the store, the listeners, and shutdown.
//!
//! Configuration is layered: built-in defaults, then `squall.toml`, then
//! `SQUALL_*` environment variables, then flags (the CLI applies the last two
//! as [`Overrides`]). [`Node::start`] opens the store, binds both listeners
//! and serves until [`Node::shutdown`]. Nothing here is imported by the parts
//! it wires.

use serde::Deserialize;
use squall_gateway::auth::{Access, UserSpec};
use squall_gateway::{Metrics, http, redis};
use squall_scheduler::{Functions, Quota, Settings};
use squall_store::{Durability, Options, Retention, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use squall_scheduler as scheduler;
pub use squall_store::Durability as StoreDurability;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub resp: SocketAddr,
    pub shards: usize,
    pub durability: Durability,
    pub node_id: Option<u64>,
    /// Largest HTTP request body for keys, in bytes.
    pub max_body_bytes: usize,
    /// Pooled function instance slots, shared by running invocations and
    /// instances kept ready for warm calls (at most a quarter).
    pub instances: u32,
    /// Connections each listener (HTTP, Redis protocol) holds at once;
    /// `None`: sized from the file descriptor limit ([`default_max_clients`]).
    pub max_clients: Option<usize>,
    /// Seconds from a connection's start or last response to the end of the
    /// next request's headers (idle keep-alive connections close after it).
    pub http_header_timeout_s: u64,
    /// Seconds a request's body may take to arrive, from its headers.
    pub http_body_timeout_s: u64,
    /// The secret clients must present: HTTP `Authorization: Bearer`, the
    /// Redis protocol's `AUTH` (the `default` user's password).
    pub token: Option<Secret>,
    /// Listen beyond loopback without a token (said out loud at start).
    pub insecure: bool,
    /// How much a Redis-protocol client's unread replies may hold.
    pub output_limit: redis::OutputLimit,
    /// A PEM certificate chain and its private key: with both, HTTP and
    /// the Redis protocol speak TLS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Users beside the token's (`[[users]]` in squall.toml).
    pub users: Vec<UserSpec>,
    /// A file of more users (`[[users]]`), read again whenever it changes.
    pub users_file: Option<PathBuf>,
    /// Per namespace: its quota (`[quotas.NS]`).
    pub quotas: HashMap<String, Quota>,
    /// How far back the window log reaches (reads of the past).
    pub retention: Retention,
    /// Longest value (bulk string) a Redis-protocol request may carry
    /// (Redis's `proto-max-bulk-len`).
    pub proto_max_bulk_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./squall-data"),
            http: SocketAddr::from(([127, 0, 0, 1], 7700)),
            resp: SocketAddr::from(([127, 0, 0, 1], 6380)),
            shards: squall_store::default_shards(),
            durability: Durability::Sync,
            node_id: None,
            max_body_bytes: 8 * 1024 * 1024,
            instances: 256,
            max_clients: None,
            http_header_timeout_s: 30,
            http_body_timeout_s: 60,
            token: None,
            insecure: false,
            output_limit: redis::OutputLimit::default(),
            tls_cert: None,
            tls_key: None,
            users: Vec::new(),
            users_file: None,
            quotas: HashMap::new(),
            retention: Retention::DEFAULT,
            proto_max_bulk_len: redis::DEFAULT_MAX_BULK_LEN,
        }
    }
}

/// A retention time: `0` (off) or a duration such as `15m`, `90s`, `1h30m`.
fn parse_retention(text: &str) -> Result<u64, Error> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| Error::Config(format!("retention: {text:?} is not a duration such as 15m or 90s ({e})")))?;
    Ok(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// A secret: read like a string, never printed (`Debug` says only that it is set).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// File descriptors kept for the store (its log, snapshots, checkpoints),
/// compiled components and the rest of the node, beyond any client's reach.
pub const RESERVED_FDS: u64 = 128;

/// Raises the soft limit on open files to the hard one (a node serves many
/// connections; 1024, the usual soft limit, is far too few) and returns the
/// limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // `None` is unlimited; an unlimited hard limit (macOS) is asked for a
    // large finite soft one.
    const WANTED: u64 = 1 << 20;
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let target = maximum.unwrap_or(WANTED);
    if let Some(cur) = current
        && cur < target
        && setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum }).is_ok()
    {
        return target;
    }
    current.unwrap_or(u64::MAX)
}

/// Each listener's client limit for a file descriptor limit of `fds`: half
/// of what is left after [`RESERVED_FDS`], at most 10,000 (Redis's default),
/// at least 1.
pub fn default_max_clients(fds: u64) -> usize {
    (fds.saturating_sub(RESERVED_FDS) / 2).clamp(1, 10_000) as usize
}

/// Settings from a file, the environment or flags; `None` leaves the layer below.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http: Option<SocketAddr>,
    pub resp: Option<SocketAddr>,
    pub shards: Option<usize>,
    pub durability: Option<Durability>,
    pub node_id: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub instances: Option<u32>,
    pub max_clients: Option<usize>,
    pub http_header_timeout_s: Option<u64>,
    pub http_body_timeout_s: Option<u64>,
    pub token: Option<Secret>,
    pub insecure: Option<bool>,
    /// Redis's form: `normal <hard> <soft> <seconds>`.
    pub client_output_buffer_limit: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub users: Option<Vec<UserSpec>>,
    pub users_file: Option<PathBuf>,
    pub quotas: Option<HashMap<String, Quota>>,
    /// How long the window log keeps changes: `15m`, `90s`, `2h`; `0` turns it off.
    pub retention: Option<String>,
    /// The most the window log holds, in bytes or with Redis's units (`256mb`).
    pub retention_bytes: Option<String>,
    /// Longest Redis-protocol value, in bytes or with Redis's units (`512mb`).
    pub proto_max_bulk_len: Option<String>,
}

/// A users file: `[[users]]` tables, as in squall.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserSpec>,
}

/// The users in `path`.
fn read_users(path: &Path) -> Result<Vec<UserSpec>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read the users file {}: {e}", path.display())))?;
    let file: UsersFile =
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
    Ok(file.users)
}

/// The users in force: squall.toml's, then the users file's.
fn all_users(config: &Config) -> Result<Vec<UserSpec>, Error> {
    let mut users = config.users.clone();
    if let Some(path) = &config.users_file {
        users.extend(read_users(path)?);
    }
    Ok(users)
}

/// What the users file looks like on disk: a change to it is a reason to read it again.
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads the users file again each time it changes (checked every second)
/// until `stop`; a file that does not parse changes nothing, and says so.
async fn watch_users(config: Config, access: Arc<Access>, mut stop: watch::Receiver<bool>) {
    let Some(path) = config.users_file.clone() else { return };
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match all_users(&config).and_then(|users| access.replace(users).map_err(Error::Config)) {
            Ok(n) => tracing::info!(file = %path.display(), "users reloaded: {n} users"),
            Err(e) => tracing::error!(file = %path.display(), "users file not reloaded, the users before stay: {e}"),
        }
    }
}

/// Counts the keys of the namespaces with a key quota once a second, until `stop`.
async fn count_keys(functions: Functions, mut stop: watch::Receiver<bool>) {
    if functions.settings().quotas.values().all(|q| q.keys.is_none()) {
        return;
    }
    loop {
        functions.count_keys().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

impl Config {
    /// Whether anyone must authenticate: a token, or users, are configured.
    fn has_credentials(&self) -> bool {
        self.token.is_some() || !self.users.is_empty() || self.users_file.is_some()
    }

    /// Refuses a listener beyond loopback without credentials, unless `insecure`.
    fn check_exposure(&self) -> Result<(), Error> {
        for (what, addr) in [("HTTP", self.http), ("the Redis protocol", self.resp)] {
            if !addr.ip().is_loopback() && !self.has_credentials() && !self.insecure {
                return Err(Error::Config(format!(
                    "refusing to listen on {addr} for {what} without credentials: anyone who can reach it could \
                     read, write and run code; set a token (--token, SQUALL_TOKEN or token in squall.toml), or pass \
                     --insecure to do it anyway"
                )));
            }
        }
        Ok(())
    }

    fn apply(&mut self, o: Overrides) -> Result<(), Error> {
        let Overrides {
            data_dir,
            http,
            resp,
            shards,
            durability,
            node_id,
            max_body_bytes,
            instances,
            max_clients,
            http_header_timeout_s,
            http_body_timeout_s,
            token,
            insecure,
            client_output_buffer_limit,
            tls_cert,
            tls_key,
            users,
            users_file,
            quotas,
            retention,
            retention_bytes,
            proto_max_bulk_len,
        } = o;
        if let Some(text) = proto_max_bulk_len {
            self.proto_max_bulk_len =
                redis::max_bulk_len(text.trim()).map_err(|e| Error::Config(format!("proto-max-bulk-len: {e}")))?;
        }
        if let Some(text) = retention {
            self.retention.ms = parse_retention(&text)?;
        }
        if let Some(text) = retention_bytes {
            let bytes = redis::memory(text.trim()).map_err(|e| Error::Config(format!("retention-bytes: {e}")))?;
            self.retention.bytes = bytes as u64;
        }
        if let Some(v) = quotas {
            self.quotas = v;
        }
        if let Some(v) = users {
            self.users = v;
        }
        if users_file.is_some() {
            self.users_file = users_file;
        }
        if tls_cert.is_some() {
            self.tls_cert = tls_cert;
        }
        if tls_key.is_some() {
            self.tls_key = tls_key;
        }
        if let Some(text) = client_output_buffer_limit {
            self.output_limit = redis::OutputLimit::parse(&text).map_err(Error::Config)?;
        }
        // An empty value (`--token ""`, `SQUALL_TOKEN=`) is no value: it does not clear a token set below.
        if let Some(t) = token.filter(|t| !t.0.is_empty()) {
            self.token = Some(t);
        }
        if let Some(v) = insecure {
            self.insecure = v;
        }
        if max_clients.is_some() {
            self.max_clients = max_clients;
        }
        if let Some(v) = http_header_timeout_s {
            self.http_header_timeout_s = v;
        }
        if let Some(v) = http_body_timeout_s {
            self.http_body_timeout_s = v;
        }
        if let Some(v) = instances {
            self.instances = v;
        }
        if let Some(v) = data_dir {
            self.data_dir = v;
        }
        if let Some(v) = http {
            self.http = v;
        }
        if let Some(v) = resp {
            self.resp = v;
        }
        if let Some(v) = shards {
            self.shards = v;
        }
        if let Some(v) = durability {
            self.durability = v;
        }
        if node_id.is_some() {
            self.node_id = node_id;
        }
        if let Some(v) = max_body_bytes {
            self.max_body_bytes = v;
        }
        Ok(())
    }

    /// Defaults, then the config file (`file`, or `./squall.toml` if it
    /// exists), then `overrides` (environment and flags).
    pub fn resolve(file: Option<&Path>, overrides: Overrides) -> Result<Config, Error> {
        let mut config = Config::default();
        let default_file = Path::new("squall.toml");
        let path = match file {
            Some(p) => Some(p),
            None if default_file.exists() => Some(default_file),
            None => None,
        };
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
            let from_file: Overrides =
                toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
            config.apply(from_file)?;
        }
        config.apply(overrides)?;
        if config.shards == 0 || config.shards > 256 {
            return Err(Error::Config(format!("shards must be between 1 and 256, not {}", config.shards)));
        }
        if config.max_clients == Some(0) {
            return Err(Error::Config("max-clients must be at least 1".into()));
        }
        if config.http_header_timeout_s == 0 || config.http_body_timeout_s == 0 {
            return Err(Error::Config("HTTP timeouts must be at least 1 second".into()));
        }
        config.check_exposure()?;
        for ns in config.quotas.keys() {
            squall_scheduler::check_namespace(ns).map_err(|e| Error::Config(format!("[quotas.{ns}]: {e}")))?;
        }
        if config.instances == 0 || config.instances > 10_000 {
            return Err(Error::Config(format!("instances must be between 1 and 10000, not {}", config.instances)));
        }
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} for {what}: {reason}{hint}")]
    Listen { what: &'static str, addr: SocketAddr, reason: std::io::Error, hint: &'static str },
    #[error(transparent)]
    Store(#[from] squall_store::Error),
    #[error("functions: {0}")]
    Functions(String),
}

/// A running node.
pub struct Node {
    store: Option<Store>,
    functions: Functions,
    http_addr: SocketAddr,
    resp_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// What `/readyz` reports (with the store's health): set by [`Node::ready`].
    ready: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    config: Config,
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, Error> {
    // A deep accept queue: a burst of new connections (a thousand clients at
    // once) must wait for their turn, not be reset by a full queue.
    let listen = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    };
    listen().map_err(|reason| {
        let hint = match reason.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process is using it; pick another address with a flag or squall.toml)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges; pick a higher one)",
            _ => "",
        };
        Error::Listen { what, addr, reason, hint }
    })
}

impl Node {
    /// Opens the store, binds the listeners and starts serving.
    pub async fn start(config: Config) -> Result<Node, Error> {
        config.check_exposure()?;
        let fds = raise_fd_limit();
        for addr in [config.http, config.resp] {
            if !addr.ip().is_loopback() && !config.has_credentials() {
                tracing::warn!(%addr, "INSECURE: listening beyond loopback with no credentials (--insecure): anyone who can reach {addr} can read, write and run code");
            }
        }
        // A certificate that does not load fails the start, before anything listens.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let identity = squall_gateway::tls::Identity::load(cert, key).map_err(Error::Config)?;
                Some((
                    identity.acceptor(&[b"http/1.1"]).map_err(Error::Config)?,
                    identity.acceptor(&[]).map_err(Error::Config)?,
                ))
            }
            (None, None) => None,
            _ => return Err(Error::Config("TLS needs both a certificate (tls-cert) and its key (tls-key)".into())),
        };
        let (http_tls, resp_tls) = tls.unzip();
        // Bind first: a port that is taken should fail fast, before recovery.
        let http_listener = bind(config.http, "HTTP").await?;
        let resp_listener = bind(config.resp, "the Redis protocol").await?;
        let mut opts = Options::new(&config.data_dir);
        opts.shards = config.shards;
        opts.durability = config.durability;
        opts.node_id = config.node_id;
        opts.retention = config.retention;
        let store = tokio::task::spawn_blocking(move || Store::open(opts))
            .await
            .map_err(|e| Error::Config(format!("store startup panicked: {e}")))??;
        let handle = store.handle();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        let http_addr = http_listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
        let resp_addr = resp_listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
        let runtime = squall_runtime::Runtime::new(squall_runtime::Options {
            instances: config.instances,
            cache_dir: Some(config.data_dir.join("compiled")),
            clock: handle.clock().clone(),
            ..Default::default()
        })
        .map_err(|e| Error::Functions(e.to_string()))?;
        let settings = Settings { quotas: config.quotas.clone(), ..Settings::default() };
        let functions = Functions::start(handle.clone(), Arc::new(runtime), settings)
            .await
            .map_err(|e| Error::Functions(e.to_string()))?;
        // Not ready until the owner says so (`Node::ready`: `squall up`, once
        // the examples are deployed) and while the disk is healthy.
        let (ready, ready_rx) = watch::channel(false);
        let access = Arc::new(
            Access::new(config.token.as_ref().map(|t| t.0.as_str()), all_users(&config)?, config.has_credentials())
                .map_err(Error::Config)?,
        );
        let api = http::Api::new(handle.clone(), functions.clone(), metrics.clone(), config.max_body_bytes, ready_rx)
            .with_access(access.clone())
            .with_loopback_hosts_only(access.is_open() && config.http.ip().is_loopback());
        let max_clients = config.max_clients.unwrap_or_else(|| default_max_clients(fds));
        let http_opts = http::HttpOptions {
            max_clients,
            header_timeout: Duration::from_secs(config.http_header_timeout_s),
            body_timeout: Duration::from_secs(config.http_body_timeout_s),
        };
        let http_task =
            tokio::spawn(http::serve(http_listener, handle.clone(), api, http_opts, http_tls, stopped.clone()));
        let resp_opts = redis::Options {
            max_clients,
            access: access.clone(),
            output_limit: config.output_limit,
            quotas: functions.quotas(),
            functions: Some(functions.clone()),
            max_bulk_len: Arc::new(std::sync::atomic::AtomicUsize::new(config.proto_max_bulk_len)),
            ..redis::Options::default()
        };
        let resp_task = tokio::spawn(redis::serve(resp_listener, handle, metrics, resp_opts, resp_tls, stopped));
        let users_task = tokio::spawn(watch_users(config.clone(), access, stop.subscribe()));
        let keys_task = tokio::spawn(count_keys(functions.clone(), stop.subscribe()));
        Ok(Node {
            store: Some(store),
            functions,
            http_addr,
            resp_addr,
            stop,
            ready,
            tasks: vec![http_task, resp_task, users_task, keys_task],
            config,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Says the node is ready: `/readyz` answers ready from now on (while
    /// the disk is healthy). Call it once the node has what it must serve:
    /// `squall up --examples` deploys the examples first, so a client that
    /// waits for readiness finds them.
    pub fn ready(&self) {
        self.ready.send_replace(true);
    }

    /// The function service (deploy, invoke, ...).
    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    pub fn store(&self) -> Option<squall_store::Handle> {
        self.store.as_ref().map(Store::handle)
    }

    /// Resolves when the store's disk has failed (writes are refused for
    /// good): the binary decides what to do, the store never exits.
    pub async fn disk_failed(&self) -> String {
        let Some(mut health) = self.store.as_ref().map(|s| s.handle().health_changes()) else {
            return std::future::pending().await;
        };
        loop {
            if let squall_store::Health::DiskFailed(why) = &*health.borrow_and_update() {
                return why.clone();
            }
            if health.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Stops accepting, lets in-flight HTTP requests and Redis commands
    /// finish and their connections close, waits for running invocations,
    /// then writes what is pending and syncs the disk.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        // The listeners stop accepting; each connection answers what it has
        // read and closes.
        for mut t in self.tasks.drain(..) {
            // An idle keep-alive client must not hold shutdown up for long.
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut t).await.is_err() {
                t.abort();
            }
        }
        // Invocations already running finish and commit.
        if !self.functions.drain(std::time::Duration::from_secs(10)).await {
            tracing::warn!("invocations still running after 10 s are cut off by the shutdown");
        }
        // Then the store: shards handle what they were sent, the writer
        // writes and syncs the rest.
        if let Some(store) = self.store.take() {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("squall.toml");
        std::fs::write(&file, "data-dir = \"/var/lib/squall\"\nshards = 3\ndurability = \"async\"\n").unwrap();
        let c = Config::resolve(Some(&file), Overrides { shards: Some(5), ..Default::default() }).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/squall"));
        assert_eq!(c.shards, 5);
        assert_eq!(c.durability, Durability::Async);
        assert_eq!(c.http, Config::default().http);
    }

    #[test]
    fn a_bad_config_file_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("squall.toml");
        std::fs::write(&file, "shard = 3\n").unwrap();
        let e = Config::resolve(Some(&file), Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("unknown field `shard`"), "{e}");
        std::fs::write(&file, "durability = \"eventually\"\n").unwrap();
        let e = Config::resolve(Some(&file), Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("durability") || e.contains("unknown variant"), "{e}");
        let e = Config::resolve(Some(&dir.path().join("missing.toml")), Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        let e = Config::resolve(None, Overrides { shards: Some(0), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("shards must be"), "{e}");
    }
}
