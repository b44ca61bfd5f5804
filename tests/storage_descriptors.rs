//! What a partition costs, on real files with a real glommio executor: logs
//! beyond the shard's open-file budget give their descriptors back and
//! reopen on the next read or write; running out of descriptors is reported
//! as that; rarely written logs reserve no disk space ahead of their writes.

mod storage_support;

use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use kafka_protocol::records::Compression;
use ringlog::storage::descriptors::{self, OPEN_SEGMENT_FILES_MIN};
use ringlog::storage::file::{probe_direct_io, ProbeError};
use ringlog::storage::{BatchCache, Durability, Error, LogConfig, PartitionLog, StorageOptions};
use storage_support::*;

/// Logs opened against the smallest budget.
const LOGS: usize = 4 * OPEN_SEGMENT_FILES_MIN;

/// The descriptor-exhaustion test takes every descriptor of the process:
/// the other test waits for it.
static WHOLE_PROCESS: Mutex<()> = Mutex::new(());

#[test]
fn logs_beyond_the_budget_reopen_their_files_on_the_next_read_and_write() {
    let _process = WHOLE_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    run(|| async {
        descriptors::set_budget(OPEN_SEGMENT_FILES_MIN);
        let dir = tempfile::tempdir().expect("tempdir");
        let cold = BatchCache::new(0);
        let logs = logs_with_one_batch(dir.path(), "t", LOGS, &cold).await;
        let stats = descriptors::stats();
        assert!(
            stats.open <= OPEN_SEGMENT_FILES_MIN,
            "at most the budget stays open: {stats:?}"
        );
        assert!(
            stats.closes as usize >= LOGS - OPEN_SEGMENT_FILES_MIN,
            "{stats:?}"
        );
        // Every log reads back from disk (no cache) and takes another append.
        for (i, log) in logs.iter().enumerate() {
            let batches = read_all(log, 0).await;
            assert_eq!(batches.len(), 1, "log {i} reads its batch back");
            let batch = make_batch(2, 10, 2_000, Compression::None);
            let info = log
                .append(batch, Durability::Durable)
                .await
                .expect("append");
            assert_eq!(info.base_offset.get(), 3, "log {i} continues");
        }
        let stats = descriptors::stats();
        assert!(
            stats.reopens > 0 && stats.open <= OPEN_SEGMENT_FILES_MIN,
            "{stats:?}"
        );
        for log in &logs {
            log.close().await.expect("close");
        }
        // Reopened logs (recovery) stay within the budget too.
        for i in 0..LOGS {
            let log = open(
                &dir.path().join(format!("t-{i}")),
                LogConfig::default(),
                &cold,
            )
            .await;
            assert_eq!(log.high_watermark().get(), 5, "log {i} recovers");
            assert_eq!(read_all(&log, 0).await.len(), 2);
            log.close().await.expect("close");
        }
        assert!(descriptors::stats().open <= OPEN_SEGMENT_FILES_MIN);
    });
}

/// Opens `count` logs under `dir` and appends one small batch to each, durably.
async fn logs_with_one_batch(
    dir: &std::path::Path,
    prefix: &str,
    count: usize,
    cache: &std::rc::Rc<BatchCache>,
) -> Vec<std::rc::Rc<PartitionLog>> {
    let mut logs = Vec::new();
    for i in 0..count {
        let log = open(
            &dir.join(format!("{prefix}-{i}")),
            LogConfig::default(),
            cache,
        )
        .await;
        let batch = make_batch(3, 10, 1_000 + i as i64, Compression::None);
        log.append(batch, Durability::Durable)
            .await
            .expect("append");
        logs.push(log);
    }
    logs
}

/// Duplicates descriptors until the process has none left; returns them.
fn take_every_descriptor() -> Vec<libc::c_int> {
    let mut taken = Vec::new();
    loop {
        // SAFETY: dup of stdin's descriptor number; the copies are closed by `give_back`.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EMFILE)
            );
            return taken;
        }
        taken.push(fd);
    }
}

fn give_back(taken: Vec<libc::c_int>) {
    for fd in taken {
        // SAFETY: closing descriptors this test opened.
        unsafe { libc::close(fd) };
    }
}

#[test]
fn running_out_of_descriptors_is_not_reported_as_missing_o_direct() {
    let _process = WHOLE_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let taken = take_every_descriptor();
        let probe = probe_direct_io(dir.path()).await;
        let opened = PartitionLog::open(
            dir.path().join("t-0"),
            LogConfig::default(),
            cache,
            StorageOptions::default(),
        )
        .await;
        give_back(taken);
        match probe {
            Err(ProbeError::Storage(Error::OpenFilesExhausted { .. })) => {}
            other => panic!("the probe must report EMFILE, got {other:?}"),
        }
        let error = opened.err().expect("no descriptor is left to open a log");
        assert!(matches!(error, Error::OpenFilesExhausted { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("too many open files") && message.contains("RLIMIT_NOFILE"),
            "{message}"
        );
        assert!(!message.contains("O_DIRECT"), "{message}");
    });
}

/// Disk blocks the `.log` files under `dir` occupy, in bytes.
fn allocated_log_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for partition in std::fs::read_dir(dir).expect("read dir").flatten() {
        for file in std::fs::read_dir(partition.path())
            .expect("read dir")
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "log") {
                total += file.metadata().expect("stat").blocks() * 512;
            }
        }
    }
    total
}

#[test]
fn rarely_written_logs_reserve_no_disk_space_and_fast_ones_do() {
    use ringlog::storage::log::reserved_ahead_bytes;
    const RARE_LOGS: usize = 40;
    let _process = WHOLE_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    run(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = BatchCache::new(1 << 20);
        let logs = logs_with_one_batch(dir.path(), "rare", RARE_LOGS, &cache).await;
        assert_eq!(reserved_ahead_bytes(), 0, "no rare writer reserves");
        let allocated = allocated_log_bytes(dir.path());
        assert!(
            allocated <= RARE_LOGS as u64 * 64 * 1024,
            "{allocated} bytes allocated for {RARE_LOGS} small logs"
        );
        // A fast writer passes the first mebibyte and reserves ahead.
        let fast = open(&dir.path().join("fast"), LogConfig::default(), &cache).await;
        for _ in 0..40 {
            let batch = make_batch(64, 1024, 2_000, Compression::None);
            fast.append(batch, Durability::Written)
                .await
                .expect("append");
        }
        assert!(reserved_ahead_bytes() > 0, "the fast writer reserves ahead");
        fast.close().await.expect("close");
        for log in &logs {
            log.close().await.expect("close");
        }
        assert_eq!(
            reserved_ahead_bytes(),
            0,
            "closed segments give their share back"
        );
    });
}
