//! The other of the pair (see `ping`): its input is the invocation id to
//! answer; every `ping N` it receives gets a `pong N` back, until `bye`.
//! Answers with how many pings it heard.

use squall_sdk::messages;

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let ping = String::from_utf8(input)?;
    let mut heard = 0;
    loop {
        let m = messages::recv(5_000).ok_or("no message within 5 s")?;
        let m = String::from_utf8(m)?;
        if m == "bye" {
            break;
        }
        heard += 1;
        messages::send(&ping, m.replace("ping", "pong"))?;
    }
    Ok(format!("pong heard {heard} pings"))
}

squall_sdk::function!(handle);
