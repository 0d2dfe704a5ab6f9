//! EndTxn: commits or aborts the transaction under way. The decision is durable first
//! (PrepareCommit / PrepareAbort), then the markers are written and the transaction completes;
//! if the markers cannot be written now, the answer is still success (as Kafka answers once
//! the decision is logged) and the coordinator's periodic pass completes it.

use coordinator::acl::AclOperation;
use coordinator::TransactionWrite;
use group_coordinator::transaction::{self, EndStep};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::transaction_coordinator::{check_coordinator, complete};

/// EndTxn v2 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let id = request.transactional_id.as_str();
    let mut response = EndTxnResponse::default();
    if !broker
        .authorizer
        .transactional_id(session, AclOperation::Write, id)
    {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
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
            match transaction::end_txn(current, producer_id, epoch, request.committed, now) {
                Ok(EndStep::Prepare(next)) => (Ok(()), Some(TransactionWrite::Put(next))),
                Ok(EndStep::AlreadyDone) => (Ok(()), None),
                Err(e) => (Err(e), None),
            }
        })
        .await;
    response.error_code = match outcome {
        Ok(Ok(())) => {
            if let Err(e) = complete(broker, id).await {
                tracing::warn!(transactional_id = id, error = %e, "transaction decided, its markers left to the next pass");
            }
            0
        }
        Ok(Err(e)) => e.error_code(version, FIRST_VERSION_WITH_PRODUCER_FENCED),
        Err(e) => e.error_code(),
    };
    response
}
