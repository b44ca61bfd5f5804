//! `ringlog topic produce TOPIC`: each line of stdin is one record (with
//! `--key-sep SEP`, `key SEP value`), batched per partition and sent with
//! acks=all to each partition's leader.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};

use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use ringlog::client::BatchBuilder;
use serde::Serialize;

use super::error::{check, CliError};
use super::output::{Format, Out, Table};
use super::partitioner::partition_for_key;
use super::session::{topic_name, versions, Session, Target, TopicInfo};

/// Records per partition batch before it is sent.
const BATCH_RECORDS_MAX: usize = 10_000;
/// Bytes of keys and values in all pending batches before they are sent.
const PENDING_BYTES_MAX: usize = 1 << 20;
/// acks=all: answered once every in-sync replica has the batch.
const ACKS_ALL: i16 = -1;

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value, e.g. --key-sep :
    #[arg(long, value_name = "SEP")]
    key_sep: Option<String>,
    /// Write every record to this partition [default: by key as Kafka's
    /// partitioner does; records without a key fill one partition per batch, in turn].
    #[arg(short, long, value_name = "N")]
    partition: Option<i32>,
}

/// What was written to one partition.
#[derive(Debug, Serialize)]
struct Written {
    partition: i32,
    records: usize,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Serialize)]
struct Produced<'a> {
    topic: &'a str,
    records: usize,
    partitions: Vec<&'a Written>,
}

/// The batches not yet sent, and where keyless records go.
struct Pending {
    batches: BTreeMap<i32, BatchBuilder>,
    bytes: usize,
    /// Index (into the topic's partitions) of the partition keyless records fill.
    sticky: usize,
}

pub fn run(
    session: &mut Session,
    out: &mut Out,
    format: &Format,
    args: &ProduceArgs,
) -> Result<(), CliError> {
    let topic = session.topic(&args.topic)?;
    if let Some(partition) = args.partition {
        topic.by_leader(&[partition])?;
    }
    if args.key_sep.as_deref() == Some("") {
        return Err(CliError::usage("--key-sep must not be empty"));
    }
    let mut pending = Pending {
        batches: BTreeMap::new(),
        bytes: 0,
        sticky: 0,
    };
    let mut written: BTreeMap<i32, Written> = BTreeMap::new();
    let mut stdin = BufReader::with_capacity(PENDING_BYTES_MAX, std::io::stdin().lock());
    let mut line = Vec::new();
    while read_line(&mut stdin, &mut line)? {
        let (key, value) = split_line(std::mem::take(&mut line), args.key_sep.as_deref());
        let partition = match (args.partition, &key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => {
                topic.partitions[partition_for_key(key, topic.partitions.len())].index
            }
            (None, None) => topic.partitions[pending.sticky % topic.partitions.len()].index,
        };
        pending.bytes += key.as_ref().map_or(0, Bytes::len) + value.len();
        let batch = pending.batches.entry(partition).or_default();
        batch.push(key, Some(value), ringlog::clock::now_ms());
        // Send once stdin has nothing more waiting, so lines typed at a
        // terminal or trickling down a pipe go out as they come.
        if batch.len() >= BATCH_RECORDS_MAX
            || pending.bytes >= PENDING_BYTES_MAX
            || stdin.buffer().is_empty()
        {
            send(session, &topic, &mut pending, &mut written)?;
        }
    }
    send(session, &topic, &mut pending, &mut written)?;
    report(out, format, &topic.name, &written)
}

/// Reads the next line of `input` into `line` without its `\n` (or `\r\n`);
/// `false` at the end of the input.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> Result<bool, CliError> {
    line.clear();
    let read = input
        .read_until(b'\n', line)
        .map_err(|source| CliError::Io {
            what: "reading stdin",
            source,
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(read > 0)
}

/// `(key, value)` of one line: split at the first `separator` when given
/// and present, else the whole line is the value.
fn split_line(line: Vec<u8>, separator: Option<&str>) -> (Option<Bytes>, Bytes) {
    let line = Bytes::from(line);
    let Some(separator) = separator.map(str::as_bytes) else {
        return (None, line);
    };
    match line.windows(separator.len()).position(|w| w == separator) {
        Some(at) => (Some(line.slice(..at)), line.slice(at + separator.len()..)),
        None => (None, line),
    }
}

/// Sends every pending batch, one Produce request per leader.
fn send(
    session: &mut Session,
    topic: &TopicInfo,
    pending: &mut Pending,
    written: &mut BTreeMap<i32, Written>,
) -> Result<(), CliError> {
    let batches = std::mem::take(&mut pending.batches);
    pending.bytes = 0;
    pending.sticky = pending.sticky.wrapping_add(1);
    if batches.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = batches.keys().copied().collect();
    let timeout_ms = i32::try_from(session.timeout().as_millis()).unwrap_or(i32::MAX);
    for (leader, indexes) in topic.by_leader(&partitions)? {
        let mut data = Vec::with_capacity(indexes.len());
        let mut counts = BTreeMap::new();
        for index in indexes {
            let batch = &batches[&index];
            counts.insert(index, batch.len());
            let records = batch
                .encode()
                .map_err(|e| CliError::Answer(e.to_string()))?;
            data.push(
                PartitionProduceData::default()
                    .with_index(index)
                    .with_records(Some(records)),
            );
        }
        let request = ProduceRequest::default()
            .with_acks(ACKS_ALL)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(&topic.name))
                .with_partition_data(data)]);
        let response = session.call(Target::Node(leader), versions::PRODUCE, |_| request)?;
        for answer in response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
        {
            check(answer.error_code, answer.error_message.as_deref(), || {
                format!("producing to {}/{}", topic.name, answer.index)
            })?;
            let count = counts.remove(&answer.index).unwrap_or(0);
            note_written(written, answer.index, answer.base_offset, count);
        }
        if let Some(index) = counts.keys().next() {
            return Err(CliError::Answer(format!(
                "Produce did not answer for {}/{index}",
                topic.name
            )));
        }
    }
    Ok(())
}

fn note_written(written: &mut BTreeMap<i32, Written>, partition: i32, base: i64, count: usize) {
    let last = base + count as i64 - 1;
    let entry = written.entry(partition).or_insert(Written {
        partition,
        records: 0,
        first_offset: base,
        last_offset: last,
    });
    entry.records += count;
    entry.last_offset = last;
}

fn report(
    out: &mut Out,
    format: &Format,
    topic: &str,
    written: &BTreeMap<i32, Written>,
) -> Result<(), CliError> {
    let records = written.values().map(|w| w.records).sum();
    let mut table = Table::new(&["PARTITION", "RECORDS", "FIRST-OFFSET", "LAST-OFFSET"])
        .titled(format!("produced {records} records to {topic}"));
    for w in written.values() {
        table.row(vec![
            w.partition.to_string(),
            w.records.to_string(),
            w.first_offset.to_string(),
            w.last_offset.to_string(),
        ]);
    }
    let produced = Produced {
        topic,
        records,
        partitions: written.values().collect(),
    };
    out.answer(format, &produced, &[table])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_at_the_first_separator_only() {
        let (key, value) = split_line(b"user:a:b".to_vec(), Some(":"));
        assert_eq!(key.as_deref(), Some(&b"user"[..]));
        assert_eq!(&value[..], b"a:b");
        let (key, value) = split_line(b"no separator".to_vec(), Some("::"));
        assert_eq!((key, &value[..]), (None, &b"no separator"[..]));
        let (key, value) = split_line(b"k:v".to_vec(), None);
        assert_eq!((key, &value[..]), (None, &b"k:v"[..]));
    }
}
