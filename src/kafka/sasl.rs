//! SaslHandshake (v0-1) and SaslAuthenticate (v0-2): the SASL exchange of a
//! connection on a SASL listener (KIP-43, KIP-152). Before it succeeds only
//! ApiVersions and these two are served; anything else closes the connection.
//! Each SASL listener offers its own mechanisms or the broker's. From
//! SaslAuthenticate v1 the answer carries the session lifetime, and a
//! client re-authenticates before it ends (KIP-368).

use std::ops::RangeInclusive;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::session::{listener_of, SaslStep, Session};
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::SaslMechanism;
use crate::shard::Shard;

pub const HANDSHAKE_VERSIONS: RangeInclusive<i16> = 0..=1;
pub const AUTHENTICATE_VERSIONS: RangeInclusive<i16> = 0..=2;

/// What a client that failed is told; the log gets the reason.
const FAILED_MESSAGE: &str = "Authentication failed: invalid credentials";

/// The APIs a connection may use before it has authenticated.
pub fn served_before_authentication(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
    )
}

/// SaslAuthenticate's first version with `session_lifetime_ms` (KIP-368).
const SESSION_LIFETIME_VERSION: i16 = 1;

fn enabled_mechanisms<'a>(shard: &'a Shard, session: &Session) -> &'a [SaslMechanism] {
    let listener = listener_of(shard, session.listener);
    shard.config.security.mechanisms_of(&listener.name)
}

pub async fn handle_handshake(
    shard: &Rc<Shard>,
    request: &Request,
    body: SaslHandshakeRequest,
) -> Outcome {
    let session = &request.session;
    let enabled = enabled_mechanisms(shard, session);
    let response = SaslHandshakeResponse::default().with_mechanisms(
        enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect(),
    );
    let listener = listener_of(shard, session.listener);
    if !listener.protocol.uses_sasl() {
        let error = ResponseError::IllegalSaslState.code();
        return request.respond(&response.with_error_code(error));
    }
    let wanted = SaslMechanism::from_name(body.mechanism.as_str())
        .filter(|mechanism| enabled.contains(mechanism));
    let Some(mechanism) = wanted else {
        tracing::info!(shard = shard.id.index(), client = %session.client_host, mechanism = %body.mechanism.as_str(), "SASL mechanism not enabled");
        let error = ResponseError::UnsupportedSaslMechanism.code();
        return request.respond(&response.with_error_code(error));
    };
    // KIP-152: after a v0 handshake the tokens come as bare frames.
    let bare_tokens = request.version() == 0;
    match session.begin_handshake(mechanism, bare_tokens) {
        Ok(()) => request.respond(&response),
        Err(why) => {
            tracing::info!(shard = shard.id.index(), client = %session.client_host, why, "unexpected SaslHandshake");
            request.respond(&response.with_error_code(ResponseError::IllegalSaslState.code()))
        }
    }
}

pub async fn handle_authenticate(
    shard: &Rc<Shard>,
    request: &Request,
    body: SaslAuthenticateRequest,
) -> Outcome {
    let session = &request.session;
    let step = session.sasl_token(shard, &body.auth_bytes);
    let response = SaslAuthenticateResponse::default();
    match step {
        SaslStep::Challenge(bytes) => request.respond(&response.with_auth_bytes(bytes.into())),
        SaslStep::Authenticated {
            principal,
            bytes,
            lifetime_ms,
            renewed,
        } => {
            if renewed {
                tracing::debug!(shard = shard.id.index(), client = %session.client_host, %principal, "re-authenticated");
            } else {
                tracing::debug!(shard = shard.id.index(), client = %session.client_host, %principal, "authenticated");
            }
            let mut response = response.with_auth_bytes(bytes.into());
            if request.version() >= SESSION_LIFETIME_VERSION {
                response.session_lifetime_ms = i64::try_from(lifetime_ms).unwrap_or(i64::MAX);
            }
            request.respond(&response)
        }
        SaslStep::Failed(reason) => {
            log_failure(shard, session, &reason);
            delay_failure(shard).await;
            request.respond(
                &response
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(FAILED_MESSAGE))),
            )
        }
        SaslStep::IllegalState(why) => {
            tracing::info!(shard = shard.id.index(), client = %session.client_host, why, "unexpected SaslAuthenticate");
            request.respond(
                &response
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(why))),
            )
        }
    }
}

/// A token sent after a v0 SaslHandshake: a bare frame, answered with a
/// bare frame; a failure closes the connection (there is no error field).
pub async fn handle_bare_token(shard: Rc<Shard>, session: Rc<Session>, token: Bytes) -> Outcome {
    let bytes = match session.sasl_token(&shard, &token) {
        SaslStep::Challenge(bytes) | SaslStep::Authenticated { bytes, .. } => bytes,
        SaslStep::Failed(reason) => {
            log_failure(&shard, &session, &reason);
            delay_failure(&shard).await;
            return Outcome::Close(format!("SASL authentication failed: {reason}"));
        }
        SaslStep::IllegalState(why) => return Outcome::Close(why.to_string()),
    };
    let mut frame = BytesMut::with_capacity(4 + bytes.len());
    frame.put_u32(bytes.len() as u32);
    frame.put_slice(&bytes);
    Outcome::Respond(vec![frame.freeze()])
}

fn log_failure(shard: &Shard, session: &Session, reason: &str) {
    tracing::info!(shard = shard.id.index(), client = %session.client_host, %reason, "SASL authentication failed");
}

/// `connection.failed.authentication.delay.ms`: slows down password guessing.
async fn delay_failure(shard: &Shard) {
    let delay = shard.config.security.failed_authentication_delay_ms;
    if delay > 0 {
        glommio::timer::sleep(Duration::from_millis(delay)).await;
    }
}

kafka_api!(SaslHandshake: SaslHandshake, HANDSHAKE_VERSIONS, SaslHandshakeRequest => handle_handshake);

kafka_api!(SaslAuthenticate: SaslAuthenticate, AUTHENTICATE_VERSIONS, SaslAuthenticateRequest => handle_authenticate);
