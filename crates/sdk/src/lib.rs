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
}
