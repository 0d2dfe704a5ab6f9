//! The Coordinator: every process's view of the cluster's metadata, and its mutations.
//!
//! The whole state lives in memory, loaded from the [`MetadataStore`] at open and kept in
//! step with it by a watch of every change, whichever process made it. A mutation is computed
//! from the state under this process's write lock and committed as one transaction whose
//! guards refuse it if what it was computed from changed meanwhile (or its broker was
//! fenced); it returns once the watch has applied it, so nothing acknowledged is lost, a
//! failed commit changes nothing, and a process reads its own writes. Reads take a std lock
//! on the in-memory state: cheap and sync.

mod acls;
mod bytes_in;
mod client_quotas;
mod groups;
mod leadership;
mod log;
mod offsets;
mod reassignments;
mod records;
mod scram_credentials;
mod state;
mod topics;
mod transactions;

#[cfg(test)]
mod test_support;

use std::sync::{Arc, Mutex as StdMutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{watch, Mutex, Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use self::bytes_in::{BytesInRates, PartitionRates};
pub use self::client_quotas::{ClientQuotaEntity, ClientQuotas, QuotaAlteration, QuotaName};
pub use self::leadership::LeaderBalance;
pub use self::reassignments::Reassignment;
use self::records::{Changes, Record};
use self::state::State;
pub use self::transactions::TransactionWrite;
use crate::error::CoordinatorError;
use crate::metadata_store::{Guard, MetaStoreError, MetadataStore};
use crate::retry_log::RetryLog;
use crate::topic_config::BrokerDefaults;

/// Producer ids are reserved durably in blocks, so that InitProducerId rarely writes and a
/// crash skips the rest of a block rather than reusing ids.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// How long a mutation refused by a guard waits for the watch to bring the change that
/// refused it before it computes again.
const GUARD_RETRY_WAIT: Duration = Duration::from_millis(50);
/// The wait between attempts to load the state again after the watch broke.
const RELOAD_BACKOFF: Duration = Duration::from_millis(200);
/// How long a commit waits for the watch to bring it before the state is loaded afresh: a
/// watch can stall without an error (its etcd member cut off from the others).
const WATCH_LAG_LIMIT: Duration = Duration::from_secs(3);
/// Bound on loading a snapshot and watching from it again.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Coordinator {
    store: Arc<dyn MetadataStore>,
    defaults: BrokerDefaults,
    /// Serializes this process's mutations; held until a mutation's commit is applied in
    /// memory. Other processes' mutations are kept out by the transactions' guards.
    write_lock: Arc<Mutex<()>>,
    state: Arc<RwLock<State>>,
    /// The store revision the state is at; it changes after every applied change.
    applied: watch::Receiver<u64>,
    /// The state's leadership change count (see [`Coordinator::leadership_changes`]).
    leadership: watch::Receiver<u64>,
    /// This process's broker registration, which guards its commits to partition logs.
    registration: StdMutex<Option<Record>>,
    /// Tells the sync task to load the state afresh.
    reload: Arc<Notify>,
    sync: JoinHandle<()>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl Coordinator {
    pub async fn open(
        store: Arc<dyn MetadataStore>,
        defaults: BrokerDefaults,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let snapshot = store.load().await?;
        let state = State::load(&snapshot.entries).map_err(MetaStoreError::Corrupt)?;
        let changes = store.watch(snapshot.revision).await?;
        let state = Arc::new(RwLock::new(state));
        let (applied_sender, applied) = watch::channel(snapshot.revision);
        let (leadership_sender, leadership) = watch::channel(0);
        let reload = Arc::new(Notify::new());
        let sync = tokio::spawn(sync(
            Arc::downgrade(&store),
            Arc::clone(&state),
            Watches {
                applied: applied_sender,
                leadership: leadership_sender,
            },
            changes,
            Arc::clone(&reload),
        ));
        let coordinator = Coordinator {
            store,
            defaults,
            write_lock: Arc::new(Mutex::new(())),
            state,
            applied,
            leadership,
            registration: StdMutex::new(None),
            reload,
            sync,
        };
        if coordinator.read().cluster_id.is_none() {
            let new_id = Record::ClusterId(new_cluster_id());
            let changes = Changes {
                guards: vec![Guard::Absent(new_id.key().to_string())],
                ..Changes::put(new_id)
            };
            let guard = coordinator.lock_writes().await;
            match coordinator.commit(guard, changes).await {
                // Another process created the cluster first: its id is the one.
                Ok(()) | Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {}
                Err(e) => return Err(e),
            }
            coordinator
                .wait_for(|state| state.cluster_id.is_some())
                .await;
        }
        tracing::info!(
            cluster_id = %coordinator.cluster_id(),
            topics = coordinator.read().topics.len(),
            "coordinator opened"
        );
        Ok(Arc::new(coordinator))
    }

    /// Generated once, persisted.
    pub fn cluster_id(&self) -> String {
        self.read().cluster_id.clone().unwrap_or_default()
    }

    pub fn defaults(&self) -> &BrokerDefaults {
        &self.defaults
    }

    /// Resolves whenever the state changed (any process's commit), for those that act on
    /// changes: the active coordinator, brokers dropping partitions they no longer lead.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Changes when brokers come or go, topics are created or deleted, or a partition's
    /// leader changes; not on the flush commits that make up most changes, so that work over
    /// every partition can follow this at any partition count.
    pub fn leadership_changes(&self) -> watch::Receiver<u64> {
        self.leadership.clone()
    }

    pub async fn allocate_producer_id(&self) -> Result<i64, CoordinatorError> {
        loop {
            let guard = self.lock_writes().await;
            let (stored, changes) = {
                let mut state = self.write();
                if state.next_producer_id < state.producer_id_limit {
                    state.next_producer_id += 1;
                    return Ok(state.next_producer_id - 1);
                }
                // The block is used up: reserve the next one before handing any of it out.
                let stored = state.stored_producer_id_limit;
                let next = stored.unwrap_or(0);
                let changes = Changes {
                    guards: vec![guard_value(Record::NextProducerId(next), stored.is_some())],
                    ..Changes::put(Record::NextProducerId(next + PRODUCER_ID_BLOCK))
                };
                (next, changes)
            };
            match self.commit(guard, changes).await {
                Ok(()) => {
                    let mut state = self.write();
                    state.next_producer_id = stored;
                    state.producer_id_limit = stored + PRODUCER_ID_BLOCK;
                }
                Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {
                    self.wait_for_change().await
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn lock_writes(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.write_lock).lock_owned().await
    }

    /// Commits `changes` to the store, then waits until the state has applied them. Runs as a
    /// task of its own that owns the write guard: a caller that gives up half way (a dropped
    /// request) cannot let the next mutation compute from a state without its commit.
    async fn commit(
        &self,
        guard: OwnedMutexGuard<()>,
        changes: Changes,
    ) -> Result<(), CoordinatorError> {
        let store = Arc::clone(&self.store);
        let mut applied = self.applied.clone();
        let reload = Arc::clone(&self.reload);
        let task = tokio::spawn(async move {
            let txn = changes.to_txn();
            if txn.is_empty() {
                return Ok(());
            }
            let revision = store.commit(txn).await?;
            loop {
                let caught_up = applied.wait_for(|at| *at >= revision);
                match tokio::time::timeout(WATCH_LAG_LIMIT, caught_up).await {
                    // Err only when the state's sync task is gone with its coordinator.
                    Ok(_) => break,
                    Err(_) => {
                        tracing::warn!(
                            revision,
                            "the metadata watch lags; loading the state again"
                        );
                        reload.notify_one();
                    }
                }
            }
            drop(guard);
            Ok::<_, MetaStoreError>(())
        });
        task.await
            .map_err(|e| MetaStoreError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// Commits the changes `compute` makes from the current state (if any) and returns what
    /// it computed with them, computing both again when a guard finds the state changed
    /// meanwhile.
    async fn commit_computed<T>(
        &self,
        compute: impl Fn(&State) -> Result<(T, Option<Changes>), CoordinatorError>,
    ) -> Result<T, CoordinatorError> {
        loop {
            let guard = self.lock_writes().await;
            let (outcome, changes) = compute(&self.read())?;
            let Some(changes) = changes else {
                return Ok(outcome);
            };
            match self.commit(guard, changes).await {
                Ok(()) => return Ok(outcome),
                Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {
                    self.wait_for_change().await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits a little for the next change, after a guard refused a mutation computed from
    /// the state as it was.
    async fn wait_for_change(&self) {
        let mut applied = self.applied.clone();
        applied.mark_unchanged();
        let _ = tokio::time::timeout(GUARD_RETRY_WAIT, applied.changed()).await;
    }

    /// Waits until the state satisfies `condition`.
    async fn wait_for(&self, condition: impl Fn(&State) -> bool) {
        let mut applied = self.applied.clone();
        while !condition(&self.read()) {
            if applied.changed().await.is_err() {
                return;
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("coordinator state poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("coordinator state poisoned")
    }
}

/// The guard that `record` is stored as it is, or that its key is absent when `stored` is
/// false.
fn guard_value(record: Record, stored: bool) -> Guard {
    if stored {
        records::unchanged(&record)
    } else {
        Guard::Absent(record.key().to_string())
    }
}

/// What the sync task tells the rest of the process.
struct Watches {
    /// The store revision the state is at.
    applied: watch::Sender<u64>,
    /// The state's leadership change count.
    leadership: watch::Sender<u64>,
}

/// Keeps the state in step with the store: applies every watched change, and when the
/// watch breaks (the store restarted, or the watch fell behind its compaction) loads the
/// state afresh and watches from there.
async fn sync(
    // Weak: a dropped coordinator releases its store (the embedded store's file lock).
    store: std::sync::Weak<dyn MetadataStore>,
    state: Arc<RwLock<State>>,
    watches: Watches,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<
        Result<crate::metadata_store::Change, MetaStoreError>,
    >,
    reload: Arc<Notify>,
) {
    loop {
        let error = loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = reload.notified() => break "a commit waited too long for it".to_string(),
            };
            match change {
                Some(Ok(change)) => {
                    let mut state = state.write().expect("coordinator state poisoned");
                    for event in change.events {
                        let key = event.key.clone();
                        if let Err(e) = state.apply(event) {
                            // Another version's key, or a bad value: skip it rather than stop.
                            tracing::error!(key, error = %e, "cannot apply a metadata change");
                        }
                    }
                    let leadership_changes = state.leadership_changes;
                    drop(state);
                    watches.leadership.send_if_modified(|seen| {
                        let changed = *seen != leadership_changes;
                        *seen = leadership_changes;
                        changed
                    });
                    watches.applied.send_replace(change.revision);
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the watch ended".to_string(),
            }
        };
        tracing::warn!(error, "metadata watch broke; loading the state again");
        let mut failures = RetryLog::default();
        changes = loop {
            tokio::time::sleep(RELOAD_BACKOFF).await;
            let Some(store) = store.upgrade() else {
                return;
            };
            let reloaded = async {
                let snapshot = store.load().await?;
                let fresh = State::load(&snapshot.entries).map_err(MetaStoreError::Corrupt)?;
                let watch = store.watch(snapshot.revision).await?;
                Ok::<_, MetaStoreError>((snapshot.revision, fresh, watch))
            };
            let reloaded = tokio::time::timeout(RELOAD_TIMEOUT, reloaded)
                .await
                .unwrap_or_else(|_| Err(MetaStoreError::Unavailable("timed out".into())));
            match reloaded {
                Ok((revision, fresh, watch)) => {
                    let mut state = state.write().expect("coordinator state poisoned");
                    // This process's own producer-id block stays its own.
                    let (next, limit) = (state.next_producer_id, state.producer_id_limit);
                    // The bytes-in counters go on (the flushes missed meanwhile uncounted).
                    let bytes_in = std::mem::take(&mut state.bytes_in);
                    // Topics may have come and gone unseen: the count moves on regardless.
                    let topic_name_changes = state.topic_name_changes + 1;
                    let acl_changes = state.acl_changes + 1;
                    let leadership_changes = state.leadership_changes + 1;
                    *state = fresh;
                    state.topic_name_changes += topic_name_changes;
                    state.acl_changes += acl_changes;
                    state.leadership_changes += leadership_changes;
                    let leadership_changes = state.leadership_changes;
                    state.next_producer_id = next;
                    state.producer_id_limit = limit;
                    state.bytes_in = bytes_in;
                    drop(state);
                    // Never backwards. (Read first: the borrow must end before the send.)
                    watches.leadership.send_replace(leadership_changes);
                    let current = *watches.applied.borrow();
                    watches.applied.send_replace(revision.max(current));
                    break watch;
                }
                Err(e) => {
                    if let Some(unlogged) = failures.failed(std::time::Instant::now()) {
                        tracing::warn!(error = %e, unlogged, "cannot load the metadata state; retrying");
                    }
                }
            }
        };
    }
}

/// Kafka's format: a random UUID in URL-safe base64 without padding (22 characters).
fn new_cluster_id() -> String {
    base64_url(Uuid::new_v4())
}

fn base64_url(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let n = id.as_u128();
    // 22 six-bit digits, the last one padded with 4 zero bits.
    (0..22)
        .map(|i| {
            let digit = if i < 21 { n >> (122 - 6 * i) } else { n << 4 };
            ALPHABET[(digit & 63) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::test_support::{
        broker, chunk, commit, one_object, open, segment, snapshot, TestStore,
    };
    use super::*;
    use crate::embedded::{EmbeddedStore, METADATA_FILE};
    use crate::{ConfigAlteration, ProducerBatch, ProducerState};

    async fn open_embedded(dir: &std::path::Path) -> Arc<Coordinator> {
        let store = EmbeddedStore::open(dir.join(METADATA_FILE)).unwrap();
        Coordinator::open(Arc::new(store), BrokerDefaults::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn reopen_from_the_store_gives_identical_state() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster_id, before, last_producer_id) = {
            let coordinator = open_embedded(dir.path()).await;
            coordinator.register_broker(broker(1)).await.unwrap();
            let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
            let a = coordinator
                .create_topic("a", 2, configs, false)
                .await
                .unwrap()
                .topic_id;
            let b = coordinator
                .create_topic("b", 1, BTreeMap::new(), false)
                .await
                .unwrap()
                .topic_id;
            coordinator
                .create_topic("gone", 1, BTreeMap::new(), false)
                .await
                .unwrap();
            coordinator.create_partitions("b", 3, false).await.unwrap();
            let incremental = ConfigAlteration::Incremental(vec![(
                "segment.bytes".to_string(),
                crate::AlterConfigOp::Set("1048576".into()),
            )]);
            coordinator
                .alter_topic_configs("b", incremental, false)
                .await
                .unwrap();
            let mut flush = commit(a, 0, 0, chunk(0, 9));
            flush.producers = vec![ProducerState {
                producer_id: 0,
                producer_epoch: 0,
                batches: vec![ProducerBatch {
                    first_seq: 0,
                    last_seq: 9,
                    base_offset: 0,
                    last_offset: 9,
                }],
                current_txn_first_offset: None,
                last_timestamp: -1,
            }];
            coordinator
                .commit_flush(one_object(vec![flush, commit(b, 2, 0, chunk(0, 3))]))
                .await
                .unwrap();
            coordinator
                .commit_flush(vec![commit(a, 0, 0, chunk(10, 19))])
                .await
                .unwrap();
            coordinator
                .commit_segments(a, 0, 0, vec![segment(0, 9)])
                .await
                .unwrap();
            coordinator.advance_log_start_offset(b, 2, 2).await.unwrap();
            coordinator.delete_topic("gone").await.unwrap();
            let mut producer_id = 0;
            for _ in 0..3 {
                producer_id = coordinator.allocate_producer_id().await.unwrap();
            }
            (
                coordinator.cluster_id(),
                snapshot(&coordinator),
                producer_id,
            )
        };
        assert_eq!(last_producer_id, 2);
        assert_eq!(before.len(), 2);

        let coordinator = open_embedded(dir.path()).await;
        assert_eq!(coordinator.cluster_id(), cluster_id);
        assert_eq!(snapshot(&coordinator), before);
        // The broker registry is not persisted: brokers register again.
        assert!(coordinator.brokers().is_empty());
        // The rest of the reserved block is skipped rather than reused.
        assert!(coordinator.allocate_producer_id().await.unwrap() > last_producer_id);
    }

    #[tokio::test]
    async fn cluster_id_is_generated_once() {
        let store = TestStore::new();
        let first = open(&store).await;
        let id = first.cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        drop(first);
        assert_eq!(open(&store).await.cluster_id(), id);
        assert_ne!(open(&TestStore::new()).await.cluster_id(), id);
        assert_eq!(
            base64_url(Uuid::from_u128(0x000102030405060708090a0b0c0d0e0f)),
            "AAECAwQFBgcICQoLDA0ODw"
        );
    }

    #[tokio::test]
    async fn producer_ids_are_reserved_in_blocks() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let commits = store.commits();
        for expected in 0..PRODUCER_ID_BLOCK + 1 {
            assert_eq!(coordinator.allocate_producer_id().await.unwrap(), expected);
        }
        assert_eq!(store.commits(), commits + 2);
        // A failed reservation hands out nothing.
        let coordinator = open(&store).await;
        store.fail_commits(true);
        assert!(coordinator.allocate_producer_id().await.is_err());
        store.fail_commits(false);
        assert_eq!(
            coordinator.allocate_producer_id().await.unwrap(),
            2 * PRODUCER_ID_BLOCK
        );
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_lose_its_commit() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        store.delay_commits(Duration::from_millis(100));
        let create = coordinator.create_topic("a", 1, BTreeMap::new(), false);
        assert!(tokio::time::timeout(Duration::from_millis(20), create)
            .await
            .is_err());
        // The next mutation waits for the abandoned one, which completed in store and memory.
        let again = coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await;
        assert!(
            matches!(again, Err(CoordinatorError::TopicAlreadyExists(_))),
            "{again:?}"
        );
        assert!(store.keys().contains(&"topics/a".to_string()));
    }

    #[tokio::test]
    async fn inconsistent_store_is_corrupt() {
        let store = TestStore::new();
        open(&store).await;
        store.put_raw(&format!("partitions/{}/0/log_start", Uuid::new_v4()), "5");
        let result = Coordinator::open(store.clone(), BrokerDefaults::default()).await;
        assert!(matches!(
            result,
            Err(CoordinatorError::Store(MetaStoreError::Corrupt(_)))
        ));
    }
}
