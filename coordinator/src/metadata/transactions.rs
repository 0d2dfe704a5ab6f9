//! The transaction coordinator's durable state: one record per transactional id, read by
//! every process from its watch (brokers check produced transactional batches against it)
//! and changed by guarded transactions, so two processes never both act on a stale copy. The
//! aborted transactions of each partition's log are read here for read_committed fetches.

use std::collections::HashSet;

use uuid::Uuid;

use super::offsets::OFFSETS_PER_TXN;
use super::records::{Changes, Key, Record};
use super::{guard_value, Coordinator};
use crate::error::CoordinatorError;
use crate::metadata_store::Guard;
use crate::{AbortedTxn, BrokerInfo, PendingTxnOffset, TransactionMetadata, TransactionState};

/// What a transaction update does to its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionWrite {
    /// Stores the new metadata; a commit completes with its pending offsets committed.
    Put(TransactionMetadata),
    /// Forgets the transactional id (`transactional.id.expiration.ms`).
    Delete,
}

impl Coordinator {
    pub fn transaction(&self, transactional_id: &str) -> Option<TransactionMetadata> {
        self.read().transactions.get(transactional_id).cloned()
    }

    /// Every transactional id's state, by id.
    pub fn transactions(&self) -> Vec<TransactionMetadata> {
        self.read().transactions.values().cloned().collect()
    }

    /// The partitions of `group` whose offsets a transaction under way has committed: until
    /// it completes, what is committed for them is not stable (KIP-447's
    /// UNSTABLE_OFFSET_COMMIT for consumers that require stable offsets).
    pub fn pending_transactional_offsets(&self, group: &str) -> HashSet<(String, i32)> {
        let state = self.read();
        state
            .transactions
            .values()
            .filter(|t| {
                matches!(
                    t.state,
                    TransactionState::Ongoing | TransactionState::PrepareCommit
                )
            })
            .flat_map(|t| &t.pending_offsets)
            .filter(|o| o.group == group)
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// The broker that coordinates `transactional_id`: placed as consumer groups are.
    pub fn transaction_coordinator(&self, transactional_id: &str) -> Option<BrokerInfo> {
        self.group_coordinator(transactional_id)
    }

    /// Computes a change of `transactional_id`'s record from its current value and commits
    /// it, guarded by that value, computing again when another process changed it
    /// meanwhile.
    pub async fn update_transaction<T>(
        &self,
        transactional_id: &str,
        compute: impl Fn(Option<&TransactionMetadata>) -> (T, Option<TransactionWrite>),
    ) -> Result<T, CoordinatorError> {
        self.commit_computed(|state| {
            let current = state.transactions.get(transactional_id);
            let (outcome, write) = compute(current);
            let Some(write) = write else {
                return Ok((outcome, None));
            };
            let guard = match current {
                Some(current) => guard_value(Record::Transaction(current.clone()), true),
                None => Guard::Absent(Key::Transaction(transactional_id.to_string()).to_string()),
            };
            let mut changes = match write {
                TransactionWrite::Put(txn) => Changes::put(Record::Transaction(txn)),
                TransactionWrite::Delete => Changes {
                    deletes: vec![Key::Transaction(transactional_id.to_string())],
                    ..Changes::default()
                },
            };
            changes.guards.push(guard);
            Ok((outcome, Some(changes)))
        })
        .await
    }

    /// Commits the offsets of a transaction decided to commit (PrepareCommit) to their groups,
    /// in store transactions of [`OFFSETS_PER_TXN`] (etcd takes 128 operations in one). Run
    /// before the transaction completes, and again if it is completed again after a crash:
    /// the same offsets are written again.
    pub async fn commit_transactional_offsets(
        &self,
        offsets: &[PendingTxnOffset],
    ) -> Result<(), CoordinatorError> {
        for chunk in offsets.chunks(OFFSETS_PER_TXN) {
            let guard = self.lock_writes().await;
            let puts = chunk
                .iter()
                .map(|o| {
                    Record::Offset(
                        o.group.clone(),
                        o.topic.clone(),
                        o.partition,
                        o.offset.clone(),
                    )
                })
                .collect();
            let changes = Changes {
                puts,
                ..Changes::default()
            };
            self.commit(guard, changes).await?;
        }
        Ok(())
    }

    /// The aborted transactions of a partition's log that overlap `fetch_offset..upper_bound`
    /// (their abort marker at or after the fetch offset, their first offset before the
    /// bound), oldest marker first: what a read_committed fetch of that range is told.
    pub fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        fetch_offset: i64,
        upper_bound: i64,
    ) -> Vec<AbortedTxn> {
        let state = self.read();
        let Some(log) = state.partition(topic_id, partition) else {
            return Vec::new();
        };
        let segments = log
            .segments
            .values()
            .filter(|s| s.last_offset >= fetch_offset)
            .map(|s| s.aborted_transactions.as_slice());
        let chunks = log
            .chunks
            .values()
            .filter(|c| c.last_offset >= fetch_offset)
            .map(|c| c.aborted_transactions.as_slice());
        segments
            .chain(chunks)
            .flatten()
            .filter(|t| t.last_offset >= fetch_offset && t.first_offset < upper_bound)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::{broker, chunk, commit, open, segment, TestStore};
    use super::*;
    use crate::{CommittedOffset, PendingTxnOffset, ProducerState};

    fn txn(state: TransactionState, epoch: i16) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id: "tx/1".to_string(),
            producer_id: 7,
            producer_epoch: epoch,
            timeout_ms: 60_000,
            state,
            partitions: vec![("t".to_string(), 0)],
            pending_offsets: vec![PendingTxnOffset {
                group: "g".to_string(),
                topic: "t".to_string(),
                partition: 0,
                offset: CommittedOffset {
                    offset: 42,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 1,
                },
            }],
            txn_start_ms: 1,
            last_update_ms: 1,
        }
    }

    #[tokio::test]
    async fn transaction_records_are_durable_and_committed_offsets_reach_their_group() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        coordinator
            .create_topic("t", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        let put = |t: TransactionMetadata| {
            move |_: Option<&TransactionMetadata>| ((), Some(TransactionWrite::Put(t.clone())))
        };
        coordinator
            .update_transaction("tx/1", put(txn(TransactionState::PrepareCommit, 0)))
            .await
            .unwrap();
        assert!(
            coordinator.committed_offsets("g").is_empty(),
            "pending until the commit"
        );
        let prepared = coordinator.transaction("tx/1").unwrap();
        coordinator
            .commit_transactional_offsets(&prepared.pending_offsets)
            .await
            .unwrap();
        coordinator
            .update_transaction("tx/1", put(txn(TransactionState::CompleteCommit, 0)))
            .await
            .unwrap();
        assert_eq!(
            coordinator.committed_offsets("g")[&("t".to_string(), 0)].offset,
            42
        );

        let reopened = open(&store).await;
        assert_eq!(
            reopened.transaction("tx/1").map(|t| t.state),
            Some(TransactionState::CompleteCommit)
        );
        reopened
            .update_transaction("tx/1", |_| ((), Some(TransactionWrite::Delete)))
            .await
            .unwrap();
        assert!(reopened.transactions().is_empty());
    }

    #[tokio::test]
    async fn aborted_transactions_and_open_ones_survive_flush_compaction_and_reload() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let t = coordinator
            .create_topic("t", 1, BTreeMap::new(), false)
            .await
            .unwrap()
            .topic_id;
        let aborted = AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 5,
        };
        let mut first = commit(t, 0, 0, chunk(0, 5));
        first.chunk.aborted_transactions = vec![aborted];
        first.producers = vec![ProducerState {
            producer_id: 8,
            producer_epoch: 0,
            batches: Vec::new(),
            current_txn_first_offset: Some(4),
            last_timestamp: -1,
        }];
        coordinator.commit_flush(vec![first]).await.unwrap();
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(6, 9))])
            .await
            .unwrap();
        assert_eq!(coordinator.aborted_transactions(t, 0, 0, 10), vec![aborted]);
        assert_eq!(coordinator.aborted_transactions(t, 0, 6, 10), vec![]);
        assert_eq!(coordinator.aborted_transactions(t, 0, 0, 2), vec![]);

        let mut compacted = segment(0, 9);
        let log = coordinator.partition_log(t, 0).unwrap();
        compacted.aborted_transactions = crate::aborted_transactions_within(
            log.chunks.iter().map(|c| c.aborted_transactions.as_slice()),
            0,
            9,
        );
        coordinator
            .commit_segments(t, 0, 0, vec![compacted])
            .await
            .unwrap();
        let reopened = open(&store).await;
        assert_eq!(reopened.aborted_transactions(t, 0, 3, 4), vec![aborted]);
        let log = reopened.partition_log(t, 0).unwrap();
        assert_eq!(log.producers[0].current_txn_first_offset, Some(4));
    }
}
