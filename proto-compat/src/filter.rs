//! Kafka's record filtering for the LogCleaner (`MemoryRecords.filterTo`): the records of a
//! stored batch are read one by one, and the batch is written again with the records the
//! caller keeps, at their original offsets, in the batch's codec, with a valid CRC-32C.
//!
//! A batch is inflated whole (within `max_inflated_bytes`, the bound produce validated it
//! with), because the records kept are copied out of it.

use crate::batch::{with_retained_records, BatchError, Compression, RecordBatch};
use crate::recompress::{compress, inflate, Levels};
use crate::records::{read_varint, read_varlong};

/// The codec levels the cleaner compresses with: the codecs' defaults, as Kafka's cleaner.
const LEVELS: Levels = Levels {
    gzip: -1,
    lz4: 9,
    zstd: 3,
};

/// What a filter sees of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo<'a> {
    pub offset: i64,
    /// None for a record without key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub is_tombstone: bool,
}

/// What is left of a batch after filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record kept and nothing to change: the batch as it was.
    Unchanged,
    /// No record kept.
    Empty,
    Rewritten(RecordBatch),
}

/// One record of an inflated records section, with where its fields lie.
struct Parsed<'a> {
    info: RecordInfo<'a>,
    timestamp_delta: i64,
    /// The whole record, length prefix included.
    bytes: &'a [u8],
    /// The record from its offset delta to its end.
    after_timestamp: &'a [u8],
}

/// Calls `visit` with every record of `batch`, in offset order.
pub fn for_each_record(
    batch: &RecordBatch,
    max_inflated_bytes: u64,
    mut visit: impl FnMut(RecordInfo<'_>),
) -> Result<(), BatchError> {
    let inflated = inflate(batch.clone(), max_inflated_bytes)?;
    let mut rest = &inflated.as_bytes()[crate::batch::RECORD_BATCH_OVERHEAD..];
    while !rest.is_empty() {
        visit(parse(batch.base_offset(), &mut rest)?.info);
    }
    Ok(())
}

/// `batch` with only the records `retain` keeps. A batch that keeps a tombstone has a
/// delete horizon (KIP-534): the one it had, else `delete_horizon_ms` (the clean that first
/// keeps a tombstone sets it); its base timestamp is the horizon and the records' timestamp
/// deltas count from it, so every record's timestamp stays what it was. A batch that keeps
/// no tombstone has no horizon.
pub fn filter_batch(
    batch: &RecordBatch,
    max_inflated_bytes: u64,
    delete_horizon_ms: Option<i64>,
    mut retain: impl FnMut(&RecordInfo<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let inflated = inflate(batch.clone(), max_inflated_bytes)?;
    let mut rest = &inflated.as_bytes()[crate::batch::RECORD_BATCH_OVERHEAD..];
    let mut kept: Vec<Parsed<'_>> = Vec::new();
    let mut dropped = false;
    while !rest.is_empty() {
        let record = parse(batch.base_offset(), &mut rest)?;
        if retain(&record.info) {
            kept.push(record);
        } else {
            dropped = true;
        }
    }
    let Some(first) = kept.first() else {
        return Ok(Filtered::Empty);
    };
    let horizon = match kept.iter().any(|r| r.info.is_tombstone) {
        true => batch.delete_horizon_ms().or(delete_horizon_ms),
        false => None,
    };
    if !dropped && horizon == batch.delete_horizon_ms() {
        return Ok(Filtered::Unchanged);
    }
    let base_timestamp = match (horizon, batch.delete_horizon_ms()) {
        (Some(horizon), _) => horizon,
        // The horizon goes: the first record's timestamp is the base again, as Kafka writes.
        (None, Some(_)) => batch.base_timestamp().wrapping_add(first.timestamp_delta),
        (None, None) => batch.base_timestamp(),
    };
    let mut records = Vec::new();
    for record in &kept {
        if base_timestamp == batch.base_timestamp() {
            records.extend_from_slice(record.bytes);
            continue;
        }
        let timestamp = batch.base_timestamp().wrapping_add(record.timestamp_delta);
        let mut fields = vec![record.bytes[record_start(record.bytes)]];
        put_varlong(&mut fields, timestamp.wrapping_sub(base_timestamp));
        fields.extend_from_slice(record.after_timestamp);
        put_varlong(&mut records, fields.len() as i64);
        records.extend_from_slice(&fields);
    }
    let count = kept.len() as i32;
    let plain = with_retained_records(batch, count, base_timestamp, horizon.is_some(), &records);
    Ok(Filtered::Rewritten(match batch.compression() {
        Compression::None => plain,
        codec => compress(&plain, codec, LEVELS)?,
    }))
}

/// An empty batch in `batch`'s place (no records, uncompressed, no delete horizon), which
/// Kafka keeps for the last batch of an idempotent producer so that its last sequence stays
/// in the log.
pub fn empty_batch(batch: &RecordBatch) -> RecordBatch {
    with_retained_records(batch, 0, batch.max_timestamp(), false, &[])
}

/// Where a record's attributes byte lies: after its length varint.
fn record_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(0, |i| i + 1)
}

/// Reads the record at the start of `rest` (produce validated the batch's records, but a
/// stored batch is still checked: a malformed one fails the clean, never the process).
fn parse<'a>(base_offset: i64, rest: &mut &'a [u8]) -> Result<Parsed<'a>, BatchError> {
    let all: &'a [u8] = rest;
    let mut at = 0usize;
    let malformed = || BatchError::InvalidRecord("malformed record in a stored batch".into());
    let byte = |at: &mut usize| -> Result<u8, BatchError> {
        let b = *all.get(*at).ok_or_else(malformed)?;
        *at += 1;
        Ok(b)
    };
    let length = read_varint(|| byte(&mut at))?;
    let length = usize::try_from(length).map_err(|_| malformed())?;
    let end = at.checked_add(length).filter(|&end| end <= all.len());
    let end = end.ok_or_else(malformed)?;
    at += 1; // attributes
    let timestamp_delta = read_varlong(|| byte(&mut at))?;
    let after_timestamp_at = at;
    let offset_delta = read_varint(|| byte(&mut at))?;
    let key_length = read_varint(|| byte(&mut at))?;
    let key = match usize::try_from(key_length) {
        Ok(n) => {
            let key = all.get(at..at + n).ok_or_else(malformed)?;
            at += n;
            Some(key)
        }
        Err(_) => None,
    };
    let value_length = read_varint(|| byte(&mut at))?;
    if at > end {
        return Err(malformed());
    }
    *rest = &all[end..];
    Ok(Parsed {
        info: RecordInfo {
            offset: base_offset.wrapping_add(i64::from(offset_delta)),
            key,
            is_tombstone: value_length < 0,
        },
        timestamp_delta,
        bytes: &all[..end],
        after_timestamp: &all[after_timestamp_at..end],
    })
}

/// Kafka's ByteUtils.writeVarlong: zigzag, 7 bits a byte.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };

    use super::*;
    use crate::batch::read_batches;
    use crate::records::validate_records;

    const CODECS: [kp::Compression; 5] = [
        kp::Compression::None,
        kp::Compression::Gzip,
        kp::Compression::Snappy,
        kp::Compression::Lz4,
        kp::Compression::Zstd,
    ];

    /// Records at offsets 100.. with keys "k{i % 3}", timestamps 5_000 + i, every fourth a
    /// tombstone, from an idempotent producer.
    fn batch(n: i64, compression: kp::Compression) -> RecordBatch {
        let records: Vec<kp::Record> = (0..n)
            .map(|i| kp::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: kp::TimestampType::Creation,
                offset: 100 + i,
                sequence: 40 + i as i32,
                timestamp: 5_000 + i,
                key: Some(Bytes::from(format!("k{}", i % 3))),
                value: (i % 4 != 3).then(|| Bytes::from(format!("value {i}"))),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        read_batches(&buf.freeze()).next().unwrap()
    }

    fn decode(batch: &RecordBatch) -> Vec<kp::Record> {
        let mut bytes = batch.as_bytes().clone();
        RecordBatchDecoder::decode(&mut bytes).unwrap().records
    }

    #[test]
    fn kept_records_keep_their_offsets_fields_and_producer_in_every_codec() {
        for codec in CODECS {
            let original = batch(8, codec);
            let Filtered::Rewritten(cleaned) =
                filter_batch(&original, u64::MAX, None, |r| r.offset % 2 == 0).unwrap()
            else {
                panic!("{codec:?}: records were dropped");
            };
            cleaned.verify_crc().unwrap();
            assert_eq!(cleaned.compression() as i16, codec as i16);
            assert_eq!(cleaned.base_offset(), 100);
            assert_eq!(cleaned.last_offset(), 107, "the last offset stays");
            assert_eq!(cleaned.record_count(), 4);
            assert_eq!(cleaned.last_sequence(), original.last_sequence());
            assert_eq!((cleaned.producer_id(), cleaned.producer_epoch()), (7, 1));
            let before = decode(&original);
            let after = decode(&cleaned);
            let expected: Vec<_> = before.iter().filter(|r| r.offset % 2 == 0).collect();
            assert_eq!(after.len(), expected.len());
            for (a, e) in after.iter().zip(expected) {
                assert_eq!((a.offset, a.timestamp), (e.offset, e.timestamp));
                assert_eq!((&a.key, &a.value), (&e.key, &e.value));
            }
        }
    }

    #[test]
    fn a_batch_keeping_everything_is_unchanged_and_one_keeping_nothing_is_empty() {
        let original = batch(4, kp::Compression::Lz4);
        assert_eq!(
            filter_batch(&original, u64::MAX, None, |_| true).unwrap(),
            Filtered::Unchanged
        );
        assert_eq!(
            filter_batch(&original, u64::MAX, Some(9), |_| false).unwrap(),
            Filtered::Empty
        );
        let empty = empty_batch(&original);
        empty.verify_crc().unwrap();
        assert_eq!((empty.record_count(), empty.last_offset()), (0, 103));
        assert_eq!(empty.last_sequence(), original.last_sequence());
    }

    #[test]
    fn a_kept_tombstone_sets_the_delete_horizon_once_and_timestamps_stay() {
        for codec in CODECS {
            let original = batch(4, codec);
            let Filtered::Rewritten(marked) =
                filter_batch(&original, u64::MAX, Some(1_000_000), |_| true).unwrap()
            else {
                panic!("{codec:?}: the horizon was not set");
            };
            assert_eq!(marked.delete_horizon_ms(), Some(1_000_000));
            validate_records(&marked, u64::MAX, None, true).unwrap();
            let timestamps: Vec<i64> = decode(&marked).iter().map(|r| r.timestamp).collect();
            assert_eq!(timestamps, [5_000, 5_001, 5_002, 5_003]);
            // Already marked: a later clean leaves the horizon as it is.
            assert_eq!(
                filter_batch(&marked, u64::MAX, Some(2_000_000), |_| true).unwrap(),
                Filtered::Unchanged
            );
            // Without a tombstone kept, no horizon.
            let without =
                filter_batch(&original, u64::MAX, Some(1_000_000), |r| !r.is_tombstone).unwrap();
            assert!(
                matches!(&without, Filtered::Rewritten(b) if b.delete_horizon_ms().is_none()),
                "{without:?}"
            );
        }
    }

    #[test]
    fn a_batch_whose_tombstones_went_has_no_delete_horizon_and_keeps_its_timestamps() {
        for codec in CODECS {
            let Filtered::Rewritten(marked) =
                filter_batch(&batch(8, codec), u64::MAX, Some(1_000_000), |_| true).unwrap()
            else {
                panic!("{codec:?}: the horizon was not set");
            };
            let Filtered::Rewritten(cleaned) =
                filter_batch(&marked, u64::MAX, Some(2_000_000), |r| !r.is_tombstone).unwrap()
            else {
                panic!("{codec:?}: the tombstones did not go");
            };
            assert_eq!(cleaned.delete_horizon_ms(), None);
            assert_eq!(cleaned.base_timestamp(), 5_000);
            let timestamps: Vec<i64> = decode(&cleaned).iter().map(|r| r.timestamp).collect();
            assert_eq!(timestamps, [5_000, 5_001, 5_002, 5_004, 5_005, 5_006]);
            let empty = empty_batch(&marked);
            assert_eq!((empty.delete_horizon_ms(), empty.record_count()), (None, 0));
        }
    }

    #[test]
    fn records_are_visited_with_their_keys_and_tombstones() {
        let mut seen = Vec::new();
        for_each_record(&batch(4, kp::Compression::Zstd), u64::MAX, |r| {
            seen.push((r.offset, r.key.map(<[u8]>::to_vec), r.is_tombstone))
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (100, Some(b"k0".to_vec()), false),
                (101, Some(b"k1".to_vec()), false),
                (102, Some(b"k2".to_vec()), false),
                (103, Some(b"k0".to_vec()), true),
            ]
        );
    }
}
