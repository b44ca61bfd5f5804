//! librdkafka against the group coordinator, without the full broker: a
//! minimal Kafka endpoint in this file serves one empty topic (Metadata,
//! ListOffsets and Fetch answer "no data") and hands every group API to a real
//! `GroupCoordinator` on a glommio executor. It checks that real consumers
//! form groups, split partitions, rebalance, commit and restart static
//! members through the coordinator's responses at the versions librdkafka picks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use ringlog::group::{
    offset_fetch_request_groups, offset_fetch_response, ClientInfo, GroupConfig, GroupCoordinator,
    TopicCatalog,
};

const TOPIC: &str = "interop";
const PARTITIONS: i32 = 4;
/// Largest request frame the endpoint reads.
const FRAME_BYTES_MAX: usize = 1 << 20;
/// How long an empty Fetch is held (a real broker long-polls up to max_wait_ms).
const FETCH_WAIT_MAX: Duration = Duration::from_millis(100);
const START_TIMEOUT: Duration = Duration::from_secs(10);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_SLICE: Duration = Duration::from_millis(50);
const SESSION_TIMEOUT_MS: &str = "3000";

struct Catalog;

impl TopicCatalog for Catalog {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        (topic == TOPIC).then_some(PARTITIONS)
    }
}

/// Starts the endpoint on its own thread; returns its port. The thread lives
/// until the test process exits. OffsetFetch is advertised up to `offset_fetch_max`
/// (v8 carries groups, v1-7 one group at the top level).
fn start_endpoint(offset_fetch_max: i16) -> u16 {
    let (port_sender, port_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let data: PathBuf = dir.path().join("groups");
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(async move {
                let config = GroupConfig {
                    min_session_timeout_ms: 1_000,
                    initial_rebalance_delay_ms: 50,
                    ..GroupConfig::default()
                };
                let coordinator = GroupCoordinator::open(data, config)
                    .await
                    .expect("coordinator opens");
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let port = listener.local_addr().expect("local address").port();
                port_sender.send(port).expect("report port");
                loop {
                    let Ok(stream) = listener.accept().await else {
                        continue;
                    };
                    let endpoint = Endpoint {
                        coordinator: coordinator.clone(),
                        port,
                        offset_fetch_max,
                    };
                    glommio::spawn_local(async move { serve(stream, endpoint).await }).detach();
                }
            });
        drop(dir);
    });
    port_receiver
        .recv_timeout(START_TIMEOUT)
        .expect("endpoint starts")
}

fn encode<T: Encodable>(message: &T, version: i16) -> BytesMut {
    let mut out = BytesMut::new();
    message
        .encode(&mut out, version)
        .unwrap_or_else(|error| panic!("encoding a response at v{version}: {error}"));
    out
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> T {
    T::decode(body, version)
        .unwrap_or_else(|error| panic!("decoding a request at v{version}: {error}"))
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

struct Endpoint {
    coordinator: Rc<GroupCoordinator>,
    port: u16,
    offset_fetch_max: i16,
}

impl Endpoint {
    fn versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        let (_, min, max) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
        Some(if key == ApiKey::OffsetFetch {
            (*min, self.offset_fetch_max)
        } else {
            (*min, *max)
        })
    }

    fn api_versions(&self) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            SUPPORTED
                .iter()
                .filter_map(|(key, _, _)| {
                    let (min, max) = self.versions(*key)?;
                    Some(
                        ApiVersion::default()
                            .with_api_key(*key as i16)
                            .with_min_version(min)
                            .with_max_version(max),
                    )
                })
                .collect(),
        )
    }
}

/// API key, min, max: what this endpoint answers.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 1, 5),
    (ApiKey::Metadata, 1, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
];

async fn serve(mut stream: TcpStream, endpoint: Endpoint) {
    loop {
        let mut length = [0u8; 4];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        let length = i32::from_be_bytes(length);
        if length < 4 || length as usize > FRAME_BYTES_MAX {
            return;
        }
        let mut frame = vec![0u8; length as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let Ok(key) = ApiKey::try_from(api_key) else {
            return;
        };
        let mut body = Bytes::from(frame);
        let header: RequestHeader = decode(&mut body, key.request_header_version(version));
        let supported = endpoint
            .versions(key)
            .is_some_and(|(min, max)| (min..=max).contains(&version));
        let response = if supported {
            handle(key, version, &header, body, &endpoint).await
        } else if key == ApiKey::ApiVersions {
            // Unknown ApiVersions version: answer v0 with UNSUPPORTED_VERSION (KIP-511).
            let response = endpoint.api_versions().with_error_code(35);
            encode(&response, 0)
        } else {
            panic!("the client used {key:?} v{version}, which the endpoint does not advertise");
        };
        let response_version = if key == ApiKey::ApiVersions && !supported {
            0
        } else {
            version
        };
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(response_version))
            .expect("a response header encodes");
        out.extend_from_slice(&response);
        let mut framed = Vec::with_capacity(out.len() + 4);
        framed.extend_from_slice(&(out.len() as i32).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

async fn handle(
    key: ApiKey,
    version: i16,
    header: &RequestHeader,
    mut body: Bytes,
    endpoint: &Endpoint,
) -> BytesMut {
    let coordinator = &endpoint.coordinator;
    let port = endpoint.port;
    match key {
        ApiKey::ApiVersions => encode(&endpoint.api_versions(), version),
        ApiKey::Metadata => {
            let request: MetadataRequest = decode(&mut body, version);
            let wanted: Vec<String> = match &request.topics {
                None => vec![TOPIC.to_string()],
                Some(topics) => topics
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.as_str().to_string()))
                    .collect(),
            };
            let topics = wanted
                .iter()
                .map(|name| {
                    let topic =
                        MetadataResponseTopic::default().with_name(Some(TopicName(s(name))));
                    if name != TOPIC {
                        return topic.with_error_code(3);
                    }
                    topic.with_partitions(
                        (0..PARTITIONS)
                            .map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_id(BrokerId(0))
                                    .with_replica_nodes(vec![BrokerId(0)])
                                    .with_isr_nodes(vec![BrokerId(0)])
                            })
                            .collect(),
                    )
                })
                .collect();
            let response = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(s("127.0.0.1"))
                    .with_port(port as i32)])
                .with_cluster_id(Some(s("interop")))
                .with_controller_id(BrokerId(0))
                .with_topics(topics);
            encode(&response, version)
        }
        ApiKey::FindCoordinator => {
            let request: FindCoordinatorRequest = decode(&mut body, version);
            let response = if version >= 4 {
                FindCoordinatorResponse::default().with_coordinators(
                    request
                        .coordinator_keys
                        .iter()
                        .map(|k| {
                            Coordinator::default()
                                .with_key(k.clone())
                                .with_node_id(BrokerId(0))
                                .with_host(s("127.0.0.1"))
                                .with_port(port as i32)
                        })
                        .collect(),
                )
            } else {
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(0))
                    .with_host(s("127.0.0.1"))
                    .with_port(port as i32)
            };
            encode(&response, version)
        }
        ApiKey::ListOffsets => {
            let request: ListOffsetsRequest = decode(&mut body, version);
            let topics = request
                .topics
                .iter()
                .map(|t| {
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_offset(0)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            encode(&ListOffsetsResponse::default().with_topics(topics), version)
        }
        ApiKey::Fetch => {
            let request: FetchRequest = decode(&mut body, version);
            let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MAX);
            glommio::timer::sleep(wait).await;
            let responses = request
                .topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_high_watermark(0)
                                        .with_last_stable_offset(0)
                                        .with_log_start_offset(0)
                                        .with_records(Some(Bytes::new()))
                                })
                                .collect(),
                        )
                })
                .collect();
            encode(&FetchResponse::default().with_responses(responses), version)
        }
        ApiKey::JoinGroup => {
            let client = ClientInfo {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                client_host: "/127.0.0.1".into(),
            };
            let response = coordinator
                .join_group(decode(&mut body, version), version, &client)
                .await;
            encode(&response, version)
        }
        ApiKey::SyncGroup => encode(
            &coordinator
                .sync_group(decode(&mut body, version), version)
                .await,
            version,
        ),
        ApiKey::Heartbeat => encode(
            &coordinator
                .heartbeat(decode(&mut body, version), version)
                .await,
            version,
        ),
        ApiKey::LeaveGroup => encode(
            &coordinator
                .leave_group(decode(&mut body, version), version)
                .await,
            version,
        ),
        ApiKey::OffsetCommit => encode(
            &coordinator
                .offset_commit(decode(&mut body, version), version, &Catalog)
                .await,
            version,
        ),
        ApiKey::OffsetFetch => {
            let request: OffsetFetchRequest = decode(&mut body, version);
            let groups = offset_fetch_request_groups(&request, version)
                .iter()
                .map(|g| coordinator.offset_fetch_group(g, request.require_stable))
                .collect();
            encode(&offset_fetch_response(&request, groups, version), version)
        }
        ApiKey::DescribeGroups => {
            let request: DescribeGroupsRequest = decode(&mut body, version);
            let groups = request
                .groups
                .iter()
                .map(|g| coordinator.describe_group(g.0.as_str(), version))
                .collect();
            encode(
                &DescribeGroupsResponse::default().with_groups(groups),
                version,
            )
        }
        ApiKey::ListGroups => {
            let request: ListGroupsRequest = decode(&mut body, version);
            let groups = coordinator.list_groups(&request.states_filter, &request.types_filter);
            encode(&ListGroupsResponse::default().with_groups(groups), version)
        }
        ApiKey::DeleteGroups => {
            let request: DeleteGroupsRequest = decode(&mut body, version);
            let mut results = Vec::new();
            for group in &request.groups_names {
                let code = coordinator.delete_group(group.0.as_str()).await;
                results.push(
                    DeletableGroupResult::default()
                        .with_group_id(group.clone())
                        .with_error_code(code),
                );
            }
            encode(
                &DeleteGroupsResponse::default().with_results(results),
                version,
            )
        }
        other => panic!("{other:?} is not served"),
    }
}

/// Counts rebalance callbacks, to tell whether a member was disturbed.
#[derive(Default)]
struct CountingContext {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for CountingContext {}

impl ConsumerContext for CountingContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<CountingContext>;

fn group_consumer(
    port: u16,
    group: &str,
    overrides: &[(&str, &str)],
) -> (GroupConsumer, Arc<AtomicUsize>) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "200")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    let context = CountingContext::default();
    let rebalances = Arc::clone(&context.rebalances);
    let consumer: GroupConsumer = config
        .create_with_context(context)
        .expect("consumer configuration");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    (consumer, rebalances)
}

fn assigned(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls all consumers in turn until `done` holds or `timeout` passes.
fn poll_until(
    consumers: &[&GroupConsumer],
    timeout: Duration,
    mut done: impl FnMut(&[&GroupConsumer]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for consumer in consumers {
            let _ = consumer.poll(POLL_SLICE);
        }
        if done(consumers) {
            return true;
        }
    }
    false
}

fn split_over_all(consumers: &[&GroupConsumer]) -> bool {
    let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == PARTITIONS as usize
        && union == (0..PARTITIONS).collect()
}

fn assignments(consumers: &[&GroupConsumer]) -> Vec<BTreeSet<i32>> {
    consumers.iter().map(|c| assigned(c)).collect()
}

#[test]
fn librdkafka_members_split_partitions_and_rebalance_on_join_and_leave() {
    let port = start_endpoint(8);
    let (a, _) = group_consumer(port, "split", &[]);
    let (b, _) = group_consumer(port, "split", &[]);
    assert!(
        poll_until(&[&a, &b], SETTLE_TIMEOUT, split_over_all),
        "two members: {:?}",
        assignments(&[&a, &b])
    );
    let (c, _) = group_consumer(port, "split", &[]);
    assert!(
        poll_until(&[&a, &b, &c], SETTLE_TIMEOUT, split_over_all),
        "three members: {:?}",
        assignments(&[&a, &b, &c])
    );
    let left_at = Instant::now();
    drop(c);
    assert!(
        poll_until(&[&a, &b], SETTLE_TIMEOUT, split_over_all),
        "after a leave: {:?}",
        assignments(&[&a, &b])
    );
    assert!(
        left_at.elapsed() < Duration::from_millis(3_000),
        "a clean leave took {:?}",
        left_at.elapsed()
    );

    let list = a
        .fetch_group_list(Some("split"), REQUEST_TIMEOUT)
        .expect("ListGroups + DescribeGroups");
    let group = list
        .groups()
        .iter()
        .find(|g| g.name() == "split")
        .expect("the group is listed");
    assert_eq!(group.state(), "Stable");
    assert_eq!(group.protocol_type(), "consumer");
    assert_eq!(group.protocol(), "range");
    assert_eq!(group.members().len(), 2);
    assert!(group
        .members()
        .iter()
        .all(|m| m.client_host() == "/127.0.0.1"));
}

#[test]
fn librdkafka_commits_come_back_from_offset_fetch_v8_and_v7() {
    for offset_fetch_max in [8, 7] {
        commits_come_back(offset_fetch_max);
    }
}

fn commits_come_back(offset_fetch_max: i16) {
    let port = start_endpoint(offset_fetch_max);
    let (a, _) = group_consumer(port, "commits", &[]);
    assert!(poll_until(&[&a], SETTLE_TIMEOUT, |c| assigned(c[0]).len()
        == PARTITIONS as usize));
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .expect("offset");
    commit
        .add_partition_offset(TOPIC, 3, Offset::Offset(0))
        .expect("offset");
    // Offsets past the (empty) log are still stored: the coordinator does not check them.
    commit
        .set_partition_offset(TOPIC, 3, Offset::Offset(42))
        .expect("offset");
    a.commit(&commit, CommitMode::Sync).expect("OffsetCommit");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(TOPIC, 0);
    wanted.add_partition(TOPIC, 1);
    wanted.add_partition(TOPIC, 3);
    let committed = a
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .expect("OffsetFetch");
    let offsets: Vec<Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(
        offsets,
        vec![Offset::Offset(0), Offset::Invalid, Offset::Offset(42)]
    );
}

#[test]
fn librdkafka_static_member_restart_keeps_its_partitions_without_a_rebalance() {
    let port = start_endpoint(8);
    let (a, _) = group_consumer(port, "static", &[("group.instance.id", "instance-a")]);
    let (b, b_rebalances) = group_consumer(port, "static", &[("group.instance.id", "instance-b")]);
    assert!(
        poll_until(&[&a, &b], SETTLE_TIMEOUT, split_over_all),
        "{:?}",
        assignments(&[&a, &b])
    );
    let a_partitions = assigned(&a);
    let b_partitions = assigned(&b);
    let b_rebalances_before = b_rebalances.load(Ordering::SeqCst);
    // Static members do not send LeaveGroup on close.
    drop(a);
    let (a, _) = group_consumer(port, "static", &[("group.instance.id", "instance-a")]);
    assert!(
        poll_until(&[&a, &b], SETTLE_TIMEOUT, |c| !assigned(c[0]).is_empty()),
        "the restarted member got nothing"
    );
    // Keep polling a little: a rebalance of B would show up now.
    poll_until(&[&a, &b], Duration::from_secs(1), |_| false);
    assert_eq!(assigned(&a), a_partitions);
    assert_eq!(assigned(&b), b_partitions);
    assert_eq!(
        b_rebalances.load(Ordering::SeqCst),
        b_rebalances_before,
        "B was rebalanced"
    );
}

/// One blocking request over a plain socket (for the member that dies silently).
fn raw_call<Req: Encodable, Resp: Decodable>(
    stream: &mut std::net::TcpStream,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    use std::io::{Read, Write};
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s("raw")))
        .encode(&mut out, key.request_header_version(version))
        .expect("request header");
    request.encode(&mut out, version).expect("request");
    let mut framed = (out.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&out);
    stream.write_all(&framed).expect("send");
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("response length");
    let mut frame = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut frame).expect("response");
    let mut body = Bytes::from(frame);
    let _: ResponseHeader = decode(&mut body, key.response_header_version(version));
    decode(&mut body, version)
}

/// Joins as a consumer over a raw socket and syncs; returns the assigned partitions.
fn raw_member_join(port: u16, group: &str, session_timeout_ms: i32) -> Vec<i32> {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(SETTLE_TIMEOUT))
        .expect("timeout");
    let mut metadata = BytesMut::new();
    metadata.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s(TOPIC)])
        .encode(&mut metadata, 0)
        .expect("subscription");
    let join = |member_id: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_timeout_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(metadata.clone().freeze())])
    };
    let first: JoinGroupResponse = raw_call(&mut stream, ApiKey::JoinGroup, 5, &join(""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let joined: JoinGroupResponse = raw_call(
        &mut stream,
        ApiKey::JoinGroup,
        5,
        &join(first.member_id.as_str()),
    );
    assert_eq!(joined.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(joined.generation_id)
        .with_member_id(joined.member_id.clone());
    let synced: SyncGroupResponse = raw_call(&mut stream, ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    if synced.assignment.len() < 2 {
        return Vec::new();
    }
    let mut assignment = synced.assignment.slice(2..);
    let version = i16::from_be_bytes([synced.assignment[0], synced.assignment[1]]).clamp(0, 3);
    let assignment =
        ConsumerProtocolAssignment::decode(&mut assignment, version).expect("assignment");
    assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect()
}

#[test]
fn librdkafka_members_take_over_a_silent_members_partitions_after_its_session_timeout() {
    const SILENT_SESSION_MS: i32 = 2_000;
    let port = start_endpoint(8);
    let (a, _) = group_consumer(port, "silent", &[]);
    let (b, _) = group_consumer(port, "silent", &[]);
    assert!(poll_until(&[&a, &b], SETTLE_TIMEOUT, split_over_all));
    let raw = std::thread::spawn(move || raw_member_join(port, "silent", SILENT_SESSION_MS));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !raw.is_finished() && Instant::now() < deadline {
        poll_until(&[&a, &b], POLL_SLICE, |_| false);
    }
    let silent_partitions = raw.join().expect("raw member");
    let silent_since = Instant::now();
    assert!(!silent_partitions.is_empty(), "the raw member got nothing");
    assert!(poll_until(&[&a, &b], SETTLE_TIMEOUT, |c| {
        assignments(c).iter().map(BTreeSet::len).sum::<usize>()
            == PARTITIONS as usize - silent_partitions.len()
    }));
    // It never heartbeats: after its session timeout its partitions move to the others.
    assert!(
        poll_until(&[&a, &b], SETTLE_TIMEOUT, split_over_all),
        "{:?}",
        assignments(&[&a, &b])
    );
    let moved_after = silent_since.elapsed();
    assert!(
        moved_after >= Duration::from_millis(SILENT_SESSION_MS as u64 / 2),
        "moved after {moved_after:?}"
    );
}
