//! Heartbeat: a classic member is alive; the answer tells it when to rejoin.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(broker: &Broker, session: &Session, request: HeartbeatRequest) -> HeartbeatResponse {
    if !broker
        .authorizer
        .group(session, AclOperation::Read, &request.group_id)
    {
        let mut response = HeartbeatResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let result = broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    let mut response = HeartbeatResponse::default();
    response.error_code = result.err().map_or(0, |e| e.code());
    response
}
