//! `ringlog-perf sink`: a Kafka endpoint that acknowledges produce requests
//! and discards the records. It measures the generator's own ceiling on a
//! machine: whatever rate the generator reaches against the sink is the most
//! it can show for any broker there.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    ResponseHeader,
};
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Decodable, Encodable, HeaderVersion, StrBytes,
};

use ringlog::client::connection::FRAME_BYTES_MAX;
use ringlog::storage::batch::{HEADER_BYTES, RECORD_COUNT_OFFSET};

use crate::wire;

/// Partitions a topic gets when the sink creates it implicitly.
const SINK_DEFAULT_PARTITIONS: i32 = 1;
/// (api key, min, max) the sink answers.
const SINK_API_VERSIONS: [(i16, i16, i16); 5] =
    [(0, 3, 9), (2, 1, 7), (3, 1, 12), (18, 0, 3), (19, 2, 7)];

// The record count is the header's last field.
const _: () = assert!(RECORD_COUNT_OFFSET + 4 == HEADER_BYTES);

/// Partition count per topic, shared by every connection.
type Topics = Arc<Mutex<HashMap<String, i32>>>;

pub fn run(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    let port = listener.local_addr()?.port();
    eprintln!("sink listening on {}", listener.local_addr()?);
    let topics: Topics = Arc::default();
    for stream in listener.incoming() {
        let stream = stream?;
        let topics = topics.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &topics, port) {
                let text = format!("{e:#}");
                if !text.contains("closed") {
                    eprintln!("sink connection: {text}");
                }
            }
        });
    }
    Ok(())
}

fn respond<R: Encodable + HeaderVersion>(
    out: &mut TcpStream,
    buf: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Result<()> {
    buf.clear();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(buf, R::header_version(version))?;
    response.encode(buf, version)?;
    let len = i32::try_from(buf.len() - 4)?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    out.write_all(buf)?;
    Ok(())
}

/// Next offset per (topic, partition), so produce answers count up as a
/// broker's would.
type NextOffsets = HashMap<(String, i32), i64>;

fn serve(mut stream: TcpStream, topics: &Topics, port: u16) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    let mut next_offsets = NextOffsets::new();
    loop {
        let mut frame = read_request(&mut stream)?;
        let header = decode_request_header_from_buffer(&mut frame)?;
        let (v, id) = (header.request_api_version, header.correlation_id);
        let out = &mut out;
        match ApiKey::try_from(header.request_api_key) {
            Ok(ApiKey::ApiVersions) => respond(&mut stream, out, id, v, &api_versions())?,
            Ok(ApiKey::Metadata) => {
                let response = metadata(MetadataRequest::decode(&mut frame, v)?, topics, port)?;
                respond(&mut stream, out, id, v, &response)?;
            }
            Ok(ApiKey::CreateTopics) => {
                let response = create_topics(CreateTopicsRequest::decode(&mut frame, v)?, topics)?;
                respond(&mut stream, out, id, v, &response)?;
            }
            Ok(ApiKey::ListOffsets) => {
                let response = list_offsets(ListOffsetsRequest::decode(&mut frame, v)?);
                respond(&mut stream, out, id, v, &response)?;
            }
            Ok(ApiKey::Produce) => {
                let request = ProduceRequest::decode(&mut frame, v)?;
                let response = produce(&request, &mut next_offsets);
                // acks=0: the client reads no answer.
                if request.acks != 0 {
                    respond(&mut stream, out, id, v, &response)?;
                }
            }
            other => bail!(
                "sink does not answer API key {} ({other:?})",
                header.request_api_key
            ),
        }
    }
}

/// One size-checked request frame, without its length prefix.
fn read_request(stream: &mut TcpStream) -> Result<Bytes> {
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        bail!("closed");
    }
    let len = usize::try_from(i32::from_be_bytes(len)).context("negative frame length")?;
    ensure!(len <= FRAME_BYTES_MAX, "request of {len} bytes");
    let mut frame = BytesMut::zeroed(len);
    stream.read_exact(&mut frame)?;
    Ok(frame.freeze())
}

fn lock_topics(topics: &Topics) -> Result<MutexGuard<'_, HashMap<String, i32>>> {
    topics
        .lock()
        .map_err(|_| anyhow::anyhow!("topic table poisoned"))
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        SINK_API_VERSIONS
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

/// The sink as the only broker; known topics with every partition led by it.
fn metadata(request: MetadataRequest, topics: &Topics, port: u16) -> Result<MetadataResponse> {
    let known = lock_topics(topics)?.clone();
    let mut response =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(port))]);
    for t in request.topics.unwrap_or_default() {
        let Some(name) = t.name else { continue };
        let topic = match known.get(name.0.as_str()).copied() {
            Some(n) => MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_partitions(
                    (0..n)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(0))
                        })
                        .collect(),
                ),
            None => MetadataResponseTopic::default()
                .with_name(Some(name))
                .with_error_code(wire::ERROR_UNKNOWN_TOPIC_OR_PARTITION),
        };
        response.topics.push(topic);
    }
    Ok(response)
}

fn create_topics(request: CreateTopicsRequest, topics: &Topics) -> Result<CreateTopicsResponse> {
    let mut response = CreateTopicsResponse::default();
    let mut known = lock_topics(topics)?;
    for t in request.topics {
        let n = if t.num_partitions > 0 {
            t.num_partitions
        } else {
            SINK_DEFAULT_PARTITIONS
        };
        known.entry(t.name.0.to_string()).or_insert(n);
        response
            .topics
            .push(CreatableTopicResult::default().with_name(t.name));
    }
    Ok(response)
}

/// Every partition starts and ends at offset 0: the sink stores nothing.
fn list_offsets(request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for t in request.topics {
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_offset(0)
            })
            .collect();
        response.topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    response
}

/// Acknowledges every batch at the partition's next offset, then moves
/// that offset on by the batch's record count.
fn produce(request: &ProduceRequest, next_offsets: &mut NextOffsets) -> ProduceResponse {
    let mut response = ProduceResponse::default();
    for t in &request.topic_data {
        let mut answer = TopicProduceResponse::default().with_name(t.name.clone());
        for p in &t.partition_data {
            let records = p.records.as_deref().unwrap_or_default();
            let next = next_offsets
                .entry((t.name.0.to_string(), p.index))
                .or_insert(0);
            answer.partition_responses.push(
                PartitionProduceResponse::default()
                    .with_index(p.index)
                    .with_base_offset(*next),
            );
            *next += record_count(records);
        }
        response.responses.push(answer);
    }
    response
}

/// The record count from a batch header; 0 when the header is cut short
/// (the sink does not check batches, it only numbers them).
fn record_count(records: &[u8]) -> i64 {
    match records.get(RECORD_COUNT_OFFSET..HEADER_BYTES) {
        Some(count) => i64::from(i32::from_be_bytes([count[0], count[1], count[2], count[3]])),
        None => 0,
    }
}
