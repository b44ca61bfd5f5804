//! CreateAcls, DescribeAcls and DeleteAcls (KIP-140, KIP-290 for prefixed
//! patterns). They need ALTER (create, delete) or DESCRIBE on the cluster;
//! without `--authorizer` they answer SECURITY_DISABLED, as Kafka does.

use std::ops::RangeInclusive;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authorize::require_cluster;
use super::{Outcome, Request};
use crate::kafka_api;
use crate::security::acl::{
    Acl, AclFilter, InvalidAcl, Operation, PatternType, Permission, ResourceType,
};
use crate::security::Principal;
use crate::shard::Shard;

pub const VERSIONS: RangeInclusive<i16> = 1..=3;

fn text(value: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(value))
}

fn string(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// Whether ACL requests are served at all; the error otherwise.
fn check_enabled(
    shard: &Shard,
    request: &Request,
    operation: Operation,
) -> Result<(), ResponseError> {
    if !shard.config.security.authorizer {
        return Err(ResponseError::SecurityDisabled);
    }
    require_cluster(shard, request, operation)
}

fn acl_of(creation: &AclCreation) -> Result<Acl, String> {
    let bad = |what: &str, code: i8| format!("unknown {what} {code}");
    let acl = Acl {
        resource_type: ResourceType::from_code(creation.resource_type)
            .ok_or_else(|| bad("resource type", creation.resource_type))?,
        resource_name: creation.resource_name.to_string(),
        pattern: PatternType::from_code(creation.resource_pattern_type)
            .ok_or_else(|| bad("pattern type", creation.resource_pattern_type))?,
        principal: Principal::parse(creation.principal.as_str())
            .ok_or_else(|| InvalidAcl::Principal(creation.principal.to_string()).to_string())?,
        host: creation.host.to_string(),
        operation: Operation::from_code(creation.operation)
            .ok_or_else(|| bad("operation", creation.operation))?,
        permission: Permission::from_code(creation.permission_type)
            .ok_or_else(|| bad("permission type", creation.permission_type))?,
    };
    acl.check().map_err(|e| e.to_string())?;
    Ok(acl)
}

pub async fn handle_create(
    shard: &Rc<Shard>,
    request: &Request,
    body: CreateAclsRequest,
) -> Outcome {
    if let Err(error) = check_enabled(shard, request, Operation::Alter) {
        let results = body
            .creations
            .iter()
            .map(|_| AclCreationResult::default().with_error_code(error.code()))
            .collect();
        return request.respond(&CreateAclsResponse::default().with_results(results));
    }
    let checked: Vec<Result<Acl, String>> = body.creations.iter().map(acl_of).collect();
    let valid: Vec<Acl> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let stored = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        shard.change_acls(valid, Vec::new()).await
    };
    let results = checked
        .into_iter()
        .map(|checked| {
            let result = AclCreationResult::default();
            match (checked, &stored) {
                (Err(why), _) => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(why)),
                (Ok(_), Err(error)) => result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(text(error.to_string())),
                (Ok(_), Ok(_)) => result,
            }
        })
        .collect();
    request.respond(&CreateAclsResponse::default().with_results(results))
}

#[allow(clippy::too_many_arguments)]
fn filter_of(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let bad = |what: &str, code: i8| format!("unknown {what} {code}");
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| bad("resource type", resource_type))?,
        resource_name: resource_name.map(|n| n.to_string()),
        pattern: PatternType::from_code(pattern).ok_or_else(|| bad("pattern type", pattern))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: Operation::from_code(operation).ok_or_else(|| bad("operation", operation))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| bad("permission type", permission))?,
    })
}

pub async fn handle_describe(
    shard: &Rc<Shard>,
    request: &Request,
    body: DescribeAclsRequest,
) -> Outcome {
    let response = DescribeAclsResponse::default();
    if let Err(error) = check_enabled(shard, request, Operation::Describe) {
        return request.respond(&response.with_error_code(error.code()));
    }
    let filter = filter_of(
        body.resource_type_filter,
        body.resource_name_filter.as_ref(),
        body.pattern_type_filter,
        body.principal_filter.as_ref(),
        body.host_filter.as_ref(),
        body.operation,
        body.permission_type,
    );
    let filter = match filter {
        Ok(filter) => filter,
        Err(why) => {
            return request.respond(
                &response
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(why)),
            )
        }
    };
    let table = shard.security.acls();
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    let mut matched: Vec<&Acl> = table.iter().filter(|acl| filter.matches(acl)).collect();
    matched.sort();
    for acl in matched {
        let description = AclDescription::default()
            .with_principal(StrBytes::from_string(acl.principal.to_string()))
            .with_host(string(&acl.host))
            .with_operation(acl.operation.code())
            .with_permission_type(acl.permission.code());
        let same = resources.last_mut().filter(|r| {
            r.resource_type == acl.resource_type.code()
                && r.resource_name.as_str() == acl.resource_name
                && r.pattern_type == acl.pattern.code()
        });
        match same {
            Some(resource) => resource.acls.push(description),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(acl.resource_type.code())
                    .with_resource_name(string(&acl.resource_name))
                    .with_pattern_type(acl.pattern.code())
                    .with_acls(vec![description]),
            ),
        }
    }
    request.respond(&response.with_resources(resources))
}

pub async fn handle_delete(
    shard: &Rc<Shard>,
    request: &Request,
    body: DeleteAclsRequest,
) -> Outcome {
    if let Err(error) = check_enabled(shard, request, Operation::Alter) {
        let results = body
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(error.code()))
            .collect();
        return request.respond(&DeleteAclsResponse::default().with_filter_results(results));
    }
    let filters: Vec<Result<AclFilter, String>> = body
        .filters
        .iter()
        .map(|f| {
            filter_of(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .filter_map(|f| f.as_ref().ok().cloned())
        .collect();
    let removed = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        shard.change_acls(Vec::new(), valid).await
    };
    let results = filters
        .into_iter()
        .map(|filter| {
            let result = DeleteAclsFilterResult::default();
            match (filter, &removed) {
                (Err(why), _) => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(why)),
                (Ok(_), Err(error)) => result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(text(error.to_string())),
                (Ok(filter), Ok(removed)) => result.with_matching_acls(
                    removed
                        .iter()
                        .filter(|acl| filter.matches(acl))
                        .map(matching_acl)
                        .collect(),
                ),
            }
        })
        .collect();
    request.respond(&DeleteAclsResponse::default().with_filter_results(results))
}

fn matching_acl(acl: &Acl) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(string(&acl.resource_name))
        .with_pattern_type(acl.pattern.code())
        .with_principal(StrBytes::from_string(acl.principal.to_string()))
        .with_host(string(&acl.host))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission.code())
}

kafka_api!(CreateAcls: CreateAcls, VERSIONS, CreateAclsRequest => handle_create);

kafka_api!(DescribeAcls: DescribeAcls, VERSIONS, DescribeAclsRequest => handle_describe);

kafka_api!(DeleteAcls: DeleteAcls, VERSIONS, DeleteAclsRequest => handle_delete);
