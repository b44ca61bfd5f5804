//! `ringlog group reset-offsets GROUP`: the offsets each chosen partition
//! would move to (earliest, latest, an offset kept within the log, or the
//! first record at a time), committed unless `--dry-run`. Like Kafka's
//! tool, it refuses a group with active members, whose commits would race.

use std::collections::BTreeMap;

use clap::{ArgGroup, Args};
use serde::Serialize;

use super::committed::{self, Offsets};
use super::error::CliError;
use super::group::{describe_group, STATE_DEAD, STATE_EMPTY};
use super::offsets::{self, parse_time, Position};
use super::output::{Out, Table};
use super::session::Session;
use super::Common;

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true)
    .args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
#[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
pub struct ResetArgs {
    group: String,
    /// A topic, or TOPIC:0,2 for some of its partitions (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start of each partition.
    #[arg(long)]
    to_earliest: bool,
    /// To the end of each partition.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (kept within each partition's log).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record at or after TIME (2024-05-01T12:00:00Z or @MILLISECONDS).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Serialize)]
struct Moved {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    new_offset: i64,
}

#[derive(Serialize)]
struct Reset {
    group: String,
    dry_run: bool,
    partitions: Vec<Moved>,
}

pub fn run(
    session: &mut Session,
    out: &mut Out,
    common: &Common,
    args: &ResetArgs,
) -> Result<(), CliError> {
    let position = target(args)?;
    let group = &args.group;
    let coordinator = session.coordinator(group)?;
    let state = describe_group(session, coordinator, group)?;
    let state_name = state.group_state.as_str();
    if !args.dry_run && state_name != STATE_EMPTY && state_name != STATE_DEAD {
        return Err(CliError::Answer(format!(
            "group {group} is {state_name} with {} members: offsets can be reset only while \
             it has none (stop its consumers first)",
            state.members.len()
        )));
    }
    let scope = match args.all_topics {
        true => committed_topics(&committed::fetch(session, coordinator, group, None)?),
        false => parse_scope(&args.topics)?,
    };
    let scope = with_all_partitions(session, scope)?;
    let current = committed::fetch(session, coordinator, group, Some(&scope))?;
    let mut new = Offsets::new();
    for (name, partitions) in &scope {
        let topic = session.topic(name)?;
        for (partition, offset) in offsets::resolve(session, &topic, partitions, position)? {
            new.insert((name.clone(), partition), offset);
        }
    }
    if !args.dry_run {
        committed::commit(session, coordinator, group, &new)?;
    }
    report(out, common, args, &current, &new)
}

fn target(args: &ResetArgs) -> Result<Position, CliError> {
    Ok(if args.to_earliest {
        Position::Beginning
    } else if args.to_latest {
        Position::End
    } else if let Some(offset) = args.to_offset {
        if offset < 0 {
            return Err(CliError::usage("--to-offset must not be negative"));
        }
        Position::Offset(offset)
    } else if let Some(time) = &args.to_datetime {
        Position::Time(parse_time(time).map_err(|e| CliError::usage(format!("--to-datetime {e}")))?)
    } else {
        return Err(CliError::usage(
            "one of --to-earliest, --to-latest, --to-offset or --to-datetime is needed",
        ));
    })
}

/// `--topic` values: `TOPIC` (all partitions, filled in later) or `TOPIC:0,2`.
fn parse_scope(items: &[String]) -> Result<BTreeMap<String, Vec<i32>>, CliError> {
    let mut scope: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for item in items {
        let (topic, partitions) = match item.split_once(':') {
            None => (item.as_str(), Vec::new()),
            Some((topic, list)) => {
                let partitions = list
                    .split(',')
                    .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                    .collect::<Option<Vec<i32>>>()
                    .ok_or_else(|| {
                        CliError::usage(format!("--topic {item:?}: expected TOPIC or TOPIC:0,1,2"))
                    })?;
                (topic, partitions)
            }
        };
        if topic.is_empty() {
            return Err(CliError::usage(format!("--topic {item:?} names no topic")));
        }
        scope
            .entry(topic.to_string())
            .or_default()
            .extend(partitions);
    }
    Ok(scope)
}

fn committed_topics(offsets: &Offsets) -> BTreeMap<String, Vec<i32>> {
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in offsets.keys() {
        topics.entry(topic.clone()).or_default().push(*partition);
    }
    topics
}

/// A topic named without partitions stands for all of them.
fn with_all_partitions(
    session: &mut Session,
    scope: BTreeMap<String, Vec<i32>>,
) -> Result<BTreeMap<String, Vec<i32>>, CliError> {
    if scope.is_empty() {
        return Err(CliError::Answer("no partitions to reset".to_string()));
    }
    scope
        .into_iter()
        .map(|(name, mut partitions)| {
            if partitions.is_empty() {
                partitions = session.topic(&name)?.partition_indexes();
            }
            partitions.sort_unstable();
            partitions.dedup();
            Ok((name, partitions))
        })
        .collect()
}

fn report(
    out: &mut Out,
    common: &Common,
    args: &ResetArgs,
    current: &Offsets,
    new: &Offsets,
) -> Result<(), CliError> {
    let partitions: Vec<Moved> = new
        .iter()
        .map(|((topic, partition), offset)| Moved {
            topic: topic.clone(),
            partition: *partition,
            current_offset: current.get(&(topic.clone(), *partition)).copied(),
            new_offset: *offset,
        })
        .collect();
    let title = if args.dry_run {
        format!("GROUP {} (dry run: nothing committed)", args.group)
    } else {
        format!("GROUP {} (committed)", args.group)
    };
    let mut table =
        Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]).titled(title);
    for m in &partitions {
        table.row(vec![
            m.topic.clone(),
            m.partition.to_string(),
            m.current_offset
                .map_or_else(|| "-".into(), |o| o.to_string()),
            m.new_offset.to_string(),
        ]);
    }
    let reset = Reset {
        group: args.group.clone(),
        dry_run: args.dry_run,
        partitions,
    };
    out.answer(&common.format, &reset, &[table])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_whole_topics_or_some_partitions() {
        let scope = parse_scope(&["a".into(), "b:0,2".into()]).expect("valid");
        assert_eq!(scope["a"], Vec::<i32>::new());
        assert_eq!(scope["b"], vec![0, 2]);
        assert!(parse_scope(&["b:x".into()]).is_err());
        assert!(parse_scope(&[":1".into()]).is_err());
    }
}
