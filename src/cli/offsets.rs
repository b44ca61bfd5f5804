//! Positions in a partition: the start, the end, an offset or a time, turned
//! into offsets with ListOffsets on each partition's leader.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};

use super::error::{check, CliError};
use super::session::{consumer_replica_id, topic_name, versions, Session, Target, TopicInfo};

/// ListOffsets' timestamps for the log start and end (Kafka's sentinels).
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;
/// What ListOffsets by time answers when no record is that recent.
const NO_OFFSET: i64 = -1;

/// Where to start reading or to move a group to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Beginning,
    End,
    Offset(i64),
    /// Milliseconds since the epoch: the first record at or after it.
    Time(i64),
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(text: &str) -> Result<Position, String> {
        match text {
            "beginning" | "earliest" | "start" => Ok(Position::Beginning),
            "end" | "latest" => Ok(Position::End),
            _ => match text.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(Position::Offset(offset)),
                Ok(_) => Err(format!("offset {text} is negative")),
                Err(_) => parse_time(text).map(Position::Time).map_err(|_| {
                    format!(
                        "{text:?} is not beginning, end, an offset, or a time \
                         (2024-05-01T12:00:00Z or @MILLISECONDS)"
                    )
                }),
            },
        }
    }
}

/// `@1714564800000` (milliseconds since the epoch) or an RFC 3339 time,
/// `2024-05-01T12:00:00Z` (UTC when no zone is given).
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Some(millis) = text.strip_prefix('@') {
        return millis
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| format!("{text:?} is not @MILLISECONDS"));
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(millis_since_epoch(time))
}

pub fn millis_since_epoch(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The offsets of `partitions` at `timestamp` (or a sentinel), asked of
/// each partition's leader.
pub fn list_offsets(
    session: &mut Session,
    topic: &TopicInfo,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let mut offsets = BTreeMap::new();
    for (leader, indexes) in topic.by_leader(partitions)? {
        let request = ListOffsetsRequest::default()
            .with_replica_id(consumer_replica_id())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(&topic.name))
                .with_partitions(
                    indexes
                        .iter()
                        .map(|&index| {
                            ListOffsetsPartition::default()
                                .with_partition_index(index)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response = session.call(Target::Node(leader), versions::LIST_OFFSETS, |_| request)?;
        for answered in response.topics.iter().flat_map(|t| &t.partitions) {
            check(answered.error_code, None, || {
                format!("offsets of {}/{}", topic.name, answered.partition_index)
            })?;
            offsets.insert(answered.partition_index, answered.offset);
        }
    }
    for index in partitions {
        if !offsets.contains_key(index) {
            return Err(CliError::Answer(format!(
                "ListOffsets did not answer for {}/{index}",
                topic.name
            )));
        }
    }
    Ok(offsets)
}

/// The log start and end offsets of `partitions`.
pub fn bounds(
    session: &mut Session,
    topic: &TopicInfo,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i64)>, CliError> {
    let earliest = list_offsets(session, topic, partitions, EARLIEST_TIMESTAMP)?;
    let latest = list_offsets(session, topic, partitions, LATEST_TIMESTAMP)?;
    Ok(earliest
        .into_iter()
        .map(|(index, start)| (index, (start, latest.get(&index).copied().unwrap_or(start))))
        .collect())
}

/// The offset `position` names in each partition: an offset is kept
/// within the log (as Kafka's tools do), a time past the last record is
/// the end.
pub fn resolve(
    session: &mut Session,
    topic: &TopicInfo,
    partitions: &[i32],
    position: Position,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let bounds = bounds(session, topic, partitions)?;
    let by_time = match position {
        Position::Time(ms) => Some(list_offsets(session, topic, partitions, ms)?),
        _ => None,
    };
    Ok(bounds
        .into_iter()
        .map(|(index, (start, end))| {
            let offset = match position {
                Position::Beginning => start,
                Position::End => end,
                Position::Offset(offset) => offset.clamp(start, end),
                Position::Time(_) => match by_time.as_ref().and_then(|o| o.get(&index)) {
                    Some(&offset) if offset != NO_OFFSET => offset,
                    _ => end,
                },
            };
            (index, offset)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_words_offsets_and_times() {
        assert_eq!("beginning".parse(), Ok(Position::Beginning));
        assert_eq!("end".parse(), Ok(Position::End));
        assert_eq!("42".parse(), Ok(Position::Offset(42)));
        assert_eq!("@1000".parse(), Ok(Position::Time(1000)));
        assert_eq!("1970-01-01T00:00:01Z".parse(), Ok(Position::Time(1000)));
        assert!("-3".parse::<Position>().is_err());
        assert!("yesterday".parse::<Position>().is_err());
    }
}
