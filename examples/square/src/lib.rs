//! Squares: decimal text in, decimal text out (`4` → `16`).

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let n: i64 = std::str::from_utf8(&input)?.trim().parse()?;
    Ok(n.checked_mul(n).ok_or("overflow")?.to_string())
}

squall_sdk::function!(handle);
