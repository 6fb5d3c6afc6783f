//! Greets its input.

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let name = String::from_utf8_lossy(&input);
    let name = if name.trim().is_empty() { "world".into() } else { name };
    Ok(format!("Hello, {name}!"))
}

squall_sdk::function!(handle);
