//! One client connection as the Kafka layer sees it: the listener it came
//! in on, the client's host, and where it stands with SASL. The
//! authenticated principal lives here, so every handler (and the
//! authorizer) sees who sent a request.
//!
//! KIP-368: a SASL session may carry an expiry (`connections.max.reauth.ms`);
//! the client re-authenticates over the same connection, with the same
//! mechanism and as the same principal, before it passes.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::ListenerConfig;
use crate::net::{self, Outcome, Peer};
use crate::security::scram::{ScramError, ScramServer};
use crate::security::{plain, scram, Principal, SaslMechanism};
use crate::shard::Shard;

/// The largest frame a client may send before it has authenticated
/// (Kafka's `sasl.server.max.receive.size` default): a SASL token is
/// bounded before a byte of it is buffered.
pub const UNAUTHENTICATED_FRAME_BYTES_MAX: usize = 512 * 1024;

/// An authenticated connection (or one on a listener without SASL).
#[derive(Debug, Clone)]
struct Authenticated {
    principal: Rc<Principal>,
    /// How it authenticated; `None` without SASL.
    mechanism: Option<SaslMechanism>,
    /// When the SASL session ends unless renewed (KIP-368).
    expires: Option<Instant>,
}

/// Where a connection stands with SASL.
#[derive(Debug)]
enum Auth {
    /// Authenticated, or on a listener without SASL: requests run as this.
    Done(Authenticated),
    /// A SASL listener before SaslHandshake.
    Handshake,
    /// SaslHandshake chose the mechanism; its first token comes next, in a
    /// SaslAuthenticate request, or (after a v0 handshake) as a bare frame.
    /// `renewing` is the session being re-authenticated, if any.
    FirstToken {
        mechanism: SaslMechanism,
        bare_tokens: bool,
        renewing: Option<Authenticated>,
    },
    /// SCRAM: server-first sent, client-final expected.
    ScramFinal {
        server: Box<ScramServer>,
        bare_tokens: bool,
        renewing: Option<Authenticated>,
    },
    /// Authentication failed: nothing more is served.
    Failed,
}

impl Auth {
    /// The session requests run under: the finished one, or the one being
    /// renewed while a re-authentication is under way.
    fn current(&self) -> Option<&Authenticated> {
        match self {
            Auth::Done(done) => Some(done),
            Auth::FirstToken { renewing, .. } | Auth::ScramFinal { renewing, .. } => {
                renewing.as_ref()
            }
            Auth::Handshake | Auth::Failed => None,
        }
    }
}

pub struct Session {
    /// Index into `Config::listeners`.
    pub listener: usize,
    /// The client's address as Kafka reports it (`/<ip>`).
    pub client_host: Rc<str>,
    auth: RefCell<Auth>,
}

/// What one SASL token did.
pub enum SaslStep {
    /// Send these bytes back and wait for the next token.
    Challenge(Vec<u8>),
    /// Authenticated as the principal; these bytes are the last message.
    /// `lifetime_ms` is how long the session lasts (0: no limit).
    Authenticated {
        principal: Rc<Principal>,
        bytes: Vec<u8>,
        lifetime_ms: u64,
        renewed: bool,
    },
    /// Wrong credentials or a malformed exchange (the reason is for the log).
    Failed(String),
    /// A token where none was expected.
    IllegalState(&'static str),
}

impl Session {
    /// A connection known as `principal`, or (`None`) one that must
    /// authenticate with SASL first.
    pub fn new(listener: usize, client_host: Rc<str>, principal: Option<Principal>) -> Session {
        let auth = match principal {
            Some(principal) => Auth::Done(Authenticated {
                principal: Rc::new(principal),
                mechanism: None,
                expires: None,
            }),
            None => Auth::Handshake,
        };
        Session {
            listener,
            client_host,
            auth: RefCell::new(auth),
        }
    }

    /// The principal requests run as; `None` until authenticated.
    pub fn principal(&self) -> Option<Rc<Principal>> {
        self.auth.borrow().current().map(|a| a.principal.clone())
    }

    pub fn is_authenticated(&self) -> bool {
        self.auth.borrow().current().is_some()
    }

    /// Whether the SASL session has passed its lifetime without being
    /// renewed (KIP-368): then only a re-authentication may follow.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.auth
            .borrow()
            .current()
            .and_then(|a| a.expires)
            .is_some_and(|expires| now >= expires)
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_bare_token(&self) -> bool {
        matches!(
            &*self.auth.borrow(),
            Auth::FirstToken {
                bare_tokens: true,
                ..
            } | Auth::ScramFinal {
                bare_tokens: true,
                ..
            }
        )
    }

    /// SaslHandshake: whether `mechanism` may start now.
    pub fn begin_handshake(
        &self,
        mechanism: SaslMechanism,
        bare_tokens: bool,
    ) -> Result<(), &'static str> {
        let mut auth = self.auth.borrow_mut();
        match &*auth {
            Auth::Handshake => {
                *auth = Auth::FirstToken {
                    mechanism,
                    bare_tokens,
                    renewing: None,
                };
                Ok(())
            }
            // KIP-368 re-authentication: tokens in SaslAuthenticate, and
            // the mechanism of the first authentication.
            Auth::Done(done) if done.mechanism.is_some() => {
                if bare_tokens {
                    return Err("re-authentication needs SaslHandshake v1 or later");
                }
                if done.mechanism != Some(mechanism) {
                    return Err("re-authentication must keep the SASL mechanism");
                }
                let renewing = Some(done.clone());
                *auth = Auth::FirstToken {
                    mechanism,
                    bare_tokens,
                    renewing,
                };
                Ok(())
            }
            Auth::Done(_) => Err("already authenticated"),
            Auth::Failed => Err("authentication already failed"),
            Auth::FirstToken { .. } | Auth::ScramFinal { .. } => {
                Err("a SASL exchange is already under way")
            }
        }
    }

    /// Runs one SASL token through the exchange. Synchronous, so tokens of
    /// one connection are taken in the order they arrived.
    pub fn sasl_token(&self, shard: &Shard, token: &[u8]) -> SaslStep {
        let state = std::mem::replace(&mut *self.auth.borrow_mut(), Auth::Failed);
        let lifetime_ms = shard.config.security.connections_max_reauth_ms;
        let (step, next) = match state {
            Auth::FirstToken {
                mechanism,
                bare_tokens,
                renewing,
            } => match first_token(shard, mechanism, token) {
                FirstStep::Done(principal, bytes) => {
                    finish(principal, mechanism, bytes, renewing, lifetime_ms)
                }
                FirstStep::Scram(server, bytes) => (
                    SaslStep::Challenge(bytes),
                    Auth::ScramFinal {
                        server,
                        bare_tokens,
                        renewing,
                    },
                ),
                FirstStep::Failed(reason) => (SaslStep::Failed(reason), Auth::Failed),
            },
            Auth::ScramFinal {
                server, renewing, ..
            } => {
                let user = server.user().to_string();
                let mechanism = SaslMechanism::Scram(server.mechanism());
                match server.finish(token) {
                    Ok(server_final) => finish(
                        Rc::new(Principal::user(&user)),
                        mechanism,
                        server_final.into_bytes(),
                        renewing,
                        lifetime_ms,
                    ),
                    Err(error) => (
                        SaslStep::Failed(format!("user {user:?}: {error}")),
                        Auth::Failed,
                    ),
                }
            }
            Auth::Handshake => (
                SaslStep::IllegalState("SaslAuthenticate before SaslHandshake"),
                Auth::Handshake,
            ),
            done @ Auth::Done(_) => (SaslStep::IllegalState("already authenticated"), done),
            Auth::Failed => (
                SaslStep::IllegalState("authentication already failed"),
                Auth::Failed,
            ),
        };
        *self.auth.borrow_mut() = next;
        step
    }
}

/// A successful exchange: the new session, or for a re-authentication the
/// renewed one, which must be the same principal (KIP-368).
fn finish(
    principal: Rc<Principal>,
    mechanism: SaslMechanism,
    bytes: Vec<u8>,
    renewing: Option<Authenticated>,
    lifetime_ms: u64,
) -> (SaslStep, Auth) {
    if let Some(previous) = &renewing {
        if previous.principal != principal {
            let reason = format!(
                "re-authentication as {principal} on a connection of {}",
                previous.principal
            );
            return (SaslStep::Failed(reason), Auth::Failed);
        }
    }
    let expires = (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms));
    let step = SaslStep::Authenticated {
        principal: principal.clone(),
        bytes,
        lifetime_ms,
        renewed: renewing.is_some(),
    };
    let done = Authenticated {
        principal,
        mechanism: Some(mechanism),
        expires,
    };
    (step, Auth::Done(done))
}

/// What a mechanism's first token did.
enum FirstStep {
    /// PLAIN: authenticated; these bytes are the answer.
    Done(Rc<Principal>, Vec<u8>),
    /// SCRAM: server-first to send; client-final comes next.
    Scram(Box<ScramServer>, Vec<u8>),
    Failed(String),
}

fn first_token(shard: &Shard, mechanism: SaslMechanism, token: &[u8]) -> FirstStep {
    let credentials = shard.security.credentials();
    match mechanism {
        SaslMechanism::Plain => {
            let parsed = match plain::parse(token) {
                Ok(parsed) => parsed,
                Err(error) => return FirstStep::Failed(error.to_string()),
            };
            let known = credentials
                .of_user(parsed.user)
                .next()
                .is_some_and(|c| scram::password_matches(c, parsed.password));
            if !known {
                return FirstStep::Failed(format!(
                    "PLAIN user {:?}: unknown user or wrong password",
                    parsed.user
                ));
            }
            FirstStep::Done(Rc::new(Principal::user(parsed.user)), Vec::new())
        }
        SaslMechanism::Scram(scram_mechanism) => {
            let started = ScramServer::start(
                scram_mechanism,
                token,
                |user| credentials.get(user, scram_mechanism).cloned(),
                None,
            );
            match started {
                Ok((server, server_first)) => {
                    FirstStep::Scram(Box::new(server), server_first.into_bytes())
                }
                Err(error @ ScramError::Random(_)) => {
                    tracing::error!(%error, "SCRAM exchange cannot start");
                    FirstStep::Failed(error.to_string())
                }
                Err(error) => FirstStep::Failed(error.to_string()),
            }
        }
    }
}

/// The Kafka layer as the connection loop's [`net::Handler`].
pub struct KafkaHandler {
    shard: Rc<Shard>,
}

impl KafkaHandler {
    pub fn new(shard: Rc<Shard>) -> KafkaHandler {
        KafkaHandler { shard }
    }
}

impl net::Handler for KafkaHandler {
    type Connection = Session;

    fn open(&self, peer: &Peer) -> Rc<Session> {
        // Kafka reports a member's host as "/<ip>" in DescribeGroups.
        let client_host: Rc<str> = peer
            .address
            .map_or_else(|| "/unknown".into(), |p| format!("/{}", p.ip()).into());
        // SSL listeners: the client certificate's subject, as Kafka's
        // default principal builder names it; no certificate: ANONYMOUS.
        let principal = if listener_of(&self.shard, peer.listener).protocol.uses_sasl() {
            None
        } else {
            Some(
                peer.client_subject
                    .as_deref()
                    .map_or_else(Principal::anonymous, Principal::user),
            )
        };
        Rc::new(Session::new(peer.listener, client_host, principal))
    }

    fn frame_bytes_max(&self, session: &Session) -> usize {
        if session.is_authenticated() {
            self.shard.config.request_bytes_max as usize
        } else {
            UNAUTHENTICATED_FRAME_BYTES_MAX.min(self.shard.config.request_bytes_max as usize)
        }
    }

    fn handle(
        &self,
        frame: Bytes,
        session: &Rc<Session>,
    ) -> impl std::future::Future<Output = Outcome> + 'static {
        super::handle(self.shard.clone(), frame, session.clone())
    }
}

/// The listener a session came in on (the first one for a session made
/// outside a listener, as the fuzz entry points do).
pub fn listener_of(shard: &Shard, listener: usize) -> &ListenerConfig {
    let listeners = &shard.config.listeners;
    listeners
        .get(listener)
        .or_else(|| listeners.first())
        .expect("a validated configuration has at least one listener")
}
