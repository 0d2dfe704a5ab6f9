//! FindCoordinator: the broker that coordinates a consumer group or a transactional id, for
//! one key (v0-3) or a batch of keys (v4+). Strata has no share-group coordinator.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::find_coordinator_response::Coordinator;
use proto_compat::kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

/// The key types of consumer groups and transactional ids.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// The coordinator's address as clients of `listener` reach it.
pub fn handle(
    broker: &Broker,
    session: &Session,
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
                match find(broker, session, request.key_type, key) {
                    Ok((node_id, host, port)) => {
                        out.node_id = BrokerId(node_id);
                        out.host = str_bytes(host);
                        out.port = port;
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
    match find(broker, session, request.key_type, &request.key) {
        Ok((node_id, host, port)) => {
            response.node_id = BrokerId(node_id);
            response.host = str_bytes(host);
            response.port = port;
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

/// The coordinator's id, host and port.
fn find(
    broker: &Broker,
    session: &Session,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), (ResponseError, String)> {
    let authorizer = &broker.authorizer;
    let refused = |error: ResponseError| (error, format!("Not authorized to describe {key}."));
    let coordinator = match key_type {
        GROUP if !authorizer.group(session, AclOperation::Describe, key) => {
            return Err(refused(ResponseError::GroupAuthorizationFailed))
        }
        TRANSACTION if !authorizer.transactional_id(session, AclOperation::Describe, key) => {
            return Err(refused(ResponseError::TransactionalIdAuthorizationFailed))
        }
        GROUP => broker.coordinator.group_coordinator(key),
        TRANSACTION => broker.coordinator.transaction_coordinator(key),
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                format!("Strata coordinates groups and transactions, not key type {key_type}."),
            ))
        }
    };
    let unavailable = |why: &str| (ResponseError::CoordinatorNotAvailable, why.to_string());
    let coordinator =
        coordinator.ok_or_else(|| unavailable("No live broker can coordinate the key."))?;
    let (host, port) = coordinator.endpoint(&session.listener).ok_or_else(|| {
        unavailable("The coordinator has no listener of the name this connection uses.")
    })?;
    Ok((coordinator.broker_id, host.to_string(), port))
}
