//! The example functions from `examples/`, compiled to WebAssembly components
//! by this crate's build script and embedded here. The guests only tests use
//! come with the `test-guests` feature.

/// Greets its input: `Hello, <input>!`.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));
/// Increments the counter its input names; answers with the new value.
pub const COUNTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/counter.wasm"));
/// Writes its input, reads it back, answers with it.
#[cfg(feature = "test-guests")]
pub const KV_ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kv_echo.wasm"));
/// Misbehaves as its input says (`loop`, `oom`, `panic KEY`, `fail KEY`, `print N`).
#[cfg(feature = "test-guests")]
pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));
/// A component of another world (exports `greet`, not `handle`).
#[cfg(feature = "test-guests")]
pub const WRONG_WORLD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wrong_world.wasm"));

/// Writes every key its input names, one kind of value after another.
#[cfg(feature = "test-guests")]
pub const MULTI_WRITE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/multi_write.wasm"));

/// The examples `squall up --examples` deploys.
pub const DEFAULT_EXAMPLES: &[(&str, &[u8])] = &[("hello", HELLO), ("counter", COUNTER)];
