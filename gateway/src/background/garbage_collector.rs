//! Deletes objects nothing references any more: flush objects whose chunks were all
//! compacted, segments removed by retention or with their topic, and leftovers of crashed
//! flushes and compactions.
//!
//! It owns only the key spaces Strata writes data under (`flush/` and `topics/`): anything
//! else in the store (the cluster marker, or objects that are not Strata's) is never touched.
//! In a cluster each gateway collects only what no live process may be writing (see `owns`).
//! An object being written or committed is never deleted (see `in_flight_objects.rs`); any
//! other unreferenced one once it has been seen unreferenced for `object_delete_grace` and
//! is at least that old, so readers that looked it up just before it was replaced finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use segment_store::formats::flush_object::FLUSH_PREFIX;
use segment_store::formats::segment::SEGMENT_PREFIX;
use segment_store::store::{ObjectMeta, StoreError};
use tokio::sync::watch;
use uuid::Uuid;

use crate::background::next_pass;
use crate::broker::Broker;

/// The key spaces the collector owns.
const COLLECTED_PREFIXES: [&str; 2] = [FLUSH_PREFIX, SEGMENT_PREFIX];

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let grace = broker.config.object_delete_grace;
    let mut unreferenced_since: HashMap<String, Instant> = HashMap::new();
    let interval = (grace / 2).max(Duration::from_millis(100));
    while next_pass(interval, &mut shutdown).await {
        if let Err(e) = collect(&broker, grace, &mut unreferenced_since).await {
            broker.metrics.garbage_collection.errors.inc();
            tracing::warn!(error = %e, "object garbage collection failed; will retry");
        }
    }
}

/// One pass: lists the owned key spaces and deletes what is due. A failed delete is counted
/// and retried on the next pass; it does not stop this one.
async fn collect(
    broker: &Broker,
    grace: Duration,
    unreferenced_since: &mut HashMap<String, Instant>,
) -> Result<(), StoreError> {
    let mut objects: Vec<ObjectMeta> = Vec::new();
    for prefix in COLLECTED_PREFIXES {
        objects.extend(broker.store.list(prefix).await?);
    }
    // In this order, after listing: a listed object that is no longer in flight has been
    // committed by now (or given up), so the references read next include it.
    let in_flight = broker.in_flight.keys();
    let referenced = broker.coordinator.referenced_objects();
    let now = SystemTime::now();
    let mut still_unreferenced = HashMap::new();
    for object in objects {
        if referenced.contains(&object.key)
            || in_flight.contains(&object.key)
            || !owns(broker, &object.key)
        {
            continue;
        }
        let since = unreferenced_since
            .get(&object.key)
            .copied()
            .unwrap_or_else(Instant::now);
        let age = now.duration_since(object.last_modified).unwrap_or_default();
        if since.elapsed() < grace || age < grace {
            still_unreferenced.insert(object.key, since);
            continue;
        }
        match broker.store.delete(&object.key).await {
            Ok(()) => {
                broker.read_cache.invalidate(&object.key);
                tracing::debug!(key = %object.key, "deleted unreferenced object");
            }
            Err(e) => {
                broker.metrics.garbage_collection.errors.inc();
                tracing::warn!(key = %object.key, error = %e, "cannot delete an unreferenced object; will retry");
                still_unreferenced.insert(object.key, since);
            }
        }
    }
    *unreferenced_since = still_unreferenced;
    Ok(())
}

/// Whether this broker may collect `key`: only objects no live process of the cluster may be
/// writing, as this broker's in-flight set covers only its own. Flush objects of this broker
/// or of one that is not registered (its commits are fenced); segment objects of partitions
/// this broker leads (only a partition's leader compacts it) or of deleted topics.
fn owns(broker: &Broker, key: &str) -> bool {
    if let Some(rest) = key.strip_prefix(FLUSH_PREFIX) {
        let Some(writer) = rest.split('/').next().and_then(|id| id.parse::<i32>().ok()) else {
            return true;
        };
        return writer == broker.broker_id
            || !broker
                .coordinator
                .brokers()
                .iter()
                .any(|b| b.broker_id == writer);
    }
    if let Some(rest) = key.strip_prefix(SEGMENT_PREFIX) {
        let mut parts = rest.split('/');
        let topic_id = parts.next().and_then(|t| t.parse::<Uuid>().ok());
        let partition = parts.next().and_then(|p| p.parse::<i32>().ok());
        let (Some(topic_id), Some(partition)) = (topic_id, partition) else {
            return true;
        };
        if broker.coordinator.topic_by_id(topic_id).is_none() {
            return true;
        }
        return broker
            .coordinator
            .leader(topic_id, partition)
            .is_some_and(|leader| leader.broker_id == broker.broker_id);
    }
    true
}

/// At start-up, before this broker flushes anything: its earlier incarnation's flush objects
/// that were never committed (crash between PUT and commit, or torn) are garbage now.
pub async fn remove_uncommitted_flushes(broker: &Broker) -> Result<usize, StoreError> {
    let prefix = format!("{FLUSH_PREFIX}{}/", broker.broker_id);
    let referenced = broker.coordinator.referenced_objects();
    let mut removed = 0;
    for object in broker.store.list(&prefix).await? {
        if !referenced.contains(&object.key) {
            broker.store.delete(&object.key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use segment_store::backends::memory::MemoryStore;
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::background::flusher;
    use crate::config::BrokerConfig;
    use crate::test_support::{append, broker, eventually, record_batch, topic, GatedStore};

    /// Two passes with no grace: the first sees an object unreferenced, the second acts.
    async fn collect_now(broker: &Broker) {
        let mut unreferenced_since = HashMap::new();
        for _ in 0..2 {
            collect(broker, Duration::ZERO, &mut unreferenced_since)
                .await
                .unwrap();
        }
    }

    async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
        let listed = store.list(prefix).await.unwrap();
        listed.into_iter().map(|object| object.key).collect()
    }

    #[tokio::test]
    async fn an_object_waiting_for_its_commit_is_never_collected() {
        let store = Arc::new(GatedStore::new(1));
        // Every append fills an object; nothing unreferenced is spared by a grace period.
        let config = BrokerConfig {
            flush_bytes: 1,
            object_delete_grace: Duration::ZERO,
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store.clone(), config.clone()).await;
        let topic = topic(&broker, "orders", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flusher = tokio::spawn(flusher::run(broker.clone(), stopped));

        // The first flush's PUT hangs (a store brown-out); the second flush's object is
        // stored and waits to commit after the first.
        append(&broker, &partition, &record_batch(-1, -1, -1, 2, 1_000));
        eventually("the first PUT", || store.puts_started() == 1).await;
        append(&broker, &partition, &record_batch(-1, -1, -1, 3, 2_000));
        tokio::time::timeout(Duration::from_secs(5), async {
            while keys(store.inner(), FLUSH_PREFIX).await.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the second object is stored");

        collect_now(&broker).await;
        assert_eq!(
            keys(store.inner(), FLUSH_PREFIX).await.len(),
            1,
            "the object waiting for its commit was collected"
        );

        store.release(0);
        let mut commits = partition.subscribe();
        tokio::time::timeout(
            Duration::from_secs(5),
            commits.wait_for(|c| c.high_watermark == 5),
        )
        .await
        .unwrap()
        .unwrap();
        let _ = stop.send(true);
        flusher.await.unwrap();
        collect_now(&broker).await;

        // Both objects are referenced and stay; a broker with an empty tail reads every
        // record back from them.
        assert_eq!(keys(store.inner(), FLUSH_PREFIX).await.len(), 2);
        let reader = Broker::new(
            0,
            config,
            broker.coordinator.clone(),
            store,
            broker.metrics.clone(),
        );
        let partition = reader.partition(&topic, 0).unwrap();
        let batches = reader
            .log_reader()
            .read(&partition, 0, 5, usize::MAX, true)
            .await
            .unwrap()
            .record_batches();
        let offsets: Vec<_> = batches.iter().map(|b| b.base_offset()).collect();
        assert_eq!(offsets, [0, 2]);
    }

    #[tokio::test]
    async fn only_the_key_spaces_strata_writes_are_collected() {
        let store = Arc::new(MemoryStore::new());
        let (broker, _dir) = broker(store.clone(), BrokerConfig::default()).await;
        for key in [
            "metadata.log",
            "strata-cluster.json",
            "backups/2026/dump",
            "flush/9/orphan.flush",
            "topics/0b6f2c1e/0/00000000000000000000-orphan.log",
        ] {
            store
                .put(key, Bytes::from_static(b"x").into())
                .await
                .unwrap();
        }
        collect_now(&broker).await;
        assert_eq!(
            keys(store.as_ref(), "").await,
            ["backups/2026/dump", "metadata.log", "strata-cluster.json"]
        );
    }
}
