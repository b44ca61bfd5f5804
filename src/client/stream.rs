//! The bytes under a client connection: a plain TCP socket, or TLS over it
//! (rustls, trusting the CA file the caller names, as `ssl.ca.location`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;

use super::ClientError;

/// The TLS settings of a client: which CAs it trusts.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// Trusts the certificates in the PEM file `ca` (Kafka's `ssl.ca.location`).
    pub fn trusting(ca: &Path) -> Result<TlsClient, ClientError> {
        let bad = |message: String| ClientError::Tls {
            message: format!("{}: {message}", ca.display()),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no CA certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// Runs the handshake over `tcp` for the broker named `host` (a DNS
    /// name or an IP address, checked against the certificate).
    pub fn connect(&self, host: &str, mut tcp: TcpStream) -> Result<Stream, ClientError> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| ClientError::Tls {
            message: format!("server name {host:?}: {e}"),
        })?;
        let mut tls =
            ClientConnection::new(self.config.clone(), name).map_err(|e| ClientError::Tls {
                message: e.to_string(),
            })?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).map_err(|e| ClientError::Tls {
                message: format!("TLS handshake with {host}: {e}"),
            })?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(tls, tcp))))
    }
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// Whether decrypted bytes wait in the TLS buffer (the socket may be
    /// empty though the next frame is there).
    pub fn has_buffered(&mut self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls
                .conn
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() > 0),
        }
    }

    /// The broker's certificate (DER), on a TLS connection.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.as_ref()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}
