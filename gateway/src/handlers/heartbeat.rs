//! Heartbeat: a classic member is alive; the answer tells it when to rejoin.

use proto_compat::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
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
