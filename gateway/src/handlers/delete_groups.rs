//! DeleteGroups: removes empty groups and their committed offsets.

use proto_compat::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use proto_compat::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|id| id.to_string())
        .collect();
    let results = broker.groups.delete_groups(&ids).await;
    let mut response = DeleteGroupsResponse::default();
    response.results = request
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(group_id, result)| {
            let mut out = DeletableGroupResult::default();
            out.group_id = group_id;
            out.error_code = result.err().map_or(0, |e| e.code());
            out
        })
        .collect();
    response
}
