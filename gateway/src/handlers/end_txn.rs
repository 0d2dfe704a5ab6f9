//! EndTxn: commits or aborts the transaction under way. The decision is durable first
//! (PrepareCommit / PrepareAbort), then the markers are written and the transaction completes;
//! if the markers cannot be written now, the answer is still success (as Kafka answers once
//! the decision is logged) and the coordinator's periodic pass completes it.

use coordinator::acl::AclOperation;
use group_coordinator::transaction::{self, EndStep};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;
use crate::connection::Session;
use crate::transaction_coordinator::{complete, producer_step, ServedBy};

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
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    let outcome = producer_step(
        broker,
        ServedBy::TransactionCoordinator,
        id,
        (version, FIRST_VERSION_WITH_PRODUCER_FENCED),
        |current, now| {
            let step = transaction::end_txn(current, producer_id, epoch, request.committed, now)?;
            Ok(match step {
                EndStep::Prepare(next) => Some(next),
                EndStep::AlreadyDone => None,
            })
        },
    )
    .await;
    if outcome.is_ok() {
        if let Err(e) = complete(broker, id).await {
            tracing::warn!(transactional_id = id, error = %e, "transaction decided, its markers left to the next pass");
        }
    }
    response.error_code = outcome.err().unwrap_or(0);
    response
}
