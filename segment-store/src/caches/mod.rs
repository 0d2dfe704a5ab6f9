//! The read cache on the fetch path, in memory with an optional disk tier.

pub mod disk_cache;
pub mod read_cache;
