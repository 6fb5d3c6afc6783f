//! Fuzzes the RESP2 request parser: it must never panic, every `Some` must
//! consume bytes, `None`/`Err` must leave the buffer untouched, and the
//! outcome must not depend on how the input was split into reads.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use squall_gateway::resp::{Limits, ParseError, parse_command};

/// Commands parsed, then how parsing stopped: `Ok(())` for "needs more".
type Outcome = (Vec<Vec<Bytes>>, Result<(), ParseError>);

/// Parses everything available in `buf`, checking the progress contract.
fn drain(buf: &mut BytesMut, limits: &Limits, out: &mut Vec<Vec<Bytes>>) -> Result<(), ParseError> {
    loop {
        let before = buf.clone();
        match parse_command(buf, limits) {
            Ok(Some(cmd)) => {
                assert!(buf.len() < before.len(), "Some without progress");
                assert!(cmd.len() <= limits.max_args);
                out.push(cmd);
            }
            Ok(None) => {
                assert_eq!(*buf, before, "None changed the buffer");
                return Ok(());
            }
            Err(e) => {
                assert_eq!(*buf, before, "Err changed the buffer");
                return Err(e);
            }
        }
    }
}

fn whole(data: &[u8], limits: &Limits) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    let end = drain(&mut buf, limits, &mut out);
    (out, end)
}

/// Feeds `data` `chunk` bytes at a time, parsing after each read.
fn chunked(data: &[u8], chunk: usize, limits: &Limits) -> Outcome {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        if let Err(e) = drain(&mut buf, limits, &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    // The real limits, and tiny ones so the fuzzer can reach every limit.
    let _ = whole(data, &Limits::default());
    let small = Limits {
        max_args: 8,
        max_bulk_len: 64,
        max_inline_len: 64,
    };
    let expected = whole(data, &small);
    // The first byte picks a read size, so the fuzzer explores splits too.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    assert_eq!(
        chunked(data, chunk, &small),
        expected,
        "depends on read size {chunk}"
    );
});
