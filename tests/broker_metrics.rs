//! The metrics and health endpoints of a real broker process: what a scrape
//! shows after a known workload, the counters that bad requests and refused
//! connections move, and the health answers through start-up and shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::clients::{consume_all, consumer, create_topic, produce_keyed, watermarks};
use common::metrics::{get, scrape, Scrape};
use common::raw::{self, error_code, RawClient};
use common::{unique_topic, wait_until, Broker};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a counter may take to show what just happened.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a consume of the test's records may take.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the health poller asks.
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Written partitions that make shutdown take long enough to be seen
/// (each closes with its syncs).
const SLOW_STOP_PARTITIONS: i32 = 200;

/// Scrapes until `check` holds (bounded); returns the last scrape.
fn scrape_until(broker: &Broker, mut check: impl FnMut(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + COUNTER_TIMEOUT;
    loop {
        let scraped = scrape(broker.metrics_addr());
        if check(&scraped) || Instant::now() >= deadline {
            return scraped;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_scrape_after_a_known_workload_counts_its_records_lag_and_errors() {
    let broker = Broker::builder()
        .metrics()
        .auto_create_topics(false)
        .start();
    let topic = unique_topic("metrics-workload");
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    const RECORDS: usize = 300;
    produce_keyed(&broker.bootstrap(), &topic, RECORDS, 17);
    consume_all(&broker.bootstrap(), &topic, 2, RECORDS, CONSUME_TIMEOUT).expect_count(RECORDS);

    // A group commits part of each partition; the rest is its lag.
    let ends: Vec<i64> = (0..2)
        .map(|p| watermarks(&broker.bootstrap(), &topic, p).1)
        .collect();
    assert_eq!(ends.iter().sum::<i64>(), RECORDS as i64);
    let committed = [ends[0] / 3, 0];
    let group = unique_topic("metrics-group");
    let member = consumer(&broker.bootstrap(), &[("group.id", &group)]);
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in committed.iter().enumerate() {
        offsets
            .add_partition_offset(&topic, partition as i32, Offset::Offset(*offset))
            .expect("a new list entry");
    }
    member
        .commit(&offsets, CommitMode::Sync)
        .expect("the commit succeeds");

    // Bad requests: a produce to a missing topic, and a malformed header.
    let mut client = RawClient::connect_negotiated(broker.addr());
    let answer = raw::produce(&mut client, "no-such-topic", 0, &[(b"k", b"v")]);
    assert_eq!(answer.error_code, error_code::UNKNOWN_TOPIC_OR_PARTITION);
    let mut bad = RawClient::connect(broker.addr());
    // Produce v9, correlation id 1, then a client id longer than the frame.
    bad.write_raw(&[0, 0, 0, 10, 0, 0, 0, 9, 0, 0, 0, 1, 0x7f, 0xff])
        .expect("writing the frame");

    let topic_label = [("topic", topic.as_str())];
    let scraped = scrape_until(&broker, |s| {
        s.get(
            "ringlog_request_errors_total",
            &[("api", "Produce"), ("code", "INVALID_REQUEST")],
        )
        .is_some()
    });
    assert_eq!(
        scraped.value("ringlog_records_in_total", &topic_label),
        RECORDS as f64
    );
    assert_eq!(
        scraped.value("ringlog_records_out_total", &topic_label),
        RECORDS as f64
    );
    let bytes_in = scraped.value("ringlog_bytes_in_total", &topic_label);
    let size = scraped.partition_sum("ringlog_partition_size_bytes", &topic, 2);
    assert_eq!(bytes_in, size, "every appended byte is in the segments");
    assert_eq!(
        scraped.value("ringlog_bytes_out_total", &topic_label),
        bytes_in,
        "the consumer read each stored batch once"
    );
    // Per partition, the same traffic split over the two partitions.
    for (name, topic_total) in [
        ("records_in", RECORDS as f64),
        ("bytes_in", bytes_in),
        ("records_out", RECORDS as f64),
        ("bytes_out", bytes_in),
    ] {
        let series = format!("ringlog_partition_{name}_total");
        assert_eq!(
            scraped.partition_sum(&series, &topic, 2),
            topic_total,
            "{series}"
        );
    }
    for partition in ["0", "1"] {
        let labels = [("topic", topic.as_str()), ("partition", partition)];
        assert_eq!(
            scraped.value("ringlog_partition_records_out_total", &labels),
            scraped.value("ringlog_partition_records_in_total", &labels),
            "partition {partition} was read once"
        );
    }
    for partition in 0..2 {
        let label = partition.to_string();
        let labels = [("topic", topic.as_str()), ("partition", label.as_str())];
        assert_eq!(
            scraped.value("ringlog_partition_log_end_offset", &labels),
            ends[partition] as f64
        );
        assert_eq!(
            scraped.value("ringlog_partition_log_start_offset", &labels),
            0.0
        );
        assert_eq!(scraped.value("ringlog_partition_segments", &labels), 1.0);
        let group_labels = [
            ("group", group.as_str()),
            ("topic", topic.as_str()),
            ("partition", label.as_str()),
        ];
        assert_eq!(
            scraped.value("ringlog_consumer_group_lag", &group_labels),
            (ends[partition] - committed[partition]) as f64,
            "lag of partition {partition}"
        );
        assert_eq!(
            scraped.value("ringlog_consumer_group_committed_offset", &group_labels),
            committed[partition] as f64
        );
    }
    assert_eq!(
        scraped.value(
            "ringlog_request_errors_total",
            &[("api", "Produce"), ("code", "UNKNOWN_TOPIC_OR_PARTITION")]
        ),
        1.0
    );
    assert_eq!(
        scraped.value(
            "ringlog_request_errors_total",
            &[("api", "Produce"), ("code", "INVALID_REQUEST")]
        ),
        1.0
    );

    // Latency: every produce counted, the +Inf bucket holds them all.
    let produces = scraped.value(
        "ringlog_request_latency_seconds_count",
        &[("api", "Produce")],
    );
    assert!(produces >= 2.0, "produce requests counted: {produces}");
    assert_eq!(
        scraped.value(
            "ringlog_request_latency_seconds_bucket",
            &[("api", "Produce"), ("le", "+Inf")]
        ),
        produces
    );
    let shard = [("shard", "0")];
    assert!(scraped.value("ringlog_fsync_latency_seconds_count", &shard) >= 1.0);
    assert!(scraped.value("ringlog_batch_cache_hits_total", &shard) >= 1.0);
    assert_eq!(
        scraped.value("ringlog_batch_cache_misses_total", &shard),
        0.0
    );
    assert_eq!(
        scraped.value("ringlog_cross_shard_rejected_total", &shard),
        0.0
    );
    assert!(scraped.value("ringlog_connections_accepted_total", &shard) >= 3.0);
    assert!(scraped.value("ringlog_connections_open", &shard) >= 1.0);
    assert!(scraped.value("ringlog_shard_busy_seconds_total", &shard) > 0.0);
    assert_eq!(scraped.value("ringlog_ready", &[]), 1.0);
    drop(client);
}

#[test]
fn connections_over_max_connections_are_counted_as_refused() {
    let broker = Broker::builder()
        .metrics()
        .arg("--max-connections")
        .arg("1")
        .arg("--metrics-per-partition")
        .arg("false")
        .start();
    // The harness's readiness probe may still hold the one connection.
    let shard = [("shard", "0")];
    let idle = scrape_until(&broker, |s| {
        s.get("ringlog_connections_open", &shard) == Some(0.0)
    });
    assert_eq!(idle.value("ringlog_connections_open", &shard), 0.0);
    let refused_before = idle.value("ringlog_connections_refused_total", &shard);
    let mut first = RawClient::connect_negotiated(broker.addr());
    let mut second = RawClient::connect(broker.addr());
    // The second is closed on accept: its request gets no answer.
    let (_, frame) = second.frame(&raw::api_versions_request(0), 0);
    let _ = second.write_raw(&frame);
    assert!(
        second.read_frame().is_err(),
        "the second connection is closed"
    );
    let scraped = scrape_until(&broker, |s| {
        s.get("ringlog_connections_refused_total", &shard) == Some(refused_before + 1.0)
    });
    assert_eq!(
        scraped.value("ringlog_connections_refused_total", &shard),
        refused_before + 1.0
    );
    assert_eq!(scraped.value("ringlog_connections_open", &shard), 1.0);
    first.negotiate();
    assert!(
        !scraped.has("ringlog_partition_log_end_offset"),
        "--metrics-per-partition false leaves out per-partition series"
    );
}

/// What one health poll saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Nothing accepts on the metrics port.
    Down,
    Starting,
    Ready,
    Stopping,
}

/// Asks `/health/ready` and `/health/live` once.
fn health(addr: SocketAddr) -> (Seen, Option<u16>) {
    let live = get(addr, "/health/live").map(|(status, _)| status);
    let ready = match get(addr, "/health/ready") {
        None => Seen::Down,
        Some((200, _)) => Seen::Ready,
        Some((503, body)) if body.contains("stopping") => Seen::Stopping,
        Some((503, _)) => Seen::Starting,
        Some((status, body)) => panic!("/health/ready answered {status}: {body}"),
    };
    (ready, live)
}

/// Polls the health endpoints on a thread until stopped; returns each
/// change of `/health/ready` it saw, checking `/health/live` at every poll.
fn poll_health(addr: SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Seen>> {
    thread::spawn(move || {
        let mut changes = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let (ready, live) = health(addr);
            // Live may go between the two asks only when the process exits.
            if ready != Seen::Down && live.is_some() {
                assert_eq!(
                    live,
                    Some(200),
                    "live while /health/ready answers {ready:?}"
                );
            }
            if changes.last() != Some(&ready) {
                changes.push(ready);
            }
            thread::sleep(HEALTH_POLL_INTERVAL);
        }
        changes
    })
}

#[test]
fn health_is_starting_then_ready_then_stopping_and_live_throughout() {
    let mut broker = Broker::builder().metrics().start();
    let topic = unique_topic("metrics-health");
    create_topic(&broker.bootstrap(), &topic, SLOW_STOP_PARTITIONS, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    for partition in 0..SLOW_STOP_PARTITIONS {
        let produced = raw::produce(&mut client, &topic, partition, &[(b"k", b"v")]);
        assert_eq!(produced.error_code, error_code::NONE);
    }
    let addr = broker.metrics_addr();
    assert_eq!(health(addr), (Seen::Ready, Some(200)));

    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_health(addr, stop.clone());
    broker.stop();
    assert!(wait_until(COUNTER_TIMEOUT, || health(addr).0 == Seen::Down));
    broker.start_again();
    assert!(
        wait_until(COUNTER_TIMEOUT, || health(addr).0 == Seen::Ready),
        "ready once the broker accepts"
    );
    stop.store(true, Ordering::SeqCst);
    let seen = poller.join().expect("the health poller");
    // In order, each state at most once: a broker never goes back to ready
    // once it stops, nor to starting once it is ready.
    let order = [
        Seen::Ready,
        Seen::Stopping,
        Seen::Down,
        Seen::Starting,
        Seen::Ready,
    ];
    let mut rest = &order[..];
    for state in &seen {
        let at = rest
            .iter()
            .position(|s| s == state)
            .unwrap_or_else(|| panic!("health went {seen:?}: out of order"));
        rest = &rest[at + 1..];
    }
    assert!(
        seen.contains(&Seen::Stopping),
        "closing {SLOW_STOP_PARTITIONS} partitions shows stopping: {seen:?}"
    );
    // Start-up registers partitions without opening them, so "starting"
    // may pass between two polls: only its place in the order is checked.
}

/// The `ringlog_*` names a PromQL expression asks for.
fn series_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("ringlog_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn the_grafana_dashboard_asks_only_for_series_the_broker_exports() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("reading the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"]
        .as_array()
        .expect("the dashboard has panels");
    let broker = Broker::builder().metrics().start();
    let (status, body) = get(broker.metrics_addr(), "/metrics").expect("a scrape");
    assert_eq!(status, 200);
    // Every family is described even before it has a series.
    let families: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let mut asked = 0;
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"].as_str().expect("a target has an expression");
        for name in series_names(expr) {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                families.contains(&family),
                "the dashboard asks for {name}, which the broker does not export:\n{body}"
            );
            asked += 1;
        }
    }
    assert!(asked >= 20, "the dashboard asks for {asked} series");
}

#[test]
fn two_shards_report_each_their_own_series_and_the_records_sum_over_them() {
    let test = "two_shards_report_each_their_own_series_and_the_records_sum_over_them";
    let Some(cpus) = common::two_cpus(test) else {
        return;
    };
    let broker = Broker::builder().cpus(&cpus).metrics().start();
    let topic = unique_topic("metrics-shards");
    create_topic(&broker.bootstrap(), &topic, 4, &[]);
    const RECORDS: usize = 200;
    produce_keyed(&broker.bootstrap(), &topic, RECORDS, 13);
    let scraped = scrape(broker.metrics_addr());
    assert_eq!(
        scraped.value("ringlog_records_in_total", &[("topic", &topic)]),
        RECORDS as f64
    );
    assert_eq!(scraped.value("ringlog_shards", &[]), 2.0);
    let mut sent = 0.0;
    for shard in ["0", "1"] {
        let labels = [("shard", shard)];
        assert_eq!(
            scraped.value("ringlog_cross_shard_rejected_total", &labels),
            0.0
        );
        assert!(scraped
            .get("ringlog_batch_cache_hits_total", &labels)
            .is_some());
        sent += scraped.value("ringlog_cross_shard_messages_total", &labels);
    }
    // Partitions are spread over both shards, so the connection's shard
    // sent some of the produce requests (and the scrape's copies) across.
    assert!(sent >= 1.0, "cross-shard jobs counted: {sent}");
    let end_offsets = scraped.partition_sum("ringlog_partition_log_end_offset", &topic, 4);
    assert_eq!(end_offsets, RECORDS as f64);
}

/// Connections that produce at once into the small inboxes.
const INBOX_FILL_CONNECTIONS: usize = 8;
/// Produce requests each of them keeps in flight.
const INBOX_FILL_PIPELINE: usize = 16;
/// How long they try to find an inbox full.
const INBOX_FILL_TIMEOUT: Duration = Duration::from_secs(20);

/// One connection's produce rounds: pipelined requests to every partition
/// of `topic` until a partition is answered REQUEST_TIMED_OUT or the time is
/// up. Returns the partition answers with REQUEST_TIMED_OUT, and any other
/// error code seen.
fn produce_until_timed_out(
    addr: SocketAddr,
    topic: &str,
    partitions: i32,
    stop: &AtomicBool,
) -> (u64, Vec<i16>) {
    use kafka_protocol::messages::ProduceRequest;
    let mut client = RawClient::connect_negotiated(addr);
    let version = client.version_of::<ProduceRequest>(raw::PRODUCE_VERSION_MAX);
    let mut request = raw::produce_request(topic, 0, 1, raw::record_batch(&[(b"k", b"v")]));
    let data = request.topic_data[0].partition_data[0].clone();
    request.topic_data[0].partition_data = (0..partitions)
        .map(|p| data.clone().with_index(p))
        .collect();
    let (mut timed_out, mut others) = (0, Vec::new());
    let deadline = Instant::now() + INBOX_FILL_TIMEOUT;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let mut frames = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..INBOX_FILL_PIPELINE {
            let (id, frame) = client.frame(&request, version);
            frames.extend(frame);
            ids.push(id);
        }
        client
            .write_raw(&frames)
            .expect("writing the produce requests");
        for id in ids {
            let response = client.receive::<ProduceRequest>(id, version);
            for answer in response
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
            {
                match answer.error_code {
                    error_code::NONE => {}
                    error_code::REQUEST_TIMED_OUT => timed_out += 1,
                    other => others.push(other),
                }
            }
        }
        if timed_out > 0 {
            stop.store(true, Ordering::SeqCst);
        }
    }
    (timed_out, others)
}

#[test]
fn a_full_cross_shard_inbox_is_counted_and_answered_request_timed_out() {
    let test = "a_full_cross_shard_inbox_is_counted_and_answered_request_timed_out";
    if !cfg!(debug_assertions) {
        common::skip::skip(
            test,
            "the inbox capacity can be lowered in debug builds only",
        );
        return;
    }
    let Some(cpus) = common::two_cpus(test) else {
        return;
    };
    // One job per inbox: a burst of requests whose partitions live on the
    // other shard finds it full before that shard takes the first job.
    let broker = Broker::builder()
        .cpus(&cpus)
        .metrics()
        .env("RINGLOG_SHARD_INBOX_CAPACITY", "1")
        .start();
    let topic = unique_topic("metrics-inbox");
    const PARTITIONS: i32 = 2;
    create_topic(&broker.bootstrap(), &topic, PARTITIONS, &[]);
    let before = scrape(broker.metrics_addr());
    let rejected = |s: &Scrape| {
        ["0", "1"]
            .iter()
            .map(|shard| s.value("ringlog_cross_shard_rejected_total", &[("shard", shard)]))
            .sum::<f64>()
    };
    let rejected_before = rejected(&before);

    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..INBOX_FILL_CONNECTIONS)
        .map(|_| {
            let (addr, topic, stop) = (broker.addr(), topic.clone(), stop.clone());
            thread::spawn(move || produce_until_timed_out(addr, &topic, PARTITIONS, &stop))
        })
        .collect();
    let (mut timed_out, mut others) = (0, Vec::new());
    for producer in producers {
        let (t, o) = producer.join().expect("a producing thread");
        timed_out += t;
        others.extend(o);
    }
    assert!(
        others.is_empty(),
        "only REQUEST_TIMED_OUT besides NONE: {others:?}"
    );
    assert!(
        timed_out > 0,
        "{INBOX_FILL_CONNECTIONS} connections with {INBOX_FILL_PIPELINE} requests in flight found no inbox full"
    );

    // Nothing is in flight now: this scrape's own jobs find room.
    let after = scrape(broker.metrics_addr());
    let rejected_jobs = rejected(&after) - rejected_before;
    // Each refused job is one shard's part of one request, answered
    // REQUEST_TIMED_OUT in each of that shard's partitions.
    assert!(
        rejected_jobs >= 1.0 && rejected_jobs <= timed_out as f64,
        "{rejected_jobs} jobs refused for {timed_out} partitions answered REQUEST_TIMED_OUT"
    );
    assert_eq!(
        after.value(
            "ringlog_request_errors_total",
            &[("api", "Produce"), ("code", "REQUEST_TIMED_OUT")]
        ),
        timed_out as f64
    );
}

#[test]
fn errors_of_group_admin_and_sasl_requests_are_counted_by_api_and_code() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        CreateTopicsRequest, DeleteGroupsRequest, DescribeConfigsRequest, GroupId,
        HeartbeatRequest, SaslHandshakeRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let s = |text: &str| StrBytes::from_string(text.to_string());
    let broker = Broker::builder()
        .metrics()
        .auto_create_topics(false)
        .start();
    let topic = unique_topic("metrics-admin-errors");
    create_topic(&broker.bootstrap(), &topic, 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());

    let group = unique_topic("metrics-no-group");
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(s(&group)))
        .with_generation_id(1)
        .with_member_id(s("no-such-member"));
    let heartbeat = client.call_negotiated(&heartbeat, 4).error_code;
    let deleted = client.call_negotiated(
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]),
        2,
    );
    let again = CreatableTopic::default()
        .with_name(TopicName(s(&topic)))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let created = client.call_negotiated(
        &CreateTopicsRequest::default()
            .with_topics(vec![again])
            .with_timeout_ms(10_000),
        7,
    );
    // Resource type 2 is a topic.
    let unknown = DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s("metrics-no-such-topic"));
    let described = client.call_negotiated(
        &DescribeConfigsRequest::default().with_resources(vec![unknown]),
        4,
    );
    let handshake = client.call_negotiated(
        &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
        1,
    );

    let expected = [
        ("Heartbeat", heartbeat, "UNKNOWN_MEMBER_ID", 25),
        (
            "DeleteGroups",
            deleted.results[0].error_code,
            "GROUP_ID_NOT_FOUND",
            69,
        ),
        (
            "CreateTopics",
            created.topics[0].error_code,
            "TOPIC_ALREADY_EXISTS",
            36,
        ),
        (
            "DescribeConfigs",
            described.results[0].error_code,
            "UNKNOWN_TOPIC_OR_PARTITION",
            3,
        ),
        // SASL on a PLAINTEXT listener.
        (
            "SaslHandshake",
            handshake.error_code,
            "ILLEGAL_SASL_STATE",
            34,
        ),
    ];
    let scraped = scrape_until(&broker, |s| {
        s.get(
            "ringlog_request_errors_total",
            &[("api", "SaslHandshake"), ("code", "ILLEGAL_SASL_STATE")],
        )
        .is_some()
    });
    for (api, answered, name, code) in expected {
        assert_eq!(answered, code, "{api} answered {answered}, not {name}");
        assert_eq!(
            scraped.value(
                "ringlog_request_errors_total",
                &[("api", api), ("code", name)]
            ),
            1.0,
            "{api} {name}"
        );
    }
    let counted: usize = scraped
        .series
        .get("ringlog_request_errors_total")
        .map_or(0, Vec::len);
    assert_eq!(
        counted,
        expected.len(),
        "no other error counted:\n{}",
        scraped.text
    );
}

/// Small segments, so that a few KiB roll several of them.
const SMALL_SEGMENT_BYTES: &str = "4096";
/// How long a retention pass and a cleaning may take to show.
const STORAGE_WORK_TIMEOUT: Duration = Duration::from_secs(30);

/// `rounds` produce rounds of `per_round` records over `keys` keys, each
/// its own batch, so that segments roll between them.
fn produce_rounds(bootstrap: &str, topic: &str, rounds: usize, per_round: usize, keys: usize) {
    for _ in 0..rounds {
        produce_keyed(bootstrap, topic, per_round, keys);
    }
}

#[test]
fn retention_and_compaction_work_is_counted_as_it_changes_the_logs() {
    let broker = Broker::builder()
        .metrics()
        .arg("--retention-check-interval-ms")
        .arg("100")
        .arg("--log-cleaner-backoff-ms")
        .arg("100")
        .start();
    let bootstrap = broker.bootstrap();
    let retained = unique_topic("metrics-retained");
    let compacted = unique_topic("metrics-compacted");
    create_topic(
        &bootstrap,
        &retained,
        1,
        &[
            ("segment.bytes", SMALL_SEGMENT_BYTES),
            ("retention.bytes", SMALL_SEGMENT_BYTES),
        ],
    );
    create_topic(
        &bootstrap,
        &compacted,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", SMALL_SEGMENT_BYTES),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    produce_rounds(&bootstrap, &retained, 20, 30, 30);
    produce_rounds(&bootstrap, &compacted, 20, 30, 5);
    // Records under other keys push the updates out of the active segment,
    // which the cleaner never touches.
    produce_rounds(&bootstrap, &compacted, 3, 30, 30);

    let shard = [("shard", "0")];
    let work = |s: &Scrape| {
        [
            "ringlog_retention_segments_deleted_total",
            "ringlog_retention_bytes_deleted_total",
            "ringlog_log_cleaner_runs_total",
            "ringlog_log_cleaner_bytes_read_total",
            "ringlog_log_cleaner_bytes_removed_total",
            "ringlog_log_cleaner_records_removed_total",
        ]
        .map(|name| s.value(name, &shard))
    };
    let size = |s: &Scrape, topic: &str| s.partition_sum("ringlog_partition_size_bytes", topic, 1);
    // Once both have worked, two scrapes in a row that agree: no pass was
    // half done when the numbers were read.
    let deadline = Instant::now() + STORAGE_WORK_TIMEOUT;
    let mut last = scrape(broker.metrics_addr());
    let scraped = loop {
        thread::sleep(Duration::from_millis(300));
        let now = scrape(broker.metrics_addr());
        let done = work(&now)[0] >= 1.0 && work(&now)[5] >= 1.0;
        let settled = work(&now) == work(&last)
            && size(&now, &retained) == size(&last, &retained)
            && size(&now, &compacted) == size(&last, &compacted);
        if (done && settled) || Instant::now() >= deadline {
            break now;
        }
        last = now;
    };
    let [segments_deleted, bytes_deleted, runs, bytes_read, bytes_removed, records_removed] =
        work(&scraped);
    assert!(
        segments_deleted >= 1.0,
        "retention deleted segments:\n{}",
        scraped.text
    );
    assert!(
        runs >= 1.0 && records_removed >= 1.0,
        "the cleaner ran:\n{}",
        scraped.text
    );

    // Retention: what was appended and is no longer on disk.
    let retained_in = scraped.value("ringlog_bytes_in_total", &[("topic", &retained)]);
    assert_eq!(bytes_deleted, retained_in - size(&scraped, &retained));
    let labels = [("topic", retained.as_str()), ("partition", "0")];
    assert!(scraped.value("ringlog_partition_log_start_offset", &labels) > 0.0);

    // Compaction: the bytes and records no longer there.
    let compacted_in = scraped.value("ringlog_bytes_in_total", &[("topic", &compacted)]);
    assert_eq!(bytes_removed, compacted_in - size(&scraped, &compacted));
    assert!(bytes_read >= bytes_removed);
    let records_in = scraped.value("ringlog_records_in_total", &[("topic", &compacted)]);
    let left = (records_in - records_removed) as usize;
    let consumer = consumer(&bootstrap, &[]);
    common::clients::assign(&consumer, &compacted, &[0], Offset::Beginning);
    common::clients::consume(&consumer, left + 1, Duration::from_secs(5)).expect_count(left);
}

#[test]
fn without_per_partition_series_fetched_traffic_is_counted_per_topic_only() {
    let broker = Broker::builder()
        .metrics()
        .arg("--metrics-per-partition")
        .arg("false")
        .start();
    let topic = unique_topic("metrics-per-topic");
    create_topic(&broker.bootstrap(), &topic, 2, &[]);
    const RECORDS: usize = 40;
    produce_keyed(&broker.bootstrap(), &topic, RECORDS, 7);
    consume_all(&broker.bootstrap(), &topic, 2, RECORDS, CONSUME_TIMEOUT).expect_count(RECORDS);
    let labels = [("topic", topic.as_str())];
    let scraped = scrape_until(&broker, |s| {
        s.get("ringlog_records_out_total", &labels) == Some(RECORDS as f64)
    });
    assert_eq!(
        scraped.value("ringlog_records_out_total", &labels),
        RECORDS as f64
    );
    assert_eq!(
        scraped.value("ringlog_bytes_out_total", &labels),
        scraped.value("ringlog_bytes_in_total", &labels)
    );
    for family in [
        "ringlog_partition_records_out_total",
        "ringlog_partition_bytes_out_total",
        "ringlog_partition_records_in_total",
    ] {
        assert!(!scraped.has(family), "{family} is per partition");
    }
}
