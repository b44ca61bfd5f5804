//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), client side: the
//! raw client and the admin CLI log in with it. Same primitives as the
//! server; no channel binding (`n,,`), as Kafka's clients.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::scram::{ScramError, ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};

/// Random bytes in the client's nonce.
const CLIENT_NONCE_BYTES: usize = 24;
/// `n,,` base64-encoded: the channel-binding echo of a client without it.
const NO_BINDING_ECHO: &str = "biws";

/// The client's half after client-first: waits for server-first.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    nonce: String,
    client_first_bare: String,
}

/// After client-final: the server signature the server-final must carry.
pub struct ScramClientFinal {
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange; returns the client-first message to send.
    pub fn start(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<(ScramClient, String), ScramError> {
        let mut random = [0u8; CLIENT_NONCE_BYTES];
        getrandom::getrandom(&mut random).map_err(|e| ScramError::Random(e.to_string()))?;
        Ok(ScramClient::start_with_nonce(
            mechanism,
            user,
            password,
            &BASE64.encode(random),
        ))
    }

    /// [`start`](Self::start) with a given nonce (RFC test vectors).
    pub fn start_with_nonce(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        nonce: &str,
    ) -> (ScramClient, String) {
        // RFC 5802, 5.1: '=' and ',' in a name are escaped.
        let name = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={nonce}");
        let client_first = format!("n,,{client_first_bare}");
        let client = ScramClient {
            mechanism,
            password: password.to_string(),
            nonce: nonce.to_string(),
            client_first_bare,
        };
        (client, client_first)
    }

    /// Reads server-first; returns the client-final message to send.
    pub fn respond(self, server_first: &[u8]) -> Result<(ScramClientFinal, String), ScramError> {
        let message =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(error) = message.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let mut fields = message.split(',');
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        let salt = fields
            .next()
            .and_then(|f| f.strip_prefix("s="))
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = fields
            .next()
            .and_then(|f| f.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::ServerNonce);
        }
        // Bounded: a hostile server must not make the client hash for minutes.
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let mechanism = self.mechanism;
        let salted = mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c={NO_BINDING_ECHO},r={nonce}");
        let auth_message = format!("{},{message},{without_proof}", self.client_first_bare);
        let client_signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        let client_final = format!("{without_proof},p={}", BASE64.encode(proof));
        Ok((ScramClientFinal { server_signature }, client_final))
    }
}

impl ScramClientFinal {
    /// Checks server-final (`v=<ServerSignature>`): the server knew the password.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let message =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(error) = message.strip_prefix("e=") {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let signature = message
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        if bool::from(signature.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3: user "user", password "pencil".
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn client() -> (ScramClient, String) {
        ScramClient::start_with_nonce(ScramMechanism::Sha256, "user", "pencil", CLIENT_NONCE)
    }

    #[test]
    fn rfc_7677_exchange_gives_the_rfc_messages() {
        let (client, first) = client();
        assert_eq!(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (last, client_final) = client.respond(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(client_final, CLIENT_FINAL);
        last.verify(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_server_that_does_not_know_the_password_or_bends_the_nonce_is_refused() {
        let (last, _) = client().0.respond(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(last.verify(b"v=AAAA"), Err(ScramError::ServerSignature));
        let other_nonce = SERVER_FIRST.replace("r=rOpr", "r=xOpr");
        assert_eq!(
            client().0.respond(other_nonce.as_bytes()).err(),
            Some(ScramError::ServerNonce)
        );
        let slow = SERVER_FIRST.replace("i=4096", "i=100000000");
        assert_eq!(
            client().0.respond(slow.as_bytes()).err(),
            Some(ScramError::Iterations(100_000_000))
        );
        assert!(client().0.respond(b"garbage").is_err());
        let (named, first) =
            ScramClient::start_with_nonce(ScramMechanism::Sha512, "a=b,c", "p", "n1");
        assert_eq!(first, "n,,n=a=3Db=2Cc,r=n1");
        drop(named);
    }
}
