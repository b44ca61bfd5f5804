//! Kafka wire plumbing: a framed blocking connection, version negotiation,
//! control-plane requests (ApiVersions, Metadata, CreateTopics, ListOffsets)
//! and the pre-encoded Produce request that is patched per send.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    api_versions_request::ApiVersionsRequest, create_topics_request::CreatableTopic,
    create_topics_request::CreateTopicsRequest, fetch_request::FetchPartition,
    fetch_request::FetchRequest, fetch_request::FetchTopic,
    list_offsets_request::ListOffsetsPartition, list_offsets_request::ListOffsetsRequest,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequest,
    metadata_request::MetadataRequestTopic, produce_request::PartitionProduceData,
    produce_request::ProduceRequest, produce_request::TopicProduceData, ApiKey, BrokerId,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response frame accepted; a fetch answer is bounded by max_bytes
/// (`FETCH_MAX_BYTES`) plus headers.
pub const FRAME_BYTES_MAX: usize = 256 << 20;
/// Bytes asked of the kernel per read(2) when no bigger frame is pending.
pub const READ_CHUNK_BYTES: usize = 256 << 10;
pub const CLIENT_ID: &str = "ringlog-perf";
/// How long control-plane requests may take.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

// Kafka error codes this tool reacts to.
pub const ERROR_NONE: i16 = 0;
pub const ERROR_OFFSET_OUT_OF_RANGE: i16 = 1;
pub const ERROR_UNSUPPORTED_VERSION: i16 = 35;
pub const ERROR_TOPIC_ALREADY_EXISTS: i16 = 36;

/// Versions this tool can speak per API (inclusive). Produce and Fetch stop
/// before the topic-id-only versions (Produce v13, Fetch v13).
pub const PRODUCE_VERSIONS: (i16, i16) = (3, 12);
pub const FETCH_VERSIONS: (i16, i16) = (4, 12);
pub const METADATA_VERSIONS: (i16, i16) = (1, 12);
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);
pub const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);

/// A blocking TCP connection that reads length-prefixed Kafka frames.
pub struct Connection {
    stream: TcpStream,
    read_buf: BytesMut,
    next_correlation_id: i32,
}

impl Connection {
    pub fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            next_correlation_id: 1,
        })
    }

    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        id
    }

    pub fn write_all(&mut self, frame: &[u8]) -> Result<()> {
        self.stream.write_all(frame).context("sending request")
    }

    /// Waits up to `timeout` for bytes to read; `true` when readable.
    pub fn poll_readable(&self, timeout: Duration) -> Result<bool> {
        let mut fds = libc::pollfd {
            fd: self.stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // ppoll, not poll: a millisecond timeout would round sub-millisecond
        // waits for the next due batch down to 0 and spin.
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd and timespec for the duration of the call.
        let n = unsafe { libc::ppoll(&mut fds, 1, &ts, std::ptr::null()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e).context("poll");
        }
        Ok(n > 0)
    }

    /// One read(2) into the buffer; blocks if nothing is there.
    pub fn fill(&mut self) -> Result<usize> {
        let want = match self.pending_frame_len() {
            Some(len) if len + 4 > self.read_buf.len() => {
                (len + 4 - self.read_buf.len()).max(READ_CHUNK_BYTES)
            }
            _ => READ_CHUNK_BYTES,
        };
        self.read_buf.reserve(want);
        let spare = self.read_buf.spare_capacity_mut();
        // Read straight into spare capacity: zeroing a large buffer before every
        // read would cost as much as the copy itself at GB/s.
        // SAFETY: the pointer and length describe the buffer's spare capacity;
        // read(2) initialises the first n bytes, and only those are exposed.
        let n = unsafe {
            libc::read(
                self.stream.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e).context("reading response");
        }
        if n == 0 {
            bail!("broker closed the connection");
        }
        // SAFETY: read(2) wrote n bytes into the spare capacity.
        unsafe { self.read_buf.set_len(self.read_buf.len() + n as usize) };
        Ok(n as usize)
    }

    fn pending_frame_len(&self) -> Option<usize> {
        if self.read_buf.len() < 4 {
            return None;
        }
        let len = i32::from_be_bytes([
            self.read_buf[0],
            self.read_buf[1],
            self.read_buf[2],
            self.read_buf[3],
        ]);
        Some(len.max(0) as usize)
    }

    /// A complete frame (without its length prefix) if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>> {
        let Some(len) = self.pending_frame_len() else {
            return Ok(None);
        };
        ensure!(
            len <= FRAME_BYTES_MAX,
            "response frame of {len} bytes exceeds {FRAME_BYTES_MAX}"
        );
        if self.read_buf.len() < len + 4 {
            return Ok(None);
        }
        self.read_buf.advance(4);
        Ok(Some(self.read_buf.split_to(len).freeze()))
    }

    pub fn read_frame(&mut self) -> Result<Bytes> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.fill()?;
        }
    }

    /// Sends one request and waits for its response (control plane only).
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id();
        let mut buf = BytesMut::new();
        encode_request(&mut buf, request, version, correlation_id)?;
        self.stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        self.write_all(&buf)?;
        let frame = self.read_frame();
        self.stream.set_read_timeout(None)?;
        let (got, response) = decode_response::<R>(frame?, version)?;
        ensure!(
            got == correlation_id,
            "correlation id {got}, expected {correlation_id}"
        );
        Ok(response)
    }
}

/// Appends a complete frame (length prefix, header, body) to `buf`.
pub fn encode_request<R: Request>(
    buf: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let start = buf.len();
    buf.put_i32(0);
    header.encode(buf, R::header_version(version))?;
    request.encode(buf, version)?;
    let len = i32::try_from(buf.len() - start - 4)?;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<(i32, R::Response)> {
    let header = ResponseHeader::decode(
        &mut frame,
        <R::Response as HeaderVersion>::header_version(version),
    )?;
    let response = R::Response::decode(&mut frame, version)?;
    Ok((header.correlation_id, response))
}

/// Highest version both sides speak, per API key.
#[derive(Debug, Clone, Default)]
pub struct Versions(HashMap<i16, (i16, i16)>);

impl Versions {
    pub fn negotiate(conn: &mut Connection) -> Result<Self> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response = conn.call(&request, 3)?;
        if response.error_code == ERROR_UNSUPPORTED_VERSION {
            response = conn.call(&ApiVersionsRequest::default(), 0)?;
        }
        ensure!(
            response.error_code == ERROR_NONE,
            "ApiVersions failed with error {}",
            response.error_code
        );
        Ok(Self(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
        ))
    }

    pub fn pick(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16> {
        let (min, max) = self
            .0
            .get(&(key as i16))
            .copied()
            .ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
        let v = max.min(ours.1);
        ensure!(
            v >= min.max(ours.0),
            "no common version for {key:?}: broker {min}..={max}, ours {}..={}",
            ours.0,
            ours.1
        );
        Ok(v)
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Partition count of `topic`, or None if the broker does not know it.
pub fn topic_partitions(
    conn: &mut Connection,
    versions: &Versions,
    topic: &str,
) -> Result<Option<(i32, bool)>> {
    let version = versions.pick(ApiKey::Metadata, METADATA_VERSIONS)?;
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

pub fn create_topic(
    conn: &mut Connection,
    versions: &Versions,
    topic: &str,
    partitions: i32,
) -> Result<()> {
    let version = versions.pick(ApiKey::CreateTopics, CREATE_TOPICS_VERSIONS)?;
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

/// Offsets of `partitions` at `timestamp` (-1 latest, -2 earliest).
pub fn list_offsets(
    conn: &mut Connection,
    versions: &Versions,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<HashMap<i32, i64>> {
    let version = versions.pick(ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS)?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
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
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
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
    pub fn new(
        topic: &str,
        batch: Bytes,
        acks: i16,
        timeout_ms: i32,
        version: i16,
    ) -> Result<Self> {
        let batch_len = batch.len();
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(PARTITION_SENTINEL)
                    .with_records(Some(batch.clone()))])]);
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &request, version, 0)?;
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
    use kafka_protocol::messages::produce_request::ProduceRequest;
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn patched_produce_template_decodes_as_the_intended_request_in_every_version() {
        for version in PRODUCE_VERSIONS.0..=PRODUCE_VERSIONS.1 {
            for count in [1usize, 100, 1000] {
                let batch = BatchTemplate::build(count, 100, None, 0).unwrap();
                let mut t = ProduceTemplate::new(
                    "perf-topic",
                    Bytes::from(batch.bytes.clone()),
                    -1,
                    5000,
                    version,
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
        let request = fetch_request(&topic_name("t"), &[(0, 5), (1, 7)], 100, 1 << 20, 50 << 20);
        for version in FETCH_VERSIONS.0..=FETCH_VERSIONS.1 {
            let mut buf = BytesMut::new();
            encode_request(&mut buf, &request, version, 1).unwrap();
            let mut frame = buf.freeze();
            frame.advance(4);
            decode_request_header_from_buffer(&mut frame).unwrap();
            let back = FetchRequest::decode(&mut frame, version).unwrap();
            assert_eq!(back.topics[0].partitions[1].fetch_offset, 7);
        }
    }
}
