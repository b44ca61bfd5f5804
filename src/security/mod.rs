//! Who a client is and how it proves it: principals, the SASL mechanisms
//! (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), the stored SCRAM credentials and
//! the ACLs that say what each principal may do.
//! It knows nothing of Kafka requests or sockets: `kafka` drives the
//! exchanges, `shard` keeps the credentials durable and on every shard.

pub mod acl;
pub mod credentials;
pub mod plain;
pub mod scram;
pub mod scram_client;
pub mod stored;

use std::fmt;

pub use credentials::{CredentialTable, ScramCredential};
pub use scram::ScramMechanism;

/// A SASL mechanism the broker can offer (`sasl.enabled.mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(ScramMechanism::Sha256),
        SaslMechanism::Scram(ScramMechanism::Sha512),
    ];

    /// The IANA name clients send in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(scram) => scram.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kafka's principal type for users (`User:alice`).
pub const USER_PRINCIPAL_TYPE: &str = "User";
/// The principal of a connection that did not authenticate.
pub const ANONYMOUS_USER: &str = "ANONYMOUS";

/// An authenticated identity, as ACLs and `super.users` name it: `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: &str) -> Principal {
        Principal {
            kind: USER_PRINCIPAL_TYPE.to_string(),
            name: name.to_string(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user(ANONYMOUS_USER)
    }

    /// Parses `Type:name` (Kafka's `KafkaPrincipal` string form).
    pub fn parse(text: &str) -> Option<Principal> {
        let (kind, name) = text.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Principal {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}
