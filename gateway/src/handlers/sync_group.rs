//! SyncGroup: the leader hands in the assignment; every member gets its own.

use coordinator::acl::AclOperation;
use group_coordinator::classic::SyncRequest;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if !broker
        .authorizer
        .group(session, AclOperation::Read, &request.group_id)
    {
        let mut response = SyncGroupResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation_id: request.generation_id,
        protocol_type: request.protocol_type.map(|t| t.to_string()),
        protocol_name: request.protocol_name.map(|n| n.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let synced = broker.groups.sync_group(&request.group_id, sync).await;
    let mut response = SyncGroupResponse::default();
    response.error_code = synced.error.map_or(0, |e| e.code());
    response.assignment = synced.assignment;
    if version >= 5 {
        response.protocol_type = synced.protocol_type.map(str_bytes);
        response.protocol_name = synced.protocol_name.map(str_bytes);
    }
    response
}
