//! DeleteGroups: removes empty groups and their committed offsets.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use proto_compat::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let allowed = |id: &str| broker.authorizer.group(session, AclOperation::Delete, id);
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .filter(|id| allowed(id))
        .map(|id| id.to_string())
        .collect();
    let mut deleted = broker.groups.delete_groups(&ids).await.into_iter();
    let results: Vec<_> = request
        .groups_names
        .iter()
        .map(|id| {
            if allowed(id) {
                deleted
                    .next()
                    .map_or(0, |r| r.err().map_or(0, |e| e.code()))
            } else {
                ResponseError::GroupAuthorizationFailed.code()
            }
        })
        .collect();
    let mut response = DeleteGroupsResponse::default();
    response.results = request
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(group_id, result)| {
            let mut out = DeletableGroupResult::default();
            out.group_id = group_id;
            out.error_code = result;
            out
        })
        .collect();
    response
}
