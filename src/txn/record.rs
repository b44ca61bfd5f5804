//! The transaction log's keys and values, in the same explicit little-endian
//! encoding as the group log's records (a version byte first; strings are
//! `u32` length + UTF-8).
//!
//! One key per transactional id holds its whole [`TxnMetadata`], as Kafka's
//! `__transaction_state` does; one more key holds the coordinator epoch.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::state::{TxnMetadata, TxnState};
use crate::group::record::{put_str, Reader};
use crate::group::GroupLogError;
use crate::ids::PartitionId;

const KEY_KIND_TXN: u8 = 1;
const KEY_KIND_COORDINATOR_EPOCH: u8 = 2;
const VALUE_VERSION: u8 = 1;

/// What a stored value describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Txn {
        transactional_id: String,
    },
    /// Raised at every start-up, so markers of an earlier run are told apart.
    CoordinatorEpoch,
}

impl Key {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Key::Txn { transactional_id } => {
                out.push(KEY_KIND_TXN);
                put_str(&mut out, transactional_id);
            }
            Key::CoordinatorEpoch => out.push(KEY_KIND_COORDINATOR_EPOCH),
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Key, GroupLogError> {
        let mut reader = Reader::new(bytes);
        let key = match reader.u8()? {
            KEY_KIND_TXN => Key::Txn {
                transactional_id: reader.string()?,
            },
            KEY_KIND_COORDINATOR_EPOCH => Key::CoordinatorEpoch,
            kind => return Err(GroupLogError::Corrupt(format!("unknown key kind {kind}"))),
        };
        reader.finish()?;
        Ok(key)
    }
}

pub fn encode_epoch(epoch: i32) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    out.extend_from_slice(&epoch.to_le_bytes());
    out
}

pub fn decode_epoch(bytes: &[u8]) -> Result<i32, GroupLogError> {
    let mut reader = Reader::new(bytes);
    version(&mut reader)?;
    let epoch = reader.i32()?;
    reader.finish()?;
    Ok(epoch)
}

fn version(reader: &mut Reader<'_>) -> Result<(), GroupLogError> {
    match reader.u8()? {
        VALUE_VERSION => Ok(()),
        version => Err(GroupLogError::Corrupt(format!(
            "unknown transaction value version {version}"
        ))),
    }
}

pub fn encode_txn(txn: &TxnMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 32 * txn.partitions.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(&txn.producer_id.to_le_bytes());
    out.extend_from_slice(&txn.last_producer_id.to_le_bytes());
    out.extend_from_slice(&txn.next_producer_id.to_le_bytes());
    out.extend_from_slice(&txn.producer_epoch.to_le_bytes());
    out.extend_from_slice(&txn.last_producer_epoch.to_le_bytes());
    out.extend_from_slice(&txn.timeout_ms.to_le_bytes());
    out.push(txn.state.id());
    out.push(u8::from(txn.v2));
    out.extend_from_slice(&txn.txn_start_ms.to_le_bytes());
    out.extend_from_slice(&txn.last_update_ms.to_le_bytes());
    out.extend_from_slice(&(txn.partitions.len() as u32).to_le_bytes());
    for (topic, partition) in &txn.partitions {
        put_str(&mut out, topic);
        out.extend_from_slice(&partition.get().to_le_bytes());
    }
    out.extend_from_slice(&(txn.groups.len() as u32).to_le_bytes());
    for group in &txn.groups {
        put_str(&mut out, group);
    }
    out
}

pub fn decode_txn(bytes: &[u8]) -> Result<TxnMetadata, GroupLogError> {
    let mut reader = Reader::new(bytes);
    version(&mut reader)?;
    let producer_id = reader.i64()?;
    let last_producer_id = reader.i64()?;
    let next_producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let last_producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let state_id = reader.u8()?;
    let state = TxnState::from_id(state_id)
        .ok_or_else(|| GroupLogError::Corrupt(format!("unknown transaction state {state_id}")))?;
    let v2 = reader.u8()? != 0;
    let txn_start_ms = reader.i64()?;
    let last_update_ms = reader.i64()?;
    // Each element reads at least 4 bytes, so a count past the record's size
    // fails on its first missing element; nothing is reserved from it.
    let mut partitions = BTreeSet::new();
    for _ in 0..reader.u32()? {
        let topic: Arc<str> = reader.string()?.into();
        partitions.insert((topic, PartitionId(reader.i32()?)));
    }
    let mut groups = BTreeSet::new();
    for _ in 0..reader.u32()? {
        groups.insert(reader.string()?);
    }
    reader.finish()?;
    Ok(TxnMetadata {
        producer_id,
        last_producer_id,
        next_producer_id,
        producer_epoch,
        last_producer_epoch,
        timeout_ms,
        state,
        partitions,
        groups,
        txn_start_ms,
        last_update_ms,
        v2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_round_trips_and_damage_is_refused() {
        let mut txn = TxnMetadata::new(7, 60_000, 1_000);
        txn.producer_epoch = 3;
        txn.state = TxnState::PrepareCommit;
        txn.v2 = true;
        txn.partitions.insert(("orders".into(), PartitionId(2)));
        txn.groups.insert("app".to_string());
        let bytes = encode_txn(&txn);
        assert_eq!(decode_txn(&bytes).expect("decodes"), txn);
        assert!(decode_txn(&bytes[..bytes.len() - 1]).is_err());
        let key = Key::Txn {
            transactional_id: "app-1".into(),
        };
        assert_eq!(Key::decode(&key.encode()).expect("key"), key);
        assert_eq!(decode_epoch(&encode_epoch(5)).expect("epoch"), 5);
    }
}
