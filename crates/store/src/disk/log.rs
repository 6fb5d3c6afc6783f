//! Files of the disk tier: log segments and snapshots, both sequences of
//! checksummed frames.
//!
//! ```text
//! frame: [payload len: u32 LE][crc32 of the rest: u32 LE][number: u64 LE][payload]
//! ```
//!
//! A frame's number is one more than the one before it (across segments),
//! so a reader stops at the first frame that is cut short, does not check
//! out, or does not follow on: a torn write at a crash, or stale bytes of an
//! older frame beyond it. Nothing after such a frame was acknowledged,
//! because a write is acknowledged only after everything before it is.
//!
//! Space for the log is reserved ahead of the write position
//! (`fallocate` with `KEEP_SIZE`), a few MiB at a time: when the disk fills,
//! reserving fails first, while the writes already under way still have
//! room, so the store can refuse new writes with a clear error instead of
//! failing one halfway.

use crate::Error;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) const FRAME_HEAD: usize = 16;
/// Largest payload a reader accepts: a frame is one group commit, or one
/// snapshot step; anything larger is corruption.
const MAX_PAYLOAD: usize = 1 << 30;

/// Builds a frame around `payload`.
#[cfg(test)]
pub(crate) fn frame(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_HEAD + payload.len());
    frame_into(&mut f, number, [payload]);
    f
}

/// The head of a frame whose payload is `parts` one after the other.
pub(crate) fn frame_head<'a>(number: u64, parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; FRAME_HEAD] {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&number.to_le_bytes());
    let mut len = 0;
    for p in parts {
        crc.update(p);
        len += p.len();
    }
    let mut head = [0u8; FRAME_HEAD];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    head[8..].copy_from_slice(&number.to_le_bytes());
    head
}

/// Appends a frame whose payload is `parts` one after the other (copied
/// once, straight into `out`).
pub(crate) fn frame_into<'a, P>(out: &mut Vec<u8>, number: u64, parts: P)
where
    P: IntoIterator<Item = &'a [u8]>,
    P::IntoIter: Clone,
{
    let parts = parts.into_iter();
    out.extend_from_slice(&frame_head(number, parts.clone()));
    for p in parts {
        out.extend_from_slice(p);
    }
}

pub(crate) fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("log-{no:020}.squall"))
}

pub(crate) fn snapshot_path(dir: &Path, from_segment: u64) -> PathBuf {
    dir.join(format!("snapshot-{from_segment:020}.squall"))
}

/// The number in a file name like `log-00000000000000000007.squall`.
pub(crate) fn numbered(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(".squall")?.parse().ok()
}

/// Makes a directory entry (a new or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How a read of frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadEnd {
    /// Bytes of valid frames from the start of the file.
    pub valid: u64,
    /// The number the next frame must carry.
    pub next: u64,
    /// Whether the file ends exactly after its last valid frame.
    pub clean: bool,
}

/// Reads the frames of `path` one at a time, expecting the first to carry
/// `first` (any number if `None`), and stops at the first that does not
/// check out.
pub(crate) fn read_frames(
    path: &Path,
    first: Option<u64>,
    mut f: impl FnMut(u64, Bytes) -> Result<(), Error>,
) -> Result<ReadEnd, Error> {
    let io = |e: std::io::Error| Error::Io(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let mut valid = 0u64;
    let mut next = first;
    loop {
        let mut head = [0u8; FRAME_HEAD];
        if !read_full(&mut r, &mut head).map_err(io)? {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut no = [0u8; 8];
        no.copy_from_slice(&head[8..]);
        let number = u64::from_le_bytes(no);
        if len > MAX_PAYLOAD || next.is_some_and(|n| n != number) || valid + (FRAME_HEAD + len) as u64 > size {
            break;
        }
        let mut payload = vec![0u8; len];
        if !read_full(&mut r, &mut payload).map_err(io)? {
            break;
        }
        let mut check = crc32fast::Hasher::new();
        check.update(&head[8..]);
        check.update(&payload);
        if check.finalize() != crc {
            break;
        }
        f(number, Bytes::from(payload))?;
        valid += (FRAME_HEAD + len) as u64;
        next = Some(number + 1);
    }
    Ok(ReadEnd { valid, next: next.unwrap_or(1), clean: valid == size })
}

/// Fills `buf`, or answers false at the end of the file (a partial read at
/// the end counts as the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Is this error the disk being full (or over quota)?
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// A log segment open for appending.
pub(crate) struct Segment {
    pub no: u64,
    file: File,
    /// Bytes written (frames).
    pub end: u64,
    /// Bytes reserved on disk from the start of the file.
    reserved: u64,
    /// `fallocate` is not supported here: space is found when writing.
    no_reserve: bool,
}

impl Segment {
    /// Creates segment `no` (and makes its name durable).
    pub fn create(dir: &Path, no: u64) -> std::io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(segment_path(dir, no))?;
        sync_dir(dir)?;
        Ok(Segment { no, file, end: 0, reserved: 0, no_reserve: false })
    }

    /// Opens segment `no` to append after its first `end` bytes (what a
    /// read found valid). Anything after them (a write cut short by a crash)
    /// is cut off first: left there, it would make this segment look
    /// damaged once a later one follows it. Cutting frees space, so it works
    /// on a full disk.
    pub fn open(dir: &Path, no: u64, end: u64) -> std::io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(segment_path(dir, no))?;
        if file.metadata()?.len() != end {
            file.set_len(end)?;
            file.sync_all()?;
        }
        Ok(Segment { no, file, end, reserved: end, no_reserve: false })
    }

    /// Space reserved and not yet written.
    pub fn headroom(&self) -> u64 {
        self.reserved.saturating_sub(self.end)
    }

    /// Makes sure `want` bytes beyond the write position are reserved. It
    /// reserves twice that when it can, so most appends reserve nothing;
    /// near a full disk, just what was asked.
    pub fn reserve(&mut self, want: u64) -> std::io::Result<()> {
        if self.no_reserve || self.headroom() >= want {
            return Ok(());
        }
        let mut last = None;
        for ahead in [2 * want, want] {
            let len = self.end + ahead - self.reserved;
            match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::KEEP_SIZE, self.reserved, len) {
                Ok(()) => {
                    self.reserved += len;
                    return Ok(());
                }
                Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                    self.no_reserve = true;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| std::io::Error::other("cannot reserve log space"), Into::into))
    }

    /// Writes `frames` at the write position.
    pub fn append(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(frames, self.end)?;
        self.end += frames.len() as u64;
        self.reserved = self.reserved.max(self.end);
        Ok(())
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_until_one_is_torn_or_does_not_follow() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 1).unwrap();
        seg.reserve(1 << 20).unwrap();
        seg.append(&frame(1, b"one")).unwrap();
        seg.append(&frame(2, b"two")).unwrap();
        let good = seg.end;
        // A stale frame that does not follow on, then a torn one.
        seg.append(&frame(7, b"stale")).unwrap();
        seg.sync().unwrap();
        let mut got = Vec::new();
        let end = read_frames(&segment_path(dir.path(), 1), Some(1), |n, p| {
            got.push((n, p));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(1, Bytes::from_static(b"one")), (2, Bytes::from_static(b"two"))]);
        assert_eq!(end, ReadEnd { valid: good, next: 3, clean: false });
        // Opening it to append cuts off what did not check out.
        let mut seg = Segment::open(dir.path(), 1, end.valid).unwrap();
        let after = read_frames(&segment_path(dir.path(), 1), Some(1), |_, _| Ok(())).unwrap();
        assert_eq!(after, ReadEnd { valid: good, next: 3, clean: true });
        let mut torn = frame(3, b"three");
        torn.truncate(torn.len() - 2);
        seg.append(&torn).unwrap();
        let end = read_frames(&segment_path(dir.path(), 1), Some(1), |_, _| Ok(())).unwrap();
        assert_eq!(end.next, 3);
        assert_eq!(end.valid, good);
        // The file's size follows what was written, not what was reserved.
        assert!(std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len() < 1 << 20);
    }

    #[test]
    fn a_flipped_bit_ends_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 4).unwrap();
        let mut f = frame(1, b"payload");
        let last = f.len() - 1;
        f[last] ^= 1;
        seg.append(&f).unwrap();
        let end = read_frames(&segment_path(dir.path(), 4), None, |_, _| panic!("no frame is valid")).unwrap();
        assert_eq!(end.valid, 0);
        assert_eq!(numbered("log-00000000000000000004.squall", "log-"), Some(4));
        assert_eq!(numbered("log-x.squall", "log-"), None);
    }
}
