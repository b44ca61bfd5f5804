//! Splitting a request's partitions by owner shard and gathering the answers
//! back into the client's order.

use std::future::Future;
use std::rc::Rc;

use futures::future::join_all;

use super::mesh::run_on;
use super::partitions::PartitionError;
use super::{Shard, ShardId};

/// A request's parts grouped by owner, each remembering its response slot.
pub struct Scatter<P> {
    by_shard: Vec<(Vec<usize>, Vec<P>)>,
    slots: usize,
}

impl<P: Send + 'static> Scatter<P> {
    pub fn new(shard_count: usize) -> Self {
        Scatter {
            by_shard: (0..shard_count).map(|_| (Vec::new(), Vec::new())).collect(),
            slots: 0,
        }
    }

    /// Adds a part for `owner`; returns its slot.
    pub fn push(&mut self, owner: ShardId, part: P) -> usize {
        let slot = self.slots;
        self.slots += 1;
        if let Some((slots, parts)) = self.by_shard.get_mut(owner.index()) {
            slots.push(slot);
            parts.push(part);
        }
        slot
    }

    /// Runs `work` on every owner with its parts (concurrently) and returns
    /// the answers by slot; skipped slots stay `None`.
    pub async fn gather<R, F, Fut>(
        self,
        shard: &Rc<Shard>,
        work: F,
    ) -> Vec<Option<Result<R, PartitionError>>>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>, Vec<P>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Vec<Result<R, PartitionError>>> + 'static,
    {
        let shard_count = self.by_shard.len();
        let mut answers: Vec<Option<Result<R, PartitionError>>> =
            (0..self.slots).map(|_| None).collect();
        let calls = self
            .by_shard
            .into_iter()
            .zip(ShardId::all(shard_count))
            .filter(|((slots, _), _)| !slots.is_empty())
            .map(|((slots, parts), owner)| {
                let work = work.clone();
                async move { (slots, run_on(shard, owner, move |s| work(s, parts)).await) }
            });
        for (slots, outcome) in join_all(calls).await {
            match outcome {
                Ok(results) => {
                    for (slot, result) in slots.into_iter().zip(results) {
                        answers[slot] = Some(result);
                    }
                }
                Err(route) => {
                    for slot in slots {
                        answers[slot] = Some(Err(PartitionError::Route(route)));
                    }
                }
            }
        }
        answers
    }
}
