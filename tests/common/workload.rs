//! The load a fault test runs: idempotent acks=all rdkafka producers
//! writing unique values round-robin over the partitions, consumers reading
//! every partition by assignment, and a group consumer committing what it
//! read; everything they see goes into a [`History`]. After the faults,
//! [`drain`] reads the healed log and [`cluster_final_state`] adds every
//! replica's log, read from the stopped brokers' data directories.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::checker::{self, Ack, Commit, FinalState, History, Logs, Read};
use super::clients::base_config;
use super::cluster::Cluster;
use super::wait_until;

/// How long one poll of a consumer waits.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the group consumer commits what it read.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// How often the group consumer reads its committed offsets back.
const READ_BACK_INTERVAL: Duration = Duration::from_secs(1);
/// Timeout of one commit or read-back of committed offsets.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long producers may take to deliver what is queued when the load stops.
const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the final drain may take.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one high-watermark query during the drain.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on a producer's wait for the delivery of one message.
const MESSAGE_TIMEOUT_MS: &str = "30000";

/// What load to run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub topic: String,
    pub partitions: i32,
    /// Idempotent acks=all producers, each with its own values `w<n>-<seq>`.
    pub producers: usize,
    /// Consumers reading every partition from the start by assignment.
    pub consumers: usize,
    /// A group whose one member subscribes and commits, if any.
    pub group: Option<String>,
    /// Pause between two sends of one producer.
    pub send_interval: Duration,
}

impl WorkloadConfig {
    /// Two producers at about 100 writes a second each, two consumers, one group.
    pub fn new(topic: &str, partitions: i32) -> WorkloadConfig {
        WorkloadConfig {
            topic: topic.to_string(),
            partitions,
            producers: 2,
            consumers: 2,
            group: Some(format!("{topic}-group")),
            send_interval: Duration::from_millis(10),
        }
    }
}

/// The running load; [`Workload::stop`] ends it and hands back its history.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub history: Arc<History>,
    acked: Arc<AtomicUsize>,
    /// How many times the group's member was assigned partitions.
    member_assignments: Arc<AtomicU64>,
}

impl Workload {
    pub fn start(bootstrap: &str, config: &WorkloadConfig) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(History::default());
        let acked = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for writer in 0..config.producers {
            let (stop, history, acked) = (stop.clone(), history.clone(), acked.clone());
            let (bootstrap, config) = (bootstrap.to_string(), config.clone());
            threads.push(thread::spawn(move || {
                produce(&bootstrap, &config, writer, &stop, &history, &acked)
            }));
        }
        for reader in 0..config.consumers {
            let (stop, history) = (stop.clone(), history.clone());
            let (bootstrap, config) = (bootstrap.to_string(), config.clone());
            threads.push(thread::spawn(move || {
                let name = format!("reader-{reader}");
                let session = Arc::new(AtomicU64::new(0));
                read(&bootstrap, &config, &name, None, &session, &stop, &history)
            }));
        }
        let member_assignments = Arc::new(AtomicU64::new(0));
        if let Some(group) = config.group.clone() {
            let (stop, history) = (stop.clone(), history.clone());
            let (bootstrap, config) = (bootstrap.to_string(), config.clone());
            let session = member_assignments.clone();
            threads.push(thread::spawn(move || {
                read(
                    &bootstrap,
                    &config,
                    "member-0",
                    Some(&group),
                    &session,
                    &stop,
                    &history,
                )
            }));
        }
        Workload {
            stop,
            threads,
            history,
            acked,
            member_assignments,
        }
    }

    /// Waits until the group's member has its partitions (a group's first
    /// join waits out the initial rebalance delay); false on timeout.
    pub fn wait_for_member(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.member_assignments.load(Ordering::Relaxed) > 0
        })
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further writes are acknowledged; false on timeout.
    pub fn wait_for_more_acks(&self, more: usize, timeout: Duration) -> bool {
        let target = self.acked() + more;
        wait_until(timeout, || self.acked() >= target)
    }

    /// Stops every client (producers deliver what they queued first).
    pub fn stop(self) -> Arc<History> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            if thread.join().is_err() {
                self.history.note("a client thread panicked".to_string());
            }
        }
        self.history
    }
}

/// Set to a file path, producers log librdkafka's idempotence events
/// (`debug=eos`) there, one line each with the writer.
const CLIENT_LOG_VAR: &str = "RINGLOG_FAULT_CLIENT_LOG";

/// Records each delivery report; the opaque is when the write was sent.
struct WriteContext {
    history: Arc<History>,
    acked: Arc<AtomicUsize>,
    writer: usize,
    client_log: Option<Arc<std::sync::Mutex<std::fs::File>>>,
}

impl ClientContext for WriteContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        use std::io::Write;
        if let Some(file) = &self.client_log {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(
                file,
                "{:?} w{} {level:?} {fac} {line}",
                std::time::SystemTime::now(),
                self.writer
            );
        }
    }
}

impl ProducerContext for WriteContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Box<Instant>) {
        match result {
            Ok(message) => {
                self.history.ack(Ack {
                    partition: message.partition(),
                    offset: message.offset(),
                    value: message.payload().unwrap_or_default().to_vec(),
                    sent_at: *sent_at,
                    acked_at: Instant::now(),
                });
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => self.history.failed(
                message.payload().unwrap_or_default().to_vec(),
                error.to_string(),
            ),
        }
    }
}

fn new_producer(
    bootstrap: &str,
    writer: usize,
    history: &Arc<History>,
    acked: &Arc<AtomicUsize>,
) -> ThreadedProducer<WriteContext> {
    let mut config: ClientConfig = base_config(bootstrap);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
        .set("request.timeout.ms", "5000");
    let client_log = std::env::var_os(CLIENT_LOG_VAR).map(|path| {
        config
            .set("debug", "eos")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.to_string_lossy()));
        Arc::new(std::sync::Mutex::new(file))
    });
    config
        .create_with_context(WriteContext {
            history: history.clone(),
            acked: acked.clone(),
            writer,
            client_log,
        })
        .expect("producer configuration must be valid")
}

fn produce(
    bootstrap: &str,
    config: &WorkloadConfig,
    writer: usize,
    stop: &AtomicBool,
    history: &Arc<History>,
    acked: &Arc<AtomicUsize>,
) {
    let mut producer = new_producer(bootstrap, writer, history, acked);
    let mut sequence: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let value = format!("w{writer}-{sequence}");
        let partition = (sequence % config.partitions as u64) as i32;
        let record = BaseRecord::<[u8], [u8], Box<Instant>>::with_opaque_to(
            &config.topic,
            Box::new(Instant::now()),
        )
        .partition(partition)
        .payload(value.as_bytes());
        match producer.send(record) {
            Ok(()) => sequence += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
            Err((error, _)) => history.note(format!("producer {writer}: send: {error}")),
        }
        // An idempotent producer that lost its sequence state stops for good
        // (librdkafka's fatal error): note why and go on with a new one.
        if let Some((code, reason)) = producer.client().fatal_error() {
            history.note(format!(
                "producer {writer} failed fatally at w{writer}-{sequence}: {code:?} {reason}"
            ));
            let _ = producer.flush(Duration::from_secs(1));
            producer = new_producer(bootstrap, writer, history, acked);
        }
        thread::sleep(config.send_interval);
    }
    if let Err(error) = producer.flush(STOP_FLUSH_TIMEOUT) {
        history.note(format!("producer {writer}: final flush: {error}"));
    }
}

/// Counts the consumer's (re)assignments, so reads are ordered per session.
struct SessionContext {
    session: Arc<AtomicU64>,
}

impl ClientContext for SessionContext {}

impl ConsumerContext for SessionContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.session.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn read(
    bootstrap: &str,
    config: &WorkloadConfig,
    name: &str,
    group: Option<&str>,
    session: &Arc<AtomicU64>,
    stop: &AtomicBool,
    history: &History,
) {
    let mut client_config = base_config(bootstrap);
    client_config
        .set(
            "group.id",
            group.unwrap_or(&format!("{}-{name}", config.topic)),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    let consumer: BaseConsumer<SessionContext> = client_config
        .create_with_context(SessionContext {
            session: session.clone(),
        })
        .expect("consumer configuration must be valid");
    match group {
        Some(_) => consumer
            .subscribe(&[&config.topic])
            .expect("subscribe must succeed locally"),
        None => {
            let mut list = TopicPartitionList::new();
            for partition in 0..config.partitions {
                list.add_partition_offset(&config.topic, partition, Offset::Beginning)
                    .expect("a new list entry");
            }
            consumer.assign(&list).expect("assign must succeed locally");
        }
    }
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let mut last_read_back = Instant::now();
    let mut errors = 0usize;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL_TIMEOUT) {
            Some(Ok(message)) => {
                history.read(Read {
                    consumer: name.to_string(),
                    session: session.load(Ordering::Relaxed),
                    partition: message.partition(),
                    offset: message.offset(),
                    value: message.payload().unwrap_or_default().to_vec(),
                });
                next.insert(message.partition(), message.offset() + 1);
            }
            Some(Err(_)) => errors += 1,
            None => {}
        }
        let Some(group) = group else { continue };
        if last_commit.elapsed() >= COMMIT_INTERVAL && !next.is_empty() {
            last_commit = Instant::now();
            commit(&consumer, config, group, &next, history);
        }
        if last_read_back.elapsed() >= READ_BACK_INTERVAL {
            last_read_back = Instant::now();
            read_back(&consumer, group, history);
        }
    }
    if errors > 0 {
        history.note(format!("{name}: {errors} consumer errors while polling"));
    }
}

fn commit(
    consumer: &BaseConsumer<SessionContext>,
    config: &WorkloadConfig,
    group: &str,
    next: &BTreeMap<i32, i64>,
    history: &History,
) {
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in next {
        list.add_partition_offset(&config.topic, partition, Offset::Offset(offset))
            .expect("a new list entry");
    }
    if consumer.commit(&list, CommitMode::Sync).is_ok() {
        for (&partition, &offset) in next {
            history.commit(Commit {
                group: group.to_string(),
                partition,
                offset,
                how: "committed",
            });
        }
    }
}

fn read_back(consumer: &BaseConsumer<SessionContext>, group: &str, history: &History) {
    let committed = match consumer.committed(COMMIT_TIMEOUT) {
        Ok(committed) => committed,
        // Mid-fault the coordinator may not answer; the report says so.
        Err(error) => {
            history.note(format!("{group}: committed offsets not read back: {error}"));
            return;
        }
    };
    for element in committed.elements() {
        if let Offset::Offset(offset) = element.offset() {
            history.commit(Commit {
                group: group.to_string(),
                partition: element.partition(),
                offset,
                how: "read back",
            });
        }
    }
}

/// Reads every partition of `topic` from its start to its high watermark.
pub fn drain(bootstrap: &str, topic: &str, partitions: i32) -> Result<Logs, String> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", format!("{topic}-drain"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("drain consumer: {e}"))?;
    let mut high = BTreeMap::new();
    for partition in 0..partitions {
        let watermark = loop {
            match consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT) {
                Ok((_, high)) => break high,
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!("high watermark of {topic}-{partition}: {error}"))
                }
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        };
        high.insert(partition, watermark);
    }
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a new list entry");
    }
    consumer.assign(&list).map_err(|e| format!("assign: {e}"))?;
    let mut logs: Logs = (0..partitions).map(|p| (p, BTreeMap::new())).collect();
    let mut next: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    while next.iter().any(|(p, n)| n < &high[p]) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the drain reached {next:?} of the high watermarks {high:?} in {DRAIN_TIMEOUT:?}"
            ));
        }
        if let Some(Ok(message)) = consumer.poll(POLL_TIMEOUT) {
            let value = message.payload().unwrap_or_default().to_vec();
            logs.entry(message.partition())
                .or_default()
                .insert(message.offset(), value);
            next.insert(message.partition(), message.offset() + 1);
        }
        // The consumer's position also moves past control batches (a new
        // leader's LEADER_CHANGE may end the log), which no message shows.
        if let Ok(positions) = consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(at) = element.offset() {
                    let seen = next.entry(element.partition()).or_insert(0);
                    *seen = (*seen).max(at);
                }
            }
        }
    }
    Ok(logs)
}

/// Resumes paused nodes, restarts dead ones, waits until every node lists
/// all, stops `workload`, drains `topic`, stops every node and reads every
/// replica of every partition. Returns the history with the final state.
pub fn finish_cluster(
    cluster: &mut Cluster,
    workload: Workload,
    topic: &str,
    partitions: i32,
) -> (checker::Observed, FinalState) {
    if let Some(network) = cluster.network() {
        network.heal();
    }
    let count = cluster.nodes.len();
    for id in cluster.ids() {
        cluster.resume(id);
        if cluster.node(id).pid().is_none() {
            cluster.restart(id);
        }
    }
    for id in cluster.ids() {
        cluster.wait_for_brokers(id, count);
    }
    let history = workload.stop();
    let drained = drain(&cluster.bootstrap(), topic, partitions).unwrap_or_else(|error| {
        history.note(format!("final drain incomplete: {error}"));
        Logs::new()
    });
    cluster.stop_all();
    let mut replicas = Vec::new();
    for id in cluster.ids() {
        for partition in 0..partitions {
            let dir = cluster.partition_dir(id, topic, partition);
            match checker::read_replica(id, partition, &dir) {
                Ok(replica) => replicas.push(replica),
                Err(error) => history.note(format!("replica unreadable: {}", error.0)),
            }
        }
    }
    (history.snapshot(), FinalState { drained, replicas })
}
