//! InitProducerId: a fresh producer id for an idempotent producer; for a transactional one,
//! the transactional id's producer id at a new epoch, which fences its previous instance
//! (whose transaction under way is aborted first).

use coordinator::acl::{AclOperation, ResourceType};
use coordinator::TransactionWrite;
use group_coordinator::transaction::{self, InitStep, TxnError};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::transaction_coordinator::{check_coordinator, complete};

/// InitProducerId v4 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 4;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let authorizer = &broker.authorizer;
    let result = match &request.transactional_id {
        Some(id) if !authorizer.transactional_id(session, AclOperation::Write, id) => {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        }
        // Kafka's rule (KIP-679): an idempotent producer needs IDEMPOTENT_WRITE on the
        // cluster, or WRITE on some topic.
        None if !authorizer.cluster(session, AclOperation::IdempotentWrite)
            && !authorizer.authorize_any(session, AclOperation::Write, ResourceType::Topic) =>
        {
            Err(ResponseError::ClusterAuthorizationFailed.code())
        }
        Some(id) => init_transactional(broker, version, id, &request).await,
        // A new id each time (also for an epoch-bump request of KIP-360): the id's
        // sequences start at 0 and no state of the old one can interfere.
        None => match broker.coordinator.allocate_producer_id().await {
            Ok(id) => Ok((id, 0)),
            Err(e) => Err(e.error_code()),
        },
    };
    match result {
        Ok((producer_id, epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = epoch;
        }
        Err(code) => response.error_code = code,
    }
    response
}

async fn init_transactional(
    broker: &Broker,
    version: i16,
    transactional_id: &str,
    request: &InitProducerIdRequest,
) -> Result<(i64, i16), i16> {
    check_coordinator(broker, transactional_id).map_err(|e| e.code())?;
    let mut expected =
        (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    let mut fresh_producer_id = None;
    let config = &broker.config.transactions;
    loop {
        let now = now_ms();
        let step = broker
            .coordinator
            .update_transaction(transactional_id, |current| {
                let step = transaction::init_producer_id(
                    current,
                    transactional_id,
                    request.transaction_timeout_ms,
                    expected,
                    fresh_producer_id,
                    config,
                    now,
                );
                let write = match &step {
                    Ok(InitStep::Ready(txn) | InitStep::AbortFirst(txn)) => {
                        Some(TransactionWrite::Put(txn.clone()))
                    }
                    _ => None,
                };
                (step, write)
            })
            .await
            .map_err(|e| e.error_code())?;
        match step {
            Ok(InitStep::Ready(txn)) => return Ok((txn.producer_id, txn.producer_epoch)),
            Ok(InitStep::NeedsProducerId) => {
                let id = broker.coordinator.allocate_producer_id().await;
                fresh_producer_id = Some(id.map_err(|e| e.error_code())?);
            }
            // The previous instance's transaction (or one a crash left prepared) is
            // completed here, so the new instance starts clean; if its markers cannot be
            // written now the client retries on CONCURRENT_TRANSACTIONS.
            Ok(InitStep::AbortFirst(_)) | Err(TxnError::ConcurrentTransactions) => {
                if let Err(e) = complete(broker, transactional_id).await {
                    tracing::warn!(transactional_id, error = %e, "cannot complete a transaction yet");
                    return Err(ResponseError::ConcurrentTransactions.code());
                }
                // The epoch moved on from what the client named.
                expected = None;
            }
            Err(e) => return Err(e.error_code(version, FIRST_VERSION_WITH_PRODUCER_FENCED)),
        }
    }
}
