//! Write Squall functions in Rust.
//!
//! A function is a handler from input bytes to output bytes, exported with
//! [`function!`] and built with `cargo build --release --target wasm32-wasip2`:
//!
//! ```ignore
//! fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
//!     let name = String::from_utf8(input)?;
//!     let n = squall_sdk::store::increment(format!("greeted:{name}"), 1)?;
//!     Ok(format!("Hello, {name}! (greeting number {n})"))
//! }
//! squall_sdk::function!(handle);
//! ```
//!
//! Everything a function writes through [`store`] commits atomically when the
//! handler returns `Ok`; on `Err`, a panic, a timeout or a memory limit,
//! nothing is written. Reads see one consistent snapshot plus the function's
//! own writes. Printing to stdout/stderr and the [`log`] functions end up in
//! the invocation's log (`squall logs NAME`); the function's environment
//! values (`squall deploy --env K=V`) are in [`std::env`].

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "handler",
        pub_export_macro: true,
        default_bindings_module: "squall_sdk::bindings",
    });
}

use std::fmt;

pub use bindings::squall::function::calls::CallError;
pub use bindings::squall::function::messages::SendError;
pub use bindings::squall::function::store::StoreError;

/// A function's error: its message becomes the invocation's error message.
pub struct Error(String);

impl Error {
    pub fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

macro_rules! from_display {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error(e.to_string())
            }
        }
    )*};
}

from_display!(
    StoreError,
    String,
    &str,
    std::io::Error,
    std::string::FromUtf8Error,
    std::str::Utf8Error,
    std::num::ParseIntError,
    std::num::ParseFloatError
);

impl From<CallError> for Error {
    fn from(e: CallError) -> Error {
        Error(match e {
            CallError::NotFound(name) => format!("no function named {name:?}"),
            CallError::Failed(f) => format!("{}: {}", f.code, f.message),
            CallError::Limit(m) | CallError::Invalid(m) | CallError::Unavailable(m) => m,
        })
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        Error(match e {
            SendError::NoSuchInvocation(id) => format!("no invocation {id:?} is running"),
            SendError::MailboxFull(m) | SendError::TooLarge(m) => m,
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[doc(hidden)]
pub fn __into_wit<T: Into<Vec<u8>>>(r: Result<T>) -> std::result::Result<Vec<u8>, String> {
    r.map(Into::into).map_err(|e| e.0)
}

/// Exports `handler` (a `fn(Vec<u8>) -> squall_sdk::Result<T>` where `T`
/// is bytes or a string) as the function's `handle`.
#[macro_export]
macro_rules! function {
    ($handler:path) => {
        struct __SquallFunction;

        impl $crate::bindings::Guest for __SquallFunction {
            fn handle(input: ::std::vec::Vec<u8>) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::__into_wit($handler(input))
            }
        }

        $crate::bindings::export!(__SquallFunction with_types_in $crate::bindings);
    };
}

/// The store, through this invocation's transaction.
pub mod store {
    use super::bindings::squall::function::store as wit;
    pub use wit::StoreError;

    type R<T> = Result<T, StoreError>;

    fn members(ms: &[impl AsRef<[u8]>]) -> Vec<Vec<u8>> {
        ms.iter().map(|m| m.as_ref().to_vec()).collect()
    }

    /// A register's bytes (a counter reads as its decimal value).
    pub fn get(key: impl AsRef<[u8]>) -> R<Option<Vec<u8>>> {
        wit::get(key.as_ref())
    }

    /// A register's bytes as UTF-8 text (invalid sequences replaced).
    pub fn get_string(key: impl AsRef<[u8]>) -> R<Option<String>> {
        Ok(get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Replaces the key (of any kind) with a register.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> R<()> {
        wit::put(key.as_ref(), value.as_ref())
    }

    /// Removes the key; true if it existed.
    pub fn delete(key: impl AsRef<[u8]>) -> R<bool> {
        wit::delete(key.as_ref())
    }

    /// Adds `by` to a counter and returns it as this invocation sees it.
    pub fn increment(key: impl AsRef<[u8]>, by: i64) -> R<i64> {
        wit::increment(key.as_ref(), by)
    }

    /// A counter's value (0 if there is none).
    pub fn counter(key: impl AsRef<[u8]>) -> R<i64> {
        wit::counter(key.as_ref())
    }

    /// Adds members to a set; returns how many were new.
    pub fn set_add(key: impl AsRef<[u8]>, ms: &[impl AsRef<[u8]>]) -> R<u32> {
        wit::set_add(key.as_ref(), &members(ms))
    }

    /// Removes members from a set; returns how many were there.
    pub fn set_remove(key: impl AsRef<[u8]>, ms: &[impl AsRef<[u8]>]) -> R<u32> {
        wit::set_remove(key.as_ref(), &members(ms))
    }

    /// A set's members.
    pub fn set_members(key: impl AsRef<[u8]>) -> R<Vec<Vec<u8>>> {
        wit::set_members(key.as_ref())
    }

    pub fn map_get(key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> R<Option<Vec<u8>>> {
        wit::map_get(key.as_ref(), field.as_ref())
    }

    pub fn map_put(key: impl AsRef<[u8]>, field: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> R<()> {
        wit::map_put(key.as_ref(), field.as_ref(), value.as_ref())
    }

    /// Removes a field; true if it existed.
    pub fn map_remove(key: impl AsRef<[u8]>, field: impl AsRef<[u8]>) -> R<bool> {
        wit::map_remove(key.as_ref(), field.as_ref())
    }

    pub fn map_entries(key: impl AsRef<[u8]>) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
        wit::map_entries(key.as_ref())
    }

    /// Up to `limit` keys starting with `prefix`.
    pub fn scan(prefix: impl AsRef<[u8]>, limit: u32) -> R<Vec<Vec<u8>>> {
        wit::scan(prefix.as_ref(), limit)
    }
}

/// Lines for the invocation's log.
pub mod log {
    use super::bindings::squall::function::log::{Level, log};

    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message.as_ref())
    }
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message.as_ref())
    }
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message.as_ref())
    }
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message.as_ref())
    }
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message.as_ref())
    }
}

/// What this invocation is.
pub mod context {
    use super::bindings::squall::function::context as wit;

    pub fn invocation_id() -> String {
        wit::invocation_id()
    }
    pub fn function_name() -> String {
        wit::function_name()
    }
    pub fn function_version() -> u64 {
        wit::function_version()
    }
    /// When the invocation will be stopped, in milliseconds since the Unix epoch.
    pub fn deadline_ms() -> u64 {
        wit::deadline_ms()
    }
    /// Which delivery of the input this is: 1, or more when a map job or a
    /// trigger runs it again after a failure.
    pub fn attempt() -> u32 {
        wit::attempt()
    }
    /// The invocation id of the request's root (this one's, for a root).
    pub fn root_invocation_id() -> String {
        wit::root_invocation_id()
    }
}

/// Calls of other functions, inside this invocation's atomic unit.
///
/// A callee reads this invocation's writes as they are when it starts; its
/// own writes join this invocation's when it succeeds and is awaited (a
/// callee that fails writes nothing). Nothing is written unless the request's
/// root succeeds.
///
/// ```ignore
/// let calls: Vec<_> = (0..10).map(|i| calls::spawn("inc", i.to_string())).collect::<Result<_, _>>()?;
/// let outputs = calls::await_all(&calls);
/// ```
pub mod calls {
    use super::bindings::squall::function::calls as wit;
    pub use wit::{CallError, Failure};

    /// Calls `name` with `input` and waits for its output.
    pub fn call(name: &str, input: impl AsRef<[u8]>) -> Result<Vec<u8>, CallError> {
        wit::call(name, input.as_ref())
    }

    /// Like [`call`], with the output as UTF-8 text (invalid sequences replaced).
    pub fn call_string(name: &str, input: impl AsRef<[u8]>) -> Result<String, CallError> {
        call(name, input).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// A call running alongside this invocation.
    pub struct Pending(wit::Pending);

    impl Pending {
        /// The callee's invocation id (to send it messages).
        pub fn invocation_id(&self) -> String {
            self.0.invocation_id()
        }

        /// Waits for the callee's output; its writes join this invocation's now.
        pub fn wait(self) -> Result<Vec<u8>, CallError> {
            self.0.await_()
        }
    }

    /// Starts `name` with `input`; it runs while this invocation goes on.
    pub fn spawn(name: &str, input: impl AsRef<[u8]>) -> Result<Pending, CallError> {
        wit::spawn(name, input.as_ref()).map(Pending)
    }

    /// Waits for every call; their outputs in the same order (their writes
    /// join in that order too).
    pub fn await_all(calls: &[Pending]) -> Vec<Result<Vec<u8>, CallError>> {
        let handles: Vec<&wit::Pending> = calls.iter().map(|p| &p.0).collect();
        wit::await_all(&handles)
    }
}

/// Messages between running invocations.
pub mod messages {
    use super::bindings::squall::function::messages as wit;
    pub use wit::SendError;

    /// Puts `message` in the mailbox of the running invocation `to`.
    pub fn send(to: &str, message: impl AsRef<[u8]>) -> Result<(), SendError> {
        wit::send(to, message.as_ref())
    }

    /// The next message for this invocation, waiting up to `timeout_ms`.
    pub fn recv(timeout_ms: u32) -> Option<Vec<u8>> {
        wit::recv(timeout_ms)
    }
}
