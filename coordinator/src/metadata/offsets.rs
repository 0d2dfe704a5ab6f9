//! Consumer groups' committed offsets: OffsetCommit writes them (one transaction per request,
//! durable before the answer), OffsetFetch reads them, OffsetDelete and DeleteGroups remove
//! them, and the offsets of groups left empty past `offsets.retention.minutes` expire.
//! Offsets are keyed by topic name, as in Kafka; deleting a topic deletes its offsets.

use std::collections::BTreeMap;

use super::records::{Changes, Key, Record};
use super::state::State;
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::metadata_store::MetaStoreError;
use crate::{CommittedOffset, PartitionLag};

/// Kafka's default `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;
/// Offsets committed per transaction: etcd allows 128 operations in one.
pub(super) const OFFSETS_PER_TXN: usize = 100;

impl Coordinator {
    /// Commits the offsets of one OffsetCommit request. Each offset gets its own outcome, in
    /// request order: UnknownTopicOrPartition for a partition that does not exist and
    /// OffsetMetadataTooLarge for long metadata (neither is committed). A partition listed
    /// twice keeps the last one. The offsets go in transactions of [`OFFSETS_PER_TXN`] (etcd
    /// takes 128 operations in one): Err when the first failed, so nothing is committed;
    /// a later one that fails gives its partitions the store's error.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<Vec<Result<(), CoordinatorError>>, CoordinatorError> {
        let mut guard = Some(self.lock_writes().await);
        let (mut outcomes, accepted) = {
            let state = self.read();
            let mut accepted = BTreeMap::new();
            let outcomes: Vec<_> = offsets
                .into_iter()
                .map(|(topic, partition, offset)| {
                    if !partition_exists(&state, &topic, partition) {
                        return Err(CoordinatorError::UnknownTopicOrPartition(format!(
                            "Topic partition {topic}-{partition} does not exist."
                        )));
                    }
                    if offset.metadata.len() > MAX_METADATA_BYTES {
                        return Err(CoordinatorError::OffsetMetadataTooLarge(format!(
                            "The metadata of {topic}-{partition} is longer than {MAX_METADATA_BYTES} bytes."
                        )));
                    }
                    Ok((topic, partition, offset))
                })
                .collect();
            let outcomes = outcomes
                .into_iter()
                .enumerate()
                .map(|(index, outcome)| {
                    outcome.map(|(topic, partition, offset)| {
                        // The last of a partition listed twice wins; every listing shares its outcome.
                        let entry = accepted
                            .entry((topic, partition))
                            .or_insert((offset.clone(), Vec::new()));
                        entry.0 = offset;
                        entry.1.push(index);
                    })
                })
                .collect::<Vec<_>>();
            (outcomes, accepted)
        };
        let accepted: Vec<_> = accepted.into_iter().collect();
        for (batch, chunk) in accepted.chunks(OFFSETS_PER_TXN).enumerate() {
            let guard = match guard.take() {
                Some(guard) => guard,
                None => self.lock_writes().await,
            };
            let puts = chunk
                .iter()
                .map(|((topic, p), (offset, _))| {
                    Record::Offset(group.to_string(), topic.clone(), *p, offset.clone())
                })
                .collect();
            let changes = Changes {
                puts,
                ..Changes::default()
            };
            match self.commit(guard, changes).await {
                Ok(()) => {}
                Err(e) if batch == 0 => return Err(e),
                Err(e) => {
                    let indexes = chunk.iter().flat_map(|(_, (_, indexes))| indexes);
                    for &index in indexes {
                        outcomes[index] = Err(CoordinatorError::Store(
                            MetaStoreError::Unavailable(e.to_string()),
                        ));
                    }
                }
            }
        }
        Ok(outcomes)
    }

    /// Every committed offset of `group`, by (topic, partition).
    pub fn committed_offsets(&self, group: &str) -> BTreeMap<(String, i32), CommittedOffset> {
        self.read().offsets.get(group).cloned().unwrap_or_default()
    }

    pub fn has_committed_offsets(&self, group: &str) -> bool {
        self.read().offsets.contains_key(group)
    }

    /// The groups that have committed offsets, by id.
    pub fn groups_with_offsets(&self) -> Vec<String> {
        self.read().offsets.keys().cloned().collect()
    }

    /// OffsetDelete: removes these partitions' offsets of `group` (missing ones are ignored).
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = Changes {
            deletes: partitions
                .iter()
                .map(|(topic, p)| Key::Offset(group.to_string(), topic.clone(), *p))
                .collect(),
            ..Changes::default()
        };
        self.commit(guard, changes).await
    }

    /// DeleteGroups: removes every offset and the membership record of these groups in one
    /// transaction.
    pub async fn delete_group_offsets(&self, groups: &[String]) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let deletes = groups
                .iter()
                .flat_map(|group| {
                    group_keys(&state, group).chain([Key::GroupMetadata(group.clone())])
                })
                .collect();
            Changes {
                deletes,
                ..Changes::default()
            }
        };
        self.commit(guard, changes).await
    }

    /// Expires the offsets of groups that stayed empty for `retention_ms` (Kafka's
    /// `offsets.retention.minutes`). `empty_groups` lists the groups without members, each
    /// with the time it became empty; an offset committed later (by a tool, or a consumer
    /// that assigns its partitions itself) counts from its own commit instead. One
    /// transaction; returns how many offsets expired.
    pub async fn expire_offsets(
        &self,
        empty_groups: &[(String, i64)],
        now_ms: i64,
        retention_ms: i64,
    ) -> Result<usize, CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let mut deletes = Vec::new();
            for (group, empty_since_ms) in empty_groups {
                let Some(offsets) = state.offsets.get(group) else {
                    continue;
                };
                let expired = offsets.iter().filter(|(_, offset)| {
                    let since = offset.commit_timestamp.max(*empty_since_ms);
                    now_ms.saturating_sub(since) >= retention_ms
                });
                deletes.extend(
                    expired.map(|((topic, p), _)| Key::Offset(group.clone(), topic.clone(), *p)),
                );
            }
            Changes {
                deletes,
                ..Changes::default()
            }
        };
        let expired = changes.deletes.len();
        self.commit(guard, changes).await?;
        Ok(expired)
    }

    /// Consumer lag of every committed offset of an existing partition: its high watermark
    /// minus the committed offset, never below zero.
    pub fn consumer_lag(&self) -> Vec<PartitionLag> {
        let state = self.read();
        let mut lags = Vec::new();
        for (group, offsets) in &state.offsets {
            for ((topic, partition), offset) in offsets {
                let Some(log) = state
                    .topic(topic)
                    .and_then(|t| state.partition(t.meta.topic_id, *partition))
                else {
                    continue;
                };
                lags.push(PartitionLag {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    lag: (log.high_watermark() - offset.offset.max(0)).max(0),
                });
            }
        }
        lags
    }
}

fn partition_exists(state: &State, topic: &str, partition: i32) -> bool {
    state
        .topic(topic)
        .is_some_and(|t| (0..t.meta.partitions).contains(&partition))
}

fn group_keys<'a>(state: &'a State, group: &'a str) -> impl Iterator<Item = Key> + 'a {
    state
        .offsets
        .get(group)
        .into_iter()
        .flat_map(move |offsets| {
            offsets
                .keys()
                .map(move |(topic, p)| Key::Offset(group.to_string(), topic.clone(), *p))
        })
}

/// The offset keys of every group for `topic` (deleted together with the topic).
/// The key prefixes of every group's committed offsets of `topic`.
pub(super) fn topic_offset_prefixes(state: &State, topic: &str) -> Vec<String> {
    state
        .offsets
        .iter()
        .filter(|(_, offsets)| offsets.keys().any(|(t, _)| t == topic))
        .map(|(group, _)| {
            let key = Key::Offset(group.clone(), topic.to_string(), 0).to_string();
            key.trim_end_matches('0').to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::super::test_support::{broker, chunk, commit, one_object, open, TestStore};
    use super::*;
    use crate::embedded::{EmbeddedStore, METADATA_FILE};
    use crate::topic_config::BrokerDefaults;

    fn offset(offset: i64, commit_timestamp: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: format!("m{offset}"),
            commit_timestamp,
        }
    }

    fn at(
        topic: &str,
        partition: i32,
        committed: CommittedOffset,
    ) -> (String, i32, CommittedOffset) {
        (topic.to_string(), partition, committed)
    }

    async fn with_topics(store: &Arc<TestStore>) -> Arc<Coordinator> {
        let coordinator = open(store).await;
        for (name, partitions) in [("a", 2), ("b", 1)] {
            coordinator
                .create_topic(name, partitions, BTreeMap::new(), false)
                .await
                .unwrap();
        }
        coordinator
    }

    #[tokio::test]
    async fn a_large_commit_goes_in_transactions_etcd_accepts() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator
            .create_topic("wide", 250, BTreeMap::new(), false)
            .await
            .unwrap();
        let commits = store.commits();
        let offsets = (0..250)
            .map(|p| at("wide", p, offset(p as i64, 10)))
            .collect();
        let outcomes = coordinator.commit_offsets("g", offsets).await.unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(store.commits(), commits + 3);
        assert_eq!(coordinator.committed_offsets("g").len(), 250);
    }

    #[tokio::test]
    async fn commit_is_one_transaction_with_per_partition_outcomes() {
        let store = TestStore::new();
        let coordinator = with_topics(&store).await;
        let commits = store.commits();
        let long = CommittedOffset {
            metadata: "x".repeat(MAX_METADATA_BYTES + 1),
            ..offset(1, 0)
        };
        let outcomes = coordinator
            .commit_offsets(
                "g",
                vec![
                    at("a", 0, offset(5, 10)),
                    at("a", 2, offset(1, 10)),
                    at("nope", 0, offset(1, 10)),
                    at("b", 0, long),
                    at("a", 1, offset(7, 10)),
                    at("a", 1, offset(8, 11)),
                ],
            )
            .await
            .unwrap();
        let codes: Vec<i16> = outcomes
            .iter()
            .map(|o| o.as_ref().map_or_else(|e| e.error_code(), |_| 0))
            .collect();
        assert_eq!(codes, [0, 3, 3, 12, 0, 0]);
        assert_eq!(store.commits(), commits + 1);
        let committed = coordinator.committed_offsets("g");
        assert_eq!(
            committed,
            BTreeMap::from([
                (("a".to_string(), 0), offset(5, 10)),
                (("a".to_string(), 1), offset(8, 11)),
            ])
        );
        assert!(coordinator.committed_offsets("other").is_empty());
        assert_eq!(coordinator.groups_with_offsets(), ["g"]);
    }

    #[tokio::test]
    async fn a_failed_commit_commits_nothing() {
        let store = TestStore::new();
        let coordinator = with_topics(&store).await;
        store.fail_commits(true);
        let result = coordinator
            .commit_offsets("g", vec![at("a", 0, offset(5, 10))])
            .await;
        assert!(matches!(result, Err(CoordinatorError::Store(_))));
        assert!(coordinator.committed_offsets("g").is_empty());
    }

    #[tokio::test]
    async fn offsets_survive_a_reopen_and_delete_with_their_group_or_topic() {
        async fn open_embedded(dir: &std::path::Path) -> Arc<Coordinator> {
            let store = EmbeddedStore::open(dir.join(METADATA_FILE)).unwrap();
            Coordinator::open(Arc::new(store), BrokerDefaults::default())
                .await
                .unwrap()
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let coordinator = open_embedded(dir.path()).await;
            coordinator
                .create_topic("a", 2, BTreeMap::new(), false)
                .await
                .unwrap();
            coordinator
                .create_topic("b", 1, BTreeMap::new(), false)
                .await
                .unwrap();
            for group in ["g/1", "g%2", "h"] {
                coordinator
                    .commit_offsets(
                        group,
                        vec![
                            at("a", 0, offset(1, 1)),
                            at("a", 1, offset(2, 1)),
                            at("b", 0, offset(3, 1)),
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
        let coordinator = open_embedded(dir.path()).await;
        assert_eq!(coordinator.groups_with_offsets(), ["g%2", "g/1", "h"]);
        assert_eq!(coordinator.committed_offsets("g/1").len(), 3);

        coordinator
            .delete_offsets("h", &[("a".into(), 1), ("zzz".into(), 0)])
            .await
            .unwrap();
        coordinator
            .delete_group_offsets(&["g%2".to_string(), "missing".to_string()])
            .await
            .unwrap();
        coordinator.delete_topic("b").await.unwrap();
        drop(coordinator);

        let coordinator = open_embedded(dir.path()).await;
        assert_eq!(coordinator.groups_with_offsets(), ["g/1", "h"]);
        let keys = |group| -> Vec<(String, i32)> {
            coordinator.committed_offsets(group).into_keys().collect()
        };
        assert_eq!(keys("g/1"), [("a".to_string(), 0), ("a".to_string(), 1)]);
        assert_eq!(keys("h"), [("a".to_string(), 0)]);
    }

    #[tokio::test]
    async fn offsets_of_empty_groups_expire_after_the_retention() {
        let store = TestStore::new();
        let coordinator = with_topics(&store).await;
        let commit = |group: &'static str, committed: Vec<(String, i32, CommittedOffset)>| {
            let coordinator = coordinator.clone();
            async move { coordinator.commit_offsets(group, committed).await.unwrap() }
        };
        commit(
            "old",
            vec![at("a", 0, offset(1, 100)), at("a", 1, offset(1, 900))],
        )
        .await;
        commit("active", vec![at("a", 0, offset(1, 100))]).await;
        commit("recent", vec![at("a", 0, offset(1, 100))]).await;
        let retention = 1000;
        // "old" emptied at 200: a:0 is due at 1200, a:1 (committed later) at 1900.
        // "recent" emptied at 1500; "active" has members, so it is not listed.
        let empty = [("old".to_string(), 200), ("recent".to_string(), 1500)];
        assert_eq!(
            coordinator
                .expire_offsets(&empty, 1199, retention)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            coordinator
                .expire_offsets(&empty, 1200, retention)
                .await
                .unwrap(),
            1
        );
        assert_eq!(coordinator.committed_offsets("old").len(), 1);
        assert_eq!(
            coordinator
                .expire_offsets(&empty, 2500, retention)
                .await
                .unwrap(),
            2
        );
        assert_eq!(coordinator.groups_with_offsets(), ["active"]);
    }

    #[tokio::test]
    async fn lag_is_high_watermark_minus_committed() {
        let store = TestStore::new();
        let coordinator = with_topics(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let a = coordinator.topic("a").unwrap().topic_id;
        coordinator
            .commit_flush(one_object(vec![
                commit(a, 0, 0, chunk(0, 9)),
                commit(a, 1, 0, chunk(0, 4)),
            ]))
            .await
            .unwrap();
        coordinator
            .commit_offsets(
                "g",
                vec![
                    at("a", 0, offset(3, 1)),
                    at("a", 1, offset(7, 1)),
                    at("b", 0, offset(0, 1)),
                ],
            )
            .await
            .unwrap();
        let lag: Vec<(String, i32, i64)> = coordinator
            .consumer_lag()
            .into_iter()
            .map(|l| (l.topic, l.partition, l.lag))
            .collect();
        assert_eq!(
            lag,
            [
                ("a".to_string(), 0, 7),
                ("a".to_string(), 1, 0),
                ("b".to_string(), 0, 0)
            ]
        );
        coordinator.delete_topic("a").await.unwrap();
        assert_eq!(coordinator.consumer_lag().len(), 1);
    }
}
