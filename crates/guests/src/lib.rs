//! The example functions from `examples/`, compiled to WebAssembly components
//! by this crate's build script and embedded here. The guests only tests use
//! come with the `test-guests` feature.

/// Greets its input: `Hello, <input>!`.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));
/// Increments the counter its input names; answers with the new value.
pub const COUNTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/counter.wasm"));
/// Adds one to a decimal number.
pub const INC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inc.wasm"));
/// Squares a decimal number.
pub const SQUARE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/square.wasm"));
/// Spawns N calls of `inc` and sums them.
pub const FANOUT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fanout.wasm"));
/// Spawns `pong` and trades messages with it while both run.
pub const PING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ping.wasm"));
/// Answers `ping`'s messages.
pub const PONG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pong.wasm"));
/// Makes N bytes (for benchmarks of passing data between functions).
pub const BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/blob.wasm"));
/// Answers with its input's length.
pub const SIZE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/size.wasm"));
/// Counts the words of a chunk of text into the counters `wc:<word>`; answers how many words it had.
pub const WORDCOUNT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wordcount.wasm"));
/// Retwis (the Twitter clone of the Cloudburst paper): `post`, `follow`, `timeline`, `profile`.
pub const RETWIS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/retwis.wasm"));
/// Runs a script of store operations, calls and messages (for tests of call trees).
#[cfg(feature = "test-guests")]
pub const TREE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tree.wasm"));
/// Writes its input, reads it back, answers with it.
#[cfg(feature = "test-guests")]
pub const KV_ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kv_echo.wasm"));
/// Misbehaves as its input says (`loop`, `oom`, `panic KEY`, `fail KEY`, `print N`).
#[cfg(feature = "test-guests")]
pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hostile.wasm"));
/// A component of another world (exports `greet`, not `handle`).
#[cfg(feature = "test-guests")]
pub const WRONG_WORLD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wrong_world.wasm"));
/// A function whose `init` export is `func() -> u32`, not `result<_, string>`.
#[cfg(feature = "test-guests")]
pub const BAD_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bad_init.wasm"));

/// Writes every key its input names, one kind of value after another.
#[cfg(feature = "test-guests")]
pub const MULTI_WRITE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/multi_write.wasm"));

/// The examples `squall up --examples` deploys.
pub const DEFAULT_EXAMPLES: &[(&str, &[u8])] = &[
    ("hello", HELLO),
    ("counter", COUNTER),
    ("inc", INC),
    ("square", SQUARE),
    ("fanout", FANOUT),
    ("ping", PING),
    ("pong", PONG),
    ("wordcount", WORDCOUNT),
    ("retwis", RETWIS),
];
