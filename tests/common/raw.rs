//! A blocking Kafka protocol client over `std::net::TcpStream`, for requests no
//! real client would send: hand-built frames, corrupted batches, odd versions.
//! Requests and responses are encoded with kafka-protocol; versions are chosen
//! from what the broker advertises in ApiVersions.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Read and write timeout of a raw connection.
pub const RAW_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response frame the raw client accepts.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// client_id in every raw request header.
pub const RAW_CLIENT_ID: &str = "ringlog-raw-test";

/// Kafka error codes the tests expect (Kafka's `Errors` enum).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
}

/// Highest versions the raw client uses: later Produce and Fetch versions
/// address topics by id only, which these tests do not use.
pub const PRODUCE_VERSION_MAX: i16 = 9;
pub const FETCH_VERSION_MAX: i16 = 12;
pub const API_VERSIONS_VERSION_MAX: i16 = 3;

/// What became of a connection after a bad request.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerState {
    /// The broker closed (or reset) the connection.
    Closed,
    /// The broker answered with a frame of this many bytes.
    Answered(usize),
    /// Nothing happened within the wait.
    Open,
}

/// One blocking Kafka connection.
pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
    /// api key -> (min, max) as advertised by the broker.
    versions: HashMap<i16, (i16, i16)>,
}

impl RawClient {
    /// Connects with bounded read and write timeouts; panics if it cannot.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, RAW_IO_TIMEOUT)
            .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
        stream
            .set_read_timeout(Some(RAW_IO_TIMEOUT))
            .expect("a non-zero timeout is valid");
        stream
            .set_write_timeout(Some(RAW_IO_TIMEOUT))
            .expect("a non-zero timeout is valid");
        stream
            .set_nodelay(true)
            .expect("TCP_NODELAY can be set on a connected socket");
        RawClient {
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
        }
    }

    /// Connects and learns the broker's supported versions with ApiVersions.
    pub fn connect_negotiated(addr: SocketAddr) -> RawClient {
        let mut client = RawClient::connect(addr);
        client.negotiate();
        client
    }

    /// Sends ApiVersions (v3, then v0 if refused) and remembers the ranges.
    pub fn negotiate(&mut self) -> ApiVersionsResponse {
        let mut response = self.call(
            &api_versions_request(API_VERSIONS_VERSION_MAX),
            API_VERSIONS_VERSION_MAX,
        );
        if response.error_code == error_code::UNSUPPORTED_VERSION {
            response = self.call(&api_versions_request(0), 0);
        }
        assert_eq!(
            response.error_code,
            error_code::NONE,
            "ApiVersions error code"
        );
        self.versions = response
            .api_keys
            .iter()
            .map(|range| (range.api_key, (range.min_version, range.max_version)))
            .collect();
        response
    }

    /// Whether the broker advertised this API key.
    pub fn advertises(&self, api_key: i16) -> bool {
        self.versions.contains_key(&api_key)
    }

    /// The highest version of `R` both sides support, at most `preferred_max`.
    pub fn version_of<R: Request>(&self, preferred_max: i16) -> i16 {
        let (broker_min, broker_max) = *self
            .versions
            .get(&R::KEY)
            .unwrap_or_else(|| panic!("broker does not advertise API key {}", R::KEY));
        let version = broker_max.min(R::VERSIONS.max).min(preferred_max);
        assert!(
            version >= broker_min && version >= R::VERSIONS.min,
            "no common version for API key {}: broker {broker_min}..={broker_max}, client {:?}",
            R::KEY,
            R::VERSIONS
        );
        version
    }

    /// Encodes a complete frame (length prefix, header, body) for `request`.
    pub fn frame<R: Request>(&mut self, request: &R, version: i16) -> (i32, Vec<u8>) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(RAW_CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, R::header_version(version))
            .expect("a request header always encodes");
        request
            .encode(&mut buf, version)
            .unwrap_or_else(|error| panic!("encoding API key {} v{version}: {error}", R::KEY));
        let length = i32::try_from(buf.len() - 4).expect("test requests are small");
        buf[..4].copy_from_slice(&length.to_be_bytes());
        (correlation_id, buf.to_vec())
    }

    /// Sends `request` and decodes its response; panics on any I/O or decode error.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let (correlation_id, frame) = self.frame(request, version);
        self.write_raw(&frame)
            .unwrap_or_else(|error| panic!("sending API key {} v{version}: {error}", R::KEY));
        self.receive::<R>(correlation_id, version)
    }

    /// `call` at the highest common version, at most `preferred_max`.
    pub fn call_negotiated<R: Request>(&mut self, request: &R, preferred_max: i16) -> R::Response {
        let version = self.version_of::<R>(preferred_max);
        self.call(request, version)
    }

    /// Reads one response frame and decodes it as the response to `R` v`version`.
    pub fn receive<R: Request>(&mut self, correlation_id: i32, version: i16) -> R::Response {
        let frame = self.read_frame().unwrap_or_else(|error| {
            panic!(
                "reading the response to API key {} v{version}: {error}",
                R::KEY
            )
        });
        decode_response::<R>(frame, correlation_id, version)
    }

    /// Like `receive`, but `None` when the broker closed the connection instead of answering.
    pub fn try_receive<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Option<R::Response> {
        let frame = match self.read_frame() {
            Ok(frame) => frame,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return None
            }
            Err(error) => panic!(
                "reading the response to API key {} v{version}: {error}",
                R::KEY
            ),
        };
        Some(decode_response::<R>(frame, correlation_id, version))
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Closes the writing half (the broker sees end of stream).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one length-prefixed frame (without the prefix).
    pub fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        let mut length_bytes = [0u8; 4];
        self.stream.read_exact(&mut length_bytes)?;
        let length = i32::from_be_bytes(length_bytes);
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l <= RESPONSE_BYTES_MAX)
            .ok_or_else(|| {
                io::Error::new(ErrorKind::InvalidData, format!("response length {length}"))
            })?;
        let mut frame = vec![0u8; length];
        self.stream.read_exact(&mut frame)?;
        Ok(frame)
    }

    /// Waits up to `timeout` for the broker to close the connection or answer.
    pub fn peer_state(&mut self, timeout: Duration) -> PeerState {
        let deadline = Instant::now() + timeout;
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("a non-zero timeout is valid");
        let mut length_bytes = [0u8; 4];
        let mut filled = 0;
        let state = loop {
            match self.stream.read(&mut length_bytes[filled..]) {
                Ok(0) => break PeerState::Closed,
                Ok(n) => {
                    filled += n;
                    if filled == length_bytes.len() {
                        let length = i32::from_be_bytes(length_bytes);
                        break PeerState::Answered(usize::try_from(length).unwrap_or(0));
                    }
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    break PeerState::Open
                }
                Err(error)
                    if error.kind() == ErrorKind::Interrupted && Instant::now() < deadline => {}
                Err(_) => break PeerState::Closed,
            }
        };
        self.stream
            .set_read_timeout(Some(RAW_IO_TIMEOUT))
            .expect("a non-zero timeout is valid");
        state
    }
}

/// Decodes a response frame (without its length prefix) to `R` v`version`.
pub fn decode_response<R: Request>(
    frame: Vec<u8>,
    correlation_id: i32,
    version: i16,
) -> R::Response {
    let mut bytes = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut bytes, R::Response::header_version(version))
        .unwrap_or_else(|error| panic!("decoding a response header: {error}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "response correlation id"
    );
    R::Response::decode(&mut bytes, version).unwrap_or_else(|error| {
        panic!(
            "decoding the response to API key {} v{version}: {error}",
            R::KEY
        )
    })
}

/// An ApiVersions request; the client software fields exist from v3 on.
pub fn api_versions_request(version: i16) -> ApiVersionsRequest {
    let request = ApiVersionsRequest::default();
    if version < 3 {
        return request;
    }
    request
        .with_client_software_name(StrBytes::from_static_str("ringlog-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"))
}

pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds since 1970 fit i64")
}

/// A record with a key and a value, offsets relative to the batch.
///
/// kafka-protocol starts a new batch wherever `offset - sequence` changes, and
/// derives the batch's base sequence from the first record; `sequence =
/// offset_delta - 1` keeps all records in one batch with base sequence -1
/// (no idempotent producer).
pub fn record(offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: offset_delta,
        sequence: i32::try_from(offset_delta).expect("test batches are small") - 1,
        timestamp: now_ms(),
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: Default::default(),
    }
}

/// One uncompressed RecordBatch v2 holding (key, value) pairs.
pub fn record_batch(entries: &[(&[u8], &[u8])]) -> Bytes {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| record(i as i64, Some(key), Some(value)))
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a record batch");
    buf.freeze()
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
