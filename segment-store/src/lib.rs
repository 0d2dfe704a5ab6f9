//! Bytes at rest for Strata: the object store backends behind one small trait, the
//! flush-object format, per-partition log segments with Kafka's offset and time indexes,
//! and the read cache used on the fetch path.

pub mod backends;
pub mod caches;
pub mod cleaner;
pub mod cluster_marker;
pub mod formats;
pub mod parts;
pub mod payload;
pub mod retry;
pub mod simulate_failures;
pub mod store;

pub use payload::Payload;
pub use store::{open_store, open_store_with, ObjectMeta, ObjectStore, StorageOptions, StoreError};

/// Errors reading a serialized index (offset index or time index).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("index of {len} bytes is not a whole number of {entry_size}-byte entries")]
    BadLength { len: usize, entry_size: usize },
    #[error("index entry {entry} is out of order")]
    NotMonotonic { entry: usize },
}
