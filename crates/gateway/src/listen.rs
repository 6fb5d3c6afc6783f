//! Accepting sockets, for both listeners: each accepted connection is handed
//! to a shard thread, so it leaves here detached from this thread's event
//! loop.

use tokio::net::TcpListener;

/// The next accepted connection, with Nagle off, detached from this
/// thread's event loop so a shard thread can take it. Failed accepts (out
/// of file descriptors and the like) are logged and retried after a pause.
pub(crate) async fn accept(listener: &TcpListener) -> std::net::TcpStream {
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
