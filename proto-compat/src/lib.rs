//! The Kafka wire protocol for Strata: size-prefixed framing, hardened request decoding,
//! version negotiation, response encoding, a zero-copy view of v2 record batches and
//! memory-bounded reading of their records.
//!
//! Knows nothing about sockets or storage: callers hand in readers and byte buffers.

pub mod api_versions;
pub mod batch;
pub mod filter;
pub mod frame;
pub mod recompress;
pub mod records;
pub mod request;
pub mod response;

/// Re-exported so every crate uses the same (patched) kafka-protocol types.
pub use kafka_protocol;
