//! Bad input from a raw TCP client: garbage, impossible lengths, truncated
//! frames, unknown APIs and versions, corrupt or oversized batches, invalid
//! acks and out-of-range fetches. Each gets Kafka's error code or a closed
//! connection, and afterwards the broker still serves others and its data is intact.

mod common;

use std::time::Duration;

use bytes::BufMut;
use common::clients::create_topic;
use common::raw::{self, error_code, PeerState, RawClient};
use common::{unique_topic, Broker};
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Decodable;

/// How long the broker may take to close a connection after bad input.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Records written before the bad input and checked after it.
const SEED_RECORDS: usize = 5;
/// The broker's resident memory after bad input stays under this.
const BROKER_RSS_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// API keys: ApiVersions and Produce.
const API_VERSIONS_KEY: i16 = 18;

/// A broker with a topic holding `SEED_RECORDS` known records.
struct Seeded {
    broker: Broker,
    topic: String,
}

fn seed_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..SEED_RECORDS)
        .map(|i| {
            (
                format!("seed-key-{i}").into_bytes(),
                format!("seed-value-{i}").into_bytes(),
            )
        })
        .collect()
}

fn seeded(broker: Broker) -> Seeded {
    let topic = unique_topic("seeded");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let entries = seed_entries();
    let borrowed: Vec<(&[u8], &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let answer = raw::produce(&mut client, &topic, 0, &borrowed);
    assert_eq!(answer.error_code, error_code::NONE, "seeding produce");
    assert_eq!(answer.base_offset, 0, "seeding base offset");
    Seeded { broker, topic }
}

impl Seeded {
    /// A new connection is served and the seeded records are unchanged.
    fn assert_serving_and_intact(&mut self) {
        assert!(
            !self.broker.has_exited(),
            "the broker process died\n{}",
            self.broker.log_tail()
        );
        let mut client = RawClient::connect_negotiated(self.broker.addr());
        let fetched = raw::fetch(&mut client, &self.topic, 0, 0);
        assert_eq!(
            fetched.error_code,
            error_code::NONE,
            "fetch after bad input"
        );
        assert_eq!(
            fetched.high_watermark, SEED_RECORDS as i64,
            "high watermark after bad input"
        );
        let records = raw::decode_records(fetched.records.as_ref().expect("seeded records"));
        let got: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|r| {
                (
                    r.key.as_ref().map(|k| k.to_vec()).unwrap_or_default(),
                    r.value.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(got, seed_entries(), "seeded records after bad input");
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..SEED_RECORDS as i64).collect::<Vec<_>>(),
            "seeded offsets"
        );
        if let Some(rss) = self.broker.pid().and_then(resident_bytes) {
            assert!(
                rss < BROKER_RSS_BYTES_MAX,
                "broker resident memory {rss} bytes after bad input"
            );
        }
    }
}

/// VmRSS of a process in bytes, from /proc.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends bytes on a fresh connection and reports what the broker did.
fn send_and_observe(broker: &Broker, bytes: &[u8]) -> PeerState {
    let mut client = RawClient::connect(broker.addr());
    // The broker may close before reading everything; a write error is a close.
    if client.write_raw(bytes).is_err() {
        return PeerState::Closed;
    }
    client.peer_state(CLOSE_TIMEOUT)
}

/// A frame with a hand-built request header (v1, or v2 with an empty tag
/// buffer when `flexible`) and the given body.
fn hand_built_frame(
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    flexible: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.put_i16(api_key);
    payload.put_i16(api_version);
    payload.put_i32(correlation_id);
    let client_id = b"bad-input-test";
    payload.put_i16(client_id.len() as i16);
    payload.put_slice(client_id);
    if flexible {
        payload.put_u8(0); // no tagged fields
    }
    payload.put_slice(body);
    let mut frame = Vec::new();
    frame.put_i32(payload.len() as i32);
    frame.put_slice(&payload);
    frame
}

#[test]
fn garbage_bytes_close_the_connection() {
    let mut seeded = seeded(Broker::start());
    let inputs: [(&str, Vec<u8>); 4] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("a frame of 0xff bytes", {
            let mut frame = vec![0, 0, 0, 16];
            frame.extend_from_slice(&[0xff; 16]);
            frame
        }),
        (
            "a frame too short for a request header",
            vec![0, 0, 0, 3, 0, 18, 0],
        ),
        ("an empty frame", vec![0, 0, 0, 0]),
    ];
    for (what, bytes) in &inputs {
        assert_eq!(
            send_and_observe(&seeded.broker, bytes),
            PeerState::Closed,
            "{what}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn length_prefix_over_the_limit_closes_the_connection_without_allocating_it() {
    let mut seeded = seeded(Broker::start());
    for length in [0x7fff_ffffu32, 0x4000_0000, 0x1000_0000] {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            send_and_observe(&seeded.broker, &bytes),
            PeerState::Closed,
            "length prefix {length:#x}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn negative_length_prefix_closes_the_connection() {
    let mut seeded = seeded(Broker::start());
    for length in [-1i32, i32::MIN, -100] {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        assert_eq!(
            send_and_observe(&seeded.broker, &bytes),
            PeerState::Closed,
            "length prefix {length}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn truncated_frame_then_close_is_dropped_and_an_idle_truncated_frame_blocks_no_one() {
    let mut seeded = seeded(Broker::start());
    let whole = {
        let mut client = RawClient::connect(seeded.broker.addr());
        client.frame(&raw::api_versions_request(0), 0).1
    };

    // Half a request, then end of stream.
    let mut client = RawClient::connect(seeded.broker.addr());
    client
        .write_raw(&whole[..whole.len() / 2])
        .expect("writing half a frame");
    client.shutdown_write();
    assert_eq!(
        client.peer_state(CLOSE_TIMEOUT),
        PeerState::Closed,
        "half a frame then EOF"
    );

    // Only part of the length prefix, then end of stream.
    let mut client = RawClient::connect(seeded.broker.addr());
    client
        .write_raw(&whole[..2])
        .expect("writing half a length prefix");
    client.shutdown_write();
    assert_eq!(
        client.peer_state(CLOSE_TIMEOUT),
        PeerState::Closed,
        "half a length prefix then EOF"
    );

    // Half a request on a connection left open: others are served meanwhile.
    let mut idle = RawClient::connect(seeded.broker.addr());
    idle.write_raw(&whole[..whole.len() - 1])
        .expect("writing all but one byte");
    seeded.assert_serving_and_intact();
    // The last byte completes the request, which is then answered.
    idle.write_raw(&whole[whole.len() - 1..])
        .expect("writing the last byte");
    let frame = idle
        .read_frame()
        .expect("the completed request is answered");
    assert!(frame.len() >= 4, "a response with a header");
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut seeded = seeded(Broker::start());
    for api_key in [9999i16, -1, 32_000] {
        let frame = hand_built_frame(api_key, 0, 7, false, &[0u8; 8]);
        assert_eq!(
            send_and_observe(&seeded.broker, &frame),
            PeerState::Closed,
            "API key {api_key}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn unsupported_api_versions_version_gets_unsupported_version_in_the_v0_format() {
    let mut seeded = seeded(Broker::start());
    let mut client = RawClient::connect(seeded.broker.addr());
    // An ApiVersions v3 body (client software name and version, no tags) sent as v99.
    let mut body = Vec::new();
    body.put_u8(b"future".len() as u8 + 1);
    body.put_slice(b"future");
    body.put_u8(b"9.9".len() as u8 + 1);
    body.put_slice(b"9.9");
    body.put_u8(0);
    let correlation_id = 4242;
    let frame = hand_built_frame(API_VERSIONS_KEY, 99, correlation_id, true, &body);
    client.write_raw(&frame).expect("writing ApiVersions v99");
    let response = client
        .read_frame()
        .expect("ApiVersions v99 is answered, not dropped");
    let mut bytes = response;
    let header = ResponseHeader::decode(&mut bytes, 0).expect("a v0 response header");
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    let answer = ApiVersionsResponse::decode(&mut bytes, 0).expect("a v0 ApiVersions response");
    assert_eq!(
        answer.error_code,
        error_code::UNSUPPORTED_VERSION,
        "error code"
    );
    let own = answer
        .api_keys
        .iter()
        .find(|k| k.api_key == API_VERSIONS_KEY)
        .expect("the answer lists ApiVersions' own supported range");
    assert_eq!(own.min_version, 0, "ApiVersions min version");
    assert!(
        own.max_version >= 3,
        "ApiVersions max version {}",
        own.max_version
    );

    // The connection stays usable: a supported version is answered normally.
    let versions = client.call(&raw::api_versions_request(0), 0);
    assert_eq!(versions.error_code, error_code::NONE);
    seeded.assert_serving_and_intact();
}

#[test]
fn produce_with_a_bad_crc_is_refused_with_corrupt_message() {
    let mut seeded = seeded(Broker::start());
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    let batch = raw::record_batch(&[(b"bad", b"crc")]);
    let mut corrupt = batch.to_vec();
    // The last byte is inside the CRC-covered records; flip it.
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let request = raw::produce_request(&seeded.topic, 0, -1, corrupt.into());
    let response = client.call_negotiated(&request, raw::PRODUCE_VERSION_MAX);
    let answer = raw::single_produce_partition(&response);
    assert_eq!(answer.error_code, error_code::CORRUPT_MESSAGE, "bad CRC");

    // A batch cut short of its own length field: refused, or the connection closed.
    let mut short = batch.to_vec();
    short.truncate(short.len() - 3);
    let request = raw::produce_request(&seeded.topic, 0, -1, short.into());
    let version =
        client.version_of::<kafka_protocol::messages::ProduceRequest>(raw::PRODUCE_VERSION_MAX);
    let (correlation_id, frame) = client.frame(&request, version);
    client.write_raw(&frame).expect("writing a produce request");
    if let Some(response) =
        client.try_receive::<kafka_protocol::messages::ProduceRequest>(correlation_id, version)
    {
        let answer = raw::single_produce_partition(&response);
        assert_eq!(
            answer.error_code,
            error_code::CORRUPT_MESSAGE,
            "a batch shorter than its length"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn produce_to_an_unknown_topic_or_partition_is_refused_when_auto_create_is_off() {
    let mut seeded = seeded(Broker::builder().auto_create_topics(false).start());
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    let missing = unique_topic("missing");
    let answer = raw::produce(&mut client, &missing, 0, &[(b"k", b"v")]);
    assert_eq!(
        answer.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "unknown topic"
    );
    let answer = raw::produce(&mut client, &seeded.topic, 5, &[(b"k", b"v")]);
    assert_eq!(
        answer.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "unknown partition"
    );
    let fetched = raw::fetch(&mut client, &missing, 0, 0);
    assert_eq!(
        fetched.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "fetch from an unknown topic"
    );
    assert!(
        !common::clients::topic_names(&seeded.broker.bootstrap()).contains(&missing),
        "the unknown topic was not created"
    );
    seeded.assert_serving_and_intact();
}

#[test]
fn batch_larger_than_max_message_bytes_is_refused_with_message_too_large() {
    let mut seeded = seeded(Broker::start());
    let small_limit = unique_topic("small-limit");
    create_topic(
        &seeded.broker.bootstrap(),
        &small_limit,
        1,
        &[("max.message.bytes", "2048")],
    );
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    let big = vec![b'x'; 4096];
    let answer = raw::produce(&mut client, &small_limit, 0, &[(b"big", &big)]);
    assert_eq!(
        answer.error_code,
        error_code::MESSAGE_TOO_LARGE,
        "a 4 KiB batch over a 2 KiB limit"
    );
    let small = vec![b'x'; 512];
    let answer = raw::produce(&mut client, &small_limit, 0, &[(b"small", &small)]);
    assert_eq!(
        answer.error_code,
        error_code::NONE,
        "a batch under the limit"
    );
    assert_eq!(answer.base_offset, 0, "the refused batch took no offset");
    seeded.assert_serving_and_intact();
}

#[test]
fn produce_with_invalid_acks_is_refused_with_invalid_required_acks() {
    let mut seeded = seeded(Broker::start());
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    for acks in [5i16, 2, -2] {
        let request =
            raw::produce_request(&seeded.topic, 0, acks, raw::record_batch(&[(b"k", b"v")]));
        let response = client.call_negotiated(&request, raw::PRODUCE_VERSION_MAX);
        let answer = raw::single_produce_partition(&response);
        assert_eq!(
            answer.error_code,
            error_code::INVALID_REQUIRED_ACKS,
            "acks={acks}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn fetch_outside_the_log_is_refused_with_offset_out_of_range() {
    let mut seeded = seeded(Broker::start());
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    let end = SEED_RECORDS as i64;
    let at_end = raw::fetch(&mut client, &seeded.topic, 0, end);
    assert_eq!(
        at_end.error_code,
        error_code::NONE,
        "fetch at the high watermark is valid"
    );
    assert!(
        at_end.records.as_ref().is_none_or(|r| r.is_empty()),
        "and empty"
    );
    for offset in [end + 1, 1000, i64::MAX, -1, -1000] {
        let fetched = raw::fetch(&mut client, &seeded.topic, 0, offset);
        assert_eq!(
            fetched.error_code,
            error_code::OFFSET_OUT_OF_RANGE,
            "fetch at {offset}"
        );
        assert!(
            fetched.records.as_ref().is_none_or(|r| r.is_empty()),
            "no records at {offset}"
        );
    }
    seeded.assert_serving_and_intact();
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let mut seeded = seeded(Broker::start());
    let mut client = RawClient::connect_negotiated(seeded.broker.addr());
    let fetch_version =
        client.version_of::<kafka_protocol::messages::FetchRequest>(raw::FETCH_VERSION_MAX);
    let mut expected = Vec::new();
    let mut bytes = Vec::new();
    for i in 0..30 {
        // A slow fetch (waits for data that never comes) between quick requests.
        let (correlation_id, frame) = if i % 10 == 5 {
            client.frame(
                &raw::fetch_request(&seeded.topic, 0, SEED_RECORDS as i64, 300, 1),
                fetch_version,
            )
        } else {
            client.frame(&raw::api_versions_request(0), 0)
        };
        expected.push(correlation_id);
        bytes.extend_from_slice(&frame);
    }
    client
        .write_raw(&bytes)
        .expect("writing pipelined requests");
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let frame = client.read_frame().expect("a pipelined response");
        let correlation_id = i32::from_be_bytes(frame[..4].try_into().expect("four bytes"));
        got.push(correlation_id);
    }
    assert_eq!(got, expected, "responses in request order");
    seeded.assert_serving_and_intact();
}

#[test]
fn array_lengths_larger_than_the_frame_close_the_connection_without_committing_memory() {
    let mut seeded = seeded(Broker::start());
    let pid = seeded.broker.pid().expect("the broker runs");
    let before = resident_bytes(pid).unwrap_or(0);
    // Each body starts with (or reaches) an array whose length claims 2^31-1
    // elements in a frame of a few bytes.
    let mut huge = Vec::new();
    huge.put_i32(i32::MAX);
    huge.put_slice(&[0, 1, b'a']);
    let cases: [(&str, i16, i16, bool, Vec<u8>); 5] = [
        ("Metadata v1 topics", 3, 1, false, huge.clone()),
        ("CreateTopics v2 topics", 19, 2, false, huge.clone()),
        ("Produce v3 topic data", 0, 3, false, {
            let mut body = Vec::new();
            body.put_i16(-1); // no transactional id
            body.put_i16(1); // acks
            body.put_i32(1000); // timeout
            body.extend_from_slice(&huge);
            body
        }),
        ("Produce v3 partitions of one topic", 0, 3, false, {
            let mut body = Vec::new();
            body.put_i16(-1);
            body.put_i16(1);
            body.put_i32(1000);
            body.put_i32(1); // one topic
            body.put_slice(&[0, 1, b'a']);
            body.extend_from_slice(&huge);
            body
        }),
        // One topic whose compact-string name claims 2^32-2 bytes.
        (
            "CreateTopics v5 topic name",
            19,
            5,
            true,
            vec![2, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'],
        ),
    ];
    for (what, api_key, version, flexible, body) in cases {
        let frame = hand_built_frame(api_key, version, 11, flexible, &body);
        assert_eq!(
            send_and_observe(&seeded.broker, &frame),
            PeerState::Closed,
            "{what}"
        );
    }
    let after = resident_bytes(pid).unwrap_or(0);
    assert!(
        after < before + 64 * 1024 * 1024,
        "resident memory grew from {before} to {after} bytes"
    );
    seeded.assert_serving_and_intact();
}

/// Opens `limit` connections on a broker started with `flag limit`, checks
/// that one more is closed with `log_line` in the log while the others keep
/// working, and that a closed one frees its place.
fn one_connection_over_the_limit_is_closed(flag: &str, limit: usize, log_line: &str) {
    let broker = Broker::builder().arg(flag).arg(&limit.to_string()).start();
    let mut open: Vec<RawClient> = (0..limit)
        .map(|_| RawClient::connect_negotiated(broker.addr()))
        .collect();
    let mut refused = RawClient::connect(broker.addr());
    assert_eq!(
        refused.peer_state(Duration::from_secs(5)),
        PeerState::Closed,
        "the connection over {flag} is closed"
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || broker.log().contains(log_line)),
        "one log line says why"
    );
    for client in &mut open {
        client.negotiate();
    }
    drop(open.pop());
    let served = common::wait_until(Duration::from_secs(5), || {
        let mut client = RawClient::connect(broker.addr());
        let request = common::raw::api_versions_request(0);
        let (correlation_id, frame) = client.frame(&request, 0);
        client.write_raw(&frame).is_ok()
            && client
                .try_receive::<kafka_protocol::messages::ApiVersionsRequest>(correlation_id, 0)
                .is_some()
    });
    assert!(served, "a new connection is served once one has closed");
}

#[test]
fn a_connection_over_max_connections_is_closed_with_a_log_line() {
    one_connection_over_the_limit_is_closed(
        "--max-connections",
        3,
        "connection refused: this shard is at max.connections",
    );
}

#[test]
fn a_connection_over_max_connections_per_ip_is_closed_with_a_log_line() {
    one_connection_over_the_limit_is_closed(
        "--max-connections-per-ip",
        2,
        "connection refused: this address is at max.connections.per.ip",
    );
}
