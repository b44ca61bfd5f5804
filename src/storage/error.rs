//! The storage error type: every failure a partition log can report.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::producer_state::ProducerError;
use super::types::Offset;

/// Why a record batch was judged corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptReason {
    /// The CRC-32C stored in the header does not match the bytes.
    CrcMismatch { stored: u32, computed: u32 },
    /// `batchLength` is smaller than a v2 header.
    LengthTooSmall,
    /// `recordCount` is zero or negative.
    RecordCountNotPositive,
    /// `recordCount` disagrees with `lastOffsetDelta + 1`.
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    /// Offsets do not continue from the previous batch (found on disk only).
    OffsetDiscontinuity { expected: i64, found: i64 },
    /// The batch is larger than storage will ever read back.
    LengthBeyondLimit,
    /// Compression bits name no codec Kafka defines (5-7).
    UnknownCompression(i16),
    /// The records section does not decompress with the batch's codec.
    DecompressionFailed(i16),
    /// The records section decompresses to more than storage accepts.
    DecompressedBeyondLimit,
    /// A record inside the batch does not parse, or the records disagree with
    /// the batch header.
    MalformedRecord(&'static str),
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            CorruptReason::LengthTooSmall => write!(f, "batchLength smaller than a v2 header"),
            CorruptReason::RecordCountNotPositive => write!(f, "recordCount is not positive"),
            CorruptReason::RecordCountMismatch {
                record_count,
                last_offset_delta,
            } => write!(
                f,
                "recordCount {record_count} inconsistent with lastOffsetDelta {last_offset_delta}"
            ),
            CorruptReason::OffsetDiscontinuity { expected, found } => {
                write!(f, "expected base offset {expected}, found {found}")
            }
            CorruptReason::LengthBeyondLimit => write!(f, "batchLength beyond the storage limit"),
            CorruptReason::UnknownCompression(code) => {
                write!(f, "unknown compression codec {code}")
            }
            CorruptReason::DecompressionFailed(code) => {
                write!(f, "records do not decompress with codec {code}")
            }
            CorruptReason::DecompressedBeyondLimit => {
                write!(f, "records decompress beyond the storage limit")
            }
            CorruptReason::MalformedRecord(what) => write!(f, "malformed record: {what}"),
        }
    }
}

/// Errors of the storage layer. The Kafka layer maps each to a wire error code.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error("corrupt record batch: {0}")]
    CorruptBatch(CorruptReason),
    #[error("unsupported record batch magic {0} (only v2 is stored)")]
    InvalidMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("record batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("append carries no record batch")]
    EmptyAppend,
    #[error("offset {offset} outside [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start_offset: Offset,
        high_watermark: Offset,
    },
    #[error("I/O error while {context} {path:?}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An fsync or write failed: the on-disk state is unknown, so the partition
    /// refuses further appends until it is reopened (and recovered).
    #[error("partition stopped after a failed {0}; reopen it to recover")]
    Stopped(&'static str),
    #[error(
        "O_DIRECT is not available on {path:?} ({reason}); use a filesystem that supports it \
         (ext4, xfs) or set allow_buffered_io for development"
    )]
    DirectIoUnavailable { path: PathBuf, reason: String },
    /// EMFILE/ENFILE: the process (or the system) has no descriptor left.
    #[error(
        "too many open files while {context} {path:?} (the open-file limit, RLIMIT_NOFILE, is {limit}); \
         raise it (`ulimit -n`, LimitNOFILE= in the systemd unit) or --open-files-max"
    )]
    OpenFilesExhausted {
        context: &'static str,
        path: PathBuf,
        limit: u64,
    },
    #[error("partition log is closed")]
    Closed,
    /// The topic's codec could not compress a batch (not the client's fault).
    #[error("compressing a record batch with codec {0} failed")]
    CompressionFailed(i16),
    #[error("partition directory {0:?} has an invalid layout: {1}")]
    InvalidLayout(PathBuf, &'static str),
    /// An idempotent batch broke its producer's epoch or sequence rules.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// Kafka's LogValidator: "Clients are not allowed to write control records".
    #[error("a produced batch is a control batch")]
    ControlBatchFromClient,
}

impl Error {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        let source = source.into();
        if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            return Error::OpenFilesExhausted {
                context,
                path: path.into(),
                limit: open_files_limit(),
            };
        }
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// The soft RLIMIT_NOFILE (0 when it cannot be read).
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}
