//! Increments the counter its input names and answers with the new value.

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    if input.is_empty() {
        return Err(squall_sdk::Error::msg("input: the name of a counter"));
    }
    let n = squall_sdk::store::increment(&input, 1)?;
    Ok(n.to_string())
}

squall_sdk::function!(handle);
