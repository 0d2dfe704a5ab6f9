//! DescribeAcls: the ACLs a filter matches, grouped by resource pattern. Needs DESCRIBE on
//! the cluster.

use std::collections::BTreeMap;

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use proto_compat::kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::str_bytes;
use crate::authorizer::acl_filter::{AclFilter, FilterCodes};
use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let mut response = DescribeAclsResponse::default();
    let mut fail = |error: ResponseError, message: String| {
        response.error_code = error.code();
        response.error_message = Some(str_bytes(message));
    };
    if let Some((error, message)) = broker
        .authorizer
        .acl_api_refusal(session, AclOperation::Describe)
    {
        fail(error, message.to_string());
        return response;
    }
    let filter = match AclFilter::parse(FilterCodes {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_deref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_deref(),
        host: request.host_filter.as_deref(),
        operation: request.operation,
        permission: request.permission_type,
    }) {
        Ok(filter) => filter,
        Err(message) => {
            fail(ResponseError::InvalidRequest, message);
            return response;
        }
    };
    let mut resources: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for acl in broker.coordinator.acls() {
        if !filter.matches(&acl) {
            continue;
        }
        let mut description = AclDescription::default();
        description.principal = str_bytes(acl.principal);
        description.host = str_bytes(acl.host);
        description.operation = acl.operation.code();
        description.permission_type = acl.permission.code();
        resources
            .entry((acl.resource_type, acl.resource_name, acl.pattern_type))
            .or_default()
            .push(description);
    }
    response.resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            let mut resource = DescribeAclsResource::default();
            resource.resource_type = resource_type.code();
            resource.resource_name = str_bytes(name);
            resource.pattern_type = pattern_type.code();
            resource.acls = acls;
            resource
        })
        .collect();
    response
}
