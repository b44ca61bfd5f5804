//! DescribeTransactions (KIP-664) and ListTransactions (KIP-664, KIP-994
//! duration filter, KIP-1152 transactional id pattern).

use std::ops::RangeInclusive;
use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{on_coordinator, response_error, transactional_id_allowed};
use crate::kafka::authorize::topic_allowed;
use crate::kafka::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::shard::mesh::run_on;
use crate::shard::{Shard, ShardId};
use crate::txn::state::{NO_EPOCH, NO_PRODUCER_ID};
use crate::txn::{ListFilter, TxnMetadata, TxnState};

pub const DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=0;
pub const LIST_VERSIONS: RangeInclusive<i16> = 0..=2;
/// Longest ListTransactions pattern compiled (a larger regex is refused).
const PATTERN_BYTES_MAX: usize = 1024;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The partitions of the transaction that the principal may describe, by topic.
fn topic_data(shard: &Shard, request: &Request, meta: &TxnMetadata) -> Vec<TopicData> {
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &meta.partitions {
        if !topic_allowed(shard, request, Operation::Describe, topic) {
            continue;
        }
        if topics.last().is_none_or(|t| t.topic.as_str() != &**topic) {
            topics.push(TopicData::default().with_topic(TopicName(str_bytes(topic))));
        }
        if let Some(last) = topics.last_mut() {
            last.partitions.push(partition.get());
        }
    }
    topics
}

async fn describe_one(
    shard: &Rc<Shard>,
    request: &Request,
    id: &TransactionalId,
) -> TransactionState {
    let refused = |error: ResponseError| {
        TransactionState::default()
            .with_transactional_id(id.clone())
            .with_error_code(error.code())
            .with_transaction_state(StrBytes::from_static_str(""))
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_EPOCH)
            .with_transaction_start_time_ms(-1)
    };
    let transactional_id = id.to_string();
    if !transactional_id_allowed(shard, request, Operation::Describe, &transactional_id) {
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let lookup = transactional_id.clone();
    let described = on_coordinator(shard, &transactional_id, move |owner| async move {
        owner.transactions.describe(&lookup)
    })
    .await;
    match described {
        Ok(meta) => TransactionState::default()
            .with_transactional_id(id.clone())
            .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
            .with_transaction_timeout_ms(meta.timeout_ms)
            .with_transaction_start_time_ms(meta.txn_start_ms)
            .with_producer_id(ProducerId(meta.producer_id))
            .with_producer_epoch(meta.producer_epoch)
            .with_topics(topic_data(shard, request, &meta)),
        Err(error) => refused(response_error(error)),
    }
}

pub async fn handle_describe(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeTransactionsRequest,
) -> Outcome {
    let mut states = Vec::with_capacity(body.transactional_ids.len());
    for id in &body.transactional_ids {
        states.push(describe_one(shard, request, id).await);
    }
    request.respond(&DescribeTransactionsResponse::default().with_transaction_states(states))
}

pub async fn handle_list(
    shard: &Rc<Shard>,
    request: &Request,
    body: ListTransactionsRequest,
) -> Outcome {
    let mut unknown_states = Vec::new();
    let mut states = Vec::new();
    for name in &body.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => unknown_states.push(name.clone()),
        }
    }
    let pattern = match body
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(pattern) => match regex::RegexBuilder::new(pattern)
            .size_limit(PATTERN_BYTES_MAX * 64)
            .build()
        {
            Ok(regex) if pattern.len() <= PATTERN_BYTES_MAX => Some(regex),
            _ => {
                return request.respond(
                    &ListTransactionsResponse::default()
                        .with_error_code(ResponseError::InvalidRegularExpression.code()),
                )
            }
        },
    };
    let filter = ListFilter {
        states,
        producer_ids: body.producer_id_filters.iter().map(|id| id.0).collect(),
        duration_ms_min: body.duration_filter,
    };
    // Unknown state names match nothing (Kafka reports them and lists none for them).
    let nothing_matches = !unknown_states.is_empty() && filter.states.is_empty();
    let calls = ShardId::all(shard.shard_count()).map(|owner| {
        let filter = filter.clone();
        run_on(shard, owner, move |s| async move {
            s.transactions.list(&filter)
        })
    });
    let mut error = 0;
    let mut listed = Vec::new();
    for answer in join_all(calls).await {
        match answer {
            Ok(found) if !nothing_matches => listed.extend(found),
            Ok(_) => {}
            Err(_) => error = ResponseError::CoordinatorNotAvailable.code(),
        }
    }
    let transaction_states = listed
        .into_iter()
        .filter(|t| {
            pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&t.transactional_id))
        })
        .filter(|t| {
            transactional_id_allowed(shard, request, Operation::Describe, &t.transactional_id)
        })
        .map(|t| {
            ListedState::default()
                .with_transactional_id(TransactionalId(str_bytes(&t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.state.name()))
        })
        .collect();
    request.respond(
        &ListTransactionsResponse::default()
            .with_error_code(error)
            .with_unknown_state_filters(unknown_states)
            .with_transaction_states(transaction_states),
    )
}

kafka_api!(DescribeTransactions: DescribeTransactions, DESCRIBE_VERSIONS, DescribeTransactionsRequest => handle_describe);

kafka_api!(ListTransactions: ListTransactions, LIST_VERSIONS, ListTransactionsRequest => handle_list);
