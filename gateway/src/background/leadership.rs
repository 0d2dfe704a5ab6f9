//! Follows leadership changes. Whenever brokers, topics or leaders change, the broker drops the
//! partitions it no longer leads (see `Broker::forget_lost_partitions`) and hands over those
//! the controller marked to move: it stops accepting writes to one, waits until the flusher
//! has committed everything it buffered, then passes leadership on at the next epoch
//! (Kafka's controlled move), so no acknowledged write is left behind and producers only
//! see NOT_LEADER_OR_FOLLOWER, which they retry on the new leader.

use std::collections::HashSet;
use std::sync::Arc;

use coordinator::PartitionLeader;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut changes = broker.coordinator.leadership_changes();
    let mut handing_over: HashSet<(Uuid, i32, i32)> = HashSet::new();
    let mut handovers = JoinSet::new();
    loop {
        broker.forget_lost_partitions();
        for (topic_id, partition, leader) in broker.coordinator.handovers() {
            if handing_over.insert((topic_id, partition, leader.leader_epoch)) {
                handovers.spawn(hand_over(broker.clone(), topic_id, partition, leader));
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            Some(done) = handovers.join_next(), if !handovers.is_empty() => {
                if let Ok(key) = done {
                    handing_over.remove(&key);
                }
            }
            _ = stop.wait_for(|&stop| stop) => return,
        }
    }
}

/// Hands one partition over; returns its key.
async fn hand_over(
    broker: Arc<Broker>,
    topic_id: Uuid,
    partition: i32,
    leader: PartitionLeader,
) -> (Uuid, i32, i32) {
    let key = (topic_id, partition, leader.leader_epoch);
    let loaded = broker
        .loaded_partition(topic_id, partition)
        .filter(|p| p.leader_epoch == leader.leader_epoch);
    if let Some(loaded) = &loaded {
        let end = loaded.stop_appends();
        let mut commits = loaded.subscribe();
        let flushed = commits
            .wait_for(|c| c.high_watermark >= end || c.closed)
            .await
            .is_ok_and(|c| !c.closed);
        if !flushed {
            // Its buffered batches were refused: nothing of it is left to pass on here.
            broker.forget_partition(loaded);
            return key;
        }
    }
    let released = broker
        .coordinator
        .release_leadership(topic_id, partition, leader.leader_epoch)
        .await;
    if let Err(e) = released {
        tracing::warn!(%topic_id, partition, error = %e, "handover did not complete");
    }
    // Loaded afresh from the committed log if it stays here after all.
    if let Some(loaded) = &loaded {
        broker.forget_partition(loaded);
    }
    key
}
