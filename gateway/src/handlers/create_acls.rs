//! CreateAcls: stores ACLs, with Kafka's checks of each (a specific resource type, pattern
//! type, operation and permission, a name, a `Type:name` principal). Needs ALTER on the
//! cluster.

use coordinator::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::create_acls_request::AclCreation;
use proto_compat::kafka_protocol::messages::create_acls_response::AclCreationResult;
use proto_compat::kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::str_bytes;
use crate::authorizer::CLUSTER_NAME;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let refusal = broker
        .authorizer
        .acl_api_refusal(session, AclOperation::Alter)
        .map(|(error, message)| (error, message.to_string()));
    let checked: Vec<Result<AclBinding, (ResponseError, String)>> = request
        .creations
        .iter()
        .map(|creation| match &refusal {
            Some(refusal) => Err(refusal.clone()),
            None => binding(creation).map_err(|m| (ResponseError::InvalidRequest, m)),
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let stored = if valid.is_empty() {
        Ok(())
    } else {
        broker.coordinator.create_acls(valid).await
    };
    let results = checked
        .into_iter()
        .map(|checked| {
            let mut result = AclCreationResult::default();
            let error = match (checked, &stored) {
                (Err(refused), _) => Some(refused),
                (Ok(_), Err(e)) => Some((ResponseError::UnknownServerError, e.to_string())),
                (Ok(_), Ok(())) => None,
            };
            if let Some((error, message)) = error {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            result
        })
        .collect();
    if let Err(e) = &stored {
        tracing::warn!(error = %e, "CreateAcls failed to store ACLs");
    }
    let mut response = CreateAclsResponse::default();
    response.results = results;
    response
}

/// The ACL a creation asks for, or why it is not a valid one.
fn binding(creation: &AclCreation) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(creation.resource_type).ok_or_else(|| {
        format!(
            "Invalid or unsupported resourceType {}",
            creation.resource_type
        )
    })?;
    let pattern_type = PatternType::from_code(creation.resource_pattern_type)
        .ok_or_else(|| format!("Invalid patternType {}", creation.resource_pattern_type))?;
    let operation = AclOperation::from_code(creation.operation)
        .ok_or_else(|| format!("Invalid or unsupported operation {}", creation.operation))?;
    let permission = AclPermission::from_code(creation.permission_type)
        .ok_or_else(|| format!("Invalid permissionType {}", creation.permission_type))?;
    let name = creation.resource_name.to_string();
    if name.is_empty() {
        return Err("Resource name should not be empty".to_string());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    let principal = creation.principal.to_string();
    if !matches!(principal.split_once(':'), Some((kind, user)) if !kind.is_empty() && !user.is_empty())
    {
        return Err(format!("Invalid principal {principal}: expected Type:name"));
    }
    if creation.host.is_empty() {
        return Err("Invalid host: it should be * or an address".to_string());
    }
    Ok(AclBinding {
        resource_type,
        pattern_type,
        resource_name: name,
        principal,
        host: creation.host.to_string(),
        operation,
        permission,
    })
}
