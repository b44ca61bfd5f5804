//! What ApiVersions advertises is what the broker serves: every advertised
//! API, at every advertised version, answers a minimal request with a
//! response that decodes at that version, on a connection that stays open.

mod common;

use std::collections::BTreeSet;

use common::raw::{api_versions_request, RawClient, API_VERSIONS_VERSION_MAX};
use common::{unique_topic, Broker};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};

/// Sends `request` at `version` and panics unless it is answered.
fn answered<R: Request>(client: &mut RawClient, request: R, version: i16) {
    let (correlation_id, frame) = client.frame(&request, version);
    client
        .write_raw(&frame)
        .unwrap_or_else(|e| panic!("sending API key {} v{version}: {e}", R::KEY));
    // `try_receive` decodes the answer at `version` and panics if it does not.
    let answer = client.try_receive::<R>(correlation_id, version);
    assert!(
        answer.is_some(),
        "API key {} v{version} is advertised but the broker closed the connection",
        R::KEY
    );
}

/// A minimal request of each API ringlog serves. An advertised API missing
/// here fails the test, so nothing is advertised untested.
fn probe(client: &mut RawClient, key: ApiKey, version: i16, group: &str) {
    let group_id = || GroupId(StrBytes::from_string(group.to_string()));
    match key {
        // acks=1: an acks=0 produce is never answered.
        ApiKey::Produce => answered(client, ProduceRequest::default().with_acks(1), version),
        ApiKey::Fetch => answered(client, FetchRequest::default(), version),
        ApiKey::ListOffsets => answered(client, ListOffsetsRequest::default(), version),
        ApiKey::Metadata => answered(
            client,
            MetadataRequest::default().with_topics(Some(Vec::new())),
            version,
        ),
        ApiKey::OffsetCommit => answered(
            client,
            OffsetCommitRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::OffsetFetch if version < 8 => answered(
            client,
            OffsetFetchRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::OffsetFetch => answered(client, OffsetFetchRequest::default(), version),
        ApiKey::FindCoordinator if version < 4 => answered(
            client,
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())),
            version,
        ),
        ApiKey::FindCoordinator => answered(
            client,
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]),
            version,
        ),
        // An empty member id with a bad protocol type is refused at once
        // instead of being held for a rebalance.
        ApiKey::JoinGroup => answered(client, JoinGroupRequest::default(), version),
        ApiKey::Heartbeat => answered(
            client,
            HeartbeatRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::LeaveGroup => answered(
            client,
            LeaveGroupRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::SyncGroup => answered(
            client,
            SyncGroupRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::DescribeGroups => answered(
            client,
            DescribeGroupsRequest::default().with_groups(vec![group_id()]),
            version,
        ),
        ApiKey::ListGroups => answered(client, ListGroupsRequest::default(), version),
        ApiKey::ApiVersions => answered(client, api_versions_request(version), version),
        ApiKey::CreateTopics => answered(client, CreateTopicsRequest::default(), version),
        ApiKey::DeleteTopics => answered(client, DeleteTopicsRequest::default(), version),
        ApiKey::DeleteRecords => answered(client, DeleteRecordsRequest::default(), version),
        ApiKey::DescribeConfigs => answered(client, DescribeConfigsRequest::default(), version),
        ApiKey::AlterConfigs => answered(client, AlterConfigsRequest::default(), version),
        ApiKey::CreatePartitions => answered(client, CreatePartitionsRequest::default(), version),
        ApiKey::DeleteGroups => answered(
            client,
            DeleteGroupsRequest::default().with_groups_names(vec![group_id()]),
            version,
        ),
        ApiKey::IncrementalAlterConfigs => {
            answered(client, IncrementalAlterConfigsRequest::default(), version)
        }
        ApiKey::OffsetDelete => answered(
            client,
            OffsetDeleteRequest::default().with_group_id(group_id()),
            version,
        ),
        ApiKey::DescribeCluster => answered(client, DescribeClusterRequest::default(), version),
        // On a PLAINTEXT listener both are answered with ILLEGAL_SASL_STATE.
        ApiKey::SaslHandshake => answered(
            client,
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
            version,
        ),
        ApiKey::SaslAuthenticate => answered(client, SaslAuthenticateRequest::default(), version),
        ApiKey::DescribeUserScramCredentials => answered(
            client,
            DescribeUserScramCredentialsRequest::default(),
            version,
        ),
        // Without the authorizer these answer SECURITY_DISABLED.
        ApiKey::CreateAcls => answered(client, CreateAclsRequest::default(), version),
        ApiKey::DescribeAcls => answered(client, DescribeAclsRequest::default(), version),
        ApiKey::DeleteAcls => answered(client, DeleteAclsRequest::default(), version),
        ApiKey::AlterUserScramCredentials => {
            answered(client, AlterUserScramCredentialsRequest::default(), version)
        }
        ApiKey::DescribeProducers => answered(client, DescribeProducersRequest::default(), version),
        ApiKey::InitProducerId => answered(
            client,
            InitProducerIdRequest::default().with_transactional_id(None),
            version,
        ),
        ApiKey::WriteTxnMarkers => answered(client, WriteTxnMarkersRequest::default(), version),
        // Empty transactional ids are answered with INVALID_REQUEST.
        ApiKey::AddPartitionsToTxn => {
            answered(client, AddPartitionsToTxnRequest::default(), version)
        }
        ApiKey::AddOffsetsToTxn => answered(client, AddOffsetsToTxnRequest::default(), version),
        ApiKey::EndTxn => answered(client, EndTxnRequest::default(), version),
        ApiKey::TxnOffsetCommit => answered(client, TxnOffsetCommitRequest::default(), version),
        ApiKey::DescribeTransactions => {
            answered(client, DescribeTransactionsRequest::default(), version)
        }
        ApiKey::ListTransactions => answered(client, ListTransactionsRequest::default(), version),
        ApiKey::OffsetForLeaderEpoch => {
            answered(client, OffsetForLeaderEpochRequest::default(), version)
        }
        ApiKey::DescribeQuorum => answered(client, DescribeQuorumRequest::default(), version),
        ApiKey::ElectLeaders => answered(client, ElectLeadersRequest::default(), version),
        other => panic!("{other:?} is advertised but this test has no request for it"),
    }
}

#[test]
fn every_advertised_api_answers_at_every_advertised_version() {
    let broker = Broker::start();
    let mut client = RawClient::connect(broker.addr());
    let advertised = client.call(
        &api_versions_request(API_VERSIONS_VERSION_MAX),
        API_VERSIONS_VERSION_MAX,
    );
    assert_eq!(advertised.error_code, 0, "ApiVersions error code");
    let mut keys = BTreeSet::new();
    for range in &advertised.api_keys {
        let key = ApiKey::try_from(range.api_key)
            .unwrap_or_else(|_| panic!("advertised API key {} is not Kafka's", range.api_key));
        assert!(
            range.min_version <= range.max_version,
            "{key:?} advertises {}..={}",
            range.min_version,
            range.max_version
        );
        keys.insert(range.api_key);
        for version in range.min_version..=range.max_version {
            let group = unique_topic("versions-group");
            probe(&mut client, key, version, &group);
        }
    }
    assert_eq!(
        keys.len(),
        advertised.api_keys.len(),
        "each API advertised once"
    );
    // The connection served every probe and is still usable.
    let again = client.call(&api_versions_request(0), 0);
    assert_eq!(again.error_code, 0);
}
