//! EtcdStore: the metadata of a cluster in etcd, shared by every gateway and coordinator.
//!
//! Keys live under a prefix (default `strata/`). A commit is one etcd transaction: its
//! guards become compares, its puts and deletes the success branch; a guard that does not
//! hold changes nothing. Session puts carry this process's lease, granted at connect and
//! kept alive in the background: when it expires, etcd deletes them (a broker that stopped
//! is noticed within the session timeout) and the store reports the session as expired, for
//! good. etcd's limits are checked before sending: 128 operations and 1.5 MiB per request by
//! default.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::metadata_store::{Change, Event, Guard, MetaStoreError, MetadataStore, Snapshot, Txn};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPERATIONS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB), less room for the request's framing.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024 - 4096;
/// Keys read per request when loading, to keep each response well under gRPC's limits.
const LOAD_PAGE: i64 = 500;

pub struct EtcdStore {
    client: Client,
    prefix: String,
    lease: i64,
    expired: watch::Receiver<bool>,
    keep_alive: JoinHandle<()>,
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
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        // etcd counts lease time in whole seconds.
        let ttl = session_timeout.as_secs_f64().ceil().max(1.0) as i64;
        let lease = client
            .lease_grant(ttl, None)
            .await
            .map_err(unavailable)?
            .id();
        let (expired_sender, expired) = watch::channel(false);
        let keep_alive = tokio::spawn(keep_session_alive(
            client.clone(),
            lease,
            session_timeout,
            expired_sender,
        ));
        tracing::info!(?endpoints, prefix, lease, ttl_s = ttl, "connected to etcd");
        Ok(EtcdStore {
            client,
            prefix: prefix.to_string(),
            lease,
            expired,
            keep_alive,
        })
    }

    /// Resolves when this process's session has expired: its session keys are gone.
    pub async fn session_expired(&self) {
        let mut expired = self.expired.clone();
        let _ = expired.wait_for(|expired| *expired).await;
    }

    /// Ends the session now: its session keys are deleted at once rather than on expiry.
    pub async fn end_session(&self) -> Result<(), MetaStoreError> {
        self.client
            .clone()
            .lease_revoke(self.lease)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Discards etcd's history before `revision`; watchers behind it reload a snapshot.
    pub async fn compact_history(&self, revision: u64) -> Result<(), MetaStoreError> {
        self.client
            .clone()
            .compact(revision as i64, None)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The store's current revision.
    pub async fn revision(&self) -> Result<u64, MetaStoreError> {
        let response = self
            .client
            .clone()
            .get(
                self.prefix.as_bytes(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(unavailable)?;
        Ok(response.header().map_or(0, |h| h.revision()) as u64)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl MetadataStore for EtcdStore {
    async fn load(&self) -> Result<Snapshot, MetaStoreError> {
        let mut client = self.client.clone();
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
            let response = client
                .get(from.clone(), Some(options))
                .await
                .map_err(unavailable)?;
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
        let response = self.client.clone().txn(request).await.map_err(|e| {
            if !txn.session_puts.is_empty() && e.to_string().contains("lease not found") {
                MetaStoreError::SessionExpired
            } else {
                unavailable(e)
            }
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
        let mut stream = self
            .client
            .clone()
            .watch(self.prefix.as_bytes(), Some(options))
            .await
            .map_err(unavailable)?;
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

/// Renews the lease every third of the session timeout. The session is over when etcd says
/// the lease is gone, or when no renewal got through for a whole session timeout (etcd has
/// expired it by then, or will before this process could know otherwise).
async fn keep_session_alive(
    mut client: Client,
    lease: i64,
    session_timeout: Duration,
    expired: watch::Sender<bool>,
) {
    let interval = session_timeout / 3;
    let mut last_renewed = tokio::time::Instant::now();
    let mut stream = None;
    while last_renewed.elapsed() < session_timeout {
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
                last_renewed = tokio::time::Instant::now();
                tokio::time::sleep(interval).await;
            }
            // etcd says the lease is gone.
            Ok(Ok(_)) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the etcd session; retrying");
                stream = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => stream = None,
        }
    }
    tracing::error!(lease, "the etcd session expired");
    let _ = expired.send(true);
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

fn unavailable(error: etcd_client::Error) -> MetaStoreError {
    MetaStoreError::Unavailable(error.to_string())
}
