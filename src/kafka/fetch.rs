//! Fetch: read stored batches from every requested partition (on their
//! owner shards) within `max_bytes` and `partition_max_bytes` (KIP-74),
//! long-poll until `min_bytes` or `max_wait_ms`, and send the record bytes
//! exactly as stored. read_committed (KIP-98) reads up to the last stable
//! offset and names the aborted transactions of what it returns; control
//! batches go out like any other, and clients skip them. A partition asked
//! of a broker that does not lead it, or at a stale epoch, names its leader
//! (KIP-951, v12+).

use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{select_all, FutureExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;

use super::authorize::topic_allowed;
use super::fetch_encode::{self, NodeEndpoint, PartitionAnswer, TopicAnswer};
use super::leader_hints::LeaderHints;
use super::partitioned::PartitionPlan;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::run_on;
use crate::shard::partitions::{FetchPart, NO_LEADER_EPOCH_CHECK};
use crate::shard::topics::TopicInfo;
use crate::shard::{PartitionId, Shard, ShardId};
use crate::storage::{Isolation, Offset, ReadLimit, ReadResult};

/// v17+ only add replica-side fields; clients negotiate down to 16.
pub const VERSIONS: RangeInclusive<i16> = 4..=16;
/// KIP-951: from v12 these errors name the partition's current leader.
const LEADER_HINTS_VERSION: i16 = 12;
const HINTED_ERRORS: [ResponseError; 2] = [
    ResponseError::NotLeaderOrFollower,
    ResponseError::FencedLeaderEpoch,
];
/// Longest long poll honoured, whatever the client asks.
pub const MAX_WAIT_MAX: Duration = Duration::from_secs(30);

/// Kafka's `isolation_level`: 1 is READ_COMMITTED, anything else READ_UNCOMMITTED.
pub fn isolation(level: i8) -> Isolation {
    if level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    }
}

/// One requested partition, resolved against the topic table.
struct Wanted {
    topic: Option<Arc<TopicInfo>>,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// KIP-320, from v9.
    current_leader_epoch: i32,
}

/// A requested topic resolved against the topic table: name, id, the
/// wanted partitions, and the topic's own error when it is unknown.
type WantedTopic = (String, uuid::Uuid, Vec<Wanted>, Option<ResponseError>);

pub async fn handle(shard: &Rc<Shard>, request: &Request, body: FetchRequest) -> Outcome {
    let version = request.version();
    let mut topics = wanted_topics(shard, &body, version);
    for (name, _, _, error) in &mut topics {
        if error.is_none() && !topic_allowed(shard, request, Operation::Read, name) {
            *error = Some(ResponseError::TopicAuthorizationFailed);
        }
    }
    let max_bytes = body.max_bytes.max(0) as usize;
    let min_bytes = body.min_bytes.max(0) as usize;
    let deadline =
        Instant::now() + Duration::from_millis(body.max_wait_ms.max(0) as u64).min(MAX_WAIT_MAX);

    let isolation = isolation(body.isolation_level);
    let mut reads = loop {
        let mut reads = read_all(shard, &topics, max_bytes, isolation).await;
        let wanted = topics.iter().flat_map(|(_, _, wanted, _)| wanted);
        let bytes = keep_within_limits(&mut reads, wanted, max_bytes);
        let failed = reads.iter().flatten().any(|r| r.is_err());
        let now = Instant::now();
        // Kafka answers as soon as `min_bytes` are there, so at once for 0.
        if bytes >= min_bytes || failed || now >= deadline || shard.shutdown.has_started() {
            break reads;
        }
        wait_for_growth(shard, &topics, &reads, deadline - now).await;
    };

    let mut answers = Vec::with_capacity(topics.len());
    let mut slot = 0;
    let mut hints = LeaderHints::new(shard);
    for (name, id, wanted, error) in &topics {
        let partitions = wanted
            .iter()
            .map(|w| {
                let read = reads.get_mut(slot).and_then(Option::take);
                slot += 1;
                let mut answer = partition_answer(w.partition, *error, read);
                if version >= LEADER_HINTS_VERSION {
                    answer.current_leader = hints
                        .hint(name, w.partition, answer.error_code, &HINTED_ERRORS)
                        .map(|l| (l.leader, l.epoch));
                }
                answer
            })
            .collect::<Vec<_>>();
        if let Some(info) = wanted.first().and_then(|w| w.topic.as_ref()) {
            count_fetched(shard, info, &partitions);
        }
        answers.push(TopicAnswer {
            name,
            id: *id,
            partitions,
        });
    }
    let leaders = hints.endpoints();
    let endpoints: Vec<NodeEndpoint> = leaders
        .iter()
        .map(|b| NodeEndpoint {
            node: b.node,
            host: &b.host,
            port: i32::from(b.port),
        })
        .collect();
    Outcome::Respond(fetch_encode::encode(
        request.header.correlation_id,
        version,
        0,
        0,
        &answers,
        &endpoints,
    ))
}

/// Counts the batches answered for one topic, per partition when the
/// per-partition series are on.
fn count_fetched(shard: &Shard, info: &TopicInfo, partitions: &[PartitionAnswer]) {
    use crate::metrics::local::{fetched, WHOLE_TOPIC};
    if shard.config.metrics_per_partition {
        for answer in partitions {
            fetched(info.id, &info.name, answer.index, answer.records.iter());
        }
    } else {
        let batches = partitions.iter().flat_map(|p| &p.records);
        fetched(info.id, &info.name, WHOLE_TOPIC, batches);
    }
}

/// Resolves each requested topic: by id from v13 (KIP-516), by name before.
fn wanted_topics(shard: &Shard, body: &FetchRequest, version: i16) -> Vec<WantedTopic> {
    let table = shard.topics();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let (info, missing) = if version >= 13 {
            (
                table.get_by_id(&topic.topic_id).cloned(),
                ResponseError::UnknownTopicId,
            )
        } else {
            (
                table.get(topic.topic.as_str()).cloned(),
                ResponseError::UnknownTopicOrPartition,
            )
        };
        let name = info
            .as_ref()
            .map_or_else(|| topic.topic.to_string(), |t| t.name.to_string());
        let error = if info.is_none() { Some(missing) } else { None };
        let wanted = topic
            .partitions
            .iter()
            .map(|p| Wanted {
                topic: info.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: if version >= 9 {
                    p.current_leader_epoch
                } else {
                    NO_LEADER_EPOCH_CHECK
                },
            })
            .collect();
        topics.push((name, topic.topic_id, wanted, error));
    }
    topics
}

/// Applies KIP-74's limits to the whole response, in request order: whole
/// batches are kept while the response stays within `max_bytes` and each
/// partition within its own limit; only the first partition with data may
/// exceed them, by its first batch. Each owner shard already applied them to
/// its own partitions, but with the whole `max_bytes` each, so the sum over
/// shards may be larger. Returns the record bytes kept.
fn keep_within_limits<'a>(
    reads: &mut [Option<Result<ReadResult, ResponseError>>],
    wanted: impl Iterator<Item = &'a Wanted>,
    max_bytes: usize,
) -> usize {
    let mut kept_bytes = 0usize;
    for (read, wanted) in reads.iter_mut().zip(wanted) {
        let Some(Ok(read)) = read else {
            continue;
        };
        let limit = ReadLimit {
            max_bytes: wanted.max_bytes.min(max_bytes.saturating_sub(kept_bytes)),
            first_batch_whole: kept_bytes == 0,
        };
        let (count, bytes) = limit.admitted_prefix(&read.batches);
        read.batches.truncate(count);
        kept_bytes += bytes;
    }
    kept_bytes
}

fn partition_answer(
    index: i32,
    topic_error: Option<ResponseError>,
    read: Option<Result<ReadResult, ResponseError>>,
) -> PartitionAnswer {
    // Like Kafka, an errored partition reports -1 watermarks.
    let outcome = match (topic_error, read) {
        (Some(error), _) => Err(error),
        (None, Some(result)) => result,
        (None, None) => Err(ResponseError::UnknownTopicOrPartition),
    };
    match outcome {
        Ok(read) => PartitionAnswer {
            index,
            error_code: 0,
            high_watermark: read.high_watermark.get(),
            last_stable_offset: read.last_stable_offset.get(),
            log_start_offset: read.log_start_offset.get(),
            aborted: read.aborted,
            records: read.batches,
            current_leader: None,
        },
        Err(error) => PartitionAnswer {
            index,
            error_code: error.code(),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted: None,
            records: Vec::new(),
            current_leader: None,
        },
    }
}

/// Reads every requested partition once; answers in request order (one
/// entry per partition; partitions of unknown topics get an error here).
async fn read_all(
    shard: &Rc<Shard>,
    topics: &[WantedTopic],
    max_bytes: usize,
    isolation: Isolation,
) -> Vec<Option<Result<ReadResult, ResponseError>>> {
    let mut plan = PartitionPlan::new(shard);
    for (_, _, wanted, error) in topics {
        // A topic refused as a whole is not read (its error answers every partition).
        let topic = wanted.first().and_then(|w| w.topic.as_ref());
        plan.add_topic(
            topic.filter(|_| error.is_none()),
            error.unwrap_or(ResponseError::UnknownTopicOrPartition),
            wanted.iter().map(|w| (PartitionId(w.partition), w)),
            |_, _| None,
            |info, partition, w| FetchPart {
                topic: info.name.clone(),
                partition,
                offset: Offset(w.offset),
                max_bytes: w.max_bytes,
                isolation,
                current_leader_epoch: w.current_leader_epoch,
            },
        );
    }
    let answers = plan
        .gather(shard, move |owner, parts| {
            owner.fetch_local(parts, max_bytes)
        })
        .await;
    answers.into_flat().map(Some).collect()
}

/// Sleeps until any requested partition grows past what was just read, or `timeout`.
async fn wait_for_growth(
    shard: &Rc<Shard>,
    topics: &[WantedTopic],
    reads: &[Option<Result<ReadResult, ResponseError>>],
    timeout: Duration,
) {
    let mut by_owner: Vec<Vec<(Arc<str>, PartitionId, Offset)>> =
        vec![Vec::new(); shard.shard_count()];
    let wanted = topics.iter().flat_map(|(_, _, wanted, _)| wanted);
    for (w, read) in wanted.zip(reads) {
        let (Some(topic), Some(Ok(read))) = (&w.topic, read) else {
            continue;
        };
        let partition = PartitionId(w.partition);
        if let Some(owner) = topic.shard_of(partition) {
            // Wake when the log grows past its current end.
            by_owner[owner.index()].push((
                topic.name.clone(),
                partition,
                read.high_watermark.max(Offset(w.offset)),
            ));
        }
    }
    let waits: Vec<_> = by_owner
        .into_iter()
        .zip(ShardId::all(shard.shard_count()))
        .filter(|(parts, _)| !parts.is_empty())
        .map(|(parts, owner)| {
            run_on(shard, owner, move |s| s.wait_for_data_local(parts, timeout)).boxed_local()
        })
        .collect();
    if waits.is_empty() {
        glommio::timer::sleep(timeout).await;
    } else {
        futures_lite::future::or(
            async {
                let _ = select_all(waits).await;
            },
            async {
                shard.shutdown.wait().await;
            },
        )
        .await;
    }
}

kafka_api!(Fetch: Fetch, VERSIONS, FetchRequest => handle);
