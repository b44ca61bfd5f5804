//! How a client secures its connections, from Kafka's client settings:
//! `security.protocol`, `ssl.ca.location`, `sasl.mechanism`,
//! `sasl.username` and `sasl.password` (as `-X key=value` takes them).

use std::path::PathBuf;

use super::{SaslLogin, TlsClient};
use crate::security::SaslMechanism;

/// TLS and SASL for every connection a client opens; the default is
/// PLAINTEXT.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<TlsClient>,
    pub sasl: Option<SaslLogin>,
}

/// The settings understood, for error messages.
pub const PROPERTIES: &str =
    "security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location";

impl ClientSecurity {
    /// Reads `key=value` settings (a later one wins).
    pub fn from_properties<S: AsRef<str>>(settings: &[S]) -> Result<ClientSecurity, String> {
        let (mut protocol, mut mechanism, mut user, mut password, mut ca) =
            ("PLAINTEXT".to_string(), None, None, None, None::<PathBuf>);
        for setting in settings {
            let setting = setting.as_ref();
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("{setting:?}: expected KEY=VALUE"))?;
            let value = value.to_string();
            match key.trim() {
                "security.protocol" => protocol = value.to_ascii_uppercase(),
                "sasl.mechanism" | "sasl.mechanisms" => mechanism = Some(value),
                "sasl.username" => user = Some(value),
                "sasl.password" => password = Some(value),
                "ssl.ca.location" => ca = Some(PathBuf::from(value)),
                other => return Err(format!("unknown setting {other:?} (known: {PROPERTIES})")),
            }
        }
        let (uses_tls, uses_sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(format!(
                "security.protocol {other:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ))
            }
        };
        let tls = match (uses_tls, ca) {
            (true, Some(ca)) => Some(TlsClient::trusting(&ca).map_err(|e| e.to_string())?),
            (true, None) => {
                return Err(format!(
                    "security.protocol {protocol} needs ssl.ca.location"
                ))
            }
            (false, _) => None,
        };
        let sasl = if uses_sasl {
            let mechanism = mechanism
                .ok_or_else(|| format!("security.protocol {protocol} needs sasl.mechanism"))?;
            let mechanism = SaslMechanism::from_name(&mechanism.to_ascii_uppercase()).ok_or_else(
                || format!("sasl.mechanism {mechanism:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
            )?;
            Some(SaslLogin {
                mechanism,
                user: user.ok_or("SASL needs sasl.username")?,
                password: password.ok_or("SASL needs sasl.password")?,
            })
        } else {
            None
        };
        Ok(ClientSecurity { tls, sasl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::ScramMechanism;

    #[test]
    fn kafka_client_settings_make_the_security() {
        let plain = ClientSecurity::from_properties::<&str>(&[]).unwrap();
        assert!(plain.tls.is_none() && plain.sasl.is_none());
        let sasl = ClientSecurity::from_properties(&[
            "security.protocol=sasl_plaintext",
            "sasl.mechanism=SCRAM-SHA-512",
            "sasl.username=admin",
            "sasl.password=a=b",
        ])
        .unwrap();
        let login = sasl.sasl.unwrap();
        assert_eq!(
            login.mechanism,
            SaslMechanism::Scram(ScramMechanism::Sha512)
        );
        assert_eq!(
            (login.user.as_str(), login.password.as_str()),
            ("admin", "a=b")
        );
        for bad in [
            &["security.protocol=TLS"][..],
            &["security.protocol=SSL"],
            &[
                "security.protocol=SASL_PLAINTEXT",
                "sasl.username=a",
                "sasl.password=b",
            ],
            &["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=GSSAPI"],
            &["sasl.kerberos.service.name=kafka"],
            &["novalue"],
        ] {
            assert!(
                ClientSecurity::from_properties(bad).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
