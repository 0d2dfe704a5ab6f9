//! ConsumerGroupHeartbeat (KIP-848): a member of a consumer-protocol group joins, stays,
//! acknowledges revocations and gets its partitions, or leaves.

use coordinator::acl::AclOperation;
use group_coordinator::assignor;
use group_coordinator::consumer::HeartbeatRequest;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, TopicPartitions,
};
use proto_compat::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    client_id: &str,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if !broker
        .authorizer
        .group(session, AclOperation::Read, &request.group_id)
    {
        let mut response = ConsumerGroupHeartbeatResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let heartbeat = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        rack_id: request.rack_id.map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: request.server_assignor.map(|a| a.to_string()),
        owned_partitions: request.topic_partitions.map(|owned| {
            let mut assignment = assignor::Assignment::new();
            for tp in owned {
                assignment
                    .entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions);
            }
            assignment
        }),
        client_id: client_id.to_string(),
        client_host: String::new(),
    };
    let result = broker
        .groups
        .consumer_group_heartbeat(&request.group_id, version, heartbeat)
        .await;
    let mut response = ConsumerGroupHeartbeatResponse::default();
    match result {
        Ok(heartbeat) => {
            response.member_id = Some(str_bytes(heartbeat.member_id));
            response.member_epoch = heartbeat.member_epoch;
            response.heartbeat_interval_ms = heartbeat.heartbeat_interval_ms;
            response.assignment = heartbeat.assignment.map(|assigned| {
                let mut out = Assignment::default();
                out.topic_partitions = assigned
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = topic_id;
                        tp.partitions = partitions.into_iter().collect();
                        tp
                    })
                    .collect();
                out
            });
        }
        Err(e) => {
            tracing::debug!(group = %request.group_id.as_str(), member = %request.member_id, error = ?e.error, message = %e.message, "ConsumerGroupHeartbeat refused");
            response.error_code = e.error.code();
            if !e.message.is_empty() {
                response.error_message = Some(str_bytes(e.message));
            }
        }
    }
    response
}
