//! Reads committed batches of a partition: from the in-memory tail when it reaches back far
//! enough, else from the partition's checkpoint (segments, then un-compacted chunks in flush
//! objects) through the read cache. Also finds offsets by timestamp for ListOffsets.

use bytes::Bytes;
use coordinator::coordinator::Coordinator;
use coordinator::{ChunkMeta, PartitionLog, SegmentMeta};
use proto_compat::batch::{read_batches, RecordBatch, RECORD_BATCH_OVERHEAD};
use proto_compat::kafka_protocol::records::RecordBatchDecoder;
use segment_store::offset_index::OffsetIndex;
use segment_store::read_cache::ReadCache;
use segment_store::store::StoreError;
use segment_store::time_index::TimeIndex;

use super::Partition;

/// Bytes read from a segment at a time when the caller's limit is small.
const MIN_SEGMENT_READ: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("index {key} is corrupt: {reason}")]
    CorruptIndex { key: String, reason: String },
    #[error("cannot decode records at offset {offset}: {reason}")]
    Records { offset: i64, reason: String },
}

/// A contiguous piece of the committed log.
enum Piece<'a> {
    Segment(&'a SegmentMeta),
    Chunk(&'a ChunkMeta),
}

impl Piece<'_> {
    fn last_offset(&self) -> i64 {
        match self {
            Piece::Segment(s) => s.last_offset,
            Piece::Chunk(c) => c.last_offset,
        }
    }

    fn max_timestamp(&self) -> i64 {
        match self {
            Piece::Segment(s) => s.max_timestamp,
            Piece::Chunk(c) => c.max_timestamp,
        }
    }
}

fn pieces(log: &PartitionLog) -> impl Iterator<Item = Piece<'_>> {
    log.segments
        .iter()
        .map(Piece::Segment)
        .chain(log.chunks.iter().map(Piece::Chunk))
}

pub struct LogReader<'a> {
    pub cache: &'a ReadCache,
    pub coordinator: &'a Coordinator,
}

impl LogReader<'_> {
    /// Committed batches starting with the one that holds `offset`, below `high_watermark`,
    /// up to `max_bytes` (at least one batch when `at_least_one`, as Kafka does so a batch
    /// larger than the limit can still be consumed).
    pub async fn read(
        &self,
        partition: &Partition,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        if offset >= high_watermark {
            return Ok(Vec::new());
        }
        if let Some(batches) = partition.read_tail(offset, max_bytes, at_least_one) {
            return Ok(below(batches, high_watermark));
        }
        let Some(log) = self
            .coordinator
            .partition_log(partition.topic_id, partition.index)
        else {
            return Ok(Vec::new());
        };
        let mut out: Vec<RecordBatch> = Vec::new();
        let mut bytes = 0usize;
        let mut next = offset;
        for piece in pieces(&log).filter(|p| p.last_offset() >= offset) {
            if next >= high_watermark {
                break;
            }
            let budget = max_bytes.saturating_sub(bytes);
            let first = out.is_empty() && at_least_one;
            if budget == 0 && !first {
                break;
            }
            let batches = match piece {
                Piece::Segment(segment) => self.read_segment(segment, next, budget, first).await?,
                Piece::Chunk(chunk) => self.read_chunk(chunk).await?,
            };
            let mut full = false;
            let from = next;
            for batch in batches.into_iter().filter(|b| b.last_offset() >= from) {
                if bytes + batch.len() > max_bytes && !(out.is_empty() && at_least_one) {
                    full = true;
                    break;
                }
                bytes += batch.len();
                next = batch.last_offset() + 1;
                out.push(batch);
            }
            if full {
                break;
            }
        }
        // The tail may hold what follows the stored pieces (e.g. a commit since `log` was read).
        if next < high_watermark && bytes < max_bytes {
            if let Some(more) =
                partition.read_tail(next, max_bytes - bytes, out.is_empty() && at_least_one)
            {
                out.extend(more);
            }
        }
        Ok(below(out, high_watermark))
    }

    async fn read_chunk(&self, chunk: &ChunkMeta) -> Result<Vec<RecordBatch>, ReadError> {
        let bytes = self
            .cache
            .get_range(&chunk.object_key, chunk.byte_range.clone())
            .await?;
        Ok(read_batches(&bytes).collect())
    }

    async fn offset_index(&self, segment: &SegmentMeta) -> Result<OffsetIndex, ReadError> {
        let bytes = self
            .cache
            .get_range(&segment.offset_index_key, 0..u64::MAX)
            .await?;
        OffsetIndex::from_bytes(segment.base_offset, &bytes).map_err(|e| ReadError::CorruptIndex {
            key: segment.offset_index_key.clone(),
            reason: e.to_string(),
        })
    }

    /// Whole batches of `segment` from the one holding `offset`, about `budget` bytes.
    async fn read_segment(
        &self,
        segment: &SegmentMeta,
        offset: i64,
        budget: usize,
        at_least_one: bool,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        let (_, position) = self.offset_index(segment).await?.lookup(offset);
        let mut position = u64::from(position);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // The index is sparse: read window by window, skipping batches before `offset`.
        while position < segment.size {
            let window = (budget as u64).max(MIN_SEGMENT_READ);
            let data = self
                .cache
                .get_range(&segment.log_key, position..position + window)
                .await?;
            let mut batches: Vec<RecordBatch> = read_batches(&data).collect();
            if batches.is_empty() {
                // The next batch is larger than the window: read exactly that batch.
                let truncated = || ReadError::Records {
                    offset,
                    reason: format!("truncated batch at byte {position} of {}", segment.log_key),
                };
                let length = batch_length_at(&data).ok_or_else(truncated)?;
                let data = self
                    .cache
                    .get_range(&segment.log_key, position..position + length)
                    .await?;
                batches = read_batches(&data).collect();
                if batches.is_empty() {
                    return Err(truncated());
                }
            }
            for batch in batches {
                position += batch.len() as u64;
                if batch.last_offset() < offset {
                    continue;
                }
                if bytes + batch.len() > budget && !(out.is_empty() && at_least_one) {
                    return Ok(out);
                }
                bytes += batch.len();
                out.push(batch);
            }
            if bytes >= budget {
                break;
            }
        }
        Ok(out)
    }

    /// Kafka's ListOffsets by timestamp: the first record whose timestamp is at or after
    /// `timestamp`, as (offset, record timestamp).
    pub async fn offset_for_timestamp(
        &self,
        log: &PartitionLog,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        for piece in pieces(log).filter(|p| p.last_offset() >= log.log_start_offset) {
            if piece.max_timestamp() < timestamp {
                continue;
            }
            let start = match &piece {
                Piece::Segment(segment) => {
                    let bytes = self
                        .cache
                        .get_range(&segment.time_index_key, 0..u64::MAX)
                        .await?;
                    TimeIndex::from_bytes(segment.base_offset, &bytes)
                        .map_err(|e| ReadError::CorruptIndex {
                            key: segment.time_index_key.clone(),
                            reason: e.to_string(),
                        })?
                        .lookup(timestamp)
                }
                Piece::Chunk(chunk) => chunk.base_offset,
            };
            if let Some(found) = self
                .scan(&piece, start.max(log.log_start_offset), |b| {
                    b.max_timestamp() >= timestamp
                })
                .await?
            {
                return first_record(&found, log.log_start_offset, |ts| ts >= timestamp).map(Some);
            }
        }
        Ok(None)
    }

    /// ListOffsets with MAX_TIMESTAMP (-3): the record with the largest timestamp.
    pub async fn offset_of_max_timestamp(
        &self,
        log: &PartitionLog,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let live = || pieces(log).filter(|p| p.last_offset() >= log.log_start_offset);
        let Some(max) = live().map(|p| p.max_timestamp()).max() else {
            return Ok(None);
        };
        let piece = live()
            .find(|p| p.max_timestamp() == max)
            .expect("the maximum comes from a piece");
        let found = self
            .scan(&piece, log.log_start_offset, |b| b.max_timestamp() == max)
            .await?;
        match found {
            Some(batch) => first_record(&batch, log.log_start_offset, |ts| ts == max).map(Some),
            None => Ok(None),
        }
    }

    /// The first batch of `piece` at or after `from` that satisfies `matches`.
    async fn scan(
        &self,
        piece: &Piece<'_>,
        from: i64,
        matches: impl Fn(&RecordBatch) -> bool,
    ) -> Result<Option<RecordBatch>, ReadError> {
        let mut next = from;
        loop {
            let batches = match piece {
                Piece::Segment(segment) => {
                    self.read_segment(segment, next, MIN_SEGMENT_READ as usize, true)
                        .await?
                }
                Piece::Chunk(chunk) => self.read_chunk(chunk).await?,
            };
            let Some(last) = batches.last().map(RecordBatch::last_offset) else {
                return Ok(None);
            };
            if let Some(found) = batches
                .into_iter()
                .find(|b| b.last_offset() >= next && matches(b))
            {
                return Ok(Some(found));
            }
            if matches!(piece, Piece::Chunk(_)) || last >= piece.last_offset() {
                return Ok(None);
            }
            next = last + 1;
        }
    }
}

/// Drops batches at or beyond the high watermark (not yet visible to consumers).
fn below(mut batches: Vec<RecordBatch>, high_watermark: i64) -> Vec<RecordBatch> {
    batches.retain(|b| b.base_offset() < high_watermark);
    batches
}

/// Total length of the batch whose header starts `data`, if the header is there.
fn batch_length_at(data: &Bytes) -> Option<u64> {
    if data.len() < 12 {
        return None;
    }
    let length = i32::from_be_bytes(data[8..12].try_into().ok()?);
    (length >= (RECORD_BATCH_OVERHEAD - 12) as i32).then_some(12 + length as u64)
}

/// Decodes the records of `batch` (ListOffsets only, never on the fetch path) and returns the
/// first at or after `log_start_offset` whose timestamp satisfies `matches`.
fn first_record(
    batch: &RecordBatch,
    log_start_offset: i64,
    matches: impl Fn(i64) -> bool,
) -> Result<(i64, i64), ReadError> {
    let mut bytes = batch.as_bytes().clone();
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| ReadError::Records {
        offset: batch.base_offset(),
        reason: e.to_string(),
    })?;
    let record = set
        .records
        .iter()
        .filter(|r| r.offset >= log_start_offset)
        .find(|r| matches(r.timestamp));
    Ok(match record {
        Some(r) => (r.offset, r.timestamp),
        // LogAppendTime batches and batches whose max is only in the header: the batch start.
        None => (
            batch.base_offset().max(log_start_offset),
            batch.max_timestamp(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use segment_store::memory::MemoryStore;
    use segment_store::store::ObjectStore;

    use super::ReadError;
    use crate::broker::Broker;
    use crate::compaction::compact;
    use crate::config::BrokerConfig;
    use crate::test_support::{append_and_flush, broker, record_batch, topic};

    /// Four batches of ten records (timestamps 1000.., 2000.., 3000.., 4000..), each flushed
    /// as its own chunk, the first two compacted into a segment. Returns a second broker over
    /// the same store and coordinator, whose in-memory tail is empty, so reads hit storage.
    async fn stored_log() -> (Arc<Broker>, coordinator::TopicMeta, tempfile::TempDir) {
        stored_log_in(Arc::new(MemoryStore::new())).await
    }

    async fn stored_log_in(
        store: Arc<dyn ObjectStore>,
    ) -> (Arc<Broker>, coordinator::TopicMeta, tempfile::TempDir) {
        let config = BrokerConfig {
            index_interval_bytes: 1,
            ..BrokerConfig::default()
        };
        let (writer, dir) = broker(store.clone(), config.clone()).await;
        let topic = topic(&writer, "events", 1).await;
        let partition = writer.partition(&topic, 0).unwrap();
        for timestamp in [1_000, 2_000, 3_000, 4_000] {
            let batch = record_batch(-1, -1, -1, 10, timestamp);
            append_and_flush(&writer, &partition, &batch).await;
        }
        let log = writer.coordinator.partition_log(topic.topic_id, 0).unwrap();
        let first_two: Vec<_> = log.chunks.iter().take(2).collect();
        compact(&writer, &partition, &first_two).await.unwrap();
        let log = writer.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!((log.segments.len(), log.chunks.len()), (1, 2));
        let reader = Broker::new(
            0,
            config,
            writer.coordinator.clone(),
            store,
            writer.metrics.clone(),
        );
        (Arc::new(reader), topic, dir)
    }

    #[tokio::test]
    async fn reads_span_segments_and_chunks_in_offset_order() {
        let (broker, topic, _dir) = stored_log().await;
        let partition = broker.partition(&topic, 0).unwrap();
        let reader = broker.log_reader();
        let bases = |batches: Vec<proto_compat::batch::RecordBatch>| -> Vec<i64> {
            batches.iter().map(|b| b.base_offset()).collect()
        };
        let all = reader
            .read(&partition, 0, 40, usize::MAX, true)
            .await
            .unwrap();
        let batch_len = all[0].len();
        assert_eq!(bases(all), [0, 10, 20, 30]);
        // A mid-batch offset returns the whole batch holding it.
        let from_chunk = reader
            .read(&partition, 25, 40, usize::MAX, true)
            .await
            .unwrap();
        assert_eq!(bases(from_chunk), [20, 30]);
        // Byte limits: one batch fits exactly; a limit below one batch still yields one
        // batch when at least one is asked for, and none otherwise.
        assert_eq!(
            bases(
                reader
                    .read(&partition, 0, 40, batch_len, false)
                    .await
                    .unwrap()
            ),
            [0]
        );
        assert_eq!(
            bases(reader.read(&partition, 15, 40, 1, true).await.unwrap()),
            [10]
        );
        assert!(reader
            .read(&partition, 15, 40, 1, false)
            .await
            .unwrap()
            .is_empty());
        // Nothing at or past the high watermark.
        assert!(reader
            .read(&partition, 40, 40, usize::MAX, true)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            bases(
                reader
                    .read(&partition, 0, 20, usize::MAX, true)
                    .await
                    .unwrap()
            ),
            [0, 10]
        );
    }

    #[tokio::test]
    async fn a_store_outage_is_a_read_error_and_reads_resume_after_it() {
        use segment_store::simulate_failures::{FaultConfig, FaultyStore};

        let faulty = Arc::new(FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig::default(),
        ));
        let (broker, topic, _dir) = stored_log_in(faulty.clone()).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let reader = broker.log_reader();
        faulty.set_outage(true);
        assert!(matches!(
            reader.read(&partition, 0, 40, usize::MAX, true).await,
            Err(ReadError::Store(_))
        ));
        faulty.set_outage(false);
        let batches = reader
            .read(&partition, 0, 40, usize::MAX, true)
            .await
            .unwrap();
        assert_eq!(batches.len(), 4);
    }

    #[tokio::test]
    async fn timestamps_resolve_to_the_first_record_at_or_after_them() {
        let (broker, topic, _dir) = stored_log().await;
        let log = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        let reader = broker.log_reader();
        // In the segment, through its time index.
        assert_eq!(
            reader.offset_for_timestamp(&log, 2_005).await.unwrap(),
            Some((15, 2_005))
        );
        assert_eq!(
            reader.offset_for_timestamp(&log, 0).await.unwrap(),
            Some((0, 1_000))
        );
        // Between batches: the next record.
        assert_eq!(
            reader.offset_for_timestamp(&log, 3_500).await.unwrap(),
            Some((30, 4_000))
        );
        assert_eq!(
            reader.offset_for_timestamp(&log, 9_999).await.unwrap(),
            None
        );
        assert_eq!(
            reader.offset_of_max_timestamp(&log).await.unwrap(),
            Some((39, 4_009))
        );
    }
}
