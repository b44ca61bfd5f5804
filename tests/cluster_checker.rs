//! The fault checker on hand-made histories: a clean one passes, and each
//! anomaly is reported by record, offset and replica. Also reading a
//! replica's log straight from segment files, torn tail and all.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::checker::{
    check, read_replica, Ack, BatchBytes, Commit, FinalState, Finding, Observed, Read, Replica,
};

const BOUND: Duration = Duration::from_secs(10);

fn v(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// A log of `values` at offsets 0, 1, 2, ... per partition.
fn log(partitions: &[&[&str]]) -> BTreeMap<i32, BTreeMap<i64, Vec<u8>>> {
    partitions
        .iter()
        .enumerate()
        .map(|(p, values)| {
            let records = values
                .iter()
                .enumerate()
                .map(|(o, value)| (o as i64, v(value)))
                .collect();
            (p as i32, records)
        })
        .collect()
}

fn ack(partition: i32, offset: i64, value: &str, base: Instant, acked_ms: u64) -> Ack {
    Ack {
        partition,
        offset,
        value: v(value),
        sent_at: base + Duration::from_millis(acked_ms.saturating_sub(5)),
        acked_at: base + Duration::from_millis(acked_ms),
    }
}

fn read(consumer: &str, session: u64, partition: i32, offset: i64, value: &str) -> Read {
    Read {
        consumer: consumer.to_string(),
        session,
        partition,
        offset,
        value: v(value),
    }
}

/// A replica holding `values` at offsets 0, 1, 2, ..., one batch per record.
fn replica(node: i32, partition: i32, values: &[&str]) -> Replica {
    let offsets = 0..values.len() as i64;
    Replica {
        node,
        partition,
        records: offsets
            .clone()
            .zip(values.iter().map(|value| v(value)))
            .collect(),
        batches: offsets
            .zip(values)
            .map(|(o, value)| {
                let crc = value_digest(value.as_bytes());
                let batch = BatchBytes {
                    last_offset: o,
                    leader_epoch: 0,
                    crc,
                    producer: (-1, -1, -1),
                };
                (o, batch)
            })
            .collect(),
    }
}

/// A stand-in for a batch's CRC that differs when the value does.
fn value_digest(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)))
}

/// Three replicas of one partition holding `values`, and a drain of them.
fn healthy(values: &[&str]) -> FinalState {
    FinalState {
        drained: log(&[values]),
        replicas: (1..=3).map(|node| replica(node, 0, values)).collect(),
    }
}

fn clean_history(base: Instant) -> Observed {
    Observed {
        acks: vec![
            ack(0, 0, "a", base, 10),
            ack(0, 1, "b", base, 20),
            ack(0, 2, "c", base, 30),
        ],
        reads: vec![
            read("r", 0, 0, 0, "a"),
            read("r", 0, 0, 1, "b"),
            read("r", 0, 0, 2, "c"),
        ],
        ..Observed::default()
    }
}

fn only(findings: &[Finding]) -> &Finding {
    assert_eq!(findings.len(), 1, "one finding: {findings:#?}");
    &findings[0]
}

#[test]
fn a_clean_history_has_no_findings_and_times_each_fault() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    observed.faults.push(common::checker::Fault {
        name: "SIGKILL node 1".into(),
        at: base + Duration::from_millis(12),
    });
    observed.commits = vec![
        Commit {
            group: "g".into(),
            partition: 0,
            offset: 1,
            how: "committed",
        },
        Commit {
            group: "g".into(),
            partition: 0,
            offset: 3,
            how: "read back",
        },
    ];
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    report.assert_clean();
    assert_eq!((report.acked, report.read, report.drained), (3, 3, 3));
    // The first write sent after the fault (at 15 ms) was acknowledged at 20 ms.
    let (p50, max) = report.recovery_p50_max().expect("one recovery");
    assert_eq!(
        (p50, max),
        (Duration::from_millis(8), Duration::from_millis(8))
    );
    assert!(report.to_string().contains("p50 8ms, max 8ms"), "{report}");
}

#[test]
fn an_acknowledged_write_missing_from_the_log_is_named_with_every_replica() {
    let base = Instant::now();
    let observed = clean_history(base);
    let mut final_state = healthy(&["a", "b", "c"]);
    // The new leader (node 2) never had "c"; node 1 still does.
    final_state.drained = log(&[&["a", "b"]]);
    final_state.replicas[1] = replica(2, 0, &["a", "b"]);
    final_state.replicas[2] = replica(3, 0, &["a", "b"]);
    let report = check(&observed, &final_state, BOUND);
    let lost: Vec<_> = report
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::LostWrite { .. }))
        .collect();
    assert_eq!(lost.len(), 1, "{report}");
    assert_eq!(
        lost[0].to_string(),
        "lost write: \"c\" was acknowledged at partition 0 offset 2, but the final log holds \
         nothing there; replica on node 1 holds \"c\"; replica on node 2 holds nothing; \
         replica on node 3 holds nothing"
    );
    // The consumer that read "c" read a record that was later lost.
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::ReadLost { consumer, offset: 2, .. } if consumer == "r"
        )),
        "{report}"
    );
}

#[test]
fn an_offset_overwritten_by_another_record_is_a_lost_write() {
    let base = Instant::now();
    let observed = clean_history(base);
    let mut final_state = healthy(&["a", "b", "x"]);
    final_state.replicas[0] = replica(1, 0, &["a", "b", "c"]);
    let report = check(&observed, &final_state, BOUND);
    let text = report.to_string();
    assert!(
        text.contains(
            "lost write: \"c\" was acknowledged at partition 0 offset 2, but the final log holds \"x\" there"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "replicas diverge at partition 0 offset 2: node 1 holds \"c\"; node 2 holds \"x\"; node 3 holds \"x\";"
        ),
        "{text}"
    );
}

#[test]
fn two_records_acknowledged_at_one_offset_are_reported() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    observed.acks.push(ack(0, 2, "c-from-old-leader", base, 40));
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert!(
        report.findings.iter().any(|f| *f
            == Finding::ConflictingAcks {
                partition: 0,
                offset: 2,
                first: v("c"),
                second: v("c-from-old-leader"),
            }),
        "{report}"
    );
}

#[test]
fn replicas_may_differ_only_past_the_committed_end() {
    let base = Instant::now();
    let observed = clean_history(base);
    let mut final_state = healthy(&["a", "b", "c"]);
    // An uncommitted tail on node 3 is no finding.
    final_state.replicas[2] = replica(3, 0, &["a", "b", "c", "uncommitted"]);
    final_state.replicas[1] = replica(2, 0, &["a", "b", "c", "other-tail"]);
    check(&observed, &final_state, BOUND).assert_clean();
    // A committed offset that differs is (and so are its batch's bytes).
    final_state.replicas[1] = replica(2, 0, &["a", "B", "c"]);
    let report = check(&observed, &final_state, BOUND);
    let records: Vec<_> = report
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::ReplicasDiverge { .. }))
        .cloned()
        .collect();
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::BatchesDiverge { base_offset: 1, .. })),
        "{report}"
    );
    assert_eq!(
        only(&records).to_string(),
        "replicas diverge at partition 0 offset 1: node 1 holds \"b\"; node 2 holds \"B\"; node 3 holds \"b\";"
    );
}

#[test]
fn replicas_with_the_same_records_in_different_batch_bytes_diverge() {
    let base = Instant::now();
    let observed = clean_history(base);
    let mut final_state = healthy(&["a", "b", "c"]);
    // Node 3 stored batch 1 re-encoded: its records agree, its bytes do not.
    let batch = final_state.replicas[2]
        .batches
        .get_mut(&1)
        .expect("a batch at 1");
    batch.crc ^= 1;
    batch.leader_epoch = 4;
    let report = check(&observed, &final_state, BOUND);
    let crc = final_state.replicas[0].batches[&1].crc;
    let expected = format!(
        "replicas hold different bytes in the batch at partition 0 offset 1: \
         node 1 up to offset 1, leader epoch 0, crc {crc:#010x}; \
         node 2 up to offset 1, leader epoch 0, crc {crc:#010x}; \
         node 3 up to offset 1, leader epoch 4, crc {:#010x};",
        crc ^ 1,
    );
    assert_eq!(only(&report.findings).to_string(), expected);
}

#[test]
fn reads_out_of_log_order_are_reported_per_consumer_session() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    observed.reads = vec![
        read("r", 0, 0, 0, "a"),
        read("r", 0, 0, 1, "b"),
        read("r", 0, 0, 1, "b"),
        // A new assignment may start again from a committed offset.
        read("r", 1, 0, 0, "a"),
    ];
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "out-of-order read: consumer r read partition 0 offset 1 after offset 1"
    );
}

#[test]
fn a_read_that_skips_an_offset_the_log_holds_is_reported() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    observed.reads = vec![read("r", 0, 0, 0, "a"), read("r", 0, 0, 2, "c")];
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "skipped read: consumer r read partition 0 offset 2 right after offset 0, missing offset 1 the final log holds"
    );
}

#[test]
fn a_committed_offset_that_goes_back_is_reported() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    for (offset, how) in [(2, "committed"), (3, "committed"), (1, "read back")] {
        observed.commits.push(Commit {
            group: "g".into(),
            partition: 0,
            offset,
            how,
        });
    }
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "committed offset went back: group g partition 0 from 3 to 1 (read back)"
    );
}

#[test]
fn a_record_in_the_log_twice_is_a_duplicate() {
    let base = Instant::now();
    let observed = clean_history(base);
    let report = check(&observed, &healthy(&["a", "b", "c", "b"]), BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "duplicate: \"b\" is in the final log at \
         partition 0 offset 1 (producer -1 epoch -1 base sequence -1, leader epoch 0); \
         partition 0 offset 3 (producer -1 epoch -1 base sequence -1, leader epoch 0);"
    );
}

#[test]
fn a_partition_that_takes_no_write_after_a_fault_or_takes_too_long_is_unavailable() {
    let base = Instant::now();
    let mut observed = Observed {
        acks: vec![ack(0, 0, "a", base, 10), ack(1, 0, "b", base, 10)],
        ..Observed::default()
    };
    observed.faults.push(common::checker::Fault {
        name: "SIGSTOP node 2".into(),
        at: base + Duration::from_millis(100),
    });
    // Partition 0 recovers after 20 s; partition 1 never does.
    observed.acks.push(ack(0, 1, "c", base, 20_100));
    let final_state = FinalState {
        drained: log(&[&["a", "c"], &["b"]]),
        replicas: Vec::new(),
    };
    let report = check(&observed, &final_state, BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "unavailable: after SIGSTOP node 2 partitions [1] never took a write again"
    );
    observed.acks.push(ack(1, 1, "d", base, 30_100));
    let final_state = FinalState {
        drained: log(&[&["a", "c"], &["b", "d"]]),
        replicas: Vec::new(),
    };
    let report = check(&observed, &final_state, BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "unavailable: after SIGSTOP node 2 the last of partitions [0, 1] took a write again \
         after 30s, over the bound of 10s"
    );
    assert_eq!(
        report.recovery_p50_max(),
        Some((Duration::from_secs(30), Duration::from_secs(30)))
    );
}

/// A batch of `values` whose first record is at `base_offset`.
fn batch_at(base_offset: i64, values: &[&str]) -> Vec<u8> {
    let entries: Vec<(&[u8], &[u8])> = values.iter().map(|v| (&b"k"[..], v.as_bytes())).collect();
    let mut batch = common::raw::record_batch(&entries).to_vec();
    // The base offset is outside the CRC: the broker assigns it.
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch
}

#[test]
fn a_replica_is_read_from_its_segment_files_up_to_the_first_invalid_batch() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut first = batch_at(0, &["a", "b"]);
    first.extend(batch_at(2, &["c"]));
    std::fs::write(dir.path().join("00000000000000000000.log"), &first).expect("write");
    // The active segment: one good batch, one with a flipped byte, then
    // preallocated zeros.
    let mut second = batch_at(3, &["d"]);
    let mut corrupt = batch_at(4, &["e"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    second.extend(corrupt);
    second.extend(batch_at(5, &["f"]));
    second.extend(vec![0; 4096]);
    std::fs::write(dir.path().join("00000000000000000003.log"), &second).expect("write");
    std::fs::write(dir.path().join("00000000000000000003.index"), [1, 2, 3]).expect("write");

    let replica = read_replica(2, 0, dir.path()).expect("readable");
    let held: Vec<(i64, String)> = replica
        .records
        .iter()
        .map(|(o, v)| (*o, String::from_utf8_lossy(v).into_owned()))
        .collect();
    assert_eq!(
        held,
        [(0, "a"), (1, "b"), (2, "c"), (3, "d")].map(|(o, v)| (o, v.to_string()))
    );
    assert_eq!((replica.node, replica.partition), (2, 0));
    let batches: Vec<(i64, i64)> = replica
        .batches
        .iter()
        .map(|(base, batch)| (*base, batch.last_offset))
        .collect();
    assert_eq!(batches, [(0, 1), (2, 2), (3, 3)]);

    let missing = read_replica(3, 0, &dir.path().join("absent")).expect("an empty replica");
    assert!(missing.records.is_empty());
}

#[test]
fn an_ack_without_its_offset_counts_where_its_partition_holds_the_record() {
    let base = Instant::now();
    let mut observed = clean_history(base);
    // librdkafka's delivery report for a retry the broker already had.
    observed.acks.push(ack(0, -1001, "b", base, 40));
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert!(report.findings.is_empty(), "{report}");
    observed.acks.push(ack(0, -1001, "z", base, 50));
    let report = check(&observed, &healthy(&["a", "b", "c"]), BOUND);
    assert_eq!(
        only(&report.findings).to_string(),
        "lost write: \"z\" was acknowledged at partition 0 offset -1001, but the final log \
         holds nothing there"
    );
}
