//! Flush objects: one object per broker flush, holding a chunk of batches for each
//! partition that had data.
//!
//! Layout (all of it written by one PUT):
//!
//! ```text
//! chunk 0 bytes | chunk 1 bytes | ... | footer | footer length (u32 BE) | "STRATAF1"
//! ```
//!
//! A chunk is a partition's batches back to back, exactly as they will be served. The
//! footer is a JSON array of [`ChunkEntry`], so an object can be inspected and verified on
//! its own. The magic goes last: an object truncated by a crash mid-PUT lacks it and is
//! rejected.

use std::ops::Range;

use bytes::Bytes;

use crate::payload::Payload;
use uuid::Uuid;

pub const FLUSH_PREFIX: &str = "flush/";

const MAGIC: &[u8; 8] = b"STRATAF1";
/// Footer length and magic.
const TRAILER_LEN: usize = 4 + MAGIC.len();

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkEntry {
    pub topic_id: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub byte_range: Range<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushObjectError {
    #[error("object of {0} bytes is too short to be a flush object")]
    TooShort(usize),
    #[error("object does not end with the flush-object magic (torn or foreign)")]
    BadMagic,
    #[error("footer length {footer_len} does not fit an object of {object_len} bytes")]
    BadFooterLength { footer_len: u32, object_len: usize },
    #[error("unreadable footer: {0}")]
    Footer(#[from] serde_json::Error),
    #[error("chunk {byte_range:?} lies outside the {data_len} data bytes")]
    ChunkOutOfBounds {
        byte_range: Range<u64>,
        data_len: u64,
    },
}

/// Builds a flush object out of the batches' own buffers: nothing is copied until the store
/// writes it.
#[derive(Debug, Default)]
pub struct FlushObjectBuilder {
    data: Payload,
    entries: Vec<ChunkEntry>,
}

impl FlushObjectBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one partition's batches (contiguous offsets); returns the chunk's byte range.
    pub fn add_chunk(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        base_offset: i64,
        last_offset: i64,
        batches: &[Bytes],
    ) -> Range<u64> {
        let start = self.data.len() as u64;
        for batch in batches {
            self.data.push(batch.clone());
        }
        let byte_range = start..self.data.len() as u64;
        self.entries.push(ChunkEntry {
            topic_id,
            partition,
            base_offset,
            last_offset,
            byte_range: byte_range.clone(),
        });
        byte_range
    }

    /// Bytes of chunk data so far (the footer comes on top).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no chunk was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(self) -> Payload {
        let mut object = self.data;
        let mut trailer =
            serde_json::to_vec(&self.entries).expect("chunk entries always serialize");
        let footer_len = u32::try_from(trailer.len()).expect("flush-object footer exceeds 4 GiB");
        trailer.extend_from_slice(&footer_len.to_be_bytes());
        trailer.extend_from_slice(MAGIC);
        object.push(trailer.into());
        object
    }
}

/// Parses the footer; Err on a torn or foreign object.
pub fn read_flush_object_index(object: &Bytes) -> Result<Vec<ChunkEntry>, FlushObjectError> {
    let object_len = object.len();
    if object_len < TRAILER_LEN {
        return Err(FlushObjectError::TooShort(object_len));
    }
    let (rest, magic) = object.split_at(object_len - MAGIC.len());
    if magic != MAGIC {
        return Err(FlushObjectError::BadMagic);
    }
    let (rest, footer_len) = rest.split_at(rest.len() - 4);
    let footer_len = u32::from_be_bytes(footer_len.try_into().expect("4 bytes"));
    let Some(data_len) = rest.len().checked_sub(footer_len as usize) else {
        return Err(FlushObjectError::BadFooterLength {
            footer_len,
            object_len,
        });
    };
    let entries: Vec<ChunkEntry> = serde_json::from_slice(&rest[data_len..])?;
    let data_len = data_len as u64;
    if let Some(bad) = entries
        .iter()
        .find(|e| e.byte_range.start > e.byte_range.end || e.byte_range.end > data_len)
    {
        return Err(FlushObjectError::ChunkOutOfBounds {
            byte_range: bad.byte_range.clone(),
            data_len,
        });
    }
    Ok(entries)
}

/// Object key for a new flush object of `broker_id`: "flush/{broker_id}/{unique}.flush".
/// The random id keeps keys apart across restarts and brokers.
pub fn flush_object_key(broker_id: i32) -> String {
    format!(
        "{FLUSH_PREFIX}{broker_id}/{}.flush",
        Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::simulate_failures::{FaultConfig, FaultyStore};
    use crate::store::ObjectStore;

    fn two_partition_object() -> (Bytes, Vec<ChunkEntry>) {
        let topic = Uuid::new_v4();
        let other = Uuid::new_v4();
        let mut builder = FlushObjectBuilder::new();
        assert!(builder.is_empty());
        let first = builder.add_chunk(
            topic,
            0,
            10,
            14,
            &[Bytes::from_static(b"aaa"), Bytes::from_static(b"bb")],
        );
        let second = builder.add_chunk(topic, 3, 0, 0, &[Bytes::from_static(b"c")]);
        let third = builder.add_chunk(other, 0, 7, 9, &[Bytes::from_static(b"dddd")]);
        assert_eq!(
            (first.clone(), second.clone(), third.clone()),
            (0..5, 5..6, 6..10)
        );
        assert_eq!(builder.len(), 10);
        assert!(!builder.is_empty());
        let entries = vec![
            ChunkEntry {
                topic_id: topic,
                partition: 0,
                base_offset: 10,
                last_offset: 14,
                byte_range: first,
            },
            ChunkEntry {
                topic_id: topic,
                partition: 3,
                base_offset: 0,
                last_offset: 0,
                byte_range: second,
            },
            ChunkEntry {
                topic_id: other,
                partition: 0,
                base_offset: 7,
                last_offset: 9,
                byte_range: third,
            },
        ];
        (builder.finish().to_bytes(), entries)
    }

    #[test]
    fn round_trip_with_several_partitions() {
        let (object, expected) = two_partition_object();
        let entries = read_flush_object_index(&object).unwrap();
        assert_eq!(entries, expected);
        let chunk = |i: usize| {
            let range = &entries[i].byte_range;
            object.slice(range.start as usize..range.end as usize)
        };
        assert_eq!(chunk(0), "aaabb");
        assert_eq!(chunk(1), "c");
        assert_eq!(chunk(2), "dddd");
        assert!(object.ends_with(b"STRATAF1"));
    }

    #[test]
    fn an_empty_object_has_no_chunks() {
        let object = FlushObjectBuilder::new().finish().to_bytes();
        assert!(read_flush_object_index(&object).unwrap().is_empty());
    }

    #[test]
    fn torn_objects_are_rejected() {
        let (object, _) = two_partition_object();
        for cut in [object.len() - 1, object.len() - 8, object.len() / 2, 5, 0] {
            let torn = object.slice(..cut);
            assert!(read_flush_object_index(&torn).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            read_flush_object_index(&object.slice(..object.len() / 2)),
            Err(FlushObjectError::BadMagic)
        ));
        assert!(matches!(
            read_flush_object_index(&object.slice(..3)),
            Err(FlushObjectError::TooShort(3))
        ));
    }

    #[tokio::test]
    async fn an_object_torn_by_a_crash_mid_put_is_rejected() {
        let store = FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig {
                fail_after_puts: Some(0),
                torn_writes: true,
                ..FaultConfig::default()
            },
        );
        let (object, _) = two_partition_object();
        let key = flush_object_key(1);
        assert!(store.put(&key, object.into()).await.is_err());
        let torn = store.inner().get(&key).await.unwrap();
        assert!(matches!(
            read_flush_object_index(&torn),
            Err(FlushObjectError::BadMagic)
        ));
    }

    #[test]
    fn corrupt_trailers_and_footers_are_rejected() {
        let (object, _) = two_partition_object();
        let with_footer_len = |len: u32| {
            let mut bytes = object.to_vec();
            let at = bytes.len() - TRAILER_LEN;
            bytes[at..at + 4].copy_from_slice(&len.to_be_bytes());
            Bytes::from(bytes)
        };
        assert!(matches!(
            read_flush_object_index(&with_footer_len(u32::MAX)),
            Err(FlushObjectError::BadFooterLength { .. })
        ));
        // A footer that starts mid-way is not JSON.
        assert!(matches!(
            read_flush_object_index(&with_footer_len(20)),
            Err(FlushObjectError::Footer(_))
        ));

        // A footer pointing past the data.
        let entries = vec![ChunkEntry {
            topic_id: Uuid::nil(),
            partition: 0,
            base_offset: 0,
            last_offset: 0,
            byte_range: 0..100,
        }];
        let footer = serde_json::to_vec(&entries).unwrap();
        let mut bytes = b"short".to_vec();
        bytes.extend_from_slice(&footer);
        bytes.extend_from_slice(&(footer.len() as u32).to_be_bytes());
        bytes.extend_from_slice(MAGIC);
        assert!(matches!(
            read_flush_object_index(&Bytes::from(bytes)),
            Err(FlushObjectError::ChunkOutOfBounds { data_len: 5, .. })
        ));
    }

    #[test]
    fn keys_are_unique_and_under_the_broker() {
        let a = flush_object_key(3);
        let b = flush_object_key(3);
        assert_ne!(a, b);
        assert!(a.starts_with("flush/3/") && a.ends_with(".flush"), "{a}");
    }
}
