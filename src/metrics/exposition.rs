//! The gathered samples written out in the Prometheus text format
//! (OpenMetrics), with prometheus-client doing the encoding.
//!
//! Names follow Kafka's and Redpanda's where one fits, under the `ringlog_`
//! prefix; labels name the topic, partition, group, API (Kafka's request
//! name, e.g. `Produce`) and Kafka error code (Kafka's name, e.g.
//! `UNKNOWN_TOPIC_OR_PARTITION`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Error as FmtError;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::gather::ShardSample;
use super::local::{LatencySample, API_KEY_UNKNOWN, LATENCY_BUCKETS_SECONDS};

/// What a scrape shows: every shard's sample and the broker's state.
#[derive(Debug)]
pub struct Exposition {
    pub samples: Vec<ShardSample>,
    /// Per-partition series (offsets, sizes, segments); off for brokers with
    /// very many partitions.
    pub per_partition: bool,
    pub shard_count: usize,
    pub ready: bool,
}

/// Encodes `exposition` as the body of a `/metrics` answer.
pub fn encode(exposition: Exposition) -> Result<String, FmtError> {
    let mut registry = Registry::with_prefix("ringlog");
    registry.register_collector(Box::new(exposition));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its descriptor, then one value per label set.
fn family<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels, T)>,
    mut write: impl FnMut(&mut prometheus_client::encoding::MetricEncoder, T) -> Result<(), FmtError>,
) -> Result<(), FmtError> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        if labels.is_empty() {
            write(&mut metric, value)?;
        } else {
            write(&mut metric.encode_family(&labels)?, value)?;
        }
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), FmtError> {
    family(encoder, name, help, MetricType::Counter, series, |m, v| {
        m.encode_counter::<NoLabelSet, u64, u64>(&v, None)
    })
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), FmtError> {
    family(encoder, name, help, MetricType::Gauge, series, |m, v| {
        m.encode_gauge(&v)
    })
}

fn histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, LatencySample)>,
) -> Result<(), FmtError> {
    family(
        encoder,
        name,
        help,
        MetricType::Histogram,
        series,
        |m, v| {
            // prometheus-client takes per-bucket counts and sums them itself.
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_SECONDS.len() + 1);
            let mut below = 0;
            for (bound, cumulative) in LATENCY_BUCKETS_SECONDS.iter().zip(v.buckets) {
                buckets.push((*bound, cumulative - below));
                below = cumulative;
            }
            buckets.push((f64::MAX, v.count.saturating_sub(below)));
            m.encode_histogram::<NoLabelSet>(v.sum_seconds, v.count, &buckets, None)
        },
    )
}

fn shard_label(sample: &ShardSample) -> Labels {
    vec![("shard", sample.shard.to_string())]
}

/// Kafka's request name for an API key, e.g. `Produce`.
fn api_name(key: i16) -> String {
    if key == API_KEY_UNKNOWN {
        return "unknown".to_string();
    }
    ApiKey::try_from(key).map_or_else(|()| format!("key_{key}"), |k| format!("{k:?}"))
}

/// Kafka's name for an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    let Some(error) = ResponseError::try_from_code(code) else {
        return "NONE".to_string();
    };
    if let ResponseError::Unknown(code) = error {
        return format!("CODE_{code}");
    }
    let camel = error.to_string();
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

impl prometheus_client::collector::Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), FmtError> {
        self.encode_broker(&mut encoder)?;
        self.encode_requests(&mut encoder)?;
        self.encode_traffic(&mut encoder)?;
        self.encode_partitions(&mut encoder)?;
        self.encode_groups(&mut encoder)?;
        self.encode_leadership(&mut encoder)?;
        self.encode_shards(&mut encoder)
    }
}

impl Exposition {
    fn encode_broker(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        gauges(
            encoder,
            "shards",
            "Shards (pinned executors) of this broker.",
            [(Labels::new(), self.shard_count as i64)],
        )?;
        gauges(
            encoder,
            "ready",
            "1 when every shard accepts connections and none is stopping.",
            [(Labels::new(), i64::from(self.ready))],
        )
    }

    fn encode_requests(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let mut latency: BTreeMap<i16, LatencySample> = BTreeMap::new();
        let mut errors: BTreeMap<(i16, i16), u64> = BTreeMap::new();
        for sample in &self.samples {
            for (key, shard_latency) in &sample.requests {
                latency.entry(*key).or_default().merge(shard_latency);
            }
            for (key, count) in &sample.errors {
                *errors.entry(*key).or_default() += count;
            }
        }
        counters(
            encoder,
            "requests",
            "Requests answered, by shard and API.",
            self.samples.iter().flat_map(|s| {
                s.requests.iter().map(|(key, l)| {
                    let mut labels = shard_label(s);
                    labels.push(("api", api_name(*key)));
                    (labels, l.count)
                })
            }),
        )?;
        histograms(
            encoder,
            "request_latency_seconds",
            "Time from a request's arrival to its answer, by API (fetches include their long poll).",
            latency
                .into_iter()
                .map(|(key, l)| (vec![("api", api_name(key))], l)),
        )?;
        counters(
            encoder,
            "request_errors",
            "Errors answered, by API and Kafka error code (one per partition, topic, group or resource where the answer has one; INVALID_REQUEST for a request that closed its connection).",
            errors.into_iter().map(|((key, code), count)| {
                (
                    vec![("api", api_name(key)), ("code", error_name(code))],
                    count,
                )
            }),
        )
    }

    fn encode_traffic(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let mut topics_in: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut topics_out: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for sample in &self.samples {
            for partition in &sample.partitions {
                let entry = topics_in.entry(&partition.topic).or_default();
                entry.0 += partition.records_in;
                entry.1 += partition.bytes_in;
            }
            for fetched in &sample.fetched {
                let entry = topics_out.entry(&fetched.topic).or_default();
                entry.0 += fetched.traffic.records;
                entry.1 += fetched.traffic.bytes;
            }
        }
        let by_topic = |map: &BTreeMap<&str, (u64, u64)>, bytes: bool| {
            map.iter()
                .map(|(topic, (records, size))| {
                    (
                        vec![("topic", topic.to_string())],
                        if bytes { *size } else { *records },
                    )
                })
                .collect::<Vec<_>>()
        };
        counters(
            encoder,
            "records_in",
            "Records appended, by topic.",
            by_topic(&topics_in, false),
        )?;
        counters(
            encoder,
            "bytes_in",
            "Record batch bytes appended (as stored), by topic.",
            by_topic(&topics_in, true),
        )?;
        counters(
            encoder,
            "records_out",
            "Records sent to consumers, by topic.",
            by_topic(&topics_out, false),
        )?;
        counters(
            encoder,
            "bytes_out",
            "Record batch bytes sent to consumers, by topic.",
            by_topic(&topics_out, true),
        )
    }

    fn encode_partitions(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        if !self.per_partition {
            return Ok(());
        }
        let partitions = || {
            self.samples.iter().flat_map(|s| {
                s.partitions.iter().map(|p| {
                    let labels = vec![
                        ("topic", p.topic.to_string()),
                        ("partition", p.partition.get().to_string()),
                    ];
                    (labels, p)
                })
            })
        };
        gauges(
            encoder,
            "partition_log_start_offset",
            "The partition's log start offset.",
            partitions().map(|(l, p)| (l, p.log_start_offset)),
        )?;
        gauges(
            encoder,
            "partition_log_end_offset",
            "The partition's high watermark (the next offset to be written).",
            partitions().map(|(l, p)| (l, p.log_end_offset)),
        )?;
        gauges(
            encoder,
            "partition_size_bytes",
            "Bytes of the partition's segments on disk.",
            partitions().map(|(l, p)| (l, p.size_bytes as i64)),
        )?;
        gauges(
            encoder,
            "partition_segments",
            "Segments of the partition.",
            partitions().map(|(l, p)| (l, p.segments as i64)),
        )?;
        counters(
            encoder,
            "partition_records_in",
            "Records appended to the partition.",
            partitions().map(|(l, p)| (l, p.records_in)),
        )?;
        counters(
            encoder,
            "partition_bytes_in",
            "Record batch bytes appended to the partition (as stored).",
            partitions().map(|(l, p)| (l, p.bytes_in)),
        )?;
        // Fetched through any shard's connections: summed over shards.
        let mut out: BTreeMap<(&str, i32), (u64, u64)> = BTreeMap::new();
        for sample in &self.samples {
            for fetched in &sample.fetched {
                if let Some(partition) = fetched.partition {
                    let entry = out.entry((&fetched.topic, partition)).or_default();
                    entry.0 += fetched.traffic.records;
                    entry.1 += fetched.traffic.bytes;
                }
            }
        }
        let out_series = |bytes: bool| {
            out.iter()
                .map(move |((topic, partition), (records, size))| {
                    let labels = vec![
                        ("topic", topic.to_string()),
                        ("partition", partition.to_string()),
                    ];
                    (labels, if bytes { *size } else { *records })
                })
                .collect::<Vec<_>>()
        };
        counters(
            encoder,
            "partition_records_out",
            "Records of the partition sent to consumers.",
            out_series(false),
        )?;
        counters(
            encoder,
            "partition_bytes_out",
            "Record batch bytes of the partition sent to consumers.",
            out_series(true),
        )
    }

    fn encode_groups(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let ends: HashMap<(&str, i32), i64> = self
            .samples
            .iter()
            .flat_map(|s| &s.partitions)
            .map(|p| ((&*p.topic, p.partition.get()), p.log_end_offset))
            .collect();
        let mut committed: Vec<_> = self.samples.iter().flat_map(|s| &s.committed).collect();
        committed.sort_by(|a, b| {
            (&a.group_id, &a.topic, a.partition).cmp(&(&b.group_id, &b.topic, b.partition))
        });
        let labels = |c: &crate::group::api::CommittedOffset| {
            vec![
                ("group", c.group_id.clone()),
                ("topic", c.topic.clone()),
                ("partition", c.partition.get().to_string()),
            ]
        };
        gauges(
            encoder,
            "consumer_group_committed_offset",
            "The group's committed offset of the partition.",
            committed.iter().map(|c| (labels(c), c.offset.get())),
        )?;
        // Kafka's lag: the high watermark minus the committed offset, never
        // below zero; partitions no longer in the log have none.
        gauges(
            encoder,
            "consumer_group_lag",
            "Records of the partition after the group's committed offset.",
            committed.iter().filter_map(|c| {
                let end = ends.get(&(c.topic.as_str(), c.partition.get()))?;
                Some((labels(c), (end - c.offset.get()).max(0)))
            }),
        )
    }

    /// Replicated partitions' Raft leadership, summed over shards (Kafka's
    /// ReplicaManager LeaderCount and UnderReplicatedPartitions, and the
    /// controller's leader elections, counted where they were won).
    fn encode_leadership(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let sum = |read: fn(&ShardSample) -> u64| self.samples.iter().map(read).sum::<u64>();
        gauges(
            encoder,
            "partition_leaders",
            "Replicated partitions this broker leads.",
            [(Labels::new(), sum(|s| s.leadership.leaders) as i64)],
        )?;
        gauges(
            encoder,
            "under_replicated_partitions",
            "Replicated partitions this broker leads with fewer in-sync replicas than replicas.",
            [(Labels::new(), sum(|s| s.leadership.under_replicated) as i64)],
        )?;
        counters(
            encoder,
            "partition_leader_elections",
            "Times a replica on this broker became a replicated partition's leader.",
            [(Labels::new(), sum(|s| s.leadership.elections_won))],
        )
    }

    fn encode_shards(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let shards = || self.samples.iter().map(|s| (shard_label(s), s));
        gauges(
            encoder,
            "connections_open",
            "Kafka connections open, by shard.",
            shards().map(|(l, s)| (l, s.connections.open as i64)),
        )?;
        counters(
            encoder,
            "connections_accepted",
            "Kafka connections accepted, by shard.",
            shards().map(|(l, s)| (l, s.connections.accepted)),
        )?;
        counters(
            encoder,
            "connections_refused",
            "Kafka connections closed on accept at max.connections, by shard.",
            shards().map(|(l, s)| (l, s.connections.refused)),
        )?;
        counters(
            encoder,
            "cross_shard_messages",
            "Jobs sent to other shards, by sending shard.",
            shards().map(|(l, s)| (l, s.cross_shard.sent)),
        )?;
        counters(
            encoder,
            "cross_shard_rejected",
            "Jobs refused by another shard's full inbox (answered REQUEST_TIMED_OUT), by sending shard.",
            shards().map(|(l, s)| (l, s.cross_shard.rejected)),
        )?;
        histograms(
            encoder,
            "fsync_latency_seconds",
            "fdatasync of segment files, by shard (the count is the number of fsyncs).",
            shards().map(|(l, s)| (l, s.fsync.clone())),
        )?;
        self.encode_storage_work(encoder)?;
        counters(
            encoder,
            "batch_cache_hits",
            "Reads served from the batch cache, by shard.",
            shards().map(|(l, s)| (l, s.cache.hits)),
        )?;
        counters(
            encoder,
            "batch_cache_misses",
            "Reads that went to disk, by shard.",
            shards().map(|(l, s)| (l, s.cache.misses)),
        )?;
        gauges(
            encoder,
            "batch_cache_size_bytes",
            "Bytes held by the batch cache, by shard.",
            shards().map(|(l, s)| (l, s.cache.used_bytes as i64)),
        )?;
        gauges(
            encoder,
            "batch_cache_capacity_bytes",
            "The batch cache's bound, by shard.",
            shards().map(|(l, s)| (l, s.cache_capacity_bytes as i64)),
        )?;
        gauges(
            encoder,
            "raft_groups",
            "Raft groups of replicated partitions, by shard.",
            shards().map(|(l, s)| (l, s.raft_groups.1 as i64)),
        )?;
        gauges(
            encoder,
            "raft_groups_awake",
            "Raft groups that still tick (the rest hibernate until a message, a proposal or a leader's lost lease), by shard.",
            shards().map(|(l, s)| (l, s.raft_groups.0 as i64)),
        )?;
        self.encode_runtime(encoder)
    }

    fn encode_storage_work(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let shards = || {
            self.samples
                .iter()
                .map(|s| (shard_label(s), s.storage_work))
        };
        counters(
            encoder,
            "retention_segments_deleted",
            "Whole segments deleted by retention (retention.ms, retention.bytes), by shard.",
            shards().map(|(l, w)| (l, w.retention_segments_deleted)),
        )?;
        counters(
            encoder,
            "retention_bytes_deleted",
            "Bytes of the segments deleted by retention, by shard.",
            shards().map(|(l, w)| (l, w.retention_bytes_deleted)),
        )?;
        counters(
            encoder,
            "log_cleaner_runs",
            "Cleanings of compacted partitions by the log cleaner, by shard.",
            shards().map(|(l, w)| (l, w.cleaner_runs)),
        )?;
        counters(
            encoder,
            "log_cleaner_bytes_read",
            "Bytes of sealed segments the log cleaner went over, by shard.",
            shards().map(|(l, w)| (l, w.cleaner_bytes_read)),
        )?;
        counters(
            encoder,
            "log_cleaner_bytes_removed",
            "Bytes the log cleaner removed from segments, by shard.",
            shards().map(|(l, w)| (l, w.cleaner_bytes_removed)),
        )?;
        counters(
            encoder,
            "log_cleaner_records_removed",
            "Records the log cleaner removed (superseded keys and due tombstones), by shard.",
            shards().map(|(l, w)| (l, w.cleaner_records_removed)),
        )
    }

    fn encode_runtime(&self, encoder: &mut DescriptorEncoder) -> Result<(), FmtError> {
        let shards = || self.samples.iter().map(|s| (shard_label(s), s.runtime));
        family(
            encoder,
            "shard_busy_seconds",
            "Time the shard's executor spent running tasks (glommio's executor runtime).",
            MetricType::Counter,
            shards().map(|(l, r)| (l, r.busy.as_secs_f64())),
            |m, v| m.encode_counter::<NoLabelSet, f64, f64>(&v, None),
        )?;
        counters(
            encoder,
            "shard_tasks_executed",
            "Tasks the shard's executor ran.",
            shards().map(|(l, r)| (l, r.tasks_executed)),
        )?;
        counters(
            encoder,
            "io_file_reads",
            "File reads submitted to the shard's io_uring rings.",
            shards().map(|(l, r)| (l, r.file_reads)),
        )?;
        counters(
            encoder,
            "io_file_read_bytes",
            "Bytes of file reads submitted to the shard's io_uring rings.",
            shards().map(|(l, r)| (l, r.file_read_bytes)),
        )?;
        counters(
            encoder,
            "io_file_writes",
            "File writes submitted to the shard's io_uring rings.",
            shards().map(|(l, r)| (l, r.file_writes)),
        )?;
        counters(
            encoder,
            "io_file_write_bytes",
            "Bytes of file writes submitted to the shard's io_uring rings.",
            shards().map(|(l, r)| (l, r.file_write_bytes)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_get_kafka_names() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(42), "INVALID_REQUEST");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-2), "CODE_-2");
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(99), "key_99");
        assert_eq!(api_name(API_KEY_UNKNOWN), "unknown");
    }
}
