//! Raw transactional requests (KIP-98): InitProducerId with a transactional
//! id, AddPartitionsToTxn v3 and EndTxn, answered as error codes.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::raw::RawClient;

/// Highest InitProducerId and AddPartitionsToTxn versions these use
/// (AddPartitionsToTxn v4+ is the brokers' batched form).
const INIT_PRODUCER_ID_VERSION_MAX: i16 = 5;
const ADD_PARTITIONS_VERSION: i16 = 3;

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn transactional_id(id: &str) -> TransactionalId {
    TransactionalId(str_bytes(id))
}

/// InitProducerId for `id`, naming the producer's `(id, epoch)` (KIP-360;
/// `(-1, -1)` for a new producer): (error, producer id, epoch).
pub fn init_transactional(
    client: &mut RawClient,
    id: &str,
    timeout_ms: i32,
    current: (i64, i16),
) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(current.0))
        .with_producer_epoch(current.1);
    let response = client.call_negotiated(&request, INIT_PRODUCER_ID_VERSION_MAX);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// AddPartitionsToTxn v3 for `partitions` of `topic`: each partition's error.
pub fn add_partitions(
    client: &mut RawClient,
    id: &str,
    (producer_id, epoch): (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(transactional_id(id))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partitions(partitions.to_vec())]);
    let response = client.call(&request, ADD_PARTITIONS_VERSION);
    response.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect()
}

/// The EndTxn request for the producer's transaction.
pub fn end_txn_request(id: &str, (producer_id, epoch): (i64, i16), commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(transactional_id(id))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

/// EndTxn at `version`: (error, producer id, epoch).
pub fn end_txn(
    client: &mut RawClient,
    id: &str,
    producer: (i64, i16),
    commit: bool,
    version: i16,
) -> (i16, i64, i16) {
    let response = client.call(&end_txn_request(id, producer, commit), version);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}
