//! Kafka's listeners: `NAME://HOST:PORT` addresses, the security protocol of
//! each name (`listener.security.protocol.map`) and the address each one
//! advertises in metadata (`advertised.listeners`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::ConfigError;

/// The name of the listener `--listen HOST:PORT` (and the default) makes.
pub const PLAINTEXT_LISTENER_NAME: &str = "PLAINTEXT";
/// Listeners one broker may have (each shard accepts on every one of them).
pub const LISTENERS_MAX: usize = 16;

/// How a listener's connections are secured (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether a client must authenticate with SASL before anything else.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether the connection runs inside TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn parse(text: &str) -> Option<SecurityProtocol> {
        SecurityProtocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener as the broker runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Kafka's listener name, upper case (`PLAINTEXT`, `SASL_PLAINTEXT`, `CLIENT`).
    pub name: String,
    pub address: SocketAddr,
    pub protocol: SecurityProtocol,
    /// What Metadata and FindCoordinator tell a client that came in here.
    pub advertised_host: String,
    pub advertised_port: u16,
}

/// What the flags and the file say about listeners, before validation.
#[derive(Debug, Default)]
pub struct ListenerSettings {
    /// `--listen HOST:PORT`: a PLAINTEXT listener named `PLAINTEXT`.
    pub listen: Option<String>,
    /// `--listener NAME://HOST:PORT` entries.
    pub listeners: Vec<String>,
    /// `--listener-security-protocol-map NAME:PROTOCOL,...`.
    pub protocol_map: Option<String>,
    /// `--advertised-listener NAME://HOST:PORT` entries (a bare `HOST:PORT`
    /// applies to the first listener).
    pub advertised: Vec<String>,
}

/// Builds the listener list; with nothing given, one PLAINTEXT listener on
/// `default_listen`.
pub fn build_listeners(
    settings: ListenerSettings,
    default_listen: &str,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let protocols = protocol_map(settings.protocol_map.as_deref())?;
    let mut bound: Vec<(String, SocketAddr)> = Vec::new();
    let listen = match (&settings.listen, settings.listeners.is_empty()) {
        (Some(listen), _) => Some(listen.as_str()),
        (None, true) => Some(default_listen),
        (None, false) => None,
    };
    if let Some(listen) = listen {
        let address = listen
            .parse()
            .map_err(|_| ConfigError::Listen(listen.to_string()))?;
        bound.push((PLAINTEXT_LISTENER_NAME.to_string(), address));
    }
    for entry in split_entries(&settings.listeners) {
        let (name, host, port) = parse_named(&entry).ok_or(ConfigError::Listener(entry.clone()))?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let address = format_host_port(host, port)
            .parse()
            .map_err(|_| ConfigError::Listener(entry.clone()))?;
        bound.push((name, address));
    }
    if bound.len() > LISTENERS_MAX {
        return Err(ConfigError::ListenerCount(bound.len()));
    }
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(bound.len());
    for (name, address) in bound {
        if listeners.iter().any(|l| l.name == name) {
            return Err(ConfigError::DuplicateListener(name));
        }
        if listeners.iter().any(|l| l.address == address) {
            return Err(ConfigError::DuplicateListener(address.to_string()));
        }
        let protocol = *protocols
            .get(&name)
            .ok_or_else(|| ConfigError::ListenerProtocol(name.clone()))?;
        listeners.push(ListenerConfig {
            advertised_host: address.ip().to_string(),
            advertised_port: address.port(),
            name,
            address,
            protocol,
        });
    }
    for entry in split_entries(&settings.advertised) {
        let bad = || ConfigError::AdvertisedListener(entry.clone());
        let (listener, host, port) = match parse_named(&entry) {
            Some((name, host, port)) => (
                listeners
                    .iter_mut()
                    .find(|l| l.name == name)
                    .ok_or_else(bad)?,
                host.to_string(),
                port,
            ),
            None => {
                let (host, port) = super::parse_host_port(&entry).ok_or_else(bad)?;
                (listeners.first_mut().ok_or_else(bad)?, host, port)
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        listener.advertised_host = host;
        listener.advertised_port = port;
    }
    Ok(listeners)
}

/// Repeated flags, each of which may also hold a comma-separated list.
fn split_entries(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

/// `NAME://HOST:PORT` into its upper-cased name, host (brackets of an IPv6
/// address removed; may be empty) and port.
fn parse_named(entry: &str) -> Option<(String, &str, u16)> {
    let (name, address) = entry.split_once("://")?;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return None;
    }
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((name.to_ascii_uppercase(), host, port.parse().ok()?))
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Kafka's default map (each protocol's own name) with `text`'s entries on top.
fn protocol_map(text: Option<&str>) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let mut map: BTreeMap<String, SecurityProtocol> = SecurityProtocol::ALL
        .into_iter()
        .map(|p| (p.name().to_string(), p))
        .collect();
    for entry in text.unwrap_or_default().split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let bad = || ConfigError::ProtocolMap(entry.to_string());
        let (name, protocol) = entry.split_once(':').ok_or_else(bad)?;
        let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(bad)?;
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(settings: ListenerSettings) -> Result<Vec<ListenerConfig>, ConfigError> {
        build_listeners(settings, "127.0.0.1:9092")
    }

    #[test]
    fn nothing_given_is_one_plaintext_listener_on_the_default() {
        let listeners = build(ListenerSettings::default()).unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "PLAINTEXT");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].address.to_string(), "127.0.0.1:9092");
        assert_eq!(listeners[0].advertised_host, "127.0.0.1");
    }

    #[test]
    fn named_listeners_get_their_protocols_and_advertised_addresses() {
        let listeners = build(ListenerSettings {
            listen: Some("127.0.0.1:9000".into()),
            listeners: vec!["sasl_plaintext://127.0.0.1:9001,CLIENT://:9002".into()],
            protocol_map: Some("CLIENT:SASL_SSL".into()),
            advertised: vec!["CLIENT://broker.example:443".into(), "h:1".into()],
        })
        .unwrap();
        let names: Vec<_> = listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["PLAINTEXT", "SASL_PLAINTEXT", "CLIENT"]);
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(listeners[2].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(listeners[2].address.to_string(), "0.0.0.0:9002");
        assert_eq!(
            (
                listeners[2].advertised_host.as_str(),
                listeners[2].advertised_port
            ),
            ("broker.example", 443)
        );
        assert_eq!(
            (
                listeners[0].advertised_host.as_str(),
                listeners[0].advertised_port
            ),
            ("h", 1)
        );
    }

    #[test]
    fn bad_listeners_are_refused() {
        let one = |listener: &str, map: Option<&str>| {
            build(ListenerSettings {
                listeners: vec![listener.into()],
                protocol_map: map.map(str::to_string),
                ..Default::default()
            })
        };
        assert!(one("CLIENT://127.0.0.1:1", None).is_err(), "no protocol");
        assert!(one("PLAINTEXT://127.0.0.1", None).is_err(), "no port");
        assert!(one("127.0.0.1:1", None).is_err(), "no name");
        assert!(one("A://127.0.0.1:1", Some("A:TLS")).is_err());
        assert!(one("PLAINTEXT://127.0.0.1:1,SSL://127.0.0.1:1", None).is_err());
        assert!(build(ListenerSettings {
            listeners: vec!["SSL://127.0.0.1:1".into()],
            advertised: vec!["OTHER://h:1".into()],
            ..Default::default()
        })
        .is_err());
    }
}
