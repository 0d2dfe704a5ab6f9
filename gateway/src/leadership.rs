//! Follows leadership changes: whenever the metadata changes, the broker drops the
//! partitions it no longer leads (see `Broker::forget_lost_partitions`).

use std::sync::Arc;

use tokio::sync::watch;

use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut changes = broker.coordinator.changes();
    loop {
        broker.forget_lost_partitions();
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|&stop| stop) => return,
        }
    }
}
