//! One of a pair that talk while both run: spawns `pong`, tells it its own
//! invocation id, sends it `N` pings (input: N, default 3) and waits for a
//! pong back after each. Answers with what came back.

use squall_sdk::{calls, context, messages};

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let n: u32 = match std::str::from_utf8(&input)?.trim() {
        "" => 3,
        s => s.parse()?,
    };
    let pong = calls::spawn("pong", context::invocation_id())?;
    let to = pong.invocation_id();
    let mut heard = Vec::new();
    for i in 1..=n {
        messages::send(&to, format!("ping {i}"))?;
        let reply = messages::recv(5_000).ok_or("pong did not answer within 5 s")?;
        heard.push(String::from_utf8(reply)?);
    }
    messages::send(&to, "bye")?;
    let said = String::from_utf8(pong.wait()?)?;
    Ok(format!("{}; {said}", heard.join(", ")))
}

squall_sdk::function!(handle);
