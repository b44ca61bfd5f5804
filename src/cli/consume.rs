//! `ringlog topic consume TOPIC`: Fetch from each partition's leader from
//! `--from` (or a group's committed offsets), print each record, stop after
//! `-n` records or, with `--exit-at-end`, at the end of every partition.

use std::collections::BTreeMap;

use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::records::Record;
use ringlog::client::decode_fetched;

use super::committed::{self, Offsets};
use super::error::{check, CliError};
use super::group::describe_group;
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
    /// Start at GROUP's committed offsets (at --from where it has none) and
    /// commit what was printed; the group must have no active members.
    #[arg(short, long, value_name = "GROUP")]
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
    let partitions = selected(&topic, &args.partitions)?;
    let coordinator = match &args.group {
        Some(group) => Some(outside_coordinator(session, group)?),
        None => None,
    };
    let positions = start(session, &topic, &partitions, args, coordinator)?;
    let mut reader = Reader {
        high_watermarks: offsets::list_offsets(
            session,
            &topic,
            &partitions,
            offsets::LATEST_TIMESTAMP,
        )?,
        positions,
        printed: 0,
    };
    let mut progress = Progress::on_terminal();
    let result = read(
        session,
        out,
        &format,
        args,
        &topic,
        &mut reader,
        coordinator,
        &mut progress,
    );
    progress.finish();
    result
}

#[allow(clippy::too_many_arguments)]
fn read(
    session: &mut Session,
    out: &mut Out,
    format: &RecordFormat,
    args: &ConsumeArgs,
    topic: &TopicInfo,
    reader: &mut Reader,
    coordinator: Option<i32>,
    progress: &mut Progress,
) -> Result<(), CliError> {
    let limit = args.num.unwrap_or(u64::MAX);
    while reader.printed < limit && !(args.exit_at_end && reader.at_end()) {
        let before = reader.positions.clone();
        for answer in fetch(session, topic, &reader.positions)? {
            print_answer(out, format, &topic.name, reader, answer, limit)?;
        }
        out.flush()?;
        if let (Some(group), Some(coordinator)) = (&args.group, coordinator) {
            if reader.positions != before {
                committed::commit(
                    session,
                    coordinator,
                    group,
                    &as_offsets(&topic.name, &reader.positions),
                )?;
            }
        }
        progress.update(reader.printed, reader.behind());
    }
    Ok(())
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

/// The coordinator of `group`, once it is clear that the group has no
/// members: this read commits as a client outside the group, which Kafka
/// refuses while members hold its partitions.
fn outside_coordinator(session: &mut Session, group: &str) -> Result<i32, CliError> {
    let coordinator = session.coordinator(group)?;
    let described = describe_group(session, coordinator, group)?;
    if !described.members.is_empty() {
        return Err(CliError::Answer(format!(
            "group {group} has {} active members: --group reads and commits as a client \
             outside the group, which works only while it has none",
            described.members.len()
        )));
    }
    Ok(coordinator)
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

/// Where each partition's read starts: the group's committed offset, else `--from`.
fn start(
    session: &mut Session,
    topic: &TopicInfo,
    partitions: &[i32],
    args: &ConsumeArgs,
    coordinator: Option<i32>,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let mut positions = offsets::resolve(session, topic, partitions, args.from)?;
    if let (Some(group), Some(coordinator)) = (&args.group, coordinator) {
        let wanted = BTreeMap::from([(topic.name.clone(), partitions.to_vec())]);
        let committed = committed::fetch(session, coordinator, group, Some(&wanted))?;
        for ((_, partition), offset) in committed {
            positions.insert(partition, offset);
        }
    }
    Ok(positions)
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
