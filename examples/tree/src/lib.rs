//! A test guest that runs a little script of store operations, calls and
//! messages, to exercise what a tree of calls does. Commands are separated
//! by `;` and run in order; the answer is what they produced, joined by
//! spaces. In the argument of `call` and `spawn`, `,` stands for `;` (one
//! level of nesting).
//!
//! `put K V`, `incr K N`, `get K` (appends the value or `nil`), `sadd K M`,
//! `hset K F V`; `call F ARG` (appends the output, or `E:<kind>:<message>`
//! and goes on), `spawn F ARG`, `awaitall` (appends each output or error),
//! `recurse` (calls `tree` with this very script, failing if that fails);
//! `send ID TEXT`, `tell N SIZE` (N messages of SIZE bytes to the last
//! spawned call; appends `told N` or the first error), `recv MS` (appends
//! the message or `none`); `fail MSG` (returns an error), `trap` (panics),
//! `spin MS` (burns CPU for MS milliseconds); `say TEXT` (appends TEXT),
//! `failfirst` (fails on the first delivery of its input: see
//! `context::attempt`). A script in double quotes (a JSON string, as a map
//! job passes it) is taken without them.

use squall_sdk::calls::{self, CallError, Pending};
use squall_sdk::{context, messages, store};

fn describe(e: &CallError) -> String {
    match e {
        CallError::NotFound(m) => format!("E:not-found:{m}"),
        CallError::Failed(f) => format!("E:failed:{}:{}", f.code, f.message),
        CallError::Limit(m) => format!("E:limit:{m}"),
        CallError::Invalid(m) => format!("E:invalid:{m}"),
        CallError::Unavailable(m) => format!("E:unavailable:{m}"),
    }
}

fn text(v: Vec<u8>) -> String {
    String::from_utf8_lossy(&v).into_owned()
}

fn handle(input: Vec<u8>) -> squall_sdk::Result<String> {
    let script = String::from_utf8(input)?;
    let script = match script.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.to_string(),
        None => script,
    };
    let mut out: Vec<String> = Vec::new();
    let mut spawned: Vec<Pending> = Vec::new();
    for cmd in script.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let (op, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let args: Vec<&str> = rest.split_whitespace().collect();
        let arg = |i: usize| args.get(i).copied().ok_or_else(|| format!("{op}: missing argument {}", i + 1));
        match op {
            "put" => store::put(arg(0)?, arg(1)?)?,
            "incr" => {
                store::increment(arg(0)?, arg(1)?.parse()?)?;
            }
            "get" => out.push(store::get(arg(0)?)?.map_or("nil".into(), text)),
            "sadd" => {
                store::set_add(arg(0)?, &[arg(1)?])?;
            }
            "hset" => store::map_put(arg(0)?, arg(1)?, arg(2)?)?,
            "call" | "spawn" => {
                let (f, nested) = rest.split_once(' ').unwrap_or((rest, ""));
                let nested = nested.replace(',', ";");
                if op == "call" {
                    out.push(calls::call(f, nested).map_or_else(|e| describe(&e), text));
                } else {
                    match calls::spawn(f, nested) {
                        Ok(p) => spawned.push(p),
                        Err(e) => out.push(describe(&e)),
                    }
                }
            }
            "awaitall" => {
                for r in calls::await_all(&spawned) {
                    out.push(r.map_or_else(|e| describe(&e), text));
                }
                spawned.clear();
            }
            "recurse" => out.push(text(calls::call("tree", &script)?)),
            "send" => {
                let (to, message) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push(
                    messages::send(to, message)
                        .map_or_else(|e| format!("E:{}", squall_sdk::Error::from(e)), |()| "sent".into()),
                );
            }
            "tell" => {
                let to = spawned.last().ok_or("tell: nothing spawned")?.invocation_id();
                let (n, size): (usize, usize) = (arg(0)?.parse()?, arg(1)?.parse()?);
                let message = vec![b'x'; size];
                let failed = (0..n).find_map(|_| messages::send(&to, &message).err());
                out.push(failed.map_or_else(|| format!("told {n}"), |e| format!("E:{}", squall_sdk::Error::from(e))));
            }
            "recv" => out.push(messages::recv(arg(0)?.parse()?).map_or("none".into(), text)),
            "id" => out.push(context::invocation_id()),
            "root" => out.push(context::root_invocation_id()),
            "fail" => return Err(squall_sdk::Error::msg(rest)),
            "failfirst" if context::attempt() == 1 => return Err(squall_sdk::Error::msg("first attempt fails")),
            "failfirst" => {}
            "say" => out.push(rest.to_string()),
            "trap" => panic!("trap requested"),
            "spin" => {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(arg(0)?.parse()?);
                while std::time::Instant::now() < until {}
            }
            other => return Err(squall_sdk::Error::msg(format!("unknown command {other:?}"))),
        }
    }
    Ok(out.join(" "))
}

squall_sdk::function!(handle);
