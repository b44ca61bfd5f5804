//! `ringlog group list|describe|delete|reset-offsets`: ListGroups on every
//! broker; DescribeGroups, OffsetFetch and ListOffsets for a group's lag;
//! DeleteGroups on its coordinator.

use std::collections::BTreeMap;

use clap::Subcommand;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::protocol::Decodable;
use serde::Serialize;

use super::committed;
use super::error::{check, CliError};
use super::offsets;
use super::output::{answer_each, Out, Table};
use super::reset::{self, ResetArgs};
use super::session::{group_id, versions, Session, Target};
use super::Common;

/// DescribeGroups' state of a group the coordinator does not know.
pub const STATE_DEAD: &str = "Dead";
/// The state of a group with no members.
pub const STATE_EMPTY: &str = "Empty";
/// The protocol type whose assignments are ConsumerProtocolAssignment.
const PROTOCOL_TYPE_CONSUMER: &str = "consumer";
/// The highest ConsumerProtocolAssignment version kafka-protocol decodes.
const ASSIGNMENT_VERSION_MAX: i16 = 3;

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups of every broker.
    List,
    /// Show groups' members, and each partition's committed offset, end offset and lag.
    Describe {
        #[arg(required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Delete groups that have no members.
    Delete {
        #[arg(required = true, value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets(ResetArgs),
}

pub fn run(common: &Common, command: GroupCommand) -> Result<(), CliError> {
    let mut session = common.session()?;
    let mut out = Out::new();
    match command {
        GroupCommand::List => list(&mut session, &mut out, common),
        GroupCommand::Describe { groups } => answer_each(
            &mut out,
            &common.format,
            &groups,
            |group| describe_one(&mut session, group),
            describe_tables,
        ),
        GroupCommand::Delete { groups } => delete(&mut session, &mut out, common, &groups),
        GroupCommand::ResetOffsets(args) => reset::run(&mut session, &mut out, common, &args),
    }
}

#[derive(Serialize)]
struct Listed {
    group: String,
    state: String,
    protocol_type: String,
    coordinator: i32,
}

fn list(session: &mut Session, out: &mut Out, common: &Common) -> Result<(), CliError> {
    let mut groups = Vec::new();
    // Each broker lists the groups it coordinates.
    for broker in session.broker_ids()? {
        let response = session.call(Target::Node(broker), versions::LIST_GROUPS, |_| {
            ListGroupsRequest::default()
        })?;
        check(response.error_code, None, || {
            format!("listing groups on broker {broker}")
        })?;
        groups.extend(response.groups.iter().map(|g| Listed {
            group: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            coordinator: broker,
        }));
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
    for g in &groups {
        table.row(vec![
            g.group.clone(),
            g.state.clone(),
            g.protocol_type.clone(),
            g.coordinator.to_string(),
        ]);
    }
    out.answer(&common.format, &groups, &[table])
}

/// A group's state and members, as DescribeGroups tells them.
pub fn describe_group(
    session: &mut Session,
    coordinator: i32,
    group: &str,
) -> Result<DescribedGroup, CliError> {
    let response = session.call(Target::Node(coordinator), versions::DESCRIBE_GROUPS, |_| {
        DescribeGroupsRequest::default().with_groups(vec![group_id(group)])
    })?;
    let described =
        response.groups.into_iter().next().ok_or_else(|| {
            CliError::Answer(format!("DescribeGroups did not answer for {group}"))
        })?;
    check(
        described.error_code,
        described.error_message.as_deref(),
        || format!("describing group {group}"),
    )?;
    Ok(described)
}

#[derive(Serialize)]
struct Described {
    group: String,
    state: String,
    protocol_type: String,
    protocol: String,
    coordinator: i32,
    members: Vec<Member>,
    partitions: Vec<Lag>,
}

#[derive(Serialize, Clone)]
struct Member {
    member_id: String,
    client_id: String,
    host: String,
    #[serde(skip)]
    assigned: Vec<(String, i32)>,
}

#[derive(Serialize)]
struct Lag {
    topic: String,
    partition: i32,
    committed_offset: Option<i64>,
    log_end_offset: i64,
    lag: Option<i64>,
    member_id: Option<String>,
}

fn describe_one(session: &mut Session, group: &str) -> Result<Described, CliError> {
    let coordinator = session.coordinator(group)?;
    let info = describe_group(session, coordinator, group)?;
    let committed = committed::fetch(session, coordinator, group, None)?;
    if info.group_state.as_str() == STATE_DEAD && committed.is_empty() {
        return Err(CliError::Answer(format!("group {group} does not exist")));
    }
    let members: Vec<Member> = info
        .members
        .iter()
        .map(|m| Member {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
            assigned: if info.protocol_type.as_str() == PROTOCOL_TYPE_CONSUMER {
                assigned_partitions(&m.member_assignment)
            } else {
                Vec::new()
            },
        })
        .collect();
    let partitions = lags(session, &committed, &members)?;
    Ok(Described {
        group: group.to_string(),
        state: info.group_state.to_string(),
        protocol_type: info.protocol_type.to_string(),
        protocol: info.protocol_data.to_string(),
        coordinator,
        members,
        partitions,
    })
}

/// The partitions a consumer-protocol assignment names; none if it does not decode.
fn assigned_partitions(assignment: &bytes::Bytes) -> Vec<(String, i32)> {
    let mut buf = assignment.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, ASSIGNMENT_VERSION_MAX);
    let _ = bytes::Buf::get_i16(&mut buf);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Each partition the group has an offset for or a member is assigned:
/// its committed offset, the log end offset and the difference.
fn lags(
    session: &mut Session,
    committed: &committed::Offsets,
    members: &[Member],
) -> Result<Vec<Lag>, CliError> {
    let mut owners: BTreeMap<(String, i32), Option<String>> =
        committed.keys().map(|k| (k.clone(), None)).collect();
    for member in members {
        for key in &member.assigned {
            owners.insert(key.clone(), Some(member.member_id.clone()));
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in owners.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    let mut lags = Vec::new();
    for (name, partitions) in by_topic {
        let topic = session.topic(&name)?;
        let ends = offsets::list_offsets(session, &topic, &partitions, offsets::LATEST_TIMESTAMP)?;
        for partition in partitions {
            let key = (name.clone(), partition);
            let committed_offset = committed.get(&key).copied();
            let log_end_offset = ends.get(&partition).copied().unwrap_or(0);
            lags.push(Lag {
                topic: name.clone(),
                partition,
                committed_offset,
                log_end_offset,
                lag: committed_offset.map(|c| (log_end_offset - c).max(0)),
                member_id: owners.remove(&key).flatten(),
            });
        }
    }
    Ok(lags)
}

fn describe_tables(group: &Described) -> Vec<Table> {
    let total_lag: i64 = group.partitions.iter().filter_map(|p| p.lag).sum();
    let mut partitions = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
    ])
    .titled(format!(
        "GROUP {} ({}, {} members, coordinator {}, total lag {total_lag})",
        group.group,
        group.state,
        group.members.len(),
        group.coordinator
    ));
    let dash = || "-".to_string();
    for p in &group.partitions {
        partitions.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            p.committed_offset.map_or_else(dash, |o| o.to_string()),
            p.log_end_offset.to_string(),
            p.lag.map_or_else(dash, |l| l.to_string()),
            p.member_id.clone().unwrap_or_else(dash),
        ]);
    }
    let mut members = Table::new(&["MEMBER-ID", "CLIENT-ID", "HOST", "PARTITIONS"]);
    for m in &group.members {
        members.row(vec![
            m.member_id.clone(),
            m.client_id.clone(),
            m.host.clone(),
            m.assigned.len().to_string(),
        ]);
    }
    if group.members.is_empty() {
        return vec![partitions];
    }
    vec![partitions, members]
}

#[derive(Serialize)]
struct Deleted {
    group: String,
    status: String,
}

fn delete(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    groups: &[String],
) -> Result<(), CliError> {
    let mut deleted = Vec::new();
    for group in groups {
        let coordinator = session.coordinator(group)?;
        let response = session.call(Target::Node(coordinator), versions::DELETE_GROUPS, |_| {
            DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)])
        })?;
        let result = response
            .results
            .iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| CliError::Answer(format!("DeleteGroups did not answer for {group}")))?;
        check(result.error_code, None, || {
            format!("deleting group {group}")
        })?;
        deleted.push(Deleted {
            group: group.clone(),
            status: "deleted".into(),
        });
    }
    let mut table = Table::new(&["GROUP", "STATUS"]);
    for d in &deleted {
        table.row(vec![d.group.clone(), d.status.clone()]);
    }
    out.answer(&common.format, &deleted, &[table])
}
