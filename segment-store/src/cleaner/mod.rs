//! The LogCleaner's work on bytes: an [`OffsetMap`] of the latest offset of every key in the
//! dirty part of a compacted log, and the cleaning of batches against it, Kafka's rules:
//!
//! - a record whose key has a later record in the map goes, as do records without key;
//! - a tombstone (null value) is kept, and its batch gets a delete horizon of
//!   `now + delete.retention.ms` the first time a clean keeps it (KIP-534); a later clean
//!   after that horizon removes it;
//! - offsets stay: a batch keeps its base and last offset (and so its producer's last
//!   sequence), with gaps between the records left in it; a batch left with no record goes,
//!   unless it is the last batch of an idempotent producer, which stays as an empty batch;
//! - control batches and transactional batches are kept intact, and their records are not
//!   put in the map: until the cleaner knows which transactions aborted, a record of a
//!   transaction must not remove an earlier record of its key.

pub mod offset_map;

use std::collections::HashMap;

use proto_compat::batch::{BatchError, RecordBatch};
use proto_compat::filter::{empty_batch, filter_batch, for_each_record, Filtered};

pub use offset_map::OffsetMap;

/// What a clean is told besides the map.
#[derive(Debug, Clone)]
pub struct CleanRules {
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// What one batch may inflate to (`message.max.uncompressed.bytes`).
    pub max_inflated_bytes: u64,
    /// Producer id → last offset of the producer's last batch in the log.
    pub producer_last_offsets: HashMap<i64, i64>,
}

/// Counts of one clean.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// Puts the keyed records of `batches` (one dirty segment, in offset order) in `map`.
/// Returns false if the map filled up first: the segment is then only partly mapped.
pub fn map_batches(
    map: &mut OffsetMap,
    batches: &[RecordBatch],
    max_inflated_bytes: u64,
) -> Result<bool, BatchError> {
    for batch in batches.iter().filter(|b| !shielded(b)) {
        let mut full = false;
        for_each_record(batch, max_inflated_bytes, |record| {
            if let Some(key) = record.key {
                full = full || !map.put(key, record.offset);
            }
        })?;
        if full {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `batches` (in offset order) as the clean leaves them.
pub fn clean_batches(
    batches: Vec<RecordBatch>,
    map: &OffsetMap,
    rules: &CleanRules,
    stats: &mut CleanStats,
) -> Result<Vec<RecordBatch>, BatchError> {
    let mut out = Vec::with_capacity(batches.len());
    let horizon = rules.now_ms.saturating_add(rules.delete_retention_ms);
    for batch in batches {
        stats.bytes_read += batch.len() as u64;
        if shielded(&batch) {
            stats.bytes_written += batch.len() as u64;
            out.push(batch);
            continue;
        }
        let expired = batch.delete_horizon_ms().is_some_and(|h| h <= rules.now_ms);
        let (mut removed, mut tombstones) = (0, 0);
        let filtered = filter_batch(&batch, rules.max_inflated_bytes, Some(horizon), |record| {
            let superseded = match record.key {
                Some(key) => map.get(key).is_some_and(|latest| latest > record.offset),
                // Kafka's cleaner drops records without key from a compacted log.
                None => true,
            };
            let expired_tombstone = record.is_tombstone && expired;
            let keep = !(superseded || expired_tombstone);
            if !keep {
                removed += 1;
                tombstones += u64::from(record.is_tombstone);
            }
            keep
        })?;
        stats.records_removed += removed;
        stats.tombstones_removed += tombstones;
        let kept = match filtered {
            Filtered::Unchanged => Some(batch),
            Filtered::Rewritten(cleaned) => Some(cleaned),
            Filtered::Empty => {
                let last_of_producer = batch.producer_id() >= 0
                    && rules.producer_last_offsets.get(&batch.producer_id())
                        == Some(&batch.last_offset());
                last_of_producer.then(|| empty_batch(&batch))
            }
        };
        if let Some(kept) = kept {
            stats.bytes_written += kept.len() as u64;
            out.push(kept);
        }
    }
    Ok(out)
}

/// Batches the cleaner neither changes nor learns keys from (see the module's comment).
fn shielded(batch: &RecordBatch) -> bool {
    batch.is_control() || batch.is_transactional()
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use proto_compat::batch::read_batches;
    use proto_compat::kafka_protocol::indexmap::IndexMap;
    use proto_compat::kafka_protocol::records::{
        self as kp, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };

    use super::*;

    /// A batch at `base` of (key, value) records, None values being tombstones; with a
    /// producer id, idempotent; `transactional` sets the batch's transactional bit.
    fn batch(
        base: i64,
        records: &[(&str, Option<&str>)],
        producer_id: i64,
        transactional: bool,
    ) -> RecordBatch {
        let records: Vec<kp::Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| kp::Record {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: kp::TimestampType::Creation,
                offset: base + i as i64,
                // kafka-protocol puts records in one batch while offset - sequence holds.
                sequence: base as i32 + i as i32,
                timestamp: 1_000 + base + i as i64,
                key: Some(Bytes::from(key.to_string())),
                value: value.map(|v| Bytes::from(v.to_string())),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: kp::Compression::Snappy,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        read_batches(&buf.freeze()).next().unwrap()
    }

    /// (offset, key, value) of every record of `batches`.
    fn table(batches: &[RecordBatch]) -> Vec<(i64, String, Option<String>)> {
        batches
            .iter()
            .flat_map(|b| {
                let mut bytes = b.as_bytes().clone();
                RecordBatchDecoder::decode(&mut bytes).unwrap().records
            })
            .map(|r| {
                let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
                (r.offset, text(r.key.unwrap()), r.value.map(text))
            })
            .collect()
    }

    fn rules(now_ms: i64) -> CleanRules {
        CleanRules {
            now_ms,
            delete_retention_ms: 100,
            max_inflated_bytes: u64::MAX,
            producer_last_offsets: HashMap::new(),
        }
    }

    fn clean(batches: Vec<RecordBatch>, rules: &CleanRules) -> (Vec<RecordBatch>, CleanStats) {
        let mut map = OffsetMap::new(1 << 16);
        assert!(map_batches(&mut map, &batches, u64::MAX).unwrap());
        let mut stats = CleanStats::default();
        let out = clean_batches(batches, &map, rules, &mut stats).unwrap();
        (out, stats)
    }

    #[test]
    fn the_latest_record_of_each_key_stays_at_its_offset() {
        let batches = vec![
            batch(
                0,
                &[("a", Some("a0")), ("b", Some("b0")), ("c", Some("c0"))],
                -1,
                false,
            ),
            batch(3, &[("a", Some("a1")), ("b", Some("b1"))], -1, false),
            batch(5, &[("a", Some("a2"))], -1, false),
        ];
        let (out, stats) = clean(batches, &rules(0));
        assert_eq!(
            table(&out),
            [
                (2, "c".into(), Some("c0".into())),
                (4, "b".into(), Some("b1".into())),
                (5, "a".into(), Some("a2".into())),
            ]
        );
        // Batches keep their offsets: the first still ends at 2, the second starts at 3.
        let ranges: Vec<_> = out
            .iter()
            .map(|b| (b.base_offset(), b.last_offset()))
            .collect();
        assert_eq!(ranges, [(0, 2), (3, 4), (5, 5)]);
        assert!(out.iter().all(|b| b.verify_crc().is_ok()));
        assert_eq!(stats.records_removed, 3);
        assert!(stats.bytes_written < stats.bytes_read);
    }

    #[test]
    fn a_tombstone_stays_until_its_delete_horizon_then_goes() {
        let batches = vec![
            batch(0, &[("a", Some("a0")), ("b", Some("b0"))], -1, false),
            batch(2, &[("a", None)], -1, false),
        ];
        // The first clean keeps the tombstone, removes what it deletes, and sets the horizon.
        let (first, stats) = clean(batches, &rules(1_000));
        assert_eq!(
            table(&first),
            [(1, "b".into(), Some("b0".into())), (2, "a".into(), None)]
        );
        assert_eq!(first[1].delete_horizon_ms(), Some(1_100));
        assert_eq!(stats.tombstones_removed, 0);
        // Before the horizon it stays, after it the tombstone and its batch go.
        let (second, _) = clean(first.clone(), &rules(1_099));
        assert_eq!(table(&second), table(&first));
        let (third, stats) = clean(first, &rules(1_100));
        assert_eq!(table(&third), [(1, "b".into(), Some("b0".into()))]);
        assert_eq!(stats.tombstones_removed, 1);
        assert_eq!(third.len(), 1);
    }

    #[test]
    fn transactional_batches_stay_intact_and_shadow_nothing() {
        let plain = batch(0, &[("a", Some("a0")), ("b", Some("b0"))], -1, false);
        let txn = batch(2, &[("a", Some("a1")), ("a", Some("a2"))], 9, true);
        let (out, _) = clean(vec![plain.clone(), txn.clone()], &rules(0));
        assert_eq!(out, [plain, txn]);
    }

    #[test]
    fn an_emptied_batch_stays_only_as_the_last_of_its_idempotent_producer() {
        let batches = vec![
            batch(0, &[("a", Some("a0"))], 5, false),
            batch(1, &[("a", Some("a1"))], 6, false),
            batch(2, &[("a", Some("a2"))], -1, false),
        ];
        let mut rules = rules(0);
        // Producer 5's last batch is offset 0's; producer 6 wrote again later.
        rules.producer_last_offsets = HashMap::from([(5, 0), (6, 40)]);
        let (out, _) = clean(batches, &rules);
        let kept: Vec<_> = out
            .iter()
            .map(|b| (b.base_offset(), b.record_count(), b.last_sequence()))
            .collect();
        assert_eq!(kept, [(0, 0, 0), (2, 1, 2)]);

        // An emptied batch whose tombstone went keeps no delete horizon: nothing is due.
        let tombstone = batch(0, &[("a", None)], 5, false);
        let (marked, _) = clean(vec![tombstone], &rules);
        assert_eq!(marked[0].delete_horizon_ms(), Some(100));
        let (emptied, stats) = clean(
            marked,
            &CleanRules {
                now_ms: 100,
                ..rules.clone()
            },
        );
        assert_eq!(stats.tombstones_removed, 1);
        assert_eq!(
            (emptied[0].record_count(), emptied[0].delete_horizon_ms()),
            (0, None)
        );
    }

    #[test]
    fn a_full_map_stops_mapping_mid_segment() {
        let records: Vec<(String, Option<&str>)> =
            (0..20).map(|i| (format!("k{i}"), Some("v"))).collect();
        let records: Vec<(&str, Option<&str>)> =
            records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let segment = [
            batch(0, &records[..10], -1, false),
            batch(10, &records[10..], -1, false),
        ];
        // 10 slots: 9 keys fit.
        let mut map = OffsetMap::new(10 * offset_map::BYTES_PER_ENTRY);
        assert!(!map_batches(&mut map, &segment, u64::MAX).unwrap());
        assert_eq!(map.len(), 9);
    }
}
