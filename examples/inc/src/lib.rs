//! Adds one: decimal text in, decimal text out (`3` → `4`).

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let n: i64 = std::str::from_utf8(&input)?.trim().parse()?;
    Ok(n.checked_add(1).ok_or("overflow")?.to_string())
}

squall_sdk::function!(handle);
