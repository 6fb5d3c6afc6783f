//! Spawns `N` calls of `inc` (on 0, 1, ..., N-1), runs them concurrently and
//! answers with the sum of their outputs (N(N+1)/2). Input: `N`, or `N B`
//! to have at most `B` calls running at a time.

use squall_sdk::calls;

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let input = String::from_utf8(input)?;
    let mut words = input.split_whitespace();
    let n: u64 = words.next().ok_or("input: N [B], how many calls (and how many at a time)")?.parse()?;
    let batch: u64 = match words.next() {
        Some(b) => b.parse()?,
        None => n.max(1),
    };
    let mut sum: i64 = 0;
    let mut next = 0;
    while next < n {
        let end = (next + batch.max(1)).min(n);
        let running = (next..end).map(|i| calls::spawn("inc", i.to_string())).collect::<Result<Vec<_>, _>>()?;
        for out in calls::await_all(&running) {
            sum += String::from_utf8(out?)?.trim().parse::<i64>()?;
        }
        next = end;
    }
    Ok(sum.to_string())
}

squall_sdk::function!(handle);
