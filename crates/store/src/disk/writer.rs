//! The writer thread: group commit into the log, durability reports, the
//! full-disk state, and when to take a snapshot.

use super::log::{FRAME_HEAD, Segment, frame_into, is_no_space, segment_path};
use super::recover::{Kept, write_horizon};
use super::{Chunk, DiskState, WriterMsg};
use crate::protocol::{Answer, Response};
use crate::window::Retention;
use squall_lattice::{Clock, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// In async mode, how often what the OS buffers is fsynced.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// In async mode, how long the writer lets records gather between writes:
/// shards hand over records without waking it, and one write() carries
/// many shards' wake-ups (nobody waits for it).
const ASYNC_GATHER: Duration = Duration::from_millis(2);
/// While the disk is full (or a write is stuck), how often to try again.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Log space kept reserved ahead of the write position. When reserving more
/// fails, new writes are refused; what is under way still fits in this.
pub(crate) const RESERVE: u64 = 4 << 20;

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub log: Segment,
    pub next_entry: u64,
    pub sync: bool,
    /// Per shard: the highest write sequence number that is durable.
    pub durable: Vec<watch::Sender<u64>>,
    pub disk: Arc<DiskState>,
    /// Log bytes (since the last snapshot) that start a snapshot.
    pub snapshot_at: u64,
    /// Bytes of undo records in the segment being appended to: they do
    /// not count towards a snapshot (the window keeps their segments for
    /// as long as it reaches them anyway, and a snapshot would not shorten
    /// a recovery that reads them back), so the window log does not make
    /// snapshots more frequent.
    pub undo_in_log: u64,
    /// The log never waits for a snapshot while smaller than this.
    pub snapshot_min: u64,
    /// Where to ask for a snapshot (the snapshot thread).
    pub snapshots: Option<SyncSender<u64>>,
    /// Segments kept for the window log (`None`: it is off).
    pub window: Option<KeptLog>,
}

/// The log segments a snapshot covers that the window log still reaches:
/// kept until they are older than the retention, or over its bytes, oldest
/// first; the horizon file moves past each before it goes.
pub(crate) struct KeptLog {
    pub retention: Retention,
    pub clock: Clock,
    /// Closed segments, oldest first.
    pub kept: VecDeque<Kept>,
    /// Segments before this one are covered by a snapshot.
    pub covered: u64,
    /// The newest change time in the segment being appended to.
    pub newest: Timestamp,
    pub horizon: Timestamp,
}

/// How often segments kept for the window log are looked at.
const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

/// Frames that could not be written yet (the disk is full), with the
/// chunks they report durable once they are.
struct Stuck {
    frames: Vec<u8>,
    next_entry: u64,
    chunks: Vec<(usize, u64)>,
}

impl Writer {
    /// Runs until told to close, then writes what is left, syncs and returns.
    pub fn run(mut self, rx: Receiver<WriterMsg>) {
        let shards = self.durable.len();
        let mut queues: Vec<VecDeque<(u64, Chunk)>> = (0..shards).map(|_| VecDeque::new()).collect();
        // Flush requests with the arrival number they came at.
        let mut flushes: Vec<(u64, oneshot::Sender<Answer>, usize)> = Vec::new();
        let mut arrivals = 0u64;
        let mut last_sync = Instant::now();
        let mut last_retry = Instant::now();
        let mut unsynced = false;
        let mut stuck: Option<Stuck> = None;
        let mut snapshotting = false;
        let mut open = true;
        let mut last_prune = Instant::now();
        while open {
            if last_prune.elapsed() >= PRUNE_INTERVAL {
                last_prune = Instant::now();
                self.prune();
            }
            let pruning = self.window.as_ref().is_some_and(|k| !k.kept.is_empty());
            let wait = if stuck.is_some() || !self.disk.is_ok() {
                RETRY_INTERVAL
            } else if unsynced {
                SYNC_INTERVAL.saturating_sub(last_sync.elapsed()).max(Duration::from_millis(1))
            } else if pruning {
                PRUNE_INTERVAL
            } else {
                Duration::from_secs(3600)
            };
            let mut take = |m: WriterMsg, open: &mut bool, snapshotting: &mut bool, w: &mut Writer| {
                arrivals += 1;
                match m {
                    WriterMsg::Chunk(c) => queues[c.shard].push_back((arrivals, c)),
                    WriterMsg::Flush(tx, shard) => flushes.push((arrivals, tx, shard)),
                    WriterMsg::Snapshot(from, result) => {
                        *snapshotting = false;
                        w.snapshot_done(from, result);
                    }
                    WriterMsg::Close => *open = false,
                }
            };
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    take(m, &mut open, &mut snapshotting, &mut self);
                    while let Ok(m) = rx.try_recv() {
                        take(m, &mut open, &mut snapshotting, &mut self);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // What can be written: the longest prefix of each shard's queue
            // in which every commit across shards has all its parts.
            let cut = whole_commits(&queues);
            let mut ready: Vec<Chunk> = Vec::new();
            for (q, n) in queues.iter_mut().zip(&cut) {
                ready.extend(q.drain(..*n).map(|(_, c)| c));
            }
            if !open {
                // The shards are gone. A commit still missing parts was never
                // acknowledged (a coordinator answers only once every part is
                // durable), and what its shards wrote after their part was
                // not either (sync mode answers in order): all dropped.
                let left: usize = queues.iter().map(|q| q.len()).sum();
                if left > 0 {
                    tracing::warn!(chunks = left, "dropping what waits behind an incomplete commit at shutdown");
                }
                queues.iter_mut().for_each(|q| q.clear());
            }
            if stuck.is_some() && (last_retry.elapsed() >= RETRY_INTERVAL || !open) {
                last_retry = Instant::now();
                stuck = self.write_stuck(stuck.take());
            }
            if !ready.is_empty() {
                let s = self.encode(&ready, stuck.take());
                stuck = self.write_stuck(Some(s));
                unsynced = !self.sync;
            } else if !self.disk.is_ok() && stuck.is_none() && last_retry.elapsed() >= RETRY_INTERVAL {
                last_retry = Instant::now();
                self.try_recover_space();
            }
            // A flush is answered once everything that arrived before it is
            // written (nothing older is queued, assembling or stuck), and fsynced.
            let oldest_waiting = queues.iter().filter_map(|q| q.front().map(|(a, _)| *a)).min().unwrap_or(u64::MAX);
            let answerable = stuck.is_none() && flushes.iter().any(|(a, _, _)| *a < oldest_waiting);
            if (unsynced && (last_sync.elapsed() >= SYNC_INTERVAL || answerable || !open)) || (!open && stuck.is_none())
            {
                if let Err(e) = self.log.sync() {
                    self.disk.set_failed(format!("fsync of the log failed: {e}"));
                }
                unsynced = false;
                last_sync = Instant::now();
            }
            if answerable {
                for (_, tx, shard) in flushes.extract_if(.., |(a, _, _)| *a < oldest_waiting) {
                    let answer = Answer { response: Response::Flushed, stamp: Timestamp::ZERO, seq: 0, shard };
                    let _ = tx.send(answer);
                }
            }
            // The data outgrew the snapshot, or the segment (undo records
            // and all) grew to four times it: a segment stays bounded even
            // when undo records are most of it.
            let due = self.data_bytes() >= self.snapshot_at || self.log.end >= self.snapshot_at.saturating_mul(4);
            if !snapshotting && open && stuck.is_none() && due && self.disk.is_ok() {
                snapshotting = self.start_snapshot();
            }
            if !self.sync && open && !ready.is_empty() {
                std::thread::sleep(ASYNC_GATHER);
            }
        }
        // The snapshot thread sees its channel close and gives up what it had begun.
        drop(self.snapshots.take());
    }

    /// Frames the chunks (after whatever is stuck) as one log entry.
    fn encode(&mut self, chunks: &[Chunk], stuck: Option<Stuck>) -> Stuck {
        let mut s = stuck.unwrap_or(Stuck { frames: Vec::new(), next_entry: self.next_entry, chunks: Vec::new() });
        let size: usize = chunks.iter().map(|c| c.records.bytes().len()).sum();
        self.undo_in_log += chunks.iter().map(|c| c.undo).sum::<u64>();
        if let Some(k) = &mut self.window {
            k.newest = chunks.iter().map(|c| c.newest).fold(k.newest, Timestamp::max);
        }
        if size > 0 {
            s.frames.reserve(FRAME_HEAD + size);
            frame_into(&mut s.frames, s.next_entry, chunks.iter().map(|c| c.records.bytes()));
            s.next_entry += 1;
        }
        s.chunks.extend(chunks.iter().map(|c| (c.shard, c.upto)));
        s
    }

    /// Writes stuck frames if there is room; gives them back if not yet.
    fn write_stuck(&mut self, stuck: Option<Stuck>) -> Option<Stuck> {
        let s = stuck?;
        if self.disk.refusal() == Some(crate::op::OpError::DiskFailed) {
            // Nothing is acknowledged after a disk failure.
            return Some(s);
        }
        if !s.frames.is_empty() {
            let len = s.frames.len() as u64;
            if let Err(e) = self.log.reserve(len + RESERVE) {
                if !is_no_space(&e) {
                    self.disk.set_failed(format!("cannot reserve log space: {e}"));
                    return Some(s);
                }
                self.disk.set_full(format!("cannot reserve log space: {e}"));
                if self.log.headroom() < len {
                    // Not even what is under way fits: it waits for space.
                    let _ = self.log.reserve(len);
                    if self.log.headroom() < len {
                        return Some(s);
                    }
                }
            } else {
                // Writes come back only with room for the whole reserve
                // twice over, so the state does not flap at the edge.
                self.try_recover_space();
            }
            if let Err(e) = self.log.append(&s.frames) {
                if is_no_space(&e) {
                    self.disk.set_full(format!("cannot write the log: {e}"));
                } else {
                    self.disk.set_failed(format!("cannot write the log: {e}"));
                }
                return Some(s);
            }
            if self.sync
                && let Err(e) = self.log.sync()
            {
                // After a failed fsync the kernel may have dropped the dirty
                // pages: nothing written since the last good one can be
                // promised, so these writes are never acknowledged.
                self.disk.set_failed(format!("fsync of the log failed: {e}"));
                return Some(s);
            }
        }
        self.next_entry = s.next_entry;
        for (shard, upto) in s.chunks {
            self.durable[shard].send_if_modified(|d| {
                let moved = upto > *d;
                *d = (*d).max(upto);
                moved
            });
        }
        None
    }

    /// While writes are refused for a full disk: takes them again once
    /// space for the reserve is back.
    fn try_recover_space(&mut self) {
        if self.disk.refusal() != Some(crate::op::OpError::DiskFull) {
            return;
        }
        if self.log.reserve(2 * RESERVE).is_ok() {
            self.disk.set_ok();
        }
    }

    /// The bytes of the segment being appended to that are not undo records.
    fn data_bytes(&self) -> u64 {
        self.log.end.saturating_sub(self.undo_in_log)
    }

    /// Starts a new segment and asks the snapshot thread for a snapshot
    /// that replays from it. False if it could not be started.
    fn start_snapshot(&mut self) -> bool {
        let Some(tx) = &self.snapshots else { return false };
        let next = self.log.no + 1;
        if self.log.sync().is_err() {
            return false;
        }
        let mut seg = match Segment::create(&self.dir, next) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a new log segment for a snapshot; trying again later");
                self.snapshot_at = self.data_bytes() + self.snapshot_min;
                return false;
            }
        };
        if let Err(e) = seg.reserve(RESERVE) {
            tracing::warn!(error = %e, "cannot reserve space in a new log segment; trying a snapshot later");
            drop(seg);
            let _ = std::fs::remove_file(segment_path(&self.dir, next));
            self.snapshot_at = self.data_bytes() + self.snapshot_min;
            return false;
        }
        let old = std::mem::replace(&mut self.log, seg);
        self.undo_in_log = 0;
        if let Some(k) = &mut self.window {
            k.kept.push_back(Kept { no: old.no, bytes: old.end, newest: k.newest });
            k.newest = Timestamp::ZERO;
        }
        // Snapshots once the log outgrows the data (as Redis rewrites its AOF).
        self.snapshot_at = self.snapshot_min;
        tx.try_send(next).is_ok()
    }

    fn snapshot_done(&mut self, from: u64, result: Result<u64, String>) {
        match result {
            Ok(bytes) => {
                self.snapshot_at = bytes.max(self.snapshot_min);
                remove_before(&self.dir, from, self.window.is_none());
                if let Some(k) = &mut self.window {
                    k.covered = from;
                }
                self.prune();
                tracing::info!(segment = from, bytes, "snapshot written; older log removed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "snapshot failed; the log keeps everything until the next one");
                self.snapshot_at = self.data_bytes() + self.snapshot_min;
            }
        }
    }
}

/// How many chunks of each shard's queue can be written now: the longest
/// prefixes in which every commit across shards that appears has all its
/// parts. A shard's chunks after its part of an unfinished commit wait with
/// it (they may build on it). Parts of commits that interleave across
/// shards (T1 then T2 on one shard, T2 then T1 on another) land in one
/// frame together, which is whole or absent on disk, so no two commits can
/// wait for each other.
fn whole_commits(queues: &[VecDeque<(u64, Chunk)>]) -> Vec<usize> {
    let mut cut: Vec<usize> = queues.iter().map(VecDeque::len).collect();
    loop {
        let mut seen: HashMap<u64, (usize, usize)> = HashMap::new();
        for (q, n) in queues.iter().zip(&cut) {
            for (_, c) in q.iter().take(*n) {
                if let Some((id, parts)) = c.batch {
                    seen.entry(id).or_insert((parts, 0)).1 += 1;
                }
            }
        }
        let broken = |id: &u64| seen.get(id).is_some_and(|(parts, got)| got < parts);
        let mut shrunk = false;
        for (q, n) in queues.iter().zip(cut.iter_mut()) {
            if let Some(i) = q.iter().take(*n).position(|(_, c)| c.batch.is_some_and(|(id, _)| broken(&id))) {
                *n = i;
                shrunk = true;
            }
        }
        if !shrunk {
            return cut;
        }
    }
}

impl Writer {
    /// Deletes the kept segments the window log no longer reaches: older
    /// than the retention, or the oldest while they hold more than its bytes.
    fn prune(&mut self) {
        let Some(k) = &mut self.window else { return };
        let cutoff = k.clock.now_ms().saturating_sub(k.retention.ms);
        let mut total: u64 = k.kept.iter().filter(|s| s.no < k.covered).map(|s| s.bytes).sum();
        while let Some(first) = k.kept.front().copied() {
            let reached = first.newest.wall_ms() >= cutoff && total <= k.retention.bytes;
            if first.no >= k.covered || reached {
                return;
            }
            let horizon = k.horizon.max(first.newest);
            if horizon != k.horizon {
                if let Err(e) = write_horizon(&self.dir, horizon) {
                    tracing::warn!(error = %e, "cannot move the window log's horizon; keeping its log segments");
                    return;
                }
                k.horizon = horizon;
            }
            let _ = std::fs::remove_file(segment_path(&self.dir, first.no));
            total -= first.bytes;
            k.kept.pop_front();
        }
    }
}

/// Deletes snapshots older than segment `from` (a snapshot that replays
/// from `from` covers them), and with `segments` the log segments too.
pub(crate) fn remove_before(dir: &std::path::Path, from: u64, segments: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let segment = super::log::numbered(&name, "log-").filter(|_| segments);
        let old = segment.or_else(|| super::log::numbered(&name, "snapshot-"));
        if old.is_some_and(|n| n < from) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Records;

    fn queue(parts: &[Option<(u64, usize)>]) -> VecDeque<(u64, Chunk)> {
        parts
            .iter()
            .map(|b| {
                (
                    0,
                    Chunk {
                        shard: 0,
                        records: Records::default(),
                        upto: 0,
                        batch: *b,
                        newest: Timestamp::ZERO,
                        undo: 0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn commits_that_interleave_across_shards_are_written_together() {
        // Shard A got T1 then T2, shard B got T2 then T1: both are whole once
        // both queues are taken, and nothing waits for anything.
        let queues = vec![queue(&[Some((1, 2)), Some((2, 2)), None]), queue(&[Some((2, 2)), Some((1, 2))])];
        assert_eq!(whole_commits(&queues), vec![3, 2]);
    }

    #[test]
    fn a_shard_waits_behind_its_part_of_an_unfinished_commit() {
        // T2's part on B has not arrived: A keeps T2 and what follows; T1 goes.
        let queues =
            vec![queue(&[None, Some((1, 2)), Some((2, 2)), None]), queue(&[Some((1, 2)), None]), queue(&[None])];
        assert_eq!(whole_commits(&queues), vec![2, 2, 1]);
        // A commit whose other part waits behind an unfinished one waits too.
        let queues = vec![queue(&[Some((3, 2)), Some((4, 2))]), queue(&[Some((5, 2)), Some((4, 2))])];
        assert_eq!(whole_commits(&queues), vec![0, 0]);
    }
}
