//! The control plane before a measured run: find or create the topic, pick
//! the Produce and Fetch versions, and read the offsets consumers start from
//! (and, for a catch-up read, stop at).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use ringlog::client::Connection;

use crate::args::{Args, Mode, StartFrom};
use crate::wire;

/// How long a newly created topic may take to show up in Metadata.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often Metadata is asked again while a created topic is not there yet.
const TOPIC_READY_POLL: Duration = Duration::from_millis(50);
/// ListOffsets timestamps (Kafka's sentinels).
const OFFSET_LATEST: i64 = -1;
const OFFSET_EARLIEST: i64 = -2;

/// What the workers need to know about the broker and the topic.
pub struct TopicSetup {
    pub partitions: Vec<i32>,
    pub produce_version: i16,
    /// 0 when the run has no consumers.
    pub fetch_version: i16,
    /// Where each partition's consumer starts (empty without consumers).
    pub start_offsets: HashMap<i32, i64>,
    /// Consume `--to-end`: the offsets to stop at.
    pub end_offsets: Option<HashMap<i32, i64>>,
}

pub fn prepare(args: &Args) -> Result<TopicSetup> {
    let mut control = wire::connect_control(&args.bootstrap)?;
    let partition_count = find_or_create_topic(&mut control, args)?;
    let partitions: Vec<i32> = (0..partition_count).collect();
    let versions = control.versions();
    let produce_version = versions.pick::<ProduceRequest>(wire::PRODUCE_VERSIONS)?;
    let fetch_version = if args.mode.fetches() {
        versions.pick::<FetchRequest>(wire::FETCH_VERSIONS)?
    } else {
        0
    };
    let start_offsets = if args.mode.fetches() {
        let timestamp = if args.mode == Mode::E2e || args.from == StartFrom::Latest {
            OFFSET_LATEST
        } else {
            OFFSET_EARLIEST
        };
        wire::list_offsets(
            &mut control,
            &args.topic,
            &partitions,
            timestamp,
            args.isolation.level(),
        )?
    } else {
        HashMap::new()
    };
    let end_offsets = if args.mode == Mode::Consume && args.to_end {
        Some(wire::list_offsets(
            &mut control,
            &args.topic,
            &partitions,
            OFFSET_LATEST,
            args.isolation.level(),
        )?)
    } else {
        None
    };
    Ok(TopicSetup {
        partitions,
        produce_version,
        fetch_version,
        start_offsets,
        end_offsets,
    })
}

/// The topic's partition count, creating the topic unless `--no-create`.
fn find_or_create_topic(control: &mut Connection, args: &Args) -> Result<i32> {
    let mut existing = wire::topic_partitions(control, &args.topic)?;
    if existing.is_none() && !args.no_create {
        wire::create_topic(control, &args.topic, args.partitions)?;
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        while existing.is_none() && Instant::now() < deadline {
            std::thread::sleep(TOPIC_READY_POLL);
            existing = wire::topic_partitions(control, &args.topic)?;
        }
    }
    let Some((partition_count, many_leaders)) = existing else {
        bail!(
            "topic {} not found{}",
            args.topic,
            if args.no_create {
                ""
            } else {
                " after CreateTopics"
            }
        );
    };
    if partition_count != args.partitions {
        eprintln!(
            "note: topic {} has {partition_count} partitions; using them all",
            args.topic
        );
    }
    if many_leaders {
        eprintln!(
            "warning: partitions have several leaders; this tool sends everything to {}",
            args.bootstrap
        );
    }
    Ok(partition_count)
}
