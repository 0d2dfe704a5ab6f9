//! JoinGroup: a member joins a classic group; the answer waits for the join phase.

use coordinator::acl::AclOperation;
use std::time::Duration;

use group_coordinator::classic::JoinRequest;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use proto_compat::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    client_id: &str,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if !broker
        .authorizer
        .group(session, AclOperation::Read, &request.group_id)
    {
        let mut response = JoinGroupResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    // v0 has no rebalance timeout: the session timeout serves as one.
    let rebalance_timeout_ms = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: client_id.to_string(),
        client_host: String::new(),
        session_timeout: millis(request.session_timeout_ms),
        rebalance_timeout: millis(rebalance_timeout_ms),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let joined = broker.groups.join_group(&request.group_id, join).await;

    let mut response = JoinGroupResponse::default();
    response.error_code = joined.error.map_or(0, |e| e.code());
    response.generation_id = joined.generation_id;
    response.member_id = str_bytes(joined.member_id);
    response.leader = str_bytes(joined.leader);
    // Nullable from v7; before, an unknown protocol name is "".
    response.protocol_name = match joined.protocol_name {
        Some(name) => Some(str_bytes(name)),
        None if version >= 7 => None,
        None => Some(str_bytes("")),
    };
    if version >= 7 {
        response.protocol_type = joined.protocol_type.map(str_bytes);
    }
    if version >= 9 {
        response.skip_assignment = joined.skip_assignment;
    }
    response.members = joined
        .members
        .into_iter()
        .map(|member| {
            let mut out = JoinGroupResponseMember::default();
            out.member_id = str_bytes(member.member_id);
            if version >= 5 {
                out.group_instance_id = member.group_instance_id.map(str_bytes);
            }
            out.metadata = member.metadata;
            out
        })
        .collect();
    response
}

/// A timeout from the wire; a negative one is 0, which the coordinator refuses.
fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
