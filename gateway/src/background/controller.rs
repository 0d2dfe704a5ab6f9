//! The controller: the active coordinator's work. It gives every partition without a live
//! leader one (after a broker left or its session expired, or a topic was created while no
//! broker was live), balances leadership through handovers (partitions return to the broker
//! they were reassigned to, the others spread evenly by count, so a new broker takes its
//! share, and by bytes-in over the last minute), and deletes the flush records no log needs
//! any more. It acts on every change of the brokers, the topics or the leaders (not on
//! flush commits, which would make each one cost work over every partition), and on a timer
//! too, so nothing waits on a missed change.
//! `strata coordinator` runs it while it holds the election; `strata standalone` runs it
//! always.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::{BytesInRates, Coordinator, LeaderBalance};
use tokio::sync::watch;

use crate::background::isolated;
use crate::metrics::{BackgroundTaskMetrics, LeaderChangeMetrics};

/// The longest the controller sleeps when nothing changes.
const IDLE_PASS: Duration = Duration::from_secs(1);
/// How often dead flush records are looked for.
const FLUSH_RECORD_SWEEP: Duration = Duration::from_secs(10);
/// After handovers started while balancing by bytes-in, how long until the next balancing
/// by bytes-in: the moved partitions settle first.
const BYTES_IN_SETTLE: Duration = Duration::from_secs(30);

pub async fn run(
    coordinator: Arc<Coordinator>,
    leader_balance: LeaderBalance,
    metrics: BackgroundTaskMetrics,
    leader_changes: LeaderChangeMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = coordinator.leadership_changes();
    let mut last_sweep = Instant::now();
    let mut bytes_in = BytesInRates::new();
    let mut settled_at = Instant::now();
    loop {
        let assigned = isolated(
            "controller",
            &metrics,
            "leaders",
            coordinator.assign_leaders(),
        )
        .await;
        leader_changes.failover.inc_by(assigned.unwrap_or(0) as u64);
        let now = Instant::now();
        bytes_in.sample(&coordinator, now);
        let rates = bytes_in.rates().filter(|_| now >= settled_at);
        let balance = coordinator.balance_leaders(leader_balance, rates);
        let started = isolated("controller", &metrics, "balance", balance).await;
        leader_changes.balance.inc_by(started.unwrap_or(0) as u64);
        if rates.is_some() && started.is_some_and(|started| started > 0) {
            settled_at = now + BYTES_IN_SETTLE;
        }
        if last_sweep.elapsed() >= FLUSH_RECORD_SWEEP {
            last_sweep = Instant::now();
            let sweep = coordinator.delete_dead_flush_records();
            if let Some(deleted) = isolated("controller", &metrics, "flush records", sweep).await {
                if deleted > 0 {
                    tracing::debug!(deleted, "deleted flush records no log needs");
                }
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(IDLE_PASS) => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
    }
}
