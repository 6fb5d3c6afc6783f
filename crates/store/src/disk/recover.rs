//! Recovery: the newest whole snapshot, then every log segment after it,
//! replayed into the shards' keyspaces as they stream by. Writes nothing
//! (a full disk cannot stop a restart) except to remove leftovers, which
//! frees space.

use super::decode;
use super::log::{Segment, numbered, read_frames, segment_path};
use super::snapshot;
use crate::Error;
use crate::keyspace::{Keyspace, Record};
use crate::window::{Retention, Window};
use squall_lattice::{NodeId, Stamp, Timestamp};
use std::path::Path;

/// A log segment kept for the window log after a snapshot covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    pub no: u64,
    pub bytes: u64,
    /// The newest change time its undo records hold.
    pub newest: Timestamp,
}

pub(crate) struct Recovered {
    pub keyspaces: Vec<Keyspace>,
    /// The newest stamp on disk: new writes order after it.
    pub latest: Stamp,
    /// The segment to append to, and the number its next frame carries.
    pub segment: Segment,
    pub next_entry: u64,
    /// The snapshot's size, if there is one.
    pub snapshot_bytes: u64,
    /// Each shard's window log, from the undo records of every segment kept.
    pub windows: Vec<Window>,
    /// Segments before `covered` are kept only for the window log.
    pub kept: Vec<Kept>,
    pub covered: u64,
    /// Changes at or before this may be missing from the windows.
    pub horizon: Timestamp,
    /// The newest change time in the segment appended to.
    pub current_newest: Timestamp,
}

/// The file that holds the newest change time of the log the window log
/// has dropped (8 bytes, little-endian).
pub(crate) const HORIZON_FILE: &str = "window-horizon";

pub(crate) fn read_horizon(dir: &Path) -> Option<Timestamp> {
    let bytes = std::fs::read(dir.join(HORIZON_FILE)).ok()?;
    Some(Timestamp(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)))
}

/// Writes the horizon durably (write, fsync, rename).
pub(crate) fn write_horizon(dir: &Path, t: Timestamp) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{HORIZON_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&t.0.to_le_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(HORIZON_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn shard_of(record: &Record, shards: usize) -> usize {
    let key = match record {
        Record::Header { key, .. }
        | Record::Element { key, .. }
        | Record::Removed { key, .. }
        | Record::Undo { key, .. } => key,
    };
    crate::shard_index(key, shards)
}

pub(crate) fn recover(
    dir: &Path,
    shards: usize,
    node: NodeId,
    now_ms: u64,
    retention: Retention,
) -> Result<Recovered, Error> {
    let io = |e: std::io::Error| Error::DataDir(dir.display().to_string(), e.to_string());
    if dir.join("keyspaces").is_dir() || dir.join("journals").is_dir() {
        return Err(Error::DataDir(
            dir.display().to_string(),
            "it holds data in the format of an older Squall (fjall); start with an empty data dir".into(),
        ));
    }
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = numbered(&name, "log-") {
            segments.push(n);
        } else if let Some(n) = numbered(&name, "snapshot-") {
            snapshots.push(n);
        } else if name.starts_with("snapshot-") && name.ends_with(".tmp") {
            // A snapshot that was never finished.
            let _ = std::fs::remove_file(e.path());
        }
    }
    segments.sort_unstable();
    snapshots.sort_unstable();

    let mut keyspaces: Vec<Keyspace> = (0..shards).map(|_| Keyspace::new(node)).collect();
    let mut windows: Vec<Window> = (0..shards).map(|_| Window::new(retention, shards)).collect();
    let mut latest = Stamp::ZERO;
    let mut apply = |keyspaces: &mut Vec<Keyspace>, r: Record| {
        let s = shard_of(&r, shards);
        latest = latest.max(keyspaces[s].restore(r));
    };
    // Undo records go to the windows, in log order (for one key, the
    // order its changes were made).
    let window_on = retention.is_on();
    let keep = |windows: &mut Vec<Window>, r: &Record, newest: &mut Timestamp| {
        if let Record::Undo { time, record, .. } = r {
            *newest = (*newest).max(*time);
            if window_on {
                // Trimmed as it goes: a long log must not fill memory first.
                let w = &mut windows[shard_of(r, shards)];
                w.push(*time, record, || true);
                w.trim(now_ms);
            }
        }
    };
    // The newest whole snapshot; an older one is only left if the newest
    // was never finished, or went bad.
    let mut from = segments.first().copied().unwrap_or(1);
    let mut snapshot_bytes = 0;
    let mut loaded = snapshots.is_empty();
    for &s in snapshots.iter().rev() {
        let mut fresh: Vec<Keyspace> = (0..shards).map(|_| Keyspace::new(node)).collect();
        match snapshot::read(dir, s, |r| apply(&mut fresh, r)) {
            Ok(()) => {
                keyspaces = fresh;
                from = s;
                snapshot_bytes = std::fs::metadata(super::log::snapshot_path(dir, s)).map_or(0, |m| m.len());
                loaded = true;
                break;
            }
            Err(e) => tracing::error!(error = %e, "skipping a snapshot that does not read back"),
        }
    }
    if !loaded {
        return Err(Error::Corrupt(format!(
            "no snapshot in {} reads back, and the log before them is gone; move the data dir aside and restore from a backup",
            dir.display()
        )));
    }
    let replay: Vec<u64> = segments.iter().copied().filter(|n| *n >= from).collect();
    // Segments the snapshot covers, kept for the window log: only their undo
    // records are read.
    let mut kept = Vec::new();
    let mut next: Option<u64> = None;
    for &n in segments.iter().filter(|n| **n < from) {
        if !window_on {
            break;
        }
        let path = segment_path(dir, n);
        let mut newest = Timestamp::ZERO;
        let end = read_frames(&path, next, |_, payload| {
            decode(&payload, |r| keep(&mut windows, &r, &mut newest))?;
            Ok(())
        })?;
        next = Some(end.next);
        kept.push(Kept { no: n, bytes: end.valid, newest });
    }
    let mut next: Option<u64> = None;
    let mut current_newest = Timestamp::ZERO;
    // A snapshot replays from its own segment (made before it was asked
    // for): if that is gone, so is what was written between it and the next.
    if snapshot_bytes > 0 && replay.first().is_some_and(|first| *first != from) {
        return Err(Error::Corrupt(format!(
            "the snapshot in {} replays from log segment {from}, which is missing; move the data dir aside and restore from a backup",
            dir.display()
        )));
    }
    let mut last_end = 0;
    for (i, &n) in replay.iter().enumerate() {
        let path = segment_path(dir, n);
        let mut newest = Timestamp::ZERO;
        let end = read_frames(&path, next, |_, payload| {
            decode(&payload, |r| {
                keep(&mut windows, &r, &mut newest);
                apply(&mut keyspaces, r)
            })?;
            Ok(())
        })?;
        if i + 1 < replay.len() {
            kept.push(Kept { no: n, bytes: end.valid, newest });
        } else {
            current_newest = newest;
        }
        let is_last = i + 1 == replay.len();
        if !end.clean && !is_last {
            return Err(Error::Corrupt(format!(
                "{} is damaged at byte {} and later segments follow it; move the data dir aside and restore from a backup",
                path.display(),
                end.valid
            )));
        }
        if !end.clean {
            tracing::warn!(segment = %path.display(), at = end.valid, "the log ends in a write cut short by a crash; it was never acknowledged");
        }
        next = Some(end.next);
        last_end = end.valid;
    }
    // Segments and snapshots the newest snapshot covers (left by a crash
    // between writing it and cleaning up).
    super::writer::remove_before(dir, from, !window_on);
    for ks in &mut keyspaces {
        ks.settle(now_ms, window_on);
    }
    // What the window cannot reach: what an earlier run dropped; with no
    // record of that, everything before this start (an older version, or
    // the window log off, wrote no undo records) unless there is no data.
    let fresh = segments.is_empty() && snapshots.is_empty();
    let horizon = match read_horizon(dir) {
        // MAX: the last run had the window log off.
        Some(h) if h != Timestamp::MAX => h,
        _ if fresh => Timestamp::ZERO,
        _ => latest.time,
    };
    let horizon = if window_on { horizon } else { Timestamp::MAX };
    if read_horizon(dir) != Some(horizon)
        && let Err(e) = write_horizon(dir, horizon)
    {
        tracing::warn!(error = %e, "cannot write the window log's horizon; the next start reaches no further back than itself");
    }
    for w in &mut windows {
        w.raise_horizon(horizon);
        w.trim(now_ms);
    }
    let segment = match replay.last() {
        Some(&n) => Segment::open(dir, n, last_end).map_err(io)?,
        None => Segment::create(dir, from)
            .map_err(|e| Error::DataDir(dir.display().to_string(), format!("cannot create the log: {e}")))?,
    };
    Ok(Recovered {
        keyspaces,
        latest,
        segment,
        next_entry: next.unwrap_or(1),
        snapshot_bytes,
        windows,
        kept,
        covered: from,
        horizon,
        current_newest,
    })
}
