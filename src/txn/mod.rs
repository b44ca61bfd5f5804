//! Producer identity for idempotent producers: producer ids unique across
//! the broker's life, handed out in blocks from a durable counter.

pub mod producer_ids;

pub use producer_ids::{ProducerIdBlock, ProducerIdStore, ProducerIds, PRODUCER_ID_BLOCK_LEN};
