//! Kafka's sparse offset index of a log segment: entries of (offset relative to the
//! segment's base offset: u32, byte position of a batch in the log: u32), big-endian,
//! 8 bytes each, both strictly increasing.

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::IndexError;

const ENTRY_SIZE: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    /// (relative offset, position)
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            entries: Vec::new(),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Panics if `offset` is not above the last entry's and within the segment's u32 range,
    /// or `position` not above the last entry's: an index out of order would be corrupt.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = offset
            .checked_sub(self.base_offset)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or_else(|| {
                panic!(
                    "offset {offset} is outside the segment at {}",
                    self.base_offset
                )
            });
        if let Some(&(last_relative, last_position)) = self.entries.last() {
            assert!(
                relative > last_relative && position > last_position,
                "offset index entry ({offset}, {position}) is not after the last one"
            );
        }
        self.entries.push((relative, position));
    }

    /// Greatest entry with offset <= target, as (offset, position); (base_offset, 0) if none.
    pub fn lookup(&self, target_offset: i64) -> (i64, u32) {
        let below = self.entries.partition_point(|&(relative, _)| {
            self.base_offset + i64::from(relative) <= target_offset
        });
        match below.checked_sub(1) {
            Some(i) => {
                let (relative, position) = self.entries[i];
                (self.base_offset + i64::from(relative), position)
            }
            None => (self.base_offset, 0),
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(self.entries.len() * ENTRY_SIZE);
        for &(relative, position) in &self.entries {
            bytes.put_u32(relative);
            bytes.put_u32(position);
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
        let entries: Vec<(u32, u32)> = bytes
            .chunks_exact(ENTRY_SIZE)
            .map(|entry| {
                let (relative, position) = entry.split_at(4);
                (
                    u32::from_be_bytes(relative.try_into().expect("4 bytes")),
                    u32::from_be_bytes(position.try_into().expect("4 bytes")),
                )
            })
            .collect();
        if let Some(i) = entries
            .windows(2)
            .position(|w| w[1].0 <= w[0].0 || w[1].1 <= w[0].1)
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

    fn index() -> OffsetIndex {
        let mut index = OffsetIndex::new(100);
        index.append(100, 0);
        index.append(110, 4096);
        index.append(125, 9000);
        index
    }

    #[test]
    fn an_empty_index_points_at_the_segment_start() {
        let index = OffsetIndex::new(100);
        assert!(index.is_empty());
        assert_eq!(index.lookup(100), (100, 0));
        assert_eq!(index.lookup(5000), (100, 0));
        assert_eq!(index.lookup(3), (100, 0));
    }

    #[test]
    fn lookup_finds_the_greatest_entry_at_or_below_the_target() {
        let index = index();
        assert_eq!(index.len(), 3);
        assert_eq!(index.lookup(99), (100, 0), "before the base offset");
        assert_eq!(index.lookup(i64::MIN), (100, 0));
        assert_eq!(index.lookup(100), (100, 0));
        assert_eq!(index.lookup(109), (100, 0));
        assert_eq!(index.lookup(110), (110, 4096), "exact hit");
        assert_eq!(index.lookup(124), (110, 4096), "between entries");
        assert_eq!(index.lookup(125), (125, 9000));
        assert_eq!(index.lookup(i64::MAX), (125, 9000), "past the last entry");
    }

    #[test]
    fn an_index_without_an_entry_at_the_base_falls_back_to_it() {
        let mut index = OffsetIndex::new(0);
        index.append(50, 700);
        assert_eq!(index.lookup(49), (0, 0));
        assert_eq!(index.lookup(50), (50, 700));
    }

    #[test]
    fn bytes_are_kafkas_big_endian_entries() {
        let index = index();
        let bytes = index.to_bytes();
        assert_eq!(
            &bytes[..],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0x10, 0, 0, 0, 0, 25, 0, 0, 0x23, 0x28]
        );
        assert_eq!(OffsetIndex::from_bytes(100, &bytes).unwrap(), index);
        assert!(OffsetIndex::from_bytes(7, &[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        let bytes = index().to_bytes();
        assert_eq!(
            OffsetIndex::from_bytes(100, &bytes[..20]),
            Err(IndexError::BadLength {
                len: 20,
                entry_size: 8
            })
        );
        let mut swapped = bytes.to_vec();
        swapped.rotate_left(8); // entries 110, 125, 100
        assert_eq!(
            OffsetIndex::from_bytes(100, &swapped),
            Err(IndexError::NotMonotonic { entry: 2 })
        );
        let mut repeated = bytes[..8].to_vec();
        repeated.extend_from_slice(&bytes[..8]);
        assert_eq!(
            OffsetIndex::from_bytes(100, &repeated),
            Err(IndexError::NotMonotonic { entry: 1 })
        );
    }

    #[test]
    #[should_panic(expected = "not after the last one")]
    fn appending_out_of_order_panics() {
        let mut index = index();
        index.append(120, 10_000);
    }
}
