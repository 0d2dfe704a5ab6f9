//! AddOffsetsToTxn: the producer will commit a group's offsets in its transaction
//! (TxnOffsetCommit, to the group's coordinator); the transaction begins if none is under way.

use coordinator::acl::AclOperation;
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::connection::Session;
use crate::transaction_coordinator::{producer_step, ServedBy};

/// AddOffsetsToTxn v2 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut response = AddOffsetsToTxnResponse::default();
    let authorizer = &broker.authorizer;
    if !authorizer.transactional_id(session, AclOperation::Write, &request.transactional_id) {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    if !authorizer.group(session, AclOperation::Read, &request.group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let outcome = producer_step(
        broker,
        ServedBy::TransactionCoordinator,
        &request.transactional_id,
        (version, FIRST_VERSION_WITH_PRODUCER_FENCED),
        |current, now| transaction::add_partitions(current, producer_id, epoch, &[], now),
    )
    .await;
    response.error_code = outcome.err().unwrap_or(0);
    response
}
