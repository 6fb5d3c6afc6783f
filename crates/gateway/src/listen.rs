//! The accept loop both listeners share: each accepted connection is
//! handed to a shard thread, so it leaves here detached from this thread's
//! event loop, and a stop waits for every connection to end.
//!
//! Each listener holds at most `max_clients` connections: one over that is
//! told so in its protocol (`refusal`) and closed. Running out of file
//! descriptors anyway (another part of the process holding many) is not an
//! outage: a descriptor kept in reserve is given up to accept and close the
//! waiting connection, so its client hears at once instead of hanging in
//! the backlog, and the store keeps the descriptors it needs. Both are
//! logged once per [`LOG_EVERY`], with how many there were.

use squall_store::Handle;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often a refused client or a failed accept is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The client limit of one listener, and what a client over it is told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admit {
    pub max_clients: usize,
    /// Written to a refused connection before it is closed.
    pub refusal: &'static [u8],
    /// The listener's name in the log.
    pub what: &'static str,
}

/// Accepts connections until `stop` turns true, running `conn` for each on
/// a shard thread, round robin, and then returns once every connection has
/// ended (each watches `stop` itself and finishes what it has begun).
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    store: &Handle,
    admit: Admit,
    mut stop: watch::Receiver<bool>,
    mut conn: F,
) where
    F: FnMut(std::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (closed_tx, closed_rx) = watch::channel(());
    let open = Arc::new(AtomicUsize::new(0));
    let mut acceptor = Acceptor::new(admit.what);
    let mut refused = Every::new(LOG_EVERY);
    let mut next = 0usize;
    loop {
        let std = tokio::select! {
            s = acceptor.accept(&listener) => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        if open.load(Ordering::Relaxed) >= admit.max_clients {
            refuse(std, admit.refusal);
            if let Some(n) = refused.tick() {
                tracing::warn!(
                    clients = admit.max_clients,
                    refused = n,
                    "{}: client limit reached; refusing new connections (max-clients)",
                    admit.what
                );
            }
            continue;
        }
        let shard = next % store.shards();
        next = next.wrapping_add(1);
        let guard = Open::new(&open);
        let (closed, fut) = (closed_rx.clone(), conn(std));
        store.spawn_on(shard, async move {
            let _open = (closed, guard);
            fut.await
        });
    }
    drop(closed_rx);
    closed_tx.closed().await;
}

/// One open connection of a listener, counted until dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(open: &Arc<AtomicUsize>) -> Open {
        open.fetch_add(1, Ordering::Relaxed);
        Open(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Refused connections being closed gently at once, at most.
const MAX_CLOSING: usize = 64;
static CLOSING: AtomicUsize = AtomicUsize::new(0);

/// Tells a connection over the limit why it is closed (the answer fits in a
/// fresh socket's send buffer, so the write does not wait), then closes it
/// gently: what the client sent is read and dropped for up to a second, so
/// the close does not reset the connection before the client has read the
/// answer. Past [`MAX_CLOSING`] of them, it is closed at once.
fn refuse(mut std: std::net::TcpStream, refusal: &[u8]) {
    let _ = std.write_all(refusal);
    let _ = std.shutdown(std::net::Shutdown::Write);
    if CLOSING.fetch_add(1, Ordering::AcqRel) >= MAX_CLOSING {
        CLOSING.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(std) else {
        CLOSING.fetch_sub(1, Ordering::AcqRel);
        return;
    };
    tokio::spawn(async move {
        let drain = async {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        CLOSING.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Counts events and says how many there were at most once per period.
struct Every {
    period: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Every {
    fn new(period: Duration) -> Every {
        Every { period, last: None, count: 0 }
    }

    /// Counts one; the count since the last report when it is time for one.
    fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.period) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Accepts, with a descriptor in reserve for when there are none left.
struct Acceptor {
    what: &'static str,
    reserve: Option<std::fs::File>,
    failed: Every,
}

impl Acceptor {
    fn new(what: &'static str) -> Acceptor {
        Acceptor { what, reserve: std::fs::File::open("/dev/null").ok(), failed: Every::new(LOG_EVERY) }
    }

    /// The next accepted connection, with Nagle off, detached from this
    /// thread's event loop so a shard thread can take it.
    async fn accept(&mut self, listener: &TcpListener) -> std::net::TcpStream {
        loop {
            if self.reserve.is_none() {
                self.reserve = std::fs::File::open("/dev/null").ok();
            }
            let e = match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    match stream.into_std() {
                        Ok(std) => return std,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            let out_of_fds = matches!(e.raw_os_error(), Some(EMFILE | ENFILE));
            if out_of_fds && let Some(reserve) = self.reserve.take() {
                // Give the reserve up for a moment: the waiting client is
                // accepted and closed rather than left hanging.
                drop(reserve);
                if let Ok(Ok((stream, _))) = tokio::time::timeout(Duration::from_millis(10), listener.accept()).await {
                    drop(stream);
                }
                self.reserve = std::fs::File::open("/dev/null").ok();
                if self.reserve.is_some() {
                    // The next one waiting may be taken the same way at once.
                    if let Some(n) = self.failed.tick() {
                        tracing::warn!(error = %e, failures = n, "{}: out of file descriptors; closing waiting clients", self.what);
                    }
                    continue;
                }
            }
            if let Some(n) = self.failed.tick() {
                tracing::warn!(error = %e, failures = n, "{}: accept failed", self.what);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `EMFILE` and `ENFILE` on Linux: out of descriptors, for the process or the system.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
