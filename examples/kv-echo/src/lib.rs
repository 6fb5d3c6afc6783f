//! Writes its input under `echo:<invocation id>`, reads it back and answers with it.

use squall_sdk::{context, store};

fn handle(input: Vec<u8>) -> squall_sdk::Result<Vec<u8>> {
    let key = format!("echo:{}", context::invocation_id());
    store::put(&key, &input)?;
    let back = store::get(&key)?.ok_or_else(|| squall_sdk::Error::msg("own write not visible"))?;
    squall_sdk::log::info(format!("echoed {} bytes through {key}", back.len()));
    Ok(back)
}

squall_sdk::function!(handle);
