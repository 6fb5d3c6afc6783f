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
use crate::commands::{self, Cmd, Render, Server};
use crate::metrics::Metrics;
use crate::resp::{self, Frame, Limits};
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
    /// The password of the `default` user: when set, a connection must
    /// `AUTH` (or `HELLO ... AUTH`) before any other command.
    pub password: Option<Arc<str>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            max_request_bytes: 64 * 1024 * 1024,
            max_clients: 10_000,
            max_multi_commands: 100_000,
            max_multi_bytes: 64 * 1024 * 1024,
            password: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the password.
        f.debug_struct("Options")
            .field("max_clients", &self.max_clients)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

/// What a connection over the client limit reads before it is closed (Redis's words).
const REFUSAL: &[u8] = b"-ERR max number of clients reached\r\n";

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// Buffer capacity a connection keeps between requests; more is given back.
const BUFFER_KEEP: usize = 1024 * 1024;

/// Accepts connections until `stop` turns true (each runs on a shard thread,
/// round-robin), then lets each connection
/// finish the commands it has read (answering them) and close, and returns
/// once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    store: Handle,
    metrics: Arc<Metrics>,
    opts: Options,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let admit = crate::listen::Admit { max_clients: opts.max_clients, refusal: REFUSAL, what: "Redis protocol" };
    crate::listen::serve(listener, &store, admit, stop.clone(), |std| {
        let conn = Conn::new(store.clone(), metrics.clone(), opts.clone(), stop.clone());
        async move {
            // Registering the socket here puts it on this shard's event loop.
            // (Deprecated because a generic `T` might hand out a descriptor it
            // does not own; a `std::net::TcpStream` owns its own for as long
            // as the `AsyncFd` holds it, which is all the safe call needs.)
            #[allow(deprecated)]
            let fd = AsyncFd::with_interest(std, Interest::READABLE | Interest::WRITABLE);
            if let Ok(fd) = fd {
                conn.run(fd).await;
            }
        }
    })
    .await;
}

enum Pending {
    Ready(Frame),
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

struct Conn {
    store: Handle,
    ns: Bytes,
    id: u64,
    name: Option<Bytes>,
    multi: Option<Transaction>,
    metrics: Arc<Metrics>,
    opts: Options,
    /// Whether it may run commands: it has authenticated, or needs not.
    authed: bool,
    /// Per shard: the highest write sequence this round must see durable.
    written: Vec<u64>,
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
    sent: Vec<std::collections::VecDeque<Sent>>,
}

impl Conn {
    fn new(store: Handle, metrics: Arc<Metrics>, opts: Options, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        let shards = store.shards();
        Conn {
            authed: opts.password.is_none(),
            store,
            ns: Bytes::from_static(DEFAULT_NS),
            id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            name: None,
            multi: None,
            metrics,
            opts,
            written: vec![0; shards],
            session: Session::default(),
            wrote: Timestamp::ZERO,
            stop,
            gathering: (0..shards).map(|_| Vec::new()).collect(),
            sent: (0..shards).map(|_| Default::default()).collect(),
        }
    }

    /// Sends what this round gathered for other shards.
    fn send_batches(&mut self) {
        let after = self.session.seen();
        for (shard, ops) in self.gathering.iter_mut().enumerate() {
            if !ops.is_empty() {
                let n = ops.len();
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
                    Response::Ops(results) if results.len() == n => Sent::Answered(results.into_iter()),
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

    async fn run(mut self, mut stream: AsyncFd<std::net::TcpStream>) {
        self.metrics.resp_connections.fetch_add(1, Ordering::Relaxed);
        self.metrics.resp_connections_total.fetch_add(1, Ordering::Relaxed);
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let mut wbuf = BytesMut::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut pending = Vec::new();
        let mut parser = resp::Parser::default();
        'conn: loop {
            // Between rounds: what was read has been answered.
            let got = tokio::select! {
                r = read(&stream, &mut chunk, &mut rbuf) => r,
                _ = self.stop.wait_for(|s| *s) => break,
            };
            match got {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let started = Instant::now();
            let mut close = false;
            let mut commands = 0u64;
            loop {
                match parser.next(&mut rbuf, &self.opts.limits) {
                    Ok(Some(args)) if args.is_empty() => {}
                    Ok(Some(args)) => {
                        commands += 1;
                        if !self.command(&args, &mut pending).await {
                            close = true;
                            break;
                        }
                        // Answer very long pipelines in slices, so memory stays bounded.
                        if pending.len() >= 1024 && !self.answer(&mut pending, &mut wbuf, &mut stream).await {
                            break 'conn;
                        }
                    }
                    Ok(None) => {
                        if rbuf.len() > self.opts.max_request_bytes {
                            pending.push(Pending::Ready(Frame::err(format!(
                                "Protocol error: request larger than {} bytes",
                                self.opts.max_request_bytes
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
            let ok = self.answer(&mut pending, &mut wbuf, &mut stream).await;
            if rbuf.is_empty() && rbuf.capacity() > BUFFER_KEEP {
                rbuf = BytesMut::with_capacity(16 * 1024);
            }
            self.metrics.resp_commands.fetch_add(commands, Ordering::Relaxed);
            self.metrics.resp_latency.observe_n(started.elapsed(), commands);
            if close || !ok {
                break;
            }
        }
        let _ = stream.get_mut().shutdown(std::net::Shutdown::Both);
        self.metrics.resp_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Collects the answers of everything started, waits for durability, writes.
    async fn answer(
        &mut self,
        pending: &mut Vec<Pending>,
        wbuf: &mut BytesMut,
        stream: &mut AsyncFd<std::net::TcpStream>,
    ) -> bool {
        self.send_batches();
        for p in pending.drain(..) {
            let frame = match p {
                Pending::Ready(f) => f,
                Pending::Batched { shard, render, write } => match self.batched(shard, write).await {
                    Ok(r) => commands::render(r, render),
                    Err(e) => Frame::err(e),
                },
            };
            if matches!(frame, Frame::Error(_)) {
                self.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
            }
            frame.encode(wbuf);
        }
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
        let ok = write_all(stream, wbuf).await.is_ok();
        wbuf.clear();
        // One huge answer (KEYS *, a big SMEMBERS) must not pin its memory for
        // the life of an idle connection.
        if wbuf.capacity() > BUFFER_KEEP {
            *wbuf = BytesMut::with_capacity(16 * 1024);
        }
        ok
    }

    /// Starts one command. Returns false when the connection should close.
    async fn command(&mut self, args: &[Bytes], pending: &mut Vec<Pending>) -> bool {
        let cmd = match commands::parse(args, &**self.store.clock()) {
            Ok(cmd) => cmd,
            Err(frame) => {
                if let Some(tx) = &mut self.multi {
                    tx.failed = true;
                }
                pending.push(Pending::Ready(frame));
                return true;
            }
        };
        if !self.authed && !matches!(cmd, Cmd::Server(Server::Auth { .. } | Server::Hello { .. } | Server::Quit)) {
            pending.push(Pending::Ready(Frame::Error("NOAUTH Authentication required.".into())));
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
                    pending.push(Pending::Ready(Frame::ok()));
                }
                Cmd::Server(Server::Multi) => {
                    pending.push(Pending::Ready(Frame::err("MULTI calls can not be nested")));
                }
                Cmd::Server(Server::Quit) => {
                    pending.push(Pending::Ready(Frame::ok()));
                    return false;
                }
                cmd => {
                    tx.bytes += args.iter().map(Bytes::len).sum::<usize>();
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
                self.gathering[shard].push((key, op));
                pending.push(Pending::Batched { shard, render, write });
                return true;
            }
            Cmd::Keys { ops, combine } => match self.store.atomic(&self.ns, ops, &mut self.session).await {
                Ok(results) => commands::combine(results, combine),
                Err(e) => store_error(e),
            },
            Cmd::Server(Server::Quit) => {
                pending.push(Pending::Ready(Frame::ok()));
                return false;
            }
            Cmd::Server(s) => self.server(s).await,
        };
        pending.push(Pending::Ready(frame));
        true
    }

    /// Runs a transaction's queued commands: every key operation in one
    /// atomic batch, then any server commands, answers in queue order.
    async fn exec(&mut self) -> Frame {
        let Some(tx) = self.multi.take() else { return Frame::err("EXEC without MULTI") };
        if tx.failed {
            return Frame::Error("EXECABORT Transaction discarded because of previous errors.".into());
        }
        let mut ops = Vec::new();
        for cmd in &tx.queued {
            match cmd {
                Cmd::Key { key, op, .. } => ops.push((key.clone(), op.clone())),
                Cmd::Keys { ops: more, .. } => ops.extend(more.iter().cloned()),
                Cmd::Server(_) => {}
            }
        }
        let mut results = match self.store.atomic(&self.ns, ops, &mut self.session).await {
            Ok(r) => r.into_iter(),
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
            };
            frames.push(frame);
        }
        Frame::Array(frames)
    }

    async fn server(&mut self, s: Server) -> Frame {
        let ns = self.ns.clone();
        match s {
            Server::Ping(None) => Frame::Simple("PONG"),
            Server::Ping(Some(m)) | Server::Echo(m) => Frame::Bulk(m),
            Server::Quit => Frame::ok(),
            Server::Select(db) => {
                if db.as_ref() == b"0" {
                    Frame::ok()
                } else {
                    Frame::err("DB index is out of range (Squall serves database 0; use namespaces instead)")
                }
            }
            Server::Auth { user, password } => match self.check_password(user.as_deref(), &password) {
                Ok(()) => Frame::ok(),
                Err(e) => e,
            },
            Server::Hello { proto, auth, setname } => {
                if proto.as_deref().is_some_and(|p| p != b"2") {
                    return Frame::Error("NOPROTO sorry, this protocol version is not supported".into());
                }
                if let Some((user, password)) = auth
                    && let Err(e) = self.check_password(Some(&user), &password)
                {
                    return e;
                }
                if !self.authed {
                    return Frame::Error(
                        "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
                         AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
                         version at the same time"
                            .into(),
                    );
                }
                match proto.as_deref() {
                    None | Some(b"2") => {
                        if let Some(n) = setname {
                            self.name = Some(n);
                        }
                        self.hello()
                    }
                    Some(_) => Frame::Error("NOPROTO sorry, this protocol version is not supported".into()),
                }
            }
            Server::ClientSetName(n) => {
                self.name = Some(n);
                Frame::ok()
            }
            Server::ClientGetName => self.name.clone().map_or(Frame::Nil, Frame::Bulk),
            Server::ClientId => Frame::Integer(self.id as i64),
            Server::ClientSetInfo => Frame::ok(),
            Server::Command(None) => Frame::Array(
                commands::COMMANDS
                    .iter()
                    .map(|(name, arity)| {
                        Frame::Array(vec![
                            Frame::Bulk(Bytes::from_static(name.as_bytes())),
                            Frame::Integer(*arity),
                            Frame::Array(Vec::new()),
                            Frame::Integer(0),
                            Frame::Integer(0),
                            Frame::Integer(0),
                        ])
                    })
                    .collect(),
            ),
            Server::Command(Some(sub)) if sub.eq_ignore_ascii_case(b"COUNT") => {
                Frame::Integer(commands::COMMANDS.len() as i64)
            }
            // DOCS and the rest: nothing to add beyond the names.
            Server::Command(Some(_)) => Frame::Array(Vec::new()),
            Server::ConfigGet(params) => {
                let known: &[(&str, &str)] = &[("save", ""), ("appendonly", "no"), ("databases", "1")];
                let mut out = Vec::new();
                for p in &params {
                    for (k, v) in known {
                        if squall_store::glob_matches(&p.to_ascii_lowercase(), k.as_bytes()) {
                            out.push(Frame::Bulk(Bytes::from_static(k.as_bytes())));
                            out.push(Frame::Bulk(Bytes::from_static(v.as_bytes())));
                        }
                    }
                }
                Frame::Array(out)
            }
            Server::Info => match self.store.len(&ns).await {
                Ok(keys) => Frame::Bulk(Bytes::from(self.info(keys))),
                Err(e) => Frame::err(e.to_string()),
            },
            Server::DbSize => match self.store.len(&ns).await {
                Ok(n) => Frame::Integer(n as i64),
                Err(e) => Frame::err(e.to_string()),
            },
            Server::Keys(pattern) => match self.store.scan(&ns, 0, usize::MAX, Some(pattern), None).await {
                Ok((_, keys)) => Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
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
            Server::Unwatch => Frame::ok(),
        }
    }

    /// Checks the `default` user's password (the only user); a match
    /// authenticates the connection.
    fn check_password(&mut self, user: Option<&[u8]>, password: &[u8]) -> Result<(), Frame> {
        let Some(expected) = self.opts.password.as_deref() else {
            // No password: the default user takes any (Redis's `nopass`), when named.
            if user == Some(b"default".as_slice()) {
                return Ok(());
            }
            return Err(Frame::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your \
                 configuration is correct?",
            ));
        };
        if user.is_none_or(|u| u == b"default") && crate::auth::same_secret(expected.as_bytes(), password) {
            self.authed = true;
            Ok(())
        } else {
            Err(Frame::Error("WRONGPASS invalid username-password pair or user is disabled.".into()))
        }
    }

    fn hello(&self) -> Frame {
        let b = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
        Frame::Array(vec![
            b("server"),
            b("squall"),
            b("version"),
            b(REDIS_VERSION),
            b("proto"),
            Frame::Integer(2),
            b("id"),
            Frame::Integer(self.id as i64),
            b("mode"),
            b("standalone"),
            b("role"),
            b("master"),
            b("modules"),
            Frame::Array(Vec::new()),
        ])
    }

    fn info(&self, keys: u64) -> String {
        format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nsquall_version:{}\r\nredis_mode:standalone\r\nnode_id:{}\r\nshards:{}\r\ndurability:{}\r\n\r\n# Persistence\r\nloading:0\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n# Stats\r\ntotal_commands_processed:{}\r\n\r\n# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n",
            env!("CARGO_PKG_VERSION"),
            self.store.node_id(),
            self.store.shards(),
            self.store.durability(),
            self.metrics.resp_commands.load(Ordering::Relaxed),
        )
    }
}

/// Reads what has arrived into `rbuf` (through `chunk`). A read that leaves
/// room in `chunk` drained the socket, so readiness is cleared at once:
/// the next read waits for the event loop instead of costing a `recv` that
/// would only say "nothing yet".
async fn read(fd: &AsyncFd<std::net::TcpStream>, chunk: &mut [u8], rbuf: &mut BytesMut) -> std::io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|s| s.get_ref().read(chunk)) {
            Ok(Ok(n)) => {
                if n > 0 && n < chunk.len() {
                    guard.clear_ready();
                }
                rbuf.extend_from_slice(&chunk[..n]);
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
