//! Wall-clock time in Kafka's unit, milliseconds since the Unix epoch: how long a group has
//! been empty, for offset expiration. The gateway has the same helper for its own timestamps;
//! this crate keeps one rather than depend on the gateway.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
