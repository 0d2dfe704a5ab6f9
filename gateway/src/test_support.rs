//! Fixtures for the gateway's unit tests: real record batches and a broker over a given
//! object store with an embedded coordinator in a temporary directory.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use coordinator::coordinator::Coordinator;
use coordinator::embedded::EmbeddedStore;
use coordinator::topic_config::{BrokerDefaults, TimestampType as TopicTimestampType};
use coordinator::{BrokerInfo, TopicMeta};
use proto_compat::batch::{validate_batches, RecordBatch};
use proto_compat::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use segment_store::store::ObjectStore;

use crate::broker::Broker;
use crate::config::BrokerConfig;
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
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
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
    crate::flusher::flush(broker).await;
}
