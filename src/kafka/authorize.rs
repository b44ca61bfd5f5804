//! The authorizer as handlers ask it: may this request's principal do this
//! operation on this resource? With `--authorizer` off everything is
//! allowed; on, super users may do anything and everyone else needs an
//! ALLOW ACL and no DENY (`allow.everyone.if.no.acl.found=false`). The
//! check reads the shard's ACL snapshot and allocates nothing, so it runs
//! on the produce and fetch paths.

use kafka_protocol::error::ResponseError;

use super::Request;
use crate::security::acl::{AclTable, Operation, ResourceType, CLUSTER_RESOURCE_NAME};
use crate::security::Principal;
use crate::shard::Shard;

/// Whether `request` may do `operation` on the resource.
pub fn allowed(
    shard: &Shard,
    request: &Request,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    decide(shard, request, |acls, principal, host| {
        acls.allows(principal, host, operation, resource_type, name)
    })
}

/// Whether `request` may do `operation` on some resource of `resource_type`
/// (KIP-679).
pub fn allowed_on_some(
    shard: &Shard,
    request: &Request,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    decide(shard, request, |acls, principal, host| {
        acls.allows_some(principal, host, operation, resource_type)
    })
}

/// Whether `request` may do anything (the authorizer is off, or its
/// principal is a super user).
pub fn allows_everything(shard: &Shard, request: &Request) -> bool {
    decide(shard, request, |_, _, _| false)
}

/// The authorizer's rules around an ACL lookup: off allows everything, no
/// principal nothing, a super user everything; anyone else is up to `acls`.
fn decide(
    shard: &Shard,
    request: &Request,
    acls: impl FnOnce(&AclTable, &Principal, &str) -> bool,
) -> bool {
    let security = &shard.config.security;
    if !security.authorizer {
        return true;
    }
    let Some(principal) = request.session.principal() else {
        return false;
    };
    if security.super_users.contains(&principal) {
        return true;
    }
    let host = &request.session.client_host;
    let host = host.strip_prefix('/').unwrap_or(host);
    acls(&shard.security.acls(), &principal, host)
}

/// KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster, or
/// WRITE on some topic.
pub fn idempotent_write_allowed(shard: &Shard, request: &Request) -> bool {
    cluster_allowed(shard, request, Operation::IdempotentWrite)
        || allowed_on_some(shard, request, Operation::Write, ResourceType::Topic)
}

pub fn topic_allowed(shard: &Shard, request: &Request, operation: Operation, topic: &str) -> bool {
    allowed(shard, request, operation, ResourceType::Topic, topic)
}

pub fn group_allowed(shard: &Shard, request: &Request, operation: Operation, group: &str) -> bool {
    allowed(shard, request, operation, ResourceType::Group, group)
}

pub fn cluster_allowed(shard: &Shard, request: &Request, operation: Operation) -> bool {
    allowed(
        shard,
        request,
        operation,
        ResourceType::Cluster,
        CLUSTER_RESOURCE_NAME,
    )
}

/// CLUSTER_AUTHORIZATION_FAILED unless `operation` on the cluster is allowed.
pub fn require_cluster(
    shard: &Shard,
    request: &Request,
    operation: Operation,
) -> Result<(), ResponseError> {
    if cluster_allowed(shard, request, operation) {
        Ok(())
    } else {
        Err(ResponseError::ClusterAuthorizationFailed)
    }
}

/// Kafka lets a topic be created with CREATE on the cluster or on the topic.
pub fn may_create_topic(shard: &Shard, request: &Request, topic: &str) -> bool {
    cluster_allowed(shard, request, Operation::Create)
        || topic_allowed(shard, request, Operation::Create, topic)
}
