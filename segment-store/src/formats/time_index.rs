//! Kafka's time index of a log segment: entries of (timestamp: i64, offset relative to the
//! segment's base offset: u32), big-endian, 12 bytes each. The timestamps are the running
//! max timestamp of the segment, so they increase; the offsets do not decrease.

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::IndexError;

const ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    /// (timestamp, relative offset)
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Appends only if `timestamp` is greater than the last entry's.
    ///
    /// Panics if `offset` is before the last entry's or outside the segment's u32 range.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        if self
            .entries
            .last()
            .is_some_and(|&(last, _)| timestamp <= last)
        {
            return;
        }
        let relative = offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or_else(|| {
                panic!(
                    "offset {offset} is outside the segment at {}",
                    self.base_offset
                )
            });
        if let Some(&(_, last_relative)) = self.entries.last() {
            assert!(
                relative >= last_relative,
                "time index offset {offset} is before the last entry's"
            );
        }
        self.entries.push((timestamp, relative));
    }

    /// Offset from which to scan for the first batch with max_timestamp >= target:
    /// the offset of the last entry whose timestamp < target, else base_offset.
    pub fn lookup(&self, target_timestamp: i64) -> i64 {
        let below = self
            .entries
            .partition_point(|&(timestamp, _)| timestamp < target_timestamp);
        match below.checked_sub(1) {
            Some(i) => self.base_offset + i64::from(self.entries[i].1),
            None => self.base_offset,
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(self.entries.len() * ENTRY_SIZE);
        for &(timestamp, relative) in &self.entries {
            bytes.put_i64(timestamp);
            bytes.put_u32(relative);
        }
        bytes.freeze()
    }

    pub fn from_bytes(base_offset: i64, bytes: &[u8]) -> Result<Self, IndexError> {
        if !bytes.len().is_multiple_of(ENTRY_SIZE) {
            return Err(IndexError::BadLength {
                len: bytes.len(),
                entry_size: ENTRY_SIZE,
            });
        }
        let entries: Vec<(i64, u32)> = bytes
            .chunks_exact(ENTRY_SIZE)
            .map(|entry| {
                let (timestamp, relative) = entry.split_at(8);
                (
                    i64::from_be_bytes(timestamp.try_into().expect("8 bytes")),
                    u32::from_be_bytes(relative.try_into().expect("4 bytes")),
                )
            })
            .collect();
        if let Some(i) = entries
            .windows(2)
            .position(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1)
        {
            return Err(IndexError::NotMonotonic { entry: i + 1 });
        }
        Ok(Self {
            base_offset,
            entries,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> TimeIndex {
        let mut index = TimeIndex::new(1000);
        index.maybe_append(5_000, 1000);
        index.maybe_append(7_000, 1010);
        index.maybe_append(9_000, 1030);
        index
    }

    #[test]
    fn an_empty_index_scans_from_the_segment_start() {
        let index = TimeIndex::new(1000);
        assert!(index.is_empty());
        assert_eq!(index.lookup(0), 1000);
        assert_eq!(index.lookup(i64::MAX), 1000);
    }

    #[test]
    fn lookup_starts_at_the_last_entry_below_the_target() {
        let index = index();
        assert_eq!(index.lookup(-1), 1000);
        assert_eq!(index.lookup(4_999), 1000, "before every entry");
        assert_eq!(index.lookup(5_000), 1000, "exact hit on the first entry");
        assert_eq!(index.lookup(5_001), 1000);
        assert_eq!(
            index.lookup(7_000),
            1000,
            "exact hit: the batch may be the one at 1010"
        );
        assert_eq!(index.lookup(7_001), 1010, "between entries");
        assert_eq!(index.lookup(9_000), 1010);
        assert_eq!(index.lookup(9_001), 1030, "past the last entry");
    }

    #[test]
    fn only_greater_timestamps_are_appended() {
        let mut index = index();
        index.maybe_append(9_000, 1040);
        index.maybe_append(8_000, 1050);
        assert_eq!(index.len(), 3);
        index.maybe_append(9_500, 1050);
        assert_eq!(index.len(), 4);
        assert_eq!(index.lookup(10_000), 1050);
    }

    #[test]
    fn bytes_are_kafkas_big_endian_entries() {
        let mut index = TimeIndex::new(1000);
        index.maybe_append(0x0102_0304_0506, 1000 + 0x0a0b);
        let bytes = index.to_bytes();
        assert_eq!(&bytes[..], [0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0x0a, 0x0b]);
        let index = self::index();
        assert_eq!(
            TimeIndex::from_bytes(1000, &index.to_bytes()).unwrap(),
            index
        );
        assert!(TimeIndex::from_bytes(0, &[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        let bytes = index().to_bytes();
        assert_eq!(
            TimeIndex::from_bytes(1000, &bytes[..13]),
            Err(IndexError::BadLength {
                len: 13,
                entry_size: 12
            })
        );
        let mut swapped = bytes.to_vec();
        swapped.rotate_left(12); // timestamps 7000, 9000, 5000
        assert_eq!(
            TimeIndex::from_bytes(1000, &swapped),
            Err(IndexError::NotMonotonic { entry: 2 })
        );
        // Same timestamp twice.
        let mut repeated = bytes[..12].to_vec();
        repeated.extend_from_slice(&bytes[..12]);
        assert_eq!(
            TimeIndex::from_bytes(1000, &repeated),
            Err(IndexError::NotMonotonic { entry: 1 })
        );
    }
}
