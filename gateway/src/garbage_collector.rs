//! Deletes objects nothing references any more: flush objects whose chunks were all
//! compacted, segments removed by retention or with their topic, and leftovers of crashed
//! flushes and compactions. An object is deleted only after it has been seen unreferenced for
//! `object_delete_grace` and is at least that old, so in-flight writes and reads are safe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use segment_store::flush_object::FLUSH_PREFIX;
use segment_store::store::StoreError;
use tokio::sync::watch;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let grace = broker.config.object_delete_grace;
    let mut unreferenced_since: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep((grace / 2).max(Duration::from_millis(100))) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = collect(&broker, grace, &mut unreferenced_since).await {
            tracing::warn!(error = %e, "object garbage collection failed; will retry");
        }
    }
}

async fn collect(
    broker: &Broker,
    grace: Duration,
    unreferenced_since: &mut HashMap<String, Instant>,
) -> Result<(), StoreError> {
    let objects = broker.store.list("").await?;
    let referenced = broker.coordinator.referenced_objects();
    let now = SystemTime::now();
    let mut still_unreferenced = HashMap::new();
    for object in objects {
        if referenced.contains(&object.key) {
            continue;
        }
        let since = unreferenced_since
            .get(&object.key)
            .copied()
            .unwrap_or_else(Instant::now);
        let age = now.duration_since(object.last_modified).unwrap_or_default();
        if since.elapsed() >= grace && age >= grace {
            broker.store.delete(&object.key).await?;
            broker.read_cache.invalidate(&object.key);
            tracing::debug!(key = %object.key, "deleted unreferenced object");
        } else {
            still_unreferenced.insert(object.key, since);
        }
    }
    *unreferenced_since = still_unreferenced;
    Ok(())
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
