//! FindCoordinator: the broker that coordinates a consumer group or a transactional id, for
//! one key (v0-3) or a batch of keys (v4+). Strata has no share-group coordinator.

use coordinator::BrokerInfo;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::find_coordinator_response::Coordinator;
use proto_compat::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};

use super::str_bytes;
use crate::broker::Broker;

/// The key types of consumer groups and transactional ids.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut out = Coordinator::default();
                out.key = key.clone();
                match find(broker, request.key_type, key) {
                    Ok(coordinator) => {
                        out.node_id = BrokerId(coordinator.broker_id);
                        out.host = str_bytes(coordinator.host);
                        out.port = coordinator.port;
                    }
                    Err((error, message)) => {
                        out.node_id = BrokerId(-1);
                        out.port = -1;
                        out.error_code = error.code();
                        out.error_message = Some(str_bytes(message));
                    }
                }
                out
            })
            .collect();
        return response;
    }
    match find(broker, request.key_type, &request.key) {
        Ok(coordinator) => {
            response.node_id = BrokerId(coordinator.broker_id);
            response.host = str_bytes(coordinator.host);
            response.port = coordinator.port;
        }
        Err((error, message)) => {
            response.node_id = BrokerId(-1);
            response.port = -1;
            response.error_code = error.code();
            if version >= 1 {
                response.error_message = Some(str_bytes(message));
            }
        }
    }
    response
}

fn find(broker: &Broker, key_type: i8, key: &str) -> Result<BrokerInfo, (ResponseError, String)> {
    let coordinator = match key_type {
        GROUP => broker.coordinator.group_coordinator(key),
        TRANSACTION => broker.coordinator.transaction_coordinator(key),
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                format!("Strata coordinates groups and transactions, not key type {key_type}."),
            ))
        }
    };
    coordinator.ok_or((
        ResponseError::CoordinatorNotAvailable,
        "No live broker can coordinate the key.".to_string(),
    ))
}
