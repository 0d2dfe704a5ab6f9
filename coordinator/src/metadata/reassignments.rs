//! Moving partitions by hand, as Kafka's admin tools do. A partition's only replica is its
//! leader, so reassigning it to a broker makes that broker its preferred leader and hands
//! leadership over to it; a preferred leader election brings leadership back to the
//! preferred leader, and an unclean election gives a leaderless partition a live leader.

use uuid::Uuid;

use super::records::{unchanged, Changes, Record};
use super::state::State;
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::PartitionLeader;

/// A partition on its way to the broker it was reassigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reassignment {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The broker leading it until the handover completes.
    pub leader: i32,
    pub target: i32,
}

impl Coordinator {
    /// Kafka's AlterPartitionReassignments for one partition. `Some(target)` assigns the
    /// partition to the live broker `target`, its preferred leader from now on, and starts a
    /// handover to it unless it leads already; `None` cancels a reassignment in progress: the
    /// partition stays with its leader, assigned to no broker.
    pub async fn reassign_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        target: Option<i32>,
    ) -> Result<(), CoordinatorError> {
        self.commit_computed(|state| Ok(((), reassignment(state, topic_id, partition, target)?)))
            .await
    }

    /// The reassignments in progress.
    pub fn reassignments(&self) -> Vec<Reassignment> {
        self.read()
            .leaders()
            .filter_map(|(topic_id, partition, leader)| {
                let leader = leader?;
                let target = leader
                    .moving_to
                    .filter(|&to| leader.preferred == Some(to))?;
                Some(Reassignment {
                    topic_id,
                    partition,
                    leader: leader.broker_id,
                    target,
                })
            })
            .collect()
    }

    /// Kafka's preferred leader election for one partition: starts a handover to its
    /// preferred leader (or lets the controller place it there, if its leader is gone) and
    /// returns that broker's id. ElectionNotNeeded when the preferred leader leads it already
    /// or it has none (the controller places it), PreferredLeaderNotAvailable when that
    /// broker is not live.
    pub async fn elect_preferred_leader(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<i32, CoordinatorError> {
        self.commit_computed(|state| preferred_election(state, topic_id, partition))
            .await
    }

    /// Kafka's unclean leader election for one partition. Every broker holds every
    /// partition's whole log, so it differs from a clean one in nothing: a partition whose
    /// leader is gone gets a live one (as the controller would give it);
    /// ElectionNotNeeded when its leader is live, EligibleLeadersNotAvailable when no broker is.
    pub async fn elect_leader(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<(), CoordinatorError> {
        {
            let state = self.read();
            let log = state
                .partition(topic_id, partition)
                .ok_or_else(|| unknown(topic_id, partition))?;
            if let Some(leader) = log
                .leader
                .filter(|l| state.brokers.contains_key(&l.broker_id))
            {
                return Err(CoordinatorError::ElectionNotNeeded(format!(
                    "{topic_id}-{partition} is led by live broker {}",
                    leader.broker_id
                )));
            }
            if state.brokers.is_empty() {
                return Err(CoordinatorError::EligibleLeadersNotAvailable(
                    "no broker is live".to_string(),
                ));
            }
        }
        self.assign_leaders().await.map(|_| ())
    }
}

fn unknown(topic_id: Uuid, partition: i32) -> CoordinatorError {
    CoordinatorError::UnknownTopicOrPartition(format!("{topic_id}-{partition} does not exist"))
}

/// The current leader record of a partition that has one.
fn current_leader(
    state: &State,
    topic_id: Uuid,
    partition: i32,
) -> Result<PartitionLeader, CoordinatorError> {
    let log = state
        .partition(topic_id, partition)
        .ok_or_else(|| unknown(topic_id, partition))?;
    log.leader.ok_or_else(|| {
        CoordinatorError::LeaderNotAvailable(format!(
            "{topic_id}-{partition} has had no leader yet"
        ))
    })
}

/// The leader record replacing `old`, guarded on `old` and on the registration of every
/// live broker it names.
fn leader_change(
    state: &State,
    topic_id: Uuid,
    partition: i32,
    old: PartitionLeader,
    new: PartitionLeader,
) -> Changes {
    let mut changes = Changes {
        guards: vec![unchanged(&Record::Leader(topic_id, partition, old))],
        ..Changes::put(Record::Leader(topic_id, partition, new))
    };
    for broker_id in new.moving_to.iter().chain(&new.preferred) {
        if let Some(registration) = state.brokers.get(broker_id) {
            changes
                .guards
                .push(unchanged(&Record::Broker(registration.clone())));
        }
    }
    changes
}

fn reassignment(
    state: &State,
    topic_id: Uuid,
    partition: i32,
    target: Option<i32>,
) -> Result<Option<Changes>, CoordinatorError> {
    let old = current_leader(state, topic_id, partition)?;
    let new = match target {
        Some(target) => {
            if !state.brokers.contains_key(&target) {
                return Err(CoordinatorError::InvalidReplicaAssignment(format!(
                    "broker {target} is not live"
                )));
            }
            // A leader that is gone passes the partition on as the controller gives it a
            // new one, which is then its preferred leader.
            let leader_live = state.brokers.contains_key(&old.broker_id);
            PartitionLeader {
                moving_to: (old.broker_id != target && leader_live).then_some(target),
                preferred: Some(target),
                ..old
            }
        }
        None => {
            if old.moving_to.is_none() || old.moving_to != old.preferred {
                return Err(CoordinatorError::NoReassignmentInProgress(format!(
                    "{topic_id}-{partition} is not being reassigned"
                )));
            }
            PartitionLeader {
                moving_to: None,
                preferred: None,
                ..old
            }
        }
    };
    Ok((new != old).then(|| leader_change(state, topic_id, partition, old, new)))
}

/// The preferred leader, and the change that starts its election if one is needed.
fn preferred_election(
    state: &State,
    topic_id: Uuid,
    partition: i32,
) -> Result<(i32, Option<Changes>), CoordinatorError> {
    let old = current_leader(state, topic_id, partition)?;
    let Some(preferred) = old.preferred else {
        return Err(CoordinatorError::ElectionNotNeeded(format!(
            "{topic_id}-{partition} is assigned to no broker: the controller places it"
        )));
    };
    if old.broker_id == preferred {
        return Err(CoordinatorError::ElectionNotNeeded(format!(
            "{topic_id}-{partition} is led by its preferred leader {preferred}"
        )));
    }
    if !state.brokers.contains_key(&preferred) {
        return Err(CoordinatorError::PreferredLeaderNotAvailable(format!(
            "the preferred leader of {topic_id}-{partition}, broker {preferred}, is not live"
        )));
    }
    // Under way already, or the controller gives it to its preferred leader once the old
    // one's registration is gone.
    if old.moving_to == Some(preferred) || !state.brokers.contains_key(&old.broker_id) {
        return Ok((preferred, None));
    }
    let new = PartitionLeader {
        moving_to: Some(preferred),
        ..old
    };
    let changes = leader_change(state, topic_id, partition, old, new);
    Ok((preferred, Some(changes)))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::test_support::{broker, caught_up, expire_session, open, two_brokers};
    use super::Reassignment;
    use crate::error::CoordinatorError;
    use crate::metadata::{Coordinator, LeaderBalance};

    /// (leader, epoch, moving to, preferred) of a partition.
    fn leadership(
        coordinator: &Coordinator,
        t: Uuid,
        p: i32,
    ) -> (i32, i32, Option<i32>, Option<i32>) {
        let l = coordinator.leader(t, p).unwrap();
        (l.broker_id, l.leader_epoch, l.moving_to, l.preferred)
    }

    #[tokio::test]
    async fn a_reassigned_partition_is_handed_over_and_stays_with_its_broker() {
        let (_store, one, _two, t) = two_brokers(2).await;
        one.reassign_partition(t, 0, Some(2)).await.unwrap();
        assert_eq!(leadership(&one, t, 0), (1, 0, Some(2), Some(2)));
        let ongoing = Reassignment {
            topic_id: t,
            partition: 0,
            leader: 1,
            target: 2,
        };
        assert_eq!(one.reassignments(), [ongoing]);

        // The leader releases it once it has committed what it buffered.
        one.release_leadership(t, 0, 0).await.unwrap();
        assert_eq!(leadership(&one, t, 0), (2, 1, None, Some(2)));
        assert!(one.reassignments().is_empty());

        // Broker 2 leads both now: balancing by count moves the other one, not the one
        // reassigned by hand.
        let started = one
            .balance_leaders(LeaderBalance::default(), None)
            .await
            .unwrap();
        assert_eq!(started, 1);
        assert_eq!(leadership(&one, t, 0), (2, 1, None, Some(2)));
        assert_eq!(leadership(&one, t, 1), (2, 0, Some(1), None));
    }

    #[tokio::test]
    async fn a_reassignment_names_one_live_broker_and_only_one_under_way_is_cancelled() {
        let (_store, one, _two, t) = two_brokers(2).await;
        let code = |r: Result<(), CoordinatorError>| r.unwrap_err().error_code();
        assert_eq!(code(one.reassign_partition(t, 0, Some(7)).await), 39);
        assert_eq!(code(one.reassign_partition(t, 9, Some(2)).await), 3);
        assert_eq!(code(one.reassign_partition(t, 0, None).await), 85);

        one.reassign_partition(t, 0, Some(2)).await.unwrap();
        one.reassign_partition(t, 0, None).await.unwrap();
        assert_eq!(leadership(&one, t, 0), (1, 0, None, None));
        assert_eq!(code(one.reassign_partition(t, 0, None).await), 85);

        // To the broker that leads it: no handover, but it stays there from now on.
        one.reassign_partition(t, 1, Some(2)).await.unwrap();
        assert_eq!(leadership(&one, t, 1), (2, 0, None, Some(2)));
        assert!(one.reassignments().is_empty());
    }

    #[tokio::test]
    async fn preferred_leaders_come_back_by_election_or_past_the_imbalance_threshold() {
        let (store, one, two, t) = two_brokers(4).await;
        // Partitions 0 and 2 belong on broker 1.
        for p in [0, 2] {
            one.reassign_partition(t, p, Some(1)).await.unwrap();
        }
        let code = |r: Result<i32, CoordinatorError>| r.unwrap_err().error_code();
        assert_eq!(code(one.elect_preferred_leader(t, 0).await), 84);
        assert_eq!(code(one.elect_preferred_leader(t, 1).await), 84);

        // Broker 1 dies: its partitions fail over to broker 2, and cannot be elected back.
        expire_session(&store, 1).await;
        caught_up(&two, &store).await;
        assert_eq!(two.assign_leaders().await.unwrap(), 2);
        assert_eq!(leadership(&two, t, 0), (2, 1, None, Some(1)));
        assert_eq!(code(two.elect_preferred_leader(t, 0).await), 80);

        // It comes back under the same id.
        let back = open(&store).await;
        back.register_broker(broker(1)).await.unwrap();
        caught_up(&two, &store).await;
        let no_rebalance = LeaderBalance {
            auto_rebalance: false,
            ..LeaderBalance::default()
        };
        assert_eq!(two.balance_leaders(no_rebalance, None).await.unwrap(), 0);
        // Both of its two partitions are led elsewhere: 100%, not above a 100% threshold.
        // Balancing by count moves the two assigned to no broker instead.
        let tolerant = LeaderBalance {
            imbalance_per_broker_percentage: 100,
            ..LeaderBalance::default()
        };
        assert_eq!(two.balance_leaders(tolerant, None).await.unwrap(), 2);
        let moving = |p| leadership(&two, t, p).2;
        assert_eq!([0, 1, 2, 3].map(moving), [None, Some(1), None, Some(1)]);

        // An election brings one back by hand; the default threshold (10%) the other.
        assert_eq!(two.elect_preferred_leader(t, 0).await.unwrap(), 1);
        assert_eq!(leadership(&two, t, 0), (2, 1, Some(1), Some(1)));
        assert_eq!(
            two.balance_leaders(LeaderBalance::default(), None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(leadership(&two, t, 2), (2, 1, Some(1), Some(1)));
    }

    #[tokio::test]
    async fn failover_goes_to_the_preferred_leader_when_it_is_live() {
        let (store, one, _two, t) = two_brokers(2).await;
        one.reassign_partition(t, 1, Some(1)).await.unwrap();
        // Broker 2 dies before it hands partition 1 over.
        expire_session(&store, 2).await;
        caught_up(&one, &store).await;
        assert_eq!(one.assign_leaders().await.unwrap(), 1);
        assert_eq!(leadership(&one, t, 1), (1, 1, None, Some(1)));
    }

    #[tokio::test]
    async fn an_unclean_election_gives_a_leaderless_partition_a_live_leader() {
        let (store, one, _two, t) = two_brokers(2).await;
        let code = |r: Result<(), CoordinatorError>| r.unwrap_err().error_code();
        assert_eq!(code(one.elect_leader(t, 1).await), 84);
        expire_session(&store, 2).await;
        caught_up(&one, &store).await;
        one.elect_leader(t, 1).await.unwrap();
        assert_eq!(leadership(&one, t, 1), (1, 1, None, None));
        assert_eq!(code(one.elect_leader(t, 5).await), 3);
    }
}
