//! Reads committed batches of a partition: from the in-memory tail when it reaches back far
//! enough, else from the partition's checkpoint (segments, then un-compacted chunks in flush
//! objects) through the read cache. Also finds offsets by timestamp for ListOffsets.
//!
//! What comes back from storage is checked, never trusted: a read returns exactly the bytes
//! asked for, a chunk holds whole batches covering exactly its offsets, a segment's batches
//! follow each other from the index entry they are read from, and no offset between pieces
//! is skipped, except inside a segment the LogCleaner wrote, whose batches may skip the
//! offsets of records it removed (Kafka clients expect such gaps, and batches whose base
//! offset is below the offset they asked for). A read that fails these checks is counted and read once more straight from
//! the store (a cached block may be bad); one that finds an object gone (replaced by
//! compaction and collected since the checkpoint was read) is retried on a fresh checkpoint.

use bytes::Bytes;
use coordinator::Coordinator;
use coordinator::{ChunkMeta, PartitionLog, SegmentMeta};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use proto_compat::batch::{BatchHeader, RecordBatch, TimestampType, RECORD_BATCH_OVERHEAD};
use proto_compat::records::find_record;
use segment_store::caches::read_cache::ReadCache;
use segment_store::formats::offset_index::OffsetIndex;
use segment_store::formats::time_index::TimeIndex;
use segment_store::parts::Parts;
use segment_store::store::{ObjectStore, StoreError};
use uuid::Uuid;

use super::read_batches::ReadBatches;
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
    /// Retention or DeleteRecords moved the log start past the offset since it was checked.
    #[error("offset {offset} is below the log start offset {log_start_offset}")]
    BelowLogStart { offset: i64, log_start_offset: i64 },
    /// What storage returned is not what the checkpoint says is there.
    #[error("{key} does not hold what the checkpoint says: {reason}")]
    Integrity { key: String, reason: String },
}

impl ReadError {
    fn integrity(key: &str, reason: String) -> Self {
        Self::Integrity {
            key: key.to_string(),
            reason,
        }
    }
}

/// Where a read gets its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Cache,
    /// Straight from the store, around every cache tier (block-aligned ranges aside, which
    /// the disk tier serves): after a read through the caches failed its checks.
    Store,
}

/// What one read of a segment or a chunk found.
struct PieceRead {
    batches: ReadBatches,
    /// It read up to the piece's end.
    complete: bool,
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
    pub store: &'a dyn ObjectStore,
    pub coordinator: &'a Coordinator,
    pub integrity_errors: &'a Counter,
    /// What a timestamp lookup may inflate of one batch (`message.max.uncompressed.bytes`).
    pub max_inflated_bytes: u64,
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
    ) -> Result<ReadBatches, ReadError> {
        if offset >= high_watermark {
            return Ok(ReadBatches::default());
        }
        if let Some(batches) = partition.read_tail(offset, max_bytes, at_least_one) {
            return Ok(ReadBatches::from(batches).below(high_watermark));
        }
        self.checked(|source| {
            Box::pin(self.read_log(
                partition,
                source,
                offset,
                high_watermark,
                max_bytes,
                at_least_one,
            ))
        })
        .await
    }

    /// Runs `attempt` on the caches, and once more if what it read failed its checks (then
    /// from the store) or an object was gone (then on a fresh checkpoint).
    async fn checked<'a, T>(
        &'a self,
        attempt: impl Fn(Source) -> BoxFuture<'a, Result<T, ReadError>>,
    ) -> Result<T, ReadError> {
        match attempt(Source::Cache).await {
            Err(ReadError::Integrity { key, reason }) => {
                self.integrity_errors.inc();
                tracing::warn!(%key, %reason, "a read failed its checks; reading it again from the store");
                self.cache.invalidate(&key);
                attempt(Source::Store).await
            }
            Err(ReadError::Store(StoreError::NotFound { .. })) => attempt(Source::Cache).await,
            result => result,
        }
    }

    /// One attempt of [`LogReader::read`], on the checkpoint as it is now.
    async fn read_log(
        &self,
        partition: &Partition,
        source: Source,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Result<ReadBatches, ReadError> {
        let Some(log) = self
            .coordinator
            .partition_log(partition.topic_id, partition.index)
        else {
            return Ok(ReadBatches::default());
        };
        if offset < log.log_start_offset {
            return Err(ReadError::BelowLogStart {
                offset,
                log_start_offset: log.log_start_offset,
            });
        }
        let mut out = ReadBatches::default();
        let mut next = offset;
        for piece in pieces(&log).filter(|p| p.last_offset() >= offset) {
            if next >= high_watermark {
                break;
            }
            let budget = max_bytes.saturating_sub(out.len());
            let first = out.is_empty() && at_least_one;
            if budget == 0 && !first {
                break;
            }
            let (key, read, gaps) = match piece {
                Piece::Segment(segment) => (
                    &segment.log_key,
                    self.read_segment(segment, next, budget, first, source)
                        .await?,
                    segment.cleaned,
                ),
                Piece::Chunk(chunk) => (
                    &chunk.object_key,
                    self.read_chunk(chunk, next, budget, first, source).await?,
                    false,
                ),
            };
            // The piece read already skipped what lies before `next` and kept to `budget`.
            for header in read.batches.headers() {
                if header.base_offset > next && !gaps {
                    return Err(ReadError::integrity(
                        key,
                        format!(
                            "offsets {next}..{} are missing: the next batch starts after them",
                            header.base_offset
                        ),
                    ));
                }
                next = header.last_offset + 1;
            }
            out.append(read.batches);
            // A piece read that stopped short of its end ran out of budget: what follows
            // it must not be read past what it left.
            if !read.complete {
                break;
            }
            // A cleaned segment covers its whole range, whatever offsets its batches skip.
            if gaps {
                next = next.max(piece.last_offset() + 1);
            }
        }
        // The tail may hold what follows the stored pieces (e.g. a commit since `log` was read).
        if next < high_watermark && out.len() < max_bytes {
            if let Some(more) =
                partition.read_tail(next, max_bytes - out.len(), out.is_empty() && at_least_one)
            {
                out.append(ReadBatches::from(more));
            }
        }
        Ok(out.below(high_watermark))
    }

    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        source: Source,
    ) -> Result<Bytes, StoreError> {
        Ok(self.get_parts(key, range, source).await?.join())
    }

    /// [`LogReader::get_range`] as the cache returns it: in blocks, not joined.
    async fn get_parts(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        source: Source,
    ) -> Result<Parts, StoreError> {
        match source {
            Source::Cache => self.cache.get_parts(key, range).await,
            Source::Store => Ok(self.store.get_range(key, range).await?.into()),
        }
    }

    /// The batches of `chunk` from the one holding `offset`, about `budget` bytes, once the
    /// whole chunk is checked against its metadata. They come back in the cache's blocks
    /// that hold them, so a fetch of part of a large chunk copies none of it.
    async fn read_chunk(
        &self,
        chunk: &ChunkMeta,
        offset: i64,
        budget: usize,
        at_least_one: bool,
        source: Source,
    ) -> Result<PieceRead, ReadError> {
        let parts = self
            .get_parts(&chunk.object_key, chunk.byte_range.clone(), source)
            .await?;
        let spans = chunk_spans(chunk, &parts)?;
        let mut taken = Vec::new();
        let mut bytes = 0usize;
        let mut complete = true;
        for span in spans
            .iter()
            .filter(|span| span.header.last_offset >= offset)
        {
            if !fits(
                bytes,
                span.header.len,
                budget,
                taken.is_empty() && at_least_one,
            ) {
                complete = false;
                break;
            }
            bytes += span.header.len;
            taken.push(span);
        }
        Ok(PieceRead {
            batches: take(&parts, &taken),
            complete,
        })
    }

    async fn offset_index(
        &self,
        segment: &SegmentMeta,
        source: Source,
    ) -> Result<OffsetIndex, ReadError> {
        let bytes = self
            .get_range(&segment.offset_index_key, 0..u64::MAX, source)
            .await?;
        OffsetIndex::from_bytes(segment.base_offset, &bytes).map_err(|e| ReadError::CorruptIndex {
            key: segment.offset_index_key.clone(),
            reason: e.to_string(),
        })
    }

    /// Whole batches of `segment` from the one holding `offset` (or the first after it), about
    /// `budget` bytes.
    async fn read_segment(
        &self,
        segment: &SegmentMeta,
        offset: i64,
        budget: usize,
        at_least_one: bool,
        source: Source,
    ) -> Result<PieceRead, ReadError> {
        let key = &segment.log_key;
        let (mut expected, position) = self.offset_index(segment, source).await?.lookup(offset);
        let mut position = u64::from(position);
        let mut out = ReadBatches::default();
        let mut bytes = 0usize;
        // The index is sparse: read window by window, skipping batches before `offset`.
        while position < segment.size {
            let window = (budget as u64).max(MIN_SEGMENT_READ);
            let mut data = self
                .exact_parts(key, position..(position + window).min(segment.size), source)
                .await?;
            let mut spans = batch_spans(&data);
            if spans.is_empty() {
                // The next batch is larger than the window: read exactly that batch.
                let header = data.slice(0..data.len().min(RECORD_BATCH_OVERHEAD));
                let length = BatchHeader::parse(&header)
                    .ok_or_else(|| {
                        ReadError::integrity(key, format!("no batch header at byte {position}"))
                    })?
                    .len as u64;
                if position + length > segment.size {
                    return Err(ReadError::integrity(
                        key,
                        format!(
                            "the batch at byte {position} ends past the segment's {} bytes",
                            segment.size
                        ),
                    ));
                }
                data = self
                    .exact_parts(key, position..position + length, source)
                    .await?;
                spans = batch_spans(&data);
                if spans.is_empty() {
                    return Err(ReadError::integrity(
                        key,
                        format!("truncated batch at byte {position}"),
                    ));
                }
            }
            let mut taken = Vec::new();
            let mut full = false;
            for span in &spans {
                let BatchHeader {
                    len,
                    base_offset,
                    last_offset,
                    ..
                } = span.header;
                let gap = base_offset > expected && segment.cleaned;
                if base_offset != expected && !gap {
                    return Err(ReadError::integrity(
                        key,
                        format!(
                            "the batch at byte {position} starts at offset {base_offset}, not {expected}"
                        ),
                    ));
                }
                expected = last_offset + 1;
                position += len as u64;
                if last_offset < offset {
                    continue;
                }
                if !fits(bytes, len, budget, bytes == 0 && at_least_one) {
                    full = true;
                    break;
                }
                bytes += len;
                taken.push(span);
            }
            out.append(take(&data, &taken));
            if full {
                return Ok(PieceRead {
                    batches: out,
                    complete: false,
                });
            }
            if bytes >= budget {
                break;
            }
        }
        let end = segment.last_offset + 1;
        let ends_right = expected == end || (segment.cleaned && expected < end);
        if position == segment.size && !ends_right {
            return Err(ReadError::integrity(
                key,
                format!(
                    "the segment ends at offset {}, its metadata at {}",
                    expected - 1,
                    segment.last_offset
                ),
            ));
        }
        Ok(PieceRead {
            batches: out,
            complete: position == segment.size,
        })
    }

    /// Exactly the bytes of `range`, which lies inside the object.
    async fn exact_parts(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        source: Source,
    ) -> Result<Parts, ReadError> {
        let data = self.get_parts(key, range.clone(), source).await?;
        check_length(key, &range, data.len())?;
        Ok(data)
    }

    /// Kafka's ListOffsets by timestamp: the first record whose timestamp is at or after
    /// `timestamp`, as (offset, record timestamp).
    pub async fn offset_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        self.checked(|source| {
            Box::pin(self.find_offset_for_timestamp(topic_id, partition, timestamp, source))
        })
        .await
    }

    /// One attempt of [`LogReader::offset_for_timestamp`].
    async fn find_offset_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
        source: Source,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let Some(log) = self.coordinator.partition_log(topic_id, partition) else {
            return Ok(None);
        };
        for piece in pieces(&log).filter(|p| p.last_offset() >= log.log_start_offset) {
            if piece.max_timestamp() < timestamp {
                continue;
            }
            let start = match &piece {
                Piece::Segment(segment) => {
                    let bytes = self
                        .get_range(&segment.time_index_key, 0..u64::MAX, source)
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
            let found = self
                .scan(&piece, start.max(log.log_start_offset), source, |b| {
                    b.max_timestamp() >= timestamp
                })
                .await?;
            if let Some(found) = found {
                let record = first_record(
                    &found,
                    log.log_start_offset,
                    |ts| ts >= timestamp,
                    self.max_inflated_bytes,
                )?;
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// ListOffsets with MAX_TIMESTAMP (-3): the record with the largest timestamp.
    pub async fn offset_of_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        self.checked(|source| Box::pin(self.find_max_timestamp(topic_id, partition, source)))
            .await
    }

    /// One attempt of [`LogReader::offset_of_max_timestamp`].
    async fn find_max_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        source: Source,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let Some(log) = self.coordinator.partition_log(topic_id, partition) else {
            return Ok(None);
        };
        let live = || pieces(&log).filter(|p| p.last_offset() >= log.log_start_offset);
        let Some(max) = live().map(|p| p.max_timestamp()).max() else {
            return Ok(None);
        };
        let piece = live()
            .find(|p| p.max_timestamp() == max)
            .expect("the maximum comes from a piece");
        let found = self
            .scan(&piece, log.log_start_offset, source, |b| {
                b.max_timestamp() == max
            })
            .await?;
        match found {
            Some(batch) => {
                let limit = self.max_inflated_bytes;
                first_record(&batch, log.log_start_offset, |ts| ts == max, limit).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The first batch of `piece` at or after `from` that satisfies `matches`.
    async fn scan(
        &self,
        piece: &Piece<'_>,
        from: i64,
        source: Source,
        matches: impl Fn(&RecordBatch) -> bool,
    ) -> Result<Option<RecordBatch>, ReadError> {
        let mut next = from;
        loop {
            let batches = match piece {
                Piece::Segment(segment) => {
                    self.read_segment(segment, next, MIN_SEGMENT_READ as usize, true, source)
                        .await?
                        .batches
                }
                Piece::Chunk(chunk) => {
                    self.read_chunk(chunk, next, usize::MAX, true, source)
                        .await?
                        .batches
                }
            }
            .record_batches();
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

/// A read of `range` of `key` must have returned exactly its bytes.
fn check_length(key: &str, range: &std::ops::Range<u64>, len: usize) -> Result<(), ReadError> {
    if len as u64 == range.end - range.start {
        return Ok(());
    }
    Err(ReadError::integrity(
        key,
        format!("a read of bytes {range:?} returned {len} bytes"),
    ))
}

/// Whether a batch of `len` bytes may follow the `taken` bytes already read under `budget`.
/// The first batch of a read always may when `at_least_one`, as in Kafka, so that a batch
/// larger than the limit can still be consumed.
fn fits(taken: usize, len: usize, budget: usize, at_least_one: bool) -> bool {
    taken + len <= budget || at_least_one
}

/// A batch found in a read from its header alone: where it lies and which offsets it holds.
struct Span {
    start: usize,
    header: BatchHeader,
}

impl Span {
    fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.header.len
    }
}

/// The whole batches at the start of `parts`, in order, found from their headers; stops at
/// the first one that is not whole (a ranged read may end mid-batch).
fn batch_spans(parts: &Parts) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut start = 0;
    while start + RECORD_BATCH_OVERHEAD <= parts.len() {
        let header = parts.slice(start..start + RECORD_BATCH_OVERHEAD);
        let Some(header) = BatchHeader::parse(&header) else {
            break;
        };
        if start + header.len > parts.len() {
            break;
        }
        spans.push(Span { start, header });
        start += header.len;
    }
    spans
}

/// The batches of `spans`, which follow each other in `parts`, in the blocks that hold them.
fn take(parts: &Parts, spans: &[&Span]) -> ReadBatches {
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return ReadBatches::default();
    };
    let headers = spans.iter().map(|span| span.header).collect();
    ReadBatches::new(headers, parts.slice_parts(first.start..last.range().end))
}

/// Every batch of `spans`, which cover `parts`, each as one buffer (see
/// [`ReadBatches::record_batches`]).
fn take_all(parts: &Parts, spans: &[Span]) -> Vec<RecordBatch> {
    take(parts, &spans.iter().collect::<Vec<_>>()).record_batches()
}

/// The batches of a chunk read from its flush object (or any read of it), checked against
/// the chunk's metadata: exactly its bytes, whole batches only, offsets following each other
/// from its base offset to its last.
pub fn chunk_batches(chunk: &ChunkMeta, bytes: &Bytes) -> Result<Vec<RecordBatch>, ReadError> {
    let parts = Parts::from(bytes.clone());
    Ok(take_all(&parts, &chunk_spans(chunk, &parts)?))
}

/// Where the batches of a chunk lie in a read of it, checked as [`chunk_batches`] says.
fn chunk_spans(chunk: &ChunkMeta, parts: &Parts) -> Result<Vec<Span>, ReadError> {
    check_length(&chunk.object_key, &chunk.byte_range, parts.len())?;
    covering(
        &chunk.object_key,
        "chunk",
        chunk.base_offset..=chunk.last_offset,
        false,
        parts,
    )
}

/// The batches of a segment read whole from its log object, checked as a chunk's are.
pub fn segment_batches(
    segment: &SegmentMeta,
    bytes: &Bytes,
) -> Result<Vec<RecordBatch>, ReadError> {
    check_length(&segment.log_key, &(0..segment.size), bytes.len())?;
    let parts = Parts::from(bytes.clone());
    let spans = covering(
        &segment.log_key,
        "segment",
        segment.base_offset..=segment.last_offset,
        segment.cleaned,
        &parts,
    )?;
    Ok(take_all(&parts, &spans))
}

/// `parts` as whole batches whose offsets follow each other over exactly `offsets` (with
/// `gaps`, in order within them).
fn covering(
    key: &str,
    what: &str,
    offsets: std::ops::RangeInclusive<i64>,
    gaps: bool,
    parts: &Parts,
) -> Result<Vec<Span>, ReadError> {
    let (base, last) = (*offsets.start(), *offsets.end());
    let spans = batch_spans(parts);
    let whole = spans.last().map_or(0, |span| span.range().end);
    if whole != parts.len() {
        return Err(ReadError::integrity(
            key,
            format!(
                "the {what} of offsets {base}..={last} ends with {} bytes that are not a whole batch",
                parts.len() - whole
            ),
        ));
    }
    let mut next = base;
    for BatchHeader {
        base_offset,
        last_offset,
        ..
    } in spans.iter().map(|span| span.header)
    {
        let gap = gaps && base_offset > next;
        if (base_offset != next && !gap) || last_offset < base_offset {
            return Err(ReadError::integrity(
                key,
                format!(
                    "the {what} of offsets {base}..={last} has a batch at {base_offset}..={last_offset} where offset {next} should be"
                ),
            ));
        }
        next = last_offset + 1;
    }
    if next != last + 1 && !(gaps && next <= last) {
        return Err(ReadError::integrity(
            key,
            format!(
                "the {what} of offsets {base}..={last} ends at offset {}",
                next - 1
            ),
        ));
    }
    Ok(spans)
}

/// The first record of `batch` at or after `log_start_offset` whose timestamp satisfies
/// `matches` (ListOffsets only, never on the fetch path), reading its records in bounded
/// memory and at most `max_inflated_bytes` of them.
fn first_record(
    batch: &RecordBatch,
    log_start_offset: i64,
    matches: impl Fn(i64) -> bool,
    max_inflated_bytes: u64,
) -> Result<(i64, i64), ReadError> {
    // LogAppendTime batches carry their timestamp in the header only.
    let found = match batch.timestamp_type() {
        TimestampType::LogAppendTime => None,
        TimestampType::CreateTime => {
            find_record(batch, log_start_offset, matches, max_inflated_bytes).map_err(|e| {
                ReadError::Records {
                    offset: batch.base_offset(),
                    reason: e.to_string(),
                }
            })?
        }
    };
    // Batches whose max is only in the header: the batch start.
    Ok(found.unwrap_or((
        batch.base_offset().max(log_start_offset),
        batch.max_timestamp(),
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use segment_store::backends::memory::MemoryStore;
    use segment_store::simulate_failures::FaultyStore;
    use segment_store::store::ObjectStore;

    use proto_compat::batch::RecordBatch;

    use super::ReadError;
    use crate::background::compaction::compact;
    use crate::background::flusher::flush;
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::partition::Partition;
    use crate::test_support::{
        append, append_and_flush, broker, faulty_memory_store, record_batch, topic,
    };

    /// Four batches of ten records (timestamps 1000.., 2000.., 3000.., 4000..), each flushed
    /// as its own chunk, the first two compacted into a segment. Returns a second broker over
    /// the same store and coordinator, whose in-memory tail is empty, so reads hit storage.
    async fn stored_log() -> (Arc<Broker>, coordinator::TopicMeta, tempfile::TempDir) {
        stored_log_in(Arc::new(MemoryStore::new())).await
    }

    /// [`stored_log`] in a fault injector, and a reader of it.
    async fn stored_log_with_faults() -> (
        Arc<Broker>,
        Arc<FaultyStore>,
        Arc<Partition>,
        tempfile::TempDir,
    ) {
        let faulty = faulty_memory_store();
        let (broker, topic, dir) = stored_log_in(faulty.clone()).await;
        let partition = broker.partition(&topic, 0).unwrap();
        (broker, faulty, partition, dir)
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
        compact(&writer, &partition, &[], &first_two).await.unwrap();
        let log = writer.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!((log.segments.len(), log.chunks.len()), (1, 2));
        (reader_of(&writer, store, config), topic, dir)
    }

    /// A second broker over `writer`'s store and coordinator, whose in-memory tail is empty.
    fn reader_of(
        writer: &Broker,
        store: Arc<dyn ObjectStore>,
        config: BrokerConfig,
    ) -> Arc<Broker> {
        Arc::new(Broker::new(
            0,
            config,
            writer.coordinator.clone(),
            store,
            writer.metrics.clone(),
        ))
    }

    #[tokio::test]
    async fn a_read_of_part_of_a_chunk_returns_just_that_part_as_written_in_its_blocks() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (writer, _dir) = broker(store.clone(), BrokerConfig::default()).await;
        let topic = topic(&writer, "large", 1).await;
        let partition = writer.partition(&topic, 0).unwrap();
        // Three batches of about 800 KB in one chunk: they lie across the read cache's
        // 1 MiB blocks.
        const RECORDS: i64 = 45_000;
        let written: Vec<RecordBatch> = (0..3)
            .map(|i| record_batch(-1, -1, -1, RECORDS as i32, i * 1_000_000))
            .collect();
        for batch in &written {
            append(&writer, &partition, batch);
        }
        flush(&writer).await;
        let log = writer.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!(log.chunks.len(), 1);
        assert!(log.chunks[0].byte_range.end - log.chunks[0].byte_range.start > 2 << 20);
        let broker = reader_of(&writer, store, BrokerConfig::default());
        let partition = broker.partition(&topic, 0).unwrap();
        let reader = broker.log_reader();
        let end = 3 * RECORDS;
        // Byte 16 on (magic, CRC, the rest) is as the producer wrote it.
        let same = |read: &RecordBatch, i: usize| {
            read.base_offset() == i as i64 * RECORDS
                && read.as_bytes()[16..] == written[i].as_bytes()[16..]
        };
        for i in 0..3 {
            let from = i as i64 * RECORDS + 7;
            let read = reader
                .read(&partition, from, end, 1, true)
                .await
                .unwrap()
                .record_batches();
            assert!(read.len() == 1 && same(&read[0], i), "from {from}");
        }
        let two = written[1].len() + written[2].len();
        let read = reader
            .read(&partition, RECORDS, end, two, false)
            .await
            .unwrap()
            .record_batches();
        assert!(read.len() == 2 && same(&read[0], 1) && same(&read[1], 2));
        let read = reader
            .read(&partition, RECORDS, end, two - 1, false)
            .await
            .unwrap()
            .record_batches();
        assert!(read.len() == 1 && same(&read[0], 1));
        // Sent as the cache's blocks hold them: the last two batches, over three blocks,
        // come back as three pieces, not copied into one buffer.
        let read = reader
            .read(&partition, RECORDS, end, two, false)
            .await
            .unwrap();
        let expected: Vec<u8> = read
            .record_batches()
            .iter()
            .flat_map(|b| b.as_bytes().to_vec())
            .collect();
        let pieces = read.into_pieces();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), expected);
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
            .unwrap()
            .record_batches();
        let batch_len = all[0].len();
        assert_eq!(bases(all), [0, 10, 20, 30]);
        // A mid-batch offset returns the whole batch holding it.
        let from_chunk = reader
            .read(&partition, 25, 40, usize::MAX, true)
            .await
            .unwrap()
            .record_batches();
        assert_eq!(bases(from_chunk), [20, 30]);
        // Byte limits: one batch fits exactly; a limit below one batch still yields one
        // batch when at least one is asked for, and none otherwise.
        assert_eq!(
            bases(
                reader
                    .read(&partition, 0, 40, batch_len, false)
                    .await
                    .unwrap()
                    .record_batches()
            ),
            [0]
        );
        assert_eq!(
            bases(
                reader
                    .read(&partition, 15, 40, 1, true)
                    .await
                    .unwrap()
                    .record_batches()
            ),
            [10]
        );
        assert!(reader
            .read(&partition, 15, 40, 1, false)
            .await
            .unwrap()
            .record_batches()
            .is_empty());
        // Nothing at or past the high watermark.
        assert!(reader
            .read(&partition, 40, 40, usize::MAX, true)
            .await
            .unwrap()
            .record_batches()
            .is_empty());
        assert_eq!(
            bases(
                reader
                    .read(&partition, 0, 20, usize::MAX, true)
                    .await
                    .unwrap()
                    .record_batches()
            ),
            [0, 10]
        );
    }

    #[tokio::test]
    async fn a_store_outage_is_a_read_error_and_reads_resume_after_it() {
        let (broker, faulty, partition, _dir) = stored_log_with_faults().await;
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
            .unwrap()
            .record_batches();
        assert_eq!(batches.len(), 4);
    }

    #[tokio::test]
    async fn a_read_cut_short_is_counted_and_read_again_from_the_store() {
        let (broker, faulty, partition, _dir) = stored_log_with_faults().await;
        let reader = broker.log_reader();
        // From the third batch on: the chunks. The cache reads the first chunk's block short.
        faulty.cut_next_reads(1);
        let batches = reader
            .read(&partition, 20, 40, usize::MAX, true)
            .await
            .unwrap()
            .record_batches();
        let bases: Vec<i64> = batches.iter().map(|b| b.base_offset()).collect();
        assert_eq!(bases, [20, 30]);
        assert_eq!(broker.metrics.read_integrity_errors.get(), 1);
    }

    #[tokio::test]
    async fn a_chunk_missing_from_its_object_is_an_error_not_skipped_offsets() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, topic, _dir) = stored_log_in(store.clone()).await;
        let log = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        // The first chunk's object lost its bytes: the chunk after it is still readable.
        let chunk = &log.chunks[0];
        let whole = store.get(&chunk.object_key).await.unwrap();
        store
            .put(
                &chunk.object_key,
                whole.slice(..chunk.byte_range.start as usize + 10).into(),
            )
            .await
            .unwrap();
        let partition = broker.partition(&topic, 0).unwrap();
        let result = broker
            .log_reader()
            .read(&partition, 20, 40, usize::MAX, true)
            .await;
        assert!(
            matches!(result, Err(ReadError::Integrity { .. })),
            "{result:?}"
        );
        assert_eq!(broker.metrics.read_integrity_errors.get(), 1);
    }

    #[tokio::test]
    async fn timestamps_resolve_to_the_first_record_at_or_after_them() {
        let (broker, topic, _dir) = stored_log().await;
        let reader = broker.log_reader();
        // In the segment, through its time index.
        assert_eq!(
            reader
                .offset_for_timestamp(topic.topic_id, 0, 2_005)
                .await
                .unwrap(),
            Some((15, 2_005))
        );
        assert_eq!(
            reader
                .offset_for_timestamp(topic.topic_id, 0, 0)
                .await
                .unwrap(),
            Some((0, 1_000))
        );
        // Between batches: the next record.
        assert_eq!(
            reader
                .offset_for_timestamp(topic.topic_id, 0, 3_500)
                .await
                .unwrap(),
            Some((30, 4_000))
        );
        assert_eq!(
            reader
                .offset_for_timestamp(topic.topic_id, 0, 9_999)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            reader
                .offset_of_max_timestamp(topic.topic_id, 0)
                .await
                .unwrap(),
            Some((39, 4_009))
        );
    }
}
