//! Snapshots: written by their own thread, which asks each shard for the
//! records of a few hundred keys at a time, and of a key with many members
//! a slice of them at a time, so no shard stops serving.
//!
//! A snapshot file is frames (see [`super::log`]): a head frame naming the
//! format, one frame per dump step, and an end frame. It is written to a
//! `.tmp` file, fsynced and renamed, so a `snapshot-N.squall` is whole.

use super::log::{FRAME_HEAD, frame_head, is_no_space, read_frames, snapshot_path, sync_dir};
use super::{WriterMsg, decode};
use crate::Envelope;
use crate::Error;
use crate::keyspace::{DumpCursor, Record};
use crate::protocol::{Message, Request, Response};
use bytes::Bytes;
use squall_lattice::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use tokio::sync::{mpsc, oneshot};

const HEAD: &[u8] = b"squall snapshot 1";
const END: &[u8] = b"end";
/// Keys a shard dumps per step.
const STEP_KEYS: usize = 256;

/// The snapshot thread: takes snapshots when the writer asks, and tells it
/// how each went. Ends when the writer goes.
pub(crate) fn run(
    dir: PathBuf,
    asks: Receiver<u64>,
    shards: Vec<mpsc::UnboundedSender<Envelope>>,
    writer: SyncSender<WriterMsg>,
) {
    for from in asks {
        let result = write(&dir, from, &shards).map_err(|e| e.to_string());
        if writer.send(WriterMsg::Snapshot(from, result)).is_err() {
            break;
        }
    }
}

fn write(dir: &Path, from: u64, shards: &[mpsc::UnboundedSender<Envelope>]) -> Result<u64, Error> {
    let tmp = dir.join(format!("snapshot-{from:020}.tmp"));
    let result = write_to(&tmp, shards);
    match result {
        Ok(bytes) => {
            let path = snapshot_path(dir, from);
            std::fs::rename(&tmp, &path).map_err(|e| Error::Io(format!("cannot rename {}: {e}", tmp.display())))?;
            sync_dir(dir).map_err(|e| Error::Io(format!("cannot sync {}: {e}", dir.display())))?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_to(path: &Path, shards: &[mpsc::UnboundedSender<Envelope>]) -> Result<u64, Error> {
    let io = |e: std::io::Error| {
        if is_no_space(&e) {
            Error::Io(format!("no space for a snapshot at {}: {e}", path.display()))
        } else {
            Error::Io(format!("cannot write {}: {e}", path.display()))
        }
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut put = |out: &mut std::io::BufWriter<std::fs::File>, payload: &[u8]| -> Result<(), Error> {
        out.write_all(&frame_head(n, [payload])).map_err(io)?;
        out.write_all(payload).map_err(io)?;
        n += 1;
        bytes += (FRAME_HEAD + payload.len()) as u64;
        Ok(())
    };
    put(&mut out, HEAD)?;
    for shard in shards {
        let mut cursor = DumpCursor::default();
        loop {
            let (tx, rx) = oneshot::channel();
            let msg = Message { after: Timestamp::ZERO, request: Request::Dump { cursor, budget: STEP_KEYS } };
            shard.send((msg, tx)).map_err(|_| Error::Closed)?;
            let Ok(answer) = rx.blocking_recv() else { return Err(Error::Closed) };
            let Response::Dump { records, next } = answer.response else {
                return Err(Error::Corrupt("a shard answered a dump with something else".into()));
            };
            if !records.is_empty() {
                put(&mut out, &records)?;
            }
            match next {
                Some(c) => cursor = c,
                None => break,
            }
        }
    }
    put(&mut out, END)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(bytes)
}

/// Reads the snapshot that replays from segment `from`, calling `f` with
/// each record. Fails unless the snapshot is whole.
pub(crate) fn read(dir: &Path, from: u64, mut f: impl FnMut(Record)) -> Result<(), Error> {
    let path = snapshot_path(dir, from);
    let mut ended = false;
    let mut head = false;
    let bad = || Error::Corrupt(format!("{} is not a whole snapshot", path.display()));
    read_frames(&path, Some(0), |n, payload: Bytes| {
        if ended {
            return Err(bad());
        }
        match n {
            0 if payload.as_ref() == HEAD => head = true,
            0 => return Err(bad()),
            _ if payload.as_ref() == END => ended = true,
            _ => {
                decode(&payload, &mut f)?;
            }
        }
        Ok(())
    })?;
    if head && ended { Ok(()) } else { Err(bad()) }
}
