//! ringlog-perf against a small in-memory Kafka broker written here with
//! kafka-protocol, so the generator's wire behaviour is tested without
//! depending on the real broker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_topics_response::{CreatableTopicResult, CreateTopicsResponse};
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, HeaderVersion, StrBytes};

/// Every command here must finish well within this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const FETCH_RESPONSE_BYTES_MAX: usize = 4 << 20;

#[derive(Default)]
struct Log {
    /// Per topic, per partition: (base offset, batch bytes).
    topics: HashMap<String, Vec<Vec<(i64, Bytes)>>>,
}

fn next_offset(batches: &[(i64, Bytes)]) -> i64 {
    batches.last().map_or(0, |(base, b)| base + i64::from(i32::from_be_bytes(b[23..27].try_into().unwrap())) + 1)
}

struct MockBroker {
    port: u16,
}

type Shared = Arc<(Mutex<Log>, Condvar)>;

impl MockBroker {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Shared = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, shared, port);
                });
            }
        });
        Self { port }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn respond<R: Encodable + HeaderVersion>(out: &mut TcpStream, correlation_id: i32, version: i16, response: &R) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut buf, R::header_version(version)).unwrap();
    response.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    out.write_all(&buf)
}

fn serve(mut stream: TcpStream, shared: Shared, port: u16) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len)?;
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut frame)?;
        let mut frame = Bytes::from(frame);
        let header: RequestHeader = decode_request_header_from_buffer(&mut frame).unwrap();
        let (key, v, id) = (header.request_api_key, header.request_api_version, header.correlation_id);
        match ApiKey::try_from(key).unwrap() {
            ApiKey::ApiVersions => {
                let keys = [(0, 3, 9), (1, 4, 12), (2, 1, 7), (3, 1, 12), (18, 0, 3), (19, 2, 7)];
                let response = ApiVersionsResponse::default().with_api_keys(
                    keys.iter().map(|&(k, min, max)| ApiVersion::default().with_api_key(k).with_min_version(min).with_max_version(max)).collect(),
                );
                respond(&mut stream, id, v, &response)?;
            }
            ApiKey::Metadata => {
                let request = MetadataRequest::decode(&mut frame, v).unwrap();
                let log = shared.0.lock().unwrap();
                let mut response = MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(i32::from(port))]);
                for t in request.topics.unwrap_or_default() {
                    let name = t.name.unwrap();
                    let topic = match log.topics.get(name.0.as_str()) {
                        Some(parts) => MetadataResponseTopic::default().with_name(Some(name)).with_partitions(
                            (0..parts.len() as i32).map(|p| MetadataResponsePartition::default().with_partition_index(p).with_leader_id(BrokerId(0))).collect(),
                        ),
                        None => MetadataResponseTopic::default().with_name(Some(name)).with_error_code(3),
                    };
                    response.topics.push(topic);
                }
                respond(&mut stream, id, v, &response)?;
            }
            ApiKey::CreateTopics => {
                let request = CreateTopicsRequest::decode(&mut frame, v).unwrap();
                let mut log = shared.0.lock().unwrap();
                let mut response = CreateTopicsResponse::default();
                for t in request.topics {
                    log.topics.entry(t.name.0.to_string()).or_insert_with(|| vec![Vec::new(); t.num_partitions as usize]);
                    response.topics.push(CreatableTopicResult::default().with_name(t.name));
                }
                respond(&mut stream, id, v, &response)?;
            }
            ApiKey::ListOffsets => {
                let request = ListOffsetsRequest::decode(&mut frame, v).unwrap();
                let log = shared.0.lock().unwrap();
                let mut response = ListOffsetsResponse::default();
                for t in request.topics {
                    let parts = &log.topics[t.name.0.as_str()];
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let offset = if p.timestamp == -2 { 0 } else { next_offset(&parts[p.partition_index as usize]) };
                            ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_offset(offset)
                        })
                        .collect();
                    response.topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
                }
                respond(&mut stream, id, v, &response)?;
            }
            ApiKey::Produce => {
                let request = ProduceRequest::decode(&mut frame, v).unwrap();
                let mut response = ProduceResponse::default();
                {
                    let mut log = shared.0.lock().unwrap();
                    for t in request.topic_data {
                        let parts = log.topics.get_mut(t.name.0.as_str()).unwrap();
                        let mut out = TopicProduceResponse::default().with_name(t.name.clone());
                        for p in t.partition_data {
                            let records = p.records.unwrap();
                            // The generator's batches must carry a valid CRC-32C.
                            let crc = u32::from_be_bytes(records[17..21].try_into().unwrap());
                            let error_code = if crc == crc32c::crc32c(&records[21..]) { 0 } else { 2 };
                            let batches = &mut parts[p.index as usize];
                            let base = next_offset(batches);
                            if error_code == 0 {
                                let mut stored = BytesMut::from(&records[..]);
                                stored[0..8].copy_from_slice(&base.to_be_bytes());
                                batches.push((base, stored.freeze()));
                            }
                            out.partition_responses
                                .push(PartitionProduceResponse::default().with_index(p.index).with_error_code(error_code).with_base_offset(base));
                        }
                        response.responses.push(out);
                    }
                    shared.1.notify_all();
                }
                if request.acks != 0 {
                    respond(&mut stream, id, v, &response)?;
                }
            }
            ApiKey::Fetch => {
                let request = FetchRequest::decode(&mut frame, v).unwrap();
                let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
                let mut log = shared.0.lock().unwrap();
                let response = loop {
                    let mut response = FetchResponse::default();
                    let mut any = false;
                    for t in &request.topics {
                        let parts = &log.topics[t.topic.0.as_str()];
                        let mut out = FetchableTopicResponse::default().with_topic(t.topic.clone());
                        for p in &t.partitions {
                            let batches = &parts[p.partition as usize];
                            let mut data = BytesMut::new();
                            for (base, b) in batches {
                                let last = next_offset(std::slice::from_ref(&(*base, b.clone()))) - 1;
                                if last >= p.fetch_offset && data.len() < FETCH_RESPONSE_BYTES_MAX {
                                    data.extend_from_slice(b);
                                }
                            }
                            any |= !data.is_empty();
                            out.partitions.push(
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_high_watermark(next_offset(batches))
                                    .with_records(Some(data.freeze())),
                            );
                        }
                        response.responses.push(out);
                    }
                    let now = Instant::now();
                    if any || now >= deadline {
                        break response;
                    }
                    log = shared.1.wait_timeout(log, deadline - now).unwrap().0;
                };
                drop(log);
                respond(&mut stream, id, v, &response)?;
            }
            other => panic!("mock broker got unexpected {other:?}"),
        }
        let _ = frame.remaining();
    }
}

/// Runs ringlog-perf with `args`; returns (success, stdout, stderr).
fn perf(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringlog-perf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringlog-perf {args:?} ran past {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.success(), stdout, stderr)
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("some output")).expect("last stdout line is JSON")
}

#[test]
fn produce_at_max_rate_reports_throughput_latency_and_cpu_as_json() {
    let broker = MockBroker::start();
    let addr = broker.addr();
    let (ok, out, err) = perf(&["produce", "--bootstrap", &addr, "--topic", "t1", "--partitions", "3", "--duration", "1.5", "--json", "--batch-records", "100", "--in-flight", "4"]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    assert!(j["records_per_sec"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["mb_per_sec"].as_f64().unwrap() > 0.0);
    assert!(j["cpu_percent"].as_f64().unwrap() > 0.0);
    assert_eq!(j["errors"], 0, "{err}");
    for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(j["latency_us"][p].as_f64().unwrap() > 0.0, "{p} in {j}");
    }
    assert!(err.contains("produced"), "progress line on stderr: {err}");
}

#[test]
fn e2e_at_a_fixed_rate_measures_every_record_end_to_end() {
    let broker = MockBroker::start();
    let addr = broker.addr();
    let (ok, out, err) = perf(&[
        "e2e", "--bootstrap", &addr, "--topic", "t2", "--partitions", "2", "--duration", "1", "--rate", "20000", "--record-size", "64", "--json",
        "--producers", "2", "--consumers", "2", "--linger-ms", "1", "--acks", "-1",
    ]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    let produced = j["records"].as_u64().unwrap();
    // Open loop at 20k/s for 1 s: within a few percent of 20,000 records.
    assert!((19_000..=20_100).contains(&produced), "{j}");
    assert_eq!(j["latency_us"]["count"].as_u64().unwrap(), produced, "{j}");
    assert!(j["consumed_records_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn catch_up_consumer_reads_to_the_end_and_stops() {
    let broker = MockBroker::start();
    let addr = broker.addr();
    let (ok, _, err) = perf(&["produce", "--bootstrap", &addr, "--topic", "t3", "--partitions", "2", "--records", "50000", "--duration", "30", "--stamp"]);
    assert!(ok, "{err}");
    let (ok, out, err) = perf(&["consume", "--bootstrap", &addr, "--topic", "t3", "--to-end", "--duration", "30", "--json", "--fetch-wait-ms", "10"]);
    assert!(ok, "{err}");
    let j = last_json(&out);
    assert_eq!(j["records"].as_u64().unwrap(), 50_000, "{j}");
    assert_eq!(j["latency_us"]["count"].as_u64().unwrap(), 50_000, "stamped values are measured: {j}");
}

#[test]
fn compressed_produce_is_accepted() {
    let broker = MockBroker::start();
    let addr = broker.addr();
    for codec in ["gzip", "lz4", "zstd", "snappy"] {
        let (ok, out, err) = perf(&["e2e", "--bootstrap", &addr, "--topic", codec, "--duration", "0.5", "--rate", "5000", "--compression", codec, "--json"]);
        assert!(ok, "{codec}: {err}");
        let j = last_json(&out);
        assert_eq!(j["errors"], 0, "{codec}: {err}");
        assert!(j["latency_us"]["count"].as_u64().unwrap() > 0, "{codec}: {j}");
    }
}

#[test]
fn unreachable_broker_fails_with_a_message() {
    let (ok, _, err) = perf(&["produce", "--bootstrap", "127.0.0.1:1", "--duration", "1"]);
    assert!(!ok);
    assert!(err.contains("connecting to 127.0.0.1:1"), "{err}");
}

#[test]
fn idle_mode_holds_the_requested_connections() {
    let broker = MockBroker::start();
    let addr = broker.addr();
    let (ok, out, err) = perf(&["idle", "--bootstrap", &addr, "--connections", "50", "--duration", "0.2"]);
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["connections"], 50);
}

#[test]
fn sink_mode_acknowledges_produce_requests() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut sink = Command::new(env!("CARGO_BIN_EXE_ringlog-perf"))
        .args(["sink", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "sink did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = perf(&["produce", "--bootstrap", &addr, "--topic", "s", "--partitions", "2", "--records", "20000", "--duration", "10", "--json"]);
    let _ = sink.kill();
    let _ = sink.wait();
    let (ok, out, err) = result;
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["records"], 20_000);
}
