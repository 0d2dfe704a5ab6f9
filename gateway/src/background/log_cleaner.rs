//! The LogCleaner, Kafka's log compaction (`cleanup.policy` with `compact`): on the
//! partition's leader, every `log.cleaner.backoff.ms`, a compacted partition's segments are
//! rewritten keeping the latest record of each key at its original offset.
//!
//! Its segments are a cleaned prefix, then dirty segments (compaction's output, not yet
//! cleaned); the un-compacted chunks are the active part of the log and never touched. The
//! dirty segments may be cleaned once none of their records is younger than
//! `min.compaction.lag.ms` (by each segment's largest timestamp), up to the first that is.
//! A clean happens when they are at least `min.cleanable.dirty.ratio` of the segment bytes,
//! when the first was sealed `max.compaction.lag.ms` ago, or when a cleaned segment holds
//! tombstones past their delete horizon (`delete.retention.ms` after the clean that first
//! kept them).
//!
//! A clean maps the keys of the dirty segments, oldest first, into an OffsetMap of
//! `log.cleaner.dedupe.buffer.size` bytes, as many whole segments as fit (Kafka cleans the
//! prefix that fits; the rest waits for the next clean), then rewrites the cleaned prefix and
//! those segments against it (`segment_store::cleaner`), into new segments of at most the
//! compaction size: small cleaned segments merge there. The new segments are PUT under new
//! keys and swapped in by one coordinator commit fenced by the leader epoch, which refuses
//! if the segments changed since they were read (retention, DeleteRecords). A crash or a
//! refused commit leaves the old segments referenced and the new objects unreferenced,
//! which the garbage collector deletes.
//!
//! Memory: the OffsetMap, one segment read and one segment being written (each at most the
//! compaction size).

use std::collections::HashMap;
use std::sync::Arc;

use coordinator::topic_config::TopicConfig;
use coordinator::{PartitionLog, SegmentMeta};
use proto_compat::batch::{BatchError, RecordBatch};
use segment_store::cleaner::{clean_batches, map_batches, CleanRules, CleanStats, OffsetMap};
use segment_store::formats::segment::{segment_keys, SegmentError, SegmentWriter};
use tokio::sync::watch;

use crate::background::compaction::put_segment;
use crate::background::{isolated, next_pass};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::in_flight_objects::InFlightGuard;
use crate::partition::log_reader::{segment_batches, ReadError};
use crate::partition::Partition;

#[derive(Debug, thiserror::Error)]
pub enum CleanerError {
    #[error(transparent)]
    Store(#[from] segment_store::store::StoreError),
    #[error(transparent)]
    Coordinator(#[from] coordinator::error::CoordinatorError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("batch at offset {offset} of {key}: {source}")]
    Batch {
        key: String,
        offset: i64,
        source: BatchError,
    },
    #[error(
        "the keys of the segment at offset {base_offset} do not fit the offset map \
         (log.cleaner.dedupe.buffer.size {bytes} bytes); raise it"
    )]
    OffsetMapTooSmall { base_offset: i64, bytes: usize },
}

/// Runs the cleaner's passes every `log.cleaner.backoff.ms` until `shutdown`. A partition
/// whose clean fails (or panics) is counted and logged, and tried again on the next pass.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    while next_pass(broker.config.cleaner_backoff, &mut shutdown).await {
        let mut max_dirty: f64 = 0.0;
        for partition in broker.led_partitions() {
            let what = format!("{}-{}", partition.topic, partition.index);
            let metrics = &broker.metrics.log_cleaner;
            let cleaned = clean_if_due(&broker, &partition, now_ms());
            if let Some(Some(ratio)) = isolated("log_cleaner", metrics, &what, cleaned).await {
                max_dirty = max_dirty.max(ratio);
            }
        }
        let percent = (max_dirty * 100.0).round() as i64;
        broker.metrics.cleaner.max_dirty_percent.set(percent);
    }
}

/// Cleans the partition if its topic is compacted and it is due. Returns its dirty ratio
/// as it was (None for a topic that is not compacted).
pub async fn clean_if_due(
    broker: &Broker,
    partition: &Partition,
    now: i64,
) -> Result<Option<f64>, CleanerError> {
    let config = broker.coordinator.topic_config(&partition.topic)?;
    if !config.cleanup_policy.compacts() {
        return Ok(None);
    }
    let Some(log) = broker
        .coordinator
        .partition_log(partition.topic_id, partition.index)
    else {
        return Ok(None);
    };
    let to_clean = LogToClean::of(&log, &config, now);
    let ratio = to_clean.dirty_ratio();
    if to_clean.is_due(&config, now) {
        clean(broker, partition, &log, &config, &to_clean, now).await?;
    }
    Ok(Some(ratio))
}

/// Kafka's LogToClean: the cleaned prefix of a partition's segments and the dirty segments
/// after it that may be cleaned now.
#[derive(Debug)]
struct LogToClean<'a> {
    clean: &'a [SegmentMeta],
    dirty: &'a [SegmentMeta],
}

impl<'a> LogToClean<'a> {
    fn of(log: &'a PartitionLog, config: &TopicConfig, now: i64) -> Self {
        let clean_len = log.segments.iter().take_while(|s| s.cleaned).count();
        let (clean, rest) = log.segments.split_at(clean_len);
        let min_lag = config.min_compaction_lag_ms;
        let old_enough = |s: &&SegmentMeta| min_lag == 0 || now - s.max_timestamp >= min_lag;
        let dirty_len = rest.iter().take_while(old_enough).count();
        Self {
            clean,
            dirty: &rest[..dirty_len],
        }
    }

    /// Dirty bytes over all the bytes a clean would read.
    fn dirty_ratio(&self) -> f64 {
        let bytes = |segments: &[SegmentMeta]| segments.iter().map(|s| s.size).sum::<u64>();
        let (clean, dirty) = (bytes(self.clean), bytes(self.dirty));
        if dirty == 0 {
            return 0.0;
        }
        dirty as f64 / (clean + dirty) as f64
    }

    fn is_due(&self, config: &TopicConfig, now: i64) -> bool {
        let overdue = self
            .dirty
            .first()
            .is_some_and(|s| now.saturating_sub(s.created_ms) >= config.max_compaction_lag_ms);
        let dirty_due = !self.dirty.is_empty()
            && (self.dirty_ratio() >= config.min_cleanable_dirty_ratio || overdue);
        let tombstones_due = self
            .clean
            .iter()
            .any(|s| s.delete_horizon_ms.is_some_and(|horizon| horizon <= now));
        dirty_due || tombstones_due
    }
}

/// One clean of `log` (see the module's comment).
async fn clean(
    broker: &Broker,
    partition: &Partition,
    log: &PartitionLog,
    config: &TopicConfig,
    to_clean: &LogToClean<'_>,
    now: i64,
) -> Result<(), CleanerError> {
    let max_inflated = broker.config.message_max_uncompressed_bytes;
    let map_bytes = broker.config.cleaner_dedupe_buffer_size;
    let mut map = OffsetMap::new(map_bytes);
    let mut mapped = 0;
    for segment in to_clean.dirty {
        let batches = read_segment(broker, segment).await?;
        let whole = map_batches(&mut map, &batches, max_inflated)
            .map_err(|source| batch_error(segment, batches.first(), source))?;
        if !whole {
            break;
        }
        mapped += 1;
    }
    if mapped == 0 && !to_clean.dirty.is_empty() {
        return Err(CleanerError::OffsetMapTooSmall {
            base_offset: to_clean.dirty[0].base_offset,
            bytes: map_bytes,
        });
    }
    let replaced = &log.segments[..to_clean.clean.len() + mapped];
    let (Some(first), Some(last)) = (replaced.first(), replaced.last()) else {
        return Ok(());
    };
    let rules = CleanRules {
        now_ms: now,
        delete_retention_ms: config.delete_retention_ms,
        max_inflated_bytes: max_inflated,
        producer_last_offsets: producer_last_offsets(log),
    };
    let limit = broker
        .config
        .compaction_bytes
        .min(config.segment_bytes.max(1) as u64);
    tracing::debug!(
        topic = %partition.topic,
        partition = partition.index,
        dirty_segments = mapped,
        keys = map.len(),
        "cleaning the log"
    );
    let mut out = CleanedSegments::new(broker, partition, first, limit);
    let mut stats = CleanStats::default();
    for segment in replaced {
        let batches = read_segment(broker, segment).await?;
        let first_batch = batches.first().cloned();
        let cleaned = clean_batches(batches, &map, &rules, &mut stats)
            .map_err(|source| batch_error(segment, first_batch.as_ref(), source))?;
        for batch in cleaned {
            out.append(batch, segment.created_ms).await?;
        }
    }
    let (segments, _in_flight) = out.finish(last.last_offset).await?;
    // The transaction index follows the abort markers, which the cleaner keeps.
    let segments: Vec<SegmentMeta> = segments
        .into_iter()
        .map(|segment| SegmentMeta {
            aborted_transactions: coordinator::aborted_transactions_within(
                replaced.iter().map(|s| s.aborted_transactions.as_slice()),
                segment.base_offset,
                segment.last_offset,
            ),
            ..segment
        })
        .collect();
    let written = segments.len();
    broker
        .coordinator
        .replace_segments(
            partition.topic_id,
            partition.index,
            partition.leader_epoch,
            replaced,
            segments,
        )
        .await?;
    partition.cleaned_below(last.last_offset + 1);
    let metrics = &broker.metrics.cleaner;
    metrics.runs.inc();
    metrics.bytes_read.inc_by(stats.bytes_read);
    metrics.bytes_written.inc_by(stats.bytes_written);
    metrics.records_removed.inc_by(stats.records_removed);
    tracing::info!(
        topic = %partition.topic,
        partition = partition.index,
        base_offset = first.base_offset,
        last_offset = last.last_offset,
        dirty_segments = mapped,
        keys = map.len(),
        segments_read = replaced.len(),
        segments_written = written,
        bytes_read = stats.bytes_read,
        bytes_written = stats.bytes_written,
        records_removed = stats.records_removed,
        tombstones_removed = stats.tombstones_removed,
        "cleaned the log"
    );
    Ok(())
}

/// A stored segment's batches, checked as compaction checks what it rewrites: the bytes its
/// metadata says, whole batches with valid CRCs.
async fn read_segment(
    broker: &Broker,
    segment: &SegmentMeta,
) -> Result<Vec<RecordBatch>, CleanerError> {
    // Around the read cache: consumers do not read these bytes again from where they were.
    let bytes = broker.store.get(&segment.log_key).await?;
    let batches = segment_batches(segment, &bytes)?;
    for batch in &batches {
        batch
            .verify_crc()
            .map_err(|source| batch_error(segment, Some(batch), source))?;
    }
    Ok(batches)
}

fn batch_error(
    segment: &SegmentMeta,
    batch: Option<&RecordBatch>,
    source: BatchError,
) -> CleanerError {
    CleanerError::Batch {
        key: segment.log_key.clone(),
        offset: batch.map_or(segment.base_offset, RecordBatch::base_offset),
        source,
    }
}

/// Producer id → last offset of its last batch, from the partition's producer states.
fn producer_last_offsets(log: &PartitionLog) -> HashMap<i64, i64> {
    log.producers
        .iter()
        .filter_map(|p| Some((p.producer_id, p.batches.last()?.last_offset)))
        .collect()
}

/// The segments a clean writes: they tile the cleaned range from its base offset, each
/// ending where the next begins, the last at the range's end, each at most `limit` bytes.
struct CleanedSegments<'a> {
    broker: &'a Broker,
    partition: &'a Partition,
    limit: u64,
    writer: SegmentWriter,
    /// The oldest of the segments its batches came from.
    created_ms: i64,
    delete_horizon_ms: Option<i64>,
    written: Vec<SegmentMeta>,
    in_flight: Vec<InFlightGuard>,
}

impl<'a> CleanedSegments<'a> {
    fn new(broker: &'a Broker, partition: &'a Partition, first: &SegmentMeta, limit: u64) -> Self {
        Self {
            broker,
            partition,
            limit,
            writer: SegmentWriter::new(first.base_offset, broker.config.index_interval_bytes),
            created_ms: first.created_ms,
            delete_horizon_ms: None,
            written: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    async fn append(&mut self, batch: RecordBatch, created_ms: i64) -> Result<(), CleanerError> {
        let over = self.writer.size() + batch.len() as u64 > self.limit;
        if !self.writer.is_empty() && (over || !self.writer.fits(&batch)) {
            self.roll(batch.base_offset(), created_ms).await?;
        }
        self.writer.append(&batch)?;
        self.created_ms = self.created_ms.min(created_ms);
        if let Some(horizon) = batch.delete_horizon_ms() {
            let earliest = self.delete_horizon_ms.map_or(horizon, |h| h.min(horizon));
            self.delete_horizon_ms = Some(earliest);
        }
        Ok(())
    }

    /// Writes the segment being built, ending just before `next_base`.
    async fn roll(&mut self, next_base: i64, created_ms: i64) -> Result<(), CleanerError> {
        let interval = self.broker.config.index_interval_bytes;
        let writer = std::mem::replace(&mut self.writer, SegmentWriter::new(next_base, interval));
        let segment_created = std::mem::replace(&mut self.created_ms, created_ms);
        self.put(writer, next_base - 1, segment_created).await
    }

    async fn put(
        &mut self,
        writer: SegmentWriter,
        last_offset: i64,
        created_ms: i64,
    ) -> Result<(), CleanerError> {
        let data = writer.finish();
        let keys = segment_keys(
            self.partition.topic_id,
            self.partition.index,
            data.base_offset,
        );
        // Until the swap is committed nothing references these objects.
        self.in_flight.push(self.broker.in_flight.protect(vec![
            keys.log.clone(),
            keys.offset_index.clone(),
            keys.time_index.clone(),
        ]));
        let store = self.broker.store.as_ref();
        let meta = put_segment(store, data, keys, last_offset, created_ms).await?;
        self.written.push(SegmentMeta {
            cleaned: true,
            delete_horizon_ms: self.delete_horizon_ms.take(),
            ..meta
        });
        Ok(())
    }

    /// Writes the last segment, ending at `last_offset`; returns the segments and what keeps
    /// their objects from the garbage collector until they are committed.
    async fn finish(
        mut self,
        last_offset: i64,
    ) -> Result<(Vec<SegmentMeta>, Vec<InFlightGuard>), CleanerError> {
        let interval = self.broker.config.index_interval_bytes;
        let writer = std::mem::replace(&mut self.writer, SegmentWriter::new(0, interval));
        let created_ms = self.created_ms;
        self.put(writer, last_offset, created_ms).await?;
        Ok((self.written, self.in_flight))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use bytes::{Bytes, BytesMut};
    use proto_compat::batch::validate_batches;
    use proto_compat::kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use segment_store::backends::memory::MemoryStore;
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::background::compaction::compact;
    use crate::config::BrokerConfig;
    use crate::test_support::{append_and_flush, broker, faulty_memory_store};

    const DAY: i64 = 86_400_000;

    /// A batch of (key, value) records (None: a tombstone) with timestamp 1000.
    fn keyed(records: &[(&str, Option<&str>)]) -> RecordBatch {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: 1_000,
                key: Some(Bytes::from(key.to_string())),
                value: value.map(|v| Bytes::from(v.to_string())),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        validate_batches(&buf.freeze()).unwrap().remove(0)
    }

    /// A broker over `store` with a compacted topic "table" of one partition.
    async fn compacted(
        store: Arc<dyn ObjectStore>,
        config: BrokerConfig,
        topic_configs: &[(&str, &str)],
    ) -> (Arc<Broker>, Arc<Partition>, tempfile::TempDir) {
        let (broker, dir) = broker(store, config).await;
        let mut configs: BTreeMap<String, String> = topic_configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        configs.insert("cleanup.policy".into(), "compact".into());
        let topic = broker
            .coordinator
            .create_topic("table", 1, configs, false)
            .await
            .unwrap();
        let partition = broker.partition(&topic, 0).unwrap();
        (broker, partition, dir)
    }

    /// Appends each batch as a chunk, then compacts them into one (dirty) segment.
    async fn segment_of(broker: &Broker, partition: &Arc<Partition>, batches: &[RecordBatch]) {
        for batch in batches {
            append_and_flush(broker, partition, batch).await;
        }
        let log = log(broker, partition);
        compact(
            broker,
            partition,
            &[],
            &log.chunks.iter().collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    }

    fn log(broker: &Broker, partition: &Partition) -> PartitionLog {
        broker
            .coordinator
            .partition_log(partition.topic_id, partition.index)
            .unwrap()
    }

    /// (offset, key, value) of every record read from `offset` on, through the read path.
    async fn read_table(
        broker: &Broker,
        partition: &Partition,
        offset: i64,
    ) -> Vec<(i64, String, Option<String>)> {
        let high_watermark = log(broker, partition).high_watermark;
        let batches = broker
            .log_reader()
            .read(partition, offset, high_watermark, usize::MAX, true)
            .await
            .unwrap()
            .record_batches();
        let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
        batches
            .iter()
            .flat_map(|b| {
                b.verify_crc().unwrap();
                let mut bytes = b.as_bytes().clone();
                RecordBatchDecoder::decode(&mut bytes).unwrap().records
            })
            .map(|r| (r.offset, text(r.key.unwrap()), r.value.map(text)))
            .collect()
    }

    fn row(offset: i64, key: &str, value: Option<&str>) -> (i64, String, Option<String>) {
        (offset, key.to_string(), value.map(str::to_string))
    }

    #[tokio::test]
    async fn a_clean_keeps_the_latest_record_of_each_key_at_its_offset() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, partition, _dir) = compacted(store, BrokerConfig::default(), &[]).await;
        segment_of(
            &broker,
            &partition,
            &[
                keyed(&[("a", Some("a0")), ("b", Some("b0"))]),
                keyed(&[("a", Some("a1")), ("c", Some("c0"))]),
                keyed(&[("b", Some("b1"))]),
                keyed(&[("a", Some("a2"))]),
            ],
        )
        .await;
        // A chunk that is not a segment yet: the active part, never cleaned.
        append_and_flush(&broker, &partition, &keyed(&[("c", Some("c1"))])).await;

        let ratio = clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        assert_eq!(ratio, Some(1.0), "all dirty before the first clean");
        let cleaned = log(&broker, &partition);
        assert_eq!(cleaned.segments.len(), 1);
        assert!(cleaned.segments[0].cleaned);
        assert_eq!(
            (
                cleaned.segments[0].base_offset,
                cleaned.segments[0].last_offset
            ),
            (0, 5)
        );
        assert_eq!(cleaned.chunks.len(), 1);
        assert_eq!(
            read_table(&broker, &partition, 0).await,
            [
                row(3, "c", Some("c0")),
                row(4, "b", Some("b1")),
                row(5, "a", Some("a2")),
                row(6, "c", Some("c1")),
            ]
        );
        // An offset in a gap reads from the next batch; one inside a batch whose records
        // before it went gets the whole batch (its base offset below the one asked).
        assert_eq!(
            read_table(&broker, &partition, 1).await[0],
            row(3, "c", Some("c0"))
        );
        assert_eq!(
            read_table(&broker, &partition, 5).await[0],
            row(5, "a", Some("a2"))
        );
        // ListOffsets by timestamp reads records of batches whose offsets skip.
        let by_time = broker
            .log_reader()
            .offset_for_timestamp(partition.topic_id, 0, 1_000)
            .await
            .unwrap();
        assert_eq!(by_time, Some((3, 1_000)));
        let metrics = &broker.metrics.cleaner;
        assert_eq!(metrics.runs.get(), 1);
        assert_eq!(metrics.records_removed.get(), 3);
        assert!(metrics.bytes_written.get() < metrics.bytes_read.get());

        // Cleaned and nothing new: not due again.
        assert_eq!(
            clean_if_due(&broker, &partition, now_ms()).await.unwrap(),
            Some(0.0)
        );
        assert_eq!(metrics.runs.get(), 1);
    }

    #[tokio::test]
    async fn a_new_dirty_segment_removes_what_it_supersedes_from_the_cleaned_ones() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let eager = [("min.cleanable.dirty.ratio", "0.01")];
        let (broker, partition, _dir) = compacted(store, BrokerConfig::default(), &eager).await;
        segment_of(
            &broker,
            &partition,
            &[keyed(&[("a", Some("a0")), ("b", Some("b0"))])],
        )
        .await;
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        segment_of(&broker, &partition, &[keyed(&[("a", Some("a1"))])]).await;
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        let cleaned = log(&broker, &partition);
        // The two cleaned segments merged into one.
        assert_eq!(cleaned.segments.len(), 1);
        assert_eq!(
            read_table(&broker, &partition, 0).await,
            [row(1, "b", Some("b0")), row(2, "a", Some("a1"))]
        );
    }

    #[tokio::test]
    async fn a_tombstone_stays_for_delete_retention_ms_after_the_clean_that_kept_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, partition, _dir) = compacted(store, BrokerConfig::default(), &[]).await;
        segment_of(
            &broker,
            &partition,
            &[
                keyed(&[("a", Some("a0")), ("b", Some("b0"))]),
                keyed(&[("a", None)]),
            ],
        )
        .await;
        let now = now_ms();
        clean_if_due(&broker, &partition, now).await.unwrap();
        assert_eq!(
            read_table(&broker, &partition, 0).await,
            [row(1, "b", Some("b0")), row(2, "a", None)]
        );
        let segment = &log(&broker, &partition).segments[0];
        assert_eq!(segment.delete_horizon_ms, Some(now + DAY));
        // Until the horizon nothing is due; from it on the tombstone goes.
        clean_if_due(&broker, &partition, now + DAY - 1)
            .await
            .unwrap();
        assert_eq!(broker.metrics.cleaner.runs.get(), 1);
        clean_if_due(&broker, &partition, now + DAY).await.unwrap();
        assert_eq!(
            read_table(&broker, &partition, 0).await,
            [row(1, "b", Some("b0"))]
        );
        let log = log(&broker, &partition);
        assert_eq!(log.segments[0].delete_horizon_ms, None);
        assert_eq!(log.high_watermark, 3, "offsets do not move");
        // Nothing left to remove: not due again.
        clean_if_due(&broker, &partition, now + 2 * DAY)
            .await
            .unwrap();
        assert_eq!(broker.metrics.cleaner.runs.get(), 2);
    }

    fn meta(base: i64, last: i64, size: u64, max_timestamp: i64, cleaned: bool) -> SegmentMeta {
        SegmentMeta {
            base_offset: base,
            last_offset: last,
            max_timestamp,
            size,
            log_key: String::new(),
            offset_index_key: String::new(),
            time_index_key: String::new(),
            created_ms: max_timestamp,
            cleaned,
            delete_horizon_ms: None,
            aborted_transactions: Vec::new(),
        }
    }

    #[test]
    fn the_dirty_ratio_and_the_lags_decide_when_a_clean_is_due() {
        let log = PartitionLog {
            log_start_offset: 0,
            high_watermark: 40,
            segments: vec![
                meta(0, 9, 300, 1_000, true),
                meta(10, 19, 100, 2_000, false),
                meta(20, 29, 100, 5_000, false),
            ],
            chunks: Vec::new(),
            producers: Vec::new(),
        };
        let mut config = TopicConfig::default();
        let now = 6_000;
        let to_clean = LogToClean::of(&log, &config, now);
        assert_eq!((to_clean.clean.len(), to_clean.dirty.len()), (1, 2));
        assert_eq!(to_clean.dirty_ratio(), 0.4);
        // Below min.cleanable.dirty.ratio (0.5): not due, unless max.compaction.lag.ms passed
        // since the first dirty segment was sealed.
        assert!(!to_clean.is_due(&config, now));
        config.max_compaction_lag_ms = 4_000;
        assert!(to_clean.is_due(&config, now));
        config.max_compaction_lag_ms = i64::MAX;
        config.min_cleanable_dirty_ratio = 0.4;
        assert!(to_clean.is_due(&config, now));
        // min.compaction.lag.ms: the segment with a record 1 s old, and all after it, wait.
        config.min_compaction_lag_ms = 2_000;
        let to_clean = LogToClean::of(&log, &config, now);
        assert_eq!(to_clean.dirty.len(), 1);
        assert_eq!(to_clean.dirty_ratio(), 0.25);
        assert!(!to_clean.is_due(&config, now));
        config.min_compaction_lag_ms = 5_000;
        assert!(LogToClean::of(&log, &config, now).dirty.is_empty());
    }

    #[tokio::test]
    async fn a_small_offset_map_cleans_the_prefix_of_whole_segments_that_fits() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        // 10 slots: 9 keys fit.
        let config = BrokerConfig {
            cleaner_dedupe_buffer_size: 10 * segment_store::cleaner::offset_map::BYTES_PER_ENTRY,
            ..BrokerConfig::default()
        };
        let eager = [("min.cleanable.dirty.ratio", "0.01")];
        let (broker, partition, _dir) = compacted(store, config, &eager).await;
        let keys =
            |from: usize| -> Vec<String> { (from..from + 6).map(|i| format!("k{i}")).collect() };
        for from in [0, 6, 12] {
            let keys = keys(from);
            let records: Vec<(&str, Option<&str>)> =
                keys.iter().map(|k| (k.as_str(), Some("v"))).collect();
            segment_of(&broker, &partition, &[keyed(&records), keyed(&records)]).await;
        }
        let cleaned = |broker: &Broker| {
            log(broker, &partition)
                .segments
                .iter()
                .map(|s| s.cleaned)
                .collect::<Vec<_>>()
        };
        // 6 keys a segment: one segment's keys fit, two do not.
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        assert_eq!(cleaned(&broker), [true, false, false]);
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        assert_eq!(
            cleaned(&broker),
            [true, false],
            "merged, and one more cleaned"
        );
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        assert_eq!(cleaned(&broker), [true]);
        let table = read_table(&broker, &partition, 0).await;
        let offsets: Vec<i64> = table.iter().map(|(o, _, _)| *o).collect();
        let expected: Vec<i64> = [6..12, 18..24, 30..36].into_iter().flatten().collect();
        assert_eq!(offsets, expected);

        // A segment whose keys alone do not fit is an error, not a partial clean.
        let many: Vec<String> = (100..120).map(|i| format!("k{i}")).collect();
        let records: Vec<(&str, Option<&str>)> = many.iter().map(|k| (k.as_str(), None)).collect();
        segment_of(&broker, &partition, &[keyed(&records)]).await;
        let result = clean_if_due(&broker, &partition, now_ms()).await;
        assert!(
            matches!(result, Err(CleanerError::OffsetMapTooSmall { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_clean_that_fails_midway_leaves_the_log_as_it_was_and_a_later_one_completes() {
        let faulty = faulty_memory_store();
        let (broker, partition, _dir) =
            compacted(faulty.clone(), BrokerConfig::default(), &[]).await;
        segment_of(
            &broker,
            &partition,
            &[keyed(&[("a", Some("a0"))]), keyed(&[("a", Some("a1"))])],
        )
        .await;
        let before = log(&broker, &partition);
        faulty.set_outage(true);
        assert!(clean_if_due(&broker, &partition, now_ms()).await.is_err());
        faulty.set_outage(false);
        assert_eq!(log(&broker, &partition), before);
        assert!(
            broker.in_flight.keys().is_empty(),
            "its objects are garbage now"
        );
        clean_if_due(&broker, &partition, now_ms()).await.unwrap();
        assert_eq!(
            read_table(&broker, &partition, 0).await,
            [row(1, "a", Some("a1"))]
        );
    }

    #[tokio::test]
    async fn a_topic_that_is_not_compacted_is_left_alone() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, _dir) = broker(store, BrokerConfig::default()).await;
        let topic = crate::test_support::topic(&broker, "events", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        segment_of(
            &broker,
            &partition,
            &[keyed(&[("a", Some("a0"))]), keyed(&[("a", Some("a1"))])],
        )
        .await;
        assert_eq!(
            clean_if_due(&broker, &partition, now_ms()).await.unwrap(),
            None
        );
        assert!(!log(&broker, &partition).segments[0].cleaned);
    }
}
