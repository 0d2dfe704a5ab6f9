//! EtcdStore: the metadata of a cluster in etcd, shared by every gateway and coordinator.
//!
//! Keys live under a prefix (default `strata/`). A commit is one etcd transaction: its
//! guards become compares, its puts and deletes the success branch; a guard that does not
//! hold changes nothing. Session puts carry this process's lease, granted at connect and
//! kept alive in the background: when it expires, etcd deletes them (a broker that stopped
//! is noticed within the session timeout) and the store reports the session as expired, for
//! good. etcd's limits are checked before sending: 128 operations and 1.5 MiB per request by
//! default. Every transaction sent is counted in [`StoreMetrics`], which the processes
//! expose on `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    TxnOp, WatchOptions,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::metadata_store::{Change, Event, Guard, MetaStoreError, MetadataStore, Snapshot, Txn};
use crate::retry_log::RetryLog;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPERATIONS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB), less room for the request's framing.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024 - 4096;
/// The longest an etcd request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys read per request when loading, to keep each response well under gRPC's limits.
const LOAD_PAGE: i64 = 500;

/// The transactions this store sent to etcd (commits, whether etcd applied them or not;
/// those refused before sending, as too large, are not counted). Clones share the values.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub transactions: Counter,
    /// Transactions etcd did not answer, or answered with an error.
    pub errors: Counter,
    /// Request bytes: the transactions' keys and values, as checked against etcd's limit.
    pub transaction_bytes: Counter,
    pub transaction_duration: Histogram,
    pub transaction_size: Histogram,
}

impl StoreMetrics {
    pub fn new() -> Self {
        StoreMetrics {
            transactions: Counter::default(),
            errors: Counter::default(),
            transaction_bytes: Counter::default(),
            // 100 µs .. ~26 s
            transaction_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 19)),
            // 64 B .. 1 MiB, then etcd's limit (1.5 MiB): how close commits come to it.
            transaction_size: Histogram::new(
                exponential_buckets(64.0, 2.0, 15).chain([1536.0 * 1024.0]),
            ),
        }
    }

    fn observe(&self, bytes: usize, duration: Duration, failed: bool) {
        self.transactions.inc();
        if failed {
            self.errors.inc();
        }
        self.transaction_bytes.inc_by(bytes as u64);
        self.transaction_duration.observe(duration.as_secs_f64());
        self.transaction_size.observe(bytes as f64);
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct EtcdStore {
    endpoints: Arc<Endpoints>,
    prefix: String,
    lease: i64,
    expired: watch::Receiver<bool>,
    keep_alive: JoinHandle<()>,
    metrics: StoreMetrics,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` and starts a session that lasts `session_timeout`
    /// after this process stops renewing it.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        session_timeout: Duration,
    ) -> Result<Self, MetaStoreError> {
        let endpoints = Arc::new(Endpoints::connect(endpoints).await?);
        // etcd counts lease time in whole seconds.
        let ttl = session_timeout.as_secs_f64().ceil().max(1.0) as i64;
        let lease = endpoints
            .call(|mut client| async move { client.lease_grant(ttl, None).await })
            .await?
            .id();
        let (expired_sender, expired) = watch::channel(false);
        let keep_alive = tokio::spawn(keep_session_alive(
            endpoints.clone(),
            lease,
            session_timeout,
            expired_sender,
        ));
        tracing::info!(endpoints = ?endpoints.urls, prefix, lease, ttl_s = ttl, "connected to etcd");
        Ok(EtcdStore {
            endpoints,
            prefix: prefix.to_string(),
            lease,
            expired,
            keep_alive,
            metrics: StoreMetrics::new(),
        })
    }

    /// The counters of this store's transactions.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Resolves when this process's session has expired: its session keys are gone.
    pub async fn session_expired(&self) {
        let mut expired = self.expired.clone();
        let _ = expired.wait_for(|expired| *expired).await;
    }

    /// Ends the session now: its session keys are deleted at once rather than on expiry.
    pub async fn end_session(&self) -> Result<(), MetaStoreError> {
        let lease = self.lease;
        self.endpoints
            .call(|mut client| async move { client.lease_revoke(lease).await })
            .await?;
        Ok(())
    }

    /// Discards etcd's history before `revision`; watchers behind it reload a snapshot.
    pub async fn compact_history(&self, revision: u64) -> Result<(), MetaStoreError> {
        self.endpoints
            .call(|mut client| async move { client.compact(revision as i64, None).await })
            .await?;
        Ok(())
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<u64, MetaStoreError> {
        let prefix = self.prefix.clone();
        let response = self
            .endpoints
            .call(|mut client| async move {
                let options = GetOptions::new().with_count_only();
                client.get(prefix, Some(options)).await
            })
            .await?;
        Ok(response.header().map_or(0, |h| h.revision()) as u64)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl MetadataStore for EtcdStore {
    async fn load(&self) -> Result<Snapshot, MetaStoreError> {
        let end = prefix_end(&self.prefix);
        let mut entries = std::collections::BTreeMap::new();
        let mut from = self.prefix.clone().into_bytes();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LOAD_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let key = from.clone();
            let response = self
                .endpoints
                .call(|mut client| async move { client.get(key, Some(options)).await })
                .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                let key = self.strip(kv.key())?;
                entries.insert(key, Bytes::copy_from_slice(kv.value()));
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        Ok(Snapshot {
            entries,
            revision: revision as u64,
        })
    }

    async fn commit(&self, txn: Txn) -> Result<u64, MetaStoreError> {
        let operations = txn.operations();
        if operations > MAX_TXN_OPERATIONS {
            return Err(MetaStoreError::TooLarge(format!(
                "{operations} operations, etcd allows {MAX_TXN_OPERATIONS}"
            )));
        }
        let bytes = request_bytes(&txn);
        if bytes > MAX_REQUEST_BYTES {
            return Err(MetaStoreError::TooLarge(format!(
                "{bytes} bytes, etcd allows {MAX_REQUEST_BYTES}"
            )));
        }
        let compares: Vec<Compare> = txn
            .guards
            .iter()
            .map(|guard| match guard {
                Guard::Absent(key) => Compare::version(self.key(key), CompareOp::Equal, 0),
                Guard::Equals(key, value) => {
                    Compare::value(self.key(key), CompareOp::Equal, value.to_vec())
                }
            })
            .collect();
        let mut ops = Vec::with_capacity(operations);
        for key in &txn.deletes {
            ops.push(TxnOp::delete(self.key(key), None));
        }
        for prefix in &txn.delete_prefixes {
            ops.push(TxnOp::delete(
                self.key(prefix),
                Some(DeleteOptions::new().with_prefix()),
            ));
        }
        for (key, value) in &txn.puts {
            ops.push(TxnOp::put(self.key(key), value.to_vec(), None));
        }
        let session = PutOptions::new().with_lease(self.lease);
        for (key, value) in &txn.session_puts {
            ops.push(TxnOp::put(
                self.key(key),
                value.to_vec(),
                Some(session.clone()),
            ));
        }
        let request = etcd_client::Txn::new().when(compares).and_then(ops);
        let started = Instant::now();
        let response = self
            .endpoints
            .call(|mut client| async move { client.txn(request).await })
            .await;
        self.metrics
            .observe(bytes, started.elapsed(), response.is_err());
        let response = response.map_err(|e| match e {
            MetaStoreError::Unavailable(why)
                if !txn.session_puts.is_empty() && why.contains("lease not found") =>
            {
                MetaStoreError::SessionExpired
            }
            other => other,
        })?;
        if !response.succeeded() {
            return Err(MetaStoreError::GuardFailed);
        }
        Ok(response.header().map_or(0, |h| h.revision()) as u64)
    }

    async fn watch(
        &self,
        revision: u64,
    ) -> Result<mpsc::UnboundedReceiver<Result<Change, MetaStoreError>>, MetaStoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision as i64 + 1);
        let prefix = self.prefix.clone();
        let mut stream = self
            .endpoints
            .call(|mut client| async move { client.watch(prefix, Some(options)).await })
            .await?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let prefix = self.prefix.clone();
        tokio::spawn(async move {
            let error = loop {
                let response = match stream.message().await {
                    Ok(Some(response)) => response,
                    Ok(None) => break MetaStoreError::Unavailable("etcd ended the watch".into()),
                    Err(e) => break unavailable(e),
                };
                if response.canceled() {
                    break MetaStoreError::WatchLost(format!(
                        "etcd cancelled the watch (compacted at {}): {}",
                        response.compact_revision(),
                        response.cancel_reason()
                    ));
                }
                // One response may hold several revisions, each in order.
                let mut changes: Vec<Change> = Vec::new();
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let Some(key) = kv.key().strip_prefix(prefix.as_bytes()) else {
                        continue;
                    };
                    let key = String::from_utf8_lossy(key).into_owned();
                    let value = match event.event_type() {
                        EventType::Put => Some(Bytes::copy_from_slice(kv.value())),
                        EventType::Delete => None,
                    };
                    let revision = kv.mod_revision() as u64;
                    match changes.last_mut() {
                        Some(change) if change.revision == revision => {
                            change.events.push(Event { key, value })
                        }
                        _ => changes.push(Change {
                            revision,
                            events: vec![Event { key, value }],
                        }),
                    }
                }
                for change in changes {
                    if sender.send(Ok(change)).is_err() {
                        return;
                    }
                }
            };
            let _ = sender.send(Err(error));
        });
        Ok(receiver)
    }
}

impl EtcdStore {
    fn strip(&self, key: &[u8]) -> Result<String, MetaStoreError> {
        let key = key.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            MetaStoreError::Corrupt("etcd returned a key outside the prefix".into())
        })?;
        String::from_utf8(key.to_vec())
            .map_err(|_| MetaStoreError::Corrupt("a key in etcd is not UTF-8".into()))
    }
}

/// Renews the lease every third of the session timeout until etcd says it is gone. Only
/// etcd decides that: an etcd leader election or a lost connection delays renewals without
/// ending the session (etcd's new leader extends every lease), and a process whose lease did
/// expire while it could not tell has its commits refused by its registration guard anyway.
async fn keep_session_alive(
    endpoints: Arc<Endpoints>,
    lease: i64,
    session_timeout: Duration,
    expired: watch::Sender<bool>,
) {
    let interval = session_timeout / 3;
    let mut stream = None;
    let (mut generation, mut client) = endpoints.current();
    let mut failures = RetryLog::default();
    loop {
        let renewal = async {
            if stream.is_none() {
                stream = Some(client.lease_keep_alive(lease).await?);
            }
            let (keeper, responses) = stream.as_mut().expect("just opened");
            keeper.keep_alive().await?;
            let ttl = responses
                .message()
                .await?
                .map_or(0, |response| response.ttl());
            Ok::<i64, etcd_client::Error>(ttl)
        };
        match tokio::time::timeout(interval, renewal).await {
            Ok(Ok(ttl)) if ttl > 0 => {
                failures.succeeded();
                tokio::time::sleep(interval).await
            }
            // etcd says the lease is gone.
            Ok(Ok(_)) => break,
            Ok(Err(e)) if e.to_string().contains("lease not found") => break,
            Ok(Err(e)) => {
                if let Some(unlogged) = failures.failed(Instant::now()) {
                    tracing::warn!(error = %e, unlogged, "cannot renew the etcd session; retrying");
                }
                stream = None;
                endpoints.failed(generation).await;
                (generation, client) = endpoints.current();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                stream = None;
                endpoints.failed(generation).await;
                (generation, client) = endpoints.current();
            }
        }
    }
    tracing::error!(lease, "the etcd session expired");
    let _ = expired.send(true);
}

/// The etcd members, used one at a time: etcd-client's own balancing over several endpoints
/// kept sending requests to a member that had died (and leases expired for want of
/// renewals), so a failed request moves this process on to the next member instead.
struct Endpoints {
    urls: Vec<String>,
    /// The member in use (its index in `urls`), a client of it alone, and a generation that
    /// tells whether a failure was already acted on.
    current: std::sync::Mutex<(usize, Client, u64)>,
}

impl Endpoints {
    async fn connect(urls: &[String]) -> Result<Self, MetaStoreError> {
        let mut last_error = MetaStoreError::Unavailable("no etcd endpoint given".into());
        for (index, url) in urls.iter().enumerate() {
            match bounded(Client::connect([url], Some(connect_options()))).await {
                Ok(client) => {
                    return Ok(Endpoints {
                        urls: urls.to_vec(),
                        current: std::sync::Mutex::new((index, client, 0)),
                    })
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// The client in use and its generation.
    fn current(&self) -> (u64, Client) {
        let current = self.current.lock().expect("etcd endpoints poisoned");
        (current.2, current.1.clone())
    }

    /// A request through the client of `generation` failed: the next member is used from now
    /// on (unless another failure moved on already). Its client connects lazily, so this
    /// does not wait for the member to answer.
    async fn failed(&self, generation: u64) {
        let next = {
            let current = self.current.lock().expect("etcd endpoints poisoned");
            if current.2 != generation || self.urls.len() < 2 {
                return;
            }
            (current.0 + 1) % self.urls.len()
        };
        let url = &self.urls[next];
        match bounded(Client::connect([url], Some(connect_options()))).await {
            Ok(client) => {
                let mut current = self.current.lock().expect("etcd endpoints poisoned");
                if current.2 == generation {
                    *current = (next, client, generation + 1);
                }
            }
            Err(e) => tracing::warn!(%url, error = %e, "cannot use etcd endpoint"),
        }
    }

    /// Runs one request, bounded in time; a failure moves on to the next member.
    async fn call<T, F, Fut>(&self, request: F) -> Result<T, MetaStoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let (generation, client) = self.current();
        let result = bounded(request(client)).await;
        if result.is_err() {
            self.failed(generation).await;
        }
        result
    }
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(REQUEST_TIMEOUT)
        // etcd closes connections that ping more often than every 5 s (its default
        // --grpc-keepalive-min-time).
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(3))
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Roughly the bytes etcd counts for a transaction: its keys and values.
fn request_bytes(txn: &Txn) -> usize {
    let guards: usize = txn
        .guards
        .iter()
        .map(|guard| match guard {
            Guard::Absent(key) => key.len(),
            Guard::Equals(key, value) => key.len() + value.len(),
        })
        .sum();
    let puts: usize = txn
        .puts
        .iter()
        .chain(&txn.session_puts)
        .map(|(key, value)| key.len() + value.len())
        .sum();
    let deletes: usize = txn
        .deletes
        .iter()
        .chain(&txn.delete_prefixes)
        .map(String::len)
        .sum();
    guards + puts + deletes
}

/// Bounds an etcd request: tonic's own timeout does not cover the wait for a ready
/// connection, which after an etcd member died was seen to last until the process ended.
async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, MetaStoreError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(MetaStoreError::Unavailable(format!(
            "etcd did not answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

fn unavailable(error: etcd_client::Error) -> MetaStoreError {
    MetaStoreError::Unavailable(error.to_string())
}
