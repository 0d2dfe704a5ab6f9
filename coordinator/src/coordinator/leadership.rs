//! Brokers and partition leadership. Every partition has one leader broker and a leader epoch
//! that grows whenever leadership changes hands or its broker restarts, so that the commits
//! of a deposed leader are fenced.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use uuid::Uuid;

use super::records::{BrokerChange, Changes, Record};
use super::state::State;
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::{BrokerInfo, PartitionLeader};

impl Coordinator {
    /// A broker (re)starts: registers it and bumps the leader epoch of every partition it led
    /// (its old incarnation's buffers are gone), then assigns leaderless partitions (those
    /// whose leader is not live) to the least-loaded live brokers.
    pub async fn register_broker(&self, info: BrokerInfo) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let broker_id = info.broker_id;
            let mut live: BTreeSet<i32> = state.brokers.keys().copied().collect();
            live.insert(broker_id);
            let mut assigner = LeaderAssigner::new(&state, &live);
            let mut puts = Vec::new();
            for (topic_id, partition, leader) in state.leaders() {
                let new_leader = match leader {
                    Some(leader) if leader.broker_id == broker_id => PartitionLeader {
                        broker_id,
                        leader_epoch: leader.leader_epoch + 1,
                    },
                    Some(leader) if live.contains(&leader.broker_id) => continue,
                    _ => PartitionLeader {
                        broker_id: assigner.assign().unwrap_or(broker_id),
                        leader_epoch: leader.map_or(0, |leader| leader.leader_epoch + 1),
                    },
                };
                puts.push(Record::Leader(topic_id, partition, new_leader));
            }
            tracing::info!(broker_id, leaders = puts.len(), "registering broker");
            Changes {
                puts,
                deletes: Vec::new(),
                broker: Some(BrokerChange::Register(info)),
            }
        };
        self.commit(guard, changes).await
    }

    /// A broker leaves: its partitions move to the least-loaded live brokers with a new epoch.
    /// With none left they stay on it, with a new epoch all the same to fence it.
    pub async fn unregister_broker(&self, broker_id: i32) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            if !state.brokers.contains_key(&broker_id) {
                return Ok(());
            }
            let live = state
                .brokers
                .keys()
                .copied()
                .filter(|id| *id != broker_id)
                .collect();
            let mut assigner = LeaderAssigner::new(&state, &live);
            let puts: Vec<Record> = state
                .leaders()
                .filter_map(|(topic_id, partition, leader)| {
                    let leader = leader.filter(|leader| leader.broker_id == broker_id)?;
                    let new_leader = PartitionLeader {
                        broker_id: assigner.assign().unwrap_or(broker_id),
                        leader_epoch: leader.leader_epoch + 1,
                    };
                    Some(Record::Leader(topic_id, partition, new_leader))
                })
                .collect();
            tracing::info!(broker_id, leaders = puts.len(), "unregistering broker");
            Changes {
                puts,
                deletes: Vec::new(),
                broker: Some(BrokerChange::Unregister(broker_id)),
            }
        };
        self.commit(guard, changes).await
    }

    /// Live brokers by id.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.read().brokers.values().cloned().collect()
    }

    /// The lowest live broker id, -1 if none.
    pub fn controller_id(&self) -> i32 {
        self.read().brokers.keys().next().copied().unwrap_or(-1)
    }

    /// The broker that coordinates consumer group `group_id`, as Kafka places groups: the
    /// group id's Java hash code modulo the number of choices, here the live brokers by id.
    /// None while no broker is live.
    pub fn group_coordinator(&self, group_id: &str) -> Option<BrokerInfo> {
        let state = self.read();
        let count = state.brokers.len().max(1);
        let index = (java_hash_code(group_id) & 0x7fff_ffff) as usize % count;
        state.brokers.values().nth(index).cloned()
    }

    /// None for an unknown partition, or one no broker has led yet. The leader may be a
    /// broker that is not live (see [`Coordinator::brokers`]) while no live one can take over.
    pub fn leader(&self, topic_id: Uuid, partition: i32) -> Option<PartitionLeader> {
        self.read().partition(topic_id, partition)?.leader
    }
}

/// Leaders for new partitions of a topic, at epoch 0; none while no broker is live (they
/// get one when a broker registers).
pub(super) fn new_partition_leaders(
    state: &State,
    topic_id: Uuid,
    partitions: Range<i32>,
) -> Vec<Record> {
    let live = state.brokers.keys().copied().collect();
    let mut assigner = LeaderAssigner::new(state, &live);
    partitions
        .map_while(|partition| {
            let leader = PartitionLeader {
                broker_id: assigner.assign()?,
                leader_epoch: 0,
            };
            Some(Record::Leader(topic_id, partition, leader))
        })
        .collect()
}

/// Java's `String.hashCode`, over UTF-16 code units.
fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Picks leaders: the live broker leading the fewest partitions, the lowest id on a tie.
struct LeaderAssigner {
    load: BTreeMap<i32, usize>,
}

impl LeaderAssigner {
    fn new(state: &State, live: &BTreeSet<i32>) -> Self {
        let mut load: BTreeMap<i32, usize> = live.iter().map(|broker_id| (*broker_id, 0)).collect();
        for (_, _, leader) in state.leaders() {
            if let Some(count) = leader.and_then(|leader| load.get_mut(&leader.broker_id)) {
                *count += 1;
            }
        }
        LeaderAssigner { load }
    }

    /// None when no broker is live.
    fn assign(&mut self) -> Option<i32> {
        let (broker_id, count) = self.load.iter_mut().min_by_key(|(_, count)| **count)?;
        *count += 1;
        Some(*broker_id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::{broker, chunk, commit, open, TestStore};
    use crate::error::CoordinatorError;
    use crate::PartitionLeader;

    fn leader(broker_id: i32, leader_epoch: i32) -> Option<PartitionLeader> {
        Some(PartitionLeader {
            broker_id,
            leader_epoch,
        })
    }

    #[tokio::test]
    async fn groups_are_placed_by_their_java_hash_code() {
        assert_eq!(super::java_hash_code("hello"), 99_162_322);
        assert_eq!(super::java_hash_code("polygenelubricants"), i32::MIN);
        let store = TestStore::new();
        let coordinator = open(&store).await;
        assert_eq!(coordinator.group_coordinator("a"), None);
        coordinator.register_broker(broker(1)).await.unwrap();
        coordinator.register_broker(broker(2)).await.unwrap();
        let placed = |group| coordinator.group_coordinator(group).map(|b| b.broker_id);
        // 97 % 2 = 1: the second live broker.
        assert_eq!(placed("a"), Some(2));
        assert_eq!(placed("hello"), Some(1));
        assert_eq!(placed("polygenelubricants"), Some(1));
    }

    #[tokio::test]
    async fn partitions_spread_over_live_brokers() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        assert_eq!(coordinator.controller_id(), -1);
        coordinator.register_broker(broker(2)).await.unwrap();
        coordinator.register_broker(broker(1)).await.unwrap();
        assert_eq!(coordinator.controller_id(), 1);
        assert_eq!(coordinator.brokers(), vec![broker(1), broker(2)]);

        let topic = coordinator
            .create_topic("a", 3, BTreeMap::new(), false)
            .await
            .unwrap();
        let leaders: Vec<_> = (0..3)
            .map(|p| coordinator.leader(topic.topic_id, p))
            .collect();
        assert_eq!(leaders, [leader(1, 0), leader(2, 0), leader(1, 0)]);
        // Broker 2 leads fewer, so it gets the next one; then they alternate.
        coordinator.create_partitions("a", 6, false).await.unwrap();
        let leaders: Vec<_> = (3..6)
            .map(|p| coordinator.leader(topic.topic_id, p))
            .collect();
        assert_eq!(leaders, [leader(2, 0), leader(1, 0), leader(2, 0)]);
        assert_eq!(coordinator.leader(topic.topic_id, 6), None);
    }

    #[tokio::test]
    async fn leaderless_partitions_get_a_leader_when_a_broker_registers() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let topic = coordinator
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_eq!(coordinator.leader(topic.topic_id, 0), None);
        coordinator.register_broker(broker(5)).await.unwrap();
        assert_eq!(coordinator.leader(topic.topic_id, 0), leader(5, 0));
        assert_eq!(coordinator.leader(topic.topic_id, 1), leader(5, 0));
    }

    #[tokio::test]
    async fn restart_bumps_the_epoch_and_fences_the_old_incarnation() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let topic = coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(0, 9))])
            .await
            .unwrap();

        coordinator.register_broker(broker(1)).await.unwrap();
        assert_eq!(coordinator.leader(t, 0), leader(1, 1));
        let fenced = coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(10, 19))])
            .await;
        assert!(
            matches!(fenced, Err(CoordinatorError::FencedLeaderEpoch(_))),
            "{fenced:?}"
        );
        assert_eq!(fenced.unwrap_err().error_code(), 74);
        coordinator
            .commit_flush(vec![commit(t, 0, 1, chunk(10, 19))])
            .await
            .unwrap();
        assert_eq!(coordinator.partition_log(t, 0).unwrap().high_watermark, 20);
    }

    #[tokio::test]
    async fn leadership_moves_off_a_departed_broker() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let topic = coordinator
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        coordinator.register_broker(broker(2)).await.unwrap();
        // Broker 2 joining does not move anything.
        assert_eq!(coordinator.leader(t, 1), leader(1, 0));

        coordinator.unregister_broker(1).await.unwrap();
        assert_eq!(coordinator.brokers(), vec![broker(2)]);
        assert_eq!(coordinator.leader(t, 0), leader(2, 1));
        assert_eq!(coordinator.leader(t, 1), leader(2, 1));

        // The last broker leaves: it stays the leader, fenced by a new epoch.
        coordinator.unregister_broker(2).await.unwrap();
        assert_eq!(coordinator.leader(t, 0), leader(2, 2));
        assert_eq!(coordinator.controller_id(), -1);
        // Unknown brokers are ignored.
        coordinator.unregister_broker(7).await.unwrap();

        // A newcomer takes over partitions whose leader is not live.
        coordinator.register_broker(broker(3)).await.unwrap();
        assert_eq!(coordinator.leader(t, 0), leader(3, 3));
    }

    #[tokio::test]
    async fn failed_registration_changes_nothing() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let topic = coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        store.fail_commits(true);
        let result = coordinator.register_broker(broker(2)).await;
        assert!(
            matches!(result, Err(CoordinatorError::Store(_))),
            "{result:?}"
        );
        assert!(coordinator.brokers().is_empty());
        assert_eq!(coordinator.leader(topic.topic_id, 0), None);

        store.fail_commits(false);
        coordinator.register_broker(broker(1)).await.unwrap();
        store.fail_commits(true);
        let result = coordinator.register_broker(broker(1)).await;
        assert_eq!(result.unwrap_err().error_code(), 56);
        assert_eq!(coordinator.leader(topic.topic_id, 0), leader(1, 0));
    }
}
