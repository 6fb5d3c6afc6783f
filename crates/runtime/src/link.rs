//! How a running invocation reaches other functions: calls and messages,
//! through a link the caller provides (the scheduler's), as the store is
//! reached through a [`Txn`].

use std::time::Duration;

use crate::txn::{BoxFuture, Txn};

/// Why a call gave no output (the WIT `call-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no function named {0:?}")]
    NotFound(String),
    /// The callee ran and failed: its failure's code and message.
    #[error("{code}: {message}")]
    Failed { code: String, message: String },
    #[error("{0}")]
    Limit(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

/// Why a message was not delivered (the WIT `send-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no invocation {0:?} is running")]
    NoSuchInvocation(String),
    #[error("{0}")]
    MailboxFull(String),
    #[error("{0}")]
    TooLarge(String),
}

/// The end of a callee's run.
pub struct Called {
    pub outcome: Result<Vec<u8>, CallError>,
    /// The callee's transaction, to [`Txn::join`] when it succeeded.
    pub txn: Option<Box<dyn Txn>>,
}

/// A started call: the callee's invocation id and its run (already under
/// way: the future only waits for its end).
pub struct Started {
    pub invocation_id: String,
    pub run: BoxFuture<'static, Called>,
}

/// An invocation's way to the other functions of the node.
pub trait Link: Send + 'static {
    /// Starts `name` on `input`, reading and writing through `txn` (a fork
    /// of the caller's transaction).
    fn spawn(&mut self, name: String, input: Vec<u8>, txn: Box<dyn Txn>) -> Result<Started, CallError>;

    /// Puts `message` in the mailbox of the running invocation `to`.
    fn send(&self, to: &str, message: Vec<u8>) -> Result<(), SendError>;

    /// The next message for this invocation, waiting at most `wait`.
    fn recv(&mut self, wait: Duration) -> BoxFuture<'_, Option<Vec<u8>>>;

    /// The invocation id of the request's root.
    fn root_id(&self) -> &str;

    /// Which delivery of its input this invocation is (1 on the first).
    fn attempt(&self) -> u32;
}

/// The link of an instance that is not running a call, or of a runner that
/// offers no calls: every call and message is refused.
pub struct NoLink;

impl Link for NoLink {
    fn spawn(&mut self, _name: String, _input: Vec<u8>, _txn: Box<dyn Txn>) -> Result<Started, CallError> {
        Err(CallError::Unavailable("calls are not available here".into()))
    }

    fn send(&self, to: &str, _message: Vec<u8>) -> Result<(), SendError> {
        Err(SendError::NoSuchInvocation(to.to_string()))
    }

    fn recv(&mut self, _wait: Duration) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async { None })
    }

    fn root_id(&self) -> &str {
        ""
    }

    fn attempt(&self) -> u32 {
        1
    }
}
