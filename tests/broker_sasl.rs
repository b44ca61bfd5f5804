//! Listeners and SASL: a PLAINTEXT and a SASL_PLAINTEXT listener on one
//! broker; real clients (confluent-kafka) authenticate with PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512; SCRAM users are managed with KIP-554's
//! admin APIs and survive restarts; bad exchanges get Kafka's answers or a
//! logged close while the broker keeps serving others.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::python::{python_with, run_script};
use common::raw::{
    api_versions_request, authenticate, handshake, plain_token, PeerState, RawClient,
};
use common::{free_port, wait_until, Broker};
use kafka_protocol::messages::*;

const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
/// How long a test waits for a log line.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// Kafka's error codes for SASL.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A broker with the harness's PLAINTEXT listener, a SASL_PLAINTEXT one on
/// the returned port, and the admin user for both SCRAM mechanisms.
fn sasl_broker(extra: &[&str]) -> (Broker, u16) {
    let sasl_port = free_port();
    let mut builder = Broker::builder()
        .arg("--listener")
        .arg(&format!("SASL_PLAINTEXT://127.0.0.1:{sasl_port}"));
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        builder = builder.arg("--add-scram").arg(&format!(
            "{mechanism}=[name={ADMIN_USER},password={ADMIN_PASSWORD}]"
        ));
    }
    for arg in extra {
        builder = builder.arg(arg);
    }
    (builder.start(), sasl_port)
}

fn sasl_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn metadata_broker(client: &mut RawClient) -> (String, i32) {
    let response = client.call(&MetadataRequest::default().with_topics(Some(vec![])), 9);
    let broker = &response.brokers[0];
    (broker.host.to_string(), broker.port)
}

/// confluent-kafka: for each mechanism, produce three records to a topic of
/// its own and read them back; prints `MECHANISM COUNT` per mechanism.
const PRODUCE_CONSUME: &str = r#"
import sys
from confluent_kafka import Producer, Consumer
bootstrap, user, password = sys.argv[1:4]
for mechanism in sys.argv[4:]:
    auth = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    topic = "sasl-" + mechanism.lower()
    producer = Producer(dict(auth))
    for i in range(3):
        producer.produce(topic, value=b"v%d" % i)
    assert producer.flush(20) == 0, "undelivered records"
    consumer = Consumer(dict(auth, **{"group.id": "g-" + topic, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    seen = []
    for _ in range(60):
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append(message.value())
        if len(seen) == 3:
            break
    consumer.close()
    assert seen == [b"v0", b"v1", b"v2"], seen
    print(mechanism, len(seen))
"#;

#[test]
fn plain_and_scram_clients_produce_and_consume_on_a_sasl_listener() {
    let test = "plain_and_scram_clients_produce_and_consume_on_a_sasl_listener";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (broker, sasl_port) = sasl_broker(&[]);
    let bootstrap = format!("127.0.0.1:{sasl_port}");
    let output = run_script(
        &python,
        PRODUCE_CONSUME,
        &[
            &bootstrap,
            ADMIN_USER,
            ADMIN_PASSWORD,
            "PLAIN",
            "SCRAM-SHA-256",
            "SCRAM-SHA-512",
        ],
    );
    assert_eq!(
        output.lines().collect::<Vec<_>>(),
        ["PLAIN 3", "SCRAM-SHA-256 3", "SCRAM-SHA-512 3"]
    );
    // The PLAINTEXT listener still serves clients without credentials.
    let mut plain = RawClient::connect(broker.addr());
    assert_eq!(plain.call(&api_versions_request(3), 3).error_code, 0);
}

/// Connects with the given credentials and prints whether listing topics
/// worked and whether librdkafka reported an authentication error.
const TRY_LOGIN: &str = r#"
import sys
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
bootstrap, mechanism, user, password = sys.argv[1:5]
errors = []
admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
                     "error_cb": lambda e: errors.append(e.code())})
try:
    admin.list_topics(timeout=5)
    listed = True
except KafkaException as e:
    errors.append(e.args[0].code())
    listed = False
admin.poll(1)
print("listed" if listed else "refused",
      "auth-error" if KafkaError._AUTHENTICATION in errors else "no-auth-error")
"#;

#[test]
fn wrong_passwords_and_unknown_users_are_refused_while_others_are_served() {
    let test = "wrong_passwords_and_unknown_users_are_refused_while_others_are_served";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (broker, sasl_port) = sasl_broker(&[]);
    let bootstrap = format!("127.0.0.1:{sasl_port}");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        for (user, password) in [(ADMIN_USER, "wrong"), ("nobody", ADMIN_PASSWORD)] {
            let output = run_script(&python, TRY_LOGIN, &[&bootstrap, mechanism, user, password]);
            assert_eq!(
                output.trim(),
                "refused auth-error",
                "{mechanism} {user}/{password}"
            );
        }
        let output = run_script(
            &python,
            TRY_LOGIN,
            &[&bootstrap, mechanism, ADMIN_USER, ADMIN_PASSWORD],
        );
        assert!(output.starts_with("listed"), "{mechanism}: {output}");
    }
    assert!(broker.log().contains("SASL authentication failed"));
}

/// Makes `alice` with SCRAM-SHA-512 through AlterUserScramCredentials,
/// then describes her.
const ALTER_USERS: &str = r#"
import sys
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion, UserScramCredentialDeletion)
bootstrap, user, password, action = sys.argv[1:5]
admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": password})
info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
if action == "create":
    change = UserScramCredentialUpsertion("alice", info, b"alice-secret")
else:
    change = UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512)
for future in admin.alter_user_scram_credentials([change]).values():
    future.result(timeout=20)
if action == "create":
    for name, future in admin.describe_user_scram_credentials(["alice"]).items():
        for credential in future.result(timeout=20).scram_credential_infos:
            print(name, credential.mechanism.name, credential.iterations)
"#;

#[test]
fn users_made_through_alter_user_scram_credentials_survive_a_restart() {
    let test = "users_made_through_alter_user_scram_credentials_survive_a_restart";
    let Some(python) = python_with(test, &["confluent_kafka"]) else {
        return;
    };
    let (mut broker, sasl_port) = sasl_broker(&[]);
    let bootstrap = format!("127.0.0.1:{sasl_port}");
    let described = run_script(
        &python,
        ALTER_USERS,
        &[&bootstrap, ADMIN_USER, ADMIN_PASSWORD, "create"],
    );
    assert_eq!(described.trim(), "alice SCRAM_SHA_512 8192");
    broker.restart();
    let output = run_script(
        &python,
        PRODUCE_CONSUME,
        &[
            &bootstrap,
            "alice",
            "alice-secret",
            "SCRAM-SHA-512",
            "PLAIN",
        ],
    );
    assert_eq!(output.lines().count(), 2, "{output}");
    let credentials = std::fs::read(broker.data_dir().join("scram-credentials.meta"))
        .expect("the credentials file exists");
    assert!(
        !credentials.windows(12).any(|w| w == b"alice-secret"),
        "passwords are never stored"
    );
    run_script(
        &python,
        ALTER_USERS,
        &[&bootstrap, ADMIN_USER, ADMIN_PASSWORD, "delete"],
    );
    let output = run_script(
        &python,
        TRY_LOGIN,
        &[&bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"],
    );
    assert_eq!(output.trim(), "refused auth-error");
}

#[test]
fn metadata_advertises_the_listener_the_client_came_in_on() {
    let (broker, sasl_port) = sasl_broker(&[
        "--advertised-listener",
        "SASL_PLAINTEXT://sasl.example:19093",
    ]);
    let mut plain = RawClient::connect(broker.addr());
    assert_eq!(
        metadata_broker(&mut plain),
        ("127.0.0.1".to_string(), broker.port() as i32)
    );
    let mut sasl = RawClient::connect(sasl_addr(sasl_port));
    assert_eq!(handshake(&mut sasl, "PLAIN", 1).error_code, 0);
    let answer = authenticate(&mut sasl, &plain_token(ADMIN_USER, ADMIN_PASSWORD));
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        metadata_broker(&mut sasl),
        ("sasl.example".to_string(), 19093)
    );
}

#[test]
fn a_v0_handshake_takes_bare_tokens() {
    let (broker, sasl_port) = sasl_broker(&[]);
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    assert_eq!(handshake(&mut client, "PLAIN", 0).error_code, 0);
    let token = plain_token(ADMIN_USER, ADMIN_PASSWORD);
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&token);
    client.write_raw(&frame).expect("sending the bare token");
    let answer = client.read_frame().expect("an empty bare answer");
    assert!(answer.is_empty(), "PLAIN's last message is empty");
    assert_eq!(metadata_broker(&mut client).1, sasl_port as i32);
    drop(broker);
}

#[test]
fn out_of_order_and_disabled_sasl_steps_get_kafkas_errors() {
    let (broker, sasl_port) = sasl_broker(&["--sasl-enabled-mechanisms", "SCRAM-SHA-256"]);
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    // ApiVersions is served before authentication.
    assert_eq!(client.call(&api_versions_request(3), 3).error_code, 0);
    let early = authenticate(&mut client, b"n,,n=admin,r=abc");
    assert_eq!(
        early.error_code, ILLEGAL_SASL_STATE,
        "SaslAuthenticate before SaslHandshake"
    );
    let refused = handshake(&mut client, "PLAIN", 1);
    assert_eq!(refused.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<String> = refused.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["SCRAM-SHA-256"]);
    // The connection may still pick an enabled mechanism.
    assert_eq!(handshake(&mut client, "SCRAM-SHA-256", 1).error_code, 0);
    assert_eq!(
        handshake(&mut client, "SCRAM-SHA-256", 1).error_code,
        ILLEGAL_SASL_STATE
    );
    // On the PLAINTEXT listener SASL has no place.
    let mut plain = RawClient::connect(broker.addr());
    assert_eq!(
        handshake(&mut plain, "SCRAM-SHA-256", 1).error_code,
        ILLEGAL_SASL_STATE
    );
}

/// Starts a SCRAM-SHA-256 exchange for the admin; returns the server-first message.
fn scram_first(client: &mut RawClient) -> String {
    assert_eq!(handshake(client, "SCRAM-SHA-256", 1).error_code, 0);
    let first = authenticate(client, b"n,,n=admin,r=clientnonce");
    assert_eq!(first.error_code, 0, "server-first");
    String::from_utf8(first.auth_bytes.to_vec()).expect("SCRAM messages are text")
}

#[test]
fn scram_exchanges_with_a_wrong_nonce_or_proof_fail_and_close() {
    let (broker, sasl_port) = sasl_broker(&[]);
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    let server_first = scram_first(&mut client);
    let nonce = server_first
        .split(',')
        .find_map(|f| f.strip_prefix("r="))
        .expect("server-first has a nonce");
    assert!(nonce.starts_with("clientnonce") && nonce.len() > "clientnonce".len());
    // A proof of the right length (32 bytes), but not the right one.
    let wrong_proof = "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let answer = authenticate(
        &mut client,
        format!("c=biws,r={nonce},{wrong_proof}").as_bytes(),
    );
    assert_eq!(answer.error_code, SASL_AUTHENTICATION_FAILED, "wrong proof");
    // Nothing but SASL is served after a failure.
    let (_, frame) = client.frame(&MetadataRequest::default(), 9);
    client.write_raw(&frame).expect("sending");
    assert_eq!(client.peer_state(LOG_WAIT), PeerState::Closed);

    let mut client = RawClient::connect(sasl_addr(sasl_port));
    scram_first(&mut client);
    let answer = authenticate(
        &mut client,
        format!("c=biws,r=clientnonceXYZ,{wrong_proof}").as_bytes(),
    );
    assert_eq!(answer.error_code, SASL_AUTHENTICATION_FAILED, "wrong nonce");
    assert!(wait_until(LOG_WAIT, || broker
        .log()
        .contains("nonce differs")));
    assert!(wait_until(LOG_WAIT, || broker
        .log()
        .contains("invalid client proof")));
}

#[test]
fn requests_before_authentication_and_huge_tokens_close_the_connection() {
    let (broker, sasl_port) = sasl_broker(&[]);
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    let (_, frame) = client.frame(&MetadataRequest::default(), 9);
    client.write_raw(&frame).expect("sending");
    assert_eq!(client.peer_state(LOG_WAIT), PeerState::Closed);
    assert!(wait_until(LOG_WAIT, || broker.log().contains(
        "Metadata request before SASL authentication completed"
    )));

    // A token far over the pre-authentication limit is refused from its length alone.
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    assert_eq!(handshake(&mut client, "PLAIN", 1).error_code, 0);
    client
        .write_raw(&(64u32 << 20).to_be_bytes())
        .expect("sending a length prefix");
    assert_eq!(client.peer_state(LOG_WAIT), PeerState::Closed);
    assert!(wait_until(LOG_WAIT, || broker
        .log()
        .contains("exceeds the limit of 524288 bytes")));

    // Others are still served.
    let mut client = RawClient::connect(sasl_addr(sasl_port));
    assert_eq!(handshake(&mut client, "PLAIN", 1).error_code, 0);
    let answer = authenticate(&mut client, &plain_token(ADMIN_USER, ADMIN_PASSWORD));
    assert_eq!(answer.error_code, 0);
}

#[test]
fn each_sasl_listener_offers_its_own_mechanisms() {
    let client_port = free_port();
    let client_listener = format!("CLIENT://127.0.0.1:{client_port}");
    let (broker, sasl_port) = sasl_broker(&[
        "--listener",
        &client_listener,
        "--listener-security-protocol-map",
        "CLIENT:SASL_PLAINTEXT",
        "--listener-sasl-mechanisms",
        "client:SCRAM-SHA-512",
    ]);
    let mut client = RawClient::connect_negotiated(sasl_addr(client_port));
    let refused = handshake(&mut client, "PLAIN", 1);
    assert_eq!(refused.error_code, UNSUPPORTED_SASL_MECHANISM);
    let offered: Vec<String> = refused.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["SCRAM-SHA-512"]);
    let scram_512 = ringlog::client::SaslLogin {
        mechanism: ringlog::security::SaslMechanism::Scram(
            ringlog::security::ScramMechanism::Sha512,
        ),
        user: ADMIN_USER.to_string(),
        password: ADMIN_PASSWORD.to_string(),
    };
    client.login(&scram_512).expect("SCRAM-SHA-512 on CLIENT");
    assert_eq!(metadata_broker(&mut client).1, client_port as i32);
    // The other SASL listener keeps the broker-wide list.
    let mut other = RawClient::connect(sasl_addr(sasl_port));
    assert_eq!(handshake(&mut other, "PLAIN", 1).error_code, 0);
    drop(broker);

    // Only SASL listeners have mechanisms.
    let run = common::run_bounded(
        std::process::Command::new(common::broker_binary()).args([
            "--listen",
            "127.0.0.1:1",
            "--listener-sasl-mechanisms",
            "PLAINTEXT:PLAIN",
            "--data-dir",
            "/nonexistent-ringlog-data",
        ]),
        LOG_WAIT,
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("not a SASL listener"), "{}", run.stderr);
}
