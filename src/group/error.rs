//! Errors of the group coordinator and its log.
//!
//! Protocol outcomes (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, ...) are not
//! errors here: they are error codes in the responses. These are failures of
//! the coordinator itself.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("group log I/O ({operation}) on {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("group log record is corrupt: {0}")]
    Corrupt(String),
    /// A write or fdatasync failed earlier. The disk state is unknown, so the
    /// log refuses further writes rather than acknowledge commits it may lose.
    #[error("group log is failed since an earlier I/O error: {0}")]
    Failed(String),
    /// Too many records wait for the disk; the request may be retried.
    #[error("group log has too many unflushed records")]
    Backlogged,
    /// The coordinator or its log was closed (shutdown).
    #[error("group coordinator is closed")]
    Closed,
    #[error("group log {path} is {bytes} bytes, above the {limit} byte limit for loading")]
    TooLarge {
        path: PathBuf,
        bytes: u64,
        limit: u64,
    },
    #[error("invalid group configuration: {0}")]
    Config(String),
}

impl Error {
    /// The Kafka error code a request gets when this stops it. Exhaustive on
    /// purpose: a new variant must decide its code.
    pub fn response_error(&self) -> kafka_protocol::error::ResponseError {
        use kafka_protocol::error::ResponseError;
        match self {
            // Retriable: the client backs off and tries again.
            Error::Backlogged => ResponseError::RequestTimedOut,
            // The client looks for the coordinator again.
            Error::Closed => ResponseError::NotCoordinator,
            Error::Io { .. }
            | Error::Corrupt(_)
            | Error::Failed(_)
            | Error::TooLarge { .. }
            | Error::Config(_) => ResponseError::CoordinatorNotAvailable,
        }
    }

    /// Maps a glommio I/O error, naming the operation and file.
    pub(crate) fn io(
        operation: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(glommio::GlommioError<()>) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io {
            operation,
            path,
            source: source.into(),
        }
    }
}
