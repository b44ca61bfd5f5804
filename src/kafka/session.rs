//! One client connection as the Kafka layer sees it: the listener it came
//! in on, the client's host, and where it stands with SASL. The
//! authenticated principal lives here, so every handler (and the
//! authorizer) sees who sent a request.

use std::cell::RefCell;
use std::rc::Rc;

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

/// Where a connection stands with SASL.
#[derive(Debug)]
enum Auth {
    /// Authenticated, or on a listener without SASL: requests run as this.
    Done(Rc<Principal>),
    /// A SASL listener before SaslHandshake.
    Handshake,
    /// SaslHandshake chose the mechanism; its first token comes next, in a
    /// SaslAuthenticate request, or (after a v0 handshake) as a bare frame.
    FirstToken {
        mechanism: SaslMechanism,
        bare_tokens: bool,
    },
    /// SCRAM: server-first sent, client-final expected.
    ScramFinal {
        server: Box<ScramServer>,
        bare_tokens: bool,
    },
    /// Authentication failed: nothing more is served.
    Failed,
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
    Authenticated(Rc<Principal>, Vec<u8>),
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
            Some(principal) => Auth::Done(Rc::new(principal)),
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
        match &*self.auth.borrow() {
            Auth::Done(principal) => Some(principal.clone()),
            _ => None,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(&*self.auth.borrow(), Auth::Done(_))
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
        let (step, next) = match state {
            Auth::FirstToken {
                mechanism,
                bare_tokens,
            } => first_token(shard, mechanism, token, bare_tokens),
            Auth::ScramFinal { server, .. } => {
                let user = server.user().to_string();
                match server.finish(token) {
                    Ok(server_final) => {
                        let principal = Rc::new(Principal::user(&user));
                        (
                            SaslStep::Authenticated(principal.clone(), server_final.into_bytes()),
                            Auth::Done(principal),
                        )
                    }
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

fn first_token(
    shard: &Shard,
    mechanism: SaslMechanism,
    token: &[u8],
    bare_tokens: bool,
) -> (SaslStep, Auth) {
    let credentials = shard.security.credentials();
    match mechanism {
        SaslMechanism::Plain => {
            let parsed = match plain::parse(token) {
                Ok(parsed) => parsed,
                Err(error) => return (SaslStep::Failed(error.to_string()), Auth::Failed),
            };
            let known = credentials
                .of_user(parsed.user)
                .next()
                .is_some_and(|c| scram::password_matches(c, parsed.password));
            if !known {
                let reason = format!(
                    "PLAIN user {:?}: unknown user or wrong password",
                    parsed.user
                );
                return (SaslStep::Failed(reason), Auth::Failed);
            }
            let principal = Rc::new(Principal::user(parsed.user));
            (
                SaslStep::Authenticated(principal.clone(), Vec::new()),
                Auth::Done(principal),
            )
        }
        SaslMechanism::Scram(scram_mechanism) => {
            let started = ScramServer::start(
                scram_mechanism,
                token,
                |user| credentials.get(user, scram_mechanism).cloned(),
                None,
            );
            match started {
                Ok((server, server_first)) => (
                    SaslStep::Challenge(server_first.into_bytes()),
                    Auth::ScramFinal {
                        server: Box::new(server),
                        bare_tokens,
                    },
                ),
                Err(error @ ScramError::Random(_)) => {
                    tracing::error!(%error, "SCRAM exchange cannot start");
                    (SaslStep::Failed(error.to_string()), Auth::Failed)
                }
                Err(error) => (SaslStep::Failed(error.to_string()), Auth::Failed),
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
