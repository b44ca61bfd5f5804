//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! Kafka's admin clients manage SCRAM users with these. The client sends a
//! salted password (never the password); the broker keeps only the keys
//! derived from it.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::require_cluster;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::Operation;
use crate::security::credentials::CredentialChange;
use crate::security::scram::{ITERATIONS_MAX, ITERATIONS_MIN};
use crate::security::{CredentialTable, ScramMechanism};
use crate::shard::Shard;

pub const DESCRIBE_VERSIONS: RangeInclusive<i16> = 0..=0;
pub const ALTER_VERSIONS: RangeInclusive<i16> = 0..=0;

fn message(text: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(text))
}

fn describe_user(table: &CredentialTable, user: &str) -> DescribeUserScramCredentialsResult {
    let result = DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_string()));
    let infos: Vec<CredentialInfo> = table
        .users()
        .find(|(name, _)| *name == user)
        .map(|(_, mechanisms)| {
            mechanisms
                .values()
                .map(|c| {
                    CredentialInfo::default()
                        .with_mechanism(c.mechanism.wire_type())
                        .with_iterations(c.iterations as i32)
                })
                .collect()
        })
        .unwrap_or_default();
    if infos.is_empty() {
        return result
            .with_error_code(ResponseError::ResourceNotFound.code())
            .with_error_message(message(format!(
                "Attempt to describe a user credential that does not exist: {user}"
            )));
    }
    result.with_credential_infos(infos)
}

pub async fn handle_describe(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeUserScramCredentialsRequest,
) -> Outcome {
    if let Err(error) = require_cluster(shard, request, Operation::Describe) {
        let response = DescribeUserScramCredentialsResponse::default();
        return request.respond(&response.with_error_code(error.code()));
    }
    let table = shard.security.credentials();
    let results = match body.users {
        // Null or empty: every user.
        None => table
            .users()
            .map(|(user, _)| describe_user(&table, user))
            .collect(),
        Some(users) if users.is_empty() => table
            .users()
            .map(|(user, _)| describe_user(&table, user))
            .collect(),
        Some(users) => {
            let mut seen = HashSet::new();
            let duplicated: HashSet<&str> = users
                .iter()
                .filter(|u| !seen.insert(u.name.as_str()))
                .map(|u| u.name.as_str())
                .collect();
            let mut answered = HashSet::new();
            users
                .iter()
                .filter(|u| answered.insert(u.name.as_str()))
                .map(|u| {
                    let user = u.name.as_str();
                    if duplicated.contains(user) {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(u.name.clone())
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(message(format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                            )))
                    } else {
                        describe_user(&table, user)
                    }
                })
                .collect()
        }
    };
    request.respond(&DescribeUserScramCredentialsResponse::default().with_results(results))
}

/// One user's part of an alteration, checked; `Err` is the user's answer.
fn check_alteration(
    table: &CredentialTable,
    user: &str,
    mechanism: i8,
    upsert: Option<(i32, &[u8], &[u8])>,
) -> Result<CredentialChange, (ResponseError, String)> {
    let Some(mechanism) = ScramMechanism::from_wire_type(mechanism) else {
        return Err((
            ResponseError::UnsupportedSaslMechanism,
            format!("Unknown SCRAM mechanism {mechanism}"),
        ));
    };
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    let Some((iterations, salt, salted_password)) = upsert else {
        if table.get(user, mechanism).is_none() {
            return Err((
                ResponseError::ResourceNotFound,
                format!("Attempt to delete a user credential that does not exist: {user}"),
            ));
        }
        return Ok(CredentialChange::Delete {
            user: user.to_string(),
            mechanism,
        });
    };
    let iterations = u32::try_from(iterations)
        .ok()
        .filter(|i| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(i))
        .ok_or_else(|| {
            (
                ResponseError::UnacceptableCredential,
                format!(
                    "Iterations {iterations} must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}"
                ),
            )
        })?;
    if salt.is_empty() || salted_password.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Salt and salted password must not be empty".into(),
        ));
    }
    Ok(CredentialChange::Upsert {
        user: user.to_string(),
        credential: mechanism.credential(salted_password, salt.to_vec(), iterations),
    })
}

pub async fn handle_alter(
    shard: &Rc<Shard>,
    request: &Request,
    body: AlterUserScramCredentialsRequest,
) -> Outcome {
    if let Err(error) = require_cluster(shard, request, Operation::Alter) {
        let mut users: Vec<&StrBytes> = Vec::new();
        for name in body
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(body.upsertions.iter().map(|u| &u.name))
        {
            if !users.contains(&name) {
                users.push(name);
            }
        }
        let results = users
            .into_iter()
            .map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(user.clone())
                    .with_error_code(error.code())
            })
            .collect();
        return request
            .respond(&AlterUserScramCredentialsResponse::default().with_results(results));
    }
    let table = shard.security.credentials();
    // Kafka answers once per user; a user named twice for one mechanism is refused.
    let mut seen = HashSet::new();
    let mut duplicated = HashSet::new();
    let parts = body
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism, None))
        .chain(body.upsertions.iter().map(|u| {
            let upsert = (u.iterations, &u.salt[..], &u.salted_password[..]);
            (u.name.as_str(), u.mechanism, Some(upsert))
        }));
    let parts: Vec<_> = parts
        .inspect(|(user, mechanism, _)| {
            if !seen.insert((*user, *mechanism)) {
                duplicated.insert(*user);
            }
        })
        .collect();
    let mut users: Vec<&str> = Vec::new();
    let mut errors: Vec<Option<(ResponseError, String)>> = Vec::new();
    let mut changes = Vec::new();
    for (user, mechanism, upsert) in parts {
        let index = match users.iter().position(|u| *u == user) {
            Some(index) => index,
            None => {
                users.push(user);
                errors.push(None);
                users.len() - 1
            }
        };
        if errors[index].is_some() {
            continue;
        }
        if duplicated.contains(user) {
            errors[index] = Some((
                ResponseError::DuplicateResource,
                format!("A user credential cannot be altered twice in the same request: {user}"),
            ));
            continue;
        }
        match check_alteration(&table, user, mechanism, upsert) {
            Ok(change) => changes.push(change),
            Err(error) => errors[index] = Some(error),
        }
    }
    // A user with any error has none of its changes applied.
    let failed: HashSet<&str> = users
        .iter()
        .zip(&errors)
        .filter(|(_, e)| e.is_some())
        .map(|(u, _)| *u)
        .collect();
    changes.retain(|change| match change {
        CredentialChange::Upsert { user, .. } | CredentialChange::Delete { user, .. } => {
            !failed.contains(user.as_str())
        }
    });
    let stored = if changes.is_empty() {
        Ok(())
    } else {
        shard.change_credentials(changes).await
    };
    let results = users
        .iter()
        .zip(errors)
        .map(|(user, error)| {
            let result = AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user.to_string()));
            match (error, &stored) {
                (Some((code, text)), _) => result
                    .with_error_code(code.code())
                    .with_error_message(message(text)),
                (None, Err(store_error)) => result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(message(store_error.to_string())),
                (None, Ok(())) => result,
            }
        })
        .collect();
    request.respond(&AlterUserScramCredentialsResponse::default().with_results(results))
}

kafka_api!(DescribeUserScramCredentials: DescribeUserScramCredentials, DESCRIBE_VERSIONS, DescribeUserScramCredentialsRequest => handle_describe);

kafka_api!(AlterUserScramCredentials: AlterUserScramCredentials, ALTER_VERSIONS, AlterUserScramCredentialsRequest => handle_alter);
