//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side.
//!
//! The primitives (SHA-2, HMAC, PBKDF2, constant-time comparison) come from
//! well-kept crates; only the message flow is written here: client-first,
//! server-first, client-final, server-final. Channel binding is not offered
//! (`n,,`), as in Kafka.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::credentials::ScramCredential;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism.minIterations()` and
/// the 16384 maximum AlterUserScramCredentials accepts).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;
/// Salt bytes for credentials the broker makes itself.
pub const SALT_BYTES: usize = 32;
/// Random bytes in the server's part of the nonce.
const SERVER_NONCE_BYTES: usize = 24;
/// The longest client nonce or user name accepted in a client-first message.
pub const CLIENT_FIRST_FIELD_BYTES_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` wire number (KIP-554): 1 and 2.
    pub fn wire_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_wire_type(value: i8) -> Option<ScramMechanism> {
        match value {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }

    /// The stored form of a salted password: StoredKey and ServerKey.
    pub fn credential(
        self,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            mechanism: self,
            salt,
            iterations,
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
        }
    }

    /// A new credential for `password` with a fresh random salt.
    pub fn credential_for_password(
        self,
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, getrandom::Error> {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::getrandom(&mut salt)?;
        let salted = self.salted_password(password.as_bytes(), &salt, iterations);
        Ok(self.credential(&salted, salt, iterations))
    }
}

/// Whether `password` is the one `credential` was made from.
pub fn password_matches(credential: &ScramCredential, password: &str) -> bool {
    let mechanism = credential.mechanism;
    let salted =
        mechanism.salted_password(password.as_bytes(), &credential.salt, credential.iterations);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    bool::from(mechanism.hash(&client_key).ct_eq(&credential.stored_key))
}

/// Why an exchange failed. The client is told only that authentication
/// failed; the log gets the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM extensions are not supported (delegation tokens)")]
    Extension,
    #[error("unknown user or no {0} credential")]
    UnknownUser(&'static str),
    #[error("the authorization id differs from the user name")]
    AuthorizationId,
    #[error("the client-final nonce differs from the server's")]
    Nonce,
    #[error("the channel binding echo differs from the client-first header")]
    BindingEcho,
    #[error("invalid client proof (wrong password)")]
    Proof,
    #[error("no server randomness: {0}")]
    Random(String),
    #[error("the server's nonce does not extend the client's")]
    ServerNonce,
    #[error("the server asks for {0} iterations, outside 4096..=16384")]
    Iterations(u32),
    #[error("the server's signature is wrong: it does not know the password")]
    ServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
}

/// The server's half of one exchange after the client-first message.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    user: String,
    credential: ScramCredential,
    gs2_header: String,
    nonce: String,
    /// `client-first-message-bare , server-first-message`: the start of AuthMessage.
    auth_message_start: String,
}

/// A client-first message taken apart.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    user: String,
    nonce: &'a str,
    bare: &'a str,
}

fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, ScramError> {
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let mut parts = message.splitn(3, ',');
    let flag = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
    let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
    let bare = parts
        .next()
        .ok_or(ScramError::Malformed("no client-first-message-bare"))?;
    match flag {
        "n" | "y" => {}
        flag if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad gs2 channel binding flag")),
    }
    let gs2_header = &message[..flag.len() + authzid.len() + 2];
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or(ScramError::Malformed("no user name"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no client nonce"))?;
    // KIP-84: `tokenauth=true` asks for delegation tokens, which are not served.
    if fields.any(|f| f.starts_with("tokenauth=")) {
        return Err(ScramError::Extension);
    }
    if user.len() > CLIENT_FIRST_FIELD_BYTES_MAX || nonce.len() > CLIENT_FIRST_FIELD_BYTES_MAX {
        return Err(ScramError::Malformed("field too long"));
    }
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("bad client nonce"));
    }
    let user = decode_sasl_name(user)?;
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if decode_sasl_name(authzid)? != user {
            return Err(ScramError::AuthorizationId);
        }
    } else if !authzid.is_empty() {
        return Err(ScramError::Malformed("bad authorization id"));
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce,
        bare,
    })
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_sasl_name(text: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

impl ScramServer {
    /// Reads the client-first message, looks the user up with `lookup`, and
    /// returns the exchange with the server-first message to send.
    /// `server_nonce` is `None` for fresh randomness (tests pass their own).
    pub fn start(
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: Option<&str>,
    ) -> Result<(ScramServer, String), ScramError> {
        let message =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let first = parse_client_first(message)?;
        let credential = lookup(&first.user)
            .filter(|c| c.mechanism == mechanism)
            .ok_or(ScramError::UnknownUser(mechanism.name()))?;
        let server_part = match server_nonce {
            Some(nonce) => nonce.to_string(),
            None => {
                let mut random = [0u8; SERVER_NONCE_BYTES];
                getrandom::getrandom(&mut random).map_err(|e| ScramError::Random(e.to_string()))?;
                BASE64.encode(random)
            }
        };
        let nonce = format!("{}{}", first.nonce, server_part);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let server = ScramServer {
            mechanism,
            user: first.user,
            gs2_header: first.gs2_header.to_string(),
            auth_message_start: format!("{},{server_first}", first.bare),
            credential,
            nonce,
        };
        Ok((server, server_first))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Checks the client-final message; on success returns the
    /// server-final message (`v=<ServerSignature>`).
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let message =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no client proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::BindingEcho);
        }
        if !bool::from(nonce.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(ScramError::Nonce);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("client proof is not base64"))?;
        let auth_message = format!("{},{without_proof}", self.auth_message_start);
        let mechanism = self.mechanism;
        let client_signature = mechanism.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Proof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !bool::from(
            mechanism
                .hash(&client_key)
                .ct_eq(&self.credential.stored_key),
        ) {
            return Err(ScramError::Proof);
        }
        let server_signature = mechanism.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3: user "user", password "pencil".
    const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    fn pencil() -> ScramCredential {
        let salt = BASE64.decode(SALT_B64).unwrap();
        let mechanism = ScramMechanism::Sha256;
        let salted = mechanism.salted_password(b"pencil", &salt, 4096);
        mechanism.credential(&salted, salt, 4096)
    }

    fn start(client_first: &str) -> Result<(ScramServer, String), ScramError> {
        ScramServer::start(
            ScramMechanism::Sha256,
            client_first.as_bytes(),
            |user| (user == "user").then(pencil),
            Some(SERVER_NONCE),
        )
    }

    #[test]
    fn rfc_7677_exchange_gives_the_rfc_messages() {
        let (server, server_first) = start(CLIENT_FIRST).unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert_eq!(
            server.finish(CLIENT_FINAL.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn a_wrong_nonce_proof_or_binding_fails() {
        let wrong_nonce = CLIENT_FINAL.replace("k0,p", "k1,p");
        let (server, _) = start(CLIENT_FIRST).unwrap();
        assert_eq!(
            server.finish(wrong_nonce.as_bytes()),
            Err(ScramError::Nonce)
        );
        let wrong_proof = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        let (server, _) = start(CLIENT_FIRST).unwrap();
        assert_eq!(
            server.finish(wrong_proof.as_bytes()),
            Err(ScramError::Proof)
        );
        let wrong_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
        let (server, _) = start(CLIENT_FIRST).unwrap();
        assert_eq!(
            server.finish(wrong_binding.as_bytes()),
            Err(ScramError::BindingEcho)
        );
        let (server, _) = start(CLIENT_FIRST).unwrap();
        assert!(server.finish(b"garbage").is_err());
    }

    #[test]
    fn bad_client_first_messages_are_refused() {
        assert!(matches!(
            start("n,,n=nobody,r=abc"),
            Err(ScramError::UnknownUser(_))
        ));
        assert_eq!(
            start("p=tls-unique,,n=user,r=abc").unwrap_err(),
            ScramError::ChannelBinding
        );
        assert_eq!(
            start("n,a=other,n=user,r=abc").unwrap_err(),
            ScramError::AuthorizationId
        );
        assert_eq!(
            start("n,,n=user,r=abc,tokenauth=true").unwrap_err(),
            ScramError::Extension
        );
        for bad in [
            "",
            "n",
            "n,,",
            "n,,r=abc",
            "n,,n=user",
            "n,,n=us=er,r=abc",
            "n,,n=user,r=",
        ] {
            assert!(start(bad).is_err(), "{bad:?} accepted");
        }
        assert!(start("n,a=user,n=user,r=abc").is_ok());
    }

    #[test]
    fn passwords_are_checked_against_the_stored_keys() {
        assert!(password_matches(&pencil(), "pencil"));
        assert!(!password_matches(&pencil(), "pencil2"));
        let made = ScramMechanism::Sha512
            .credential_for_password("secret", ITERATIONS_MIN)
            .unwrap();
        assert!(password_matches(&made, "secret"));
        assert_eq!(made.salt.len(), SALT_BYTES);
    }
}
