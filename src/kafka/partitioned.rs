//! One scatter/gather for every partitioned API (Produce, Fetch, ListOffsets,
//! DeleteRecords): each requested partition, in the client's order, is either
//! sent to the shard that owns it or answered here with its own error code,
//! and the owners' answers come back in request order. A partition whose
//! owner cannot be reached is answered in its own slot (see
//! `errors::partition_error`), never by closing the connection.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use super::errors::take_answer;
use crate::shard::partitions::{
    EpochQuery, FetchPart, MarkerPart, OffsetQuery, PartitionError, ProducePart,
};
use crate::shard::scatter::Scatter;
use crate::shard::topics::TopicInfo;
use crate::shard::{PartitionId, Shard};
use crate::storage::Offset;

/// The API a part type belongs to, so each partition's error is counted
/// under its API (`ringlog_request_errors_total`) without the handlers
/// naming it again.
pub trait ApiPart {
    const API: ApiKey;
}

impl ApiPart for ProducePart {
    const API: ApiKey = ApiKey::Produce;
}

impl ApiPart for FetchPart {
    const API: ApiKey = ApiKey::Fetch;
}

impl ApiPart for MarkerPart {
    const API: ApiKey = ApiKey::WriteTxnMarkers;
}

impl ApiPart for OffsetQuery {
    const API: ApiKey = ApiKey::ListOffsets;
}

impl ApiPart for EpochQuery {
    const API: ApiKey = ApiKey::OffsetForLeaderEpoch;
}

/// DescribeProducers: a topic's partition.
impl ApiPart for (Arc<str>, PartitionId) {
    const API: ApiKey = ApiKey::DescribeProducers;
}

/// DeleteRecords: a topic's partition and the offset to delete before.
impl ApiPart for (Arc<str>, PartitionId, Offset) {
    const API: ApiKey = ApiKey::DeleteRecords;
}

/// The parts of one request, by owner shard, and where each answer goes.
pub struct PartitionPlan<P> {
    scatter: Scatter<P>,
    /// Per partition in request order: the slot of its owner's answer, or
    /// the error decided here.
    slots: Vec<Result<usize, ResponseError>>,
}

impl<P: ApiPart + Send + 'static> PartitionPlan<P> {
    pub fn new(shard: &Shard) -> Self {
        PartitionPlan {
            scatter: Scatter::new(shard.shard_count()),
            slots: Vec::new(),
        }
    }

    /// Adds one topic's partitions, each given as `(index, item)`. `refuse`
    /// runs first, with the topic if it is known, and may answer a partition
    /// at once (a bad acks or timestamp, a keyless record on a compacted
    /// topic); then a partition of an unknown topic (`topic` is `None`)
    /// gets `missing`, one past the partition count UNKNOWN_TOPIC_OR_PARTITION,
    /// and every other one becomes the part `part` builds for its owner.
    pub fn add_topic<T>(
        &mut self,
        topic: Option<&Arc<TopicInfo>>,
        missing: ResponseError,
        partitions: impl IntoIterator<Item = (PartitionId, T)>,
        mut refuse: impl FnMut(Option<&TopicInfo>, &T) -> Option<ResponseError>,
        mut part: impl FnMut(&Arc<TopicInfo>, PartitionId, T) -> P,
    ) {
        let slots = partitions.into_iter().map(|(index, item)| {
            if let Some(error) = refuse(topic.map(|t| &**t), &item) {
                return Err(error);
            }
            let info = topic.ok_or(missing)?;
            let owner = info
                .shard_of(index)
                .ok_or(ResponseError::UnknownTopicOrPartition)?;
            Ok(self.scatter.push(owner, part(info, index, item)))
        });
        self.slots.extend(slots);
    }

    /// A plan for topics named on the wire (not by id), each given as
    /// `(name, partitions)`: see `add_topic`; a topic `allowed` refuses gets
    /// TOPIC_AUTHORIZATION_FAILED, unknown names UNKNOWN_TOPIC_OR_PARTITION.
    pub fn named_topics<'a, T, I>(
        shard: &Shard,
        mut allowed: impl FnMut(&str) -> bool,
        topics: impl IntoIterator<Item = (&'a str, I)>,
        mut refuse: impl FnMut(Option<&TopicInfo>, &T) -> Option<ResponseError>,
        mut part: impl FnMut(&Arc<TopicInfo>, PartitionId, T) -> P,
    ) -> Self
    where
        I: IntoIterator<Item = (PartitionId, T)>,
    {
        let table = shard.topics();
        let mut plan = Self::new(shard);
        for (name, partitions) in topics {
            let (topic, missing) = if allowed(name) {
                (table.get(name), ResponseError::UnknownTopicOrPartition)
            } else {
                (None, ResponseError::TopicAuthorizationFailed)
            };
            plan.add_topic(topic, missing, partitions, &mut refuse, &mut part);
        }
        plan
    }

    /// Runs `work` on every owner with its parts (concurrently) and returns
    /// the answers in request order.
    pub async fn gather<R, F, Fut>(self, shard: &Rc<Shard>, work: F) -> PartitionAnswers<R>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>, Vec<P>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<Result<R, PartitionError>>> + 'static,
    {
        PartitionAnswers {
            api: P::API,
            answers: self.scatter.gather(shard, work).await,
            slots: self.slots,
        }
    }
}

/// The answers to a [`PartitionPlan`], in request order.
pub struct PartitionAnswers<R> {
    api: ApiKey,
    answers: Vec<Option<Result<R, PartitionError>>>,
    slots: Vec<Result<usize, ResponseError>>,
}

impl<R> PartitionAnswers<R> {
    /// Builds the response's topics from the request's: `partitions` lists a
    /// request topic's partitions (as they were added to the plan), `partition`
    /// answers one of them, `topic` wraps a topic's answers.
    pub fn zip_topics<'a, T, P: 'a, A, B>(
        self,
        request_topics: &'a [T],
        partitions: impl Fn(&'a T) -> &'a [P],
        mut partition: impl FnMut(&'a P, Result<R, ResponseError>) -> A,
        mut topic: impl FnMut(&'a T, Vec<A>) -> B,
    ) -> Vec<B> {
        let mut answers = self.into_flat();
        request_topics
            .iter()
            .map(|t| {
                let answered = partitions(t)
                    .iter()
                    .zip(&mut answers)
                    .map(|(p, answer)| partition(p, answer))
                    .collect();
                topic(t, answered)
            })
            .collect()
    }

    /// Every partition of every topic, in request order.
    pub fn into_flat(mut self) -> impl Iterator<Item = Result<R, ResponseError>> {
        let slots = std::mem::take(&mut self.slots);
        slots.into_iter().map(move |slot| self.take(slot))
    }

    /// The answer of one partition; an error is counted for the request's API.
    fn take(&mut self, slot: Result<usize, ResponseError>) -> Result<R, ResponseError> {
        let answer = slot.and_then(|slot| take_answer(&mut self.answers, slot));
        if let Err(error) = &answer {
            crate::metrics::local::request_error(self.api as i16, error.code());
        }
        answer
    }
}
