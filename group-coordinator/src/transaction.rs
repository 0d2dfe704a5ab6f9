//! The transaction coordinator's state machine (Kafka's TransactionCoordinator and
//! TransactionMetadata): each request's transition of a transactional id's state, computed
//! from the stored state so that the broker applying it can commit it guarded by what it was
//! computed from. Markers and the store belong to the caller.
//!
//! Empty → Ongoing (AddPartitionsToTxn, AddOffsetsToTxn) → PrepareCommit / PrepareAbort
//! (EndTxn, a timeout, a new producer instance) → CompleteCommit / CompleteAbort once every
//! partition holds its marker → Ongoing again with the next transaction.

use std::time::Duration;

use coordinator::{PendingTxnOffset, TransactionMetadata, TransactionState};
use proto_compat::kafka_protocol::error::ResponseError;

/// The transaction coordinator's settings, with Kafka's broker config names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask.
    pub max_timeout: Duration,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten after this.
    pub id_expiration: Duration,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often timed-out
    /// transactions are looked for (and unfinished ones completed).
    pub check_interval: Duration,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            max_timeout: Duration::from_millis(900_000),
            id_expiration: Duration::from_millis(604_800_000),
            check_interval: Duration::from_millis(10_000),
        }
    }
}

/// Why a transactional request is refused, as Kafka's coordinator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// The transactional id is being completed or aborted: retry shortly.
    ConcurrentTransactions,
    /// An older producer instance (epoch) of the transactional id.
    ProducerFenced,
    /// The producer id is not the transactional id's.
    InvalidProducerIdMapping,
    InvalidTxnState,
    InvalidTransactionTimeout,
}

impl TxnError {
    /// The error code for a request of `version`; `fenced_as_producer_fenced` is the first
    /// version of that API that knows PRODUCER_FENCED (older ones get INVALID_PRODUCER_EPOCH).
    pub fn error_code(self, version: i16, fenced_as_producer_fenced: i16) -> i16 {
        match self {
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions.code(),
            TxnError::ProducerFenced if version < fenced_as_producer_fenced => {
                ResponseError::InvalidProducerEpoch.code()
            }
            TxnError::ProducerFenced => ResponseError::ProducerFenced.code(),
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping.code(),
            TxnError::InvalidTxnState => ResponseError::InvalidTxnState.code(),
            TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout.code(),
        }
    }
}

/// What InitProducerId does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Store this state and answer with its producer id and epoch.
    Ready(TransactionMetadata),
    /// A fresh producer id is needed (a new transactional id, or its epochs are used up):
    /// compute again with one.
    NeedsProducerId,
    /// The previous instance's transaction must be aborted first: store this PrepareAbort
    /// (its epoch bumped, which fences that instance), complete it, then compute again.
    AbortFirst(TransactionMetadata),
}

/// Kafka's name of a transaction state, as DescribeTransactions and ListTransactions show it.
pub fn state_name(state: TransactionState) -> &'static str {
    match state {
        TransactionState::Empty => "Empty",
        TransactionState::Ongoing => "Ongoing",
        TransactionState::PrepareCommit => "PrepareCommit",
        TransactionState::PrepareAbort => "PrepareAbort",
        TransactionState::CompleteCommit => "CompleteCommit",
        TransactionState::CompleteAbort => "CompleteAbort",
    }
}

fn is_prepare(state: TransactionState) -> bool {
    matches!(
        state,
        TransactionState::PrepareCommit | TransactionState::PrepareAbort
    )
}

/// InitProducerId with a transactional id. `expected` is the producer id and epoch a
/// restarting producer names (KIP-360), `fresh_producer_id` one allocated after
/// [`InitStep::NeedsProducerId`].
pub fn init_producer_id(
    current: Option<&TransactionMetadata>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    fresh_producer_id: Option<i64>,
    config: &TransactionConfig,
    now_ms: i64,
) -> Result<InitStep, TxnError> {
    if timeout_ms <= 0 || i64::from(timeout_ms) > config.max_timeout.as_millis() as i64 {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    let Some(current) = current else {
        let Some(producer_id) = fresh_producer_id else {
            return Ok(InitStep::NeedsProducerId);
        };
        return Ok(InitStep::Ready(TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: Vec::new(),
            pending_offsets: Vec::new(),
            txn_start_ms: -1,
            last_update_ms: now_ms,
        }));
    };
    if let Some((producer_id, epoch)) = expected {
        if producer_id != current.producer_id || epoch != current.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
    }
    match current.state {
        state if is_prepare(state) => Err(TxnError::ConcurrentTransactions),
        TransactionState::Ongoing => Ok(InitStep::AbortFirst(fence(current, now_ms))),
        _ => {
            let mut next = current.clone();
            next.timeout_ms = timeout_ms;
            next.last_update_ms = now_ms;
            next.partitions.clear();
            next.pending_offsets.clear();
            next.txn_start_ms = -1;
            next.state = TransactionState::Empty;
            if current.producer_epoch >= i16::MAX - 1 {
                // Epochs used up: a new producer id starts again at epoch 0.
                let Some(producer_id) = fresh_producer_id else {
                    return Ok(InitStep::NeedsProducerId);
                };
                next.producer_id = producer_id;
                next.producer_epoch = 0;
            } else {
                next.producer_epoch += 1;
            }
            Ok(InitStep::Ready(next))
        }
    }
}

/// The PrepareAbort of an Ongoing transaction with the epoch bumped, so the producer that
/// began it can neither produce nor end it any more (a timeout, a new instance).
pub fn fence(current: &TransactionMetadata, now_ms: i64) -> TransactionMetadata {
    let mut next = current.clone();
    next.producer_epoch = current.producer_epoch.saturating_add(1);
    next.state = TransactionState::PrepareAbort;
    next.last_update_ms = now_ms;
    next
}

/// The producer id and epoch a request names must be the transactional id's current ones.
fn check_producer(
    current: Option<&TransactionMetadata>,
    producer_id: i64,
    epoch: i16,
) -> Result<&TransactionMetadata, TxnError> {
    let current = current.ok_or(TxnError::InvalidProducerIdMapping)?;
    if producer_id != current.producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if epoch != current.producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(current)
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with no partitions): the transaction is under
/// way with these partitions added. None when nothing changes.
pub fn add_partitions(
    current: Option<&TransactionMetadata>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TransactionMetadata>, TxnError> {
    let current = check_producer(current, producer_id, epoch)?;
    if is_prepare(current.state) {
        return Err(TxnError::ConcurrentTransactions);
    }
    let ongoing = current.state == TransactionState::Ongoing;
    let new: Vec<&(String, i32)> = partitions
        .iter()
        .filter(|p| !ongoing || !current.partitions.contains(p))
        .collect();
    if ongoing && new.is_empty() {
        return Ok(None);
    }
    let mut next = current.clone();
    if !ongoing {
        next.state = TransactionState::Ongoing;
        next.partitions.clear();
        next.pending_offsets.clear();
        next.txn_start_ms = now_ms;
    }
    for partition in new {
        if !next.partitions.contains(partition) {
            next.partitions.push(partition.clone());
        }
    }
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// TxnOffsetCommit: the offsets wait in the transaction until it commits (a partition
/// committed twice keeps the last offset).
pub fn add_offsets(
    current: Option<&TransactionMetadata>,
    producer_id: i64,
    epoch: i16,
    offsets: Vec<PendingTxnOffset>,
    now_ms: i64,
) -> Result<TransactionMetadata, TxnError> {
    let current = check_producer(current, producer_id, epoch)?;
    if current.state != TransactionState::Ongoing {
        return Err(TxnError::InvalidTxnState);
    }
    let mut next = current.clone();
    for offset in offsets {
        next.pending_offsets.retain(|o| {
            (&o.group, &o.topic, o.partition) != (&offset.group, &offset.topic, offset.partition)
        });
        next.pending_offsets.push(offset);
    }
    next.last_update_ms = now_ms;
    Ok(next)
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Store this PrepareCommit / PrepareAbort, then write the markers and complete it.
    Prepare(TransactionMetadata),
    /// A retry of an EndTxn already completed with the same outcome.
    AlreadyDone,
}

pub fn end_txn(
    current: Option<&TransactionMetadata>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndStep, TxnError> {
    let current = check_producer(current, producer_id, epoch)?;
    let (prepare, complete) = if commit {
        (
            TransactionState::PrepareCommit,
            TransactionState::CompleteCommit,
        )
    } else {
        (
            TransactionState::PrepareAbort,
            TransactionState::CompleteAbort,
        )
    };
    match current.state {
        TransactionState::Ongoing => {
            let mut next = current.clone();
            next.state = prepare;
            next.last_update_ms = now_ms;
            Ok(EndStep::Prepare(next))
        }
        state if state == complete => Ok(EndStep::AlreadyDone),
        state if state == prepare => Err(TxnError::ConcurrentTransactions),
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// Once every partition holds its marker (and a commit's offsets reached their groups):
/// CompleteCommit / CompleteAbort, with nothing left of the transaction. None unless a
/// transaction is being completed.
pub fn complete(current: &TransactionMetadata, now_ms: i64) -> Option<TransactionMetadata> {
    let state = match current.state {
        TransactionState::PrepareCommit => TransactionState::CompleteCommit,
        TransactionState::PrepareAbort => TransactionState::CompleteAbort,
        _ => return None,
    };
    let mut next = current.clone();
    next.state = state;
    next.partitions.clear();
    next.pending_offsets.clear();
    next.txn_start_ms = -1;
    next.last_update_ms = now_ms;
    Some(next)
}

/// An Ongoing transaction past its `transaction.timeout.ms`, which the coordinator aborts.
pub fn timed_out(current: &TransactionMetadata, now_ms: i64) -> bool {
    current.state == TransactionState::Ongoing
        && now_ms.saturating_sub(current.txn_start_ms) > i64::from(current.timeout_ms)
}

/// A transactional id idle for `transactional.id.expiration.ms` with no transaction under
/// way, which the coordinator forgets.
pub fn expired(current: &TransactionMetadata, config: &TransactionConfig, now_ms: i64) -> bool {
    matches!(
        current.state,
        TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort
    ) && now_ms.saturating_sub(current.last_update_ms) >= config.id_expiration.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use coordinator::CommittedOffset;

    use super::*;

    const ID: &str = "tx";

    fn ready(step: Result<InitStep, TxnError>) -> TransactionMetadata {
        match step {
            Ok(InitStep::Ready(txn)) => txn,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn init(current: Option<&TransactionMetadata>) -> Result<InitStep, TxnError> {
        init_producer_id(
            current,
            ID,
            60_000,
            None,
            Some(100),
            &TransactionConfig::default(),
            0,
        )
    }

    fn partition(topic: &str, p: i32) -> (String, i32) {
        (topic.to_string(), p)
    }

    fn offset(group: &str, value: i64) -> PendingTxnOffset {
        PendingTxnOffset {
            group: group.to_string(),
            topic: "in".to_string(),
            partition: 0,
            offset: CommittedOffset {
                offset: value,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
            },
        }
    }

    #[test]
    fn a_transaction_goes_ongoing_prepared_complete_and_begins_again() {
        let empty = ready(init(None));
        assert_eq!((empty.producer_id, empty.producer_epoch), (100, 0));
        let ongoing = add_partitions(Some(&empty), 100, 0, &[partition("a", 0)], 5)
            .unwrap()
            .unwrap();
        assert_eq!(ongoing.state, TransactionState::Ongoing);
        assert_eq!(ongoing.txn_start_ms, 5);
        // The same partition again changes nothing; a new one is added.
        assert_eq!(
            add_partitions(Some(&ongoing), 100, 0, &[partition("a", 0)], 6),
            Ok(None)
        );
        let ongoing = add_partitions(Some(&ongoing), 100, 0, &[partition("b", 1)], 6)
            .unwrap()
            .unwrap();
        assert_eq!(
            ongoing.partitions,
            vec![partition("a", 0), partition("b", 1)]
        );
        let ongoing = add_offsets(Some(&ongoing), 100, 0, vec![offset("g", 1)], 7).unwrap();
        let ongoing = add_offsets(Some(&ongoing), 100, 0, vec![offset("g", 2)], 7).unwrap();
        assert_eq!(ongoing.pending_offsets, vec![offset("g", 2)]);

        let EndStep::Prepare(prepared) = end_txn(Some(&ongoing), 100, 0, true, 8).unwrap() else {
            panic!("expected Prepare");
        };
        assert_eq!(prepared.state, TransactionState::PrepareCommit);
        // While markers are written the id is busy; an abort of it is refused.
        assert_eq!(
            add_partitions(Some(&prepared), 100, 0, &[partition("a", 0)], 9),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            end_txn(Some(&prepared), 100, 0, true, 9),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(init(Some(&prepared)), Err(TxnError::ConcurrentTransactions));
        let done = complete(&prepared, 10).unwrap();
        assert_eq!(done.state, TransactionState::CompleteCommit);
        assert!(done.partitions.is_empty() && done.pending_offsets.is_empty());
        // A retried EndTxn is answered as it was; the other outcome is refused.
        assert_eq!(
            end_txn(Some(&done), 100, 0, true, 11),
            Ok(EndStep::AlreadyDone)
        );
        assert_eq!(
            end_txn(Some(&done), 100, 0, false, 11),
            Err(TxnError::InvalidTxnState)
        );
        let next = add_partitions(Some(&done), 100, 0, &[partition("c", 0)], 12)
            .unwrap()
            .unwrap();
        assert_eq!(next.partitions, vec![partition("c", 0)]);
        assert_eq!(next.txn_start_ms, 12);
    }

    #[test]
    fn a_new_instance_bumps_the_epoch_and_aborts_what_the_old_one_left_open() {
        let empty = ready(init(None));
        let again = ready(init(Some(&empty)));
        assert_eq!((again.producer_id, again.producer_epoch), (100, 1));
        let ongoing = add_partitions(Some(&again), 100, 1, &[partition("a", 0)], 5)
            .unwrap()
            .unwrap();
        let Ok(InitStep::AbortFirst(aborting)) = init(Some(&ongoing)) else {
            panic!("expected AbortFirst");
        };
        assert_eq!(aborting.state, TransactionState::PrepareAbort);
        assert_eq!(aborting.producer_epoch, 2);
        assert_eq!(aborting.partitions, vec![partition("a", 0)]);
        // The old instance is fenced from now on.
        assert_eq!(
            end_txn(Some(&aborting), 100, 1, true, 6),
            Err(TxnError::ProducerFenced)
        );
        let aborted = complete(&aborting, 7).unwrap();
        let fresh = ready(init(Some(&aborted)));
        assert_eq!(fresh.producer_epoch, 3);
        assert_eq!(fresh.state, TransactionState::Empty);
        assert_eq!(
            add_partitions(Some(&fresh), 100, 2, &[partition("a", 0)], 8),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            add_partitions(Some(&fresh), 99, 3, &[partition("a", 0)], 8),
            Err(TxnError::InvalidProducerIdMapping)
        );
        // Used-up epochs move to a new producer id.
        let mut old = fresh.clone();
        old.producer_epoch = i16::MAX - 1;
        let renewed = init_producer_id(
            Some(&old),
            ID,
            1_000,
            None,
            None,
            &TransactionConfig::default(),
            9,
        );
        assert_eq!(renewed, Ok(InitStep::NeedsProducerId));
    }

    #[test]
    fn timeouts_fence_and_idle_ids_expire() {
        let config = TransactionConfig::default();
        let too_long = init_producer_id(None, ID, 900_001, None, Some(1), &config, 0);
        assert_eq!(too_long, Err(TxnError::InvalidTransactionTimeout));
        let empty = ready(init(None));
        let ongoing = add_partitions(Some(&empty), 100, 0, &[partition("a", 0)], 1_000)
            .unwrap()
            .unwrap();
        assert!(!timed_out(&ongoing, 61_000));
        assert!(timed_out(&ongoing, 61_001));
        let aborting = fence(&ongoing, 61_001);
        assert_eq!(aborting.producer_epoch, 1);
        assert_eq!(aborting.state, TransactionState::PrepareAbort);
        assert!(
            !expired(&aborting, &config, i64::MAX),
            "not while under way"
        );
        let aborted = complete(&aborting, 61_002).unwrap();
        assert_eq!(aborted.state, TransactionState::CompleteAbort);
        let expiration = config.id_expiration.as_millis() as i64;
        assert!(!expired(&aborted, &config, 61_002 + expiration - 1));
        assert!(expired(&aborted, &config, 61_002 + expiration));
    }

    #[test]
    fn fenced_maps_to_the_code_each_version_knows() {
        assert_eq!(
            TxnError::ProducerFenced.error_code(1, 2),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert_eq!(
            TxnError::ProducerFenced.error_code(2, 2),
            ResponseError::ProducerFenced.code()
        );
    }
}
