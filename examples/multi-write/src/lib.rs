//! Writes every key its input names (space-separated), cycling through the
//! kinds of value: a register, a counter, a set member, a hash field. One
//! invocation, one atomic commit, however many shards the keys live on.

use squall_sdk::store;

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let input = String::from_utf8(input)?;
    let keys: Vec<&str> = input.split_whitespace().collect();
    for (i, key) in keys.iter().enumerate() {
        match i % 4 {
            0 => store::put(key, "written")?,
            1 => {
                store::increment(key, 1)?;
            }
            2 => {
                store::set_add(key, &["member"])?;
            }
            _ => store::map_put(key, "field", "value")?,
        }
    }
    Ok(format!("wrote {}", keys.len()))
}

squall_sdk::function!(handle);
