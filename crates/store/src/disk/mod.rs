//! The disk tier: every key lives in memory; the disk is there to get it
//! back after a restart or a crash, as Redis's append-only file and
//! snapshots are.
//!
//! - **The log** (`log-N.squall`): shards encode their changes as records
//!   and hand them to one writer thread, which appends whatever has arrived
//!   as one checksummed frame and, in `sync` mode, fsyncs it before anyone
//!   waiting for it is told (group commit). The parts of a commit across
//!   shards are held back until all have arrived and go into one frame, so
//!   on disk a commit is whole or absent.
//! - **Snapshots** (`snapshot-N.squall`): once the log has grown past the
//!   last snapshot's size (and 64 MiB), the writer starts a new segment N
//!   and a snapshot thread asks each shard for its records a few hundred
//!   keys (and at most 8192 members, fields or items) at a time, so no
//!   shard is held up for long; the snapshot holds every key (every element
//!   of a big one) as it was at some moment after segment N began. Replaying segment
//!   N and later on top of it ends in the live state, because records hold
//!   whole states and replay goes to the end. When it is durable, older
//!   segments and snapshots are deleted.
//! - **Recovery** reads the newest snapshot and the segments after it,
//!   streaming (memory holds the keys, not the files), writes nothing, and
//!   appends to the last segment where its valid frames end.
//!
//! **A full disk is not an outage.** Log space is reserved ahead of the
//! write position; when reserving fails the store refuses new writes
//! ([`OpError::DiskFull`]) while writes already under way still fit, reads
//! go on, and the writer tries again every 250 ms until space is back. An
//! I/O error other than a full disk (a failed fsync may have lost pages)
//! makes the store refuse writes for good ([`OpError::DiskFailed`]); the
//! binary decides what to do (see [`Health`]). The store never exits the
//! process. Recovery needs no free space.

pub(crate) mod log;
pub(crate) mod records;
pub(crate) mod recover;
pub(crate) mod snapshot;
pub(crate) mod writer;

pub(crate) use records::{Made, Records, before_of, decode, origin_of};

use crate::op::OpError;
use crate::protocol::{Answer, TxnId};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::{oneshot, watch};

/// Whether the store takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// Writes are refused until space is freed; reads go on.
    DiskFull(String),
    /// Writes are refused for good: the disk failed; restart the node.
    DiskFailed(String),
}

impl Health {
    pub fn is_ok(&self) -> bool {
        matches!(self, Health::Ok)
    }
}

const OK: u8 = 0;
const FULL: u8 = 1;
const FAILED: u8 = 2;

/// The disk's state, shared by the writer (which sets it) and the shards
/// (which read it before each write: one relaxed load).
pub(crate) struct DiskState {
    state: AtomicU8,
    health: Mutex<watch::Sender<Health>>,
}

impl DiskState {
    pub fn new() -> (DiskState, watch::Receiver<Health>) {
        let (tx, rx) = watch::channel(Health::Ok);
        (DiskState { state: AtomicU8::new(OK), health: Mutex::new(tx) }, rx)
    }

    /// Why writes are refused now, if they are.
    pub fn refusal(&self) -> Option<OpError> {
        match self.state.load(Ordering::Relaxed) {
            OK => None,
            FULL => Some(OpError::DiskFull),
            _ => Some(OpError::DiskFailed),
        }
    }

    fn set(&self, state: u8, health: Health) {
        // A failed disk stays failed.
        if self.state.load(Ordering::Relaxed) == FAILED {
            return;
        }
        if self.state.swap(state, Ordering::Relaxed) != state {
            match &health {
                Health::Ok => tracing::info!("disk space is back: writes are taken again"),
                Health::DiskFull(why) => tracing::warn!(%why, "disk full: refusing writes until space is freed"),
                Health::DiskFailed(why) => tracing::error!(%why, "disk failed: refusing writes for good"),
            }
            let tx = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            tx.send_replace(health);
        }
    }

    pub fn set_ok(&self) {
        self.set(OK, Health::Ok);
    }

    pub fn set_full(&self, why: String) {
        self.set(FULL, Health::DiskFull(why));
    }

    pub fn set_failed(&self, why: String) {
        self.set(FAILED, Health::DiskFailed(why));
    }

    pub fn is_ok(&self) -> bool {
        self.state.load(Ordering::Relaxed) == OK
    }
}

/// Records a shard hands to the writer, in the shard's order.
pub(crate) struct Chunk {
    pub shard: usize,
    pub records: Records,
    /// The shard's write sequence number after these records.
    pub upto: u64,
    /// Set on the parts of a commit across shards: (commit, number of parts).
    pub batch: Option<(TxnId, usize)>,
    /// The newest change time among its undo records.
    pub newest: squall_lattice::Timestamp,
    /// How many of its bytes are undo records.
    pub undo: u64,
}

pub(crate) enum WriterMsg {
    Chunk(Chunk),
    /// Answer once everything sent before (by this shard) is on disk and fsynced.
    Flush(oneshot::Sender<Answer>, usize),
    /// The snapshot that starts at a segment is done (its size in bytes) or failed.
    Snapshot(u64, Result<u64, String>),
    /// The shards have stopped: write what is left, sync, and stop.
    Close,
}
