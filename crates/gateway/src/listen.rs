//! The accept loop both listeners share: each accepted connection is
//! handed to a shard thread, so it leaves here detached from this thread's
//! event loop, and a stop waits for every connection to end.

use squall_store::Handle;
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Accepts connections until `stop` turns true, running `conn` for each on
/// a shard thread, round robin, and then returns once every connection has
/// ended (each watches `stop` itself and finishes what it has begun).
pub(crate) async fn serve<F, Fut>(listener: TcpListener, store: &Handle, mut stop: watch::Receiver<bool>, mut conn: F)
where
    F: FnMut(std::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (closed_tx, closed_rx) = watch::channel(());
    let mut next = 0usize;
    loop {
        let std = tokio::select! {
            s = accept(&listener) => s,
            _ = stop.wait_for(|s| *s) => break,
        };
        let shard = next % store.shards();
        next = next.wrapping_add(1);
        let (open, fut) = (closed_rx.clone(), conn(std));
        store.spawn_on(shard, async move {
            let _open = open;
            fut.await
        });
    }
    drop(closed_rx);
    closed_tx.closed().await;
}

/// The next accepted connection, with Nagle off, detached from this
/// thread's event loop so a shard thread can take it. Failed accepts (out
/// of file descriptors and the like) are logged and retried after a pause.
async fn accept(listener: &TcpListener) -> std::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                if let Ok(std) = stream.into_std() {
                    return std;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}
