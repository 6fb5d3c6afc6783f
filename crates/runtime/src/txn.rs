//! How the runtime reaches the store: a transaction the caller provides.

use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One store operation a guest asks for (the `store` interface of the WIT world).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Increment(Vec<u8>, i64),
    Counter(Vec<u8>),
    SetAdd(Vec<u8>, Vec<Vec<u8>>),
    SetRemove(Vec<u8>, Vec<Vec<u8>>),
    SetMembers(Vec<u8>),
    MapGet(Vec<u8>, Vec<u8>),
    MapPut(Vec<u8>, Vec<u8>, Vec<u8>),
    MapRemove(Vec<u8>, Vec<u8>),
    MapEntries(Vec<u8>),
    Scan(Vec<u8>, u32),
}

/// The answer to a [`Call`]; which variant comes back follows from the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Unit,
    Bool(bool),
    Int(i64),
    Count(u32),
    Value(Option<Vec<u8>>),
    List(Vec<Vec<u8>>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
}

/// Why a store call failed (the WIT `store-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the key holds another kind of value")]
    WrongType,
    #[error("the value is not an integer or would overflow")]
    NotInteger,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("too large: {0}")]
    TooLarge(String),
}

/// An invocation's view of the store: reads see a consistent snapshot plus
/// the invocation's own writes; writes are buffered until the caller commits.
pub trait Txn: Send + 'static {
    fn call(&mut self, call: Call) -> BoxFuture<'_, Result<Answer, StoreError>>;

    /// Lets the caller recover its concrete transaction after the invocation.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;

    /// A transaction for a callee: it reads what this one reads now (its
    /// writes included), and writes nothing of its own until joined.
    fn fork(&self) -> Box<dyn Txn>;

    /// Takes in the writes (and the reads to check) of a callee that ran
    /// over a [`Txn::fork`] of this transaction and succeeded, as if made
    /// here now; or, if they cannot follow this transaction's writes (a
    /// counter where this one put a set, a write budget exceeded), takes
    /// nothing and says why.
    fn join(&mut self, callee: Box<dyn Txn>) -> Result<(), String>;

    /// About how many bytes of host memory the transaction holds for the
    /// invocation (its buffered writes, what it read, its bookkeeping):
    /// counted against the function's memory limit with the guest's own.
    fn held(&self) -> usize {
        0
    }
}

/// The transaction of an instance that is not running a call: before its
/// call begins, and after the call's transaction went back to the caller.
pub(crate) struct Spent;

impl Txn for Spent {
    fn call(&mut self, _call: Call) -> BoxFuture<'_, Result<Answer, StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("no invocation is running".into())) })
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }

    fn fork(&self) -> Box<dyn Txn> {
        Box::new(Spent)
    }

    fn join(&mut self, _callee: Box<dyn Txn>) -> Result<(), String> {
        Ok(())
    }
}
