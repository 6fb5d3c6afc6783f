//! Misbehaves on purpose, as its input says; for the tests of limits.
//!
//! - `loop`: never returns.
//! - `oom`: allocates until the memory limit stops it.
//! - `panic KEY`: writes `KEY`, then panics (the write must not commit).
//! - `fail KEY`: writes `KEY`, then returns an error (likewise).
//! - `print N`: prints N lines to stdout, then answers `ok`.
//! - `env NAME`: answers the environment value `NAME` (or `unset`).
//! - `sleep MS KEY`: sleeps MS milliseconds, then writes `KEY` and answers `ok`.
//! - `hoard N PREFIX`: writes N values of 1 KiB (keys `PREFIX:0`...), so
//!   that the host buffers them; answers `ok`.

use squall_sdk::store;

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let input = String::from_utf8(input)?;
    let (mode, arg) = input.split_once(' ').unwrap_or((input.as_str(), ""));
    match mode {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => {
            store::put(arg, "written before the panic")?;
            store::increment(format!("{arg}:count"), 1)?;
            panic!("hostile function panics after writing {arg}");
        }
        "fail" => {
            store::put(arg, "written before the error")?;
            Err(squall_sdk::Error::msg(format!("hostile function fails after writing {arg}")))
        }
        "print" => {
            let n: u64 = arg.parse()?;
            for i in 0..n {
                println!("line {i}");
            }
            Ok("ok".into())
        }
        "env" => Ok(std::env::var(arg).unwrap_or_else(|_| "unset".into())),
        "sleep" => {
            let (ms, key) = arg.split_once(' ').unwrap_or((arg, "slept"));
            std::thread::sleep(std::time::Duration::from_millis(ms.parse()?));
            store::put(key, "after the sleep")?;
            Ok("ok".into())
        }
        "hoard" => {
            let (n, prefix) = arg.split_once(' ').unwrap_or((arg, "hoard"));
            let value = vec![b'h'; 1024];
            for i in 0..n.parse::<u64>()? {
                store::put(format!("{prefix}:{i}"), &value)?;
            }
            Ok("ok".into())
        }
        other => Err(squall_sdk::Error::msg(format!("unknown mode {other:?}"))),
    }
}

squall_sdk::function!(handle);
