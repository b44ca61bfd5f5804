//! The API version ranges a broker advertises in ApiVersions, and the highest
//! version both sides speak.

use std::collections::HashMap;

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::Request;

use super::ClientError;

/// api key -> (min, max) as the broker advertised them.
#[derive(Debug, Clone, Default)]
pub struct Versions(HashMap<i16, (i16, i16)>);

impl Versions {
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        Self(
            response
                .api_keys
                .iter()
                .map(|range| (range.api_key, (range.min_version, range.max_version)))
                .collect(),
        )
    }

    pub fn advertises(&self, api_key: i16) -> bool {
        self.0.contains_key(&api_key)
    }

    /// The highest version of `R` that the broker, kafka-protocol and the
    /// caller's inclusive range `ours` all support.
    pub fn pick<R: Request>(&self, ours: (i16, i16)) -> Result<i16, ClientError> {
        let (broker_min, broker_max) = self
            .0
            .get(&R::KEY)
            .copied()
            .ok_or(ClientError::Unadvertised(R::KEY))?;
        let ours_min = ours.0.max(R::VERSIONS.min);
        let ours_max = ours.1.min(R::VERSIONS.max);
        let version = broker_max.min(ours_max);
        if version < broker_min.max(ours_min) {
            return Err(ClientError::NoCommonVersion {
                api_key: R::KEY,
                broker_min,
                broker_max,
                ours_min,
                ours_max,
            });
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ProduceRequest;

    fn advertising(min: i16, max: i16) -> Versions {
        let response = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(ProduceRequest::KEY)
            .with_min_version(min)
            .with_max_version(max)]);
        Versions::from_response(&response)
    }

    #[test]
    fn pick_takes_the_highest_version_both_sides_speak() {
        assert_eq!(
            advertising(0, 11).pick::<ProduceRequest>((3, 9)).ok(),
            Some(9)
        );
        assert_eq!(
            advertising(0, 7).pick::<ProduceRequest>((3, 9)).ok(),
            Some(7)
        );
    }

    #[test]
    fn pick_refuses_disjoint_ranges_and_unadvertised_keys() {
        assert!(matches!(
            advertising(10, 11).pick::<ProduceRequest>((3, 9)),
            Err(ClientError::NoCommonVersion { .. })
        ));
        assert!(matches!(
            Versions::default().pick::<ProduceRequest>((3, 9)),
            Err(ClientError::Unadvertised(_))
        ));
    }
}
