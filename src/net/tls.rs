//! TLS for SSL and SASL_SSL listeners: rustls, which is sans-I/O, driven
//! over glommio's sockets by futures-rustls. PEM certificate chain and key,
//! TLS 1.2 and 1.3, optional client certificates (`ssl.client.auth`) whose
//! subject becomes the connection's identity. Certificates reload on
//! SIGHUP: each shard swaps in the new acceptor for its next handshakes,
//! while open connections keep the session they negotiated.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures_rustls::TlsAcceptor;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<ClientAuth, String> {
        match text {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!(
                "invalid ssl client auth {other:?}: expected none, requested or required"
            )),
        }
    }
}

/// Where the server's certificate, key and the client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// CA certificates client certificates must chain to.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("--ssl-client-auth {0:?} needs --ssl-ca")]
    NoClientCa(ClientAuth),
    #[error("invalid TLS setup: {0}")]
    Rustls(String),
}

/// Builds the acceptor every TLS listener of the broker shares.
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    fn pem<'a>(
        what: &'static str,
        path: &'a std::path::Path,
    ) -> impl Fn(rustls_pki_types::pem::Error) -> TlsError + 'a {
        move |e| TlsError::Pem {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.certificate)
        .map_err(pem("certificate", &settings.certificate))?
        .collect::<Result<_, _>>()
        .map_err(pem("certificate", &settings.certificate))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: settings.certificate.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(pem("key", &settings.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (settings.client_auth, &settings.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (auth, None) => return Err(TlsError::NoClientCa(auth)),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(pem("CA", ca))? {
                roots
                    .add(cert.map_err(pem("CA", ca))?)
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor of one shard's TLS listeners. Shard-local (no lock shared
/// between cores): a reload hands each shard its own copy of the new one.
#[derive(Clone)]
pub struct ShardTls(Rc<RefCell<TlsAcceptor>>);

impl ShardTls {
    pub fn new(acceptor: TlsAcceptor) -> ShardTls {
        ShardTls(Rc::new(RefCell::new(acceptor)))
    }

    /// The acceptor a new connection's handshake uses.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.0.borrow().clone()
    }

    /// From now on, handshakes use `acceptor`; open connections are untouched.
    pub fn replace(&self, acceptor: TlsAcceptor) {
        *self.0.borrow_mut() = acceptor;
    }
}

/// The subject of a verified client certificate as Kafka names it
/// (RFC 2253, most specific first: `CN=alice,OU=eng,O=example`), or `None`
/// for a certificate it cannot parse.
pub fn subject_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let mut parts = Vec::new();
    for rdn in parsed
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let key = x509_parser::objects::oid2abbrev(
                    attribute.attr_type(),
                    x509_parser::objects::oid_registry(),
                )
                .map_or_else(|_| attribute.attr_type().to_id_string(), str::to_string);
                let value = attribute.as_str().unwrap_or("");
                format!("{key}={}", escape_rfc2253(value))
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    #[test]
    fn a_certificate_subject_is_named_as_kafka_names_it() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "example");
        params
            .distinguished_name
            .push(DnType::CommonName, "alice, the first");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_name(cert.der()).as_deref(),
            Some("CN=alice\\, the first,O=example")
        );
        assert_eq!(subject_name(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn client_auth_takes_kafkas_values() {
        assert_eq!("requested".parse(), Ok(ClientAuth::Requested));
        assert!("optional".parse::<ClientAuth>().is_err());
    }
}
