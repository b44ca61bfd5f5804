//! Producer identity and transactions.
//!
//! - `producer_ids`: producer ids unique across the broker's life, handed
//!   out in blocks from a durable counter (idempotent and transactional
//!   producers).
//! - `coordinator`: the transaction coordinator of one shard (KIP-98,
//!   KIP-360, KIP-890): transactional ids live on shard
//!   `shard_for_transactional_id(id, shards)`, their state in a durable log
//!   in `<data>/__transactions/shard-<n>`. It speaks its own types; the
//!   broker maps the wire to them and writes the markers it hands back.
//! - `state`: a transactional id's metadata and states.
//! - `record`: the log's binary keys and values.
//! - `error`: the refusals, named after Kafka's codes.

pub mod coordinator;
pub mod error;
pub mod producer_ids;
pub mod record;
pub mod state;

#[cfg(test)]
mod tests;

pub use coordinator::{
    Completion, EndOutcome, InitOutcome, ListFilter, ListedTxn, TxnConfig, TxnCoordinator,
};
pub use error::TxnError;
pub use producer_ids::{ProducerIdBlock, ProducerIdStore, ProducerIds, PRODUCER_ID_BLOCK_LEN};
pub use state::{TxnMetadata, TxnPartition, TxnState};

/// The shard that coordinates `transactional_id`: the same stable hash as
/// groups (CRC-32C), so the shard count must not change between runs.
pub fn shard_for_transactional_id(transactional_id: &str, shards: usize) -> usize {
    crate::group::shard_for_group(transactional_id, shards)
}
