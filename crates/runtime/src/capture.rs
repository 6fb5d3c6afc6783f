//! A guest's stdout or stderr, kept in memory up to a cap.
//!
//! Like wasmtime's `MemoryOutputPipe`, but the host can empty it: a host
//! state is reused by the next instance made on its thread (see
//! `Host::new`), and what one call printed must not reach the next.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Above this, an emptied buffer gives its memory back instead of keeping it.
const KEEP_CAPACITY: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct Capture {
    cap: usize,
    buf: Arc<Mutex<BytesMut>>,
}

impl Capture {
    pub fn new(cap: usize) -> Capture {
        Capture { cap, buf: Arc::new(Mutex::new(BytesMut::new())) }
    }

    fn lock(&self) -> MutexGuard<'_, BytesMut> {
        // Writers only append within the cap; a poisoned buffer is still whole.
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What was written so far (left in place).
    pub fn contents(&self) -> Bytes {
        Bytes::copy_from_slice(&self.lock())
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        let mut buf = self.lock();
        if buf.capacity() > KEEP_CAPACITY {
            *buf = BytesMut::new();
        } else {
            buf.clear();
        }
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut buf = self.lock();
        if bytes.len() > self.cap - buf.len() {
            return Err(StreamError::Trap(wasmtime::format_err!("write beyond the output limit")));
        }
        buf.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        let used = self.len();
        if used < self.cap { Ok(self.cap - used) } else { Err(StreamError::Closed) }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut buf = self.lock();
        let n = data.len().min(self.cap - buf.len());
        buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
