//! The transaction coordinator's work on this broker: writing a transaction's markers into
//! its partitions and completing it, and the periodic pass that aborts timed-out
//! transactions, completes those a crash or a failover left prepared, and forgets idle
//! transactional ids. The transitions are `group_coordinator::transaction`'s; their state is
//! durable in the coordinator, so whichever broker coordinates an id picks up where another
//! stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coordinator::{BrokerInfo, TransactionMetadata, TransactionState, TransactionWrite};
use group_coordinator::transaction::{self, TxnError};
use proto_compat::batch::{control_batch, ControlType};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use proto_compat::kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use proto_compat::kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::background::{isolated, next_pass};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::handlers::produce::{append_batch, wait_committed};
use crate::inter_broker;

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
    #[error(transparent)]
    InterBroker(#[from] crate::inter_broker::InterBrokerError),
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

/// Which broker serves a producer's transactional request.
pub enum ServedBy<'a> {
    /// The transactional id's coordinator (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn).
    TransactionCoordinator,
    /// The group's coordinator (TxnOffsetCommit).
    GroupCoordinator(&'a str),
}

/// A producer's step in its transaction: once this broker is found to serve the request,
/// `step` computes the transaction's next state from the current one (checking the
/// producer id and epoch) at the current time, and that state is committed (None: nothing
/// changes). Err is the error code to answer, PRODUCER_FENCED from
/// `first_version_with_producer_fenced` of the request on (INVALID_PRODUCER_EPOCH before).
pub async fn producer_step(
    broker: &Broker,
    served_by: ServedBy<'_>,
    transactional_id: &str,
    (version, first_version_with_producer_fenced): (i16, i16),
    step: impl Fn(Option<&TransactionMetadata>, i64) -> Result<Option<TransactionMetadata>, TxnError>,
) -> Result<(), i16> {
    match served_by {
        ServedBy::TransactionCoordinator => {
            check_coordinator(broker, transactional_id).map_err(|e| e.code())?
        }
        ServedBy::GroupCoordinator(group) => {
            let is_coordinator = broker
                .coordinator
                .group_coordinator(group)
                .is_some_and(|b| b.broker_id == broker.broker_id);
            if !is_coordinator {
                return Err(ResponseError::NotCoordinator.code());
            }
        }
    }
    let now = now_ms();
    broker
        .coordinator
        .update_transaction(transactional_id, |current| match step(current, now) {
            Ok(next) => (Ok(()), next.map(TransactionWrite::Put)),
            Err(e) => (Err(e), None),
        })
        .await
        .map_err(|e| e.error_code())?
        .map_err(|e| e.error_code(version, first_version_with_producer_fenced))
}

/// Appends a marker of `producer_id` to a partition this broker leads and waits until it is
/// committed. A partition of a deleted topic needs none.
pub async fn append_marker(
    broker: &Broker,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
) -> Result<(), i16> {
    let Some(meta) = broker.coordinator.topic(topic) else {
        return Ok(());
    };
    let led = broker.partition(&meta, partition)?;
    let now = now_ms();
    let marker = control_batch(producer_id, producer_epoch, control, 0, now);
    let timestamp_type = coordinator::TimestampType::CreateTime;
    let outcome = append_batch(broker, &led, &marker, timestamp_type, now)
        .await
        .map_err(|e| e.error_code())?;
    wait_committed(&led, outcome.last_offset(), Instant::now() + MARKER_TIMEOUT).await
}

/// Writes the markers of a prepared transaction into each of its partitions, durable before
/// it returns: those this broker leads itself, the others through WriteTxnMarkers to their
/// leaders.
async fn write_markers(broker: &Broker, txn: &TransactionMetadata) -> Result<(), MarkerError> {
    let control = match txn.state {
        TransactionState::PrepareCommit => ControlType::Commit,
        TransactionState::PrepareAbort => ControlType::Abort,
        _ => return Ok(()),
    };
    let (pid, epoch) = (txn.producer_id, txn.producer_epoch);
    let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut local = Vec::new();
    for (topic, partition) in &txn.partitions {
        let Some(meta) = broker.coordinator.topic(topic) else {
            continue;
        };
        match broker.coordinator.leader(meta.topic_id, *partition) {
            Some(leader) if leader.broker_id != broker.broker_id => {
                remote
                    .entry(leader.broker_id)
                    .or_default()
                    .push((topic.clone(), *partition));
            }
            _ => local.push((topic.as_str(), *partition)),
        }
    }
    let local = local.into_iter().map(|(topic, partition)| async move {
        append_marker(broker, topic, partition, pid, epoch, control)
            .await
            .map_err(|code| failed(topic, partition, code))
    });
    let brokers = broker.coordinator.brokers();
    let remote = remote.into_iter().map(|(leader, partitions)| {
        let info = brokers.iter().find(|b| b.broker_id == leader).cloned();
        async move {
            let Some(info) = info else {
                let (topic, partition) = &partitions[0];
                return Err(failed(
                    topic,
                    *partition,
                    ResponseError::NotLeaderOrFollower.code(),
                ));
            };
            write_remote(broker, &info, txn, control, partitions).await
        }
    });
    let results = futures::future::join(
        futures::future::join_all(local),
        futures::future::join_all(remote),
    )
    .await;
    results.0.into_iter().chain(results.1).collect()
}

fn failed(topic: &str, partition: i32, code: i16) -> MarkerError {
    MarkerError::Partition {
        topic: topic.to_string(),
        partition,
        code,
    }
}

/// One WriteTxnMarkers to `leader` for `partitions`; Err names the first that failed.
async fn write_remote(
    broker: &Broker,
    leader: &BrokerInfo,
    txn: &TransactionMetadata,
    control: ControlType,
    partitions: Vec<(String, i32)>,
) -> Result<(), MarkerError> {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        topics.entry(topic).or_default().push(*partition);
    }
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(txn.producer_id))
        .with_producer_epoch(txn.producer_epoch)
        .with_transaction_result(control == ControlType::Commit)
        .with_coordinator_epoch(0)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partition_indexes(partitions)
                })
                .collect(),
        );
    let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
    let response =
        inter_broker::write_txn_markers(&broker.config, broker.broker_id, leader, request).await?;
    let results = response
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.as_str(), p.partition_index, p.error_code))
        });
    let mut answered = 0;
    for (topic, partition, code) in results {
        if code != 0 {
            return Err(failed(topic, partition, code));
        }
        answered += 1;
    }
    if answered != partitions.len() {
        let (topic, partition) = &partitions[0];
        return Err(failed(
            topic,
            *partition,
            ResponseError::UnknownServerError.code(),
        ));
    }
    Ok(())
}

/// Completes `transactional_id`'s prepared transaction: its markers (and a commit's
/// offsets), then CompleteCommit or CompleteAbort. Nothing to do unless it is prepared.
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
    // Decided and marked: the offsets go to their groups before the transaction completes
    // (consumers that require stable offsets wait for it meanwhile).
    if prepared.state == TransactionState::PrepareCommit {
        broker
            .coordinator
            .commit_transactional_offsets(&prepared.pending_offsets)
            .await?;
    }
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

/// At start-up (what a crash left prepared is completed at once), then every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: a pass over the
/// transactional ids this broker coordinates, each on its own (one failing does not hold up
/// the others, and is tried again on the next pass).
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let metrics = &broker.metrics.transactions;
    loop {
        for txn in broker.coordinator.transactions() {
            if check_coordinator(&broker, &txn.transactional_id).is_err() {
                continue;
            }
            let what = txn.transactional_id.clone();
            isolated("transactions", metrics, &what, check(&broker, txn)).await;
        }
        if !next_pass(broker.config.transactions.check_interval, &mut stop).await {
            return;
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
