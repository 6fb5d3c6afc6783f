//! Answers with the length of its input, in decimal.

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    Ok(input.len().to_string())
}

squall_sdk::function!(handle);
