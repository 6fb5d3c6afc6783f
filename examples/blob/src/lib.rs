//! Makes a blob: input `N` (decimal), output N bytes. With `size` after it
//! in a DAG, it measures passing data from one function to the next.

fn handle(input: Vec<u8>) -> squall_sdk::Result<Vec<u8>> {
    let n: usize = std::str::from_utf8(&input)?.trim().parse()?;
    if n > 16 << 20 {
        return Err(squall_sdk::Error::msg("at most 16 MiB"));
    }
    Ok(vec![b'x'; n])
}

squall_sdk::function!(handle);
