//! `strata standalone`: the coordinator (embedded store in the data directory) and one
//! broker in one process. Shutdown order keeps acknowledged data: stop accepting, let open
//! requests finish, flush and commit what is buffered, then exit.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coordinator::coordinator::Coordinator;
use coordinator::embedded::EmbeddedStore;
use coordinator::BrokerInfo;
use proto_compat::request::panic_message;
use segment_store::cluster_marker;
use segment_store::disk_cache::DiskCache;
use segment_store::retry::{RetryPolicy, RetryStore};
use segment_store::simulate_failures::{FaultConfig, FaultyStore};
use segment_store::{open_store_with, ObjectStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::background::{isolated, Supervisor};
use crate::broker::Broker;
use crate::config::{self, StandaloneArgs};
use crate::http::Readiness;
use crate::limits::{self, Connection, ConnectionLimits};
use crate::metered_store::MeteredStore;
use crate::metrics::Metrics;
use crate::{compaction, connection, flusher, garbage_collector, http, retention};

/// The one broker of a standalone process.
const BROKER_ID: i32 = 0;
/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Files the broker keeps open besides its connections (stores, caches, listeners).
const RESERVED_FILES: u64 = 256;
/// The wait after a failed accept (e.g. no file descriptor left).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let (mut broker_config, defaults) = config::load(args.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let storage_url = args.storage_url()?;
    check_storage_is_outside_the_data_dir(&storage_url, &args.data_dir)?;
    let flush_interval_source = broker_config.use_store_defaults(&storage_url);
    let metadata_path = args.data_dir.join("metadata.log");
    let metadata = EmbeddedStore::open(&metadata_path)
        .with_context(|| format!("cannot open metadata store {}", metadata_path.display()))?;
    let coordinator = Coordinator::open(Arc::new(metadata), defaults)
        .await
        .context("cannot load the coordinator state")?;

    let metrics = Arc::new(Metrics::new());
    let options = args.storage_options(&broker_config.storage);
    let mut store = open_store_with(&storage_url, &options)
        .await
        .with_context(|| format!("cannot open storage {storage_url}"))?;
    if let Some(latency) = broker_config.simulated_put_latency {
        tracing::warn!(
            p50_ms = latency.p50.as_millis() as u64,
            p99_ms = latency.p99.as_millis() as u64,
            "simulating remote object store PUT latency (a benchmark setting)"
        );
        let config = FaultConfig {
            put_latency: Some(latency),
            ..FaultConfig::default()
        };
        store = Arc::new(FaultyStore::new(store, config));
    }
    // Metered outside the retries: one request per call, its retries counted apart.
    let policy = RetryPolicy {
        attempt_timeout: options.request_timeout,
        ..RetryPolicy::default()
    };
    let store = Arc::new(RetryStore::new(store, policy, metrics.clone()));
    let store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(store, &metrics));
    cluster_marker::claim(store.as_ref(), &coordinator.cluster_id())
        .await
        .with_context(|| format!("cannot use storage {storage_url}"))?;
    // The disk tier goes on top, so that its hits are not object store requests.
    let disk_cache = match &broker_config.read_cache_dir {
        Some(dir) => {
            let disk = DiskCache::open(store.clone(), dir, broker_config.read_cache_disk_bytes)
                .with_context(|| format!("cannot use read cache directory {}", dir.display()))?;
            Some(Arc::new(disk))
        }
        None => None,
    };
    let store = match &disk_cache {
        Some(disk) => disk.clone(),
        None => store,
    };

    let open_files =
        limits::raise_open_files_limit().context("cannot raise the open files limit")?;
    if broker_config.max_connections as u64 + RESERVED_FILES > open_files {
        tracing::warn!(
            open_files,
            max_connections = broker_config.max_connections,
            "the open files limit is below max.connections plus what the broker needs for itself; \
             connections beyond it will be refused by the system"
        );
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let http_listener = http::bind(args.http)
        .await
        .with_context(|| format!("cannot serve HTTP on {}", args.http))?;
    let (host, port) = args.advertised()?;
    coordinator
        .register_broker(BrokerInfo {
            broker_id: BROKER_ID,
            host: host.clone(),
            port,
            rack: None,
        })
        .await
        .context("cannot register the broker")?;

    let broker = Arc::new(Broker::new(
        BROKER_ID,
        broker_config,
        coordinator,
        store,
        metrics.clone(),
    ));
    metrics.observe_read_caches(broker.read_cache.clone(), disk_cache);
    metrics.observe_consumer_lag(broker.coordinator.clone());
    let removed = garbage_collector::remove_uncommitted_flushes(&broker)
        .await
        .context("cannot clean up uncommitted flush objects")?;
    if removed > 0 {
        tracing::info!(removed, "removed flush objects that were never committed");
    }

    let (stop_background, background_stop) = watch::channel(false);
    let (stop_flusher, flusher_stop) = watch::channel(false);
    let readiness = Arc::new(Readiness::new(
        broker.flush_queue.unflushed.clone(),
        broker.config.flush_stall_timeout,
    ));
    let mut flusher = tokio::spawn(flusher::run(broker.clone(), flusher_stop));
    let mut background = Supervisor::new(broker.clone(), background_stop.clone());
    let task_metrics = &broker.metrics;
    background.spawn(
        "compaction",
        task_metrics.compaction.clone(),
        compaction::run,
    );
    background.spawn("retention", task_metrics.retention.clone(), retention::run);
    let expiration = |broker: Arc<Broker>, stop| async move {
        let metrics = &broker.metrics.offset_expiration;
        group_coordinator::expiration::run(&broker.groups, stop, |pass| {
            isolated("offset_expiration", metrics, "committed offsets", pass)
        })
        .await
    };
    background.spawn(
        "offset_expiration",
        task_metrics.offset_expiration.clone(),
        expiration,
    );
    let collection = garbage_collector::run;
    background.spawn(
        "garbage_collection",
        task_metrics.garbage_collection.clone(),
        collection,
    );
    let http_stop = background_stop.clone();
    let http_readiness = readiness.clone();
    let http_server = tokio::spawn(async move {
        if let Err(e) = http::serve(http_listener, metrics, http_readiness, http_stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    readiness.set_accepting(true);
    tracing::info!(
        listen = %args.listen,
        advertised = %format!("{host}:{port}"),
        http = %args.http,
        storage = %storage_url,
        data_dir = %args.data_dir.display(),
        flush_interval_ms = broker.config.flush_interval.as_millis() as u64,
        flush_interval = flush_interval_source,
        "strata standalone is ready"
    );

    let limits = ConnectionLimits::new(
        broker.config.max_connections,
        broker.config.max_connections_per_ip,
        broker.metrics.connections.clone(),
        broker.metrics.connections_rejected.clone(),
    );
    let (stop_connections, connections_stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept(&listener, &limits) => if let Some((socket, peer, admitted)) = accepted {
                connections.spawn(connection::serve(broker.clone(), socket, peer, connections_stop.clone(), admitted));
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down: no new connections, finishing open requests");
                break;
            }
            stopped = &mut flusher => {
                // Its sealed batches are gone with it: nothing more can be committed, so the
                // broker stops rather than accept writes it would never acknowledge. A
                // restart resumes from the committed checkpoint.
                let why = match stopped {
                    Err(e) if e.is_panic() => panic_message(e.into_panic().as_ref()),
                    Err(e) => e.to_string(),
                    Ok(()) => "it returned".to_string(),
                };
                tracing::error!(%why, "the flusher stopped; exiting");
                anyhow::bail!("the flusher stopped ({why}); buffered acks=0/1 batches are lost, acknowledged acks=all ones are committed");
            }
        }
    }
    drop(listener);
    readiness.set_accepting(false);
    let _ = stop_connections.send(true);
    broker.groups.shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        connections.shutdown().await;
    }
    tracing::info!(
        buffered_bytes = broker.flush_queue.buffered_bytes(),
        "flushing buffered batches"
    );
    let _ = stop_flusher.send(true);
    flusher.await.context("the flusher failed")?;
    let _ = stop_background.send(true);
    background.join().await;
    let _ = http_server.await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// The next connection once `max.connections` allows one, admitted if its address is under
/// `max.connections.per.ip` (else closed at once). None when there is none to serve.
async fn accept(
    listener: &TcpListener,
    limits: &ConnectionLimits,
) -> Option<(TcpStream, SocketAddr, Connection)> {
    let slot = limits.slot().await;
    match listener.accept().await {
        Ok((socket, peer)) => match limits.admit(peer.ip(), slot) {
            Some(admitted) => Some((socket, peer, admitted)),
            None => {
                tracing::debug!(%peer, "closing connection: max.connections.per.ip reached");
                None
            }
        },
        Err(e) => {
            // Out of file descriptors, for one: wait instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            None
        }
    }
}

/// The local store may not contain the data directory: its root is the garbage collector's
/// and the coordinator's metadata file must not be one of its objects.
fn check_storage_is_outside_the_data_dir(storage_url: &str, data_dir: &Path) -> anyhow::Result<()> {
    let Some(root) = storage_url.strip_prefix("file://") else {
        return Ok(());
    };
    let data_dir = std::fs::canonicalize(data_dir)
        .with_context(|| format!("cannot resolve data directory {}", data_dir.display()))?;
    // A root that does not exist yet cannot contain the (existing) data directory.
    let Ok(root) = std::fs::canonicalize(root) else {
        return Ok(());
    };
    if data_dir.starts_with(&root) {
        anyhow::bail!(
            "--storage {storage_url} contains the data directory {}: the objects must live apart \
             from the coordinator's metadata (the default is file://{}/objects)",
            data_dir.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C with the signal's name.
async fn shutdown_signal() -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_store_may_not_contain_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("objects")).unwrap();
        let url = |path: &Path| format!("file://{}", path.display());
        for root in [data.clone(), dir.path().to_path_buf(), data.join(".")] {
            let err = check_storage_is_outside_the_data_dir(&url(&root), &data).unwrap_err();
            assert!(
                err.to_string().contains("contains the data directory"),
                "{err}"
            );
        }
        for fine in [data.join("objects"), dir.path().join("elsewhere")] {
            check_storage_is_outside_the_data_dir(&url(&fine), &data).unwrap();
        }
        check_storage_is_outside_the_data_dir("s3://bucket/prefix", &data).unwrap();
    }
}
