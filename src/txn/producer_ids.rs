//! Producer ids unique across the broker's life (KIP-98).
//!
//! Ids are handed out in blocks, as Kafka's `ProducerIdManager` does with
//! KIP-730's `AllocateProducerIds`: one durable counter ([`ProducerIdStore`],
//! on the metadata shard) moves past a whole block and is stored before the
//! block is used, so no id is given twice, even after a crash (the rest of
//! a block in use at a crash is skipped). Each shard draws ids from its own
//! block ([`ProducerIds`]) and asks for the next one when it runs out; a
//! cluster controller can serve the same blocks later.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;

use crate::storage::{file, Error};

/// Ids per block (Kafka's `PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_LEN: i64 = 1000;
/// The counter's file in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer_ids.meta";
const FORMAT_VERSION: u32 = 1;
/// `version u32 | next id i64 | CRC-32C of the 12 bytes before it`.
const FILE_BYTES: usize = 16;

/// A block of ids: `first..first + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub len: i64,
}

impl ProducerIdBlock {
    fn ids(self) -> Range<i64> {
        self.first..self.first + self.len
    }
}

/// The durable counter blocks are carved from.
pub struct ProducerIdStore {
    dir: PathBuf,
    next: Cell<i64>,
    /// One allocation at a time, so two blocks never overlap.
    permit: Semaphore,
}

impl ProducerIdStore {
    /// Loads the counter from `dir`; absent means no id was handed out yet.
    /// A file that does not check refuses to start: guessing could reuse ids.
    pub fn load(dir: &Path) -> Result<ProducerIdStore, Error> {
        let path = dir.join(PRODUCER_IDS_FILE);
        let next = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).ok_or(Error::InvalidLayout(
                path.clone(),
                "producer id counter does not check",
            ))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        Ok(ProducerIdStore {
            dir: dir.to_path_buf(),
            next: Cell::new(next),
            permit: Semaphore::new(1),
        })
    }

    /// The next id no block holds yet.
    pub fn next_unallocated(&self) -> i64 {
        self.next.get()
    }

    /// Stores the counter past a new block, then hands the block out.
    pub async fn allocate_block(&self) -> Result<ProducerIdBlock, Error> {
        let _permit = self
            .permit
            .acquire_permit(1)
            .await
            .map_err(|_| Error::Closed)?;
        let first = self.next.get();
        let end = first
            .checked_add(PRODUCER_ID_BLOCK_LEN)
            .ok_or(Error::InvalidLayout(
                self.dir.clone(),
                "producer ids exhausted",
            ))?;
        file::write_file_atomically(&self.dir, PRODUCER_IDS_FILE, &encode(end)).await?;
        self.next.set(end);
        Ok(ProducerIdBlock {
            first,
            len: PRODUCER_ID_BLOCK_LEN,
        })
    }
}

/// In a cluster of `nodes` voters, the block this node (`index` among them)
/// gives out for its local block `block`: block `b` of node `i` becomes
/// global block `b * nodes + i`, so no two nodes hand out the same id
/// until the controller allocates blocks for all of them.
pub fn striped(block: ProducerIdBlock, index: usize, nodes: usize) -> Option<ProducerIdBlock> {
    debug_assert!(index < nodes);
    let local = block.first / PRODUCER_ID_BLOCK_LEN;
    let global = local.checked_mul(nodes as i64)?.checked_add(index as i64)?;
    Some(ProducerIdBlock {
        first: global.checked_mul(PRODUCER_ID_BLOCK_LEN)?,
        len: block.len,
    })
}

fn encode(next: i64) -> [u8; FILE_BYTES] {
    let mut out = [0u8; FILE_BYTES];
    out[..4].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    out[4..12].copy_from_slice(&next.to_be_bytes());
    let crc = crc32c::crc32c(&out[..12]);
    out[12..].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<i64> {
    let bytes: &[u8; FILE_BYTES] = bytes.try_into().ok()?;
    let crc = u32::from_be_bytes(bytes[12..].try_into().ok()?);
    let version = u32::from_be_bytes(bytes[..4].try_into().ok()?);
    let next = i64::from_be_bytes(bytes[4..12].try_into().ok()?);
    (crc == crc32c::crc32c(&bytes[..12]) && version == FORMAT_VERSION && next >= 0).then_some(next)
}

/// One shard's source of ids: its current block, refilled on demand.
pub struct ProducerIds {
    block: RefCell<Range<i64>>,
    /// One refill at a time; callers waiting on it take ids from the new block.
    refill: Semaphore,
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self::new()
    }
}

impl ProducerIds {
    pub fn new() -> ProducerIds {
        ProducerIds {
            block: RefCell::new(0..0),
            refill: Semaphore::new(1),
        }
    }

    /// The next id, from this shard's block or from a new one `fetch_block` gets.
    pub async fn next_id<E, F, Fut>(&self, fetch_block: F) -> Result<i64, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ProducerIdBlock, E>>,
    {
        if let Some(id) = self.block.borrow_mut().next() {
            return Ok(id);
        }
        let Ok(_permit) = self.refill.acquire_permit(1).await else {
            // The semaphore is never closed; treat it as an empty block.
            return fetch_block().await.map(|block| block.first);
        };
        // Another caller may have refilled while this one waited.
        if let Some(id) = self.block.borrow_mut().next() {
            return Ok(id);
        }
        let block = fetch_block().await?;
        debug_assert!(block.len > 0);
        let mut ids = block.ids();
        let id = ids.next();
        *self.block.borrow_mut() = ids;
        Ok(id.unwrap_or(block.first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striped_blocks_of_different_nodes_never_meet() {
        let mut seen = std::collections::HashSet::new();
        for local in 0..4 {
            for node in 0..3 {
                let block = ProducerIdBlock {
                    first: local * PRODUCER_ID_BLOCK_LEN,
                    len: PRODUCER_ID_BLOCK_LEN,
                };
                let global = striped(block, node, 3).unwrap();
                assert_eq!(global.first % PRODUCER_ID_BLOCK_LEN, 0);
                assert!(seen.insert(global.first), "{global:?} given twice");
            }
        }
        let last = ProducerIdBlock {
            first: i64::MAX / 2,
            len: PRODUCER_ID_BLOCK_LEN,
        };
        assert_eq!(striped(last, 1, 3), None);
    }

    #[test]
    fn the_counter_file_round_trips_and_refuses_damage() {
        let bytes = encode(12_000);
        assert_eq!(decode(&bytes), Some(12_000));
        let mut damaged = bytes;
        damaged[6] ^= 1;
        assert_eq!(decode(&damaged), None);
        assert_eq!(decode(&bytes[..15]), None);
    }

    #[test]
    fn blocks_never_overlap_across_reloads() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = ProducerIdStore::load(dir.path()).expect("empty store");
                let a = store.allocate_block().await.expect("block a");
                let ids = ProducerIds::new();
                let first = ids
                    .next_id(|| async { Ok::<_, Error>(a) })
                    .await
                    .expect("id");
                let second = ids
                    .next_id(|| async { Err::<ProducerIdBlock, _>("not needed") })
                    .await
                    .expect("same block");
                assert_eq!((first, second), (0, 1));
                drop(store);
                let reloaded = ProducerIdStore::load(dir.path()).expect("reload");
                let b = reloaded.allocate_block().await.expect("block b");
                assert_eq!(b.first, a.first + PRODUCER_ID_BLOCK_LEN);
            })
            .expect("executor")
            .join()
            .expect("test body");
    }
}
