//! The error codes an answer carries, so every API's errors are counted
//! (`ringlog_request_errors_total{api,code}`) where the answer is encoded,
//! without each handler counting them again. The partitioned APIs (Produce,
//! ListOffsets, DeleteRecords, DescribeProducers, OffsetForLeaderEpoch, Fetch)
//! count theirs per
//! partition as their answers are gathered (`partitioned.rs`), so their
//! answers name none here.

use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, AlterConfigsResponse,
    AlterUserScramCredentialsResponse, ApiVersionsResponse, CreateAclsResponse,
    CreatePartitionsResponse, CreateTopicsResponse, DeleteAclsResponse, DeleteGroupsResponse,
    DeleteRecordsResponse, DeleteTopicsResponse, DescribeAclsResponse, DescribeClusterResponse,
    DescribeConfigsResponse, DescribeGroupsResponse, DescribeProducersResponse,
    DescribeQuorumResponse, DescribeTransactionsResponse, DescribeUserScramCredentialsResponse,
    ElectLeadersResponse, EndTxnResponse, FindCoordinatorResponse, HeartbeatResponse,
    IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, ListOffsetsResponse, ListTransactionsResponse, MetadataResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse,
    ProduceResponse, SaslAuthenticateResponse, SaslHandshakeResponse, SyncGroupResponse,
    TxnOffsetCommitResponse, WriteTxnMarkersResponse,
};

/// An answer's error codes (zero included: the caller skips NONE).
pub trait AnsweredErrors {
    fn each_error_code(&self, each: &mut dyn FnMut(i16));
}

macro_rules! answered_errors {
    ($($response:ty => |$r:ident, $each:ident| $body:block)*) => {
        $(
            impl AnsweredErrors for $response {
                fn each_error_code(&self, $each: &mut dyn FnMut(i16)) {
                    let $r = self;
                    $body
                }
            }
        )*
    };
}

/// Answers whose errors are counted per partition as they are gathered.
macro_rules! counted_per_partition {
    ($($response:ty),* $(,)?) => {
        $(
            impl AnsweredErrors for $response {
                fn each_error_code(&self, _: &mut dyn FnMut(i16)) {}
            }
        )*
    };
}

counted_per_partition!(
    ProduceResponse,
    ListOffsetsResponse,
    DeleteRecordsResponse,
    DescribeProducersResponse,
    OffsetForLeaderEpochResponse,
);

answered_errors! {
    ApiVersionsResponse => |r, each| { each(r.error_code) }
    MetadataResponse => |r, each| {
        each(r.error_code);
        for topic in &r.topics {
            each(topic.error_code);
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    DescribeClusterResponse => |r, each| { each(r.error_code) }
    ElectLeadersResponse => |r, each| {
        each(r.error_code);
        for topic in &r.replica_election_results {
            topic.partition_result.iter().for_each(|p| each(p.error_code));
        }
    }
    DescribeQuorumResponse => |r, each| {
        each(r.error_code);
        for topic in &r.topics {
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    // Groups.
    FindCoordinatorResponse => |r, each| {
        each(r.error_code);
        r.coordinators.iter().for_each(|c| each(c.error_code));
    }
    JoinGroupResponse => |r, each| { each(r.error_code) }
    SyncGroupResponse => |r, each| { each(r.error_code) }
    HeartbeatResponse => |r, each| { each(r.error_code) }
    LeaveGroupResponse => |r, each| {
        each(r.error_code);
        r.members.iter().for_each(|m| each(m.error_code));
    }
    OffsetCommitResponse => |r, each| {
        for topic in &r.topics {
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    OffsetFetchResponse => |r, each| {
        each(r.error_code);
        for topic in &r.topics {
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
        for group in &r.groups {
            each(group.error_code);
            for topic in &group.topics {
                topic.partitions.iter().for_each(|p| each(p.error_code));
            }
        }
    }
    OffsetDeleteResponse => |r, each| {
        each(r.error_code);
        for topic in &r.topics {
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    DescribeGroupsResponse => |r, each| { r.groups.iter().for_each(|g| each(g.error_code)) }
    ListGroupsResponse => |r, each| { each(r.error_code) }
    DeleteGroupsResponse => |r, each| { r.results.iter().for_each(|g| each(g.error_code)) }
    // Topics and configs.
    CreateTopicsResponse => |r, each| { r.topics.iter().for_each(|t| each(t.error_code)) }
    DeleteTopicsResponse => |r, each| { r.responses.iter().for_each(|t| each(t.error_code)) }
    CreatePartitionsResponse => |r, each| { r.results.iter().for_each(|t| each(t.error_code)) }
    DescribeConfigsResponse => |r, each| { r.results.iter().for_each(|c| each(c.error_code)) }
    AlterConfigsResponse => |r, each| { r.responses.iter().for_each(|c| each(c.error_code)) }
    IncrementalAlterConfigsResponse => |r, each| {
        r.responses.iter().for_each(|c| each(c.error_code))
    }
    // Security.
    SaslHandshakeResponse => |r, each| { each(r.error_code) }
    SaslAuthenticateResponse => |r, each| { each(r.error_code) }
    DescribeUserScramCredentialsResponse => |r, each| {
        each(r.error_code);
        r.results.iter().for_each(|u| each(u.error_code));
    }
    AlterUserScramCredentialsResponse => |r, each| {
        r.results.iter().for_each(|u| each(u.error_code))
    }
    CreateAclsResponse => |r, each| { r.results.iter().for_each(|a| each(a.error_code)) }
    DescribeAclsResponse => |r, each| { each(r.error_code) }
    DeleteAclsResponse => |r, each| {
        for filter in &r.filter_results {
            each(filter.error_code);
            filter.matching_acls.iter().for_each(|a| each(a.error_code));
        }
    }
    // Producers.
    // Transactions.
    AddPartitionsToTxnResponse => |r, each| {
        each(r.error_code);
        let partitions = |topic: &kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult,
                          each: &mut dyn FnMut(i16)| {
            topic.results_by_partition.iter().for_each(|p| each(p.partition_error_code));
        };
        for txn in &r.results_by_transaction {
            txn.topic_results.iter().for_each(|t| partitions(t, each));
        }
        r.results_by_topic_v3_and_below.iter().for_each(|t| partitions(t, each));
    }
    AddOffsetsToTxnResponse => |r, each| { each(r.error_code) }
    TxnOffsetCommitResponse => |r, each| {
        for topic in &r.topics {
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
    EndTxnResponse => |r, each| { each(r.error_code) }
    DescribeTransactionsResponse => |r, each| {
        r.transaction_states.iter().for_each(|t| each(t.error_code));
    }
    ListTransactionsResponse => |r, each| { each(r.error_code) }
    WriteTxnMarkersResponse => |r, each| {
        for marker in &r.markers {
            for topic in &marker.topics {
                topic.partitions.iter().for_each(|p| each(p.error_code));
            }
        }
    }
    InitProducerIdResponse => |r, each| { each(r.error_code) }
}
