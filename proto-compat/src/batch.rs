//! A zero-copy view of Kafka v2 record batches (magic 2): header fields are read in place
//! from the shared buffer and records are never decoded.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordsCount i32 @57, records @61. batchLength counts the bytes
//! after itself; the CRC-32C covers attributes to the end.
//!
//! Validation errors follow Kafka: broken bytes (truncation, lengths, CRC) are
//! CORRUPT_MESSAGE, well-formed batches Kafka refuses (magic, codec, counts) INVALID_RECORD.

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// The v2 header size: a batch with no records is this long.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

/// baseOffset + batchLength: the bytes not counted by batchLength.
const LOG_OVERHEAD: usize = 12;

const COMPRESSION_MASK: i16 = 0b111;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// KIP-534: the base timestamp holds the batch's delete horizon, the time after which the
/// LogCleaner may remove its tombstones (record timestamps stay base + delta).
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// base_sequence of a producer that is not idempotent.
const NO_SEQUENCE: i32 = -1;

/// The smallest possible record: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one varint byte each.
const MIN_RECORD_SIZE: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & COMPRESSION_MASK {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    fn attribute_bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
}

impl BatchError {
    /// The Kafka error code to answer the partition with.
    pub fn error_code(&self) -> i16 {
        match self {
            Self::Corrupt(_) => ResponseError::CorruptMessage.code(),
            Self::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
            Self::InvalidTimestamp(_) => ResponseError::InvalidTimestamp.code(),
        }
    }
}

/// A view of exactly one v2 record batch; clones share the buffer.
///
/// Only `validate_batches` and `read_batches` build one, and both guarantee at least
/// `RECORD_BATCH_OVERHEAD` bytes, so the accessors cannot go out of bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

// A batch is never empty (it always has its header), so `is_empty` would mean nothing.
#[allow(clippy::len_without_is_empty)]
impl RecordBatch {
    pub fn base_offset(&self) -> i64 {
        read_i64(&self.bytes, BASE_OFFSET)
    }
    pub fn batch_length(&self) -> i32 {
        read_i32(&self.bytes, BATCH_LENGTH)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        read_i32(&self.bytes, PARTITION_LEADER_EPOCH)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC] as i8
    }
    pub fn crc(&self) -> u32 {
        read_i32(&self.bytes, CRC) as u32
    }
    pub fn attributes(&self) -> i16 {
        read_i16(&self.bytes, ATTRIBUTES)
    }
    /// Codecs 5..=7 never get past validation; a stored batch that has one reads as None.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes()).unwrap_or(Compression::None)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    /// KIP-534's delete horizon, set by the LogCleaner on batches holding tombstones.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & DELETE_HORIZON_BIT != 0).then(|| self.base_timestamp())
    }
    /// The marker of an uncompressed control batch, from its first record's key; None for
    /// other batches or a key that is no marker's.
    pub fn control_type(&self) -> Option<ControlType> {
        if !self.is_control() || self.compression() != Compression::None {
            return None;
        }
        let buf = &self.bytes[..];
        let mut at = RECORD_BATCH_OVERHEAD;
        read_varint(buf, &mut at)?; // record length
        at += 1; // attributes
        read_varint(buf, &mut at)?; // timestamp delta
        read_varint(buf, &mut at)?; // offset delta
        if read_varint(buf, &mut at)? < 4 {
            return None;
        }
        match buf.get(at..at + 4)? {
            [0, 0, 0, 0] => Some(ControlType::Abort),
            [0, 0, 0, 1] => Some(ControlType::Commit),
            _ => None,
        }
    }
    pub fn last_offset_delta(&self) -> i32 {
        read_i32(&self.bytes, LAST_OFFSET_DELTA)
    }
    /// base_offset + last_offset_delta.
    pub fn last_offset(&self) -> i64 {
        last_offset(&self.bytes)
    }
    pub fn base_timestamp(&self) -> i64 {
        read_i64(&self.bytes, BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        read_i64(&self.bytes, MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        read_i64(&self.bytes, PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        read_i16(&self.bytes, PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        read_i32(&self.bytes, BASE_SEQUENCE)
    }
    /// Sequences wrap from i32::MAX to 0. Kafka's DefaultRecordBatch.lastSequence, with
    /// Java's wrapping int arithmetic.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let delta = self.last_offset_delta();
        if base > i32::MAX.wrapping_sub(delta) {
            delta
                .wrapping_sub(i32::MAX.wrapping_sub(base))
                .wrapping_sub(1)
        } else {
            base.wrapping_add(delta)
        }
    }
    pub fn record_count(&self) -> i32 {
        read_i32(&self.bytes, RECORDS_COUNT)
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Checks the CRC-32C again, e.g. on a batch read back from storage.
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let computed = crc32c(&self.bytes[ATTRIBUTES..]);
        if computed != self.crc() {
            return Err(BatchError::Corrupt(format!(
                "CRC mismatch: header says {:#010x}, content has {computed:#010x}",
                self.crc()
            )));
        }
        Ok(())
    }
}

/// Where a stored batch lies and which offsets it holds, from its header alone: for walking
/// stored batches without reading their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// The whole batch's length, header included.
    pub len: usize,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The records the batch holds (fewer than its offsets once the LogCleaner removed some).
    pub record_count: i32,
}

impl BatchHeader {
    /// The header that starts `bytes` (at least `RECORD_BATCH_OVERHEAD` of them), or None if
    /// they are too few or its length is below a batch's minimum.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < RECORD_BATCH_OVERHEAD {
            return None;
        }
        Some(Self {
            len: batch_len(bytes).ok()?,
            base_offset: read_i64(bytes, BASE_OFFSET),
            last_offset: last_offset(bytes),
            record_count: read_i32(bytes, RECORDS_COUNT),
        })
    }
}

/// Splits a Produce partition's `records` into batches and validates each without decoding
/// records: complete, magic 2, batch_length consistent, CRC-32C correct, codec known,
/// record_count >= 1 and last_offset_delta == record_count - 1, and for uncompressed
/// batches no more records than the payload can hold.
///
/// Empty input is InvalidRecord (Kafka: "produce request with no records").
pub fn validate_batches(records: &Bytes) -> Result<Vec<RecordBatch>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::InvalidRecord(
            "produce request with no records".to_owned(),
        ));
    }
    let mut batches = Vec::new();
    let mut rest = records.clone();
    while !rest.is_empty() {
        let len = complete_batch_len(&rest)?;
        let batch = RecordBatch {
            bytes: rest.split_to(len),
        };
        validate(&batch)?;
        batches.push(batch);
    }
    Ok(batches)
}

/// Iterates stored batches (validated on the way in); stops at the first incomplete one
/// (a ranged read may end mid-batch).
pub fn read_batches(bytes: &Bytes) -> impl Iterator<Item = RecordBatch> + '_ {
    let mut rest = bytes.clone();
    std::iter::from_fn(move || {
        let len = complete_batch_len(&rest).ok()?;
        Some(RecordBatch {
            bytes: rest.split_to(len),
        })
    })
}

/// In a private copy of one batch: not covered by the CRC, so no re-checksum.
///
/// The `set_*` functions panic if `batch` is shorter than `RECORD_BATCH_OVERHEAD`; they
/// are meant for batches that came out of `validate_batches`.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Not covered by the CRC, so no re-checksum.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// message.timestamp.type=LogAppendTime: sets the timestamp-type bit and max_timestamp
/// (consumers then read every record's timestamp as this one), re-CRCs.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = read_i16(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A copy of `batch`'s header over other `records` bytes compressed with `codec`: the codec
/// bits, the batch length and the CRC follow; everything else (offsets, timestamps,
/// producer, count) stays.
pub fn with_records(batch: &RecordBatch, codec: Compression, records: &[u8]) -> RecordBatch {
    let mut bytes = Vec::with_capacity(RECORD_BATCH_OVERHEAD + records.len());
    bytes.extend_from_slice(&batch.as_bytes()[..RECORD_BATCH_OVERHEAD]);
    bytes.extend_from_slice(records);
    let attributes = (read_i16(&bytes, ATTRIBUTES) & !COMPRESSION_MASK) | codec.attribute_bits();
    bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let length = (bytes.len() - LOG_OVERHEAD) as i32;
    bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&bytes[ATTRIBUTES..]);
    bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    RecordBatch {
        bytes: Bytes::from(bytes),
    }
}

/// What the LogCleaner keeps of `batch`: its header (offsets, last offset delta, producer
/// id, epoch and base sequence, max timestamp) over `records`, uncompressed, `record_count`
/// of them, whose timestamp deltas count from `base_timestamp`; with `delete_horizon` that
/// base timestamp is the batch's delete horizon, else the batch has none. Kafka keeps the
/// last offset delta so that the batch's last sequence stays what the producer sent.
pub fn with_retained_records(
    batch: &RecordBatch,
    record_count: i32,
    base_timestamp: i64,
    delete_horizon: bool,
    records: &[u8],
) -> RecordBatch {
    let mut header = batch.bytes[..RECORD_BATCH_OVERHEAD].to_vec();
    header[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&record_count.to_be_bytes());
    header[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    let mut attributes = read_i16(&header, ATTRIBUTES) & !DELETE_HORIZON_BIT;
    if delete_horizon {
        attributes |= DELETE_HORIZON_BIT;
    }
    header[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let header = RecordBatch {
        bytes: Bytes::from(header),
    };
    with_records(&header, Compression::None, records)
}
/// The kind of a transaction marker (Kafka's ControlRecordType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

/// A transaction marker as Kafka's coordinator writes it: a transactional control batch of
/// one record whose key is (version 0, type) and whose value is (version 0, coordinator
/// epoch). Its base offset and partition leader epoch are set when appended.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    control: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> RecordBatch {
    let kind: i16 = match control {
        ControlType::Abort => 0,
        ControlType::Commit => 1,
    };
    let mut key = [0u8; 4];
    key[2..].copy_from_slice(&kind.to_be_bytes());
    let mut value = [0u8; 6];
    value[2..].copy_from_slice(&coordinator_epoch.to_be_bytes());
    // attributes, timestamp delta, offset delta, key length, key, value length, value, headers
    let mut record = vec![0u8, 0, 0, zigzag(key.len())];
    record.extend_from_slice(&key);
    record.push(zigzag(value.len()));
    record.extend_from_slice(&value);
    record.push(0);
    let mut bytes = vec![0u8; RECORD_BATCH_OVERHEAD];
    bytes.push(zigzag(record.len()));
    bytes.extend_from_slice(&record);
    let header = BatchHeaderFields {
        attributes: TRANSACTIONAL_BIT | CONTROL_BIT,
        record_count: 1,
        timestamp,
        producer_id,
        producer_epoch,
    };
    seal_batch(&mut bytes, &header);
    RecordBatch {
        bytes: Bytes::from(bytes),
    }
}

/// What [`seal_batch`] writes into a batch's header.
pub struct BatchHeaderFields {
    pub attributes: i16,
    pub record_count: i32,
    /// The batch's base and max timestamp.
    pub timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// Writes the header of `bytes`, a batch laid out as RECORD_BATCH_OVERHEAD header bytes then
/// `fields.record_count` records with offset deltas from 0, and its CRC: magic 2, the batch
/// length, no partition leader epoch and no sequence.
pub fn seal_batch(bytes: &mut [u8], fields: &BatchHeaderFields) {
    let length = (bytes.len() - LOG_OVERHEAD) as i32;
    bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    bytes[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&(-1i32).to_be_bytes());
    bytes[MAGIC] = 2;
    bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&fields.attributes.to_be_bytes());
    let last_offset_delta = fields.record_count - 1;
    bytes[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    bytes[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&fields.timestamp.to_be_bytes());
    bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&fields.timestamp.to_be_bytes());
    bytes[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&fields.producer_id.to_be_bytes());
    bytes[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&fields.producer_epoch.to_be_bytes());
    bytes[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&NO_SEQUENCE.to_be_bytes());
    bytes[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&fields.record_count.to_be_bytes());
    let crc = crc32c(&bytes[ATTRIBUTES..]);
    bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The zigzag varint of a small length (below 64: one byte).
fn zigzag(len: usize) -> u8 {
    debug_assert!(len < 64);
    (len as u8) << 1
}

/// Reads a zigzag varint at `*at`, advancing it.
fn read_varint(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

/// CRC-32C (Castagnoli), as Kafka uses for v2 batches; crc-fast's hardware-accelerated
/// Crc32Iscsi. (crc32fast computes the IEEE polynomial, which is the wrong CRC here.)
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// The total size of the batch at the start of `buf`, if it is entirely there.
fn complete_batch_len(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < LOG_OVERHEAD {
        return Err(BatchError::Corrupt(format!(
            "truncated: {} bytes left, a batch header needs {RECORD_BATCH_OVERHEAD}",
            buf.len()
        )));
    }
    let len = batch_len(buf)?;
    if len > buf.len() {
        return Err(BatchError::Corrupt(format!(
            "truncated: batch needs {len} bytes, {} left",
            buf.len()
        )));
    }
    Ok(len)
}

/// The whole length of the batch whose header starts `buf` (at least `LOG_OVERHEAD` bytes).
fn batch_len(buf: &[u8]) -> Result<usize, BatchError> {
    let batch_length = read_i32(buf, BATCH_LENGTH);
    usize::try_from(batch_length)
        .ok()
        .map(|l| l + LOG_OVERHEAD)
        .filter(|&len| len >= RECORD_BATCH_OVERHEAD)
        .ok_or_else(|| {
            BatchError::Corrupt(format!(
                "batch length {batch_length} is below the minimum {}",
                RECORD_BATCH_OVERHEAD - LOG_OVERHEAD
            ))
        })
}

/// base_offset + last_offset_delta of the batch whose header starts `buf`.
fn last_offset(buf: &[u8]) -> i64 {
    read_i64(buf, BASE_OFFSET).wrapping_add(i64::from(read_i32(buf, LAST_OFFSET_DELTA)))
}

/// The checks after framing; the order matters: the CRC's position depends on the magic.
fn validate(batch: &RecordBatch) -> Result<(), BatchError> {
    if batch.magic() != 2 {
        return Err(BatchError::InvalidRecord(format!(
            "magic {} is not 2: only v2 record batches are accepted",
            batch.magic()
        )));
    }
    batch.verify_crc()?;
    let Some(compression) = Compression::from_attributes(batch.attributes()) else {
        return Err(BatchError::InvalidRecord(format!(
            "unknown compression codec {}",
            batch.attributes() & COMPRESSION_MASK
        )));
    };
    let count = batch.record_count();
    if count < 1 {
        return Err(BatchError::InvalidRecord(format!(
            "record count {count} is below 1"
        )));
    }
    if batch.last_offset_delta() != count - 1 {
        return Err(BatchError::InvalidRecord(format!(
            "last offset delta {} does not match record count {count}",
            batch.last_offset_delta()
        )));
    }
    let payload = batch.len() - RECORD_BATCH_OVERHEAD;
    if compression == Compression::None && count as usize > payload / MIN_RECORD_SIZE {
        return Err(BatchError::InvalidRecord(format!(
            "{count} records cannot fit in {payload} bytes"
        )));
    }
    Ok(())
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::records::{
        self as kp, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };

    use super::*;

    #[test]
    fn a_control_batch_is_kafkas_transaction_marker() {
        for (control, kind) in [(ControlType::Abort, 0u8), (ControlType::Commit, 1)] {
            let marker = control_batch(42, 3, control, 5, 1_700_000_000_000);
            let batches = validate_batches(marker.as_bytes()).unwrap();
            assert_eq!(batches.len(), 1);
            let batch = &batches[0];
            assert!(batch.is_control() && batch.is_transactional());
            assert_eq!((batch.producer_id(), batch.producer_epoch()), (42, 3));
            assert_eq!(batch.control_type(), Some(control));
            crate::records::validate_records(batch, 1 << 20, None, false).unwrap();
            let mut bytes = marker.as_bytes().clone();
            let decoded = RecordBatchDecoder::decode(&mut bytes).unwrap();
            let record = &decoded.records[0];
            assert!(record.control && record.transactional);
            assert_eq!(record.key.as_deref(), Some(&[0u8, 0, 0, kind][..]));
            assert_eq!(record.value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 5][..]));
        }
        assert_eq!(
            read_batches(&Bytes::from(vec![0u8; 0]))
                .next()
                .map(|b| b.control_type()),
            None
        );
    }

    const CODECS: [(kp::Compression, Compression); 5] = [
        (kp::Compression::None, Compression::None),
        (kp::Compression::Gzip, Compression::Gzip),
        (kp::Compression::Snappy, Compression::Snappy),
        (kp::Compression::Lz4, Compression::Lz4),
        (kp::Compression::Zstd, Compression::Zstd),
    ];

    fn record(offset: i64, sequence: i32, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id: 1234,
            producer_epoch: 3,
            timestamp_type: kp::TimestampType::Creation,
            offset,
            sequence,
            timestamp,
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from(vec![b'v'; 100])),
            headers: Default::default(),
        }
    }

    /// One batch of `n` records at offsets 0..n, sequences 100.., timestamps 1000, 1010, ...
    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| record(i, 100 + i as i32, 1000 + 10 * i))
            .collect()
    }

    fn encode(records: &[Record], compression: kp::Compression) -> Bytes {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
        buf.freeze()
    }

    fn batch(n: i64) -> Bytes {
        encode(&records(n), kp::Compression::None)
    }

    /// Overwrites bytes of a batch and, like a careful attacker, fixes the CRC up again.
    fn patch_and_recrc(batch: &Bytes, at: usize, value: &[u8]) -> Bytes {
        let mut bytes = batch.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        let crc = crc32c(&bytes[ATTRIBUTES..]);
        bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(bytes)
    }

    fn corrupt(result: Result<Vec<RecordBatch>, BatchError>) -> String {
        match result {
            Err(e @ BatchError::Corrupt(_)) => {
                assert_eq!(e.error_code(), 2);
                e.to_string()
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    fn invalid(result: Result<Vec<RecordBatch>, BatchError>) -> String {
        match result {
            Err(e @ BatchError::InvalidRecord(_)) => {
                assert_eq!(e.error_code(), 87);
                e.to_string()
            }
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn accessors_read_what_kafka_protocol_wrote_for_every_codec() {
        for (kp_codec, codec) in CODECS {
            let bytes = encode(&records(5), kp_codec);
            let batches = validate_batches(&bytes).unwrap();
            assert_eq!(batches.len(), 1, "{codec:?}");
            let b = &batches[0];
            assert_eq!(b.base_offset(), 0);
            assert_eq!(b.batch_length() as usize, bytes.len() - 12);
            assert_eq!(b.partition_leader_epoch(), 7);
            assert_eq!(b.magic(), 2);
            assert_eq!(b.crc(), crc32c(&bytes[21..]));
            assert_eq!(b.attributes() & 0b111, kp_codec as i16);
            assert_eq!(b.compression(), codec);
            assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
            assert!(!b.is_transactional());
            assert!(!b.is_control());
            assert_eq!(b.last_offset_delta(), 4);
            assert_eq!(b.last_offset(), 4);
            assert_eq!(b.base_timestamp(), 1000);
            assert_eq!(b.max_timestamp(), 1040);
            assert_eq!(b.producer_id(), 1234);
            assert_eq!(b.producer_epoch(), 3);
            assert_eq!(b.base_sequence(), 100);
            assert_eq!(b.last_sequence(), 104);
            assert_eq!(b.record_count(), 5);
            assert_eq!(b.len(), bytes.len());
            assert_eq!(b.as_bytes(), &bytes);
            assert_eq!(b.clone().into_bytes(), bytes);

            // The same header through kafka-protocol's own decoder.
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].record_count, b.record_count());
            assert_eq!(info[0].base_sequence, b.base_sequence());
            assert_eq!(info[0].compression, kp_codec);
        }
    }

    #[test]
    fn batches_are_views_of_the_input() {
        let bytes = batch(2);
        let batches = validate_batches(&bytes).unwrap();
        assert_eq!(batches[0].as_bytes().as_ptr(), bytes.as_ptr());
    }

    #[test]
    fn transactional_and_control_bits() {
        let mut rs = records(1);
        rs[0].transactional = true;
        rs[0].control = true;
        let bytes = encode(&rs, kp::Compression::None);
        let b = &validate_batches(&bytes).unwrap()[0];
        assert!(b.is_transactional());
        assert!(b.is_control());
        assert_eq!(b.compression(), Compression::None);
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let rs: Vec<Record> = (0..3)
            .map(|i| record(i, (i32::MAX - 1).wrapping_add(i as i32), 0))
            .collect();
        let bytes = encode(&rs, kp::Compression::None);
        let b = &validate_batches(&bytes).unwrap()[0];
        assert_eq!(b.base_sequence(), i32::MAX - 1);
        // MAX-1, MAX, then 0.
        assert_eq!(b.last_sequence(), 0);

        let no_sequence = patch_and_recrc(&batch(3), BASE_SEQUENCE, &(-1i32).to_be_bytes());
        let b = &validate_batches(&no_sequence).unwrap()[0];
        assert_eq!(b.last_sequence(), -1);
    }

    #[test]
    fn several_batches_in_one_records_blob() {
        let mut blob = BytesMut::new();
        for (base, n) in [(0, 3), (3, 1), (4, 10)] {
            let mut b = batch(n).to_vec();
            set_base_offset(&mut b, base);
            blob.extend_from_slice(&b);
        }
        let blob = blob.freeze();
        let batches = validate_batches(&blob).unwrap();
        let ranges: Vec<(i64, i64, i32)> = batches
            .iter()
            .map(|b| (b.base_offset(), b.last_offset(), b.record_count()))
            .collect();
        assert_eq!(ranges, [(0, 2, 3), (3, 3, 1), (4, 13, 10)]);
        assert_eq!(
            batches.iter().map(RecordBatch::len).sum::<usize>(),
            blob.len()
        );
        assert_eq!(read_batches(&blob).collect::<Vec<_>>(), batches);
    }

    #[test]
    fn a_header_alone_says_where_its_batch_lies() {
        let mut bytes = batch(10).to_vec();
        set_base_offset(&mut bytes, 40);
        let header = BatchHeader::parse(&bytes[..RECORD_BATCH_OVERHEAD]).unwrap();
        assert_eq!(
            header,
            BatchHeader {
                len: bytes.len(),
                base_offset: 40,
                last_offset: 49,
                record_count: 10,
            }
        );
        assert_eq!(
            BatchHeader::parse(&bytes[..RECORD_BATCH_OVERHEAD - 1]),
            None
        );
        bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&bytes), None);
    }

    #[test]
    fn a_bad_batch_after_good_ones_fails_the_whole_input() {
        let mut blob = batch(2).to_vec();
        let mut bad = batch(2).to_vec();
        bad[RECORD_BATCH_OVERHEAD] ^= 1;
        blob.extend_from_slice(&bad);
        corrupt(validate_batches(&Bytes::from(blob)));
    }

    #[test]
    fn empty_input_is_invalid() {
        let msg = invalid(validate_batches(&Bytes::new()));
        assert!(msg.contains("no records"), "{msg}");
    }

    #[test]
    fn bad_crc_is_corrupt() {
        let good = batch(3);
        let mut in_payload = good.to_vec();
        *in_payload.last_mut().unwrap() ^= 0x80;
        let msg = corrupt(validate_batches(&Bytes::from(in_payload)));
        assert!(msg.contains("CRC"), "{msg}");

        let mut in_crc = good.to_vec();
        in_crc[CRC] ^= 1;
        corrupt(validate_batches(&Bytes::from(in_crc)));

        // Attributes are covered by the CRC too.
        let mut in_attributes = good.to_vec();
        in_attributes[ATTRIBUTES + 1] |= 0b1000;
        corrupt(validate_batches(&Bytes::from(in_attributes)));
    }

    #[test]
    fn wrong_magic_is_invalid() {
        for magic in [0u8, 1, 3, 0xff] {
            let mut bytes = batch(1).to_vec();
            bytes[MAGIC] = magic;
            let msg = invalid(validate_batches(&Bytes::from(bytes)));
            assert!(msg.contains("magic"), "{msg}");
        }
    }

    #[test]
    fn truncated_input_is_corrupt() {
        let good = batch(3);
        for len in [1, 11, 12, 60, 61, good.len() - 1] {
            let msg = corrupt(validate_batches(&good.slice(..len)));
            assert!(msg.contains("truncated"), "cut at {len}: {msg}");
        }
    }

    #[test]
    fn batch_length_mismatch_is_corrupt() {
        let good = batch(3);
        let claimed = |length: i32| {
            let mut bytes = good.to_vec();
            bytes[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
            validate_batches(&Bytes::from(bytes))
        };
        let actual = good.len() as i32 - 12;
        // Below the header size, or negative: cannot even be framed.
        for length in [-1, 0, 48, i32::MIN] {
            let msg = corrupt(claimed(length));
            assert!(msg.contains("below the minimum"), "{length}: {msg}");
        }
        // Longer than the bytes present.
        assert!(corrupt(claimed(actual + 1)).contains("truncated"));
        assert!(corrupt(claimed(i32::MAX)).contains("truncated"));
        // Shorter: the CRC no longer matches, and the leftover does not frame.
        corrupt(claimed(actual - 1));
    }

    #[test]
    fn unknown_codecs_are_invalid() {
        for codec in 5i16..=7 {
            let bytes = patch_and_recrc(&batch(2), ATTRIBUTES, &codec.to_be_bytes());
            let msg = invalid(validate_batches(&bytes));
            assert!(msg.contains(&format!("codec {codec}")), "{msg}");
        }
    }

    #[test]
    fn bad_record_counts_are_invalid() {
        let good = batch(3);
        for count in [0i32, -1, i32::MIN] {
            let bytes = patch_and_recrc(&good, RECORDS_COUNT, &count.to_be_bytes());
            invalid(validate_batches(&bytes));
        }
        // Count that disagrees with the offset range.
        let bytes = patch_and_recrc(&good, RECORDS_COUNT, &4i32.to_be_bytes());
        assert!(invalid(validate_batches(&bytes)).contains("last offset delta"));
        let bytes = patch_and_recrc(&good, LAST_OFFSET_DELTA, &1i32.to_be_bytes());
        assert!(invalid(validate_batches(&bytes)).contains("last offset delta"));

        // Consistent count and delta, but more records than the payload can hold.
        let payload = good.len() - RECORD_BATCH_OVERHEAD;
        let count = (payload / MIN_RECORD_SIZE + 1) as i32;
        let bytes = patch_and_recrc(&good, RECORDS_COUNT, &count.to_be_bytes());
        let bytes = patch_and_recrc(&bytes, LAST_OFFSET_DELTA, &(count - 1).to_be_bytes());
        assert!(invalid(validate_batches(&bytes)).contains("cannot fit"));
    }

    #[test]
    fn compressed_batches_may_claim_more_records_than_raw_bytes() {
        // 50 identical records compress far below 7 bytes each.
        let mut rs = records(50);
        for r in &mut rs {
            r.value = Some(Bytes::from_static(b"x"));
            r.key = None;
        }
        let bytes = encode(&rs, kp::Compression::Zstd);
        let b = &validate_batches(&bytes).unwrap()[0];
        assert_eq!(b.record_count(), 50);
    }

    #[test]
    fn set_base_offset_keeps_the_crc_valid() {
        let mut bytes = batch(3).to_vec();
        set_base_offset(&mut bytes, 1_000_000);
        let b = &validate_batches(&Bytes::from(bytes)).unwrap()[0];
        assert_eq!(b.base_offset(), 1_000_000);
        assert_eq!(b.last_offset(), 1_000_002);
    }

    #[test]
    fn set_partition_leader_epoch_keeps_the_crc_valid() {
        let mut bytes = batch(3).to_vec();
        set_partition_leader_epoch(&mut bytes, 42);
        let b = &validate_batches(&Bytes::from(bytes)).unwrap()[0];
        assert_eq!(b.partition_leader_epoch(), 42);
    }

    #[test]
    fn set_log_append_time_sets_the_bit_and_recrcs() {
        for (kp_codec, codec) in CODECS {
            let original = encode(&records(3), kp_codec);
            let mut bytes = original.to_vec();
            set_log_append_time(&mut bytes, 9_999);
            let bytes = Bytes::from(bytes);
            let b = &validate_batches(&bytes).unwrap()[0];
            assert_eq!(b.timestamp_type(), TimestampType::LogAppendTime);
            assert_eq!(b.max_timestamp(), 9_999);
            assert_eq!(b.base_timestamp(), 1000);
            assert_eq!(b.compression(), codec);
            assert_eq!(b.crc(), crc32c(&bytes[ATTRIBUTES..]));
            assert_ne!(b.crc(), validate_batches(&original).unwrap()[0].crc());
            let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
            assert_eq!(info[0].timestamp_type, kp::TimestampType::LogAppend);
        }
    }

    #[test]
    fn read_batches_stops_at_a_partial_trailing_batch() {
        let mut blob = BytesMut::new();
        blob.extend_from_slice(&batch(2));
        blob.extend_from_slice(&batch(3));
        let whole = blob.len();
        blob.extend_from_slice(&batch(4));
        let blob = blob.freeze();
        let counts = |bytes: &Bytes| {
            read_batches(bytes)
                .map(|b| b.record_count())
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&blob), [2, 3, 4]);
        for cut in [whole + 5, whole + 12, whole + 61, blob.len() - 1] {
            assert_eq!(counts(&blob.slice(..cut)), [2, 3], "cut at {cut}");
        }
        assert!(counts(&blob.slice(..10)).is_empty());
        assert!(counts(&Bytes::new()).is_empty());
    }
}
