//! Partition log behaviour on real files with a real glommio executor.

#[path = "common/skip.rs"]
mod skip;
mod storage_support;

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use ringlog::storage::{
    batch, BatchCache, BatchHeader, CorruptReason, Durability, Error, LogConfig, Offset,
    PartitionLog, ReadLimit, StorageOptions, TimestampType,
};
use storage_support::*;

#[test]
fn batches_round_trip_byte_for_byte_with_every_compression() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(64 << 20);
        let cold = BatchCache::new(0);
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        let mut sent = Vec::new();
        for (i, codec) in codecs.iter().enumerate() {
            let batch = make_batch(10, 100, 1_000 + i as i64, *codec);
            let info = log
                .append(batch.clone(), Durability::Written)
                .await
                .expect("append");
            assert_eq!(info.base_offset.get(), i as i64 * 10);
            assert_eq!(info.last_offset.get(), i as i64 * 10 + 9);
            sent.push(batch);
        }
        assert_eq!(log.high_watermark().get(), 50);
        // From the cache.
        let stored = read_all(&log, 0).await;
        assert_eq!(stored.len(), sent.len());
        for (i, (s, o)) in stored.iter().zip(&sent).enumerate() {
            assert!(same_except_assigned(s, o), "batch {i} differs");
            let h = BatchHeader::parse(s).expect("header");
            assert_eq!(h.base_offset, i as i64 * 10);
            let decoded = RecordBatchDecoder::decode(&mut s.clone()).expect("decodes");
            assert_eq!(decoded.records.len(), 10);
        }
        log.close().await.expect("close");
        // From disk, through a fresh log with an empty cache.
        let log = open(dir.path(), LogConfig::default(), &cold).await;
        let stored = read_all(&log, 0).await;
        for (i, (s, o)) in stored.iter().zip(&sent).enumerate() {
            assert!(same_except_assigned(s, o), "batch {i} differs on disk");
        }
        // A read starting inside a batch returns that whole batch.
        let r = log.read(Offset(25), 1).await.expect("read");
        assert_eq!(r.batches.len(), 1);
        assert_eq!(
            BatchHeader::parse(&r.batches[0])
                .expect("header")
                .base_offset,
            20
        );
        log.close().await.expect("close");
    });
}

#[test]
fn offsets_continue_across_rolls_and_reads_span_segments() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0); // every read goes to disk
        let log = open(dir.path(), small_config(), &cache).await;
        let mut sent = Vec::new();
        for i in 0..40 {
            let batch = make_batch(5, 1000, i * 10, Compression::None);
            let info = log
                .append(batch.clone(), Durability::Written)
                .await
                .expect("append");
            assert_eq!(info.base_offset.get(), i * 5);
            sent.push(batch);
        }
        assert!(
            log.segment_count() >= 3,
            "segments: {}",
            log.segment_count()
        );
        // One read crossing a segment boundary.
        let bases = log.segment_base_offsets();
        let r = log.read(bases[1] - 5, 64 * 1024).await.expect("read");
        let first = BatchHeader::parse(&r.batches[0]).expect("header");
        let last = BatchHeader::parse(r.batches.last().expect("batches")).expect("header");
        assert_eq!(Offset(first.base_offset), bases[1] - 5);
        assert!(
            Offset(last.last_offset()) >= bases[1],
            "read stopped at the segment end"
        );
        let stored = read_all(&log, 0).await;
        assert_eq!(stored.len(), sent.len());
        for (s, o) in stored.iter().zip(&sent) {
            assert!(same_except_assigned(s, o));
        }
        log.close().await.expect("close");
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(log.high_watermark().get(), 200);
        let info = log
            .append(make_batch(1, 10, 0, Compression::None), Durability::Durable)
            .await
            .expect("append");
        assert_eq!(info.base_offset.get(), 200);
        for name in [
            "00000000000000000000.log",
            "00000000000000000000.index",
            "00000000000000000000.timeindex",
            "partition.meta",
        ] {
            assert!(dir.path().join(name).exists(), "{name} missing");
        }
    });
}

#[test]
fn timestamp_lookups_find_the_first_record_at_or_after() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), small_config(), &cache).await;
        // Batch i holds records 5i .. 5i+4 with timestamps 1000i .. 1000i+4.
        for i in 0..60i64 {
            let compression = if i % 2 == 0 {
                Compression::None
            } else {
                Compression::Zstd
            };
            log.append(
                make_batch(5, 500, 1000 * i, compression),
                Durability::Written,
            )
            .await
            .expect("append");
        }
        for i in [0i64, 1, 17, 33, 59] {
            for within in 0..5 {
                let found = log
                    .offset_for_timestamp(1000 * i + within)
                    .await
                    .expect("lookup")
                    .expect("found");
                assert_eq!(
                    (found.offset.get(), found.timestamp.get()),
                    (5 * i + within, 1000 * i + within)
                );
            }
            // Between batches: the next batch's first record.
            let found = log
                .offset_for_timestamp(1000 * i - 500)
                .await
                .expect("lookup")
                .expect("found");
            assert_eq!(found.offset.get(), 5 * i);
        }
        assert_eq!(
            log.offset_for_timestamp(1000 * 59 + 5)
                .await
                .expect("lookup"),
            None
        );
        let max = log.max_timestamp().await.expect("max lookup").expect("max");
        assert_eq!((max.timestamp.get(), max.offset.get()), (59_004, 299));
        // Below the log start offset nothing is answered.
        log.delete_records(Offset(152))
            .await
            .expect("delete records");
        let found = log
            .offset_for_timestamp(0)
            .await
            .expect("lookup")
            .expect("found");
        assert_eq!((found.offset.get(), found.timestamp.get()), (152, 30_002));
    });
}

#[test]
fn max_timestamp_is_the_first_record_holding_it() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), small_config(), &cache).await;
        // Timestamps rise to 10_004 in batch 10 and fall afterwards; batch 30
        // ties the maximum, but the first record with it comes first.
        for i in 0..40i64 {
            let start = if i <= 10 {
                1000 * i
            } else {
                9_000 - 100 * (i - 10)
            };
            let start = if i == 30 { 10_000 } else { start };
            log.append(
                make_batch(5, 500, start, Compression::Lz4),
                Durability::Written,
            )
            .await
            .expect("append");
        }
        let max = log.max_timestamp().await.expect("max lookup").expect("max");
        assert_eq!((max.timestamp.get(), max.offset.get()), (10_004, 54));
    });
}

#[test]
fn log_append_time_sets_max_timestamp_and_keeps_crc_valid() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let config = LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config, &cache).await;
        let info = log
            .append(make_batch(3, 10, 5, Compression::Lz4), Durability::Written)
            .await
            .expect("append");
        let t = info.log_append_time_ms.expect("append time");
        let r = log.read(Offset(0), 1 << 20).await.expect("read");
        let h = BatchHeader::parse(&r.batches[0]).expect("header");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, t);
        h.validate(&r.batches[0], 1 << 20).expect("crc recomputed");
    });
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    for cut in [1usize, 7, 61, 500] {
        run(move || async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let cache = BatchCache::new(0);
            let log = open(dir.path(), LogConfig::default(), &cache).await;
            let mut sent = Vec::new();
            for i in 0..10 {
                let b = make_batch(4, 300, i, Compression::None);
                log.append(b.clone(), Durability::Durable)
                    .await
                    .expect("append");
                sent.push(b);
            }
            log.close().await.expect("close");
            drop(log);
            let path = dir.path().join("00000000000000000000.log");
            let len = std::fs::metadata(&path).expect("log exists").len();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_len(len - cut as u64).expect("cut");
            let log = open(dir.path(), LogConfig::default(), &cache).await;
            assert_eq!(
                log.high_watermark().get(),
                36,
                "cut {cut}: last batch gone, others kept"
            );
            let stored = read_all(&log, 0).await;
            assert_eq!(stored.len(), 9);
            for (s, o) in stored.iter().zip(&sent) {
                assert!(same_except_assigned(s, o));
            }
            let info = log
                .append(make_batch(2, 10, 0, Compression::None), Durability::Durable)
                .await
                .expect("append");
            assert_eq!(info.base_offset.get(), 36);
            log.close().await.expect("close");
        });
    }
}

#[test]
fn garbled_tail_is_truncated_on_recovery() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        let mut logical_bytes = 0;
        for i in 0..10 {
            let b = make_batch(4, 300, i, Compression::None);
            logical_bytes += b.len();
            log.append(b, Durability::Durable).await.expect("append");
        }
        // No clean close: simulate a crash by dropping the log. The file still
        // ends with the zero padding of the last aligned write.
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let mut bytes = std::fs::read(&path).expect("read");
        assert!(bytes.len() >= logical_bytes);
        let n = logical_bytes;
        for b in &mut bytes[n - 20..n - 10] {
            *b ^= 0xa5;
        }
        std::fs::write(&path, &bytes).expect("write");
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        assert_eq!(log.high_watermark().get(), 36);
        assert_eq!(read_all(&log, 0).await.len(), 9);
        let info = log
            .append(make_batch(1, 10, 0, Compression::None), Durability::Written)
            .await
            .expect("append");
        assert_eq!(info.base_offset.get(), 36);
    });
}

#[test]
fn missing_or_corrupt_index_is_rebuilt_with_identical_lookups() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), small_config(), &cache).await;
        for i in 0..80i64 {
            log.append(
                make_batch(3, 900, 100 * i, Compression::None),
                Durability::Written,
            )
            .await
            .expect("append");
        }
        log.close().await.expect("close");
        let probe = |log: Rc<PartitionLog>| async move {
            let mut answers = Vec::new();
            for t in (0..8000).step_by(370) {
                answers.push(log.offset_for_timestamp(t).await.expect("lookup"));
            }
            for o in (0..240).step_by(7) {
                let r = log.read(Offset(o), 1).await.expect("read");
                answers.push(Some(ringlog::storage::TimestampOffset::new(
                    0,
                    BatchHeader::parse(&r.batches[0])
                        .expect("header")
                        .base_offset,
                )));
            }
            log.close().await.expect("close");
            answers
        };
        let before = probe(open(dir.path(), small_config(), &cache).await).await;
        std::fs::remove_file(dir.path().join("00000000000000000000.index")).expect("remove");
        let garbled = dir.path().join("00000000000000000000.timeindex");
        let mut bytes = std::fs::read(&garbled).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&garbled, bytes).expect("write");
        let after = probe(open(dir.path(), small_config(), &cache).await).await;
        assert_eq!(before, after);
        assert!(
            dir.path().join("00000000000000000000.index").exists(),
            "index rewritten"
        );
    });
}

#[test]
fn retention_by_time_and_size_deletes_oldest_segments() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let log = open(dir.path(), small_config(), &cache).await;
        for i in 0..100i64 {
            log.append(
                make_batch(2, 1000, 1_000_000 + i * 1000, Compression::None),
                Durability::Written,
            )
            .await
            .expect("append");
        }
        let segments = log.segment_base_offsets();
        assert!(segments.len() >= 4);
        // retention.ms: segments whose newest batch is older than now - retention.
        let mut config = small_config();
        config.retention_ms = 10_000;
        log.set_config(config.clone());
        let third_segment_max = {
            // every batch in segment 0 and 1 is older than the first batch of segment 2
            let base2 = segments[2].get();
            1_000_000 + (base2 / 2) * 1000 - 1
        };
        log.enforce_retention(third_segment_max + 10_000)
            .await
            .expect("retention");
        assert_eq!(log.segment_base_offsets(), segments[2..].to_vec());
        assert_eq!(log.log_start_offset(), segments[2]);
        assert!(matches!(
            log.read(segments[2] - 1, 100).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert!(log.read(segments[2], 100).await.is_ok());
        // retention.bytes (Kafka): delete the oldest segment only while the log
        // stays at or above the limit without it.
        config.retention_ms = -1;
        config.retention_bytes = (log.size_bytes() - 1) as i64;
        log.set_config(config.clone());
        log.enforce_retention(0).await.expect("retention");
        assert_eq!(
            log.segment_base_offsets(),
            segments[2..].to_vec(),
            "one byte over keeps everything"
        );
        let oldest = log.segment_sizes()[0].1;
        config.retention_bytes = (log.size_bytes() - oldest) as i64;
        log.set_config(config.clone());
        log.enforce_retention(0).await.expect("retention");
        assert_eq!(log.segment_base_offsets(), segments[3..].to_vec());
        config.retention_bytes = 0;
        log.set_config(config);
        log.enforce_retention(0).await.expect("retention");
        assert_eq!(log.segment_count(), 1, "the active segment stays");
        let lso = log.log_start_offset();
        log.close().await.expect("close");
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(log.log_start_offset(), lso);
        assert_eq!(log.high_watermark().get(), 200);
    });
}

/// DeleteRecords to the end, then a crash that tears the batch after it:
/// the log ends below its start offset. It starts again, empty, at its
/// start offset (as Kafka's LogLoader does), also across a second crash,
/// so no offset below it is given out twice.
#[test]
fn a_tail_torn_below_the_log_start_offset_restarts_the_log_there() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        for i in 0..3 {
            let batch = make_batch(2, 10, i, Compression::None);
            log.append(batch, Durability::Durable)
                .await
                .expect("append");
        }
        assert_eq!(
            log.delete_records(Offset(4)).await.expect("delete"),
            Offset(4)
        );
        let (_, written) = *log.segment_sizes().last().expect("a segment");
        drop(log);
        let path = dir.path().join("00000000000000000000.log");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        // Offsets 4-5 torn away, and one byte more tears 2-3: the end is below the start.
        let batch_bytes = make_batch(2, 10, 2, Compression::None).len() as u64;
        file.set_len(written - batch_bytes - 1).expect("cut");
        for round in 0..2 {
            let log = open(dir.path(), LogConfig::default(), &cache).await;
            assert_eq!(log.log_start_offset(), Offset(4), "round {round}");
            assert_eq!(log.high_watermark(), Offset(4 + round), "round {round}");
            let info = log
                .append(make_batch(1, 10, 9, Compression::None), Durability::Durable)
                .await
                .expect("append");
            assert_eq!(info.base_offset, Offset(4 + round), "round {round}");
            assert_eq!(read_all(&log, 4).await.len(), 1 + round as usize);
            // A crash that loses nothing this time.
            drop(log);
        }
    });
}

#[test]
fn delete_records_moves_log_start_offset() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let log = open(dir.path(), small_config(), &cache).await;
        for i in 0..50i64 {
            log.append(
                make_batch(2, 1000, i, Compression::None),
                Durability::Written,
            )
            .await
            .expect("append");
        }
        assert!(matches!(
            log.delete_records(Offset(101)).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 2);
        let before = bases[1] + 1;
        assert_eq!(log.delete_records(before).await.expect("delete"), before);
        assert_eq!(
            log.segment_base_offsets(),
            bases[1..].to_vec(),
            "segment wholly below is gone"
        );
        assert!(matches!(
            log.read(before - 1, 10).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        let r = log.read(before, 10).await.expect("read");
        assert_eq!(
            BatchHeader::parse(&r.batches[0])
                .expect("header")
                .base_offset,
            bases[1].get(),
            "whole batch holding it"
        );
        assert_eq!(
            log.read(Offset(100), 10)
                .await
                .expect("read at hw")
                .batches
                .len(),
            0
        );
        assert!(matches!(
            log.read(Offset(101), 10).await,
            Err(Error::OffsetOutOfRange { .. })
        ));
        log.close().await.expect("close");
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(log.log_start_offset(), before);
    });
}

#[test]
fn bad_batches_are_rejected_and_leave_the_log_unchanged() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let config = LogConfig {
            max_message_bytes: 4096,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config, &cache).await;
        let good = make_batch(3, 50, 0, Compression::None);
        log.append(good.clone(), Durability::Written)
            .await
            .expect("append");
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.to_vec();
            f(&mut v);
            Bytes::from(v)
        };
        let corrupt = with(&|v| {
            let n = v.len();
            v[n - 1] ^= 1
        });
        let old_magic = with(&|v| v[batch::MAGIC_OFFSET] = 1);
        let too_long = with(&|v| {
            let at = batch::BATCH_LENGTH_OFFSET;
            let len = i32::from_be_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]) + 10;
            v[at..at + 4].copy_from_slice(&len.to_be_bytes())
        });
        let truncated = good.slice(..good.len() - 3);
        let short_header = good.slice(..30);
        let too_large = make_batch(10, 1000, 0, Compression::None);
        let count_at = batch::RECORD_COUNT_OFFSET;
        let bad_count = with(&|v| {
            v[count_at..count_at + 4].copy_from_slice(&7i32.to_be_bytes());
            batch::recompute_crc(v);
        });
        let zero_count = with(&|v| {
            v[count_at..count_at + 4].copy_from_slice(&0i32.to_be_bytes());
            let delta_at = batch::LAST_OFFSET_DELTA_OFFSET;
            v[delta_at..delta_at + 4].copy_from_slice(&(-1i32).to_be_bytes());
            batch::recompute_crc(v);
        });
        // A good batch followed by a bad one: nothing of the request is stored.
        let mixed = {
            let mut v = good.to_vec();
            v.extend_from_slice(&corrupt);
            Bytes::from(v)
        };
        type Case = (&'static str, Bytes, fn(&Error) -> bool);
        let cases: Vec<Case> = vec![
            ("corrupt", corrupt, |e| {
                matches!(e, Error::CorruptBatch(CorruptReason::CrcMismatch { .. }))
            }),
            ("magic", old_magic, |e| matches!(e, Error::InvalidMagic(1))),
            ("length beyond buffer", too_long, |e| {
                matches!(e, Error::Truncated { .. })
            }),
            ("truncated", truncated, |e| {
                matches!(e, Error::Truncated { .. })
            }),
            ("short header", short_header, |e| {
                matches!(e, Error::Truncated { .. })
            }),
            ("too large", too_large, |e| {
                matches!(e, Error::MessageTooLarge { .. })
            }),
            ("count mismatch", bad_count, |e| {
                matches!(
                    e,
                    Error::CorruptBatch(CorruptReason::RecordCountMismatch { .. })
                )
            }),
            ("zero count", zero_count, |e| {
                matches!(
                    e,
                    Error::CorruptBatch(CorruptReason::RecordCountNotPositive)
                )
            }),
            ("mixed", mixed, |e| matches!(e, Error::CorruptBatch(_))),
            ("empty", Bytes::new(), |e| matches!(e, Error::EmptyAppend)),
        ];
        for (name, bytes, expected) in cases {
            let err = log
                .append(bytes, Durability::Durable)
                .await
                .expect_err(name);
            assert!(expected(&err), "{name}: unexpected {err:?}");
            assert_eq!(log.high_watermark().get(), 3, "{name} changed the log");
            assert_eq!(
                log.size_bytes(),
                good.len() as u64,
                "{name} changed the file"
            );
        }
        log.close().await.expect("close");
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        assert_eq!(log.high_watermark().get(), 3);
    });
}

#[test]
fn concurrent_durable_appends_share_fdatasyncs_and_all_land() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let log = open(dir.path(), small_config(), &cache).await;
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut offsets = Vec::new();
                    for i in 0..10 {
                        let b = make_batch(2, 200, t * 100 + i, Compression::None);
                        offsets.push(
                            log.append(b, Durability::Durable)
                                .await
                                .expect("append")
                                .base_offset
                                .get(),
                        );
                    }
                    offsets
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await);
        }
        all.sort_unstable();
        assert_eq!(all, (0..640).step_by(2).collect::<Vec<i64>>());
        assert_eq!(log.high_watermark().get(), 640);
        let stats = log.stats();
        assert_eq!(stats.appends, 320);
        assert!(
            stats.fdatasyncs < stats.appends,
            "group commit shares fdatasyncs: {stats:?}"
        );
        drop(log); // crash: everything acknowledged as durable must come back
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(log.high_watermark().get(), 640);
        assert_eq!(read_all(&log, 0).await.len(), 320);
    });
}

#[test]
fn wait_for_offset_wakes_when_the_log_grows() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let log = open(dir.path(), LogConfig::default(), &cache).await;
        let waiter = {
            let log = log.clone();
            glommio::spawn_local(async move {
                log.wait_for_offset(Offset(0)).await;
                log.high_watermark().get()
            })
        };
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        log.append(make_batch(1, 10, 0, Compression::None), Durability::Written)
            .await
            .expect("append");
        assert_eq!(waiter.await, 1);
        // Already past: returns at once.
        log.wait_for_offset(Offset(0)).await;
        let closing = {
            let log = log.clone();
            glommio::spawn_local(async move { log.wait_for_offset(Offset(100)).await })
        };
        log.close().await.expect("close");
        closing.await;
        assert!(matches!(
            log.append(make_batch(1, 1, 0, Compression::None), Durability::Written)
                .await,
            Err(Error::Closed)
        ));
    });
}

#[test]
fn tmpfs_is_refused_unless_buffered_io_is_allowed() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.exists() {
        return skip::skip(
            "tmpfs_is_refused_unless_buffered_io_is_allowed",
            "no /dev/shm (tmpfs) on this machine",
        );
    }
    run(|| async {
        let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let refused = PartitionLog::open(
            dir.path().join("t-0"),
            LogConfig::default(),
            cache.clone(),
            StorageOptions::default(),
        )
        .await;
        assert!(matches!(refused, Err(Error::DirectIoUnavailable { .. })));
        let options = StorageOptions {
            allow_buffered_io: true,
            ..StorageOptions::default()
        };
        let log = PartitionLog::open(
            dir.path().join("t-0"),
            LogConfig::default(),
            cache.clone(),
            options.clone(),
        )
        .await
        .expect("buffered open");
        assert!(!log.is_direct_io());
        log.append(make_batch(2, 10, 0, Compression::None), Durability::Durable)
            .await
            .expect("append");
        log.close().await.expect("close");
        let log = PartitionLog::open(dir.path().join("t-0"), LogConfig::default(), cache, options)
            .await
            .expect("reopen");
        assert_eq!(log.high_watermark().get(), 2);
        log.delete().await.expect("delete");
        assert!(!dir.path().join("t-0").exists());
    });
}

#[test]
fn pipelined_writes_from_many_appenders_read_back_intact_after_a_crash() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config.clone(), &cache).await;
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let mut mine = Vec::new();
                    for i in 0..20usize {
                        // Sizes that rarely end on a block boundary.
                        let b = make_batch(
                            1 + (t + i) % 7,
                            777 + 131 * ((t * 20 + i) % 29),
                            i as i64,
                            Compression::None,
                        );
                        let info = log
                            .append(b.clone(), Durability::Written)
                            .await
                            .expect("append");
                        mine.push((info.base_offset.get(), b));
                    }
                    mine
                })
            })
            .collect();
        let mut sent = std::collections::BTreeMap::new();
        for t in tasks {
            sent.extend(t.await);
        }
        let stats = log.stats();
        assert_eq!(stats.appends, 320);
        let check = |stored: Vec<Bytes>| {
            assert_eq!(stored.len(), sent.len());
            for (s, (base, o)) in stored.iter().zip(&sent) {
                assert_eq!(BatchHeader::parse(s).expect("header").base_offset, *base);
                assert!(same_except_assigned(s, o), "batch at {base} differs");
            }
        };
        check(read_all(&log, 0).await);
        let hw = log.high_watermark();
        drop(log);
        let log = open(dir.path(), config, &cache).await;
        assert_eq!(log.high_watermark(), hw);
        check(read_all(&log, 0).await);
    });
}

#[test]
fn flush_messages_syncs_written_appends() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let config = LogConfig {
            flush_messages: 4,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config, &cache).await;
        for _ in 0..3 {
            log.append(make_batch(2, 10, 0, Compression::None), Durability::Written)
                .await
                .expect("append");
        }
        // 2 + 2 records reach flush.messages on the second append, then 2 more are pending.
        assert_eq!(log.stats().fdatasyncs, 1);
        let log_default = open(&dir.path().join("other"), LogConfig::default(), &cache).await;
        log_default
            .append(make_batch(2, 10, 0, Compression::None), Durability::Written)
            .await
            .expect("append");
        assert_eq!(
            log_default.stats().fdatasyncs,
            0,
            "Kafka's default flush.messages never flushes"
        );
    });
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).expect("segment file").len()
}

#[test]
fn space_is_reserved_ahead_of_appends_and_trimmed_on_roll_close_and_recovery() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let config = LogConfig {
            segment_bytes: 3 << 20,
            ..LogConfig::default()
        };
        let log = open(dir.path(), config.clone(), &cache).await;
        assert!(log.is_direct_io(), "the test directory must allow O_DIRECT");
        let mut sent = Vec::new();
        // Batches of ~70 KiB, so writes rarely end on a block boundary.
        let append_some = |log: Rc<PartitionLog>, n: usize, sent: &mut Vec<Bytes>| {
            let batches: Vec<Bytes> = (0..n)
                .map(|i| make_batch(7, 10_000 + i, i as i64, Compression::None))
                .collect();
            sent.extend(batches.iter().cloned());
            async move {
                for b in batches {
                    log.append(b, Durability::Written).await.expect("append");
                }
            }
        };
        append_some(log.clone(), 60, &mut sent).await;
        let sizes = log.segment_sizes();
        assert!(sizes.len() >= 2, "rolled: {sizes:?}");
        for (base, bytes) in &sizes[..sizes.len() - 1] {
            let path = dir.path().join(format!("{base:020}.log"));
            assert_eq!(file_len(&path), *bytes, "sealed segment {base} is exact");
        }
        let (active_base, active_bytes) = *sizes.last().expect("active");
        let active = dir.path().join(format!("{active_base:020}.log"));
        let reserved = file_len(&active);
        assert!(
            reserved > active_bytes && reserved <= 3 << 20,
            "reserved {reserved} ahead of {active_bytes} bytes"
        );

        // A crash leaves the reserved zeros; recovery cuts them and keeps every batch.
        let hw = log.high_watermark();
        drop(log);
        let log = open(dir.path(), config.clone(), &cache).await;
        assert_eq!(log.high_watermark(), hw);
        assert_eq!(file_len(&active), active_bytes);
        let stored = read_all(&log, 0).await;
        assert_eq!(stored.len(), sent.len());
        for (s, o) in stored.iter().zip(&sent) {
            assert!(same_except_assigned(s, o));
        }

        // Appends after recovery reserve again; a clean close trims exactly.
        append_some(log.clone(), 5, &mut sent).await;
        let (_, bytes) = *log.segment_sizes().last().expect("active");
        log.close().await.expect("close");
        assert_eq!(file_len(&active), bytes);
        let log = open(dir.path(), config, &cache).await;
        assert_eq!(read_all(&log, 0).await.len(), sent.len());
        log.close().await.expect("close");
    });
}

#[test]
fn a_strict_read_limit_takes_only_whole_batches_that_fit_from_cache_and_disk() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let warm = BatchCache::new(64 << 20);
        let cold = BatchCache::new(0);
        let log = open(dir.path(), LogConfig::default(), &warm).await;
        for i in 0..3 {
            let batch = make_batch(1, 10_000, 1_000 + i, Compression::None);
            log.append(batch, Durability::Written)
                .await
                .expect("append");
        }
        let batch_bytes = read_all(&log, 0).await[0].len();
        log.close().await.expect("close");
        for cache in [&warm, &cold] {
            let log = open(dir.path(), LogConfig::default(), cache).await;
            // KIP-74: a batch over a strict limit is not returned, not even the first.
            let r = log
                .read_limited(Offset(0), ReadLimit::strict(batch_bytes - 1))
                .await
                .expect("read");
            assert!(r.batches.is_empty(), "nothing fits in less than a batch");
            let r = log
                .read_limited(Offset(0), ReadLimit::strict(0))
                .await
                .expect("read");
            assert!(r.batches.is_empty(), "nothing fits in zero bytes");
            let r = log
                .read_limited(
                    Offset(0),
                    ReadLimit::strict(2 * batch_bytes + batch_bytes / 2),
                )
                .await
                .expect("read");
            assert_eq!(
                r.batches.len(),
                2,
                "two whole batches fit in two and a half"
            );
            // The first batch comes back whole when the limit allows it.
            let r = log
                .read_limited(Offset(0), ReadLimit::first_batch_whole(1))
                .await
                .expect("read");
            assert_eq!(r.batches.len(), 1);
            assert_eq!(r.batches[0].len(), batch_bytes);
            log.close().await.expect("close");
        }
    });
}

/// Appends `count` one-record batches and returns the offset after them.
async fn append_batches(log: &PartitionLog, count: usize) -> i64 {
    let mut end = 0;
    for i in 0..count {
        let batch = make_batch(1, 2000, i as i64, Compression::None);
        let info = log
            .append(batch, Durability::Durable)
            .await
            .expect("append");
        end = info.last_offset.get() + 1;
    }
    end
}

/// OffsetForLeaderEpoch's answers for epochs 0..=6 and the current epoch.
fn epoch_ends(log: &PartitionLog) -> (Vec<(i32, i64)>, i32) {
    let ends = (0..=6)
        .map(|epoch| {
            let end = log.end_offset_for_epoch(epoch);
            (end.epoch, end.end_offset)
        })
        .collect();
    (ends, log.leader_epoch())
}

#[test]
fn leader_epochs_are_stamped_kept_and_rebuilt_across_closes_crashes_and_deleted_records() {
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(0);
        let log = open(dir.path(), small_config(), &cache).await;
        // A fresh log's epoch 0 begins at 0 and ends at the log end.
        assert_eq!(log.end_offset_for_epoch(0).end_offset, 0);
        let first = append_batches(&log, 40).await;
        log.raise_leader_epoch(2);
        log.raise_leader_epoch(1); // never back
        let second = append_batches(&log, 40).await;
        log.raise_leader_epoch(5);
        let end = append_batches(&log, 3).await;
        assert!(log.segment_count() >= 3, "epochs span segment rolls");
        let read = log.read(Offset(first), 1).await.expect("read");
        let stamped = BatchHeader::parse(&read.batches[0]).expect("header");
        assert_eq!(stamped.partition_leader_epoch, 2, "batches carry the epoch");
        let expected = vec![
            (0, first),
            (0, first),
            (2, second),
            (2, second),
            (2, second),
            (5, end),
            (-1, -1),
        ];
        assert_eq!(epoch_ends(&log), (expected.clone(), 5));
        assert_eq!(log.epoch_for_offset(Offset(first - 1)), Some(0));
        assert_eq!(log.epoch_for_offset(Offset(first)), Some(2));

        log.close().await.expect("close");
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(epoch_ends(&log), (expected.clone(), 5), "after a close");

        // A crash after a new epoch: partition.meta still says 5.
        log.raise_leader_epoch(6);
        let newest = append_batches(&log, 2).await;
        drop(log);
        let log = open(dir.path(), small_config(), &cache).await;
        let mut expected = expected;
        expected[5] = (5, end);
        expected[6] = (6, newest);
        assert_eq!(epoch_ends(&log), (expected.clone(), 6), "after a crash");

        // Records deleted into epoch 2: the epochs before it begin at the log start.
        let start = first + 5;
        log.delete_records(Offset(start))
            .await
            .expect("delete records");
        expected[0] = (0, start);
        expected[1] = (1, start);
        assert_eq!(
            epoch_ends(&log),
            (expected.clone(), 6),
            "after DeleteRecords"
        );
        log.close().await.expect("close");
        let log = open(dir.path(), small_config(), &cache).await;
        assert_eq!(
            epoch_ends(&log),
            (expected, 6),
            "after DeleteRecords and a close"
        );
        log.close().await.expect("close");
    });
}
