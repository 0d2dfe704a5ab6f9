//! The formats of what Strata stores: flush objects, and log segments with Kafka's offset
//! and time indexes.

pub mod flush_object;
pub mod offset_index;
pub mod segment;
pub mod time_index;
