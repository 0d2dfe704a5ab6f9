//! `strata coordinator`: a replica of the cluster's coordinator. Every replica stands for
//! election through etcd; the one that wins is active and runs the controller (partition
//! leaders, dead flush records) and compacts etcd's history, the others wait to take over
//! when its session expires. It serves `/metrics`, `/healthz` and `/readyz` (ready while
//! connected, active or standing by).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coordinator::EtcdStore;
use tokio::sync::watch;
use uuid::Uuid;

use crate::background::controller;
use crate::commands::open_cluster;
use crate::config::{self, CoordinatorArgs};
use crate::http::{self, Readiness};
use crate::metrics::Metrics;
use crate::partition::flush_queue::UnflushedAge;
use crate::server::shutdown_signal;

/// How much of etcd's history the active coordinator keeps: watchers that fall further
/// behind (a process paused this long) load a snapshot instead.
const HISTORY_KEPT: Duration = Duration::from_secs(60);

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let (config, defaults) = config::load(args.config.as_deref())?;
    let (etcd, coordinator) = open_cluster(&args.etcd, config.session_timeout, defaults).await?;
    let metrics = Arc::new(Metrics::new());
    metrics.observe_metadata_store(etcd.metrics().clone());
    let readiness = Arc::new(Readiness::new(
        Arc::new(UnflushedAge::default()),
        config.flush_stall_timeout,
    ));
    let http_listener = http::bind(args.http)
        .await
        .with_context(|| format!("cannot serve HTTP on {}", args.http))?;
    let (stop, stopped) = watch::channel(false);
    let http_server = tokio::spawn(http::serve(
        http_listener,
        metrics.clone(),
        readiness.clone(),
        stopped.clone(),
    ));
    readiness.set_accepting(true);
    let name = format!("{}-{}", std::process::id(), Uuid::new_v4().simple());
    tracing::info!(%name, http = %args.http, "strata coordinator is standing for election");

    let elected = async {
        let mut changes = coordinator.changes();
        loop {
            match coordinator.campaign(&name).await {
                Ok(true) => return Ok::<_, anyhow::Error>(()),
                Ok(false) => {}
                // etcd electing a leader, say: stand again.
                Err(e) => tracing::warn!(error = %e, "cannot stand for election; retrying"),
            }
            let _ = tokio::time::timeout(config.session_timeout, changes.changed()).await;
        }
    };
    let outcome = tokio::select! {
        won = elected => won.map(|()| true),
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down while standing by");
            Ok(false)
        }
        _ = etcd.session_expired() => Err(anyhow::anyhow!("the etcd session expired while standing by")),
    };
    if outcome? {
        tracing::info!(%name, "elected: this coordinator is active");
        metrics.coordinator_active.set(1);
        metrics.coordinator_elections.inc();
        let control = controller::run(
            coordinator.clone(),
            config.leader_balance,
            metrics.controller.clone(),
            metrics.leader_changes.clone(),
            stopped.clone(),
        );
        tokio::select! {
            () = control => {}
            () = compact_history(&etcd) => {}
            signal = shutdown_signal() => tracing::info!(signal, "shutting down the active coordinator"),
            _ = etcd.session_expired() => {
                let _ = stop.send(true);
                anyhow::bail!("the etcd session expired: another coordinator takes over; exiting");
            }
        }
    }
    let _ = stop.send(true);
    // Another replica takes over at once rather than after the session timeout.
    if let Err(e) = etcd.end_session().await {
        tracing::warn!(error = %e, "cannot end the etcd session; it expires on its own");
    }
    let _ = http_server.await;
    Ok(())
}

/// Discards etcd's history older than [`HISTORY_KEPT`], so the store stays within its quota.
async fn compact_history(etcd: &EtcdStore) {
    let mut kept_from: Option<u64> = None;
    loop {
        tokio::time::sleep(HISTORY_KEPT).await;
        if let Some(revision) = kept_from {
            match etcd.compact_history(revision).await {
                Ok(()) => tracing::debug!(revision, "compacted etcd history"),
                Err(e) => tracing::warn!(error = %e, "cannot compact etcd history; will retry"),
            }
        }
        kept_from = etcd.revision().await.ok();
    }
}
