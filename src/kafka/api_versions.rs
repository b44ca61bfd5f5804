//! ApiVersions: what this broker implements, built from the handlers' own
//! version declarations so nothing unimplemented is advertised.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::buf::{ByteBuf, ByteBufMut};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::shard::Shard;

use super::{encode_response, Outcome, Request, SUPPORTED_APIS};
use crate::kafka_api;

pub const VERSIONS: RangeInclusive<i16> = 0..=4;

/// KIP-584 feature flags, as Kafka 4.0 advertises them in ApiVersions v3+:
/// clients use Transactions V2 (KIP-890) when the finalized
/// `transaction.version` is 2 and Produce v12 / TxnOffsetCommit v5 are served.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
pub const TRANSACTION_VERSION_MAX: i16 = 2;
/// The epoch of the finalized features; they never change at run time.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, versions)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*versions.start())
                .with_max_version(*versions.end())
        })
        .collect();
    let feature = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(feature.clone())
            .with_min_version(0)
            .with_max_version(TRANSACTION_VERSION_MAX)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(feature)
            .with_min_version_level(TRANSACTION_VERSION_MAX)
            .with_max_version_level(TRANSACTION_VERSION_MAX)])
}

/// ApiVersions' body (the client software name and version) is
/// informational only, so it is not decoded: a client whose body this
/// broker would misread still learns the versions (KIP-511).
#[derive(Debug, Default)]
pub struct UnreadBody;

impl Decodable for UnreadBody {
    fn decode<B: ByteBuf>(_buf: &mut B, _version: i16) -> anyhow::Result<Self> {
        Ok(UnreadBody)
    }
}

impl Encodable for UnreadBody {
    fn encode<B: ByteBufMut>(&self, _buf: &mut B, _version: i16) -> anyhow::Result<()> {
        Ok(())
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(0)
    }
}

pub async fn handle(_shard: &Rc<Shard>, request: &Request, _body: UnreadBody) -> Outcome {
    // The body (client software name and version) is informational only.
    request.respond(&response(0))
}

/// KIP-511: a client asking for a newer ApiVersions than we know gets
/// UNSUPPORTED_VERSION in the v0 layout, with our ranges, so it can retry.
pub fn unsupported_version(frame: &[u8]) -> Outcome {
    let Some(id) = frame.get(4..8) else {
        return Outcome::Close("ApiVersions request without a correlation id".into());
    };
    let correlation_id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    encode_response(
        correlation_id,
        0,
        &response(ResponseError::UnsupportedVersion.code()),
    )
}

kafka_api!(ApiVersions: ApiVersions, VERSIONS, UnreadBody => handle);
