//! Compaction: rewrites a partition's committed chunks (slices of shared flush objects)
//! into per-partition segments with an offset index and a time index, and commits the
//! replacement to the coordinator. Afterwards the flush objects are unreferenced once every
//! partition in them is compacted, and the garbage collector deletes them.
//!
//! A partition with little traffic gets a small segment each time its chunks are due. So that
//! its segments (a metadata key each, and three objects) do not pile up, a new segment takes
//! in the small segments before it, as a binary counter carries: the last segment while it
//! is no bigger than what the new one holds so far, and so on back, up to the compaction
//! size, taking in no segment sealed `segment.ms` ago (Kafka rolls its segments then) nor
//! one retention would delete, so retention stays about as fine-grained as Kafka's with
//! rolled segments. A byte is then rewritten
//! only when the segment it is in at least doubles: at most log2(compaction size / smallest
//! segment) times, and a partition keeps few segments below the compaction size.
//!
//! What it read is checked before anything is committed, because the flush objects and
//! merged segments go once the new segments replace them: every chunk and segment must be
//! exactly its bytes, whole batches with valid CRCs covering exactly its offsets. A segment
//! rolls before an offset relative to its base or a position in it would pass Kafka's 32-bit
//! index fields, so one compaction may write several segments, committed together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::{ChunkMeta, SegmentMeta};
use segment_store::formats::segment::{
    segment_keys, SegmentData, SegmentError, SegmentKeys, SegmentWriter,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::background::{isolated, next_pass};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::partition::log_reader::{chunk_batches, segment_batches, ReadError};
use crate::partition::Partition;

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Store(#[from] segment_store::store::StoreError),
    #[error(transparent)]
    Coordinator(#[from] coordinator::error::CoordinatorError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("batch at offset {offset} of {key} is corrupt: {reason}")]
    CorruptBatch {
        key: String,
        offset: i64,
        reason: String,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

/// Runs compaction passes every `compaction_interval` until `shutdown`. A partition whose
/// compaction fails (or panics) is counted and logged, and tried again on the next pass;
/// the others go on.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    // When this broker first saw each partition's oldest un-compacted chunk.
    let mut first_seen: HashMap<(Uuid, i32), (i64, Instant)> = HashMap::new();
    while next_pass(broker.config.compaction_interval, &mut shutdown).await {
        let partitions = broker.led_partitions();
        // Reported as the pass goes, not only at its end: a pass that catches up on a large
        // backlog (after a restart, say) runs for minutes.
        let mut backlog = Backlog::measure(&broker, &partitions);
        for (position, partition) in partitions.iter().enumerate() {
            let what = format!("{}-{}", partition.topic, partition.index);
            // A partition that fell behind gets several segments in one pass.
            while let Some(true) = isolated(
                "compaction",
                &broker.metrics.compaction,
                &what,
                compact_if_due(&broker, partition, &mut first_seen),
            )
            .await
            {
                backlog.update(position, partition);
            }
        }
        // Measured afresh: partitions compacted early in the pass may have new chunks.
        Backlog::measure(&broker, &partitions);
    }
}

/// Committed bytes still in chunks of flush objects, per partition of one pass; reports
/// their sum on `strata_compaction_backlog_bytes` whenever it changes.
struct Backlog<'a> {
    broker: &'a Broker,
    bytes: Vec<u64>,
}

impl<'a> Backlog<'a> {
    fn measure(broker: &'a Broker, partitions: &[Arc<Partition>]) -> Self {
        let bytes = partitions
            .iter()
            .map(|partition| partition_backlog(broker, partition))
            .collect();
        let backlog = Self { broker, bytes };
        backlog.report();
        backlog
    }

    /// Measures the partition at `position` again (it was just compacted).
    fn update(&mut self, position: usize, partition: &Partition) {
        self.bytes[position] = partition_backlog(self.broker, partition);
        self.report();
    }

    fn total(&self) -> u64 {
        self.bytes.iter().sum()
    }

    fn report(&self) {
        let gauge = &self.broker.metrics.compaction_backlog_bytes;
        gauge.set(self.total() as i64);
    }
}

fn partition_backlog(broker: &Broker, partition: &Partition) -> u64 {
    broker
        .coordinator
        .chunk_bytes(partition.topic_id, partition.index)
        .unwrap_or(0)
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
    // A compaction takes whole chunks up to the limit (at least one chunk): they are
    // rewritten in memory, so this bounds compaction's memory too.
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
    let now = now_ms();
    let retained = |ms: i64| config.retention_ms < 0 || now - ms <= config.retention_ms;
    // Kafka rolls a segment once it is segment.ms old; one retention is about to delete is
    // left for it. The LogCleaner merges the segments it wrote itself.
    let mergeable = |s: &SegmentMeta| {
        !s.cleaned
            && now - s.created_ms < config.segment_ms
            && retained(s.created_ms)
            && retained(s.max_timestamp)
    };
    let merged = segments_to_merge(&log.segments, &chunks, limit, mergeable);
    compact(broker, partition, merged, &chunks).await?;
    Ok(true)
}

/// The trailing segments a new segment of `chunks` takes in (see the module's comment):
/// each no bigger than what the new one holds so far, all together within `limit` bytes,
/// all `mergeable`.
fn segments_to_merge<'a>(
    segments: &'a [SegmentMeta],
    chunks: &[&ChunkMeta],
    limit: u64,
    mergeable: impl Fn(&SegmentMeta) -> bool,
) -> &'a [SegmentMeta] {
    let Some(first) = chunks.first() else {
        return &[];
    };
    let mut size: u64 = chunks.iter().map(|c| c.size).sum();
    let mut start = segments.len();
    let mut next = first.base_offset;
    while let Some(segment) = start.checked_sub(1).map(|i| &segments[i]) {
        let fits = segment.size <= size && size + segment.size <= limit;
        if !fits || segment.last_offset + 1 != next || !mergeable(segment) {
            break;
        }
        size += segment.size;
        next = segment.base_offset;
        start -= 1;
    }
    &segments[start..]
}

/// Writes `merged` (the partition's last segments) and `chunks` (contiguous with them,
/// oldest first) as segments and commits them in their place.
pub async fn compact(
    broker: &Broker,
    partition: &Partition,
    merged: &[SegmentMeta],
    chunks: &[&ChunkMeta],
) -> Result<(), CompactionError> {
    let Some(first) = chunks.first() else {
        return Ok(());
    };
    let base_offset = merged.first().map_or(first.base_offset, |s| s.base_offset);
    let interval = broker.config.index_interval_bytes;
    let mut segments: Vec<SegmentData> = Vec::new();
    let mut writer = SegmentWriter::new(base_offset, interval);
    let mut append = |key: &str, batches: Vec<_>| {
        for batch in batches {
            let batch: proto_compat::batch::RecordBatch = batch;
            batch
                .verify_crc()
                .map_err(|e| CompactionError::CorruptBatch {
                    key: key.to_string(),
                    offset: batch.base_offset(),
                    reason: e.to_string(),
                })?;
            if !writer.is_empty() && !writer.fits(&batch) {
                let rolled = SegmentWriter::new(batch.base_offset(), interval);
                segments.push(std::mem::replace(&mut writer, rolled).finish());
            }
            writer.append(&batch)?;
        }
        Ok::<_, CompactionError>(())
    };
    // Around the read cache: consumers do not read these bytes again from where they were.
    for segment in merged {
        let bytes = broker.store.get(&segment.log_key).await?;
        append(&segment.log_key, segment_batches(segment, &bytes)?)?;
    }
    for chunk in chunks {
        let bytes = broker
            .store
            .get_range(&chunk.object_key, chunk.byte_range.clone())
            .await?;
        append(&chunk.object_key, chunk_batches(chunk, &bytes)?)?;
    }
    segments.push(writer.finish());
    // The age of a segment is that of its oldest part: merging does not make it young.
    let created_ms = merged
        .iter()
        .map(|s| s.created_ms)
        .min()
        .unwrap_or_else(now_ms);
    let keys: Vec<_> = segments
        .iter()
        .map(|data| segment_keys(partition.topic_id, partition.index, data.base_offset))
        .collect();
    // Until the commit lands nothing references these objects.
    let _in_flight = broker.in_flight.protect(
        keys.iter()
            .flat_map(|k| [k.log.clone(), k.offset_index.clone(), k.time_index.clone()])
            .collect(),
    );
    let mut metas = Vec::with_capacity(segments.len());
    for (data, keys) in segments.into_iter().zip(keys) {
        let last_offset = data.last_offset;
        let aborted_transactions = coordinator::aborted_transactions_within(
            merged
                .iter()
                .map(|s| s.aborted_transactions.as_slice())
                .chain(chunks.iter().map(|c| c.aborted_transactions.as_slice())),
            data.base_offset,
            data.last_offset,
        );
        let meta = put_segment(broker.store.as_ref(), data, keys, last_offset, created_ms).await?;
        metas.push(SegmentMeta {
            aborted_transactions,
            ..meta
        });
    }
    let last_offset = metas[metas.len() - 1].last_offset;
    let segments = metas.len();
    broker
        .coordinator
        .commit_segments(
            partition.topic_id,
            partition.index,
            partition.leader_epoch,
            metas,
        )
        .await?;
    tracing::debug!(
        topic = %partition.topic,
        partition = partition.index,
        base_offset,
        last_offset,
        chunks = chunks.len(),
        merged = merged.len(),
        segments,
        "compacted chunks into segments"
    );
    Ok(())
}

/// PUTs a segment's three objects, indexes first (a segment is only referenced once all
/// three exist), and returns its metadata with `last_offset`, which a cleaned segment's
/// range may take past its last batch.
pub async fn put_segment(
    store: &dyn segment_store::ObjectStore,
    data: SegmentData,
    keys: SegmentKeys,
    last_offset: i64,
    created_ms: i64,
) -> Result<SegmentMeta, segment_store::StoreError> {
    store
        .put(&keys.offset_index, data.offset_index.into())
        .await?;
    store.put(&keys.time_index, data.time_index.into()).await?;
    let size = data.log.len() as u64;
    store.put(&keys.log, data.log).await?;
    Ok(SegmentMeta {
        base_offset: data.base_offset,
        last_offset,
        max_timestamp: data.max_timestamp,
        size,
        log_key: keys.log,
        offset_index_key: keys.offset_index,
        time_index_key: keys.time_index,
        created_ms,
        cleaned: false,
        delete_horizon_ms: None,
        aborted_transactions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use coordinator::ChunkCommit;
    use proto_compat::batch::{crc32c, read_batches, RecordBatch};
    use segment_store::backends::memory::MemoryStore;
    use segment_store::formats::flush_object::FlushObjectBuilder;
    use segment_store::simulate_failures::FaultyStore;
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{
        append_and_flush, broker, eventually, faulty_memory_store, record_batch, topic, GatedStore,
    };

    /// A broker over a fault injector with `topic` "events" of one partition holding two
    /// chunks of ten records each.
    async fn two_chunks() -> (
        Arc<Broker>,
        Arc<FaultyStore>,
        Arc<Partition>,
        tempfile::TempDir,
    ) {
        let faulty = faulty_memory_store();
        let (broker, dir) = broker(faulty.clone(), BrokerConfig::default()).await;
        let topic = topic(&broker, "events", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        for i in 0..2 {
            let batch = record_batch(-1, -1, -1, 10, i * 1_000);
            append_and_flush(&broker, &partition, &batch).await;
        }
        (broker, faulty, partition, dir)
    }

    fn chunks(broker: &Broker, partition: &Partition) -> Vec<ChunkMeta> {
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, partition.index)
            .unwrap();
        log.chunks
    }

    /// Rewrites the stored object of `chunk` through `change`.
    async fn tamper(store: &FaultyStore, chunk: &ChunkMeta, change: impl Fn(&mut Vec<u8>)) {
        let mut bytes = store.inner().get(&chunk.object_key).await.unwrap().to_vec();
        change(&mut bytes);
        store
            .inner()
            .put(&chunk.object_key, Bytes::from(bytes).into())
            .await
            .unwrap();
    }

    /// The (base, last) offsets of the partition's segments.
    fn segment_ranges(broker: &Broker, partition: &Partition) -> Vec<(i64, i64)> {
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, partition.index)
            .unwrap();
        log.segments
            .iter()
            .map(|s| (s.base_offset, s.last_offset))
            .collect()
    }

    /// Compaction fails with `expected` and leaves the log as it was.
    async fn refused(
        broker: &Broker,
        partition: &Partition,
        expected: fn(&CompactionError) -> bool,
    ) {
        let before = chunks(broker, partition);
        let refs: Vec<&ChunkMeta> = before.iter().collect();
        let result = compact(broker, partition, &[], &refs).await;
        assert!(result.as_ref().is_err_and(expected), "{result:?}");
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, partition.index)
            .unwrap();
        assert!(log.segments.is_empty());
        assert_eq!(log.chunks, before);
    }

    #[tokio::test]
    async fn a_chunk_cut_short_is_never_compacted() {
        let (broker, faulty, partition, _dir) = two_chunks().await;
        let second = chunks(&broker, &partition)[1].clone();
        // The object lost the end of its chunk (and its footer).
        tamper(&faulty, &second, |bytes| {
            bytes.truncate(second.byte_range.end as usize - 10)
        })
        .await;
        refused(&broker, &partition, |e| {
            matches!(e, CompactionError::Read(ReadError::Integrity { .. }))
        })
        .await;
    }

    #[tokio::test]
    async fn a_read_cut_short_fails_the_pass_and_a_later_pass_compacts() {
        let (broker, faulty, partition, _dir) = two_chunks().await;
        faulty.cut_next_reads(1);
        refused(&broker, &partition, |e| {
            matches!(e, CompactionError::Read(ReadError::Integrity { .. }))
        })
        .await;
        let all = chunks(&broker, &partition);
        compact(&broker, &partition, &[], &all.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, 0)
            .unwrap();
        assert_eq!((log.segments.len(), log.chunks.len()), (1, 0));
    }

    #[tokio::test]
    async fn a_batch_whose_crc_does_not_match_is_never_compacted() {
        let (broker, faulty, partition, _dir) = two_chunks().await;
        let first = chunks(&broker, &partition)[0].clone();
        // A flipped bit in the last record of the first chunk.
        tamper(&faulty, &first, |bytes| {
            bytes[first.byte_range.end as usize - 1] ^= 1
        })
        .await;
        refused(&broker, &partition, |e| {
            matches!(e, CompactionError::CorruptBatch { .. })
        })
        .await;
    }

    /// A one-record batch at `base_offset` whose header claims `count` records (consistent
    /// count and offset delta, valid CRC): what a lying producer could once store.
    fn claiming(count: i32, base_offset: i64) -> RecordBatch {
        let mut bytes = record_batch(-1, -1, -1, 1, 1_000).as_bytes().to_vec();
        bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        bytes[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        read_batches(&Bytes::from(bytes)).next().unwrap()
    }

    #[tokio::test]
    async fn a_segment_rolls_before_an_offset_relative_to_its_base_passes_i32_max() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, _dir) = broker(store.clone(), BrokerConfig::default()).await;
        let topic = topic(&broker, "huge-offsets", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let max = i64::from(i32::MAX);
        // Offsets 0, 1..=max-1, max..=max+1: the last batch ends past base + i32::MAX.
        let batches = [claiming(1, 0), claiming(i32::MAX - 1, 1), claiming(2, max)];
        let parts: Vec<Bytes> = batches.iter().map(|b| b.as_bytes().clone()).collect();
        let mut builder = FlushObjectBuilder::new();
        let byte_range = builder.add_chunk(topic.topic_id, 0, 0, max + 1, &parts);
        let key = "flush/0/by-hand.flush";
        store.put(key, builder.finish()).await.unwrap();
        let chunk = ChunkMeta {
            base_offset: 0,
            last_offset: max + 1,
            max_timestamp: 1_000,
            size: byte_range.end - byte_range.start,
            object_key: key.to_string(),
            byte_range,
            aborted_transactions: Vec::new(),
        };
        broker
            .coordinator
            .commit_flush(vec![ChunkCommit {
                topic_id: topic.topic_id,
                partition: 0,
                leader_epoch: partition.leader_epoch,
                chunk: chunk.clone(),
                producers: Vec::new(),
            }])
            .await
            .unwrap();

        compact(&broker, &partition, &[], &[&chunk]).await.unwrap();
        assert_eq!(
            segment_ranges(&broker, &partition),
            [(0, max - 1), (max, max + 1)]
        );
        assert!(chunks(&broker, &partition).is_empty());
    }

    /// A broker with "events" of one partition holding five chunks of one batch of ten
    /// records each, compacting two chunks at a time; returns the batch length too.
    async fn five_chunks(
        store: Arc<dyn ObjectStore>,
        compaction_interval: Duration,
    ) -> (Arc<Broker>, Arc<Partition>, u64, tempfile::TempDir) {
        let batch_len = record_batch(-1, -1, -1, 10, 0).len() as u64;
        let config = BrokerConfig {
            compaction_interval,
            compaction_bytes: 2 * batch_len,
            compaction_max_lag: Duration::from_secs(3600),
            ..BrokerConfig::default()
        };
        let (broker, dir) = broker(store, config).await;
        let topic = topic(&broker, "events", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        for i in 0..5 {
            let batch = record_batch(-1, -1, -1, 10, i * 1_000);
            append_and_flush(&broker, &partition, &batch).await;
        }
        (broker, partition, batch_len, dir)
    }

    #[tokio::test]
    async fn segments_stay_within_compaction_bytes_and_a_pass_catches_up() {
        let store = Arc::new(MemoryStore::new());
        let (broker, partition, batch_len, _dir) =
            five_chunks(store, BrokerConfig::default().compaction_interval).await;

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
        assert_eq!(segment_ranges(&broker, &partition), [(0, 19), (20, 39)]);
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, 0)
            .unwrap();
        assert!(log.segments.iter().all(|s| s.size <= 2 * batch_len));
        assert_eq!(log.chunks.len(), 1);
        assert_eq!(log.high_watermark, 50);
    }

    #[tokio::test]
    async fn a_pass_reports_the_bytes_in_flush_objects_from_its_start_to_what_is_left() {
        // Each segment is three PUTs: the first two segments' are gated.
        let store = Arc::new(GatedStore::segments(6));
        let (broker, partition, batch_len, _dir) =
            five_chunks(store.clone(), Duration::from_millis(10)).await;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(broker.clone(), stopped));
        let backlog = &broker.metrics.compaction_backlog_bytes;

        // The pass waits on its first segment write, and reports all five chunks already.
        eventually("the first segment write", || store.puts_started() == 1).await;
        assert_eq!(backlog.get(), 5 * batch_len as i64);

        // The first segment (two chunks) is done and the pass waits on the second.
        for put in 0..3 {
            store.release(put);
        }
        eventually("the second segment write", || store.puts_started() == 4).await;
        assert_eq!(backlog.get(), 3 * batch_len as i64);

        for put in 3..6 {
            store.release(put);
        }
        // Four chunks become segments; the fifth waits for more data.
        eventually("the one chunk left reported", || {
            backlog.get() == batch_len as i64
        })
        .await;
        assert_eq!(chunks(&broker, &partition).len(), 1);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_segment_write_commits_nothing_and_a_later_pass_succeeds() {
        let (broker, faulty, partition, _dir) = two_chunks().await;
        let log = broker
            .coordinator
            .partition_log(partition.topic_id, 0)
            .unwrap();
        let chunks: Vec<&ChunkMeta> = log.chunks.iter().collect();

        faulty.set_outage(true);
        assert!(compact(&broker, &partition, &[], &chunks).await.is_err());
        let unchanged = broker
            .coordinator
            .partition_log(partition.topic_id, 0)
            .unwrap();
        assert_eq!((unchanged.segments.len(), unchanged.chunks.len()), (0, 2));

        faulty.set_outage(false);
        compact(&broker, &partition, &[], &chunks).await.unwrap();
        let compacted = broker
            .coordinator
            .partition_log(partition.topic_id, 0)
            .unwrap();
        assert_eq!((compacted.segments.len(), compacted.chunks.len()), (1, 0));
        assert_eq!(compacted.high_watermark, 20);
    }

    fn sealed(base_offset: i64, last_offset: i64, size: u64, created_ms: i64) -> SegmentMeta {
        SegmentMeta {
            base_offset,
            last_offset,
            max_timestamp: 0,
            size,
            log_key: String::new(),
            offset_index_key: String::new(),
            time_index_key: String::new(),
            created_ms,
            cleaned: false,
            delete_horizon_ms: None,
            aborted_transactions: Vec::new(),
        }
    }

    fn pending(base_offset: i64, last_offset: i64, size: u64) -> ChunkMeta {
        ChunkMeta {
            base_offset,
            last_offset,
            max_timestamp: 0,
            size,
            object_key: String::new(),
            byte_range: 0..size,
            aborted_transactions: Vec::new(),
        }
    }

    #[test]
    fn a_new_segment_takes_in_the_smaller_ones_before_it_within_size_and_age() {
        let segments = [
            sealed(0, 9, 800, 100),
            sealed(10, 19, 200, 100),
            sealed(20, 29, 100, 200),
        ];
        let chunk = pending(30, 39, 100);
        let merged = |chunk: &ChunkMeta, limit, sealed_since: i64| {
            let mergeable = |s: &SegmentMeta| s.created_ms >= sealed_since;
            let taken = segments_to_merge(&segments, &[chunk], limit, mergeable);
            taken.iter().map(|s| s.base_offset).collect::<Vec<_>>()
        };
        // 100 takes in 100, then 200 (no bigger than 200), but not 800.
        assert_eq!(merged(&chunk, 10_000, 0), [10, 20]);
        // Within the limit only.
        assert_eq!(merged(&chunk, 399, 0), [20]);
        assert_eq!(merged(&chunk, 199, 0), Vec::<i64>::new());
        // Only those it may take in.
        assert_eq!(merged(&chunk, 10_000, 150), [20]);
        // A bigger segment behind stops it; so does a gap (the log start moved past them).
        assert_eq!(merged(&pending(30, 39, 99), 10_000, 0), Vec::<i64>::new());
        assert_eq!(merged(&pending(31, 39, 100), 10_000, 0), Vec::<i64>::new());
    }

    #[tokio::test]
    async fn small_segments_merge_like_a_binary_counter_and_read_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let config = BrokerConfig {
            compaction_max_lag: Duration::ZERO,
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store.clone(), config).await;
        let topic = topic(&broker, "quiet", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let mut first_seen = HashMap::new();
        let mut counts = Vec::new();
        for _ in 0..8 {
            // Records of now: a segment retention would delete is never taken in.
            let batch = record_batch(-1, -1, -1, 10, now_ms());
            append_and_flush(&broker, &partition, &batch).await;
            assert!(compact_if_due(&broker, &partition, &mut first_seen)
                .await
                .unwrap());
            counts.push(segment_ranges(&broker, &partition).len());
        }
        // One chunk each time: the segments hold 8, 4 + 2 + 1, ... chunks, as binary digits.
        assert_eq!(counts, [1, 1, 2, 1, 2, 2, 3, 1]);
        assert_eq!(segment_ranges(&broker, &partition), [(0, 79)]);
        let reader = broker.log_reader();
        let batches = reader
            .read(&partition, 0, 80, usize::MAX, true)
            .await
            .unwrap()
            .record_batches();
        let bases: Vec<i64> = batches.iter().map(|b| b.base_offset()).collect();
        assert_eq!(bases, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.verify_crc().is_ok()));
        // Only the last segment's objects are referenced: the collector removes the others.
        let referenced = broker.coordinator.referenced_objects();
        let segment_objects = referenced.iter().filter(|k| k.starts_with("topics/"));
        assert_eq!(segment_objects.count(), 3, "its log and two indexes");
    }
}
