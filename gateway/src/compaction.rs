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
            if let Err(e) = compact_if_due(&broker, &partition, &mut first_seen).await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed; will retry");
            }
        }
    }
}

async fn compact_if_due(
    broker: &Broker,
    partition: &Partition,
    first_seen: &mut HashMap<(Uuid, i32), (i64, Instant)>,
) -> Result<(), CompactionError> {
    let key = (partition.topic_id, partition.index);
    let Some(log) = broker
        .coordinator
        .partition_log(partition.topic_id, partition.index)
    else {
        first_seen.remove(&key);
        return Ok(());
    };
    let Some(oldest) = log.chunks.first() else {
        first_seen.remove(&key);
        return Ok(());
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
        return Ok(());
    }
    // A segment takes whole chunks up to segment.bytes (at least one chunk).
    let mut size = 0;
    let chunks: Vec<&ChunkMeta> = log
        .chunks
        .iter()
        .take_while(|c| {
            let take = size == 0 || size + c.size <= segment_bytes;
            size += c.size;
            take
        })
        .collect();
    compact(broker, partition, &chunks).await
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
        let bytes = broker
            .read_cache
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
        .put(&keys.offset_index, data.offset_index)
        .await?;
    broker.store.put(&keys.time_index, data.time_index).await?;
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
