//! What every broker process runs once its coordinator is open: the object store, the
//! broker's registration, its listener and connections, the flusher and background tasks.
//! Shutdown order keeps acknowledged data: stop accepting, let open requests finish, flush
//! and commit what is buffered, then give up the registration, so the partitions move at
//! once (Kafka's controlled shutdown) rather than after the session timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coordinator::error::CoordinatorError;
use coordinator::{BrokerInfo, Coordinator, EtcdStore};
use proto_compat::request::panic_message;
use segment_store::caches::disk_cache::DiskCache;
use segment_store::cluster_marker;
use segment_store::retry::{RetryPolicy, RetryStore};
use segment_store::simulate_failures::{FaultConfig, FaultyStore};
use segment_store::{open_store_with, ObjectStore};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::background::{
    compaction, controller, flusher, garbage_collector, leadership, log_cleaner, retention,
};
use crate::background::{isolated, Supervisor};
use crate::broker::Broker;
use crate::config::{BrokerConfig, ServerArgs};
use crate::http::Readiness;
use crate::limits::{self, Connection, ConnectionLimits};
use crate::metered_store::MeteredStore;
use crate::metrics::{MemoryBounds, Metrics};
use crate::tls::ReloadingAcceptor;
use crate::{connection, http, inter_broker};

/// How long open connections get to finish their requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a final flush that does not complete says so.
const FINAL_FLUSH_REPORT: Duration = Duration::from_secs(5);
/// Files the broker keeps open besides its connections (stores, caches, listeners).
const RESERVED_FILES: u64 = 256;
/// The wait after a failed accept (e.g. no file descriptor left).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);
/// The wait between attempts to register while the broker id's previous registration lasts.
const REGISTER_RETRY_DELAY: Duration = Duration::from_millis(250);

/// One broker process, its coordinator open.
pub struct Server {
    pub args: ServerArgs,
    pub config: BrokerConfig,
    pub storage_url: String,
    pub coordinator: Arc<Coordinator>,
    pub broker_id: i32,
    /// Standalone: the process is also the active coordinator.
    pub controller: bool,
    /// Cluster: the etcd session whose expiry ends the process.
    pub etcd: Option<Arc<EtcdStore>>,
}

pub async fn run(server: Server) -> anyhow::Result<()> {
    let Server {
        args,
        config: mut broker_config,
        storage_url,
        coordinator,
        broker_id,
        controller: runs_controller,
        etcd,
    } = server;
    let flush_interval_source = broker_config.use_store_defaults(&storage_url);
    let metrics = Arc::new(Metrics::new());
    if let Some(etcd) = &etcd {
        metrics.observe_metadata_store(etcd.metrics().clone());
    }
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
    let listeners = args.listeners(&broker_config.listeners)?;
    if etcd.is_some() {
        inter_broker::check(&broker_config, &listeners)?;
    }
    let mut bound = Vec::new();
    for listener in &listeners {
        let socket = TcpListener::bind(listener.bind)
            .await
            .with_context(|| format!("cannot listen on {} ({})", listener.bind, listener.name))?;
        let tls = match listener.protocol.tls() {
            false => None,
            true => Some(
                ReloadingAcceptor::new(broker_config.tls.clone())
                    .with_context(|| format!("cannot set up TLS for listener {}", listener.name))?,
            ),
        };
        let runtime = ListenerRuntime {
            name: listener.name.as_str().into(),
            tls,
            sasl: listener.protocol.sasl(),
        };
        bound.push((socket, Arc::new(runtime)));
    }
    let http_listener = http::bind(args.http)
        .await
        .with_context(|| format!("cannot serve HTTP on {}", args.http))?;
    let first = &listeners[0].advertised;
    let info = BrokerInfo {
        broker_id,
        host: first.host.clone(),
        port: first.port,
        rack: None,
        endpoints: listeners.iter().map(|l| l.advertised.clone()).collect(),
    };
    register(&coordinator, info, broker_config.session_timeout).await?;

    let broker = Arc::new(Broker::new(
        broker_id,
        broker_config,
        coordinator,
        store,
        metrics.clone(),
    ));
    metrics.observe_read_caches(broker.read_cache.clone(), disk_cache);
    metrics.observe_cluster(broker.coordinator.clone());
    metrics.observe_memory(MemoryBounds {
        buffer_max_bytes: broker.config.buffer_max_bytes,
        queued_max_request_bytes: broker.config.queued_max_request_bytes,
        fetch: broker.fetch_memory.clone(),
    });
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
    background.spawn(
        "log_cleaner",
        task_metrics.log_cleaner.clone(),
        log_cleaner::run,
    );
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
    background.spawn(
        "transactions",
        task_metrics.transactions.clone(),
        crate::transaction_coordinator::run,
    );
    let collection = garbage_collector::run;
    background.spawn(
        "garbage_collection",
        task_metrics.garbage_collection.clone(),
        collection,
    );
    background.spawn(
        "leadership",
        task_metrics.leadership.clone(),
        leadership::run,
    );
    if runs_controller {
        task_metrics.coordinator_active.set(1);
        let metrics = task_metrics.controller.clone();
        let leader_changes = task_metrics.leader_changes.clone();
        background.spawn(
            "controller",
            task_metrics.controller.clone(),
            move |broker: Arc<Broker>, stop| {
                let leader_balance = broker.config.leader_balance;
                controller::run(
                    broker.coordinator.clone(),
                    leader_balance,
                    metrics.clone(),
                    leader_changes.clone(),
                    stop,
                )
            },
        );
    }
    let http_stop = background_stop.clone();
    let http_readiness = readiness.clone();
    let http_server = tokio::spawn(async move {
        if let Err(e) = http::serve(http_listener, metrics, http_readiness, http_stop).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    readiness.set_accepting(true);
    let described: Vec<String> = listeners
        .iter()
        .map(|l| {
            let advertised = &l.advertised;
            format!(
                "{}://{} ({:?}, advertised {}:{})",
                l.name, l.bind, l.protocol, advertised.host, advertised.port
            )
        })
        .collect();
    tracing::info!(
        listeners = %described.join(", "),
        http = %args.http,
        storage = %storage_url,
        broker_id,
        flush_interval_ms = broker.config.flush_interval.as_millis() as u64,
        flush_interval = flush_interval_source,
        "strata is ready"
    );

    let limits = Arc::new(ConnectionLimits::new(
        broker.config.max_connections,
        broker.config.max_connections_per_ip,
        broker.metrics.connections.clone(),
        broker.metrics.connections_rejected.clone(),
    ));
    let (stop_connections, connections_stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let session_expired = async {
        match &etcd {
            Some(etcd) => etcd.session_expired().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(session_expired);
    // One accepting task per listener hands its connections to this loop.
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1);
    let mut acceptors = JoinSet::new();
    for (socket, runtime) in bound {
        let limits = limits.clone();
        let accepted_tx = accepted_tx.clone();
        acceptors.spawn(async move {
            loop {
                if let Some((stream, peer, admitted)) = accept(&socket, &limits).await {
                    if accepted_tx
                        .send((stream, peer, runtime.clone(), admitted))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
    }
    loop {
        tokio::select! {
            Some((socket, peer, runtime, admitted)) = accepted.recv() => {
                connections.spawn(connection::accept(broker.clone(), socket, peer, runtime, connections_stop.clone(), admitted));
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down: no new connections, finishing open requests");
                break;
            }
            _ = &mut session_expired => {
                // Its partitions have moved and its commits are refused: a restart registers
                // again. Buffered acks=0/1 batches are lost as on a crash.
                anyhow::bail!("the etcd session expired (no renewal within broker.session.timeout.ms); exiting so that a restart registers again");
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
    // The drain waits for clients, the store and the metadata store: an operator who would
    // rather not wait signals again.
    let again = shutdown_signal();
    tokio::pin!(again);
    let exit_now = |signal: &str| {
        anyhow::anyhow!(
            "{signal} during the drain: exiting with {} bytes not committed (acks=0/1 batches \
             among them are lost; acks=all ones were never acknowledged)",
            broker.flush_queue.buffered_bytes()
        )
    };
    acceptors.shutdown().await;
    readiness.set_accepting(false);
    let _ = stop_connections.send(true);
    broker.groups.shutdown();
    let finished = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    tokio::select! {
        finished = finished => if finished.is_err() {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
            connections.shutdown().await;
        },
        signal = &mut again => return Err(exit_now(signal)),
    }
    tracing::info!(
        buffered_bytes = broker.flush_queue.buffered_bytes(),
        "flushing buffered batches"
    );
    let _ = stop_flusher.send(true);
    let mut report = tokio::time::interval_at(
        tokio::time::Instant::now() + FINAL_FLUSH_REPORT,
        FINAL_FLUSH_REPORT,
    );
    loop {
        tokio::select! {
            stopped = &mut flusher => {
                stopped.context("the flusher failed")?;
                break;
            }
            _ = report.tick() => tracing::warn!(
                buffered_bytes = broker.flush_queue.buffered_bytes(),
                "still flushing: the object store or the metadata store does not take the \
                 final flush; signal again to exit without it"
            ),
            signal = &mut again => return Err(exit_now(signal)),
        }
    }
    let _ = stop_background.send(true);
    background.join().await;
    if let Err(e) = broker.coordinator.unregister_broker().await {
        tracing::warn!(error = %e, "cannot unregister; the partitions move when the session expires");
    }
    if let Some(etcd) = &etcd {
        if let Err(e) = etcd.end_session().await {
            tracing::warn!(error = %e, "cannot end the etcd session; it expires on its own");
        }
    }
    let _ = http_server.await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// A bound listener: its name, its TLS acceptor when its protocol is SSL or SASL_SSL, and
/// whether clients must authenticate with SASL.
pub struct ListenerRuntime {
    pub name: Arc<str>,
    pub tls: Option<ReloadingAcceptor>,
    pub sasl: bool,
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

/// Registers the broker, waiting while its id's previous registration (a crashed process
/// of the same id) lasts, at most two session timeouts.
async fn register(
    coordinator: &Coordinator,
    info: BrokerInfo,
    session_timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        match coordinator.register_broker(info.clone()).await {
            Err(CoordinatorError::BrokerIdInUse(why))
                if started.elapsed() < 2 * session_timeout =>
            {
                tracing::info!(%why, "waiting for the previous registration of this broker id to expire");
                tokio::time::sleep(REGISTER_RETRY_DELAY).await;
            }
            result => return result.context("cannot register the broker"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
