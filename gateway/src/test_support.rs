//! Fixtures for the gateway's unit tests: real record batches and a broker over a given
//! object store with an embedded coordinator in a temporary directory.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use coordinator::embedded::EmbeddedStore;
use coordinator::topic_config::{BrokerDefaults, TimestampType as TopicTimestampType};
use coordinator::Coordinator;
use coordinator::{BrokerInfo, TopicMeta};
use proto_compat::batch::{validate_batches, RecordBatch};
use proto_compat::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

use segment_store::backends::memory::MemoryStore;
use segment_store::formats::flush_object::FLUSH_PREFIX;
use segment_store::formats::segment::SEGMENT_PREFIX;
use segment_store::simulate_failures::{FaultConfig, FaultyStore};
use segment_store::store::{ObjectMeta, ObjectStore, StoreError};
use segment_store::Payload;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::connection::Session;
use crate::metrics::Metrics;
use crate::partition::Partition;

/// A validated v2 batch of `count` records with timestamps `timestamp`, `timestamp + 1`, ...
/// Idempotent when `producer_id >= 0`.
pub fn record_batch(
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
    timestamp: i64,
) -> RecordBatch {
    encode_batch(producer_id, epoch, first_seq, count, timestamp, false)
}

/// A transactional batch of `count` records of producer `producer_id`.
pub fn transactional_batch(
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
) -> RecordBatch {
    encode_batch(producer_id, epoch, first_seq, count, 1_000, true)
}

fn encode_batch(
    producer_id: i64,
    epoch: i16,
    first_seq: i32,
    count: i32,
    timestamp: i64,
    transactional: bool,
) -> RecordBatch {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            // The encoder starts a new batch when offset - sequence changes; a
            // non-idempotent batch's base sequence is -1.
            sequence: if producer_id >= 0 {
                first_seq + i
            } else {
                i - 1
            },
            timestamp: timestamp + i64::from(i),
            key: None,
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a record batch");
    let mut batches = validate_batches(&buf.freeze()).expect("a valid batch");
    assert_eq!(batches.len(), 1, "the records encode as one batch");
    batches.remove(0)
}

/// A memory store behind the fault injector, with no fault configured (tests turn them on).
pub fn faulty_memory_store() -> Arc<FaultyStore> {
    Arc::new(FaultyStore::new(
        Arc::new(MemoryStore::new()),
        FaultConfig::default(),
    ))
}

/// A registered broker 0 over `store`; keep the TempDir alive as long as the broker.
pub async fn broker(
    store: Arc<dyn ObjectStore>,
    config: BrokerConfig,
) -> (Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let metadata = EmbeddedStore::open(dir.path().join("metadata.log")).unwrap();
    let coordinator = Coordinator::open(Arc::new(metadata), BrokerDefaults::default())
        .await
        .unwrap();
    coordinator
        .register_broker(BrokerInfo {
            broker_id: 0,
            host: "127.0.0.1".to_string(),
            port: 9092,
            rack: None,
            endpoints: Vec::new(),
        })
        .await
        .unwrap();
    let broker = Broker::new(0, config, coordinator, store, Arc::new(Metrics::new()));
    (Arc::new(broker), dir)
}

pub async fn topic(broker: &Broker, name: &str, partitions: i32) -> TopicMeta {
    broker
        .coordinator
        .create_topic(name, partitions, Default::default(), false)
        .await
        .unwrap()
}

/// Appends `batch` as the produce path does (offsets assigned, queued for the flusher);
/// returns its last offset.
pub fn append(broker: &Broker, partition: &Arc<Partition>, batch: &RecordBatch) -> i64 {
    let (outcome, newly_dirty) = partition
        .append(batch, TopicTimestampType::CreateTime, 0)
        .unwrap();
    broker
        .flush_queue
        .appended(partition, batch.len(), newly_dirty);
    outcome.last_offset()
}

/// Appends `batch` and flushes it, so it is committed as a chunk of its own.
pub async fn append_and_flush(broker: &Broker, partition: &Arc<Partition>, batch: &RecordBatch) {
    append(broker, partition, batch);
    crate::background::flusher::flush(broker).await;
}

/// A memory store whose first flush-object PUTs (or segment PUTs) each wait for their own
/// release (or, made `panicking`, whose every flush-object PUT panics).
#[derive(Debug)]
pub struct GatedStore {
    inner: MemoryStore,
    /// The keys of the PUTs gated: flush objects, or segments.
    prefix: &'static str,
    releases: Vec<tokio::sync::Semaphore>,
    puts_started: std::sync::atomic::AtomicUsize,
    panics: bool,
}

impl GatedStore {
    /// Gates the first `gated` flush-object PUTs.
    pub fn new(gated: usize) -> Self {
        Self {
            inner: MemoryStore::new(),
            prefix: FLUSH_PREFIX,
            releases: (0..gated).map(|_| tokio::sync::Semaphore::new(0)).collect(),
            puts_started: Default::default(),
            panics: false,
        }
    }

    /// Gates the first `gated` segment PUTs (each segment is three: its indexes and log).
    pub fn segments(gated: usize) -> Self {
        Self {
            prefix: SEGMENT_PREFIX,
            ..Self::new(gated)
        }
    }

    /// Every flush-object PUT panics.
    pub fn panicking() -> Self {
        Self {
            panics: true,
            ..Self::new(0)
        }
    }

    /// Lets gated PUT `n` (from 0) go on.
    pub fn release(&self, n: usize) {
        self.releases[n].add_permits(1);
    }

    /// Gated PUTs started so far.
    pub fn puts_started(&self) -> usize {
        self.puts_started.load(Ordering::SeqCst)
    }

    /// The store behind the gates.
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }
}

#[async_trait::async_trait]
impl ObjectStore for GatedStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        if key.starts_with(self.prefix) {
            assert!(!self.panics, "a flush-object PUT panics");
            let n = self.puts_started.fetch_add(1, Ordering::SeqCst);
            if let Some(release) = self.releases.get(n) {
                release.acquire().await.unwrap().forget();
            }
        }
        self.inner.put(key, data).await
    }
    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        self.inner.create(key, data).await
    }
    async fn get(&self, key: &str) -> Result<bytes::Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
}

/// Waits (at most 5 s) until `condition` holds.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A plaintext connection's session from 10.0.0.1 with `principal` (`User:name`).
pub fn session(principal: &str) -> Session {
    Session {
        listener: "PLAINTEXT".into(),
        peer: "10.0.0.1:50000".parse().unwrap(),
        principal: principal.to_string(),
        throttle: Default::default(),
        decisions: Default::default(),
    }
}
