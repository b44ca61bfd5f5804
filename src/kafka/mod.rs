//! The Kafka API layer: decodes a request frame, runs the handler for its API
//! (one file per API family) and encodes the answer. It knows nothing of files.
//!
//! Every handler has the same shape: `decode -> apply -> encode`, and declares
//! the versions it implements; ApiVersions is built from those declarations.

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod errors;
pub mod fetch;
pub mod fetch_encode;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::ops::RangeInclusive;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::shard::Shard;

pub use crate::net::Outcome;

/// Every API ringlog implements, with the versions its handler supports.
pub const SUPPORTED_APIS: &[(ApiKey, RangeInclusive<i16>)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::OffsetCommit, groups::OFFSET_COMMIT_VERSIONS),
    (ApiKey::OffsetFetch, groups::OFFSET_FETCH_VERSIONS),
    (ApiKey::FindCoordinator, groups::FIND_COORDINATOR_VERSIONS),
    (ApiKey::JoinGroup, groups::JOIN_GROUP_VERSIONS),
    (ApiKey::Heartbeat, groups::HEARTBEAT_VERSIONS),
    (ApiKey::LeaveGroup, groups::LEAVE_GROUP_VERSIONS),
    (ApiKey::SyncGroup, groups::SYNC_GROUP_VERSIONS),
    (ApiKey::DescribeGroups, groups::DESCRIBE_GROUPS_VERSIONS),
    (ApiKey::ListGroups, groups::LIST_GROUPS_VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, admin::CREATE_TOPICS_VERSIONS),
    (ApiKey::DeleteTopics, admin::DELETE_TOPICS_VERSIONS),
    (ApiKey::DeleteRecords, admin::DELETE_RECORDS_VERSIONS),
    (ApiKey::DescribeConfigs, configs::DESCRIBE_CONFIGS_VERSIONS),
    (ApiKey::AlterConfigs, configs::ALTER_CONFIGS_VERSIONS),
    (ApiKey::CreatePartitions, admin::CREATE_PARTITIONS_VERSIONS),
    (ApiKey::DeleteGroups, groups::DELETE_GROUPS_VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        configs::INCREMENTAL_ALTER_CONFIGS_VERSIONS,
    ),
    (ApiKey::OffsetDelete, groups::OFFSET_DELETE_VERSIONS),
    (ApiKey::DescribeCluster, metadata::DESCRIBE_CLUSTER_VERSIONS),
];

pub fn supported_versions(key: ApiKey) -> Option<&'static RangeInclusive<i16>> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The broker's node id (single broker).
pub const NODE_ID: i32 = 0;
/// The cluster id every response that carries one reports.
pub const CLUSTER_ID: &str = "ringlog-cluster";

/// A request as the handlers see it: header decoded, body still bytes.
pub struct Request {
    pub header: RequestHeader,
    pub body: Bytes,
    /// The client's address as Kafka reports it (`/<ip>`).
    pub client_host: Rc<str>,
}

impl Request {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    /// Decodes the body as `T`; a failure means a malformed request.
    ///
    /// The frame is already bounded by `socket.request.max.bytes`. kafka-protocol
    /// 0.18 sizes arrays from their wire length before decoding elements, which
    /// only reserves address space (mimalloc maps it lazily, nothing is
    /// committed) and fails as soon as the bytes run out; the end-to-end test
    /// `array_lengths_larger_than_the_frame_...` keeps that true.
    pub fn decode<T: Decodable>(&self) -> Result<T, Outcome> {
        let mut body = self.body.clone();
        T::decode(&mut body, self.version()).map_err(|error| {
            Outcome::Close(format!(
                "malformed {:?} v{} request: {error}",
                ApiKey::try_from(self.header.request_api_key)
                    .map_or("unknown".into(), |k| format!("{k:?}")),
                self.version()
            ))
        })
    }

    /// Encodes `response` as the answer to this request.
    pub fn respond<R: Encodable + HeaderVersion>(&self, response: &R) -> Outcome {
        encode_response(self.header.correlation_id, self.version(), response)
    }
}

/// `[length][response header][body]` in one buffer.
pub fn encode_response<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Outcome {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::header_version(version);
    let encoded = (|| -> anyhow::Result<Bytes> {
        let size = header.compute_size(header_version)? + response.compute_size(version)?;
        let mut buffer = BytesMut::with_capacity(4 + size);
        buffer.put_i32(size as i32);
        header.encode(&mut buffer, header_version)?;
        response.encode(&mut buffer, version)?;
        Ok(buffer.freeze())
    })();
    match encoded {
        Ok(frame) => Outcome::Respond(vec![frame]),
        // Our own response failed to encode: a bug, never the client's fault.
        Err(error) => Outcome::Close(format!("cannot encode response: {error}")),
    }
}

/// Runs one request frame to its outcome.
pub async fn handle(shard: Rc<Shard>, frame: Bytes, client_host: Rc<str>) -> Outcome {
    if frame.len() < 4 {
        return Outcome::Close(format!(
            "frame of {} bytes is too short for a request header",
            frame.len()
        ));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(key) = ApiKey::try_from(raw_key) else {
        return Outcome::Close(format!("unknown API key {raw_key}"));
    };
    let Some(versions) = supported_versions(key) else {
        return Outcome::Close(format!("unsupported API {key:?}"));
    };
    if !versions.contains(&version) {
        if key == ApiKey::ApiVersions {
            return api_versions::unsupported_version(&frame);
        }
        return Outcome::Close(format!(
            "unsupported version {version} of {key:?} (supported: {versions:?})"
        ));
    }
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, key.request_header_version(version)) {
        Ok(header) => header,
        Err(error) => return Outcome::Close(format!("malformed {key:?} request header: {error}")),
    };
    let request = Request {
        header,
        body,
        client_host,
    };
    match key {
        ApiKey::Produce => produce::handle(&shard, &request).await,
        ApiKey::Fetch => fetch::handle(&shard, &request).await,
        ApiKey::ListOffsets => list_offsets::handle(&shard, &request).await,
        ApiKey::Metadata => metadata::handle(&shard, &request).await,
        ApiKey::ApiVersions => api_versions::handle(&request),
        ApiKey::DescribeCluster => metadata::handle_describe_cluster(&shard, &request),
        ApiKey::CreateTopics => admin::handle_create_topics(&shard, &request).await,
        ApiKey::DeleteTopics => admin::handle_delete_topics(&shard, &request).await,
        ApiKey::CreatePartitions => admin::handle_create_partitions(&shard, &request).await,
        ApiKey::DeleteRecords => admin::handle_delete_records(&shard, &request).await,
        ApiKey::DescribeConfigs => configs::handle_describe(&shard, &request),
        ApiKey::AlterConfigs => configs::handle_alter(&shard, &request).await,
        ApiKey::IncrementalAlterConfigs => {
            configs::handle_incremental_alter(&shard, &request).await
        }
        ApiKey::FindCoordinator => groups::handle_find_coordinator(&shard, &request),
        ApiKey::JoinGroup => groups::handle_join_group(&shard, &request).await,
        ApiKey::SyncGroup => groups::handle_sync_group(&shard, &request).await,
        ApiKey::Heartbeat => groups::handle_heartbeat(&shard, &request).await,
        ApiKey::LeaveGroup => groups::handle_leave_group(&shard, &request).await,
        ApiKey::OffsetCommit => groups::handle_offset_commit(&shard, &request).await,
        ApiKey::OffsetFetch => groups::handle_offset_fetch(&shard, &request).await,
        ApiKey::OffsetDelete => groups::handle_offset_delete(&shard, &request).await,
        ApiKey::DescribeGroups => groups::handle_describe_groups(&shard, &request).await,
        ApiKey::ListGroups => groups::handle_list_groups(&shard, &request).await,
        ApiKey::DeleteGroups => groups::handle_delete_groups(&shard, &request).await,
        other => Outcome::Close(format!("unsupported API {other:?}")),
    }
}

/// Unwraps a decode result inside a handler, returning the close outcome on failure.
#[macro_export]
macro_rules! decode_or_close {
    ($request:expr, $ty:ty) => {
        match $request.decode::<$ty>() {
            Ok(body) => body,
            Err(outcome) => return outcome,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_versions_are_within_what_the_codec_supports() {
        for (key, versions) in SUPPORTED_APIS {
            let codec = key.valid_versions();
            assert!(
                codec.min <= *versions.start() && *versions.end() <= codec.max,
                "{key:?} declares {versions:?} but the codec supports {codec}"
            );
        }
    }
}
