//! Log segments: a partition's batches back to back (Kafka's LogSegment layout) with a
//! sparse offset index and a time index, built in memory and stored as three objects. The
//! log is the batches' own buffers, not a copy of them.

use bytes::Bytes;
use proto_compat::batch::RecordBatch;
use uuid::Uuid;

use crate::formats::offset_index::OffsetIndex;
use crate::formats::time_index::TimeIndex;
use crate::payload::Payload;

/// Kafka's RecordBatch.NO_TIMESTAMP: a batch without timestamps never enters the time index.
const NO_TIMESTAMP: i64 = -1;

/// Kafka's bounds on one segment: offsets relative to its base offset and byte positions in
/// its log are 32-bit signed integers in the index formats, so a segment rolls before either
/// would pass `i32::MAX`.
const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("the batch at offset {base_offset} does not follow offset {last_offset}")]
    OutOfOrder { base_offset: i64, last_offset: i64 },
    #[error(
        "the batch at offsets {base_offset}..={last_offset} ({len} bytes) does not fit the \
         segment at offset {segment_base} ({segment_bytes} bytes): a segment must roll first"
    )]
    DoesNotFit {
        base_offset: i64,
        last_offset: i64,
        len: usize,
        segment_base: i64,
        segment_bytes: u64,
    },
}

/// Builds one segment, with an index entry every `index_interval_bytes` of log (Kafka's
/// index.interval.bytes, 4096) and one for the first batch.
#[derive(Debug)]
pub struct SegmentWriter {
    base_offset: i64,
    index_interval_bytes: usize,
    log: Payload,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_last_entry: usize,
    last_offset: i64,
    /// The running max timestamp and the base offset of the batch that holds it.
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
}

impl SegmentWriter {
    pub fn new(base_offset: i64, index_interval_bytes: usize) -> Self {
        Self {
            base_offset,
            index_interval_bytes,
            log: Payload::new(),
            offset_index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_last_entry: 0,
            last_offset: base_offset - 1,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
        }
    }

    /// Whether `batch` can still go into this segment: its last offset relative to the base
    /// and the log's size after it stay within Kafka's 32-bit index fields.
    pub fn fits(&self, batch: &RecordBatch) -> bool {
        batch.last_offset().saturating_sub(self.base_offset) <= MAX_RELATIVE_OFFSET
            && self.size() + batch.len() as u64 <= MAX_SEGMENT_BYTES
    }

    /// Appends a batch as-is; refused if its offsets do not follow the previous batch's or
    /// it does not [fit](Self::fits).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), SegmentError> {
        let base_offset = batch.base_offset();
        if base_offset <= self.last_offset {
            return Err(SegmentError::OutOfOrder {
                base_offset,
                last_offset: self.last_offset,
            });
        }
        if !self.fits(batch) || base_offset < self.base_offset {
            return Err(SegmentError::DoesNotFit {
                base_offset,
                last_offset: batch.last_offset(),
                len: batch.len(),
                segment_base: self.base_offset,
                segment_bytes: self.size(),
            });
        }
        let position = self.log.len() as u32;
        if batch.max_timestamp() > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp();
            self.offset_of_max_timestamp = base_offset;
        }
        // Kafka's rule: index a batch once enough bytes went by since the last entry; the
        // time index then records the running max if it grew.
        if self.log.is_empty() || self.bytes_since_last_entry >= self.index_interval_bytes {
            self.offset_index.append(base_offset, position);
            self.append_time_entry();
            self.bytes_since_last_entry = 0;
        }
        self.log.push(batch.as_bytes().clone());
        self.bytes_since_last_entry += batch.len();
        self.last_offset = batch.last_offset();
        Ok(())
    }

    fn append_time_entry(&mut self) {
        if self.max_timestamp > NO_TIMESTAMP {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
    }

    pub fn size(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// For an empty segment, last_offset is base_offset - 1 and max_timestamp -1.
    pub fn finish(mut self) -> SegmentData {
        // As Kafka does when a segment rolls: the time index ends with the segment's max.
        self.append_time_entry();
        SegmentData {
            base_offset: self.base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            log: self.log,
            offset_index: self.offset_index.to_bytes(),
            time_index: self.time_index.to_bytes(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SegmentData {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub log: Payload,
    pub offset_index: Bytes,
    pub time_index: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKeys {
    pub log: String,
    pub offset_index: String,
    pub time_index: String,
}

/// The key space of segments: "topics/{topic_id}/{partition}/...".
pub const SEGMENT_PREFIX: &str = "topics/";

/// "topics/{topic_id}/{partition}/{base_offset:020}-{unique}.log" / ".index" / ".timeindex".
/// The random part keeps a rewritten segment from overwriting the one it replaces.
pub fn segment_keys(topic_id: Uuid, partition: i32, base_offset: i64) -> SegmentKeys {
    let stem = format!(
        "{SEGMENT_PREFIX}{topic_id}/{partition}/{base_offset:020}-{}",
        Uuid::new_v4().simple()
    );
    SegmentKeys {
        log: format!("{stem}.log"),
        offset_index: format!("{stem}.index"),
        time_index: format!("{stem}.timeindex"),
    }
}

/// The log position from which to scan for `target_offset`.
pub fn locate(offset_index: &OffsetIndex, target_offset: i64) -> u32 {
    offset_index.lookup(target_offset).1
}

#[cfg(test)]
mod tests {
    use proto_compat::batch::{crc32c, read_batches, validate_batches, RECORD_BATCH_OVERHEAD};

    use super::*;
    use crate::formats::time_index::TimeIndex;

    /// An uncompressed v2 batch of `records` records, `len` bytes in all, built by hand.
    fn batch(base_offset: i64, records: i32, max_timestamp: i64, len: usize) -> RecordBatch {
        assert!(len >= RECORD_BATCH_OVERHEAD + 7 * records as usize);
        let mut bytes = vec![0u8; len];
        let mut put = |at: usize, field: &[u8]| bytes[at..at + field.len()].copy_from_slice(field);
        put(0, &base_offset.to_be_bytes());
        put(8, &(len as i32 - 12).to_be_bytes());
        put(16, &[2]); // magic
        put(23, &(records - 1).to_be_bytes());
        put(27, &max_timestamp.to_be_bytes());
        put(35, &max_timestamp.to_be_bytes());
        put(43, &(-1i64).to_be_bytes()); // producer id
        put(51, &(-1i16).to_be_bytes());
        put(53, &(-1i32).to_be_bytes());
        put(57, &records.to_be_bytes());
        let crc = crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut batches = validate_batches(&Bytes::from(bytes)).unwrap();
        batches.pop().unwrap()
    }

    /// Six batches of 1000, 3000, 200, 5000, 100 and 100 bytes from offset 100, with
    /// timestamps going up and down.
    fn batches() -> Vec<RecordBatch> {
        vec![
            batch(100, 5, 1_000, 1_000),
            batch(105, 10, 5_000, 3_000),
            batch(115, 1, 3_000, 200),
            batch(116, 20, 4_000, 5_000),
            batch(136, 1, 4_500, 100),
            batch(137, 2, 9_000, 100),
        ]
    }

    fn write(batches: &[RecordBatch], index_interval_bytes: usize) -> SegmentData {
        let mut writer = SegmentWriter::new(100, index_interval_bytes);
        for batch in batches {
            writer.append(batch).unwrap();
        }
        assert_eq!(
            writer.size(),
            batches.iter().map(|b| b.len() as u64).sum::<u64>()
        );
        writer.finish()
    }

    #[test]
    fn the_log_is_the_batches_back_to_back() {
        let batches = batches();
        let segment = write(&batches, 4096);
        let expected: Vec<u8> = batches.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
        assert_eq!(segment.log.to_bytes(), expected);
        assert_eq!(
            (
                segment.base_offset,
                segment.last_offset,
                segment.max_timestamp
            ),
            (100, 138, 9_000)
        );
        assert_eq!(read_batches(&segment.log.to_bytes()).count(), 6);
    }

    #[test]
    fn the_offset_index_has_an_entry_every_interval_bytes() {
        let segment = write(&batches(), 4096);
        // Positions 0, 1000, 4000, 4200, 9200, 9300: 4200 and 9200 are the first batches
        // after 4096 bytes without an entry.
        let mut expected = OffsetIndex::new(100);
        expected.append(100, 0);
        expected.append(116, 4_200);
        expected.append(136, 9_200);
        assert_eq!(segment.offset_index, expected.to_bytes());

        let index = OffsetIndex::from_bytes(100, &segment.offset_index).unwrap();
        assert_eq!(locate(&index, 100), 0);
        assert_eq!(locate(&index, 115), 0);
        assert_eq!(locate(&index, 130), 4_200);
        assert_eq!(locate(&index, 138), 9_200);
    }

    #[test]
    fn the_time_index_follows_the_running_max_at_index_points() {
        let segment = write(&batches(), 4096);
        // At 100: max 1000. At 116: max 5000 (set by the batch at 105). At 136: still 5000.
        // On finish: the segment max 9000, set by the batch at 137.
        let mut expected = TimeIndex::new(100);
        expected.maybe_append(1_000, 100);
        expected.maybe_append(5_000, 105);
        expected.maybe_append(9_000, 137);
        assert_eq!(segment.time_index, expected.to_bytes());

        let index = TimeIndex::from_bytes(100, &segment.time_index).unwrap();
        assert_eq!(index.lookup(4_000), 100);
        assert_eq!(index.lookup(6_000), 105);
        assert_eq!(index.lookup(9_500), 137);
    }

    #[test]
    fn every_batch_is_indexed_with_a_zero_interval() {
        let batches = batches();
        let segment = write(&batches, 0);
        let index = OffsetIndex::from_bytes(100, &segment.offset_index).unwrap();
        assert_eq!(index.len(), batches.len());
        let mut position = 0;
        for batch in &batches {
            assert_eq!(
                index.lookup(batch.base_offset()),
                (batch.base_offset(), position)
            );
            position += batch.len() as u32;
        }
        let times = TimeIndex::from_bytes(100, &segment.time_index).unwrap();
        assert_eq!(times.len(), 3, "1000, 5000, 9000");
    }

    #[test]
    fn the_index_locates_every_offset() {
        let batches = batches();
        let segment = write(&batches, 1024);
        let index = OffsetIndex::from_bytes(100, &segment.offset_index).unwrap();
        for target in 100..=138 {
            let position = locate(&index, target) as usize;
            let found = read_batches(&segment.log.to_bytes().slice(position..))
                .find(|b| b.last_offset() >= target)
                .unwrap();
            assert!(found.base_offset() <= target, "offset {target}");
        }
    }

    #[test]
    fn batches_without_timestamps_stay_out_of_the_time_index() {
        let mut writer = SegmentWriter::new(0, 0);
        writer.append(&batch(0, 1, NO_TIMESTAMP, 100)).unwrap();
        writer.append(&batch(1, 1, NO_TIMESTAMP, 100)).unwrap();
        let segment = writer.finish();
        assert!(segment.time_index.is_empty());
        assert_eq!(segment.max_timestamp, NO_TIMESTAMP);
        assert_eq!(segment.offset_index.len(), 16);
    }

    #[test]
    fn an_empty_segment_ends_before_its_base() {
        let writer = SegmentWriter::new(42, 4096);
        assert!(writer.is_empty());
        let segment = writer.finish();
        assert_eq!(
            (segment.last_offset, segment.max_timestamp),
            (41, NO_TIMESTAMP)
        );
        assert!(
            segment.log.is_empty()
                && segment.offset_index.is_empty()
                && segment.time_index.is_empty()
        );
    }

    #[test]
    fn out_of_order_batches_are_refused() {
        let mut writer = SegmentWriter::new(100, 4096);
        writer.append(&batch(100, 5, 0, 100)).unwrap();
        assert_eq!(
            writer.append(&batch(104, 1, 0, 100)),
            Err(SegmentError::OutOfOrder {
                base_offset: 104,
                last_offset: 104
            })
        );
        assert_eq!(writer.size(), 100, "nothing of a refused batch is kept");
    }

    #[test]
    fn a_batch_whose_relative_offset_would_pass_i32_max_does_not_fit() {
        let mut writer = SegmentWriter::new(0, 4096);
        writer.append(&batch(0, 1, 0, 100)).unwrap();
        let last_fitting = batch(i64::from(i32::MAX), 1, 0, 100);
        let too_far = batch(i64::from(i32::MAX) + 1, 1, 0, 100);
        assert!(writer.fits(&last_fitting));
        assert!(!writer.fits(&too_far));
        assert!(matches!(
            writer.append(&too_far),
            Err(SegmentError::DoesNotFit { .. })
        ));
        writer.append(&last_fitting).unwrap();
        let segment = writer.finish();
        let index = OffsetIndex::from_bytes(0, &segment.offset_index).unwrap();
        assert_eq!(index.lookup(i64::from(i32::MAX)), (0, 0));
    }

    #[test]
    fn segment_keys_share_a_unique_stem() {
        let topic = Uuid::parse_str("0b6f2c1e-7d5a-4f7e-9c3b-2a1d0e9f8c7b").unwrap();
        let keys = segment_keys(topic, 3, 42);
        let stem = keys.log.strip_suffix(".log").unwrap();
        assert!(
            stem.starts_with("topics/0b6f2c1e-7d5a-4f7e-9c3b-2a1d0e9f8c7b/3/00000000000000000042-"),
            "{stem}"
        );
        assert_eq!(keys.offset_index, format!("{stem}.index"));
        assert_eq!(keys.time_index, format!("{stem}.timeindex"));
        assert_ne!(segment_keys(topic, 3, 42).log, keys.log);
    }
}
