//! Compaction: rewrites a partition's committed chunks (slices of shared flush objects)
//! into a per-partition segment with an offset index and a time index, and commits the
//! replacement to the coordinator. Afterwards the flush objects are unreferenced once every
//! partition in them is compacted, and the garbage collector deletes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::{ChunkMeta, SegmentMeta};
use proto_compat::batch::read_batches;
use segment_store::segment::{segment_keys, SegmentWriter};
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::partition::Partition;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Store(#[from] segment_store::store::StoreError),
    #[error(transparent)]
    Coordinator(#[from] coordinator::error::CoordinatorError),
}

/// Runs compaction passes every `compaction_interval` until `shutdown`.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    // When this broker first saw each partition's oldest un-compacted chunk.
    let mut first_seen: HashMap<(Uuid, i32), (i64, Instant)> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(broker.config.compaction_interval) => {}
            _ = shutdown.changed() => return,
        }
        for partition in broker.led_partitions() {
            // A partition that fell behind gets several segments in one pass.
            loop {
                match compact_if_due(&broker, &partition, &mut first_seen).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed; will retry");
                        break;
                    }
                }
            }
        }
    }
}

/// Compacts the partition's oldest chunks if they are due; returns whether it did.
async fn compact_if_due(
    broker: &Broker,
    partition: &Partition,
    first_seen: &mut HashMap<(Uuid, i32), (i64, Instant)>,
) -> Result<bool, CompactionError> {
    let key = (partition.topic_id, partition.index);
    let Some(log) = broker
        .coordinator
        .partition_log(partition.topic_id, partition.index)
    else {
        first_seen.remove(&key);
        return Ok(false);
    };
    let Some(oldest) = log.chunks.first() else {
        first_seen.remove(&key);
        return Ok(false);
    };
    let seen = first_seen
        .entry(key)
        .and_modify(|(base, at)| {
            if *base != oldest.base_offset {
                *base = oldest.base_offset;
                *at = Instant::now();
            }
        })
        .or_insert((oldest.base_offset, Instant::now()))
        .1;
    let config = broker.coordinator.topic_config(&partition.topic)?;
    let segment_bytes = config.segment_bytes.max(1) as u64;
    let limit = broker.config.compaction_bytes.min(segment_bytes);
    // segment.ms bounds how long data waits before it is in a sealed segment.
    let max_lag = broker
        .config
        .compaction_max_lag
        .min(Duration::from_millis(config.segment_ms.max(0) as u64));
    let pending: u64 = log.chunks.iter().map(|c| c.size).sum();
    if pending < limit && seen.elapsed() < max_lag {
        return Ok(false);
    }
    // A segment takes whole chunks up to the limit (at least one chunk): it is built in
    // memory, so this bounds compaction's memory too.
    let mut size = 0;
    let chunks: Vec<&ChunkMeta> = log
        .chunks
        .iter()
        .take_while(|c| {
            let take = size == 0 || size + c.size <= limit;
            size += c.size;
            take
        })
        .collect();
    compact(broker, partition, &chunks).await?;
    Ok(true)
}

/// Writes `chunks` (contiguous, oldest first) as one segment and commits it.
pub async fn compact(
    broker: &Broker,
    partition: &Partition,
    chunks: &[&ChunkMeta],
) -> Result<(), CompactionError> {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return Ok(());
    };
    let mut writer = SegmentWriter::new(first.base_offset, broker.config.index_interval_bytes);
    for chunk in chunks {
        // Around the read cache: consumers do not read these bytes again from the chunk.
        let bytes = broker
            .store
            .get_range(&chunk.object_key, chunk.byte_range.clone())
            .await?;
        for batch in read_batches(&bytes) {
            writer.append(&batch);
        }
    }
    let size = writer.size();
    let data = writer.finish();
    let keys = segment_keys(partition.topic_id, partition.index, first.base_offset);
    // Indexes first: a segment is only referenced once all three objects exist.
    broker
        .store
        .put(&keys.offset_index, data.offset_index.into())
        .await?;
    broker
        .store
        .put(&keys.time_index, data.time_index.into())
        .await?;
    broker.store.put(&keys.log, data.log).await?;
    let segment = SegmentMeta {
        base_offset: first.base_offset,
        last_offset: last.last_offset,
        max_timestamp: data.max_timestamp,
        size,
        log_key: keys.log,
        offset_index_key: keys.offset_index,
        time_index_key: keys.time_index,
        created_ms: now_ms(),
    };
    broker
        .coordinator
        .commit_segment(
            partition.topic_id,
            partition.index,
            partition.leader_epoch,
            segment,
        )
        .await?;
    tracing::debug!(
        topic = %partition.topic,
        partition = partition.index,
        base_offset = first.base_offset,
        last_offset = last.last_offset,
        chunks = chunks.len(),
        size,
        "compacted chunks into a segment"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use segment_store::memory::MemoryStore;
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{append_and_flush, broker, record_batch, topic};

    #[tokio::test]
    async fn segments_stay_within_compaction_bytes_and_a_pass_catches_up() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let batch_len = record_batch(-1, -1, -1, 10, 0).len() as u64;
        let config = BrokerConfig {
            compaction_bytes: 2 * batch_len,
            compaction_max_lag: Duration::from_secs(3600),
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store, config).await;
        let topic = topic(&broker, "events", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        for i in 0..5 {
            let batch = record_batch(-1, -1, -1, 10, i * 1_000);
            append_and_flush(&broker, &partition, &batch).await;
        }

        let mut first_seen = HashMap::new();
        let mut passes = 0;
        while compact_if_due(&broker, &partition, &mut first_seen)
            .await
            .unwrap()
        {
            passes += 1;
        }

        // Four chunks made two segments of two chunks; the fifth waits for more data.
        assert_eq!(passes, 2);
        let log = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        let segments: Vec<(i64, i64)> = log
            .segments
            .iter()
            .map(|s| (s.base_offset, s.last_offset))
            .collect();
        assert_eq!(segments, [(0, 19), (20, 39)]);
        assert!(log.segments.iter().all(|s| s.size <= 2 * batch_len));
        assert_eq!(log.chunks.len(), 1);
        assert_eq!(log.high_watermark, 50);
    }

    #[tokio::test]
    async fn a_failed_segment_write_commits_nothing_and_a_later_pass_succeeds() {
        use segment_store::simulate_failures::{FaultConfig, FaultyStore};

        let faulty = Arc::new(FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig::default(),
        ));
        let (broker, _dir) = broker(faulty.clone(), BrokerConfig::default()).await;
        let topic = topic(&broker, "events", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        for i in 0..2 {
            let batch = record_batch(-1, -1, -1, 10, i * 1_000);
            append_and_flush(&broker, &partition, &batch).await;
        }
        let log = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        let chunks: Vec<&ChunkMeta> = log.chunks.iter().collect();

        faulty.set_outage(true);
        assert!(compact(&broker, &partition, &chunks).await.is_err());
        let unchanged = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!((unchanged.segments.len(), unchanged.chunks.len()), (0, 2));

        faulty.set_outage(false);
        compact(&broker, &partition, &chunks).await.unwrap();
        let compacted = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!((compacted.segments.len(), compacted.chunks.len()), (1, 0));
        assert_eq!(compacted.high_watermark, 20);
    }
}
