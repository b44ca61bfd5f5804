//! Certificates made in the test (rcgen): a CA, a broker certificate for
//! 127.0.0.1, and client certificates, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

/// A CA and what it signed, as PEM files in a temporary directory.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("writing a PEM file");
}

pub fn ca(common_name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("a key pair");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    (params.self_signed(&key).expect("a self-signed CA"), key)
}

/// A server certificate for 127.0.0.1 signed by `ca`, written as
/// `server.pem`/`server.key`; returns its DER bytes.
pub fn write_server_certificate(
    dir: &Path,
    ca_cert: &rcgen::Certificate,
    ca_key: &KeyPair,
    common_name: &str,
) -> Vec<u8> {
    let server_key = KeyPair::generate().expect("a key pair");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let server = params
        .signed_by(&server_key, ca_cert, ca_key)
        .expect("a server certificate");
    write(dir, "server.pem", &server.pem());
    write(dir, "server.key", &server_key.serialize_pem());
    server.der().to_vec()
}

/// `ca.pem`; `server.pem`/`server.key` for 127.0.0.1; `alice.pem`/`alice.key`
/// (CN=alice) from the same CA; `mallory.pem`/`mallory.key` from another CA;
/// `expired.pem`/`expired.key` from the same CA, valid only in 2000.
pub fn make_pki() -> Pki {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ca_cert, ca_key) = ca("ringlog test CA");
    write(dir.path(), "ca.pem", &ca_cert.pem());
    write(dir.path(), "ca.key", &ca_key.serialize_pem());
    write_server_certificate(dir.path(), &ca_cert, &ca_key, "broker");
    let (other_ca, other_key) = ca("someone else's CA");
    for (name, signer, signer_key) in [
        ("alice", &ca_cert, &ca_key),
        ("mallory", &other_ca, &other_key),
        ("expired", &ca_cert, &ca_key),
    ] {
        let key = KeyPair::generate().expect("a key pair");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        if name == "expired" {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let cert = params
            .signed_by(&key, signer, signer_key)
            .expect("a client certificate");
        write(dir.path(), &format!("{name}.pem"), &cert.pem());
        write(dir.path(), &format!("{name}.key"), &key.serialize_pem());
    }
    Pki { dir }
}
