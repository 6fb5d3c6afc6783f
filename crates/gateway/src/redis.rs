//! The Redis-protocol listener: accepts connections, places each on a shard
//! thread, and runs its commands.
//!
//! A connection reads whatever has arrived, parses every complete command,
//! starts each one (in place when its key lives on this connection's shard,
//! by message otherwise), then collects the answers in order and writes them
//! in one go: a pipeline costs one round of messages, not one per command.
//! Work for one shard runs in the order it was sent, so a connection's
//! commands on one key apply in order.

use crate::DEFAULT_NS;
use crate::auth::{Access, User};
use crate::commands::{self, Cmd, PopFrom, Render, Server};
use crate::metrics::Metrics;
use crate::overlay;
use crate::pubsub::{self, Broker, Kind as PubKind};
use crate::resp::{self, Frame, Limits};
use crate::sort;
use bytes::{Bytes, BytesMut};
use squall_store::lattice::Timestamp;
use squall_store::{Handle, OpResult, Response, Session, Written};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;

/// Listener settings.
#[derive(Clone)]
pub struct Options {
    pub limits: Limits,
    /// Bytes a connection may buffer for one unfinished request.
    pub max_request_bytes: usize,
    /// Connections open at once (Redis's `maxclients`); one more is told
    /// `-ERR max number of clients reached` and closed.
    pub max_clients: usize,
    /// Commands a MULTI may queue, and the bytes of their arguments: one
    /// more is refused, and the transaction is discarded (EXEC answers
    /// EXECABORT).
    pub max_multi_commands: usize,
    pub max_multi_bytes: usize,
    /// The users: unless the node is open, a connection must `AUTH` (or
    /// `HELLO ... AUTH`) before any other command, and works only in its
    /// user's namespaces.
    pub access: Arc<Access>,
    /// How much a client's unread replies may hold (Redis's
    /// `client-output-buffer-limit` for normal clients).
    pub output_limit: OutputLimit,
    /// The namespaces' quotas: a write that could add a key to a full
    /// namespace is refused.
    pub quotas: Arc<squall_scheduler::Quotas>,
    /// What `CONFIG SET` accepted of the parameters that change nothing
    /// here (encodings, `save`...), node-wide, for `CONFIG GET` to show.
    pub settings: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    /// The node's connections, for CLIENT LIST and CLIENT KILL.
    pub clients: Arc<Clients>,
    /// The node's pub/sub channels.
    pub broker: Arc<Broker>,
    /// The function service, whose channel triggers hear PUBLISH (none:
    /// no triggers).
    pub functions: Option<squall_scheduler::Functions>,
    /// Longest bulk string a request may carry (`proto-max-bulk-len`,
    /// which CONFIG SET changes for every connection); it overrides
    /// `limits.max_bulk_len`.
    pub max_bulk_len: Arc<std::sync::atomic::AtomicUsize>,
}

/// The node's Redis-protocol connections, by id.
#[derive(Default)]
pub struct Clients {
    all: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<ClientState>>>,
}

impl Clients {
    fn list(&self) -> Vec<Arc<ClientState>> {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}

/// What CLIENT LIST shows of a connection: set by the connection when it
/// changes (its commands that change it are rare), read by the others.
struct ClientState {
    id: u64,
    addr: String,
    laddr: String,
    since: Instant,
    /// Milliseconds from `since` to its last round of commands.
    last: AtomicU64,
    shown: std::sync::Mutex<Shown>,
    /// Told to close (CLIENT KILL): it does between rounds.
    kill: tokio::sync::Notify,
}

#[derive(Clone, Default)]
struct Shown {
    name: String,
    db: String,
    user: String,
    resp: u8,
    /// Channels, patterns and shard channels it listens to.
    subs: [usize; 3],
}

impl ClientState {
    /// Its CLIENT LIST line (Redis's fields that Squall has).
    fn line(&self, multi: i64) -> String {
        let s = self.shown.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let age = self.since.elapsed().as_secs();
        let idle = (self.since.elapsed().as_millis() as u64).saturating_sub(self.last.load(Ordering::Relaxed));
        format!(
            "id={} addr={} laddr={} name={} age={age} idle={} flags={} db={} sub={} psub={} ssub={} multi={multi} \
             resp={} user={}\n",
            self.id,
            self.addr,
            self.laddr,
            s.name,
            idle / 1000,
            if s.subs.iter().any(|n| *n > 0) { "P" } else { "N" },
            s.db,
            s.subs[0],
            s.subs[1],
            s.subs[2],
            s.resp,
            s.user,
        )
    }
}

/// Parameters `CONFIG SET` accepts and that change nothing in Squall: value
/// encodings and background behaviours Redis tunes that Squall's store
/// does its own way (clients and tools set them at connect time).
const NO_OP_SETTINGS: &[&str] = &[
    "activerehashing",
    "dynamic-hz",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "hz",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "list-compress-depth",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "save",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
];

/// Parameters Squall has but does not change while running: `CONFIG SET`
/// says how they are set.
const START_SETTINGS: &[(&str, &str)] = &[
    ("maxclients", "set it when the node starts: --max-clients"),
    ("client-output-buffer-limit", "set it when the node starts: --client-output-buffer-limit"),
    ("appendonly", "the log is always on; set how it syncs when the node starts: --durability"),
    ("appendfsync", "set it when the node starts: --durability"),
    ("requirepass", "set it when the node starts: --token or --users-file"),
];

/// Redis's `client-output-buffer-limit` for one class of clients: a
/// connection whose unwritten replies reach `hard` bytes, or stay over
/// `soft` bytes for `soft_seconds`, is closed (0 turns either off). Unlike
/// Redis, whose normal clients have no limit, Squall bounds them by default:
/// a node serves many clients, and one that asks for `KEYS *` over millions
/// of keys, or pipelines reads and never reads the answers, must not take
/// the memory of all the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimit {
    pub hard: usize,
    pub soft: usize,
    pub soft_seconds: u64,
}

impl Default for OutputLimit {
    fn default() -> Self {
        OutputLimit { hard: 256 << 20, soft: 64 << 20, soft_seconds: 60 }
    }
}

impl OutputLimit {
    /// Parses Redis's form, `normal <hard> <soft> <seconds>` (`normal` may
    /// be left out), sizes in bytes or with Redis's units (`k`, `kb`, `m`,
    /// `mb`, `g`, `gb`: the `b` forms are powers of 1024).
    pub fn parse(text: &str) -> Result<OutputLimit, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let words = match words.split_first() {
            Some((class, rest)) if class.eq_ignore_ascii_case("normal") => rest,
            Some((class, _)) if class.parse::<u64>().is_err() && memory(class).is_err() => {
                return Err(format!(
                    "client-output-buffer-limit: only the normal class is configurable here, not {class:?}"
                ));
            }
            _ => &words[..],
        };
        let [hard, soft, seconds] = words else {
            return Err(format!(
                "client-output-buffer-limit: expected \"normal <hard> <soft> <seconds>\", got {text:?}"
            ));
        };
        let seconds = seconds.parse().map_err(|_| format!("client-output-buffer-limit: bad seconds {seconds:?}"))?;
        let size = |w| memory(w).map_err(|e| format!("client-output-buffer-limit: {e}"));
        Ok(OutputLimit { hard: size(hard)?, soft: size(soft)?, soft_seconds: seconds })
    }

    /// Redis's form, as `CONFIG GET client-output-buffer-limit` shows it.
    pub fn render(&self) -> String {
        format!("normal {} {} {}", self.hard, self.soft, self.soft_seconds)
    }
}

/// Redis's default `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 << 20;
/// The longest `proto-max-bulk-len` may be: a value is held whole in memory
/// (in the request, the shard's map and the disk writer's batch), so one is
/// at most this, and a client's request buffer at most twice this.
pub const MAX_MAX_BULK_LEN: usize = 1 << 30;

/// A `proto-max-bulk-len`: a size from 1mb (Redis's least) to 1gb.
pub fn max_bulk_len(word: &str) -> Result<usize, String> {
    let n = memory(word)?;
    if !(1 << 20..=MAX_MAX_BULK_LEN).contains(&n) {
        return Err(format!("argument must be between 1048576 and {MAX_MAX_BULK_LEN} inclusive"));
    }
    Ok(n)
}

/// A size in Redis's config syntax: bytes, or with `k`, `kb`, `m`, `mb`,
/// `g`, `gb` (the `b` forms are powers of 1024).
pub fn memory(word: &str) -> Result<usize, String> {
    let lower = word.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: usize = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1000 * 1000,
        "mb" => 1 << 20,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1 << 30,
        _ => return Err(format!("bad size {word:?}")),
    };
    digits.parse::<usize>().ok().and_then(|n| n.checked_mul(unit)).ok_or_else(|| format!("bad size {word:?}"))
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            max_request_bytes: 64 * 1024 * 1024,
            max_clients: 10_000,
            max_multi_commands: 100_000,
            max_multi_bytes: 64 * 1024 * 1024,
            access: Arc::new(Access::new(None, Vec::new(), false).expect("no users")),
            output_limit: OutputLimit::default(),
            quotas: Arc::default(),
            settings: Arc::default(),
            clients: Arc::default(),
            broker: Arc::default(),
            functions: None,
            max_bulk_len: Arc::new(std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_BULK_LEN)),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("max_clients", &self.max_clients)
            .field("output_limit", &self.output_limit)
            .finish_non_exhaustive()
    }
}

/// What a connection over the client limit reads before it is closed (Redis's words).
const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// Wrong passwords a connection may give before it is closed.
const MAX_FAILED_LOGINS: u32 = 5;

/// Buffer capacity a connection keeps between requests; more is given back.
const BUFFER_KEEP: usize = 1024 * 1024;

/// Replies are written out once this many bytes are ready, so that the
/// memory a connection holds for them stays small however long its pipeline.
const WRITE_AT: usize = 256 * 1024;

/// Accepts connections until `stop` turns true (each runs on a shard thread,
/// round-robin), then lets each connection
/// finish the commands it has read (answering them) and close, and returns
/// once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    store: Handle,
    metrics: Arc<Metrics>,
    opts: Options,
    tls: Option<crate::tls::TlsAcceptor>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    // A TLS client could not read a plain-text refusal: it is only closed.
    let refusal = if tls.is_some() { b"".as_slice() } else { REFUSAL };
    let admit = crate::listen::Admit { max_clients: opts.max_clients, refusal, what: "Redis protocol" };
    let notifications = tokio::spawn(pubsub::notify::run(opts.broker.clone(), store.clone(), stop.clone()));
    // LASTSAVE before any SAVE: the node's start, as Redis answers its load.
    let _ = metrics.last_save_ms.compare_exchange(0, store.clock().now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    crate::listen::serve(listener, &store, admit, stop.clone(), |std| {
        let addr = |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let peer = (addr(std.peer_addr()), addr(std.local_addr()));
        let conn = Conn::new(store.clone(), metrics.clone(), opts.clone(), stop.clone(), peer);
        let tls = tls.clone();
        async move {
            let stream = match tls {
                None => {
                    // Registering the socket here puts it on this shard's
                    // event loop. (Deprecated because a generic `T` might
                    // hand out a descriptor it does not own; a
                    // `std::net::TcpStream` owns its own for as long as the
                    // `AsyncFd` holds it, which is all the safe call needs.)
                    #[allow(deprecated)]
                    let fd = AsyncFd::with_interest(std, Interest::READABLE | Interest::WRITABLE);
                    let Ok(fd) = fd else { return };
                    Stream::Plain(fd)
                }
                Some(tls) => {
                    let Ok(tcp) = tokio::net::TcpStream::from_std(std) else { return };
                    let Some(tls) = crate::tls::accept(&tls, tcp).await else { return };
                    Stream::Tls(Box::new(tls))
                }
            };
            conn.run(stream).await;
        }
    })
    .await;
    let _ = notifications.await;
}

/// A connection's socket: plain (read and written in place, readiness
/// taken from the event loop), or TLS.
enum Stream {
    Plain(AsyncFd<std::net::TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl Stream {
    /// Reads what has arrived into `rbuf`; 0 at the end.
    async fn read(&mut self, rbuf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Stream::Plain(fd) => read(fd, rbuf).await,
            Stream::Tls(tls) => {
                rbuf.reserve(READ_CHUNK);
                tokio::io::AsyncReadExt::read_buf(tls, rbuf).await
            }
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Stream::Plain(fd) => write_all(fd, buf).await,
            Stream::Tls(tls) => {
                tls.write_all(buf).await?;
                tls.flush().await
            }
        }
    }

    /// Resolves when the client has closed its end (what it sent is read
    /// through first: data waiting means it is still there, and this
    /// never resolves then). A blocked command stops waiting on it, so an
    /// item is not popped for a client that is gone. Over TLS it never
    /// resolves (the record layer hides the end of the stream).
    async fn hung_up(&self) {
        match self {
            Stream::Plain(fd) => loop {
                let Ok(mut guard) = fd.readable().await else { return };
                match fd.get_ref().peek(&mut [0u8; 1]) {
                    Ok(0) => return,
                    Ok(_) => return std::future::pending().await,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(_) => return,
                }
            },
            Stream::Tls(_) => std::future::pending().await,
        }
    }

    /// Ends the connection (a TLS one says so first, bounded in time).
    async fn close(&mut self) {
        match self {
            Stream::Plain(fd) => {
                let _ = fd.get_mut().shutdown(std::net::Shutdown::Both);
            }
            Stream::Tls(tls) => {
                let bye = tokio::io::AsyncWriteExt::shutdown(tls);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), bye).await;
            }
        }
    }
}

enum Pending {
    Ready(Frame),
    /// The replies from here on are in RESP3 (true) or RESP2: a HELLO in
    /// a pipeline changes the protocol of the replies after it, its own
    /// included.
    Protocol(bool),
    /// The next op of this round's message to shard `shard`.
    Batched {
        shard: usize,
        render: Render,
        write: bool,
    },
}

/// Single-key commands sent to a shard as one message, until their answers
/// are taken, in order.
enum Sent {
    /// The answer to come, and how many ops the message carries.
    Waiting(squall_store::Pending, usize),
    Answered(std::vec::IntoIter<(squall_store::OpResult, Timestamp)>),
    /// The message got no answer: each of its ops answers this error.
    Failed(String, usize),
}

struct Transaction {
    queued: Vec<Cmd>,
    failed: bool,
    /// Bytes of the queued commands' arguments.
    bytes: usize,
    /// Over the queue's limits: its commands are dropped, and so is every
    /// later one until EXEC or DISCARD.
    over: bool,
}

/// A connection's subscriptions: its end of the broker (made at its first
/// SUBSCRIBE), and what it listens to, by kind, each name with the
/// namespace it listens in.
#[derive(Default)]
struct Subscriptions {
    end: Option<(Arc<pubsub::Subscriber>, tokio::sync::mpsc::UnboundedReceiver<pubsub::Message>)>,
    names: [std::collections::HashMap<Bytes, Bytes>; 3],
}

impl Subscriptions {
    /// The count a (un)subscribe reply shows: channels and patterns
    /// together, shard channels apart, as in Redis.
    fn count(&self, kind: PubKind) -> i64 {
        match kind {
            PubKind::Shard => self.names[2].len() as i64,
            _ => (self.names[0].len() + self.names[1].len()) as i64,
        }
    }

    fn any(&self) -> bool {
        self.names.iter().any(|n| !n.is_empty())
    }

    /// The next message to deliver; `None` when the subscriber was cut off
    /// for being too slow. Never ready without a subscription.
    async fn next(&mut self) -> Option<pubsub::Message> {
        match &mut self.end {
            Some((sub, rx)) if !sub.is_slow() => tokio::select! {
                m = rx.recv() => m,
                () = sub.cut.notified() => None,
            },
            Some(_) => None,
            None => std::future::pending().await,
        }
    }
}

fn kind_index(kind: PubKind) -> usize {
    match kind {
        PubKind::Channel => 0,
        PubKind::Pattern => 1,
        PubKind::Shard => 2,
    }
}

/// A message as its subscriber receives it.
fn message_frame(m: pubsub::Message) -> Frame {
    let word = |w: &'static str| Frame::Bulk(Bytes::from_static(w.as_bytes()));
    match m {
        pubsub::Message::Channel { shard, channel, payload } => Frame::Push(vec![
            word(if shard { "smessage" } else { "message" }),
            Frame::Bulk(channel),
            Frame::Bulk(payload),
        ]),
        pubsub::Message::Pattern { pattern, channel, payload } => {
            Frame::Push(vec![word("pmessage"), Frame::Bulk(pattern), Frame::Bulk(channel), Frame::Bulk(payload)])
        }
    }
}

/// What woke a connection between rounds.
enum Woke {
    Read(std::io::Result<usize>),
    Message(Option<pubsub::Message>),
    Close,
}

struct Conn {
    store: Handle,
    /// This round's commands, by their place in `commands::COMMANDS`, and
    /// how many of each: counted into the node's statistics when it ends.
    round_calls: Vec<(u16, u32)>,
    subs: Subscriptions,
    ns: Bytes,
    id: u64,
    name: Option<Bytes>,
    multi: Option<Transaction>,
    /// What CLIENT LIST shows of it.
    state: Arc<ClientState>,
    /// Whether the client asked for RESP3 (`HELLO 3`), as of the command
    /// being handled, and as of the reply being written.
    resp3: bool,
    encoding: bool,
    /// WATCHed keys, each as it was read then: EXEC applies only if all
    /// still read so.
    watched: Vec<squall_store::Check>,
    metrics: Arc<Metrics>,
    opts: Options,
    /// Who it is: authenticated (or the node is open), or not yet.
    user: Option<Arc<User>>,
    /// The users' generation `user` was checked against.
    user_generation: u64,
    /// Whether `user` may use namespace `ns`.
    allowed: bool,
    /// AUTH attempts with a wrong password: too many close the connection.
    failed_logins: u32,
    /// Per shard: the highest write sequence this round must see durable.
    written: Vec<u64>,
    /// Bytes of the answers received from shards and not yet encoded: with
    /// the encoded replies not yet written, what the output limit bounds.
    unencoded: usize,
    /// What this connection has seen: its commands order after it.
    session: Session,
    /// The newest stamp this round wrote: once acknowledged, every later
    /// request on the node goes after it.
    wrote: Timestamp,
    /// Turns true when the node stops: the connection closes between rounds.
    stop: tokio::sync::watch::Receiver<bool>,
    /// Per shard: the round's commands gathered for it, sent as one
    /// message when the round ends (or before a command that must come
    /// after them), and the messages sent whose answers are not taken yet.
    gathering: Vec<Vec<(Bytes, squall_store::Op)>>,
    /// Per shard: how many the last round sent it, room made for that many
    /// at the next round's first (the gathered ops leave with their message).
    last_sent: Vec<usize>,
    sent: Vec<std::collections::VecDeque<Sent>>,
}

/// The most ops a round's first command makes room for at once.
const MAX_ROOM: usize = 1024;

impl Conn {
    fn new(
        store: Handle,
        metrics: Arc<Metrics>,
        opts: Options,
        stop: tokio::sync::watch::Receiver<bool>,
        (addr, laddr): (String, String),
    ) -> Self {
        let shards = store.shards();
        let id = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ClientState {
            id,
            addr,
            laddr,
            since: Instant::now(),
            last: AtomicU64::new(0),
            shown: std::sync::Mutex::new(Shown::default()),
            kill: tokio::sync::Notify::new(),
        });
        Conn {
            state,
            user: opts.access.anonymous(),
            user_generation: opts.access.generation(),
            allowed: opts.access.is_open(),
            failed_logins: 0,
            store,
            round_calls: Vec::new(),
            subs: Subscriptions::default(),
            ns: Bytes::from_static(DEFAULT_NS),
            id,
            name: None,
            multi: None,
            resp3: false,
            encoding: false,
            watched: Vec::new(),
            metrics,
            opts,
            written: vec![0; shards],
            unencoded: 0,
            session: Session::default(),
            wrote: Timestamp::ZERO,
            stop,
            gathering: (0..shards).map(|_| Vec::new()).collect(),
            last_sent: vec![0; shards],
            sent: (0..shards).map(|_| Default::default()).collect(),
        }
    }

    /// Sends what this round gathered for other shards.
    fn send_batches(&mut self) {
        let after = self.session.seen();
        for (shard, ops) in self.gathering.iter_mut().enumerate() {
            if !ops.is_empty() {
                let n = ops.len();
                self.last_sent[shard] = n;
                let p = self.store.dispatch_many(shard, &self.ns, std::mem::take(ops), after);
                self.sent[shard].push_back(Sent::Waiting(p, n));
            }
        }
    }

    /// Waits for a sent message's answer.
    async fn receive(&mut self, p: squall_store::Pending, n: usize) -> Sent {
        match p.answer().await {
            Ok(a) => {
                self.written[a.shard] = self.written[a.shard].max(a.seq);
                match a.response {
                    Response::Ops(results) if results.len() == n => {
                        self.unencoded += results.iter().map(|(r, _)| reply_bytes(r)).sum::<usize>();
                        Sent::Answered(results.into_iter())
                    }
                    other => Sent::Failed(format!("data is corrupt: a shard answered {n} ops with {other:?}"), n),
                }
            }
            Err(e) => Sent::Failed(e.to_string(), n),
        }
    }

    /// Waits for the answers of everything sent so far: a command that is
    /// not a single-key one (a SCAN, an MSET, a DBSIZE) then sees what the
    /// commands before it did, as it would on a server that runs one
    /// command at a time.
    async fn settle(&mut self) {
        for shard in 0..self.sent.len() {
            for i in 0..self.sent[shard].len() {
                self.resolve(shard, i).await;
            }
        }
    }

    /// Puts the answer in place of the `i`th message sent to `shard`, if it
    /// is still waiting for one.
    async fn resolve(&mut self, shard: usize, i: usize) {
        if let Sent::Waiting(..) = self.sent[shard][i] {
            let Sent::Waiting(p, n) = std::mem::replace(&mut self.sent[shard][i], Sent::Failed(String::new(), 0))
            else {
                unreachable!()
            };
            self.sent[shard][i] = self.receive(p, n).await;
        }
    }

    /// The next answer from shard `shard` (answers come in the order the
    /// ops were sent, which is the order of `pending`).
    async fn batched(&mut self, shard: usize, write: bool) -> Result<squall_store::OpResult, String> {
        loop {
            let Some(front) = self.sent[shard].front_mut() else {
                return Err("data is corrupt: an op's answer went missing".into());
            };
            match front {
                Sent::Waiting(..) => self.resolve(shard, 0).await,
                Sent::Answered(results) => match results.next() {
                    Some((r, stamp)) => {
                        self.unencoded = self.unencoded.saturating_sub(reply_bytes(&r));
                        self.session.observe(stamp);
                        if write {
                            self.wrote = self.wrote.max(stamp);
                        }
                        return Ok(r);
                    }
                    None => {
                        self.sent[shard].pop_front();
                    }
                },
                Sent::Failed(_, 0) => {
                    self.sent[shard].pop_front();
                }
                Sent::Failed(e, left) => {
                    *left -= 1;
                    return Err(e.clone());
                }
            }
        }
    }

    async fn run(mut self, mut stream: Stream) {
        self.metrics.resp_connections.fetch_add(1, Ordering::Relaxed);
        self.metrics.resp_connections_total.fetch_add(1, Ordering::Relaxed);
        self.publish_state();
        let clients = self.opts.clients.clone();
        clients.all.lock().unwrap_or_else(|e| e.into_inner()).insert(self.id, self.state.clone());
        self.serve_conn(&mut stream).await;
        for kind in [PubKind::Channel, PubKind::Pattern, PubKind::Shard] {
            self.unsubscribe(kind, Vec::new(), None);
        }
        clients.all.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        stream.close().await;
        self.metrics.resp_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// What CLIENT LIST shows of this connection, made current.
    fn publish_state(&self) {
        let db = if self.ns.as_ref() == DEFAULT_NS {
            "0".to_string()
        } else {
            String::from_utf8_lossy(&self.ns).into_owned()
        };
        let shown = Shown {
            name: self.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default(),
            db,
            user: self.user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
            resp: if self.resp3 { 3 } else { 2 },
            subs: [self.subs.names[0].len(), self.subs.names[1].len(), self.subs.names[2].len()],
        };
        *self.state.shown.lock().unwrap_or_else(|e| e.into_inner()) = shown;
    }

    /// Reads, runs and answers commands until the connection ends.
    async fn serve_conn(&mut self, stream: &mut Stream) {
        // Empty until used: an idle connection holds no buffer (10,000 of
        // them would hold hundreds of MiB of 16 KiB ones).
        let mut rbuf = BytesMut::new();
        let mut wbuf = BytesMut::new();
        let mut pending = Vec::new();
        let mut parser = resp::Parser::default();
        // One list of arguments, refilled for each command.
        let mut args: Vec<Bytes> = Vec::new();
        'conn: loop {
            // Between rounds: what was read has been answered.
            let woke = tokio::select! {
                r = stream.read(&mut rbuf) => Woke::Read(r),
                _ = self.stop.wait_for(|s| *s) => Woke::Close,
                () = self.state.kill.notified() => Woke::Close,
                m = self.subs.next() => Woke::Message(m),
            };
            let got = match woke {
                Woke::Read(r) => r,
                Woke::Close => break,
                Woke::Message(None) => {
                    self.metrics.resp_pubsub_slow_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Woke::Message(Some(m)) => {
                    if !self.deliver(m, &mut wbuf, stream).await {
                        break;
                    }
                    continue;
                }
            };
            match got {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let started = Instant::now();
            let mut close = false;
            let mut commands = 0u64;
            // Bytes of the answers made and not yet written (KEYS, EXEC...).
            let mut ready_bytes = 0usize;
            let bulk = self.opts.max_bulk_len.load(Ordering::Relaxed);
            let limits = Limits { max_bulk_len: bulk, ..self.opts.limits };
            // A request may hold a value of the longest kind and more besides.
            let max_request = self.opts.max_request_bytes.max(bulk.saturating_mul(2));
            loop {
                match parser.next_into(&mut rbuf, &limits, &mut args) {
                    Ok(true) if args.is_empty() => {}
                    Ok(true) => {
                        commands += 1;
                        if !self.command(&mut args, &mut pending, stream).await {
                            close = true;
                            break;
                        }
                        if let Some(Pending::Ready(frame)) = pending.last() {
                            ready_bytes += frame_bytes(frame);
                        }
                        // Answer very long pipelines, and big answers, in
                        // slices, so memory stays bounded.
                        if pending.len() >= 1024 || ready_bytes + self.unencoded >= WRITE_AT {
                            ready_bytes = 0;
                            if !self.answer(&mut pending, &mut wbuf, stream).await {
                                break 'conn;
                            }
                        }
                    }
                    Ok(false) => {
                        if rbuf.len() > max_request {
                            pending.push(Pending::Ready(Frame::err(format!(
                                "Protocol error: request larger than {max_request} bytes"
                            ))));
                            close = true;
                        }
                        break;
                    }
                    Err(e) => {
                        self.metrics.resp_protocol_errors.fetch_add(1, Ordering::Relaxed);
                        pending.push(Pending::Ready(Frame::err(e.to_string())));
                        close = true;
                        break;
                    }
                }
            }
            let ok = self.answer(&mut pending, &mut wbuf, stream).await;
            self.state.last.store(self.state.since.elapsed().as_millis() as u64, Ordering::Relaxed);
            if rbuf.is_empty() && rbuf.capacity() > BUFFER_KEEP {
                rbuf = BytesMut::new();
            }
            self.metrics.resp_commands.fetch_add(commands, Ordering::Relaxed);
            let took = started.elapsed();
            self.metrics.resp_latency.observe_n(took, commands);
            let each = took.as_micros() as u64 / commands.max(1);
            for (i, n) in self.round_calls.drain(..) {
                let stat = &self.metrics.command_stats[i as usize];
                stat.calls.fetch_add(u64::from(n), Ordering::Relaxed);
                stat.usec.fetch_add(each * u64::from(n), Ordering::Relaxed);
            }
            if close || !ok {
                break;
            }
        }
    }

    /// Writes out `first` and the messages queued after it (up to a
    /// bounded batch). False when the connection must close: its client
    /// is gone, or it fell so far behind that the broker cut it off.
    async fn deliver(&mut self, first: pubsub::Message, wbuf: &mut BytesMut, stream: &mut Stream) -> bool {
        let Some((sub, rx)) = &mut self.subs.end else { return true };
        let sub = sub.clone();
        let mut bytes = 0;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(m) = next {
            bytes += m.bytes();
            message_frame(m).encode_as(wbuf, self.encoding);
            n += 1;
            if n >= 1024 || wbuf.len() >= WRITE_AT {
                break;
            }
            next = rx.try_recv().ok();
        }
        let ok = tokio::select! {
            r = stream.write_all(wbuf) => r.is_ok(),
            () = sub.cut.notified() => false,
        };
        sub.written(bytes, self.opts.broker.limit());
        wbuf.clear();
        if wbuf.capacity() > BUFFER_KEEP {
            *wbuf = BytesMut::new();
        }
        if sub.is_slow() {
            self.metrics.resp_pubsub_slow_closed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        ok
    }

    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: listens to each name, in this
    /// connection's namespace; a reply for each.
    fn subscribe(&mut self, kind: PubKind, names: Vec<Bytes>, pending: &mut Vec<Pending>) {
        let id = self.id;
        let sub = self.subs.end.get_or_insert_with(|| Broker::subscriber(id)).0.clone();
        for name in names {
            let listening = &mut self.subs.names[kind_index(kind)];
            if !listening.contains_key(&name) {
                self.opts.broker.subscribe(&self.ns, kind, name.clone(), &sub);
                listening.insert(name.clone(), self.ns.clone());
            }
            let word = Frame::Bulk(Bytes::from_static(kind.words().0.as_bytes()));
            let count = Frame::Integer(self.subs.count(kind));
            pending.push(Pending::Ready(Frame::Push(vec![word, Frame::Bulk(name), count])));
        }
        self.publish_state();
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: stops listening to each
    /// name (none: to all of its kind); a reply for each, if `pending`.
    fn unsubscribe(&mut self, kind: PubKind, names: Vec<Bytes>, mut pending: Option<&mut Vec<Pending>>) {
        let i = kind_index(kind);
        // What was published before this goes out before its replies.
        if let (Some((sub, rx)), Some(p)) = (&mut self.subs.end, pending.as_deref_mut()) {
            let mut bytes = 0;
            while let Ok(m) = rx.try_recv() {
                bytes += m.bytes();
                p.push(Pending::Ready(message_frame(m)));
            }
            sub.written(bytes, self.opts.broker.limit());
        }
        let names: Vec<Bytes> = if names.is_empty() { self.subs.names[i].keys().cloned().collect() } else { names };
        let word = || Frame::Bulk(Bytes::from_static(kind.words().1.as_bytes()));
        if names.is_empty()
            && let Some(p) = pending.as_deref_mut()
        {
            p.push(Pending::Ready(Frame::Push(vec![word(), Frame::Nil, Frame::Integer(self.subs.count(kind))])));
        }
        for name in names {
            if let Some(scope) = self.subs.names[i].remove(&name) {
                self.opts.broker.unsubscribe(&scope, kind, &name, self.id);
            }
            if let Some(p) = pending.as_deref_mut() {
                let count = Frame::Integer(self.subs.count(kind));
                p.push(Pending::Ready(Frame::Push(vec![word(), Frame::Bulk(name), count])));
            }
        }
        if !self.subs.any() {
            // Out of the subscribed state: nothing more may arrive (a message
            // a publisher was still handing over is dropped with the queue).
            self.subs.end = None;
        }
        if pending.is_some() {
            self.publish_state();
        }
    }

    /// RESET: the connection as it was when it opened.
    fn reset(&mut self, pending: &mut Vec<Pending>) {
        self.multi = None;
        self.watched.clear();
        for kind in [PubKind::Channel, PubKind::Pattern, PubKind::Shard] {
            self.unsubscribe(kind, Vec::new(), None);
        }
        if self.resp3 {
            self.resp3 = false;
            pending.push(Pending::Protocol(false));
        }
        self.ns = Bytes::from_static(DEFAULT_NS);
        self.name = None;
        self.user = self.opts.access.anonymous();
        self.user_generation = self.opts.access.generation();
        self.allowed = self.opts.access.is_open();
        self.publish_state();
        pending.push(Pending::Ready(Frame::Simple("RESET")));
    }

    /// Collects the answers of everything started, waits for durability,
    /// writes. False when the connection must close (its client is gone, a
    /// write is not durable, or its replies went over the output limit).
    async fn answer(&mut self, pending: &mut Vec<Pending>, wbuf: &mut BytesMut, stream: &mut Stream) -> bool {
        self.send_batches();
        let mut ok = true;
        for p in pending.drain(..) {
            if !ok {
                // Closing: what is left is not answered.
                continue;
            }
            let frame = match p {
                Pending::Ready(f) => f,
                Pending::Protocol(resp3) => {
                    self.encoding = resp3;
                    continue;
                }
                Pending::Batched { shard, render, write } => match self.batched(shard, write).await {
                    Ok(r) => commands::render(r, render),
                    Err(e) => Frame::err(e),
                },
            };
            if let Frame::Error(text) = &frame {
                self.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
                self.metrics.error_reply(text);
            }
            frame.encode_as(wbuf, self.encoding);
            ok = if self.over_hard_limit(wbuf.len() + self.unencoded) {
                false
            } else if wbuf.len() >= WRITE_AT {
                self.write(wbuf, stream).await
            } else {
                true
            };
        }
        if ok && !wbuf.is_empty() {
            // Replies go out after the other connections that were ready
            // have had their turn, as Redis writes before it sleeps: the
            // client wakes once for a burst of replies, not once for each.
            tokio::task::yield_now().await;
        }
        ok && self.write(wbuf, stream).await
    }

    /// Writes the replies in `wbuf`, once the writes they answer are
    /// durable. A client that leaves more than the soft limit unread for
    /// its time is cut off.
    async fn write(&mut self, wbuf: &mut BytesMut, stream: &mut Stream) -> bool {
        for shard in 0..self.written.len() {
            let seq = std::mem::take(&mut self.written[shard]);
            if self.store.durable(Written { shard, seq }).await.is_err() {
                return false;
            }
        }
        self.store.publish(std::mem::take(&mut self.wrote));
        if wbuf.is_empty() {
            return true;
        }
        let limit = self.opts.output_limit;
        let unwritten = wbuf.len() + self.unencoded;
        let ok = if limit.soft > 0 && limit.soft_seconds > 0 && unwritten > limit.soft {
            let within = std::time::Duration::from_secs(limit.soft_seconds);
            match tokio::time::timeout(within, stream.write_all(wbuf)).await {
                Ok(r) => r.is_ok(),
                Err(_) => {
                    self.metrics.resp_output_limit_closed.fetch_add(1, Ordering::Relaxed);
                    if rarely() {
                        tracing::warn!(
                            client = self.id,
                            bytes = unwritten,
                            "client closed for overcoming of output buffer limits: more than {} bytes unread for {} s",
                            limit.soft,
                            limit.soft_seconds
                        );
                    }
                    false
                }
            }
        } else {
            stream.write_all(wbuf).await.is_ok()
        };
        wbuf.clear();
        // One huge answer (a big SMEMBERS) must not pin its memory for the
        // life of an idle connection.
        if wbuf.capacity() > BUFFER_KEEP {
            *wbuf = BytesMut::new();
        }
        ok
    }

    /// True (and said) when replies of `bytes` are over the hard output limit.
    fn over_hard_limit(&self, bytes: usize) -> bool {
        let hard = self.opts.output_limit.hard;
        if hard == 0 || bytes <= hard {
            return false;
        }
        self.metrics.resp_output_limit_closed.fetch_add(1, Ordering::Relaxed);
        if rarely() {
            tracing::warn!(
                client = self.id,
                bytes,
                "client closed for overcoming of output buffer limits: replies of more than {hard} bytes \
                 (squall_resp_output_limit_closed_total counts them all)"
            );
        }
        true
    }

    /// Starts one command. Returns false when the connection should close.
    async fn command(&mut self, args: &mut [Bytes], pending: &mut Vec<Pending>, stream: &Stream) -> bool {
        // Counted before the parse moves arguments out.
        let arg_bytes = if self.multi.is_some() { args.iter().map(Bytes::len).sum::<usize>() } else { 0 };
        let (index, parsed) = commands::parse_indexed(args, &**self.store.clock());
        if let Some(i) = index {
            match self.round_calls.iter_mut().find(|(c, _)| *c == i as u16) {
                Some((_, n)) => *n += 1,
                None => self.round_calls.push((i as u16, 1)),
            }
        }
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(frame) => {
                // An HTTP request sent here (a browser page made to POST to
                // this port, say) is an attack, not a client: close, as
                // Redis does.
                if args[0].eq_ignore_ascii_case(b"POST") || args[0].eq_ignore_ascii_case(b"HOST:") {
                    if rarely() {
                        tracing::warn!(
                            client = self.id,
                            "possible security attack: an HTTP request came on the Redis port; connection closed"
                        );
                    }
                    return false;
                }
                if let Some(tx) = &mut self.multi {
                    // Redis refuses at once only an unknown command or a
                    // wrong count of arguments (and discards the
                    // transaction); any other error is the command's answer in EXEC.
                    if refused_at_queue(args, &frame) {
                        tx.failed = true;
                    } else {
                        tx.queued.push(Cmd::Server(Server::Refused(frame)));
                        pending.push(Pending::Ready(Frame::Simple("QUEUED")));
                        return true;
                    }
                }
                pending.push(Pending::Ready(frame));
                return true;
            }
        };
        if self.subs.any() && !self.resp3 && !allowed_subscribed(&cmd) {
            pending.push(Pending::Ready(Frame::err(format!(
                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in \
                 this context",
                String::from_utf8_lossy(&args[0]).to_lowercase()
            ))));
            return true;
        }
        if let Cmd::Server(Server::Reset) = cmd {
            // What came before it runs as the connection was then (its namespace).
            self.send_batches();
            self.settle().await;
            self.reset(pending);
            return true;
        }
        if let Some(refusal) = self.refusal(&cmd).or_else(|| self.over_quota(&cmd)) {
            if let Some(tx) = &mut self.multi {
                tx.failed = true;
            }
            pending.push(Pending::Ready(refusal));
            return true;
        }
        if !matches!(cmd, Cmd::Key { .. }) || self.multi.is_some() {
            // Whatever this does comes after the commands before it.
            self.send_batches();
            if self.multi.is_none() || matches!(cmd, Cmd::Server(Server::Exec)) {
                self.settle().await;
            }
        }
        if let Some(tx) = &mut self.multi {
            match cmd {
                Cmd::Server(Server::Exec) => {
                    let frame = self.exec().await;
                    pending.push(Pending::Ready(frame));
                }
                Cmd::Server(Server::Discard) => {
                    self.multi = None;
                    self.watched.clear();
                    pending.push(Pending::Ready(Frame::ok()));
                }
                // Answered, not queued, and the transaction goes on (as in Redis).
                Cmd::Server(Server::Watch(_)) => {
                    pending.push(Pending::Ready(Frame::err("WATCH inside MULTI is not allowed")));
                }
                Cmd::Server(Server::Multi) => {
                    pending.push(Pending::Ready(Frame::err("MULTI calls can not be nested")));
                }
                Cmd::Server(Server::Quit) => {
                    pending.push(Pending::Ready(Frame::ok()));
                    return false;
                }
                // EXEC runs the queued key operations as one atomic unit in
                // one namespace, as the connection's user: these cannot
                // change either halfway.
                Cmd::Server(
                    Server::Select(_)
                    | Server::Auth { .. }
                    | Server::Hello { .. }
                    | Server::Subscribe(..)
                    | Server::Unsubscribe(..),
                ) => {
                    tx.failed = true;
                    let name = String::from_utf8_lossy(&args[0]).to_uppercase();
                    pending.push(Pending::Ready(Frame::err(format!(
                        "{name} inside MULTI is not supported: give it before MULTI (the transaction is discarded)"
                    ))));
                }
                cmd => {
                    tx.bytes += arg_bytes;
                    if !tx.over
                        && (tx.queued.len() >= self.opts.max_multi_commands || tx.bytes > self.opts.max_multi_bytes)
                    {
                        tx.over = true;
                        tx.failed = true;
                        tx.queued = Vec::new();
                    }
                    if tx.over {
                        pending.push(Pending::Ready(Frame::err(format!(
                            "MULTI queue full: at most {} commands and {} MiB of arguments; the transaction is discarded",
                            self.opts.max_multi_commands,
                            self.opts.max_multi_bytes >> 20
                        ))));
                    } else {
                        tx.queued.push(cmd);
                        pending.push(Pending::Ready(Frame::Simple("QUEUED")));
                    }
                }
            }
            return true;
        }
        let frame = match cmd {
            Cmd::Key { key, op, render } => {
                let write = op.is_write();
                // With the rest of the round's for its shard: one message
                // (in place for this thread's shard), whose lookups overlap.
                let shard = self.store.shard_of(&key);
                let gathering = &mut self.gathering[shard];
                if gathering.capacity() == 0 {
                    gathering.reserve(self.last_sent[shard].min(MAX_ROOM));
                }
                gathering.push((key, op));
                pending.push(Pending::Batched { shard, render, write });
                return true;
            }
            Cmd::Stored { dest, keys, how } => self.store_combined(dest, keys, how.read(), |r| how.make(r)).await,
            Cmd::Move { from, to, member } => self.smove(from, to, member).await,
            Cmd::Relocate { from, to, copy, only_new } => self.relocate(from, to, copy, only_new).await,
            Cmd::ZStore { dest, keys, how } => self.zstore(dest, keys, how).await,
            Cmd::SetNew { pairs } => self.set_new(pairs).await,
            Cmd::ZCombine { keys, how, out } => {
                let reads = keys.into_iter().map(|k| (k, squall_store::Op::Snapshot)).collect();
                match self.store.atomic(&self.ns, reads, &mut self.session).await {
                    Ok(results) => commands::zcombined(commands::combine_zsets(results, &how), out),
                    Err(e) => store_error(e),
                }
            }
            Cmd::ListMove { from, to, from_head, to_head, block: None } => {
                self.lmove(&from, &to, from_head, to_head).await
            }
            Cmd::ListMove { from, to, from_head, to_head, block: Some(block) } => {
                let keys = vec![from.clone()];
                self.blocking(stream, keys, block, move |c, _| {
                    let (from, to) = (from.clone(), to.clone());
                    Box::pin(async move { c.lmove(&from, &to, from_head, to_head).await })
                })
                .await
            }
            Cmd::Pop { keys, from, block: Some(block) } => {
                self.blocking(stream, keys, block, move |c, key| Box::pin(c.pop(key, from))).await
            }
            Cmd::Pop { keys, from, block: None } => {
                let mut answer = Frame::NilArray;
                for key in keys {
                    answer = self.pop(key, from).await;
                    if !matches!(answer, Frame::NilArray) {
                        break;
                    }
                }
                answer
            }
            Cmd::Keys { ops, combine } => match self.store.atomic(&self.ns, ops, &mut self.session).await {
                Ok(results) => commands::combine(results, combine),
                Err(e) => store_error(e),
            },
            Cmd::Server(Server::Quit) => {
                pending.push(Pending::Ready(Frame::ok()));
                return false;
            }
            Cmd::Server(Server::Subscribe(kind, names)) => {
                self.subscribe(kind, names, pending);
                return true;
            }
            Cmd::Server(Server::Unsubscribe(kind, names)) => {
                self.unsubscribe(kind, names, Some(pending));
                return true;
            }
            Cmd::Server(s) => {
                let before = self.resp3;
                // Only these change what CLIENT LIST shows of it.
                let shown = matches!(
                    s,
                    Server::Select(_) | Server::Auth { .. } | Server::Hello { .. } | Server::ClientSetName(_)
                );
                let frame = self.server(s).await;
                if self.resp3 != before {
                    pending.push(Pending::Protocol(self.resp3));
                }
                if shown {
                    self.publish_state();
                }
                frame
            }
        };
        pending.push(Pending::Ready(frame));
        // Guessing passwords takes a new connection every few tries.
        if self.failed_logins >= MAX_FAILED_LOGINS {
            if rarely() {
                tracing::warn!(client = self.id, "connection closed after {MAX_FAILED_LOGINS} wrong passwords");
            }
            return false;
        }
        true
    }

    /// Runs a transaction's queued commands: every key operation in one
    /// atomic batch, then any server commands, answers in queue order.
    async fn exec(&mut self) -> Frame {
        let Some(tx) = self.multi.take() else { return Frame::err("EXEC without MULTI") };
        // EXEC unwatches, whatever it answers.
        let checks = std::mem::take(&mut self.watched);
        if tx.failed {
            return Frame::Error("EXECABORT Transaction discarded because of previous errors.".into());
        }
        if tx.queued.iter().any(overlay::needs_overlay) {
            return self.exec_overlay(tx.queued, checks).await;
        }
        let mut ops = Vec::new();
        for cmd in &tx.queued {
            match cmd {
                Cmd::Key { key, op, .. } => ops.push((key.clone(), op.clone())),
                Cmd::Keys { ops: more, .. } => ops.extend(more.iter().cloned()),
                Cmd::Server(_)
                | Cmd::Stored { .. }
                | Cmd::Move { .. }
                | Cmd::Relocate { .. }
                | Cmd::ListMove { .. }
                | Cmd::ZStore { .. }
                | Cmd::ZCombine { .. }
                | Cmd::SetNew { .. }
                | Cmd::Pop { .. } => {}
            }
        }
        let mut results = match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
            Ok(Some(r)) => r.into_iter(),
            // A watched key changed: nothing ran.
            Ok(None) => return Frame::NilArray,
            Err(e) => return store_error(e),
        };
        let mut frames = Vec::with_capacity(tx.queued.len());
        for cmd in tx.queued {
            let frame = match cmd {
                Cmd::Key { render, .. } => commands::render(next(&mut results), render),
                Cmd::Keys { ops, combine } => {
                    commands::combine(ops.iter().map(|_| next(&mut results)).collect(), combine)
                }
                Cmd::Server(s) => self.server(s).await,
                Cmd::Stored { .. }
                | Cmd::Move { .. }
                | Cmd::Relocate { .. }
                | Cmd::ListMove { .. }
                | Cmd::ZStore { .. }
                | Cmd::ZCombine { .. }
                | Cmd::SetNew { .. }
                | Cmd::Pop { .. } => unreachable!("a transaction with these runs on the overlay"),
            };
            frames.push(frame);
        }
        Frame::Array(frames)
    }

    /// EXEC of a transaction with commands over several keys: run on an
    /// overlay of the keys it names, then committed if they still read as
    /// they did (else again, a bounded number of times). See [`overlay`].
    async fn exec_overlay(&mut self, queued: Vec<Cmd>, watched: Vec<squall_store::Check>) -> Frame {
        use squall_store::Op;
        let keys = overlay::keys_of(&queued);
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let reads = keys.iter().map(|k| (k.clone(), Op::Snapshot)).collect();
            let read = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let mut checks = watched.clone();
            checks.extend(keys.iter().zip(&read).map(|(k, saw)| self.check(k, Op::Snapshot, saw.clone())));
            let node = self.store.node_id();
            let mut ov =
                overlay::Overlay::new(node, self.ns.clone(), self.store.now_ms(), keys.iter().cloned().zip(read));
            // Server commands run after the commit, in their places.
            let mut later = Vec::new();
            let mut frames = Vec::with_capacity(queued.len());
            for cmd in queued.iter().cloned() {
                match cmd {
                    Cmd::Server(s) => {
                        later.push((frames.len(), s));
                        frames.push(Frame::Nil);
                    }
                    cmd => frames.push(ov.answer(cmd).unwrap_or(Frame::Nil)),
                }
            }
            match self.store.atomic_if(&self.ns, checks, ov.into_writes(), &mut self.session).await {
                Ok(Some(_)) => {
                    for (i, s) in later {
                        frames[i] = self.server(s).await;
                    }
                    return Frame::Array(frames);
                }
                Ok(None) => {
                    // A watched key changed: nothing runs. Else one of the
                    // transaction's own keys did: again.
                    if self.watch_broken(&watched).await {
                        return Frame::NilArray;
                    }
                }
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the keys kept changing during EXEC; try again")
    }

    /// True if a watched key no longer reads as it did.
    async fn watch_broken(&mut self, watched: &[squall_store::Check]) -> bool {
        for c in watched {
            match self.store.atomic(&c.ns, vec![(c.key.clone(), c.op.clone())], &mut self.session).await {
                Ok(r) if r.first() == Some(&c.saw) => {}
                _ => return true,
            }
        }
        false
    }

    async fn server(&mut self, s: Server) -> Frame {
        let ns = self.ns.clone();
        match s {
            Server::Refused(frame) => frame,
            // In RESP2, a subscribed connection's PING answers in the shape of a message.
            Server::Ping(m) if self.subs.any() && !self.resp3 => {
                Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"pong")), Frame::Bulk(m.unwrap_or_default())])
            }
            Server::Ping(None) => Frame::Simple("PONG"),
            Server::Ping(Some(m)) | Server::Echo(m) => Frame::Bulk(m),
            Server::Quit => Frame::ok(),
            Server::Select(db) => self.select(&db),
            Server::Auth { user, password } => match self.check_password(user.as_deref(), &password) {
                Ok(()) => Frame::ok(),
                Err(e) => e,
            },
            Server::Hello { proto, auth, setname } => {
                let version = match proto.as_deref() {
                    None => None,
                    Some(p) => match squall_store::parse_int(p) {
                        Some(v @ (2 | 3)) => Some(v),
                        Some(_) => return Frame::Error("NOPROTO unsupported protocol version".into()),
                        None => return Frame::err("Protocol version is not an integer or out of range"),
                    },
                };
                if let Some((user, password)) = auth
                    && let Err(e) = self.check_password(Some(&user), &password)
                {
                    return e;
                }
                if self.user.is_none() {
                    return Frame::Error(
                        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
                         AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
                         version at the same time"
                            .into(),
                    );
                }
                if let Some(v) = version {
                    self.resp3 = v == 3;
                }
                if let Some(n) = setname {
                    self.name = Some(n);
                }
                self.hello()
            }
            Server::ClientSetName(n) => {
                self.name = Some(n);
                Frame::ok()
            }
            Server::ClientGetName => self.name.clone().map_or(Frame::Nil, Frame::Bulk),
            Server::ClientInfo => {
                self.publish_state();
                Frame::Bulk(Bytes::from(self.state.line(self.multi_len())))
            }
            Server::ClientList => {
                self.publish_state();
                let mut out = String::new();
                for c in self.opts.clients.list().iter().filter(|c| self.sees(c)) {
                    out.push_str(&c.line(if c.id == self.id { self.multi_len() } else { -1 }));
                }
                Frame::Bulk(Bytes::from(out))
            }
            Server::ClientKill { id, addr, user, skip_me, old } => {
                let chosen: Vec<Arc<ClientState>> = self
                    .opts
                    .clients
                    .list()
                    .into_iter()
                    .filter(|c| self.sees(c))
                    .filter(|c| id.is_none_or(|id| c.id == id))
                    .filter(|c| addr.as_ref().is_none_or(|a| &c.addr == a))
                    .filter(|c| {
                        user.as_ref().is_none_or(|u| &c.shown.lock().unwrap_or_else(|e| e.into_inner()).user == u)
                    })
                    .filter(|c| !(skip_me && c.id == self.id))
                    .collect();
                for c in &chosen {
                    c.kill.notify_one();
                }
                match (old, chosen.len()) {
                    (true, 0) => Frame::err("No such client"),
                    (true, _) => Frame::ok(),
                    (false, n) => Frame::Integer(n as i64),
                }
            }
            Server::ClientId => Frame::Integer(self.id as i64),
            Server::ClientSetInfo => Frame::ok(),
            Server::Command(args) => commands::command_reply(&args),
            Server::ConfigGet(params) => {
                let known = [
                    ("save", String::new()),
                    ("appendonly", "no".into()),
                    ("databases", "16".into()),
                    ("maxclients", self.opts.max_clients.to_string()),
                    ("client-output-buffer-limit", {
                        let p = self.opts.broker.limit();
                        format!("{} pubsub {} {} {}", self.opts.output_limit.render(), p.hard, p.soft, p.soft_seconds)
                    }),
                    ("notify-keyspace-events", self.opts.broker.notify()),
                    ("proto-max-bulk-len", self.opts.max_bulk_len.load(Ordering::Relaxed).to_string()),
                ];
                // What CONFIG SET accepted shows over the defaults.
                let mut all: std::collections::BTreeMap<String, String> =
                    known.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                all.extend(self.opts.settings.lock().unwrap_or_else(|e| e.into_inner()).clone());
                // Each parameter once, however many patterns match it.
                let matching = all.into_iter().filter(|(k, _)| {
                    params.iter().any(|p| squall_store::glob_matches(&p.to_ascii_lowercase(), k.as_bytes()))
                });
                let out = matching.map(|(k, v)| (Frame::Bulk(Bytes::from(k)), Frame::Bulk(Bytes::from(v)))).collect();
                Frame::Map(out)
            }
            Server::ConfigSet(pairs) => self.config_set(pairs),
            Server::Ok => Frame::ok(),
            Server::ResetStat => {
                self.metrics.reset_command_stats();
                Frame::ok()
            }
            Server::Flush { all: false } => self.flush(&ns).await,
            Server::Flush { all: true } => {
                let user = self.user.clone().expect("authenticated before FLUSHALL");
                let numbered = std::iter::once(squall_scheduler::namespace::DEFAULT.to_string())
                    .chain((1..16).map(|n| n.to_string()))
                    .filter(|n| user.may_use(n));
                for name in numbered.collect::<Vec<_>>() {
                    let frame = self.flush(&Bytes::from(name)).await;
                    if !matches!(frame, Frame::Simple(_)) {
                        return frame;
                    }
                }
                Frame::ok()
            }
            Server::Info(sections) => match self.store.len(&ns).await {
                Ok(keys) => Frame::Bulk(Bytes::from(self.info(keys, &sections))),
                Err(e) => Frame::err(e.to_string()),
            },
            Server::DbSize => match self.store.len(&ns).await {
                Ok(n) => Frame::Integer(n as i64),
                Err(e) => Frame::err(e.to_string()),
            },
            Server::Keys(pattern) => self.keys(&ns, pattern).await,
            Server::Save { background } => match self.store.flush().await {
                Ok(()) => {
                    self.metrics.last_save_ms.store(self.store.clock().now_ms(), Ordering::Relaxed);
                    // BGSAVE's work is done by the time it answers (a flush is short).
                    if background { Frame::Simple("Background saving started") } else { Frame::ok() }
                }
                Err(e) => Frame::err(e.to_string()),
            },
            Server::LastSave => Frame::Integer((self.metrics.last_save_ms.load(Ordering::Relaxed) / 1000) as i64),
            Server::Sort(sort) => self.sort(*sort).await,
            Server::Role => Frame::Array(vec![
                Frame::Bulk(Bytes::from_static(b"master")),
                Frame::Integer(0),
                Frame::Array(Vec::new()),
            ]),
            Server::Time => {
                // The node's clock (the one every stamp comes from), in Redis's shape.
                let us = self.store.clock().now_ms().saturating_mul(1000);
                Frame::Array(vec![
                    Frame::Bulk(Bytes::from((us / 1_000_000).to_string())),
                    Frame::Bulk(Bytes::from((us % 1_000_000).to_string())),
                ])
            }
            Server::RandomKey => match self.store.random_key(&ns).await {
                Ok(key) => key.map_or(Frame::Nil, Frame::Bulk),
                Err(e) => Frame::err(e.to_string()),
            },
            Server::Scan { cursor, pattern, count, kind } => {
                match self.store.scan(&ns, cursor, count, pattern, kind).await {
                    Ok((next, keys)) => Frame::Array(vec![
                        Frame::Bulk(Bytes::from(next.to_string())),
                        Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
                    ]),
                    Err(e) => Frame::err(e.to_string()),
                }
            }
            Server::Multi => {
                self.multi = Some(Transaction { queued: Vec::new(), failed: false, bytes: 0, over: false });
                Frame::ok()
            }
            Server::Exec => Frame::err("EXEC without MULTI"),
            Server::Discard => Frame::err("DISCARD without MULTI"),
            Server::Watch(keys) => self.watch(keys).await,
            Server::Unwatch => {
                self.watched.clear();
                Frame::ok()
            }
            Server::Publish { shard, channel, message } => {
                // The triggers' events are durable before the message goes out.
                if let Some(f) = self.opts.functions.as_ref().filter(|_| !shard)
                    && let Err(e) = f.published(&ns, &channel, &message).await
                {
                    return Frame::err(format!("ERR the message's trigger events could not be recorded: {e}"));
                }
                Frame::Integer(self.opts.broker.publish(&ns, shard, &channel, &message) as i64)
            }
            Server::PubsubChannels { shard, pattern } => Frame::Array(
                self.opts.broker.channels(&ns, shard, pattern.as_deref()).into_iter().map(Frame::Bulk).collect(),
            ),
            Server::PubsubNumsub { shard, channels } => Frame::Map(
                self.opts
                    .broker
                    .numsub(&ns, shard, &channels)
                    .into_iter()
                    .map(|(c, n)| (Frame::Bulk(c), Frame::Integer(n as i64)))
                    .collect(),
            ),
            Server::PubsubNumpat => Frame::Integer(self.opts.broker.numpat(&ns) as i64),
            Server::Help(lines) => Frame::Array(lines.iter().map(|l| Frame::SimpleOwned((*l).to_string())).collect()),
            // Handled by the connection, never queued.
            Server::Subscribe(..) | Server::Unsubscribe(..) | Server::Reset => {
                Frame::err("not allowed in a transaction")
            }
        }
    }

    /// SINTERSTORE, SUNIONSTORE, SDIFFSTORE, BITOP, PFMERGE, ZUNIONSTORE,
    /// ZINTERSTORE, ZRANGESTORE: reads `keys` with `read`, makes from what
    /// they hold the answer and the writes that make `dest` what it becomes,
    /// and applies those in one unit that applies only if every
    /// key still reads the same (its owners check, holding them); if one
    /// changed in between, again, a bounded number of times.
    async fn store_combined(
        &mut self,
        dest: Bytes,
        keys: Vec<Bytes>,
        read: squall_store::Op,
        make: impl Fn(Vec<OpResult>) -> Result<(Frame, Vec<squall_store::Op>), squall_store::OpError>,
    ) -> Frame {
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let reads = keys.iter().map(|k| (k.clone(), read.clone())).collect();
            let results = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let checks = keys.iter().zip(&results).map(|(k, saw)| self.check(k, read.clone(), saw.clone())).collect();
            let (answer, writes) = match make(results) {
                Ok(made) => made,
                Err(e) => return commands::op_error(e),
            };
            let ops = writes.into_iter().map(|op| (dest.clone(), op)).collect();
            match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
                // A write the destination refuses (PFMERGE into a string
                // that is no HyperLogLog) is the answer.
                Ok(Some(done)) => return done.into_iter().find_map(Result::err).map_or(answer, commands::op_error),
                Ok(None) => continue,
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the keys kept changing while being combined; try again")
    }

    /// SORT, SORT_RO: see [`sort`].
    async fn sort(&mut self, sort: sort::Sort) -> Frame {
        use squall_store::Op;
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let first =
                match self.store.atomic(&self.ns, vec![(sort.key.clone(), Op::Snapshot)], &mut self.session).await {
                    Ok(mut r) => r.remove(0),
                    Err(e) => return store_error(e),
                };
            let (now, node) = (self.store.now_ms(), self.store.node_id());
            let (kind, elements) = match sort::elements(&self.ns, &sort.key, &first, now, node) {
                Ok(found) => found,
                Err(frame) => return frame,
            };
            let plan = sort::Plan::new(sort.clone(), kind, elements);
            let mut reads = plan.reads();
            let looked = if reads.is_empty() {
                Vec::new()
            } else {
                // The named keys, with the key again: if it changed, again.
                reads.push((sort.key.clone(), Op::Snapshot));
                let mut looked = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                    Ok(r) => r,
                    Err(e) => return store_error(e),
                };
                if looked.pop().as_ref() != Some(&first) {
                    continue;
                }
                looked
            };
            let rows = match plan.rows(&looked) {
                Ok(rows) => rows,
                Err(frame) => return frame,
            };
            let Some(dest) = sort.store.clone() else {
                return Frame::Array(rows.into_iter().map(|r| r.map_or(Frame::Nil, Frame::Bulk)).collect());
            };
            let n = rows.len() as i64;
            let items: Vec<Bytes> = rows.into_iter().map(Option::unwrap_or_default).collect();
            let fill = (!items.is_empty()).then_some(Op::Push { head: false, items, existing: false });
            let checks = vec![self.check(&sort.key, Op::Snapshot, first)];
            let ops = commands::replaced(fill).into_iter().map(|op| (dest.clone(), op)).collect();
            match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
                Ok(Some(_)) => return Frame::Integer(n),
                Ok(None) => continue,
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the key kept changing while being sorted; try again")
    }

    /// A set counts as a sorted set of scores 1, so the sources are read whole.
    async fn zstore(&mut self, dest: Bytes, keys: Vec<Bytes>, how: commands::ZStoreHow) -> Frame {
        use squall_store::{Op, ZAddOpts};
        self.store_combined(dest, keys, Op::Snapshot, |results| {
            let pairs = commands::combine_zsets(results, &how)?;
            let n = pairs.len() as i64;
            let pairs: Vec<(f64, Bytes)> = pairs.into_iter().map(|(m, s)| (s, m)).collect();
            let fill = (!pairs.is_empty()).then_some(Op::ZAdd { pairs, opts: ZAddOpts::default() });
            Ok((Frame::Integer(n), commands::replaced(fill)))
        })
        .await
    }

    /// MSETNX: the pairs set in one unit that applies only if none of the
    /// keys is there (their owners check); 0 if one was.
    async fn set_new(&mut self, pairs: Vec<(Bytes, Bytes)>) -> Frame {
        use squall_store::{Op, Reply, SetExpiry};
        let checks = pairs.iter().map(|(k, _)| self.check(k, Op::Exists, Ok(Reply::Int(0)))).collect();
        let ops =
            pairs.into_iter().map(|(k, value)| (k, Op::Set { value, expiry: SetExpiry::None, get: false })).collect();
        match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
            Ok(done) => Frame::Integer(i64::from(done.is_some())),
            Err(e) => store_error(e),
        }
    }

    /// RENAME, RENAMENX and COPY: reads the value at `from`, then writes it
    /// at `to` (and, renaming, removes `from`) in one unit that applies only
    /// if `from` still reads the same (and, `only_new`, `to` is not there);
    /// if one changed in between, again.
    async fn relocate(&mut self, from: Bytes, to: Bytes, copy: bool, only_new: bool) -> Frame {
        use squall_store::{Op, Reply};
        let answer = |done: bool| match (copy, only_new) {
            (false, false) => Frame::ok(),
            _ => Frame::Integer(i64::from(done)),
        };
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let reads = vec![(from.clone(), Op::Snapshot), (to.clone(), Op::Exists)];
            let read = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let Ok(Reply::Entry(entry)) = &read[0] else {
                return if copy { Frame::Integer(0) } else { Frame::err("no such key") };
            };
            if from == to {
                return if copy {
                    Frame::err("source and destination objects are the same")
                } else {
                    answer(!only_new)
                };
            }
            if only_new && read[1] == Ok(Reply::Int(1)) {
                return answer(false);
            }
            let mut checks = vec![self.check(&from, Op::Snapshot, read[0].clone())];
            if only_new {
                checks.push(self.check(&to, Op::Exists, Ok(Reply::Int(0))));
            }
            let mut ops = vec![(to.clone(), Op::Put(entry.clone()))];
            if !copy {
                ops.push((from.clone(), Op::Del));
            }
            match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
                Ok(Some(_)) => return answer(true),
                Ok(None) => continue,
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the key kept changing while being moved; try again")
    }

    /// SMOVE: the member leaves `from` and joins `to` in one unit, which
    /// applies only if the member is in `from` then and neither key has
    /// changed type (their owners check).
    async fn smove(&mut self, from: Bytes, to: Bytes, member: Bytes) -> Frame {
        use squall_store::{Op, Reply};
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let reads = vec![(from.clone(), Op::Type), (to.clone(), Op::Type)];
            let types = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let set = |r: &squall_store::OpResult| {
                matches!(r, Ok(Reply::Type(None)) | Ok(Reply::Type(Some(squall_store::lattice::Kind::Set))))
            };
            // No source: nothing to move, whatever the destination is (as Redis checks).
            if types[0] == Ok(Reply::Type(None)) {
                return Frame::Integer(0);
            }
            if !types.iter().all(set) {
                return commands::op_error(squall_store::OpError::WrongType);
            }
            let checks = vec![
                self.check(&from, Op::SIsMember(member.clone()), Ok(Reply::Int(1))),
                self.check(&to, Op::Type, types[1].clone()),
            ];
            let ops =
                vec![(from.clone(), Op::SRem(vec![member.clone()])), (to.clone(), Op::SAdd(vec![member.clone()]))];
            match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
                Ok(Some(_)) => return Frame::Integer(1),
                Ok(None) => {}
                Err(e) => return store_error(e),
            }
            // Not moved: gone from `from`, or `to` changed type; which, a read says.
            let there = self
                .store
                .atomic(&self.ns, vec![(from.clone(), Op::SIsMember(member.clone()))], &mut self.session)
                .await;
            match there {
                Ok(r) if matches!(r.first(), Some(Ok(Reply::Int(0)))) => return Frame::Integer(0),
                Ok(_) => continue,
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the sets kept changing during SMOVE; try again")
    }

    /// LMOVE: the item at one end of `from` pushed at one end of `to`, in
    /// one unit that applies only if `from`'s end and `to`'s type are
    /// still as read (their owners check); read again if they changed.
    async fn lmove(&mut self, from: &Bytes, to: &Bytes, from_head: bool, to_head: bool) -> Frame {
        use squall_store::{Op, Reply};
        let end = Op::LIndex(if from_head { 0 } else { -1 });
        for attempt in 0..OPTIMISTIC_TRIES {
            back_off(attempt, self.id).await;
            let reads = vec![(from.clone(), end.clone()), (to.clone(), Op::Type)];
            let read = match self.store.atomic(&self.ns, reads, &mut self.session).await {
                Ok(r) => r,
                Err(e) => return store_error(e),
            };
            let item = match &read[0] {
                Ok(Reply::Bytes(item)) => item.clone(),
                Ok(_) => return Frame::Nil,
                Err(e) => return commands::op_error(*e),
            };
            if !matches!(read[1], Ok(Reply::Type(None | Some(squall_store::lattice::Kind::List)))) {
                return commands::op_error(squall_store::OpError::WrongType);
            }
            let checks =
                vec![self.check(from, end.clone(), read[0].clone()), self.check(to, Op::Type, read[1].clone())];
            let ops = vec![
                (from.clone(), Op::Pop { head: from_head, count: None }),
                (to.clone(), Op::Push { head: to_head, items: vec![item.clone()], existing: false }),
            ];
            match self.store.atomic_if(&self.ns, checks, ops, &mut self.session).await {
                Ok(Some(_)) => return Frame::Bulk(item),
                Ok(None) => {}
                Err(e) => return store_error(e),
            }
        }
        Frame::err("the lists kept changing during LMOVE; try again")
    }

    /// A pop from `key`, as a pop command answers it (a null array if
    /// there was nothing).
    async fn pop(&mut self, key: Bytes, from: PopFrom) -> Frame {
        match self.store.exec(&self.ns, key.clone(), from.op()).await {
            Ok(Ok(reply)) => from.reply(key, reply).unwrap_or(Frame::NilArray),
            Ok(Err(e)) => commands::op_error(e),
            Err(e) => store_error(e),
        }
    }

    /// A blocking command: `attempt` on each key in turn until one answers
    /// something other than a null; if none does, waits for a write to one
    /// of the keys and tries again, until `block` has passed (zero: for
    /// ever), then answers a null. The connection does nothing else
    /// meanwhile, as in Redis; CLIENT KILL, the node's stop and the client
    /// hanging up end the wait.
    async fn blocking<F>(&mut self, stream: &Stream, keys: Vec<Bytes>, block: std::time::Duration, attempt: F) -> Frame
    where
        F: for<'c> Fn(&'c mut Conn, Bytes) -> std::pin::Pin<Box<dyn std::future::Future<Output = Frame> + Send + 'c>>,
    {
        let deadline = (!block.is_zero()).then(|| tokio::time::Instant::now() + block);
        // Listening before trying: a push between a try and the wait is not missed.
        let mut events = self.store.key_events();
        let nil = || Frame::NilArray;
        loop {
            for key in &keys {
                let frame = attempt(self, key.clone()).await;
                if !matches!(frame, Frame::Nil | Frame::NilArray) {
                    return frame;
                }
            }
            loop {
                let sleep = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    e = events.next() => match e {
                        Some(Ok(e)) if e.ns == self.ns && keys.contains(&e.key) => break,
                        Some(Ok(_)) => continue,
                        // Fell behind: one of them may have been written.
                        Some(Err(_)) => break,
                        None => return Frame::err("the store is closing"),
                    },
                    () = sleep => return nil(),
                    // Gone: nothing may be popped for it.
                    () = stream.hung_up() => return nil(),
                    () = self.state.kill.notified() => {
                        // Seen again between rounds, which closes the connection.
                        self.state.kill.notify_one();
                        return nil();
                    }
                    _ = self.stop.wait_for(|s| *s) => return nil(),
                }
            }
        }
    }

    /// Whether this connection's user may see (and kill) `other`: on an
    /// open node every connection, else its own user's.
    fn sees(&self, other: &ClientState) -> bool {
        self.opts.access.is_open()
            || self.user.as_ref().is_some_and(|u| other.shown.lock().unwrap_or_else(|e| e.into_inner()).user == u.name)
    }

    /// CLIENT LIST's `multi`: the commands queued, or -1 outside MULTI.
    fn multi_len(&self) -> i64 {
        self.multi.as_ref().map_or(-1, |t| t.queued.len() as i64)
    }

    /// CONFIG SET: all the pairs or none. What changes nothing here is
    /// accepted (and shown by CONFIG GET); what is set at start says how;
    /// anything else is unknown, as Redis says it.
    fn config_set(&mut self, pairs: Vec<(Bytes, Bytes)>) -> Frame {
        let mut accepted = Vec::with_capacity(pairs.len());
        let mut notify = None;
        let mut pubsub_limit = None;
        let mut bulk = None;
        for (name, value) in pairs {
            let name = String::from_utf8_lossy(&name).to_ascii_lowercase();
            // The pub/sub class changes while running; the normal one is set at start.
            if name == "client-output-buffer-limit"
                && let Some(rest) = String::from_utf8_lossy(&value).trim().strip_prefix("pubsub ")
            {
                match OutputLimit::parse(rest) {
                    Ok(l) => {
                        pubsub_limit = Some(l);
                        continue;
                    }
                    Err(e) => {
                        return Frame::err(format!("CONFIG SET failed (possibly related to argument '{name}') - {e}"));
                    }
                }
            }
            if let Some((_, flag)) = START_SETTINGS.iter().find(|(p, _)| *p == name) {
                return Frame::err(format!("CONFIG SET failed (possibly related to argument '{name}') - {flag}"));
            }
            if name == "proto-max-bulk-len" {
                match max_bulk_len(String::from_utf8_lossy(&value).trim()) {
                    Ok(n) => bulk = Some(n),
                    Err(e) => {
                        return Frame::err(format!("CONFIG SET failed (possibly related to argument '{name}') - {e}"));
                    }
                }
                continue;
            }
            if name == "notify-keyspace-events" {
                let text = String::from_utf8_lossy(&value).into_owned();
                if let Err(e) = pubsub::notify::parse(&text) {
                    return Frame::err(e);
                }
                notify = Some(text);
                continue;
            }
            if !NO_OP_SETTINGS.contains(&name.as_str()) {
                return Frame::err(format!("Unknown option or number of arguments for CONFIG SET - '{name}'"));
            }
            accepted.push((name, String::from_utf8_lossy(&value).into_owned()));
        }
        self.opts.settings.lock().unwrap_or_else(|e| e.into_inner()).extend(accepted);
        if let Some(text) = notify {
            self.opts.broker.set_notify(&text).expect("checked above");
        }
        if let Some(limit) = pubsub_limit {
            self.opts.broker.set_limit(limit);
        }
        if let Some(n) = bulk {
            self.opts.max_bulk_len.store(n, Ordering::Relaxed);
        }
        Frame::ok()
    }

    /// WATCH: reads each key as it is now (on its owner, after this
    /// connection's earlier commands), for EXEC to check.
    async fn watch(&mut self, keys: Vec<Bytes>) -> Frame {
        if self.watched.len() + keys.len() > self.opts.max_multi_commands {
            return Frame::err(format!("WATCH: at most {} keys are watched at once", self.opts.max_multi_commands));
        }
        for key in keys {
            let saw = match self.store.exec(&self.ns, key.clone(), squall_store::Op::Snapshot).await {
                Ok(saw) => saw,
                Err(e) => return store_error(e),
            };
            let check = self.check(&key, squall_store::Op::Snapshot, saw);
            self.watched.push(check);
        }
        Frame::ok()
    }

    /// A check of a unit: `op` on `key`, in this connection's namespace,
    /// still answers `saw`.
    fn check(&self, key: &Bytes, op: squall_store::Op, saw: OpResult) -> squall_store::Check {
        squall_store::Check { ns: self.ns.clone(), key: key.clone(), op, saw }
    }

    /// KEYS: every key matching `pattern`, gathered a page at a time (no
    /// shard is held for a whole walk of its keys), and refused with an
    /// error once the reply would be over the hard output limit.
    /// FLUSHDB: removes every key of `ns`, a page at a time (each page one
    /// unit), so no shard is held for the whole; a key written while it
    /// runs may stay.
    async fn flush(&mut self, ns: &Bytes) -> Frame {
        const PAGE: usize = 4096;
        let mut cursor = 0;
        loop {
            let (next, keys) = match self.store.scan(ns, cursor, PAGE, None, None).await {
                Ok(page) => page,
                Err(e) => return Frame::err(e.to_string()),
            };
            if !keys.is_empty() {
                let ops = keys.into_iter().map(|k| (k, squall_store::Op::Del)).collect();
                if let Err(e) = self.store.atomic(ns, ops, &mut self.session).await {
                    return store_error(e);
                }
            }
            if next == 0 {
                return Frame::ok();
            }
            cursor = next;
        }
    }

    async fn keys(&mut self, ns: &Bytes, pattern: Bytes) -> Frame {
        const PAGE: usize = 4096;
        let hard = self.opts.output_limit.hard;
        let (mut cursor, mut out, mut bytes) = (0, Vec::new(), 0usize);
        loop {
            match self.store.scan(ns, cursor, PAGE, Some(pattern.clone()), None).await {
                Ok((next, keys)) => {
                    bytes += keys.iter().map(|k| k.len() + 16).sum::<usize>();
                    if hard > 0 && bytes > hard {
                        return Frame::err(format!(
                            "KEYS reply of more than {hard} bytes is over the client output buffer limit \
                             (client-output-buffer-limit); use SCAN"
                        ));
                    }
                    out.extend(keys.into_iter().map(Frame::Bulk));
                    if next == 0 {
                        return Frame::Array(out);
                    }
                    cursor = next;
                }
                Err(e) => return Frame::err(e.to_string()),
            }
        }
    }

    /// Logs in as `user` (the default user when not named) if `password`
    /// is its secret; a user of one namespace starts in it, unless the
    /// connection has chosen one already.
    fn check_password(&mut self, user: Option<&[u8]>, password: &[u8]) -> Result<(), Frame> {
        let access = self.opts.access.clone();
        if access.is_open() {
            // No credentials: the default user takes any password (Redis's `nopass`), when named.
            if user == Some(crate::auth::DEFAULT_USER.as_bytes()) {
                return Ok(());
            }
            return Err(Frame::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your \
                 configuration is correct?",
            ));
        }
        // Read before the login: users replaced between the two are checked again at the next command.
        let generation = access.generation();
        let Some(found) = access.login(user, password) else {
            self.failed_logins += 1;
            return Err(Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into()));
        };
        if self.ns.as_ref() == DEFAULT_NS && !found.may_use(squall_scheduler::namespace::DEFAULT) {
            self.ns = Bytes::copy_from_slice(found.home().as_bytes());
        }
        self.user_generation = generation;
        self.user = Some(found);
        self.allowed = self.may_use_ns();
        Ok(())
    }

    fn may_use_ns(&self) -> bool {
        self.user.as_ref().is_some_and(|u| std::str::from_utf8(&self.ns).is_ok_and(|ns| u.may_use(ns)))
    }

    /// Why `cmd` may not run now, if it may not: the connection has not
    /// authenticated, or its user may not use its namespace (or is gone,
    /// the users having been reloaded since).
    fn refusal(&mut self, cmd: &Cmd) -> Option<Frame> {
        if let Cmd::Server(Server::Auth { .. } | Server::Hello { .. } | Server::Quit) = cmd {
            return None;
        }
        let access = &self.opts.access;
        if access.generation() != self.user_generation {
            self.user_generation = access.generation();
            // The user as it is now; one whose password changed must log in again.
            self.user = self.user.as_ref().and_then(|u| access.user(&u.name).filter(|now| now.same_secret_as(u)));
            self.allowed = self.may_use_ns();
        }
        let user = match &self.user {
            None => return Some(Frame::Error("NOAUTH Authentication required.".into())),
            Some(user) => user,
        };
        let free = matches!(
            cmd,
            Cmd::Server(
                Server::Select(_)
                    | Server::Ping(_)
                    | Server::Echo(_)
                    | Server::ClientSetName(_)
                    | Server::ClientGetName
                    | Server::ClientId
                    | Server::ClientSetInfo
                    | Server::Command(_)
            )
        );
        (!self.allowed && !free).then(|| {
            Frame::Error(format!(
                "NOPERM User {} has no permissions to access the '{}' namespace",
                user.name,
                String::from_utf8_lossy(&self.ns)
            ))
        })
    }

    /// The error for a write that could add a key to a namespace over its key quota.
    fn over_quota(&self, cmd: &Cmd) -> Option<Frame> {
        let adds = match cmd {
            Cmd::Key { op, .. } => op.may_add_key(),
            Cmd::Keys { ops, .. } => ops.iter().any(|(_, op)| op.may_add_key()),
            Cmd::Stored { .. }
            | Cmd::Move { .. }
            | Cmd::Relocate { .. }
            | Cmd::ListMove { .. }
            | Cmd::ZStore { .. }
            | Cmd::SetNew { .. } => true,
            Cmd::ZCombine { .. } => false,
            Cmd::Pop { .. } => false,
            Cmd::Server(_) => false,
        };
        if !adds {
            return None;
        }
        self.opts.quotas.keys_full(&self.ns).map(|why| Frame::err(format!("quota exceeded: {why}")))
    }

    /// SELECT: database 0 is the default namespace; any other index, or a
    /// name, is the namespace of that name (so Redis's numbered databases
    /// are namespaces too).
    fn select(&mut self, db: &[u8]) -> Frame {
        // Redis's 16 numbered databases; beyond them, as Redis says.
        let numbered = squall_store::parse_int(db);
        if numbered.is_some_and(|n| !(0..16).contains(&n)) {
            return Frame::err("DB index is out of range");
        }
        // `01` and `+1` are no numbers to Redis, nor names here.
        let digits = db.strip_prefix(b"+").or_else(|| db.strip_prefix(b"-")).unwrap_or(db);
        if numbered.is_none() && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            return Frame::err("value is not an integer or out of range");
        }
        let name = match db {
            b"0" => squall_scheduler::namespace::DEFAULT,
            other => match std::str::from_utf8(other) {
                Ok(name) => name,
                Err(_) => return Frame::err("invalid namespace: use letters, digits, '-' or '_'"),
            },
        };
        if let Err(e) = squall_scheduler::check_namespace(name) {
            return Frame::err(e.to_string());
        }
        let user = self.user.as_ref().expect("authenticated before SELECT");
        if !user.may_use(name) {
            return Frame::Error(format!(
                "NOPERM User {} has no permissions to access the '{name}' namespace",
                user.name
            ));
        }
        self.ns = Bytes::copy_from_slice(name.as_bytes());
        self.allowed = true;
        Frame::ok()
    }

    fn hello(&self) -> Frame {
        let b = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
        Frame::Map(vec![
            (b("server"), b("squall")),
            (b("version"), b(REDIS_VERSION)),
            (b("proto"), Frame::Integer(if self.resp3 { 3 } else { 2 })),
            (b("id"), Frame::Integer(self.id as i64)),
            (b("mode"), b("standalone")),
            (b("role"), b("master")),
            (b("modules"), Frame::Array(Vec::new())),
        ])
    }

    /// INFO: the sections asked for (`default`, `all` or `everything` for
    /// all of them), each as Redis names and lays it out.
    fn info(&self, keys: u64, asked: &[String]) -> String {
        let all = asked.is_empty() || asked.iter().any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
        let wanted = |name: &str| all || asked.iter().any(|s| s == name);
        let stats = (0..self.store.shards()).map(|s| self.store.stats(s));
        let (mut used, mut reads, mut writes, mut expired) = (0u64, 0u64, 0u64, 0u64);
        for s in stats {
            used += s.bytes.load(Ordering::Relaxed);
            reads += s.reads.load(Ordering::Relaxed);
            writes += s.writes.load(Ordering::Relaxed);
            expired += s.expired.load(Ordering::Relaxed);
        }
        let (cpu_user, cpu_sys, rss) = process_usage();
        let pubsub_totals = self.opts.broker.totals();
        let slow = self.metrics.resp_pubsub_slow_closed.load(Ordering::Relaxed)
            + self.metrics.resp_output_limit_closed.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut section = |name: &str, title: &str, lines: Vec<(&str, String)>| {
            if !wanted(name) {
                return;
            }
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            out.push_str(&format!("# {title}\r\n"));
            for (k, v) in lines {
                out.push_str(&format!("{k}:{v}\r\n"));
            }
        };
        section(
            "server",
            "Server",
            vec![
                ("redis_version", REDIS_VERSION.to_string()),
                ("squall_version", env!("CARGO_PKG_VERSION").to_string()),
                ("redis_mode", "standalone".into()),
                ("os", std::env::consts::OS.into()),
                ("arch_bits", (usize::BITS).to_string()),
                ("process_id", std::process::id().to_string()),
                ("node_id", self.store.node_id().to_string()),
                ("shards", self.store.shards().to_string()),
                ("durability", self.store.durability().to_string()),
            ],
        );
        section(
            "clients",
            "Clients",
            vec![
                ("connected_clients", self.metrics.resp_connections.load(Ordering::Relaxed).to_string()),
                ("maxclients", self.opts.max_clients.to_string()),
            ],
        );
        section(
            "memory",
            "Memory",
            vec![
                ("used_memory", used.to_string()),
                ("used_memory_human", human(used)),
                ("used_memory_rss", rss.to_string()),
                ("used_memory_rss_human", human(rss)),
                ("maxmemory", "0".into()),
            ],
        );
        section("persistence", "Persistence", vec![("loading", "0".into())]);
        section(
            "stats",
            "Stats",
            vec![
                ("total_connections_received", self.metrics.resp_connections_total.load(Ordering::Relaxed).to_string()),
                ("total_commands_processed", self.metrics.resp_commands.load(Ordering::Relaxed).to_string()),
                ("total_error_replies", self.metrics.resp_errors.load(Ordering::Relaxed).to_string()),
                ("expired_keys", expired.to_string()),
                ("keyspace_reads", reads.to_string()),
                ("keyspace_writes", writes.to_string()),
                ("pubsub_channels", pubsub_totals.0.to_string()),
                ("pubsub_patterns", pubsub_totals.1.to_string()),
                ("pubsubshard_channels", pubsub_totals.2.to_string()),
                ("client_output_buffer_limit_disconnections", slow.to_string()),
            ],
        );
        section("replication", "Replication", vec![("role", "master".into()), ("connected_slaves", "0".into())]);
        section(
            "cpu",
            "CPU",
            vec![("used_cpu_sys", format!("{cpu_sys:.6}")), ("used_cpu_user", format!("{cpu_user:.6}"))],
        );
        // Not among the default sections, as in Redis.
        if asked.iter().any(|s| matches!(s.as_str(), "commandstats" | "all" | "everything")) {
            let stats = commands::COMMANDS.iter().zip(self.metrics.command_stats.iter());
            let lines: Vec<(String, String)> = stats
                .filter_map(|((name, _), c)| {
                    let calls = c.calls.load(Ordering::Relaxed);
                    let usec = c.usec.load(Ordering::Relaxed);
                    (calls > 0).then(|| {
                        let per = usec as f64 / calls as f64;
                        (format!("cmdstat_{name}"), format!("calls={calls},usec={usec},usec_per_call={per:.2}"))
                    })
                })
                .collect();
            section("commandstats", "Commandstats", lines.iter().map(|(k, v)| (k.as_str(), v.clone())).collect());
        }
        let errors: Vec<(String, String)> = self
            .metrics
            .error_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(code, n)| (format!("errorstat_{code}"), format!("count={n}")))
            .collect();
        section("errorstats", "Errorstats", errors.iter().map(|(k, v)| (k.as_str(), v.clone())).collect());
        section("keyspace", "Keyspace", vec![("db0", format!("keys={keys},expires=0,avg_ttl=0"))]);
        out
    }
}

/// The process's CPU seconds (user, system) and resident bytes, from
/// `/proc/self` (zeros where it cannot be read).
fn process_usage() -> (f64, f64, u64) {
    // The kernel's clock ticks are 100 a second on every Linux Squall runs on.
    const TICKS: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from the third on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0) / TICKS;
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    (ticks(11), ticks(12), pages * 4096)
}

/// Bytes as Redis's `*_human` fields show them (`1.50M`).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes}B"),
        1024..1_048_576 => format!("{:.2}K", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", b / 1_048_576.0),
        _ => format!("{:.2}G", b / 1_073_741_824.0),
    }
}

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read buffer of this (shard) thread's connections: reads are
    /// synchronous once the socket is readable, so one serves them all.
    static CHUNK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads what has arrived into `rbuf` (through the thread's chunk). A read
/// that leaves room in the chunk drained the socket, so readiness is cleared
/// at once: the next read waits for the event loop instead of costing a
/// `recv` that would only say "nothing yet".
async fn read(fd: &AsyncFd<std::net::TcpStream>, rbuf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        let got = CHUNK.with_borrow_mut(|chunk| {
            guard.try_io(|s| s.get_ref().read(chunk)).map(|r| r.inspect(|&n| rbuf.extend_from_slice(&chunk[..n])))
        });
        match got {
            Ok(Ok(n)) => {
                if n > 0 && n < READ_CHUNK {
                    guard.clear_ready();
                }
                return Ok(n);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(Err(e)) => return Err(e),
            // Spurious readiness: wait again.
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<std::net::TcpStream>, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // Try first: a socket with room in its send buffer needs no wait.
        match fd.get_ref().write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut guard = fd.writable().await?;
                guard.clear_ready();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// About the bytes a frame takes once encoded.
/// Whether a RESP2 connection that listens to channels may run `cmd`.
fn allowed_subscribed(cmd: &Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Server(Server::Subscribe(..) | Server::Unsubscribe(..) | Server::Ping(_) | Server::Quit | Server::Reset)
    )
}

fn frame_bytes(f: &Frame) -> usize {
    match f {
        Frame::Bulk(b) => b.len() + 16,
        Frame::Error(t) | Frame::SimpleOwned(t) => t.len() + 8,
        Frame::Array(items) => items.iter().map(frame_bytes).sum::<usize>() + 16,
        _ => 16,
    }
}

/// About the bytes an answer takes once encoded.
fn reply_bytes(r: &OpResult) -> usize {
    use squall_store::Reply;
    match r {
        Ok(Reply::Bytes(b)) => b.len() + 16,
        Ok(Reply::List(l)) => l.iter().map(|b| b.len() + 16).sum::<usize>() + 16,
        Ok(Reply::Array(a)) => a.iter().map(|r| reply_bytes(&Ok(r.clone()))).sum::<usize>() + 16,
        _ => 16,
    }
}

/// How many times a read-then-write command (SMOVE, S*STORE) tries
/// again when what it read changed before its unit applied.
const OPTIMISTIC_TRIES: usize = 32;

/// Waits before try `attempt` of an optimistic loop (read, then write if
/// what was read still holds) that lost to other writers: not before the
/// first, a turn of this thread before the next few (the others on it go
/// first), then up to 1, 2, 4 and at most 8 ms, picked at random (by
/// `salt`, the connection), so that clients after the same keys, on other
/// shards too, stop colliding. Without it, 50 clients moving items off one
/// list on two shards ran out of tries.
async fn back_off(attempt: usize, salt: u64) {
    match attempt {
        0 => {}
        1..=3 => tokio::task::yield_now().await,
        n => {
            let cap_us = 1000u64 << (n - 4).min(3);
            // splitmix64 of the connection and the attempt.
            let mut z = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n as u64);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            tokio::time::sleep(std::time::Duration::from_micros(z % cap_us)).await;
        }
    }
}

/// True at most once per 10 seconds, node-wide: for warnings any client
/// can cause, which must not flood the log.
fn rarely() -> bool {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = START.get_or_init(Instant::now).elapsed().as_secs() + 10;
    let last = LAST.load(Ordering::Relaxed);
    (last == 0 || now >= last + 10) && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// The Redis version Squall speaks like, for clients that check.
const REDIS_VERSION: &str = "7.2.0";

/// A store error as a reply: a refused write says why in Redis's words.
fn store_error(e: squall_store::Error) -> Frame {
    match e {
        squall_store::Error::Refused(e) => commands::op_error(e),
        e => Frame::err(e.to_string()),
    }
}

fn next(results: &mut impl Iterator<Item = OpResult>) -> OpResult {
    results.next().unwrap_or(Ok(squall_store::Reply::Nil))
}

/// True for the errors Redis gives when a command is queued in MULTI (and
/// that discard the transaction): an unknown command or subcommand, a
/// count of arguments its command table refuses.
fn refused_at_queue(args: &[Bytes], frame: &Frame) -> bool {
    let Frame::Error(text) = frame else { return true };
    let text = text.strip_prefix("ERR ").unwrap_or(text);
    let subcommand_arity = text.starts_with("wrong number of arguments for '") && text.contains('|');
    !commands::fits_table(args) || text.starts_with("unknown subcommand") || subcommand_arity
}

#[cfg(test)]
mod tests {
    use super::OutputLimit;

    #[test]
    fn output_limits_parse_in_redis_form() {
        let l = OutputLimit::parse("normal 256mb 64mb 60").unwrap();
        assert_eq!(l, OutputLimit { hard: 256 << 20, soft: 64 << 20, soft_seconds: 60 });
        assert_eq!(OutputLimit::parse(&l.render()).unwrap(), l);
        assert_eq!(OutputLimit::parse("0 0 0").unwrap(), OutputLimit { hard: 0, soft: 0, soft_seconds: 0 });
        assert_eq!(
            OutputLimit::parse("NORMAL 1k 2KB 3").unwrap(),
            OutputLimit { hard: 1000, soft: 2048, soft_seconds: 3 }
        );
        for bad in ["", "normal 1mb", "pubsub 32mb 8mb 60", "normal 1xb 0 0", "normal 1mb 0 soon"] {
            assert!(OutputLimit::parse(bad).is_err(), "{bad:?}");
        }
    }
}
