//! A blocking Kafka protocol client over `std::net::TcpStream`, for requests no
//! real client would send: hand-built frames, corrupted batches, odd versions.
//! Requests and responses are encoded with kafka-protocol; versions are chosen
//! from what the broker advertises in ApiVersions.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use ringlog::client::{self, BatchBuilder, BatchOptions, ClientError, Connection};

pub use ringlog::client::PeerState;

/// Read and write timeout of a raw connection.
pub const RAW_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// client_id in every raw request header.
pub const RAW_CLIENT_ID: &str = "ringlog-raw-test";

/// Kafka error codes the tests expect (Kafka's `Errors` enum).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_RECORD: i16 = 87;
}

/// Highest versions the raw client uses: later Produce and Fetch versions
/// address topics by id only, which these tests do not use.
pub const PRODUCE_VERSION_MAX: i16 = 9;
pub const FETCH_VERSION_MAX: i16 = 12;
pub const API_VERSIONS_VERSION_MAX: i16 = 3;

/// One blocking Kafka connection that panics on any error it does not expect.
pub struct RawClient {
    connection: Connection,
}

impl RawClient {
    /// Connects with bounded read and write timeouts; panics if it cannot.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let connection = Connection::connect_timeout(addr, RAW_IO_TIMEOUT, RAW_CLIENT_ID)
            .unwrap_or_else(|error| panic!("{error}"));
        RawClient { connection }
    }

    /// Connects and learns the broker's supported versions with ApiVersions.
    pub fn connect_negotiated(addr: SocketAddr) -> RawClient {
        let mut client = RawClient::connect(addr);
        client.negotiate();
        client
    }

    /// Sends ApiVersions (v3, then v0 if refused) and remembers the ranges.
    pub fn negotiate(&mut self) -> ApiVersionsResponse {
        self.connection
            .negotiate()
            .unwrap_or_else(|error| panic!("negotiating versions: {error}"))
    }

    /// Whether the broker advertised this API key.
    pub fn advertises(&self, api_key: i16) -> bool {
        self.connection.versions().advertises(api_key)
    }

    /// The highest version of `R` both sides support, at most `preferred_max`.
    pub fn version_of<R: Request>(&self, preferred_max: i16) -> i16 {
        self.connection
            .versions()
            .pick::<R>((R::VERSIONS.min, preferred_max))
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Encodes a complete frame (length prefix, header, body) for `request`.
    pub fn frame<R: Request>(&mut self, request: &R, version: i16) -> (i32, Vec<u8>) {
        let mut buf = bytes::BytesMut::new();
        let correlation_id = self
            .connection
            .encode(&mut buf, request, version)
            .unwrap_or_else(|error| panic!("{error}"));
        (correlation_id, buf.to_vec())
    }

    /// Sends `request` and decodes its response; panics on any I/O or decode error.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        self.connection
            .call(request, version)
            .unwrap_or_else(|error| panic!("API key {} v{version}: {error}", R::KEY))
    }

    /// `call` at the highest common version, at most `preferred_max`.
    pub fn call_negotiated<R: Request>(&mut self, request: &R, preferred_max: i16) -> R::Response {
        let version = self.version_of::<R>(preferred_max);
        self.call(request, version)
    }

    /// Reads one response frame and decodes it as the response to `R` v`version`.
    pub fn receive<R: Request>(&mut self, correlation_id: i32, version: i16) -> R::Response {
        self.connection
            .receive::<R>(correlation_id, version)
            .unwrap_or_else(|error| panic!("API key {} v{version}: {error}", R::KEY))
    }

    /// Like `receive`, but `None` when the broker closed the connection instead of answering.
    pub fn try_receive<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Option<R::Response> {
        match self.connection.receive::<R>(correlation_id, version) {
            Ok(response) => Some(response),
            Err(error) if error.is_disconnect() => None,
            Err(error) => panic!("API key {} v{version}: {error}", R::KEY),
        }
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.connection.write_all(bytes)
    }

    /// Closes the writing half (the broker sees end of stream).
    pub fn shutdown_write(&mut self) {
        let _ = self.connection.shutdown_write();
    }

    /// Reads one length-prefixed frame (without the prefix).
    pub fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        self.connection.read_frame()
    }

    /// Authenticates or re-authenticates with the library's SASL client
    /// (needs negotiated versions); the broker's session lifetime in ms.
    pub fn login(&mut self, login: &client::SaslLogin) -> Result<i64, ClientError> {
        self.connection.authenticate(login)
    }

    /// Waits up to `timeout` for the broker to close the connection or answer.
    pub fn peer_state(&mut self, timeout: Duration) -> PeerState {
        self.connection
            .peer_state(timeout)
            .unwrap_or_else(|error| panic!("setting a read timeout: {error}"))
    }
}

/// An ApiVersions request; the client software fields exist from v3 on.
pub fn handshake(client: &mut RawClient, mechanism: &str, version: i16) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    client.call(&request, version)
}

pub fn authenticate(client: &mut RawClient, token: &[u8]) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(token.to_vec().into());
    client.call(&request, 2)
}

pub fn plain_token(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// A raw connection to a SASL listener, logged in as `user` with PLAIN.
pub fn plain_login(addr: SocketAddr, user: &str, password: &str) -> RawClient {
    let mut client = RawClient::connect(addr);
    assert_eq!(
        handshake(&mut client, "PLAIN", 1).error_code,
        error_code::NONE
    );
    let answer = authenticate(&mut client, &plain_token(user, password));
    assert_eq!(answer.error_code, error_code::NONE, "{user} logs in");
    client
}

pub fn api_versions_request(version: i16) -> ApiVersionsRequest {
    client::connection::api_versions_request(version, RAW_CLIENT_ID)
}

pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds since 1970 fit i64")
}

/// One uncompressed RecordBatch v2 holding (key, value) pairs.
pub fn record_batch(entries: &[(&[u8], &[u8])]) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(BatchOptions::default(), entries.len());
    let timestamp_ms = now_ms();
    for (key, value) in entries {
        builder.push(
            Some(Bytes::copy_from_slice(key)),
            Some(Bytes::copy_from_slice(value)),
            timestamp_ms,
        );
    }
    builder.encode().unwrap_or_else(|error| panic!("{error}"))
}

/// Decodes every record of every batch in a fetch response's record bytes.
pub fn decode_records(bytes: &Bytes) -> Vec<Record> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .unwrap_or_else(|error| panic!("decoding fetched batches: {error}"))
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// A Produce request for one partition with the given record bytes.
pub fn produce_request(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// The only partition answer of a single-partition produce response.
pub fn single_produce_partition(response: &ProduceResponse) -> &PartitionProduceResponse {
    assert_eq!(
        response.responses.len(),
        1,
        "one topic in the produce response"
    );
    let topic = &response.responses[0];
    assert_eq!(
        topic.partition_responses.len(),
        1,
        "one partition in the produce response"
    );
    &topic.partition_responses[0]
}

/// A Fetch request for one partition.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(16 * 1024 * 1024)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 * 1024 * 1024)])])
}

/// The only partition answer of a single-partition fetch response.
pub fn single_fetch_partition(response: &FetchResponse) -> &PartitionData {
    assert_eq!(
        response.responses.len(),
        1,
        "one topic in the fetch response"
    );
    let topic = &response.responses[0];
    assert_eq!(
        topic.partitions.len(),
        1,
        "one partition in the fetch response"
    );
    &topic.partitions[0]
}

/// Produces one batch of (key, value) pairs with acks=-1 on a negotiated
/// connection and returns the partition answer.
pub fn produce(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    entries: &[(&[u8], &[u8])],
) -> PartitionProduceResponse {
    let request = produce_request(topic, partition, -1, record_batch(entries));
    let response = client.call_negotiated(&request, PRODUCE_VERSION_MAX);
    single_produce_partition(&response).clone()
}

/// Fetches from `offset` without waiting and returns the partition answer.
pub fn fetch(client: &mut RawClient, topic: &str, partition: i32, offset: i64) -> PartitionData {
    let request = fetch_request(topic, partition, offset, 0, 0);
    let response = client.call_negotiated(&request, FETCH_VERSION_MAX);
    single_fetch_partition(&response).clone()
}

/// The error code of a Fetch of partition 0 from offset 0 at the client's
/// `current_leader_epoch` (KIP-320).
pub fn fetch_at_epoch(client: &mut RawClient, topic: &str, epoch: i32) -> i16 {
    let mut request = fetch_request(topic, 0, 0, 0, 0);
    request.topics[0].partitions[0].current_leader_epoch = epoch;
    let response = client.call(&request, FETCH_VERSION_MAX);
    single_fetch_partition(&response).error_code
}

/// partitionLeaderEpoch of the first batch in `records` (bytes 12..16 of a v2 batch).
pub fn partition_leader_epoch(records: &[u8]) -> i32 {
    i32::from_be_bytes([records[12], records[13], records[14], records[15]])
}

/// DescribeQuorum for KRaft's metadata partition, `__cluster_metadata` 0.
pub fn describe_quorum_request() -> kafka_protocol::messages::DescribeQuorumRequest {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    kafka_protocol::messages::DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ])
}

/// OffsetForLeaderEpoch at `version` for partition 0 of `topic`: where
/// `leader_epoch` ended, asked as `replica_id` (-1: a consumer) at the
/// client's `current_leader_epoch` (KIP-320).
pub fn offset_for_leader_epoch(
    client: &mut RawClient,
    version: i16,
    replica_id: i32,
    topic: &str,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let request = kafka_protocol::messages::OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(replica_id))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current_leader_epoch)
                .with_leader_epoch(leader_epoch)])]);
    let response = client.call(&request, version);
    assert_eq!(response.topics.len(), 1, "one topic answered");
    assert_eq!(
        response.topics[0].partitions.len(),
        1,
        "one partition answered"
    );
    response.topics[0].partitions[0].clone()
}
