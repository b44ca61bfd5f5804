//! Logging in with SASL (`sasl.mechanism`, `sasl.username`,
//! `sasl.password`): SaslHandshake v1, then the mechanism's tokens in
//! SaslAuthenticate (KIP-152). PLAIN sends the password; SCRAM proves it.
//! The same exchange re-authenticates a connection (KIP-368).

use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, Connection};
use crate::security::scram_client::ScramClient;
use crate::security::SaslMechanism;

/// SaslHandshake v1: tokens go in SaslAuthenticate requests.
const HANDSHAKE_VERSION: i16 = 1;
/// SaslAuthenticate versions this client speaks (v1 adds the session
/// lifetime, v2 flexible fields).
const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);

/// Who to log in as, and how.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Authenticates (or re-authenticates) the connection. Returns the
    /// session lifetime the broker granted in ms (0: no limit). Needs the
    /// versions from [`negotiate`](Self::negotiate).
    pub fn authenticate(&mut self, login: &SaslLogin) -> Result<i64, ClientError> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(login.mechanism.name()));
        let answer = self.call(&handshake, HANDSHAKE_VERSION)?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(ClientError::Sasl(format!(
                "SaslHandshake for {} refused with error {} (the broker offers {offered:?})",
                login.mechanism, answer.error_code
            )));
        }
        let version = self
            .versions()
            .pick::<SaslAuthenticateRequest>(AUTHENTICATE_VERSIONS)?;
        match login.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", login.user, login.password);
                let (_, lifetime) = self.sasl_token(token.into_bytes(), version)?;
                Ok(lifetime)
            }
            SaslMechanism::Scram(mechanism) => {
                let scram =
                    |e: crate::security::scram::ScramError| ClientError::Sasl(e.to_string());
                let (client, first) =
                    ScramClient::start(mechanism, &login.user, &login.password).map_err(scram)?;
                let (server_first, _) = self.sasl_token(first.into_bytes(), version)?;
                let (last, client_final) = client.respond(&server_first).map_err(scram)?;
                let (server_final, lifetime) =
                    self.sasl_token(client_final.into_bytes(), version)?;
                last.verify(&server_final).map_err(scram)?;
                Ok(lifetime)
            }
        }
    }

    /// One SaslAuthenticate round trip: the broker's bytes and the session
    /// lifetime it reported.
    fn sasl_token(&mut self, token: Vec<u8>, version: i16) -> Result<(Vec<u8>, i64), ClientError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(token.into());
        let answer = self.call(&request, version)?;
        if answer.error_code != 0 {
            let message = answer.error_message.as_ref().map_or("", |m| m.as_str());
            return Err(ClientError::Sasl(format!(
                "error {}: {message}",
                answer.error_code
            )));
        }
        Ok((answer.auth_bytes.to_vec(), answer.session_lifetime_ms))
    }
}
