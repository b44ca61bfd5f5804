//! DescribeGroups, ListGroups and DeleteGroups answers on the wire.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response;
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;

use super::{error_code, str_bytes};
use crate::group::{self, GroupError};

/// KIP-1043: DescribeGroups v6 reports a missing group as an error; older
/// versions describe it as Dead without one.
const DESCRIBE_MISSING_IS_ERROR_VERSION: i16 = 6;

pub fn described_group(description: group::GroupDescription, version: i16) -> DescribedGroup {
    let missing = description.error == Some(GroupError::GroupIdNotFound);
    let (error, message) = if !missing {
        (description.error, None)
    } else if version >= DESCRIBE_MISSING_IS_ERROR_VERSION {
        let message = format!("Group {} not found.", description.group_id);
        (description.error, Some(StrBytes::from_string(message)))
    } else {
        (None, None)
    };
    let members = description
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                .with_client_id(StrBytes::from_string(m.client_id))
                .with_client_host(StrBytes::from_string(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
    DescribedGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(description.group_id)))
        .with_error_code(error_code(error))
        .with_error_message(message)
        .with_group_state(str_bytes(description.state.map_or("", |s| s.name())))
        .with_protocol_type(StrBytes::from_string(description.protocol_type))
        .with_protocol_data(StrBytes::from_string(description.protocol_data))
        .with_members(members)
}

pub fn listed_group(listed: group::ListedGroup) -> list_groups_response::ListedGroup {
    list_groups_response::ListedGroup::default()
        .with_group_id(GroupId(StrBytes::from_string(listed.group_id)))
        .with_protocol_type(StrBytes::from_string(listed.protocol_type))
        .with_group_state(str_bytes(listed.state.name()))
        .with_group_type(str_bytes(listed.group_type))
}

pub fn deleted_group(group_id: GroupId, outcome: Result<(), GroupError>) -> DeletableGroupResult {
    DeletableGroupResult::default()
        .with_group_id(group_id)
        .with_error_code(error_code(outcome.err()))
}
