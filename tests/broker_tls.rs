//! TLS listeners (SSL and SASL_SSL) with certificates made in the test
//! (rcgen): real clients (confluent-kafka) produce and consume over TLS,
//! with SCRAM inside TLS, and with client certificates whose subject is the
//! principal; untrusted certificates and plaintext clients are refused while
//! the broker keeps serving others; certificates reload on SIGHUP while open
//! connections keep going.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::pki::{ca, make_pki, write, write_server_certificate, Pki};
use common::python::{python_with, run_script};
use common::raw::{api_versions_request, PeerState, RawClient};
use common::{free_port, wait_until, Broker};
use ringlog::client::{Connection, TlsClient};

/// How long a test waits for a log line or a close.
const WAIT: Duration = Duration::from_secs(10);

/// A broker with an SSL and a SASL_SSL listener (ports returned), the
/// authorizer on and `User:CN=alice` and `User:admin` super users.
fn tls_broker(pki: &Pki, client_auth: &str) -> (Broker, u16, u16) {
    let (ssl_port, sasl_ssl_port) = (free_port(), free_port());
    let broker = Broker::builder()
        .arg("--listener")
        .arg(&format!("SSL://127.0.0.1:{ssl_port}"))
        .arg("--listener")
        .arg(&format!("SASL_SSL://127.0.0.1:{sasl_ssl_port}"))
        .arg("--ssl-certificate")
        .arg(&pki.arg("server.pem"))
        .arg("--ssl-key")
        .arg(&pki.arg("server.key"))
        .arg("--ssl-ca")
        .arg(&pki.arg("ca.pem"))
        .arg("--ssl-client-auth")
        .arg(client_auth)
        .arg("--authorizer")
        .arg("true")
        .arg("--super-users")
        .arg("User:CN=alice;User:admin")
        .arg("--add-scram")
        .arg("SCRAM-SHA-256=[name=admin,password=admin-secret]")
        .start();
    (broker, ssl_port, sasl_ssl_port)
}

/// Produces one record to a topic and reads it back; prints `ok`, the
/// delivery error's name, or `refused` when the connection fails.
/// Arguments: bootstrap protocol ca cert key user topic (`-` for none).
const ROUND_TRIP: &str = r#"
import sys
from confluent_kafka import Producer, Consumer, KafkaException
from confluent_kafka.admin import AdminClient
bootstrap, protocol, ca, cert, key, user, topic = sys.argv[1:8]
conf = {"bootstrap.servers": bootstrap, "security.protocol": protocol, "ssl.ca.location": ca}
if cert != "-":
    conf.update({"ssl.certificate.location": cert, "ssl.key.location": key})
if user != "-":
    conf.update({"sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user,
                 "sasl.password": user + "-secret"})
try:
    AdminClient(dict(conf)).list_topics(timeout=5)
except KafkaException:
    print("refused")
    sys.exit(0)
result = []
producer = Producer(dict(conf, **{"message.timeout.ms": 5000,
    "on_delivery": lambda e, m: result.append("ok" if e is None else e.name())}))
producer.produce(topic, value=b"over tls")
producer.flush(20)
if result != ["ok"]:
    print(result[0] if result else "no-report")
    sys.exit(0)
consumer = Consumer(dict(conf, **{"group.id": "g-" + topic, "auto.offset.reset": "earliest"}))
consumer.subscribe([topic])
for _ in range(40):
    message = consumer.poll(0.5)
    if message is not None and message.error() is None:
        print("ok" if message.value() == b"over tls" else "wrong value")
        break
else:
    print("nothing read")
consumer.close()
"#;

fn round_trip(
    python: &PathBuf,
    pki: &Pki,
    port: u16,
    protocol: &str,
    client: Option<&str>,
    user: Option<&str>,
    topic: &str,
) -> String {
    let bootstrap = format!("127.0.0.1:{port}");
    let (cert, key) = match client {
        Some(name) => (
            pki.arg(&format!("{name}.pem")),
            pki.arg(&format!("{name}.key")),
        ),
        None => ("-".to_string(), "-".to_string()),
    };
    let ca = pki.arg("ca.pem");
    let args = [
        &bootstrap,
        protocol,
        &ca,
        &cert,
        &key,
        user.unwrap_or("-"),
        topic,
    ];
    run_script(python, ROUND_TRIP, &args).trim().to_string()
}

#[test]
fn tls_clients_produce_and_consume_as_their_certificate_or_their_sasl_user() {
    let test = "tls_clients_produce_and_consume_as_their_certificate_or_their_sasl_user";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let pki = make_pki();
    let (_broker, ssl, sasl_ssl) = tls_broker(&pki, "requested");
    // CN=alice is a super user: her certificate is her principal.
    let alice = round_trip(&python, &pki, ssl, "SSL", Some("alice"), None, "tls-alice");
    assert_eq!(alice, "ok");
    // Without a certificate the client is User:ANONYMOUS, which has no ACLs.
    let anonymous = round_trip(&python, &pki, ssl, "SSL", None, None, "tls-alice");
    assert_eq!(anonymous, "TOPIC_AUTHORIZATION_FAILED");
    // SCRAM inside TLS.
    let admin = round_trip(
        &python,
        &pki,
        sasl_ssl,
        "SASL_SSL",
        None,
        Some("admin"),
        "tls-admin",
    );
    assert_eq!(admin, "ok");
}

#[test]
fn untrusted_certificates_and_plaintext_clients_are_refused_on_tls_ports() {
    let test = "untrusted_certificates_and_plaintext_clients_are_refused_on_tls_ports";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let pki = make_pki();
    let (broker, ssl, _) = tls_broker(&pki, "required");
    let mallory = round_trip(&python, &pki, ssl, "SSL", Some("mallory"), None, "tls-m");
    assert_eq!(mallory, "refused", "a certificate from another CA");
    let expired = round_trip(&python, &pki, ssl, "SSL", Some("expired"), None, "tls-m");
    assert_eq!(
        expired, "refused",
        "a certificate from the CA that has expired"
    );
    let nobody = round_trip(&python, &pki, ssl, "SSL", None, None, "tls-m");
    assert_eq!(nobody, "refused", "no certificate where one is required");

    let mut plaintext = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], ssl)));
    let (_, frame) = plaintext.frame(&api_versions_request(3), 3);
    plaintext.write_raw(&frame).expect("sending plaintext");
    assert_eq!(plaintext.peer_state(WAIT), PeerState::Closed);
    assert!(wait_until(WAIT, || broker
        .log()
        .contains("TLS handshake failed")));

    // The broker still serves trusted clients.
    let alice = round_trip(&python, &pki, ssl, "SSL", Some("alice"), None, "tls-ok");
    assert_eq!(alice, "ok");
}

#[test]
fn a_tls_listener_without_a_certificate_is_refused_at_start() {
    let run = common::run_bounded(
        std::process::Command::new(common::broker_binary()).args([
            "--listener",
            "SSL://127.0.0.1:1",
            "--data-dir",
            "/nonexistent-ringlog-data",
        ]),
        WAIT,
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--ssl-certificate"), "{}", run.stderr);
}

fn tls_connect(pki: &Pki, port: u16) -> Connection {
    let tls = TlsClient::trusting(&pki.path("ca.pem")).expect("the test CA");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut connection = Connection::connect_tls(addr, "127.0.0.1", &tls, WAIT, "ringlog-tls-test")
        .expect("a TLS connection");
    connection.negotiate().expect("ApiVersions over TLS");
    connection
}

#[test]
fn certificates_reload_on_sighup_while_open_connections_keep_going() {
    let pki = make_pki();
    let (broker, ssl, _) = tls_broker(&pki, "none");
    let mut old = tls_connect(&pki, ssl);
    let first = old.peer_certificate().expect("a certificate").to_vec();

    // A new certificate from a new CA, in place of the old files.
    let (new_ca, new_ca_key) = ca("ringlog renewed CA");
    let renewed = write_server_certificate(pki.dir(), &new_ca, &new_ca_key, "renewed");
    write(pki.dir(), "ca.pem", &new_ca.pem());
    let pid = broker.pid().expect("a running broker") as libc::pid_t;
    // SAFETY: sends SIGHUP to the broker process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        wait_until(WAIT, || broker.log().contains("TLS certificates reloaded")),
        "{}",
        broker.log_tail()
    );
    let mut new = tls_connect(&pki, ssl);
    assert_eq!(new.peer_certificate(), Some(renewed.as_slice()));
    assert_ne!(renewed, first);
    // The connection made before the reload still works, on its old session.
    old.negotiate().expect("the old connection still answers");
    assert_eq!(old.peer_certificate(), Some(first.as_slice()));

    // Files that do not make a valid setup leave the running one in place.
    write(pki.dir(), "server.key", "not a key");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        wait_until(WAIT, || broker
            .log()
            .contains("TLS certificates not reloaded")),
        "{}",
        broker.log_tail()
    );
    let mut after = tls_connect(&pki, ssl);
    assert_eq!(after.peer_certificate(), Some(renewed.as_slice()));
    new.negotiate()
        .expect("connections keep going after a failed reload");
    after.negotiate().expect("and new ones are served");
}
