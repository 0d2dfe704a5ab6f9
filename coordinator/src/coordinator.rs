//! The Coordinator: the single writer of the cluster's metadata.
//!
//! The whole state lives in memory, loaded from the [`MetadataStore`] at open. Every mutation
//! is computed under one async write lock, committed as one transaction, and only then applied
//! in memory, so nothing acknowledged is lost and a failed commit changes nothing. Reads take
//! a std lock on the in-memory state: cheap and sync.

mod leadership;
mod log;
mod offsets;
mod records;
mod state;
mod topics;

#[cfg(test)]
mod test_support;

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use self::records::{Changes, Record};
use self::state::State;
use crate::error::CoordinatorError;
use crate::metadata_store::{MetaStoreError, MetadataStore};
use crate::topic_config::BrokerDefaults;

/// Producer ids are reserved durably in blocks, so that InitProducerId rarely writes and a
/// crash skips the rest of a block rather than reusing ids.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Coordinator {
    store: Arc<dyn MetadataStore>,
    defaults: BrokerDefaults,
    /// Serializes mutations; held until a mutation's commit is applied in memory.
    write_lock: Arc<Mutex<()>>,
    state: Arc<RwLock<State>>,
}

impl Coordinator {
    pub async fn open(
        store: Arc<dyn MetadataStore>,
        defaults: BrokerDefaults,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let state = State::load(store.load().await?).map_err(MetaStoreError::Corrupt)?;
        let new_cluster = state.cluster_id.is_none();
        let coordinator = Coordinator {
            store,
            defaults,
            write_lock: Arc::new(Mutex::new(())),
            state: Arc::new(RwLock::new(state)),
        };
        if new_cluster {
            let guard = coordinator.lock_writes().await;
            let changes = Changes::put(Record::ClusterId(new_cluster_id()));
            coordinator.commit(guard, changes).await?;
        }
        tracing::info!(
            cluster_id = %coordinator.cluster_id(),
            topics = coordinator.read().topics.len(),
            new_cluster,
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

    pub async fn allocate_producer_id(&self) -> Result<i64, CoordinatorError> {
        loop {
            let guard = self.lock_writes().await;
            let limit = {
                let mut state = self.write();
                if state.next_producer_id < state.producer_id_limit {
                    state.next_producer_id += 1;
                    return Ok(state.next_producer_id - 1);
                }
                state.producer_id_limit
            };
            // The block is used up: reserve the next one before handing any of it out.
            let changes = Changes::put(Record::NextProducerId(limit + PRODUCER_ID_BLOCK));
            self.commit(guard, changes).await?;
        }
    }

    async fn lock_writes(&self) -> OwnedMutexGuard<()> {
        Arc::clone(&self.write_lock).lock_owned().await
    }

    /// Commits `changes` to the store, then applies them in memory. Runs as a task of its own
    /// that owns the write guard: a caller that gives up half way (a dropped request) cannot
    /// leave a committed change unapplied.
    async fn commit(
        &self,
        guard: OwnedMutexGuard<()>,
        changes: Changes,
    ) -> Result<(), CoordinatorError> {
        let store = Arc::clone(&self.store);
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(async move {
            let txn = changes.to_txn();
            if !txn.is_empty() {
                store.commit(txn).await?;
            }
            state
                .write()
                .expect("coordinator state poisoned")
                .apply(changes)
                .expect("changes apply to the state they were computed from");
            drop(guard);
            Ok::<_, MetaStoreError>(())
        });
        task.await
            .map_err(|e| MetaStoreError::Io(io::Error::other(e)))??;
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("coordinator state poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("coordinator state poisoned")
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

    use super::test_support::{broker, chunk, commit, open, segment, snapshot, TestStore};
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
            coordinator.register_broker(broker(2)).await.unwrap();
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
            }];
            coordinator
                .commit_flush(vec![flush, commit(b, 2, 0, chunk(0, 3))])
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
            coordinator.unregister_broker(2).await.unwrap();
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
