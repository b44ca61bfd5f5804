//! Durability across broker restarts: a clean stop and start, a SIGKILL in the
//! middle of an acks=all load, and a torn segment tail found at start-up.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::clients::{
    admin, admin_options, assert_all_delivered, block_on, consume_all, consumer, create_topic,
    describe_topic, flush, partition_count, produce_keyed, producer, send, topic_names, watermarks,
    Consumed, Delivered,
};
use common::{unique_topic, Broker};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Acknowledged messages to wait for before the SIGKILL.
const ACKED_BEFORE_KILL: usize = 3_000;
/// How long the load may take to reach `ACKED_BEFORE_KILL`.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// (partition, offset, key, value, timestamp) of one consumed message.
type Row = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>, Timestamp);

/// Every consumed message as a [`Row`], sorted.
fn snapshot(consumed: &Consumed) -> Vec<Row> {
    let mut rows: Vec<_> = consumed
        .messages
        .iter()
        .map(|m| {
            (
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.timestamp(),
            )
        })
        .collect();
    rows.sort_by_key(|row| (row.0, row.1));
    rows
}

fn retention_ms(bootstrap: &str, topic: &str) -> Option<String> {
    let resource = describe_topic(bootstrap, topic);
    resource
        .get("retention.ms")
        .and_then(|entry| entry.value.clone())
}

#[test]
fn restarted_broker_serves_the_same_topics_configs_and_data() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let wide = unique_topic("restart-wide");
    let narrow = unique_topic("restart-narrow");
    create_topic(&bootstrap, &wide, 3, &[("retention.ms", "86400000")]);
    create_topic(&bootstrap, &narrow, 1, &[]);
    produce_keyed(&bootstrap, &wide, 1_000, 50);
    produce_keyed(&bootstrap, &narrow, 100, 1);
    let admin_client = admin(&bootstrap);
    let mut delete_before = TopicPartitionList::new();
    delete_before
        .add_partition_offset(&narrow, 0, Offset::Offset(30))
        .expect("a valid offset");
    block_on(admin_client.delete_records(&delete_before, &admin_options()))
        .expect("DeleteRecords request");
    drop(admin_client);

    let wide_before = snapshot(&consume_all(&bootstrap, &wide, 3, 1_000, CONSUME_TIMEOUT));
    assert_eq!(wide_before.len(), 1_000, "consumed before the restart");
    let wide_marks_before: Vec<_> = (0..3).map(|p| watermarks(&bootstrap, &wide, p)).collect();

    for round in 1..=2 {
        broker.restart();
        let names = topic_names(&bootstrap);
        assert!(
            names.contains(&wide) && names.contains(&narrow),
            "round {round}: topics {names:?}"
        );
        let consumer = consumer(&bootstrap, &[]);
        assert_eq!(
            partition_count(&consumer, &wide),
            Some(3),
            "round {round}: partitions"
        );
        assert_eq!(
            retention_ms(&bootstrap, &wide).as_deref(),
            Some("86400000"),
            "round {round}: config"
        );
        let wide_marks: Vec<_> = (0..3).map(|p| watermarks(&bootstrap, &wide, p)).collect();
        assert_eq!(wide_marks, wide_marks_before, "round {round}: watermarks");
        assert_eq!(
            watermarks(&bootstrap, &narrow, 0),
            (30, 100 + (round - 1) * 10),
            "round {round}: the log start offset survives"
        );
        let wide_after = snapshot(&consume_all(&bootstrap, &wide, 3, 1_000, CONSUME_TIMEOUT));
        assert_eq!(
            wide_after, wide_before,
            "round {round}: the same messages at the same offsets"
        );

        // Appends continue where the log ended.
        let delivered = produce_keyed(&bootstrap, &narrow, 10, 1);
        let first = delivered
            .iter()
            .map(|d| d.offset)
            .min()
            .expect("ten deliveries");
        assert_eq!(
            first,
            100 + (round - 1) * 10,
            "round {round}: first offset after the restart"
        );
    }
}

/// An acks=all producer thread that sends keyed messages until stopped.
struct Load {
    producer: Arc<common::clients::RecordingProducer>,
    log: Arc<common::clients::DeliveryLog>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl Load {
    fn start(bootstrap: &str, topic: &str) -> Load {
        let (producer, log) = producer(bootstrap, &[("acks", "all"), ("linger.ms", "2")]);
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let producer = Arc::clone(&producer);
            let stop = Arc::clone(&stop);
            let topic = topic.to_string();
            thread::spawn(move || {
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("key-{}", sent % 64);
                    let value = format!("value-{sent}");
                    send(
                        &producer,
                        BaseRecord::to(&topic)
                            .key(key.as_bytes())
                            .payload(value.as_bytes()),
                    );
                    sent += 1;
                    if sent.is_multiple_of(100) {
                        // Keep the load steady rather than queueing everything at once.
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                sent
            })
        };
        Load {
            producer,
            log,
            stop,
            thread,
        }
    }

    /// Waits until `count` messages in all were acknowledged.
    fn wait_for_acknowledged(&self, count: usize) {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        while self.log.delivered_count() < count {
            assert!(
                Instant::now() < deadline,
                "only {} acknowledged within {LOAD_TIMEOUT:?}; failures: {:?}",
                self.log.delivered_count(),
                self.log.failures().first()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sending, purges what is still queued or in flight, and returns
    /// what was acknowledged.
    fn stop(self) -> Vec<Delivered> {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.thread.join().expect("the load thread does not panic");
        drop(Arc::into_inner(self.producer).expect("the load thread has ended"));
        let acknowledged = self.log.delivered();
        eprintln!("sent {sent}, acknowledged {}", acknowledged.len());
        acknowledged
    }
}

/// Checks that every partition's offsets are dense and that every
/// acknowledged message is stored at its offset; returns the watermarks.
fn assert_acknowledged_are_stored(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    acknowledged: &[Delivered],
) -> Vec<(i64, i64)> {
    let marks: Vec<(i64, i64)> = (0..partitions)
        .map(|p| watermarks(bootstrap, topic, p))
        .collect();
    let stored: i64 = marks.iter().map(|(low, high)| high - low).sum();
    assert!(
        stored >= acknowledged.len() as i64,
        "{stored} messages stored, {} acknowledged; watermarks {marks:?}",
        acknowledged.len()
    );
    let consumed = consume_all(
        bootstrap,
        topic,
        partitions,
        stored as usize,
        CONSUME_TIMEOUT,
    );
    consumed.expect_count(stored as usize);
    let mut at: HashMap<(i32, i64), Option<Vec<u8>>> = HashMap::new();
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    for message in &consumed.messages {
        let next = next_offset.entry(message.partition()).or_insert(0);
        assert_eq!(
            message.offset(),
            *next,
            "offsets of partition {} are dense",
            message.partition()
        );
        *next += 1;
        at.insert(
            (message.partition(), message.offset()),
            message.payload().map(<[u8]>::to_vec),
        );
    }
    for report in acknowledged {
        assert_eq!(
            at.get(&(report.partition, report.offset)),
            Some(&report.payload),
            "acknowledged message at {}/{} is missing or different after SIGKILL",
            report.partition,
            report.offset
        );
    }
    marks
}

#[test]
fn acknowledged_messages_survive_a_sigkill_during_an_acks_all_load() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("sigkill");
    let partitions = 2;
    create_topic(&bootstrap, &topic, partitions, &[]);

    let load = Load::start(&bootstrap, &topic);
    load.wait_for_acknowledged(ACKED_BEFORE_KILL);
    broker.kill9();
    let acknowledged = load.stop();

    broker.start_again();
    let marks = assert_acknowledged_are_stored(&bootstrap, &topic, partitions, &acknowledged);

    // The recovered log takes new writes at its end.
    let delivered = produce_keyed(&bootstrap, &topic, 20, 64);
    for report in &delivered {
        let (_, high_before) = marks[report.partition as usize];
        assert!(
            report.offset >= high_before,
            "new offsets continue after the recovered end"
        );
    }
}

/// Kill and restart cycles, as a supervisor (`Restart=always`) runs them.
const KILL_RESTART_CYCLES: usize = 50;
/// Messages acknowledged in each cycle before its SIGKILL.
const ACKED_PER_CYCLE: usize = 100;

#[test]
fn a_broker_killed_with_sigkill_under_load_restarts_at_once_every_time() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("kill-restart");
    let partitions = 2;
    create_topic(&bootstrap, &topic, partitions, &[]);
    let load = Load::start(&bootstrap, &topic);
    for cycle in 1..=KILL_RESTART_CYCLES {
        load.wait_for_acknowledged(cycle * ACKED_PER_CYCLE);
        broker.kill9();
        // At once: the killed process's listener may still be closing.
        broker.start_again();
    }
    let acknowledged = load.stop();
    assert_acknowledged_are_stored(&bootstrap, &topic, partitions, &acknowledged);
}

fn newest_segment(broker: &Broker, topic: &str, partition: i32) -> PathBuf {
    let dir = broker.data_dir().join(format!("{topic}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading partition directory {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| panic!("no .log segment in {}", dir.display()))
}

#[test]
fn torn_segment_tail_is_cut_at_start_up_and_acknowledged_data_is_kept() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let topic = unique_topic("torn-tail");
    create_topic(&bootstrap, &topic, 1, &[]);
    let (producer, log) = producer(&bootstrap, &[("linger.ms", "0")]);
    for i in 0..50 {
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(&topic)
                .key(&b"k"[..])
                .payload(value.as_bytes()),
        );
        if i % 10 == 9 {
            flush(&producer);
        }
    }
    flush(&producer);
    assert_all_delivered(&log, 50);
    drop(producer);
    let status = broker.stop();
    assert!(status.success(), "clean stop: {status}");

    // A torn write: the start of a batch header (base offset 50, length 1000)
    // and a few bytes of its body, as if the machine died mid-append.
    let segment = newest_segment(&broker, &topic, 0);
    let mut torn = Vec::new();
    torn.extend_from_slice(&50i64.to_be_bytes());
    torn.extend_from_slice(&1000i32.to_be_bytes());
    torn.extend_from_slice(&[0xAB; 37]);
    let mut file = OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap_or_else(|error| panic!("opening {}: {error}", segment.display()));
    file.write_all(&torn).expect("appending a torn batch");
    file.sync_all().expect("syncing the segment");
    drop(file);

    broker.start_again();
    assert_eq!(
        watermarks(&bootstrap, &topic, 0),
        (0, 50),
        "watermarks after recovery"
    );
    let consumed = consume_all(&bootstrap, &topic, 1, 50, CONSUME_TIMEOUT);
    consumed.expect_count(50);
    for (i, message) in consumed.messages.iter().enumerate() {
        assert_eq!(message.offset(), i as i64);
        assert_eq!(message.payload(), Some(format!("value-{i}").as_bytes()));
    }
    let delivered = produce_keyed(&bootstrap, &topic, 1, 1);
    assert_eq!(
        delivered[0].offset, 50,
        "the next append follows the last whole batch"
    );
    let consumed = consume_all(&bootstrap, &topic, 1, 51, CONSUME_TIMEOUT);
    consumed.expect_count(51);
}
