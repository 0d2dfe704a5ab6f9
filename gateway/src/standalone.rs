//! `strata standalone`: the coordinator (embedded store in the data directory) and one
//! broker in one process. Shutdown order keeps acknowledged data: stop accepting, let open
//! requests finish, flush and commit what is buffered, then exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coordinator::coordinator::Coordinator;
use coordinator::embedded::EmbeddedStore;
use coordinator::BrokerInfo;
use segment_store::disk_cache::DiskCache;
use segment_store::retry::{RetryPolicy, RetryStore};
use segment_store::{open_store_with, ObjectStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::config::{self, StandaloneArgs};
use crate::metered_store::MeteredStore;
use crate::metrics::Metrics;
use crate::{
    compaction, connection, flusher, garbage_collector, group_coordinator, http, retention,
};

/// The one broker of a standalone process.
const BROKER_ID: i32 = 0;
/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let (broker_config, defaults) = config::load(args.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let metadata_path = args.data_dir.join("metadata.log");
    let metadata = EmbeddedStore::open(&metadata_path)
        .with_context(|| format!("cannot open metadata store {}", metadata_path.display()))?;
    let coordinator = Coordinator::open(Arc::new(metadata), defaults)
        .await
        .context("cannot load the coordinator state")?;

    let storage_url = args.storage_url()?;
    let metrics = Arc::new(Metrics::new());
    let store = open_store_with(&storage_url, &args.storage_options(&broker_config.storage))
        .await
        .with_context(|| format!("cannot open storage {storage_url}"))?;
    // Metered outside the retries: one request per call, its retries counted apart.
    let store = Arc::new(RetryStore::new(
        store,
        RetryPolicy::default(),
        metrics.clone(),
    ));
    let store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(store, &metrics));
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
    let ready = Arc::new(AtomicBool::new(false));
    let flusher = tokio::spawn(flusher::run(broker.clone(), flusher_stop));
    let mut background = JoinSet::new();
    background.spawn(compaction::run(broker.clone(), background_stop.clone()));
    background.spawn(retention::run(broker.clone(), background_stop.clone()));
    background.spawn(group_coordinator::expiration::run(
        broker.clone(),
        background_stop.clone(),
    ));
    background.spawn(garbage_collector::run(
        broker.clone(),
        background_stop.clone(),
    ));
    let http_stop = background_stop.clone();
    let http_ready = ready.clone();
    background.spawn(async move {
        if let Err(e) = http::serve(http_listener, metrics, http_ready, http_stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %args.listen,
        advertised = %format!("{host}:{port}"),
        http = %args.http,
        storage = %storage_url,
        data_dir = %args.data_dir.display(),
        "strata standalone is ready"
    );

    let (stop_connections, connections_stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    connections.spawn(connection::serve(broker.clone(), socket, peer, connections_stop.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down: no new connections, finishing open requests");
                break;
            }
        }
    }
    drop(listener);
    ready.store(false, Ordering::Release);
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
    while background.join_next().await.is_some() {}
    tracing::info!("shutdown complete");
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
