//! LeaveGroup: one member (v0-2) or a batch of them (v3+) leaves a classic group.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::leave_group_response::MemberResponse;
use proto_compat::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if !broker
        .authorizer
        .group(session, AclOperation::Read, &request.group_id)
    {
        let mut response = LeaveGroupResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    match broker.groups.leave_group(&request.group_id, &members) {
        Err(error) => response.error_code = error.code(),
        Ok(results) if version >= 3 => {
            response.members = request
                .members
                .into_iter()
                .zip(results)
                .map(|(member, result)| {
                    let mut out = MemberResponse::default();
                    out.member_id = member.member_id;
                    out.group_instance_id = member.group_instance_id;
                    out.error_code = result.err().map_or(0, |e| e.code());
                    out
                })
                .collect();
        }
        // Before v3 the member's error is the response's.
        Ok(results) => response.error_code = results[0].err().map_or(0, |e| e.code()),
    }
    response
}
