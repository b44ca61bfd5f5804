//! Security settings: the SASL mechanisms offered, the bootstrap SCRAM users
//! (`--add-scram`, Kafka's `kafka-storage format` syntax), `super.users`
//! and whether the authorizer is on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::net::tls::{ClientAuth, TlsSettings};
use crate::security::scram::{ITERATIONS_MAX, ITERATIONS_MIN};
use crate::security::{Principal, SaslMechanism, ScramMechanism};

use super::ConfigError;

/// Kafka's `connection.failed.authentication.delay.ms` default.
pub const FAILED_AUTHENTICATION_DELAY_MS_DEFAULT: u64 = 100;
/// Iterations of a bootstrap credential that names none (Kafka's default).
pub const ADD_SCRAM_ITERATIONS_DEFAULT: u32 = ITERATIONS_MIN;

/// A user `--add-scram` creates at start-up unless it already has a
/// credential for the mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapScramUser {
    pub mechanism: ScramMechanism,
    pub name: String,
    pub password: String,
    pub iterations: u32,
}

impl std::fmt::Debug for BootstrapScramUser {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapScramUser")
            .field("mechanism", &self.mechanism)
            .field("name", &self.name)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Offered on every SASL listener (`sasl.enabled.mechanisms`) that
    /// has none of its own.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Listener name -> its mechanisms
    /// (`listener.name.<name>.sasl.enabled.mechanisms`).
    pub listener_sasl_mechanisms: BTreeMap<String, Vec<SaslMechanism>>,
    pub failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (KIP-368): a SASL session lasts this long
    /// unless the client re-authenticates; 0 for no limit.
    pub connections_max_reauth_ms: u64,
    pub bootstrap_users: Vec<BootstrapScramUser>,
    /// Principals every ACL check allows (`super.users`).
    pub super_users: Vec<Principal>,
    /// Whether ACLs are enforced (`authorizer.class.name` set); when on, a
    /// resource without ACLs is denied (`allow.everyone.if.no.acl.found=false`).
    pub authorizer: bool,
    /// Certificate, key and client CA of the SSL and SASL_SSL listeners.
    pub tls: Option<TlsSettings>,
}

/// The security flags and file keys, before validation.
#[derive(Debug, Default)]
pub struct SecuritySettings {
    pub sasl_enabled_mechanisms: Option<String>,
    pub listener_sasl_mechanisms: Option<String>,
    pub failed_authentication_delay_ms: Option<u64>,
    pub connections_max_reauth_ms: Option<u64>,
    pub add_scram: Vec<String>,
    pub super_users: Option<String>,
    pub authorizer: Option<bool>,
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    pub ssl_ca: Option<PathBuf>,
    pub ssl_client_auth: Option<String>,
}

pub fn build_security(settings: SecuritySettings) -> Result<SecurityConfig, ConfigError> {
    let sasl_mechanisms = match settings.sasl_enabled_mechanisms.as_deref() {
        None => SaslMechanism::ALL.to_vec(),
        Some(text) => parse_mechanisms(text)?,
    };
    let listener_sasl_mechanisms = settings
        .listener_sasl_mechanisms
        .as_deref()
        .map(parse_listener_mechanisms)
        .transpose()?
        .unwrap_or_default();
    let bootstrap_users = settings
        .add_scram
        .iter()
        .map(|entry| parse_add_scram(entry))
        .collect::<Result<_, _>>()?;
    let super_users = settings
        .super_users
        .as_deref()
        .map(parse_super_users)
        .transpose()?
        .unwrap_or_default();
    let client_auth = match settings.ssl_client_auth.as_deref() {
        None => ClientAuth::None,
        Some(text) => text.parse().map_err(ConfigError::Tls)?,
    };
    let tls = match (settings.ssl_certificate, settings.ssl_key) {
        (Some(certificate), Some(key)) => Some(TlsSettings {
            certificate,
            key,
            ca: settings.ssl_ca,
            client_auth,
        }),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Tls(
                "--ssl-certificate and --ssl-key go together".into(),
            ))
        }
    };
    if let Some(tls) = &tls {
        if tls.client_auth != ClientAuth::None && tls.ca.is_none() {
            return Err(ConfigError::Tls(
                "--ssl-client-auth requested or required needs --ssl-ca".into(),
            ));
        }
    }
    Ok(SecurityConfig {
        tls,
        sasl_mechanisms,
        listener_sasl_mechanisms,
        connections_max_reauth_ms: settings.connections_max_reauth_ms.unwrap_or(0),
        failed_authentication_delay_ms: settings
            .failed_authentication_delay_ms
            .unwrap_or(FAILED_AUTHENTICATION_DELAY_MS_DEFAULT),
        bootstrap_users,
        super_users,
        authorizer: settings.authorizer.unwrap_or(false),
    })
}

impl SecurityConfig {
    /// The mechanisms a SASL listener offers: its own, else the broker's.
    pub fn mechanisms_of(&self, listener: &str) -> &[SaslMechanism] {
        self.listener_sasl_mechanisms
            .get(listener)
            .unwrap_or(&self.sasl_mechanisms)
    }
}

/// `CLIENT:SCRAM-SHA-512,INTERNAL:PLAIN+SCRAM-SHA-256`: listener names
/// (upper-cased, as listeners are) to their mechanisms.
fn parse_listener_mechanisms(
    text: &str,
) -> Result<BTreeMap<String, Vec<SaslMechanism>>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ConfigError::ListenerSaslMechanisms(entry.to_string());
        let (name, mechanisms) = entry.split_once(':').ok_or_else(bad)?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() || map.contains_key(&name) {
            return Err(bad());
        }
        let mechanisms = parse_mechanism_list(mechanisms, '+').map_err(|_| bad())?;
        map.insert(name, mechanisms);
    }
    Ok(map)
}

fn parse_mechanisms(text: &str) -> Result<Vec<SaslMechanism>, ConfigError> {
    parse_mechanism_list(text, ',')
}

fn parse_mechanism_list(text: &str, separator: char) -> Result<Vec<SaslMechanism>, ConfigError> {
    let mut mechanisms = Vec::new();
    for name in text
        .split(separator)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let mechanism = SaslMechanism::from_name(&name.to_ascii_uppercase())
            .ok_or_else(|| ConfigError::SaslMechanism(name.to_string()))?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(ConfigError::SaslMechanism(text.to_string()));
    }
    Ok(mechanisms)
}

/// `User:admin;User:ops` (Kafka's `super.users` separator is `;`).
fn parse_super_users(text: &str) -> Result<Vec<Principal>, ConfigError> {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Principal::parse(p).ok_or_else(|| ConfigError::SuperUser(p.to_string())))
        .collect()
}

/// `SCRAM-SHA-256=[name=admin,password=secret]`, optionally with
/// `iterations=N`; a value may be in double quotes.
fn parse_add_scram(entry: &str) -> Result<BootstrapScramUser, ConfigError> {
    let bad = |why: &str| ConfigError::AddScram(format!("{why} in {entry:?}"));
    let (mechanism, rest) = entry.split_once('=').ok_or_else(|| bad("no mechanism"))?;
    let mechanism = ScramMechanism::from_name(mechanism.trim())
        .ok_or_else(|| bad("unknown SCRAM mechanism"))?;
    let fields = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("expected [name=...,password=...]"))?;
    let (mut name, mut password, mut iterations) = (None, None, ADD_SCRAM_ITERATIONS_DEFAULT);
    for field in fields.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        match key.trim() {
            "name" => name = Some(value.to_string()),
            "password" => password = Some(value.to_string()),
            "iterations" => {
                iterations = value
                    .parse()
                    .ok()
                    .filter(|i| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(i))
                    .ok_or_else(|| bad("iterations must be 4096 to 16384"))?
            }
            _ => return Err(bad("unknown key (expected name, password, iterations)")),
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("no name"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("no password"))?;
    Ok(BootstrapScramUser {
        mechanism,
        name,
        password,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_takes_kafkas_syntax() {
        let user = parse_add_scram("SCRAM-SHA-512=[name=admin,password=\"s3,cret\"]");
        assert!(user.is_err(), "a comma inside quotes is not supported");
        let user =
            parse_add_scram("SCRAM-SHA-256=[name=admin,password=\"secret\",iterations=8192]")
                .unwrap();
        assert_eq!(user.mechanism, ScramMechanism::Sha256);
        assert_eq!(
            (user.name.as_str(), user.password.as_str()),
            ("admin", "secret")
        );
        assert_eq!(user.iterations, 8192);
        for bad in [
            "PLAIN=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=1]",
            "SCRAM-SHA-256=[name=a,password=b,salt=x]",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mechanisms_and_super_users_parse() {
        assert_eq!(
            parse_mechanisms("plain, SCRAM-SHA-512").unwrap(),
            vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(ScramMechanism::Sha512)
            ]
        );
        assert!(parse_mechanisms("GSSAPI").is_err());
        assert!(parse_mechanisms("").is_err());
        assert_eq!(
            parse_super_users("User:admin;User:ops").unwrap(),
            vec![Principal::user("admin"), Principal::user("ops")]
        );
        assert!(parse_super_users("admin").is_err());
    }

    #[test]
    fn listener_mechanisms_name_a_listener_and_its_own_list() {
        let map = parse_listener_mechanisms("client:SCRAM-SHA-512, INTERNAL:PLAIN+scram-sha-256")
            .unwrap();
        assert_eq!(
            map.get("CLIENT"),
            Some(&vec![SaslMechanism::Scram(ScramMechanism::Sha512)])
        );
        assert_eq!(
            map.get("INTERNAL"),
            Some(&vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(ScramMechanism::Sha256)
            ])
        );
        for bad in [
            "CLIENT",
            "CLIENT:",
            ":PLAIN",
            "CLIENT:GSSAPI",
            "A:PLAIN,a:PLAIN",
        ] {
            assert!(parse_listener_mechanisms(bad).is_err(), "{bad:?} accepted");
        }
    }
}
