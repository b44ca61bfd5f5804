//! The contract every Kafka API handler keeps: its key, the versions it
//! serves, the request type it decodes, and one async `handle`.
//!
//! The broker's list of APIs ([`super::SUPPORTED_APIS`]) and its dispatch are
//! both generated from one registration list in `kafka/mod.rs`, so an API
//! cannot be advertised in ApiVersions without being dispatched.

use std::future::Future;
use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{Outcome, Request};
use crate::shard::Shard;

/// One Kafka API as ringlog serves it.
pub trait KafkaApi {
    const KEY: ApiKey;
    /// The versions `handle` implements; ApiVersions advertises exactly these.
    const VERSIONS: RangeInclusive<i16>;
    /// The request body, decoded before `handle` runs (a malformed body closes
    /// the connection with a logged reason, as Kafka does). `Default` and
    /// `Encodable` let tools and tests build one.
    type Body: Decodable + Encodable + Default;

    fn handle(
        shard: &Rc<Shard>,
        request: &Request,
        body: Self::Body,
    ) -> impl Future<Output = Outcome>;
}

/// Work done for one registered API, chosen at run time by its key, with
/// the API's types known at compile time (see `kafka::visit_api`).
pub trait ApiVisitor {
    type Output;
    fn visit<A: KafkaApi>(self) -> Self::Output;
}

/// Decodes the request's body as `A` expects it and runs `A`'s handler.
pub async fn run<A: KafkaApi>(shard: &Rc<Shard>, request: &Request) -> Outcome {
    match request.decode::<A::Body>() {
        Ok(body) => A::handle(shard, request, body).await,
        Err(outcome) => outcome,
    }
}

/// Declares a handler function as the [`KafkaApi`] `$name`: its key, its
/// versions and its request type. The function has the one handler
/// signature: `async fn(&Rc<Shard>, &Request, Body) -> Outcome`.
#[macro_export]
macro_rules! kafka_api {
    ($name:ident: $key:ident, $versions:expr, $body:ty => $handler:ident) => {
        pub struct $name;

        impl $crate::kafka::api::KafkaApi for $name {
            const KEY: kafka_protocol::messages::ApiKey = kafka_protocol::messages::ApiKey::$key;
            const VERSIONS: std::ops::RangeInclusive<i16> = $versions;
            type Body = $body;

            fn handle(
                shard: &std::rc::Rc<$crate::shard::Shard>,
                request: &$crate::kafka::Request,
                body: $body,
            ) -> impl std::future::Future<Output = $crate::kafka::Outcome> {
                $handler(shard, request, body)
            }
        }
    };
}

/// Generates [`super::SUPPORTED_APIS`] and `dispatch` from one list of
/// [`KafkaApi`] types.
macro_rules! register_apis {
    ($($api:path),* $(,)?) => {
        /// Every API ringlog implements, with the versions its handler supports.
        pub const SUPPORTED_APIS: &[(ApiKey, RangeInclusive<i16>)] = &[
            $((<$api as api::KafkaApi>::KEY, <$api as api::KafkaApi>::VERSIONS)),*
        ];

        /// Runs `visitor` for the API registered under `key`, if any.
        pub fn visit_api<V: api::ApiVisitor>(key: ApiKey, visitor: V) -> Option<V::Output> {
            $(
                if key == <$api as api::KafkaApi>::KEY {
                    return Some(visitor.visit::<$api>());
                }
            )*
            None
        }

        /// Runs the handler registered for `key`.
        async fn dispatch(key: ApiKey, shard: &Rc<Shard>, request: &Request) -> Outcome {
            $(
                if key == <$api as api::KafkaApi>::KEY {
                    return api::run::<$api>(shard, request).await;
                }
            )*
            // `split_request` admits only keys of SUPPORTED_APIS, made from the same list.
            Outcome::Close(format!("unsupported API {key:?}"))
        }
    };
}
pub(crate) use register_apis;
