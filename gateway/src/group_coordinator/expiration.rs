//! Every `offsets.retention.check.interval.ms`, expires the committed offsets of groups that
//! stayed empty past `offsets.retention.minutes` and forgets empty groups left without any.

use std::sync::Arc;

use tokio::sync::watch;

use crate::background::isolated;
use crate::broker::Broker;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(broker.groups.config().offsets_retention_check_interval) => {}
            _ = shutdown.changed() => return,
        }
        let metrics = &broker.metrics.offset_expiration;
        let pass = broker.groups.expire_offsets();
        isolated("offset_expiration", metrics, "committed offsets", pass).await;
    }
}
