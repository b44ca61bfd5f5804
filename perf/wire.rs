//! The generator's side of the Kafka protocol, on the shared blocking
//! client (`ringlog::client`): connecting, control-plane requests (Metadata,
//! CreateTopics, ListOffsets), the Fetch request, and the pre-encoded Produce
//! request that is patched per send.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, create_topics_request::CreateTopicsRequest,
    fetch_request::FetchPartition, fetch_request::FetchRequest, fetch_request::FetchTopic,
    list_offsets_request::ListOffsetsPartition, list_offsets_request::ListOffsetsRequest,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequest,
    metadata_request::MetadataRequestTopic, produce_request::PartitionProduceData,
    produce_request::ProduceRequest, produce_request::TopicProduceData, AddPartitionsToTxnRequest,
    BrokerId, EndTxnRequest, InitProducerIdRequest, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use ringlog::client::{encode_request, ClientSecurity, Connection};

pub const CLIENT_ID: &str = "ringlog-perf";
/// How long control-plane requests may take.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

// Kafka error codes this tool reacts to (or, as the sink, answers with).
pub const ERROR_NONE: i16 = 0;
pub const ERROR_OFFSET_OUT_OF_RANGE: i16 = 1;
pub const ERROR_UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const ERROR_TOPIC_ALREADY_EXISTS: i16 = 36;

/// Versions this tool can speak per API (inclusive). Produce and Fetch stop
/// before the topic-id-only versions (Produce v13, Fetch v13).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 12);
pub const FETCH_VERSIONS: (i16, i16) = (4, 12);
pub const METADATA_VERSIONS: (i16, i16) = (1, 12);
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);
pub const INIT_PRODUCER_ID_VERSIONS: (i16, i16) = (0, 5);
/// Transactions V1 (KIP-98): partitions joined with AddPartitionsToTxn.
pub const ADD_PARTITIONS_TO_TXN_VERSIONS: (i16, i16) = (0, 3);
pub const END_TXN_VERSIONS: (i16, i16) = (0, 4);

/// TLS and SASL of every connection (`-X`), set once at start-up.
static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

/// Secures every connection the run opens from now on as `security` says.
pub fn secure_connections(security: ClientSecurity) {
    let _ = SECURITY.set(security);
}

/// A data-plane connection: no I/O timeouts, so long polls and pipelined
/// produce waits are bounded by the protocol, not the socket.
pub fn connect(addr: &str) -> Result<Connection> {
    match SECURITY.get() {
        Some(security) if security.tls.is_some() || security.sasl.is_some() => {
            let mut conn = Connection::open(addr, CONTROL_TIMEOUT, CLIENT_ID, security)?;
            conn.set_io_timeout(None)?;
            Ok(conn)
        }
        _ => Ok(Connection::connect(addr, CLIENT_ID)?),
    }
}

/// A control-plane connection: versions negotiated, every call bounded by
/// `CONTROL_TIMEOUT`.
pub fn connect_control(addr: &str) -> Result<Connection> {
    let mut conn = connect(addr)?;
    conn.set_io_timeout(Some(CONTROL_TIMEOUT))?;
    conn.negotiate().context("ApiVersions")?;
    Ok(conn)
}

/// A fresh producer id and epoch for an idempotent producer (no
/// transactional id), asked on `conn` itself.
pub fn init_producer_id(conn: &mut Connection) -> Result<(i64, i16)> {
    conn.negotiate().context("ApiVersions")?;
    let version = conn
        .versions()
        .pick::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSIONS)?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let response = conn.call(&request, version)?;
    ensure!(
        response.error_code == ERROR_NONE,
        "InitProducerId: error {}",
        response.error_code
    );
    Ok((response.producer_id.0, response.producer_epoch))
}

fn transactional_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_owned()))
}

/// The producer id and epoch of `id`, a transactional producer's.
pub fn init_transactional(conn: &mut Connection, id: &str) -> Result<(i64, i16)> {
    conn.negotiate().context("ApiVersions")?;
    let version = conn
        .versions()
        .pick::<InitProducerIdRequest>(INIT_PRODUCER_ID_VERSIONS)?;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(id)))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn.call(&request, version)?;
    ensure!(
        response.error_code == ERROR_NONE,
        "InitProducerId({id}): error {}",
        response.error_code
    );
    Ok((response.producer_id.0, response.producer_epoch))
}

/// Opens a transaction on `partitions` of `topic` (AddPartitionsToTxn).
pub fn add_partitions_to_txn(
    conn: &mut Connection,
    id: &str,
    (producer_id, epoch): (i64, i16),
    topic: &str,
    partitions: &[i32],
) -> Result<()> {
    let version = conn
        .versions()
        .pick::<AddPartitionsToTxnRequest>(ADD_PARTITIONS_TO_TXN_VERSIONS)?;
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(transactional_id(id))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(partitions.to_vec())]);
    let response = conn.call(&request, version)?;
    for topic in &response.results_by_topic_v3_and_below {
        for p in &topic.results_by_partition {
            ensure!(
                p.partition_error_code == ERROR_NONE,
                "AddPartitionsToTxn partition {}: error {}",
                p.partition_index,
                p.partition_error_code
            );
        }
    }
    Ok(())
}

/// Commits (or aborts) the open transaction (EndTxn); returns once the markers are written.
pub fn end_txn(
    conn: &mut Connection,
    id: &str,
    (producer_id, epoch): (i64, i16),
    commit: bool,
) -> Result<()> {
    let version = conn.versions().pick::<EndTxnRequest>(END_TXN_VERSIONS)?;
    let request = EndTxnRequest::default()
        .with_transactional_id(transactional_id(id))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_committed(commit);
    let response = conn.call(&request, version)?;
    ensure!(
        response.error_code == ERROR_NONE,
        "EndTxn: error {}",
        response.error_code
    );
    Ok(())
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Partition count of `topic`, or None if the broker does not know it.
pub fn topic_partitions(conn: &mut Connection, topic: &str) -> Result<Option<(i32, bool)>> {
    let version = conn.versions().pick::<MetadataRequest>(METADATA_VERSIONS)?;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response = conn.call(&request, version)?;
    let Some(t) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
    else {
        return Ok(None);
    };
    if t.error_code != ERROR_NONE || t.partitions.is_empty() {
        return Ok(None);
    }
    let leaders: std::collections::HashSet<BrokerId> =
        t.partitions.iter().map(|p| p.leader_id).collect();
    Ok(Some((t.partitions.len() as i32, leaders.len() > 1)))
}

pub fn create_topic(conn: &mut Connection, topic: &str, partitions: i32) -> Result<()> {
    let version = conn
        .versions()
        .pick::<CreateTopicsRequest>(CREATE_TOPICS_VERSIONS)?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let response = conn.call(&request, version)?;
    for t in &response.topics {
        if t.error_code != ERROR_NONE && t.error_code != ERROR_TOPIC_ALREADY_EXISTS {
            bail!(
                "CreateTopics {topic}: error {} {:?}",
                t.error_code,
                t.error_message
            );
        }
    }
    Ok(())
}

/// Offsets of `partitions` at `timestamp` (-1 latest, -2 earliest), at an
/// isolation level (read_committed: "latest" is the last stable offset).
pub fn list_offsets(
    conn: &mut Connection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
    isolation_level: i8,
) -> Result<HashMap<i32, i64>> {
    let version = conn
        .versions()
        .pick::<ListOffsetsRequest>(LIST_OFFSETS_VERSIONS)?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(timestamp)
                    })
                    .collect(),
            )]);
    let response = conn.call(&request, version)?;
    let mut out = HashMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            ensure!(
                p.error_code == ERROR_NONE,
                "ListOffsets partition {}: error {}",
                p.partition_index,
                p.error_code
            );
            out.insert(p.partition_index, p.offset);
        }
    }
    Ok(out)
}

pub fn fetch_request(
    topic: &TopicName,
    offsets: &[(i32, i64)],
    max_wait_ms: i32,
    partition_max_bytes: i32,
    max_bytes: i32,
    isolation_level: i8,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1) // no fetch session (KIP-227 FINAL_EPOCH)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(
                offsets
                    .iter()
                    .map(|&(p, o)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(o)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

/// A Produce request encoded once by kafka-protocol; per send only the
/// correlation id, the partition and (optionally) the batch are patched.
pub struct ProduceTemplate {
    pub frame: Vec<u8>,
    pub batch_start: usize,
    pub batch_len: usize,
    partition_at: usize,
}

const CORRELATION_ID_AT: usize = 8; // after length, api key, api version
const PARTITION_SENTINEL: i32 = 0x5A5A_5A5A;

impl ProduceTemplate {
    /// A template whose requests carry `transactional_id` (a transactional producer's).
    pub fn for_producer(
        topic: &str,
        batch: Bytes,
        acks: i16,
        timeout_ms: i32,
        version: i16,
        transactional_id: Option<&str>,
    ) -> Result<Self> {
        let batch_len = batch.len();
        let request = ProduceRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned()))),
            )
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(PARTITION_SENTINEL)
                    .with_records(Some(batch.clone()))])]);
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &request, version, 0, CLIENT_ID)?;
        let frame = buf.to_vec();
        // The records field is the last field of the request; flexible versions
        // (v9+) end with three empty tagged-field sections after it.
        let trailer = if version >= 9 { 3 } else { 0 };
        ensure!(
            frame.len() >= batch_len + trailer + 8,
            "produce frame too short"
        );
        let batch_start = frame.len() - trailer - batch_len;
        ensure!(
            frame[batch_start..batch_start + batch_len] == batch[..],
            "records not where expected in the produce frame"
        );
        let prefix = if version >= 9 {
            uvarint_len(batch_len as u64 + 1)
        } else {
            4
        };
        let partition_at = batch_start - prefix - 4;
        ensure!(
            frame[partition_at..partition_at + 4] == PARTITION_SENTINEL.to_be_bytes(),
            "partition index not where expected in the produce frame"
        );
        Ok(Self {
            frame,
            batch_start,
            batch_len,
            partition_at,
        })
    }

    pub fn set_ids(&mut self, correlation_id: i32, partition: i32) {
        self.frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4]
            .copy_from_slice(&correlation_id.to_be_bytes());
        self.frame[self.partition_at..self.partition_at + 4]
            .copy_from_slice(&partition.to_be_bytes());
    }

    pub fn batch_mut(&mut self) -> &mut [u8] {
        &mut self.frame[self.batch_start..self.batch_start + self.batch_len]
    }
}

fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchTemplate;
    use bytes::Buf;
    use kafka_protocol::messages::produce_request::ProduceRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use kafka_protocol::protocol::Decodable;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn patched_produce_template_decodes_as_the_intended_request_in_every_version() {
        for version in PRODUCE_VERSIONS.0..=PRODUCE_VERSIONS.1 {
            for (count, transactional_id) in
                [(1usize, None), (100, Some("perf-txn-0")), (1000, None)]
            {
                let batch = BatchTemplate::build(count, 100, None, 0).unwrap();
                let mut t = ProduceTemplate::for_producer(
                    "perf-topic",
                    Bytes::from(batch.bytes.clone()),
                    -1,
                    5000,
                    version,
                    transactional_id,
                )
                .unwrap();
                t.set_ids(77, 3);
                crate::batch::stamp(t.batch_mut(), &batch.value_positions, 9, |i| i as u64);
                let mut frame = Bytes::from(t.frame.clone());
                let len = frame.get_i32() as usize;
                assert_eq!(len, frame.len());
                let header = decode_request_header_from_buffer(&mut frame).unwrap();
                assert_eq!(header.correlation_id, 77);
                assert_eq!(header.request_api_version, version);
                let request = ProduceRequest::decode(&mut frame, version).unwrap();
                assert_eq!(request.acks, -1);
                let partition = &request.topic_data[0].partition_data[0];
                assert_eq!(partition.index, 3);
                let mut records = partition.records.clone().unwrap();
                let set = RecordBatchDecoder::decode(&mut records).unwrap();
                assert_eq!(set.records.len(), count);
                assert_eq!(set.records[0].timestamp, 9);
            }
        }
    }

    #[test]
    fn fetch_request_encodes_in_every_supported_version() {
        let request = fetch_request(
            &topic_name("t"),
            &[(0, 5), (1, 7)],
            100,
            1 << 20,
            50 << 20,
            0,
        );
        for version in FETCH_VERSIONS.0..=FETCH_VERSIONS.1 {
            let mut buf = BytesMut::new();
            encode_request(&mut buf, &request, version, 1, CLIENT_ID).unwrap();
            let mut frame = buf.freeze();
            frame.advance(4);
            decode_request_header_from_buffer(&mut frame).unwrap();
            let back = FetchRequest::decode(&mut frame, version).unwrap();
            assert_eq!(back.topics[0].partitions[1].fetch_offset, 7);
        }
    }
}
