//! The queue behind a partition log's appends: staged batches, the writes
//! in flight (in issue order) and the byte sequence numbers of each stage.
//! Everything here runs without awaiting; the appender performs the I/O.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

use super::super::file::{self, SegmentFile, BLOCK_BYTES};
use super::super::types::Offset;
use super::active::ActiveWrite;
use super::State;

/// Most bytes one write I/O carries; more queued data goes in the next write.
pub const WRITE_BYTES_MAX: usize = 1024 * 1024;
/// Writes of one partition in flight at once (sequential, non-overlapping).
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

const _: () = assert!((WRITE_BYTES_MAX as u64).is_multiple_of(BLOCK_BYTES));
const _: () = assert!(WRITE_BYTES_MAX as u64 > 2 * BLOCK_BYTES && WRITES_IN_FLIGHT_MAX >= 1);

/// A staged batch waiting to be written.
struct Pending {
    batch: Bytes,
    next_offset: Offset,
}

/// One write issued and not yet completed (in issue order).
struct Flight {
    id: u64,
    end_seq: u64,
    /// The offset after the last batch this write completes.
    end_offset: Offset,
    end_position: u64,
    done: bool,
}

/// What a task needs to perform one write.
pub(super) struct Issue {
    id: u64,
    pub(super) file: Rc<SegmentFile>,
    pub(super) position: u64,
    pub(super) head: [u8; BLOCK_BYTES as usize],
    pub(super) head_len: usize,
    pub(super) parts: Vec<Bytes>,
    pub(super) bytes: u64,
    /// File length to reserve while this write runs.
    pub(super) reserve_to: Option<u64>,
}

/// The pipeline's progress: staged ≥ issued ≥ written (the synced frontier
/// is the log's `GroupCommit`, never ahead of written).
pub(super) struct Pipeline {
    pending: VecDeque<Pending>,
    staged_seq: u64,
    /// Bytes handed to writes (issued, maybe not complete).
    issued_seq: u64,
    /// The offset after the last batch wholly issued.
    issued_offset: Offset,
    flights: VecDeque<Flight>,
    next_flight_id: u64,
    written_seq: u64,
    /// Reused between writes so a write allocates nothing but its DMA buffer.
    write_scratch: Vec<Bytes>,
    pub(super) active: ActiveWrite,
}

impl Pipeline {
    /// An idle pipeline appending at `next_offset` to the active segment.
    pub(super) fn new(active: ActiveWrite, next_offset: Offset) -> Pipeline {
        Pipeline {
            pending: VecDeque::new(),
            staged_seq: 0,
            issued_seq: 0,
            issued_offset: next_offset,
            flights: VecDeque::new(),
            next_flight_id: 0,
            written_seq: 0,
            write_scratch: Vec::new(),
            active,
        }
    }

    /// The same pipeline with every stage at `seq` (a log reloaded after a
    /// truncation keeps counting where it was, so its group commit holds).
    pub(super) fn starting_at(mut self, seq: u64) -> Pipeline {
        self.staged_seq = seq;
        self.issued_seq = seq;
        self.written_seq = seq;
        self
    }

    pub(super) fn staged_seq(&self) -> u64 {
        self.staged_seq
    }

    pub(super) fn written_seq(&self) -> u64 {
        self.written_seq
    }

    /// Continues in a new active segment; everything staged is written.
    pub(super) fn start_segment(&mut self, active: ActiveWrite) {
        debug_assert!(self.pending.is_empty() && self.flights.is_empty());
        debug_assert_eq!(self.written_seq, self.staged_seq);
        self.active = active;
    }

    pub(super) fn push(&mut self, batch: Bytes, next_offset: Offset) {
        let size = batch.len() as u64;
        self.active.staged_bytes += size;
        self.staged_seq += size;
        self.pending.push_back(Pending { batch, next_offset });
    }

    /// How many staged bytes the next write takes, or `None` when the
    /// pipeline has no room or nothing may be issued yet.
    pub(super) fn next_write_bytes(&self) -> Option<u64> {
        let unissued = self.staged_seq - self.issued_seq;
        if unissued == 0 || self.flights.len() >= WRITES_IN_FLIGHT_MAX {
            return None;
        }
        let head_len = self.active.tail.len();
        if head_len > 0 && !self.flights.is_empty() {
            // The last write in flight ends inside the block this one must rewrite.
            return None;
        }
        let start = self.active.issued_bytes;
        let take = unissued.min((WRITE_BYTES_MAX - head_len) as u64);
        if self.flights.is_empty() && take == unissued {
            return Some(take);
        }
        // Keep the pipeline going with whole blocks; the remainder follows.
        let aligned_end = file::align_down(start + take);
        (aligned_end > start).then(|| aligned_end - start)
    }

    /// Takes `take` staged bytes off the queue into one write.
    pub(super) fn issue(&mut self, take: u64, segment_bytes: u64) -> Issue {
        let (parts, end_offset) = self.take_parts(take);
        let head_len = self.active.tail.len();
        let mut head = [0u8; BLOCK_BYTES as usize];
        head[..head_len].copy_from_slice(&self.active.tail);
        let start = self.active.issued_bytes;
        let end = start + take;
        let tail_len = (end - file::align_down(end)) as usize;
        fill_tail(&mut self.active.tail, &head[..head_len], &parts, tail_len);
        self.active.issued_bytes = end;
        let reserve_to = self.active.start_reservation(end, segment_bytes);
        self.issued_seq += take;
        self.issued_offset = end_offset;
        debug_assert!(self.issued_seq <= self.staged_seq);
        debug_assert!(self.active.issued_bytes <= self.active.staged_bytes);
        let id = self.next_flight_id;
        self.next_flight_id += 1;
        self.flights.push_back(Flight {
            id,
            end_seq: self.issued_seq,
            end_offset,
            end_position: end,
            done: false,
        });
        Issue {
            id,
            file: self.active.file.clone(),
            position: file::align_down(start),
            head,
            head_len,
            parts,
            bytes: take,
            reserve_to,
        }
    }

    /// The queued batches (and slices of them) that make up `take` bytes,
    /// and the offset after the last whole batch among them.
    fn take_parts(&mut self, take: u64) -> (Vec<Bytes>, Offset) {
        let mut parts = std::mem::take(&mut self.write_scratch);
        let mut remaining = take as usize;
        let mut end_offset = self.issued_offset;
        while remaining > 0 {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            if front.batch.len() <= remaining {
                remaining -= front.batch.len();
                end_offset = front.next_offset;
                if let Some(p) = self.pending.pop_front() {
                    parts.push(p.batch);
                }
            } else {
                // The batch continues in the next write; a slice, not a copy.
                parts.push(front.batch.split_to(remaining));
                remaining = 0;
            }
        }
        (parts, end_offset)
    }

    /// Marks a write done and advances the written frontier over every write
    /// completed in order. Returns the new (offset, file position) frontier
    /// when it moved.
    pub(super) fn complete(&mut self, issue: Issue) -> Option<(Offset, u64)> {
        if let Some(flight) = self.flights.iter_mut().find(|f| f.id == issue.id) {
            flight.done = true;
        }
        let mut frontier = None;
        while self.flights.front().is_some_and(|f| f.done) {
            let Some(flight) = self.flights.pop_front() else {
                break;
            };
            self.written_seq = flight.end_seq;
            frontier = Some((flight.end_offset, flight.end_position));
        }
        debug_assert!(self.written_seq <= self.issued_seq);
        let mut parts = issue.parts;
        parts.clear();
        if parts.capacity() > self.write_scratch.capacity() {
            self.write_scratch = parts;
        }
        frontier
    }
}

impl State {
    /// The pipeline's ordering, checked where it moves: staged ≥ issued ≥
    /// written ≥ synced, in bytes, offsets and file positions.
    pub(super) fn debug_check_pipeline(&self, durable_seq: u64) {
        let p = &self.pipeline;
        debug_assert!(p.staged_seq >= p.issued_seq && p.issued_seq >= p.written_seq);
        debug_assert!(
            p.written_seq >= durable_seq,
            "nothing is synced before it is written"
        );
        debug_assert!(self.next_offset >= p.issued_offset);
        debug_assert!(p.issued_offset >= self.high_watermark);
        debug_assert!(self.high_watermark >= self.recovery_point);
        debug_assert!(p.active.staged_bytes >= p.active.issued_bytes);
        debug_assert!(self
            .segments
            .active()
            .is_ok_and(|s| p.active.issued_bytes >= s.written_bytes()));
    }
}

/// Keeps the last `tail_len` bytes of `head ++ parts`: the partial last block.
fn fill_tail(tail: &mut Vec<u8>, head: &[u8], parts: &[Bytes], tail_len: usize) {
    tail.clear();
    tail.resize(tail_len, 0);
    let mut remaining = tail_len;
    for part in parts
        .iter()
        .rev()
        .map(|b| &b[..])
        .chain(std::iter::once(head))
    {
        if remaining == 0 {
            break;
        }
        let take = remaining.min(part.len());
        tail[remaining - take..remaining].copy_from_slice(&part[part.len() - take..]);
        remaining -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_the_suffix_of_head_and_parts() {
        let mut tail = Vec::new();
        let parts = [Bytes::from_static(b"defg"), Bytes::from_static(b"hi")];
        fill_tail(&mut tail, b"abc", &parts, 5);
        assert_eq!(&tail, b"efghi");
        fill_tail(&mut tail, b"abc", &parts, 8);
        assert_eq!(&tail, b"bcdefghi");
        fill_tail(&mut tail, b"abc", &parts, 0);
        assert!(tail.is_empty());
    }
}
