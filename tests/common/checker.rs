//! A checker in the spirit of Jepsen's Kafka workload. Clients record what
//! they saw in a [`History`] while faults happen; after the heal a final
//! drain and every replica's log (read from its data directory with the
//! brokers stopped) make up the [`FinalState`]; [`check`] compares the two
//! and names every anomaly by record, offset and replica.
//!
//! What is checked:
//! - every acknowledged write is in the final drain at its acknowledged offset;
//! - no offset below the committed end holds two different records on two
//!   replicas, or was acknowledged for two different records, and replicas
//!   hold the same bytes in each committed batch;
//! - no consumer read a record the final drain does not hold at that offset;
//! - each consumer read every partition in log order, without skipping
//!   offsets the final log holds;
//! - committed group offsets never went backwards;
//! - no record is in the final log twice (idempotent producers);
//! - after each fault every partition took a write again within a bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use ringlog::storage::batch::{BatchHeader, BATCH_BYTES_LIMIT};

/// A partition of the topic under test.
pub type Partition = i32;
/// A record's offset in its partition.
pub type Offset = i64;
/// Per partition, the record value at each offset.
pub type Logs = BTreeMap<Partition, BTreeMap<Offset, Vec<u8>>>;

/// A write the cluster acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub partition: Partition,
    pub offset: Offset,
    pub value: Vec<u8>,
    pub sent_at: Instant,
    pub acked_at: Instant,
}

/// One record a consumer received. `session` starts again at each of its
/// (re)assignments: order is checked within a session only.
#[derive(Debug, Clone)]
pub struct Read {
    pub consumer: String,
    pub session: u64,
    pub partition: Partition,
    pub offset: Offset,
    pub value: Vec<u8>,
}

/// A committed offset of a group, as committed or as read back.
#[derive(Debug, Clone)]
pub struct Commit {
    pub group: String,
    pub partition: Partition,
    pub offset: Offset,
    /// "committed" or "read back".
    pub how: &'static str,
}

/// A fault the test injected, and when.
#[derive(Debug, Clone)]
pub struct Fault {
    pub name: String,
    pub at: Instant,
}

/// Everything the clients saw, in the order they saw it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub acks: Vec<Ack>,
    /// Writes the producer gave up on, with the client's reason; they may
    /// or may not be in the log (indeterminate).
    pub failed: Vec<(Vec<u8>, String)>,
    pub reads: Vec<Read>,
    pub commits: Vec<Commit>,
    pub faults: Vec<Fault>,
    /// Client errors worth reporting that are not anomalies by themselves.
    pub notes: Vec<String>,
}

/// A thread-safe recorder of [`Observed`], shared by every client thread.
#[derive(Debug, Default)]
pub struct History {
    observed: Mutex<Observed>,
}

impl History {
    fn with(&self, change: impl FnOnce(&mut Observed)) {
        change(&mut self.observed.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn ack(&self, ack: Ack) {
        self.with(|o| o.acks.push(ack));
    }

    pub fn failed(&self, value: Vec<u8>, reason: String) {
        self.with(|o| o.failed.push((value, reason)));
    }

    pub fn read(&self, read: Read) {
        self.with(|o| o.reads.push(read));
    }

    pub fn commit(&self, commit: Commit) {
        self.with(|o| o.commits.push(commit));
    }

    /// Marks that the fault `name` happens now.
    pub fn fault(&self, name: &str) {
        let fault = Fault {
            name: name.to_string(),
            at: Instant::now(),
        };
        eprintln!("fault: {name}");
        self.with(|o| o.faults.push(fault));
    }

    pub fn note(&self, note: String) {
        self.with(|o| o.notes.push(note));
    }

    pub fn snapshot(&self) -> Observed {
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One replica of one partition, as its data directory holds it.
#[derive(Debug, Clone)]
pub struct Replica {
    pub node: i32,
    pub partition: Partition,
    pub records: BTreeMap<Offset, Vec<u8>>,
    /// Each batch by its base offset: replicas of one log hold identical bytes.
    pub batches: BTreeMap<Offset, BatchBytes>,
}

/// What identifies a stored batch's bytes: its CRC-32C covers everything
/// after the leader epoch, and the base offset and epoch are kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBytes {
    pub last_offset: Offset,
    pub leader_epoch: i32,
    pub crc: u32,
    /// Producer id, producer epoch and base sequence (KIP-98), which tell a
    /// client's resend under a new epoch from a broker's missed duplicate.
    pub producer: (i64, i16, i32),
}

/// What the healed cluster holds.
#[derive(Debug, Clone, Default)]
pub struct FinalState {
    /// What a consumer read from the start of every partition to its high
    /// watermark after the heal: the committed log.
    pub drained: Logs,
    pub replicas: Vec<Replica>,
}

/// One anomaly, with everything needed to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    LostWrite {
        partition: Partition,
        offset: Offset,
        value: Vec<u8>,
        /// What the final drain holds there instead.
        drained: Option<Vec<u8>>,
        /// Each replica and what it holds at that offset.
        replicas: Vec<(i32, Option<Vec<u8>>)>,
    },
    ConflictingAcks {
        partition: Partition,
        offset: Offset,
        first: Vec<u8>,
        second: Vec<u8>,
    },
    ReplicasDiverge {
        partition: Partition,
        offset: Offset,
        replicas: Vec<(i32, Vec<u8>)>,
    },
    /// Batches at one base offset whose bytes differ between replicas.
    BatchesDiverge {
        partition: Partition,
        base_offset: Offset,
        replicas: Vec<(i32, BatchBytes)>,
    },
    ReadLost {
        consumer: String,
        partition: Partition,
        offset: Offset,
        value: Vec<u8>,
        drained: Option<Vec<u8>>,
    },
    ReadOutOfOrder {
        consumer: String,
        partition: Partition,
        previous: Offset,
        offset: Offset,
    },
    ReadSkipped {
        consumer: String,
        partition: Partition,
        previous: Offset,
        offset: Offset,
        /// The first offset between them the final log holds.
        missed: Offset,
    },
    CommitWentBack {
        group: String,
        partition: Partition,
        from: Offset,
        to: Offset,
        how: &'static str,
    },
    Duplicate {
        value: Vec<u8>,
        at: Vec<(Partition, Offset)>,
        /// The batch holding each copy, as a replica stores it.
        batches: Vec<Option<BatchBytes>>,
    },
    Unavailable {
        fault: String,
        /// Partitions with no acknowledged write sent after the fault (or,
        /// when every one recovered, those that took longer than the bound).
        partitions: Vec<Partition>,
        /// How long the slowest partition took, when every one recovered.
        took: Option<Duration>,
        bound: Duration,
    },
}

/// A value as text, shortened, for messages.
pub fn show(value: &[u8]) -> String {
    const SHOWN_BYTES_MAX: usize = 48;
    let text = String::from_utf8_lossy(&value[..value.len().min(SHOWN_BYTES_MAX)]);
    if value.len() > SHOWN_BYTES_MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

fn show_opt(value: &Option<Vec<u8>>) -> String {
    value.as_deref().map_or_else(|| "nothing".to_string(), show)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::LostWrite {
                partition,
                offset,
                value,
                drained,
                replicas,
            } => {
                write!(
                    f,
                    "lost write: {} was acknowledged at partition {partition} offset {offset}, \
                     but the final log holds {} there",
                    show(value),
                    show_opt(drained)
                )?;
                for (node, held) in replicas {
                    write!(f, "; replica on node {node} holds {}", show_opt(held))?;
                }
                Ok(())
            }
            Finding::ConflictingAcks {
                partition,
                offset,
                first,
                second,
            } => write!(
                f,
                "two records acknowledged at partition {partition} offset {offset}: {} and {}",
                show(first),
                show(second)
            ),
            Finding::ReplicasDiverge {
                partition,
                offset,
                replicas,
            } => {
                write!(
                    f,
                    "replicas diverge at partition {partition} offset {offset}:"
                )?;
                for (node, value) in replicas {
                    write!(f, " node {node} holds {};", show(value))?;
                }
                Ok(())
            }
            Finding::BatchesDiverge {
                partition,
                base_offset,
                replicas,
            } => {
                write!(
                    f,
                    "replicas hold different bytes in the batch at partition {partition} \
                     offset {base_offset}:"
                )?;
                for (node, batch) in replicas {
                    write!(
                        f,
                        " node {node} up to offset {}, leader epoch {}, crc {:#010x};",
                        batch.last_offset, batch.leader_epoch, batch.crc
                    )?;
                }
                Ok(())
            }
            Finding::ReadLost {
                consumer,
                partition,
                offset,
                value,
                drained,
            } => write!(
                f,
                "read of a lost record: consumer {consumer} read {} at partition {partition} \
                 offset {offset}, but the final log holds {} there",
                show(value),
                show_opt(drained)
            ),
            Finding::ReadOutOfOrder {
                consumer,
                partition,
                previous,
                offset,
            } => write!(
                f,
                "out-of-order read: consumer {consumer} read partition {partition} offset \
                 {offset} after offset {previous}"
            ),
            Finding::ReadSkipped {
                consumer,
                partition,
                previous,
                offset,
                missed,
            } => write!(
                f,
                "skipped read: consumer {consumer} read partition {partition} offset {offset} \
                 right after offset {previous}, missing offset {missed} the final log holds"
            ),
            Finding::CommitWentBack {
                group,
                partition,
                from,
                to,
                how,
            } => write!(
                f,
                "committed offset went back: group {group} partition {partition} from {from} \
                 to {to} ({how})"
            ),
            Finding::Duplicate { value, at, batches } => {
                write!(f, "duplicate: {} is in the final log at", show(value))?;
                for ((partition, offset), batch) in at.iter().zip(batches) {
                    write!(f, " partition {partition} offset {offset}")?;
                    if let Some(b) = batch {
                        let (id, epoch, sequence) = b.producer;
                        write!(
                            f,
                            " (producer {id} epoch {epoch} base sequence {sequence}, \
                             leader epoch {})",
                            b.leader_epoch
                        )?;
                    }
                    write!(f, ";")?;
                }
                Ok(())
            }
            Finding::Unavailable {
                fault,
                partitions,
                took,
                bound,
            } => match took {
                Some(took) => write!(
                    f,
                    "unavailable: after {fault} the last of partitions {partitions:?} took a \
                     write again after {took:?}, over the bound of {bound:?}"
                ),
                None => write!(
                    f,
                    "unavailable: after {fault} partitions {partitions:?} never took a write again"
                ),
            },
        }
    }
}

/// How long the cluster took to serve every partition again after a fault.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub fault: String,
    /// From the fault to the acknowledgement of the first write sent after
    /// it, on the slowest partition; `None` if a partition never recovered.
    pub took: Option<Duration>,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub recoveries: Vec<Recovery>,
    pub acked: usize,
    pub failed: usize,
    pub read: usize,
    pub drained: usize,
    /// Committed group offsets seen (committed or read back).
    pub commits: usize,
    pub notes: Vec<String>,
}

/// The most findings of one kind printed in full; the rest are counted.
const FINDINGS_PRINTED_PER_KIND: usize = 4;

impl Report {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// p50 and max of the recovery times of the faults that recovered.
    pub fn recovery_p50_max(&self) -> Option<(Duration, Duration)> {
        let mut took: Vec<Duration> = self.recoveries.iter().filter_map(|r| r.took).collect();
        took.sort_unstable();
        let max = *took.last()?;
        Some((took[(took.len() - 1) / 2], max))
    }

    /// Panics with every finding unless there are none.
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "{self}");
    }

    /// Prints the report under `title`, then panics unless it has no
    /// findings (naming how many, which the print lists).
    pub fn print_and_assert_clean(&self, title: &str) {
        eprintln!("{title}: {self}");
        assert!(
            self.is_clean(),
            "{title}: the checker has {} findings (printed above)",
            self.findings.len()
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checker: {} acknowledged, {} failed (indeterminate), {} read by consumers, \
             {} in the final log, {} committed offsets seen; {} findings",
            self.acked,
            self.failed,
            self.read,
            self.drained,
            self.commits,
            self.findings.len()
        )?;
        for recovery in &self.recoveries {
            match recovery.took {
                Some(took) => writeln!(
                    f,
                    "  every partition took writes again {took:?} after {}",
                    recovery.fault
                )?,
                None => writeln!(
                    f,
                    "  some partition never recovered after {}",
                    recovery.fault
                )?,
            }
        }
        if let Some((p50, max)) = self.recovery_p50_max() {
            writeln!(
                f,
                "  time from fault to first produce: p50 {p50:?}, max {max:?}"
            )?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for finding in &self.findings {
            let shown = kinds.entry(finding.kind()).or_default();
            *shown += 1;
            if *shown <= FINDINGS_PRINTED_PER_KIND {
                writeln!(f, "  {finding}")?;
            }
        }
        if kinds
            .values()
            .any(|&count| count > FINDINGS_PRINTED_PER_KIND)
        {
            writeln!(f, "  ... findings by kind: {kinds:?}")?;
        }
        Ok(())
    }
}

impl Finding {
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::LostWrite { .. } => "lost write",
            Finding::ConflictingAcks { .. } => "conflicting acks",
            Finding::ReplicasDiverge { .. } => "replicas diverge",
            Finding::BatchesDiverge { .. } => "batch bytes diverge",
            Finding::ReadLost { .. } => "read of a lost record",
            Finding::ReadOutOfOrder { .. } => "out-of-order read",
            Finding::ReadSkipped { .. } => "skipped read",
            Finding::CommitWentBack { .. } => "committed offset went back",
            Finding::Duplicate { .. } => "duplicate",
            Finding::Unavailable { .. } => "unavailable",
        }
    }
}

/// Checks `observed` against `final_state`; `bound` is how long the cluster
/// may take to serve every partition again after a fault.
pub fn check(observed: &Observed, final_state: &FinalState, bound: Duration) -> Report {
    let mut findings = Vec::new();
    let drained = &final_state.drained;
    let at = |partition: Partition, offset: Offset| -> Option<&Vec<u8>> {
        drained.get(&partition)?.get(&offset)
    };

    // Acknowledged writes: at their offset, and one record per offset.
    let mut acked_at: HashMap<(Partition, Offset), &Vec<u8>> = HashMap::new();
    for ack in &observed.acks {
        // librdkafka reports a write the broker had as a duplicate without
        // its offset (-1001): it must be somewhere in its partition.
        if ack.offset < 0 {
            let held = drained
                .get(&ack.partition)
                .is_some_and(|log| log.values().any(|v| *v == ack.value));
            if !held {
                findings.push(Finding::LostWrite {
                    partition: ack.partition,
                    offset: ack.offset,
                    value: ack.value.clone(),
                    drained: None,
                    replicas: Vec::new(),
                });
            }
            continue;
        }
        let key = (ack.partition, ack.offset);
        match acked_at.get(&key) {
            Some(first) if **first != ack.value => findings.push(Finding::ConflictingAcks {
                partition: ack.partition,
                offset: ack.offset,
                first: (*first).clone(),
                second: ack.value.clone(),
            }),
            Some(_) => {}
            None => {
                acked_at.insert(key, &ack.value);
            }
        }
        if at(ack.partition, ack.offset) != Some(&ack.value) {
            findings.push(Finding::LostWrite {
                partition: ack.partition,
                offset: ack.offset,
                value: ack.value.clone(),
                drained: at(ack.partition, ack.offset).cloned(),
                replicas: replicas_at(final_state, ack.partition, ack.offset),
            });
        }
    }

    findings.extend(diverging_replicas(final_state));

    // Reads: of records the final log holds, in log order per session.
    let mut last: HashMap<(&str, u64, Partition), Offset> = HashMap::new();
    for read in &observed.reads {
        if at(read.partition, read.offset) != Some(&read.value) {
            findings.push(Finding::ReadLost {
                consumer: read.consumer.clone(),
                partition: read.partition,
                offset: read.offset,
                value: read.value.clone(),
                drained: at(read.partition, read.offset).cloned(),
            });
        }
        let key = (read.consumer.as_str(), read.session, read.partition);
        if let Some(&previous) = last.get(&key) {
            if read.offset <= previous {
                findings.push(Finding::ReadOutOfOrder {
                    consumer: read.consumer.clone(),
                    partition: read.partition,
                    previous,
                    offset: read.offset,
                });
            } else if let Some((&missed, _)) = drained
                .get(&read.partition)
                .and_then(|log| log.range(previous + 1..read.offset).next())
            {
                findings.push(Finding::ReadSkipped {
                    consumer: read.consumer.clone(),
                    partition: read.partition,
                    previous,
                    offset: read.offset,
                    missed,
                });
            }
        }
        last.insert(key, read.offset);
    }

    // Committed offsets per group and partition never go back.
    let mut committed: HashMap<(&str, Partition), Offset> = HashMap::new();
    for commit in &observed.commits {
        let key = (commit.group.as_str(), commit.partition);
        if let Some(&from) = committed.get(&key) {
            if commit.offset < from {
                findings.push(Finding::CommitWentBack {
                    group: commit.group.clone(),
                    partition: commit.partition,
                    from,
                    to: commit.offset,
                    how: commit.how,
                });
            }
        }
        let entry = committed.entry(key).or_insert(commit.offset);
        *entry = (*entry).max(commit.offset);
    }

    // One place in the log per value: producers write each value once.
    let mut places: BTreeMap<&Vec<u8>, Vec<(Partition, Offset)>> = BTreeMap::new();
    for (&partition, log) in drained {
        for (&offset, value) in log {
            places.entry(value).or_default().push((partition, offset));
        }
    }
    for (value, at) in places {
        if at.len() > 1 {
            let batches = at
                .iter()
                .map(|&(partition, offset)| batch_at(final_state, partition, offset))
                .collect();
            findings.push(Finding::Duplicate {
                value: value.clone(),
                at,
                batches,
            });
        }
    }

    // Every partition written or drained: an incomplete drain still leaves
    // the acknowledged ones to measure recovery on.
    let partitions: Vec<Partition> = drained
        .keys()
        .copied()
        .chain(observed.acks.iter().map(|a| a.partition))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let recoveries = recoveries(observed, &partitions);
    for recovery in &recoveries {
        let late = recovery.took.is_none_or(|took| took > bound);
        if late {
            let fault_at = observed
                .faults
                .iter()
                .find(|f| f.name == recovery.fault)
                .map(|f| f.at);
            let missing = partitions
                .iter()
                .copied()
                .filter(|&p| {
                    fault_at.is_some_and(|t| {
                        first_write_after(observed, p, t).is_none_or(|first| {
                            recovery.took.is_some() && first.duration_since(t) > bound
                        })
                    })
                })
                .collect();
            findings.push(Finding::Unavailable {
                fault: recovery.fault.clone(),
                partitions: missing,
                took: recovery.took,
                bound,
            });
        }
    }

    Report {
        findings,
        recoveries,
        acked: observed.acks.len(),
        failed: observed.failed.len(),
        read: observed.reads.len(),
        drained: drained.values().map(BTreeMap::len).sum(),
        commits: observed.commits.len(),
        notes: observed.notes.clone(),
    }
}

fn replicas_at(
    final_state: &FinalState,
    partition: Partition,
    offset: Offset,
) -> Vec<(i32, Option<Vec<u8>>)> {
    final_state
        .replicas
        .iter()
        .filter(|r| r.partition == partition)
        .map(|r| (r.node, r.records.get(&offset).cloned()))
        .collect()
}

/// Offsets below the committed end (the final drain's last offset) where
/// two replicas hold different records. Past it, uncommitted tails may differ.
fn diverging_replicas(final_state: &FinalState) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (&partition, log) in &final_state.drained {
        let Some((&committed_last, _)) = log.last_key_value() else {
            continue;
        };
        let replicas: Vec<&Replica> = final_state
            .replicas
            .iter()
            .filter(|r| r.partition == partition)
            .collect();
        let mut offsets: Vec<Offset> = replicas
            .iter()
            .flat_map(|r| r.records.range(..=committed_last).map(|(o, _)| *o))
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        for offset in offsets {
            let held: Vec<(i32, Vec<u8>)> = replicas
                .iter()
                .filter_map(|r| r.records.get(&offset).map(|v| (r.node, v.clone())))
                .collect();
            if held.windows(2).any(|pair| pair[0].1 != pair[1].1) {
                findings.push(Finding::ReplicasDiverge {
                    partition,
                    offset,
                    replicas: held,
                });
            }
        }
        let mut bases: Vec<Offset> = replicas
            .iter()
            .flat_map(|r| r.batches.range(..=committed_last).map(|(o, _)| *o))
            .collect();
        bases.sort_unstable();
        bases.dedup();
        for base_offset in bases {
            let held: Vec<(i32, BatchBytes)> = replicas
                .iter()
                .filter_map(|r| r.batches.get(&base_offset).map(|b| (r.node, *b)))
                .collect();
            if held.windows(2).any(|pair| pair[0].1 != pair[1].1) {
                findings.push(Finding::BatchesDiverge {
                    partition,
                    base_offset,
                    replicas: held,
                });
            }
        }
    }
    findings
}

/// When partition `partition` first acknowledged a write sent at or after `at`.
fn first_write_after(observed: &Observed, partition: Partition, at: Instant) -> Option<Instant> {
    observed
        .acks
        .iter()
        .filter(|a| a.partition == partition && a.sent_at >= at)
        .map(|a| a.acked_at)
        .min()
}

fn recoveries(observed: &Observed, partitions: &[Partition]) -> Vec<Recovery> {
    observed
        .faults
        .iter()
        .map(|fault| {
            let slowest = partitions
                .iter()
                .map(|&p| first_write_after(observed, p, fault.at))
                .try_fold(fault.at, |latest, first| first.map(|t| latest.max(t)));
            Recovery {
                fault: fault.name.clone(),
                took: slowest.map(|t| t.duration_since(fault.at)),
            }
        })
        .collect()
}

/// The batch holding `offset` of `partition` on the first replica that has it.
fn batch_at(final_state: &FinalState, partition: Partition, offset: Offset) -> Option<BatchBytes> {
    final_state
        .replicas
        .iter()
        .filter(|r| r.partition == partition)
        .find_map(|r| {
            let (_, batch) = r.batches.range(..=offset).next_back()?;
            (batch.last_offset >= offset).then_some(*batch)
        })
}

/// Why a replica's log could not be read.
#[derive(Debug)]
pub struct ReplicaError(pub String);

/// Reads every record of the partition directory `dir` straight from its
/// segment files (`*.log`, Kafka's layout): each batch's framing and CRC-32C
/// are checked, and reading a segment stops at its first invalid batch (the
/// preallocated or torn tail). A missing directory is an empty replica.
pub fn read_replica(node: i32, partition: Partition, dir: &Path) -> Result<Replica, ReplicaError> {
    let mut records = BTreeMap::new();
    let mut batches = BTreeMap::new();
    let mut segments: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(ReplicaError(format!("{}: {error}", dir.display()))),
    };
    segments.sort();
    for segment in segments {
        let bytes = std::fs::read(&segment)
            .map_err(|e| ReplicaError(format!("{}: {e}", segment.display())))?;
        let mut position = 0;
        while position < bytes.len() {
            let rest = &bytes[position..];
            let Ok(header) = BatchHeader::parse(rest) else {
                break;
            };
            if header.validate(rest, BATCH_BYTES_LIMIT).is_err() {
                break;
            }
            let total = header.total_bytes();
            batches.insert(
                header.base_offset,
                BatchBytes {
                    last_offset: header.last_offset(),
                    leader_epoch: header.partition_leader_epoch,
                    crc: header.crc,
                    producer: (
                        header.producer_id,
                        header.producer_epoch,
                        header.base_sequence,
                    ),
                },
            );
            let mut batch = Bytes::copy_from_slice(&rest[..total]);
            let decoded = RecordBatchDecoder::decode(&mut batch).map_err(|e| {
                ReplicaError(format!(
                    "{} at byte {position}: a valid batch does not decode: {e}",
                    segment.display()
                ))
            })?;
            for record in decoded.records {
                if record.control {
                    continue;
                }
                let value = record.value.map(|v| v.to_vec()).unwrap_or_default();
                records.insert(record.offset, value);
            }
            position += total;
        }
    }
    Ok(Replica {
        node,
        partition,
        records,
        batches,
    })
}
