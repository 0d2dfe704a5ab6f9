//! AddOffsetsToTxn: the producer will commit a group's offsets in its transaction
//! (TxnOffsetCommit, to the group's coordinator); the transaction begins if none is under way.

use coordinator::acl::AclOperation;
use coordinator::TransactionWrite;
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::transaction_coordinator::check_coordinator;

/// AddOffsetsToTxn v2 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.as_str();
    let mut response = AddOffsetsToTxnResponse::default();
    let authorizer = &broker.authorizer;
    if !authorizer.transactional_id(session, AclOperation::Write, id) {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    if !authorizer.group(session, AclOperation::Read, &request.group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    if let Err(e) = check_coordinator(broker, id) {
        response.error_code = e.code();
        return response;
    }
    let now = now_ms();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let outcome = broker
        .coordinator
        .update_transaction(id, |current| {
            match transaction::add_partitions(current, producer_id, epoch, &[], now) {
                Ok(next) => (Ok(()), next.map(TransactionWrite::Put)),
                Err(e) => (Err(e), None),
            }
        })
        .await;
    response.error_code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => e.error_code(version, FIRST_VERSION_WITH_PRODUCER_FENCED),
        Err(e) => e.error_code(),
    };
    response
}
