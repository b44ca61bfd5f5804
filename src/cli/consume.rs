//! `ringlog topic consume TOPIC`: Fetch from each partition's leader from
//! `--from` (or, as a member of a group, from its committed offsets), print
//! each record, stop after `-n` records or, with `--exit-at-end`, at the end
//! of every partition.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::records::Record;
use ringlog::client::decode_fetched;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::committed::{self, Offsets};
use super::error::{check, CliError};
use super::member::{Beat, Member};
use super::offsets::{self, Position};
use super::output::{Format, Out};
use super::progress::Progress;
use super::record_format::RecordFormat;
use super::session::{consumer_replica_id, topic_name, versions, Session, Target, TopicInfo};

/// How long a fetch waits at the broker for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Bytes one Fetch answer may carry, and one partition within it.
const FETCH_BYTES_MAX: i32 = 8 << 20;
const FETCH_PARTITION_BYTES_MAX: i32 = 1 << 20;
/// KIP-227: no fetch session.
const FETCH_SESSION_EPOCH_NONE: i32 = -1;

#[derive(Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Where to start: beginning, end, an offset, or a time
    /// (2024-05-01T12:00:00Z or @MILLISECONDS).
    #[arg(long, value_name = "WHERE", default_value = "beginning")]
    from: Position,
    /// Read as a member of consumer group GROUP: its assigned partitions,
    /// from the committed offsets (at --from where it has none), committing
    /// what was printed and leaving the group at the end.
    #[arg(short, long, value_name = "GROUP", conflicts_with = "partitions")]
    group: Option<String>,
    /// Stop after N records.
    #[arg(short = 'n', long = "num", value_name = "N")]
    num: Option<u64>,
    /// Read only this partition (repeatable) [default: all].
    #[arg(short, long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    /// Stop at the end of every partition instead of waiting for more records.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
}

/// One partition's part of a Fetch answer.
struct Answer {
    partition: i32,
    high_watermark: i64,
    records: Vec<Record>,
    next_offset: Option<i64>,
}

/// Where the read is, per partition.
struct Reader {
    positions: BTreeMap<i32, i64>,
    high_watermarks: BTreeMap<i32, i64>,
    printed: u64,
}

impl Reader {
    fn behind(&self) -> i64 {
        self.positions
            .iter()
            .map(|(p, pos)| (self.high_watermarks.get(p).copied().unwrap_or(*pos) - pos).max(0))
            .sum()
    }

    fn at_end(&self) -> bool {
        self.positions
            .iter()
            .all(|(p, pos)| self.high_watermarks.get(p).is_some_and(|hw| pos >= hw))
    }
}

pub fn run(
    session: &mut Session,
    out: &mut Out,
    format: &Format,
    args: &ConsumeArgs,
) -> Result<(), CliError> {
    let format = RecordFormat::new(format)?;
    let topic = session.topic(&args.topic)?;
    let stop = stop_on_signals()?;
    let mut progress = Progress::on_terminal();
    let mut read = Read {
        session,
        out,
        format: &format,
        args,
        topic: &topic,
        stop: &stop,
        progress: &mut progress,
    };
    let result = match &args.group {
        None => read.alone(),
        Some(group) => read.as_member(group),
    };
    progress.finish();
    result
}

/// Set by SIGINT or SIGTERM: the read stops after the fetch in flight,
/// commits and leaves its group. A second signal exits at once.
fn stop_on_signals() -> Result<Arc<AtomicBool>, CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()))
            .map_err(|error| CliError::Answer(format!("installing a signal handler: {error}")))?;
    }
    Ok(stop)
}

impl Reader {
    /// Where each partition's read starts: the group's committed offset,
    /// else `from`; and where each partition ends now.
    fn start(
        session: &mut Session,
        topic: &TopicInfo,
        partitions: &[i32],
        from: Position,
        member: Option<&Member>,
    ) -> Result<Reader, CliError> {
        let mut positions = offsets::resolve(session, topic, partitions, from)?;
        if let Some(member) = member {
            let wanted = BTreeMap::from([(topic.name.clone(), partitions.to_vec())]);
            let committed =
                committed::fetch(session, member.coordinator(), member.group(), Some(&wanted))?;
            for ((_, partition), offset) in committed {
                positions.insert(partition, offset);
            }
        }
        Ok(Reader {
            high_watermarks: offsets::list_offsets(
                session,
                topic,
                partitions,
                offsets::LATEST_TIMESTAMP,
            )?,
            positions,
            printed: 0,
        })
    }
}

/// One read's fixed parts.
struct Read<'a> {
    session: &'a mut Session,
    out: &'a mut Out,
    format: &'a RecordFormat,
    args: &'a ConsumeArgs,
    topic: &'a TopicInfo,
    stop: &'a AtomicBool,
    progress: &'a mut Progress,
}

impl Read<'_> {
    /// Reads the partitions named (or all) as a client of its own.
    fn alone(&mut self) -> Result<(), CliError> {
        let partitions = selected(self.topic, &self.args.partitions)?;
        let mut reader =
            Reader::start(self.session, self.topic, &partitions, self.args.from, None)?;
        self.run(&mut reader, None)
    }

    /// Reads the partitions `group` assigns, as one of its members.
    fn as_member(&mut self, group: &str) -> Result<(), CliError> {
        let (mut member, partitions) = Member::join(self.session, group, &self.topic.name)?;
        let read = Reader::start(
            self.session,
            self.topic,
            &partitions,
            self.args.from,
            Some(&member),
        )
        .and_then(|mut reader| self.run(&mut reader, Some(&mut member)));
        // Leaving hands the partitions to the other members at once.
        let left = member.leave(self.session);
        read.and(left)
    }

    /// Fetches and prints until the limit, the end (with `-e`) or a stop
    /// signal; as a group member, commits after each fetch that moved,
    /// heartbeats, and takes its new partitions after a rebalance.
    fn run(
        &mut self,
        reader: &mut Reader,
        mut member: Option<&mut Member>,
    ) -> Result<(), CliError> {
        let limit = self.args.num.unwrap_or(u64::MAX);
        while reader.printed < limit
            && !(self.args.exit_at_end && reader.at_end())
            && !self.stop.load(Ordering::Relaxed)
        {
            let before = reader.positions.clone();
            if reader.positions.is_empty() {
                // No partitions assigned: wait for the next rebalance.
                std::thread::sleep(Duration::from_millis(FETCH_WAIT_MS as u64));
            }
            for answer in fetch(self.session, self.topic, &reader.positions)? {
                print_answer(
                    self.out,
                    self.format,
                    &self.topic.name,
                    reader,
                    answer,
                    limit,
                )?;
            }
            self.out.flush()?;
            let Some(member) = member.as_deref_mut() else {
                self.progress.update(reader.printed, reader.behind());
                continue;
            };
            let mut beat = Beat::Stays;
            if reader.positions != before {
                beat = member.commit(
                    self.session,
                    &as_offsets(&self.topic.name, &reader.positions),
                )?;
            }
            if beat == Beat::Stays {
                beat = member.heartbeat_if_due(self.session)?;
            }
            if beat == Beat::Rebalance {
                let partitions = member.rejoin(self.session)?;
                let printed = reader.printed;
                *reader = Reader::start(
                    self.session,
                    self.topic,
                    &partitions,
                    self.args.from,
                    Some(member),
                )?;
                reader.printed = printed;
            }
            self.progress.update(reader.printed, reader.behind());
        }
        Ok(())
    }
}

/// Prints the records of one answer at or after the read position, up to the
/// limit, and moves the position past what was printed.
fn print_answer(
    out: &mut Out,
    format: &RecordFormat,
    topic: &str,
    reader: &mut Reader,
    answer: Answer,
    limit: u64,
) -> Result<(), CliError> {
    reader
        .high_watermarks
        .insert(answer.partition, answer.high_watermark);
    // A partition this read did not ask for is not printed.
    let Some(position) = reader.positions.get_mut(&answer.partition) else {
        return Ok(());
    };
    for record in &answer.records {
        if record.offset < *position {
            continue;
        }
        if reader.printed >= limit {
            return Ok(());
        }
        out.write(&format.render(topic, answer.partition, record))?;
        *position = record.offset + 1;
        reader.printed += 1;
    }
    // Past control batches and records below the position, too.
    if let Some(next) = answer.next_offset {
        *position = (*position).max(next);
    }
    Ok(())
}

/// The partitions to read: those named, each checked, or all.
fn selected(topic: &TopicInfo, named: &[i32]) -> Result<Vec<i32>, CliError> {
    if named.is_empty() {
        return Ok(topic.partition_indexes());
    }
    topic.by_leader(named)?;
    let mut partitions = named.to_vec();
    partitions.sort_unstable();
    partitions.dedup();
    Ok(partitions)
}

fn as_offsets(topic: &str, positions: &BTreeMap<i32, i64>) -> Offsets {
    positions
        .iter()
        .map(|(p, o)| ((topic.to_string(), *p), *o))
        .collect()
}

/// One Fetch per leader for the partitions at `positions`.
fn fetch(
    session: &mut Session,
    topic: &TopicInfo,
    positions: &BTreeMap<i32, i64>,
) -> Result<Vec<Answer>, CliError> {
    let partitions: Vec<i32> = positions.keys().copied().collect();
    let mut answers = Vec::new();
    for (leader, indexes) in topic.by_leader(&partitions)? {
        let request = fetch_request(&topic.name, &indexes, positions);
        let response = session.call(Target::Node(leader), versions::FETCH, |_| request)?;
        check(response.error_code, None, || {
            format!("fetching from {}", topic.name)
        })?;
        for data in response.responses.iter().flat_map(|t| &t.partitions) {
            check(data.error_code, None, || {
                format!(
                    "fetching {}/{} at offset {}",
                    topic.name,
                    data.partition_index,
                    positions.get(&data.partition_index).copied().unwrap_or(-1)
                )
            })?;
            let fetched = match &data.records {
                Some(records) => decode_fetched(records).map_err(|source| {
                    CliError::Answer(format!("{}/{}: {source}", topic.name, data.partition_index))
                })?,
                None => Default::default(),
            };
            answers.push(Answer {
                partition: data.partition_index,
                high_watermark: data.high_watermark,
                records: fetched.records,
                next_offset: fetched.next_offset,
            });
        }
    }
    Ok(answers)
}

fn fetch_request(topic: &str, partitions: &[i32], positions: &BTreeMap<i32, i64>) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(consumer_replica_id())
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_session_id(0)
        .with_session_epoch(FETCH_SESSION_EPOCH_NONE)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(positions.get(&p).copied().unwrap_or(0))
                            .with_partition_max_bytes(FETCH_PARTITION_BYTES_MAX)
                    })
                    .collect(),
            )])
}
