//! KIP-368 re-authentication: with `--connections-max-reauth-ms` a SASL
//! session reports its lifetime in SaslAuthenticate, renews over the same
//! connection (same mechanism, same principal), and a connection past its
//! lifetime is closed on its next request. librdkafka renews on its own.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::python::{python_with, run_script};
use common::raw::{PeerState, RawClient};
use common::{free_port, wait_until, Broker};
use kafka_protocol::messages::MetadataRequest;
use ringlog::client::SaslLogin;
use ringlog::security::{SaslMechanism, ScramMechanism};

/// The session lifetime the brokers here grant.
const LIFETIME: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(10);

/// A broker with a SASL_PLAINTEXT listener (port returned), the session
/// lifetime above, and users admin and bob for SCRAM-SHA-256.
fn reauth_broker(lifetime: Duration) -> (Broker, u16) {
    let port = free_port();
    let broker = Broker::builder()
        .arg("--listener")
        .arg(&format!("SASL_PLAINTEXT://127.0.0.1:{port}"))
        .arg("--connections-max-reauth-ms")
        .arg(&lifetime.as_millis().to_string())
        .arg("--add-scram")
        .arg("SCRAM-SHA-256=[name=admin,password=admin-secret]")
        .arg("--add-scram")
        .arg("SCRAM-SHA-256=[name=bob,password=bob-secret]")
        .env("RUST_LOG", "info,ringlog::kafka::sasl=debug")
        .start();
    (broker, port)
}

fn login(mechanism: SaslMechanism, user: &str) -> SaslLogin {
    SaslLogin {
        mechanism,
        user: user.to_string(),
        password: format!("{user}-secret"),
    }
}

const SCRAM_256: SaslMechanism = SaslMechanism::Scram(ScramMechanism::Sha256);

fn connect(port: u16) -> RawClient {
    RawClient::connect_negotiated(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn metadata_works(client: &mut RawClient) -> bool {
    let (_, frame) = client.frame(&MetadataRequest::default().with_topics(Some(vec![])), 9);
    client.write_raw(&frame).expect("sending Metadata");
    matches!(client.peer_state(WAIT), PeerState::Answered(_)) && client.read_frame().is_ok()
}

#[test]
fn a_session_reports_its_lifetime_and_renews_over_the_same_connection() {
    let (broker, port) = reauth_broker(LIFETIME);
    let mut client = connect(port);
    let admin = login(SCRAM_256, "admin");
    let lifetime = client.login(&admin).expect("admin logs in");
    assert_eq!(lifetime, LIFETIME.as_millis() as i64);
    // Renewing twice within each lifetime keeps the connection going past
    // the first session's end.
    let started = Instant::now();
    while started.elapsed() < LIFETIME * 2 {
        std::thread::sleep(LIFETIME / 3);
        assert_eq!(client.login(&admin).expect("re-authentication"), lifetime);
        assert!(metadata_works(&mut client), "{}", broker.log_tail());
    }
    assert!(broker.log().contains("re-authenticated"));

    // Another mechanism is refused at the handshake; the session goes on.
    let plain = client.login(&login(SaslMechanism::Plain, "admin"));
    assert!(plain.is_err(), "the mechanism changed");
    assert!(metadata_works(&mut client));
    // Another principal fails the exchange and ends the connection.
    let bob = client.login(&login(SCRAM_256, "bob"));
    assert!(
        bob.as_ref()
            .is_err_and(|e| e.to_string().contains("error 58")),
        "{bob:?}"
    );
    let (_, frame) = client.frame(&MetadataRequest::default(), 9);
    let _ = client.write_raw(&frame);
    assert_eq!(client.peer_state(WAIT), PeerState::Closed);
    assert!(broker.log().contains("re-authentication as User:bob"));
}

#[test]
fn a_connection_past_its_session_lifetime_is_closed_on_its_next_request() {
    let (broker, port) = reauth_broker(LIFETIME);
    let mut client = connect(port);
    client.login(&login(SCRAM_256, "bob")).expect("bob logs in");
    assert!(metadata_works(&mut client));
    std::thread::sleep(LIFETIME + Duration::from_millis(300));
    let (_, frame) = client.frame(&MetadataRequest::default(), 9);
    let _ = client.write_raw(&frame);
    assert_eq!(client.peer_state(WAIT), PeerState::Closed);
    assert!(wait_until(WAIT, || broker
        .log()
        .contains("after the SASL session expired")));
    // Re-authentication is still the way out: a fresh connection renews in time.
    let mut client = connect(port);
    client
        .login(&login(SCRAM_256, "bob"))
        .expect("bob logs in again");
    std::thread::sleep(LIFETIME + Duration::from_millis(300));
    client
        .login(&login(SCRAM_256, "bob"))
        .expect("a handshake after expiry renews the session");
    assert!(metadata_works(&mut client));
}

/// confluent-kafka: produce one record every 200 ms for `seconds`, then
/// print how many were delivered and how many failed.
const STEADY_PRODUCER: &str = r#"
import sys, time
from confluent_kafka import Producer
bootstrap, seconds = sys.argv[1], float(sys.argv[2])
failed, delivered = [], []
producer = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "admin",
                     "sasl.password": "admin-secret", "message.timeout.ms": 10000})
deadline = time.time() + seconds
while time.time() < deadline:
    producer.produce("reauth", value=b"x",
                     on_delivery=lambda e, m: (failed if e else delivered).append(1))
    producer.poll(0.2)
producer.flush(20)
print(len(delivered), len(failed))
"#;

#[test]
fn librdkafka_re_authenticates_before_its_session_ends() {
    let test = "librdkafka_re_authenticates_before_its_session_ends";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (broker, port) = reauth_broker(Duration::from_millis(2000));
    let bootstrap = format!("127.0.0.1:{port}");
    let output = run_script(&python, STEADY_PRODUCER, &[&bootstrap, "7"]);
    let counts: Vec<u32> = output
        .split_whitespace()
        .map(|n| n.parse().expect("counts"))
        .collect();
    assert!(
        counts.len() == 2 && counts[0] > 10 && counts[1] == 0,
        "{output}"
    );
    // The producer kept one connection busy across three lifetimes: it
    // renewed each session, and none expired.
    assert!(
        broker.log().contains("re-authenticated"),
        "{}",
        broker.log_tail()
    );
    assert!(
        !broker.log().contains("after the SASL session expired"),
        "{}",
        broker.log_tail()
    );
}
