//! What an admin command can fail with, each as one line for the operator.

use kafka_protocol::error::ResponseError;
use ringlog::client::ClientError;

/// Exit code for a command line the tool refuses (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for everything else that went wrong.
pub const EXIT_FAILED: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument that parsed but makes no sense.
    #[error("{0}")]
    Usage(String),
    #[error("cannot resolve broker address {addr:?}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("cannot connect to broker {addr}: {source}")]
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    #[error("broker {addr} did not answer within {timeout:?}")]
    Timeout {
        addr: String,
        timeout: std::time::Duration,
    },
    #[error("broker {addr}: {source}")]
    Broker { addr: String, source: ClientError },
    /// The broker answered with a Kafka error code.
    #[error("{what}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        what: String,
        error: ResponseError,
        message: Option<String>,
    },
    /// The broker's answer does not say what the command needs.
    #[error("{0}")]
    Answer(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }

    /// Whether stdout was closed by its reader (`| head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// `Ok` for error code 0, else the Kafka error with what was being done.
pub fn check(
    code: i16,
    message: Option<&str>,
    what: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(CliError::Kafka {
            what: what(),
            error,
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
    }
}

/// `check` for the part of an answer about `name`: its error code and
/// message, or `None` when the answer left `name` out, which is an error too.
pub fn check_answered(
    found: Option<(i16, Option<&str>)>,
    api: &str,
    name: &str,
    what: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let (code, message) =
        found.ok_or_else(|| CliError::Answer(format!("{api} did not answer for {name}")))?;
    check(code, message, what)
}
