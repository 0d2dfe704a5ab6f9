//! Retention: deletes a partition's oldest segments by age (`retention.ms`, against the
//! segment's largest timestamp, as Kafka does) and by size (`retention.bytes`), advancing
//! the log start offset. Un-compacted chunks are the active part of the log and are kept.
//! Only topics whose `cleanup.policy` has `delete`.

use std::sync::Arc;

use coordinator::PartitionLog;
use tokio::sync::watch;

use crate::background::{isolated, next_pass};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::partition::Partition;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    while next_pass(broker.config.retention_check_interval, &mut shutdown).await {
        for partition in broker.led_partitions() {
            let what = format!("{}-{}", partition.topic, partition.index);
            let metrics = &broker.metrics.retention;
            isolated("retention", metrics, &what, enforce(&broker, &partition)).await;
        }
    }
}

async fn enforce(
    broker: &Broker,
    partition: &Partition,
) -> Result<(), coordinator::error::CoordinatorError> {
    let config = broker.coordinator.topic_config(&partition.topic)?;
    if !config.cleanup_policy.deletes() {
        return Ok(());
    }
    let Some(log) = broker
        .coordinator
        .partition_log(partition.topic_id, partition.index)
    else {
        return Ok(());
    };
    let Some(new_start) =
        retention_start(&log, config.retention_ms, config.retention_bytes, now_ms())
    else {
        return Ok(());
    };
    let log_start_offset = broker
        .coordinator
        .advance_log_start_offset(partition.topic_id, partition.index, new_start)
        .await?;
    partition.set_log_start_offset(log_start_offset);
    tracing::info!(topic = %partition.topic, partition = partition.index, log_start_offset, "retention advanced the log start offset");
    Ok(())
}

/// The log start offset after deleting what retention allows, if that deletes anything.
fn retention_start(
    log: &PartitionLog,
    retention_ms: i64,
    retention_bytes: i64,
    now_ms: i64,
) -> Option<i64> {
    let mut size: i64 = log.segments.iter().map(|s| s.size as i64).sum::<i64>()
        + log.chunks.iter().map(|c| c.size as i64).sum::<i64>();
    let mut new_start = None;
    for segment in &log.segments {
        let expired = retention_ms >= 0 && now_ms - segment.max_timestamp > retention_ms;
        let oversized = retention_bytes >= 0 && size - segment.size as i64 >= retention_bytes;
        if !(expired || oversized) {
            break;
        }
        size -= segment.size as i64;
        new_start = Some(segment.last_offset + 1);
    }
    new_start.filter(|&start| start > log.log_start_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coordinator::SegmentMeta;

    fn segment(base_offset: i64, last_offset: i64, max_timestamp: i64, size: u64) -> SegmentMeta {
        SegmentMeta {
            base_offset,
            last_offset,
            max_timestamp,
            size,
            log_key: String::new(),
            offset_index_key: String::new(),
            time_index_key: String::new(),
            created_ms: 0,
            cleaned: false,
            delete_horizon_ms: None,
            aborted_transactions: Vec::new(),
        }
    }

    fn log(segments: Vec<SegmentMeta>) -> PartitionLog {
        PartitionLog {
            log_start_offset: 0,
            high_watermark: segments.last().map_or(0, |s| s.last_offset + 1),
            segments,
            chunks: Vec::new(),
            producers: Vec::new(),
        }
    }

    #[test]
    fn expired_segments_go_oldest_first_and_stop_at_the_first_young_one() {
        let log = log(vec![
            segment(0, 9, 100, 10),
            segment(10, 19, 5_000, 10),
            segment(20, 29, 200, 10),
        ]);
        assert_eq!(retention_start(&log, 1_000, -1, 3_000), Some(10));
        assert_eq!(retention_start(&log, 10_000, -1, 3_000), None);
        assert_eq!(retention_start(&log, -1, -1, 3_000), None);
    }

    #[test]
    fn size_retention_keeps_at_least_retention_bytes() {
        let log = log(vec![
            segment(0, 9, 0, 100),
            segment(10, 19, 0, 100),
            segment(20, 29, 0, 100),
        ]);
        assert_eq!(retention_start(&log, -1, 150, 0), Some(10));
        assert_eq!(retention_start(&log, -1, 100, 0), Some(20));
        assert_eq!(retention_start(&log, -1, 300, 0), None);
        assert_eq!(retention_start(&log, -1, 0, 0), Some(30));
    }
}
