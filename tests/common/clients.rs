//! rdkafka (librdkafka) clients for the tests: a producer that records every
//! delivery report, a group-less consumer driven by explicit assignment, and an
//! admin client whose calls are bounded by request and operation timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Timeout of one client request and of an admin operation.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a producer flush may take before the test fails.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a metadata request may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying a send refused because the producer queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How long one send may keep being refused with a full queue.
const QUEUE_FULL_TIMEOUT: Duration = Duration::from_secs(30);

/// Client settings every test client shares: IPv4 loopback, short backoffs so
/// that clients reconnect quickly after a broker restart, bounded timeouts.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "50")
        .set("retry.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "2000");
    config
}

fn apply(config: &mut ClientConfig, overrides: &[(&str, &str)]) {
    for (key, value) in overrides {
        config.set(*key, *value);
    }
}

/// One delivery report: where an acknowledged message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub partition: i32,
    pub offset: i64,
}

/// Every delivery report a producer received, successful or not.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    pub delivered: Mutex<Vec<Delivered>>,
    pub failed: Mutex<Vec<(Option<Vec<u8>>, KafkaError)>>,
}

impl DeliveryLog {
    pub fn delivered(&self) -> Vec<Delivered> {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn delivered_count(&self) -> usize {
        self.delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn failures(&self) -> Vec<(Option<Vec<u8>>, KafkaError)> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Producer context that records delivery reports in a shared [`DeliveryLog`].
pub struct RecordingContext {
    pub log: Arc<DeliveryLog>,
}

impl ClientContext for RecordingContext {}

impl ProducerContext for RecordingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let delivered = Delivered {
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                self.log
                    .delivered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(delivered);
            }
            Err((error, message)) => {
                let key = message.key().map(<[u8]>::to_vec);
                self.log
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((key, error.clone()));
            }
        }
    }
}

pub type RecordingProducer = ThreadedProducer<RecordingContext>;

/// A producer (acks=all unless overridden) and the log its delivery reports go to.
pub fn producer(
    bootstrap: &str,
    overrides: &[(&str, &str)],
) -> (RecordingProducer, Arc<DeliveryLog>) {
    let mut config = base_config(bootstrap);
    config
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "10000")
        // Plain producers unless a test asks for idempotence.
        .set("enable.idempotence", "false");
    apply(&mut config, overrides);
    let log = Arc::new(DeliveryLog::default());
    let context = RecordingContext {
        log: Arc::clone(&log),
    };
    let producer = config
        .create_with_context(context)
        .expect("producer configuration must be valid");
    (producer, log)
}

/// Sends one record, waiting (bounded) while the local queue is full.
pub fn send(producer: &RecordingProducer, mut record: BaseRecord<'_, [u8], [u8], ()>) {
    let deadline = Instant::now() + QUEUE_FULL_TIMEOUT;
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if Instant::now() < deadline =>
            {
                record = returned;
                thread::sleep(QUEUE_FULL_BACKOFF);
            }
            Err((error, _)) => panic!("send failed: {error}"),
        }
    }
}

/// Sends and flushes, panicking if any message is not acknowledged.
pub fn flush(producer: &RecordingProducer) {
    producer
        .flush(FLUSH_TIMEOUT)
        .unwrap_or_else(|error| panic!("flush did not finish within {FLUSH_TIMEOUT:?}: {error}"));
}

/// Produces `count` messages with key `key-{i % keys}` and value `value-{i}`,
/// flushes, and checks every one was acknowledged. Returns the delivery reports.
pub fn produce_keyed(bootstrap: &str, topic: &str, count: usize, keys: usize) -> Vec<Delivered> {
    let (producer, log) = producer(bootstrap, &[]);
    for i in 0..count {
        let key = format!("key-{}", i % keys);
        let value = format!("value-{i}");
        send(
            &producer,
            BaseRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_bytes()),
        );
    }
    flush(&producer);
    assert_all_delivered(&log, count);
    log.delivered()
}

/// Panics unless exactly `count` messages were acknowledged and none failed.
pub fn assert_all_delivered(log: &DeliveryLog, count: usize) {
    let failures = log.failures();
    assert!(
        failures.is_empty(),
        "{} deliveries failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(log.delivered_count(), count, "acknowledged message count");
}

/// A consumer whose partitions are assigned explicitly. librdkafka refuses
/// `assign` without a group.id, so each consumer gets its own group, which is
/// never joined and never committed to.
pub fn consumer(bootstrap: &str, overrides: &[(&str, &str)]) -> BaseConsumer {
    static NEXT_GROUP: AtomicUsize = AtomicUsize::new(0);
    let group = format!(
        "ringlog-test-assign-{}",
        NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
    );
    let mut config = base_config(bootstrap);
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "earliest");
    apply(&mut config, overrides);
    config
        .create()
        .expect("consumer configuration must be valid")
}

/// Assigns `partitions` of `topic`, each starting at `offset`.
pub fn assign(consumer: &BaseConsumer, topic: &str, partitions: &[i32], offset: Offset) {
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition_offset(topic, partition, offset)
            .expect("a valid offset for a new list entry");
    }
    consumer.assign(&list).expect("assign must succeed locally");
}

/// Polls until `count` messages arrived or `timeout` passed. Errors from the
/// client are collected, not fatal: the caller asserts on what arrived.
pub fn consume(consumer: &BaseConsumer, count: usize, timeout: Duration) -> Consumed {
    let deadline = Instant::now() + timeout;
    let mut consumed = Consumed::default();
    while consumed.messages.len() < count {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        match consumer.poll(wait) {
            Some(Ok(message)) => consumed.messages.push(message.detach()),
            Some(Err(error)) => consumed.errors.push(error),
            None => {}
        }
    }
    consumed
}

/// What a consumer received.
#[derive(Debug, Default)]
pub struct Consumed {
    pub messages: Vec<OwnedMessage>,
    pub errors: Vec<KafkaError>,
}

impl Consumed {
    /// Panics with the client errors unless exactly `count` messages arrived.
    pub fn expect_count(&self, count: usize) {
        assert_eq!(
            self.messages.len(),
            count,
            "consumed message count (client errors: {:?})",
            self.errors.iter().take(5).collect::<Vec<_>>()
        );
    }
}

/// Consumes every partition of `topic` from the beginning until `count` messages.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    timeout: Duration,
) -> Consumed {
    let consumer = consumer(bootstrap, &[]);
    let all: Vec<i32> = (0..partitions).collect();
    assign(&consumer, topic, &all, Offset::Beginning);
    consume(&consumer, count, timeout)
}

/// Message key as UTF-8 text (keys in these tests are text).
pub fn key_text(message: &impl Message) -> Option<String> {
    message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
}

/// Message value as UTF-8 text.
pub fn payload_text(message: &impl Message) -> Option<String> {
    message
        .payload()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// Headers as (name, value) pairs in order.
pub fn header_pairs(message: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match message.headers() {
        None => Vec::new(),
        Some(headers) => headers
            .iter()
            .map(|h: Header<'_, &[u8]>| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect(),
    }
}

/// Builds owned headers from (name, value) pairs.
pub fn make_headers(pairs: &[(&str, Option<&[u8]>)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header { key, value: *value })
        })
}

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    base_config(bootstrap)
        .create()
        .expect("admin configuration must be valid")
}

/// Admin options with bounded request and operation timeouts.
pub fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(CLIENT_REQUEST_TIMEOUT))
        .operation_timeout(Some(CLIENT_REQUEST_TIMEOUT))
}

/// Runs an admin future to completion. librdkafka answers every admin call by
/// its request timeout, so this is bounded.
pub fn block_on<F: Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Creates a topic (replication factor 1) with `configs`; panics on any error.
/// The topic's configs as DescribeConfigs answers them.
pub fn describe_topic(bootstrap: &str, topic: &str) -> rdkafka::admin::ConfigResource {
    let results = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()),
    )
    .unwrap_or_else(|error| panic!("DescribeConfigs {topic}: {error}"));
    results
        .into_iter()
        .next()
        .expect("one result")
        .unwrap_or_else(|code| panic!("DescribeConfigs {topic} answered {code:?}"))
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = block_on(admin.create_topics([&topic], &admin_options()))
        .unwrap_or_else(|error| panic!("CreateTopics {name} failed: {error}"));
    assert_eq!(results.len(), 1, "one result per topic");
    if let Err((topic, code)) = &results[0] {
        panic!("CreateTopics {topic} failed with {code:?}");
    }
}

/// Partition count of `topic` in this broker's metadata, `None` if it is not listed.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Option<usize> {
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .unwrap_or_else(|error| panic!("Metadata failed: {error}"));
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
}

/// Topic names listed in the broker's metadata (all topics).
pub fn topic_names(bootstrap: &str) -> Vec<String> {
    let consumer = consumer(bootstrap, &[]);
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .unwrap_or_else(|error| panic!("Metadata failed: {error}"));
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

/// (low, high) watermarks of one partition.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer = consumer(bootstrap, &[]);
    consumer
        .fetch_watermarks(topic, partition, CLIENT_REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets for {topic}/{partition} failed: {error}"))
}

/// Groups messages by partition, in consumed order.
pub fn by_partition(messages: &[OwnedMessage]) -> HashMap<i32, Vec<&OwnedMessage>> {
    let mut map: HashMap<i32, Vec<&OwnedMessage>> = HashMap::new();
    for message in messages {
        map.entry(message.partition()).or_default().push(message);
    }
    map
}

/// Detaches a borrowed message (for callers that poll themselves).
pub fn owned(message: &BorrowedMessage<'_>) -> OwnedMessage {
    message.detach()
}

/// The offset `offsets_for_times` answers for partition 0 of `topic` at
/// `timestamp` (ListOffsets by time); panics on a client or partition error.
pub fn offset_for_time(consumer: &BaseConsumer, topic: &str, timestamp: i64) -> Offset {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, 0, Offset::Offset(timestamp))
        .expect("a valid query");
    let answer = consumer
        .offsets_for_times(query, CLIENT_REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("ListOffsets by time {timestamp}: {error}"));
    let element = answer
        .find_partition(topic, 0)
        .expect("the partition is answered");
    assert!(
        element.error().is_ok(),
        "ListOffsets error {:?}",
        element.error()
    );
    element.offset()
}

/// What rdkafka reads as `group`'s committed offset of each partition (-1: none).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    try_committed_offsets(bootstrap, group, topic, partitions).expect("OffsetFetch")
}

/// As [`committed_offsets`], or the client's error (a coordinator that moves).
pub fn try_committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<i64>, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer configuration must be valid");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(wanted, CLIENT_REQUEST_TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        })
        .collect())
}
