//! The transaction coordinator's work on this broker: writing a transaction's markers into
//! its partitions and completing it, and the periodic pass that aborts timed-out
//! transactions, completes those a crash or a failover left prepared, and forgets idle
//! transactional ids. The transitions are `group_coordinator::transaction`'s; their state is
//! durable in the coordinator, so whichever broker coordinates an id picks up where another
//! stopped.

use std::sync::Arc;
use std::time::Duration;

use coordinator::{TransactionMetadata, TransactionState, TransactionWrite};
use group_coordinator::transaction;
use proto_compat::batch::{control_batch, ControlType};
use proto_compat::kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::background::{isolated, next_pass};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::handlers::produce::{append_batch, wait_committed};

/// How long writing one marker may take before the attempt is given up (and tried again by
/// the next pass).
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("cannot write the marker to {topic}-{partition}: error code {code}")]
    Partition {
        topic: String,
        partition: i32,
        code: i16,
    },
    #[error(transparent)]
    Coordinator(#[from] coordinator::CoordinatorError),
}

/// Whether this broker coordinates `transactional_id`: NOT_COORDINATOR (or
/// COORDINATOR_NOT_AVAILABLE while no broker is live) otherwise.
pub fn check_coordinator(broker: &Broker, transactional_id: &str) -> Result<(), ResponseError> {
    match broker.coordinator.transaction_coordinator(transactional_id) {
        Some(info) if info.broker_id == broker.broker_id => Ok(()),
        Some(_) => Err(ResponseError::NotCoordinator),
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Writes the markers of a prepared transaction into each of its partitions (a partition of
/// a deleted topic is skipped), each durable before the next.
async fn write_markers(broker: &Broker, txn: &TransactionMetadata) -> Result<(), MarkerError> {
    let control = match txn.state {
        TransactionState::PrepareCommit => ControlType::Commit,
        TransactionState::PrepareAbort => ControlType::Abort,
        _ => return Ok(()),
    };
    for (topic, partition) in &txn.partitions {
        let Some(meta) = broker.coordinator.topic(topic) else {
            continue;
        };
        let failed = |code: i16| MarkerError::Partition {
            topic: topic.clone(),
            partition: *partition,
            code,
        };
        let led = broker.partition(&meta, *partition).map_err(failed)?;
        let now = now_ms();
        let marker = control_batch(txn.producer_id, txn.producer_epoch, control, 0, now);
        let outcome = append_batch(
            broker,
            &led,
            &marker,
            coordinator::TimestampType::CreateTime,
            now,
        )
        .await
        .map_err(|e| failed(e.error_code()))?;
        wait_committed(&led, outcome.last_offset(), Instant::now() + MARKER_TIMEOUT)
            .await
            .map_err(failed)?;
    }
    Ok(())
}

/// Completes `transactional_id`'s prepared transaction: its markers, then CompleteCommit
/// (with its offsets) or CompleteAbort. Nothing to do unless it is prepared.
pub async fn complete(broker: &Broker, transactional_id: &str) -> Result<(), MarkerError> {
    let Some(prepared) = broker.coordinator.transaction(transactional_id) else {
        return Ok(());
    };
    if !matches!(
        prepared.state,
        TransactionState::PrepareCommit | TransactionState::PrepareAbort
    ) {
        return Ok(());
    }
    write_markers(broker, &prepared).await?;
    broker
        .coordinator
        .update_transaction(transactional_id, |current| {
            // Only the transaction whose markers were written.
            let next = current
                .filter(|c| **c == prepared)
                .and_then(|c| transaction::complete(c, now_ms()));
            ((), next.map(TransactionWrite::Put))
        })
        .await?;
    Ok(())
}

/// Every `transaction.abort.timed.out.transaction.cleanup.interval.ms`: a pass over the
/// transactional ids this broker coordinates, each on its own (one failing does not hold up
/// the others, and is tried again on the next pass).
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let metrics = &broker.metrics.transactions;
    while next_pass(broker.config.transactions.check_interval, &mut stop).await {
        for txn in broker.coordinator.transactions() {
            if check_coordinator(&broker, &txn.transactional_id).is_err() {
                continue;
            }
            let what = txn.transactional_id.clone();
            isolated("transactions", metrics, &what, check(&broker, txn)).await;
        }
    }
}

/// Aborts `txn` if it timed out, forgets it if it expired, and completes it if prepared.
async fn check(broker: &Broker, txn: TransactionMetadata) -> Result<(), MarkerError> {
    let config = &broker.config.transactions;
    let id = txn.transactional_id.as_str();
    let now = now_ms();
    if transaction::timed_out(&txn, now) {
        tracing::info!(transactional_id = id, "aborting a timed-out transaction");
        broker
            .coordinator
            .update_transaction(id, |current| {
                let next = current
                    .filter(|c| transaction::timed_out(c, now))
                    .map(|c| TransactionWrite::Put(transaction::fence(c, now)));
                ((), next)
            })
            .await?;
    } else if transaction::expired(&txn, config, now) {
        broker
            .coordinator
            .update_transaction(id, |current| {
                let expired = current.is_some_and(|c| transaction::expired(c, config, now));
                ((), expired.then_some(TransactionWrite::Delete))
            })
            .await?;
        return Ok(());
    }
    complete(broker, id).await
}
