//! DeleteAcls: removes the ACLs each filter matches and lists them. Needs ALTER on the
//! cluster.

use std::collections::BTreeSet;

use coordinator::acl::{AclBinding, AclOperation};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use proto_compat::kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::str_bytes;
use crate::authorizer::acl_filter::{AclFilter, FilterCodes};
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let refusal = broker
        .authorizer
        .acl_api_refusal(session, AclOperation::Alter);
    let acls = broker.coordinator.acls();
    let matched: Vec<Result<Vec<AclBinding>, (ResponseError, String)>> = request
        .filters
        .iter()
        .map(|f| {
            if let Some((error, message)) = refusal {
                return Err((error, message.to_string()));
            }
            let filter = AclFilter::parse(FilterCodes {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_deref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_deref(),
                host: f.host_filter.as_deref(),
                operation: f.operation,
                permission: f.permission_type,
            })
            .map_err(|m| (ResponseError::InvalidRequest, m))?;
            Ok(acls.iter().filter(|a| filter.matches(a)).cloned().collect())
        })
        .collect();
    let doomed: BTreeSet<AclBinding> = matched
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let deleted = if doomed.is_empty() {
        Ok(())
    } else {
        broker
            .coordinator
            .delete_acls(doomed.into_iter().collect())
            .await
    };
    if let Err(e) = &deleted {
        tracing::warn!(error = %e, "DeleteAcls failed to delete ACLs");
    }
    let mut response = DeleteAclsResponse::default();
    response.filter_results = matched
        .into_iter()
        .map(|matched| {
            let mut result = DeleteAclsFilterResult::default();
            let error = match (matched, &deleted) {
                (Err(refused), _) => Some(refused),
                (Ok(_), Err(e)) => Some((ResponseError::UnknownServerError, e.to_string())),
                (Ok(acls), Ok(())) => {
                    result.matching_acls = acls.into_iter().map(matching_acl).collect();
                    None
                }
            };
            if let Some((error, message)) = error {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            result
        })
        .collect();
    response
}

fn matching_acl(acl: AclBinding) -> DeleteAclsMatchingAcl {
    let mut matching = DeleteAclsMatchingAcl::default();
    matching.resource_type = acl.resource_type.code();
    matching.resource_name = str_bytes(acl.resource_name);
    matching.pattern_type = acl.pattern_type.code();
    matching.principal = str_bytes(acl.principal);
    matching.host = str_bytes(acl.host);
    matching.operation = acl.operation.code();
    matching.permission_type = acl.permission.code();
    matching
}
