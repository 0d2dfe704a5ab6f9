//! Helpers for the coordinator's tests: an in-memory store that can be told to fail.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use super::Coordinator;
use tokio::sync::mpsc;

use crate::etcd::MAX_TXN_OPERATIONS;
use crate::metadata_store::{Change, MetaStoreError, MetadataStore, Snapshot, Txn};
use crate::topic_config::BrokerDefaults;
use crate::{
    BrokerInfo, ChunkCommit, ChunkMeta, PartitionLeader, PartitionLog, SegmentMeta, TopicMeta,
};

#[derive(Default)]
pub(super) struct TestStore {
    data: Mutex<BTreeMap<String, Bytes>>,
    revision: AtomicU64,
    watchers: Mutex<Vec<mpsc::UnboundedSender<Result<Change, MetaStoreError>>>>,
    fail: AtomicBool,
    commits: AtomicUsize,
    delay_ms: AtomicU64,
}

impl TestStore {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(TestStore::default())
    }

    /// While set, every commit fails (and changes nothing).
    pub(super) fn fail_commits(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// Makes every commit take this long.
    pub(super) fn delay_commits(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub(super) fn put_raw(&self, key: &str, value: &str) {
        self.data
            .lock()
            .unwrap()
            .insert(key.into(), Bytes::from(value.to_string()));
    }

    /// Successful commits so far.
    pub(super) fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }

    pub(super) fn keys(&self) -> Vec<String> {
        self.data.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait::async_trait]
impl MetadataStore for TestStore {
    async fn load(&self) -> Result<Snapshot, MetaStoreError> {
        let data = self.data.lock().unwrap();
        Ok(Snapshot {
            entries: data.clone(),
            revision: self.revision.load(Ordering::SeqCst),
        })
    }

    async fn commit(&self, mut txn: Txn) -> Result<u64, MetaStoreError> {
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected commit failure").into());
        }
        // As the etcd backend refuses it.
        if txn.operations() > MAX_TXN_OPERATIONS {
            return Err(MetaStoreError::TooLarge(format!(
                "{} operations",
                txn.operations()
            )));
        }
        let mut data = self.data.lock().unwrap();
        if !txn.guards_hold(|key| data.get(key)) {
            return Err(MetaStoreError::GuardFailed);
        }
        txn.expand_prefixes(data.keys());
        let events = txn.events();
        txn.apply_to(&mut data);
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        self.commits.fetch_add(1, Ordering::SeqCst);
        let change = Change { revision, events };
        self.watchers
            .lock()
            .unwrap()
            .retain(|watcher| watcher.send(Ok(change.clone())).is_ok());
        Ok(revision)
    }

    async fn watch(
        &self,
        revision: u64,
    ) -> Result<mpsc::UnboundedReceiver<Result<Change, MetaStoreError>>, MetaStoreError> {
        let _data = self.data.lock().unwrap();
        let current = self.revision.load(Ordering::SeqCst);
        if revision != current {
            return Err(MetaStoreError::WatchLost(format!(
                "at {current}, not {revision}"
            )));
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        self.watchers.lock().unwrap().push(sender);
        Ok(receiver)
    }
}

/// Waits until `coordinator` has applied every commit made to `store` so far.
pub(super) async fn caught_up(coordinator: &Coordinator, store: &TestStore) {
    let revision = store.revision.load(Ordering::SeqCst);
    let _ = coordinator
        .changes()
        .wait_for(|applied| *applied >= revision)
        .await;
}

/// Ends broker `broker_id`'s registration as an expired session does.
pub(super) async fn expire_session(store: &TestStore, broker_id: i32) {
    let txn = Txn {
        deletes: vec![format!("brokers/{broker_id}")],
        ..Txn::default()
    };
    store.commit(txn).await.unwrap();
}

pub(super) async fn open(store: &Arc<TestStore>) -> Arc<Coordinator> {
    Coordinator::open(
        Arc::clone(store) as Arc<dyn MetadataStore>,
        BrokerDefaults::default(),
    )
    .await
    .unwrap()
}

/// Brokers 1 and 2, a process each, and topic "a" whose partitions alternate between
/// them (0 on 1, 1 on 2, ...).
pub(super) async fn two_brokers(
    partitions: i32,
) -> (Arc<TestStore>, Arc<Coordinator>, Arc<Coordinator>, Uuid) {
    let store = TestStore::new();
    let one = open(&store).await;
    one.register_broker(broker(1)).await.unwrap();
    let two = open(&store).await;
    two.register_broker(broker(2)).await.unwrap();
    caught_up(&one, &store).await;
    let topic = one
        .create_topic("a", partitions, BTreeMap::new(), false)
        .await
        .unwrap();
    caught_up(&two, &store).await;
    (store, one, two, topic.topic_id)
}

pub(super) fn broker(broker_id: i32) -> BrokerInfo {
    BrokerInfo {
        broker_id,
        host: "localhost".into(),
        port: 9092 + broker_id,
        rack: None,
        endpoints: Vec::new(),
    }
}

pub(super) fn chunk(base_offset: i64, last_offset: i64) -> ChunkMeta {
    ChunkMeta {
        base_offset,
        last_offset,
        max_timestamp: 1_700_000_000_000 + last_offset,
        size: 100,
        object_key: format!("flush/1/{base_offset}-{last_offset}.flush"),
        byte_range: 0..100,
        aborted_transactions: Vec::new(),
    }
}

pub(super) fn segment(base_offset: i64, last_offset: i64) -> SegmentMeta {
    let key = format!("topics/t/0/{base_offset:020}-{last_offset}");
    SegmentMeta {
        base_offset,
        last_offset,
        max_timestamp: 1_700_000_000_000 + last_offset,
        size: 1000,
        log_key: format!("{key}.log"),
        offset_index_key: format!("{key}.index"),
        time_index_key: format!("{key}.timeindex"),
        created_ms: 1_700_000_000_000,
        cleaned: false,
        delete_horizon_ms: None,
        aborted_transactions: Vec::new(),
    }
}

pub(super) fn commit(
    topic_id: Uuid,
    partition: i32,
    leader_epoch: i32,
    chunk: ChunkMeta,
) -> ChunkCommit {
    ChunkCommit {
        topic_id,
        partition,
        leader_epoch,
        chunk,
        producers: Vec::new(),
    }
}

/// The commits of one flush: all their chunks in the first one's flush object.
pub(super) fn one_object(mut commits: Vec<ChunkCommit>) -> Vec<ChunkCommit> {
    let key = commits[0].chunk.object_key.clone();
    for commit in &mut commits {
        commit.chunk.object_key = key.clone();
    }
    commits
}

/// Everything the coordinator persists, as its public API shows it.
pub(super) type StateSnapshot = Vec<(TopicMeta, Vec<(Option<PartitionLeader>, PartitionLog)>)>;

pub(super) fn snapshot(coordinator: &Coordinator) -> StateSnapshot {
    coordinator
        .topics()
        .into_iter()
        .map(|topic| {
            let partitions = (0..topic.partitions)
                .map(|p| {
                    let log = coordinator.partition_log(topic.topic_id, p).unwrap();
                    (coordinator.leader(topic.topic_id, p), log)
                })
                .collect();
            (topic, partitions)
        })
        .collect()
}
