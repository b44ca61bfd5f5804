//! A blocking Kafka client for the load generator, benches and tests: the
//! requests a producer or an operator sends, not a broker's hot path.
//!
//! # Layout
//!
//! - [`stream`]: plain TCP or TLS (rustls) under a connection.
//! - [`sasl`]: logging in with SASL PLAIN or SCRAM (`sasl.mechanism`).
//! - [`security`]: Kafka's client settings (`security.protocol`, ...) and
//!   [`Connection::open`], which connects, negotiates and logs in.
//! - [`connection`]: one framed TCP connection, typed request/response calls,
//!   version negotiation, and how the peer reacted to a request.
//! - [`versions`]: the API version ranges a broker advertises, and picking one.
//! - [`records`]: [`BatchBuilder`], the one way tools and tests encode records
//!   into a RecordBatch v2 (any compression, producer id, epoch and sequence).
//! - [`fetched`]: the records of a Fetch answer, checked and decoded.
//!
//! Everything here returns [`ClientError`]; callers add their own context.

pub mod connection;
pub mod fetched;
pub mod records;
pub mod sasl;
pub mod security;
pub mod stream;
pub mod versions;

pub use connection::{decode_response, encode_request, Connection, PeerState};
pub use fetched::{decode_fetched, FetchedRecords};
pub use records::{BatchBuilder, BatchOptions};
pub use sasl::SaslLogin;
pub use security::ClientSecurity;
pub use stream::TlsClient;
pub use versions::Versions;

/// Kafka's `UNSUPPORTED_VERSION` error code, which ApiVersions answers in v0 format.
pub const ERROR_UNSUPPORTED_VERSION: i16 = 35;

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O on the connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("response frame length {length} outside 0..={limit}")]
    FrameLength { length: i32, limit: usize },
    #[error("encoding API key {api_key} v{version}: {message}")]
    Encode {
        api_key: i16,
        version: i16,
        message: String,
    },
    #[error("decoding the response to API key {api_key} v{version}: {message}")]
    Decode {
        api_key: i16,
        version: i16,
        message: String,
    },
    #[error("response correlation id {got}, expected {expected}")]
    CorrelationId { got: i32, expected: i32 },
    #[error("ApiVersions failed with error {0}")]
    ApiVersions(i16),
    #[error("the broker does not advertise API key {0}")]
    Unadvertised(i16),
    #[error("no common version for API key {api_key}: broker {broker_min}..={broker_max}, ours {ours_min}..={ours_max}")]
    NoCommonVersion {
        api_key: i16,
        broker_min: i16,
        broker_max: i16,
        ours_min: i16,
        ours_max: i16,
    },
    #[error("encoding a record batch: {0}")]
    EncodeBatch(String),
    #[error("a fetched record batch is corrupt: {0}")]
    CorruptBatch(String),
    #[error("TLS: {message}")]
    Tls { message: String },
    #[error("SASL authentication failed: {0}")]
    Sasl(String),
}

impl ClientError {
    /// Whether the broker ended the connection (closed or reset) rather than answering.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Closed => true,
            ClientError::Io(error) => matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            _ => false,
        }
    }
}
