//! Per-partition log metadata: committed chunks (flushes), compacted segments, the log start
//! offset and idempotent producer states. The high watermark is derived from them.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::records::{Changes, Key, Record};
use super::state::PartitionState;
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::{ChunkCommit, PartitionLog, ProducerState, SegmentMeta};

/// Batches remembered per producer: Kafka's idempotence window (max.in.flight of 5).
const PRODUCER_WINDOW: usize = 5;

impl Coordinator {
    /// One transaction per flush, all or nothing: every chunk's leader epoch must be the
    /// partition's current epoch (else FencedLeaderEpoch) and its base_offset must equal the
    /// partition's high watermark (else NonContiguousCommit); several chunks of one partition
    /// must follow each other.
    pub async fn commit_flush(&self, commits: Vec<ChunkCommit>) -> Result<(), CoordinatorError> {
        if commits.is_empty() {
            return Ok(());
        }
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            // Each partition's log end and producer states as this flush extends them.
            let mut log_ends: HashMap<(Uuid, i32), i64> = HashMap::new();
            let mut producers: HashMap<(Uuid, i32, i64), ProducerState> = HashMap::new();
            let mut puts = Vec::new();
            for commit in commits {
                let (t, p) = (commit.topic_id, commit.partition);
                let log = state
                    .partition(t, p)
                    .ok_or_else(|| unknown_partition(t, p))?;
                check_leader_epoch(log, t, p, commit.leader_epoch)?;
                let log_end = log_ends
                    .entry((t, p))
                    .or_insert_with(|| log.high_watermark());
                let chunk = commit.chunk;
                if chunk.base_offset != *log_end || chunk.last_offset < chunk.base_offset {
                    return Err(CoordinatorError::NonContiguousCommit(format!(
                        "chunk {}..={} of {t}-{p} does not continue its log at offset {log_end}",
                        chunk.base_offset, chunk.last_offset
                    )));
                }
                *log_end = chunk.last_offset + 1;
                for update in commit.producers {
                    let key = (t, p, update.producer_id);
                    let current = producers.get(&key).or_else(|| log.producers.get(&key.2));
                    if let Some(merged) = merge_producer(current, update) {
                        producers.insert(key, merged);
                    }
                }
                puts.push(Record::Chunk(t, p, chunk));
            }
            puts.extend(
                producers
                    .into_iter()
                    .map(|((t, p, _), producer)| Record::Producer(t, p, producer)),
            );
            Changes {
                puts,
                ..Changes::default()
            }
        };
        self.commit(guard, changes).await
    }

    pub fn partition_log(&self, topic_id: Uuid, partition: i32) -> Option<PartitionLog> {
        Some(self.read().partition(topic_id, partition)?.to_log())
    }

    /// Compaction: replaces the chunks covering exactly the offsets of `segments` (contiguous,
    /// oldest first) with them, atomically; NonContiguousCommit if the segments do not follow
    /// each other or the chunks are no longer exactly those (contiguous, the first starting
    /// with the first segment and the last ending with the last one).
    pub async fn commit_segments(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        segments: Vec<SegmentMeta>,
    ) -> Result<(), CoordinatorError> {
        let (t, p) = (topic_id, partition);
        let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
            return Ok(());
        };
        let (base, last) = (first.base_offset, last.last_offset);
        let follow = segments.windows(2).all(|pair| {
            pair[0].last_offset >= pair[0].base_offset
                && pair[1].base_offset == pair[0].last_offset + 1
        });
        if !follow {
            return Err(CoordinatorError::NonContiguousCommit(format!(
                "the segments of {t}-{p} for offsets {base}..={last} do not follow each other"
            )));
        }
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let log = state
                .partition(t, p)
                .ok_or_else(|| unknown_partition(t, p))?;
            check_leader_epoch(log, t, p, leader_epoch)?;
            let mut next = base;
            let mut deletes = Vec::new();
            if last >= base {
                for chunk in log.chunks.range(base..=last).map(|(_, chunk)| chunk) {
                    if chunk.base_offset != next {
                        break;
                    }
                    next = chunk.last_offset + 1;
                    deletes.push(Key::Chunk(t, p, chunk.base_offset));
                }
            }
            if next != last + 1 || deletes.is_empty() {
                return Err(CoordinatorError::NonContiguousCommit(format!(
                    "the chunks of {t}-{p} do not tile the segments' offsets {base}..={last}"
                )));
            }
            Changes {
                puts: segments
                    .into_iter()
                    .map(|segment| Record::Segment(t, p, segment))
                    .collect(),
                deletes,
                broker: None,
            }
        };
        self.commit(guard, changes).await
    }

    /// DeleteRecords and retention: log start offset := max(current, offset) (offset <= HW, else
    /// OffsetOutOfRange); drops segments and chunks entirely below it, and the producer states
    /// whose last batch is below it (as Kafka does). Returns the new log start offset.
    pub async fn advance_log_start_offset(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
    ) -> Result<i64, CoordinatorError> {
        let (t, p) = (topic_id, partition);
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let log = state
                .partition(t, p)
                .ok_or_else(|| unknown_partition(t, p))?;
            let high_watermark = log.high_watermark();
            if !(0..=high_watermark).contains(&offset) {
                return Err(CoordinatorError::OffsetOutOfRange(format!(
                    "offset {offset} is not in 0..={high_watermark}, the high watermark of {t}-{p}"
                )));
            }
            if offset <= log.log_start_offset {
                return Ok(log.log_start_offset);
            }
            let below = |last_offset: i64| last_offset < offset;
            let segments = log.segments.values().take_while(|s| below(s.last_offset));
            let chunks = log.chunks.values().take_while(|c| below(c.last_offset));
            let producers = log.producers.values().filter(|producer| {
                producer
                    .batches
                    .last()
                    .is_none_or(|batch| below(batch.last_offset))
            });
            let deletes = segments
                .map(|s| Key::Segment(t, p, s.base_offset))
                .chain(chunks.map(|c| Key::Chunk(t, p, c.base_offset)))
                .chain(producers.map(|producer| Key::Producer(t, p, producer.producer_id)))
                .collect();
            Changes {
                puts: vec![Record::LogStart(t, p, offset)],
                deletes,
                broker: None,
            }
        };
        self.commit(guard, changes).await?;
        Ok(offset)
    }

    /// Every object key some partition still references (for garbage collection).
    pub fn referenced_objects(&self) -> HashSet<String> {
        let state = self.read();
        let mut keys = HashSet::new();
        for partition in state.topics.values().flat_map(|topic| &topic.partitions) {
            keys.extend(
                partition
                    .chunks
                    .values()
                    .map(|chunk| chunk.object_key.clone()),
            );
            for segment in partition.segments.values() {
                keys.insert(segment.log_key.clone());
                keys.insert(segment.offset_index_key.clone());
                keys.insert(segment.time_index_key.clone());
            }
        }
        keys
    }
}

fn unknown_partition(topic_id: Uuid, partition: i32) -> CoordinatorError {
    CoordinatorError::UnknownTopicOrPartition(format!("Unknown partition {topic_id}-{partition}."))
}

fn check_leader_epoch(
    log: &PartitionState,
    topic_id: Uuid,
    partition: i32,
    leader_epoch: i32,
) -> Result<(), CoordinatorError> {
    match log.leader {
        Some(leader) if leader.leader_epoch == leader_epoch => Ok(()),
        current => Err(CoordinatorError::FencedLeaderEpoch(format!(
            "leader epoch {leader_epoch} of {topic_id}-{partition} is not the current one ({})",
            current.map_or(-1, |leader| leader.leader_epoch)
        ))),
    }
}

/// A producer's state after a chunk: a newer epoch replaces the old state, the same epoch adds
/// the batches after those already known (so the update may be the full state or just the
/// new batches), and only the last PRODUCER_WINDOW batches are kept. None: an update from an
/// older epoch, which changes nothing.
fn merge_producer(current: Option<&ProducerState>, update: ProducerState) -> Option<ProducerState> {
    let mut merged = match current {
        Some(current) if update.producer_epoch < current.producer_epoch => return None,
        Some(current) if update.producer_epoch == current.producer_epoch => {
            let known_end = current
                .batches
                .last()
                .map_or(i64::MIN, |batch| batch.last_offset);
            let mut merged = current.clone();
            merged.batches.extend(
                update
                    .batches
                    .into_iter()
                    .filter(|batch| batch.base_offset > known_end),
            );
            merged
        }
        _ => update,
    };
    let excess = merged.batches.len().saturating_sub(PRODUCER_WINDOW);
    merged.batches.drain(..excess);
    Some(merged)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use uuid::Uuid;

    use super::super::test_support::{broker, chunk, commit, open, segment, snapshot, TestStore};
    use super::*;
    use crate::{ChunkMeta, ProducerBatch};

    /// A coordinator with broker 1 leading every partition of topic "t" (epoch 0).
    async fn setup(partitions: i32) -> (Arc<TestStore>, Arc<Coordinator>, Uuid) {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let meta = coordinator
            .create_topic("t", partitions, BTreeMap::new(), false)
            .await
            .unwrap();
        (store, coordinator, meta.topic_id)
    }

    /// Commits one flush per (base, last) range to partition 0 of topic `t`.
    async fn flush_chunks(coordinator: &Coordinator, t: Uuid, ranges: &[(i64, i64)]) {
        for &(base, last) in ranges {
            coordinator
                .commit_flush(vec![commit(t, 0, 0, chunk(base, last))])
                .await
                .unwrap();
        }
    }

    fn producer(id: i64, epoch: i16, batches: &[(i32, i64)]) -> ProducerState {
        ProducerState {
            producer_id: id,
            producer_epoch: epoch,
            batches: batches
                .iter()
                .map(|&(seq, offset)| ProducerBatch {
                    first_seq: seq,
                    last_seq: seq,
                    base_offset: offset,
                    last_offset: offset,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn flushes_extend_the_log() {
        let (_store, coordinator, t) = setup(2).await;
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!((log.log_start_offset, log.high_watermark), (0, 0));
        coordinator
            .commit_flush(vec![
                commit(t, 0, 0, chunk(0, 9)),
                commit(t, 1, 0, chunk(0, 0)),
            ])
            .await
            .unwrap();
        // Two chunks of one partition in one flush follow each other.
        coordinator
            .commit_flush(vec![
                commit(t, 0, 0, chunk(10, 14)),
                commit(t, 0, 0, chunk(15, 15)),
            ])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.high_watermark, 16);
        assert_eq!(log.chunks, vec![chunk(0, 9), chunk(10, 14), chunk(15, 15)]);
        assert_eq!(coordinator.partition_log(t, 1).unwrap().high_watermark, 1);
        assert_eq!(coordinator.partition_log(t, 2), None);
        assert_eq!(coordinator.partition_log(Uuid::new_v4(), 0), None);
    }

    #[tokio::test]
    async fn non_contiguous_commit_is_rejected_and_nothing_applied() {
        let (store, coordinator, t) = setup(2).await;
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(0, 9))])
            .await
            .unwrap();
        let before = snapshot(&coordinator);
        let commits = store.commits();
        for bad in [chunk(11, 20), chunk(5, 20), chunk(10, 9)] {
            // Partition 1's chunk is fine, but the flush is all or nothing.
            let flush = vec![commit(t, 1, 0, chunk(0, 4)), commit(t, 0, 0, bad.clone())];
            let result = coordinator.commit_flush(flush).await;
            assert!(
                matches!(result, Err(CoordinatorError::NonContiguousCommit(_))),
                "{bad:?}: {result:?}"
            );
            assert_eq!(result.unwrap_err().error_code(), -1);
        }
        let overlap = vec![
            commit(t, 0, 0, chunk(10, 14)),
            commit(t, 0, 0, chunk(14, 20)),
        ];
        assert!(coordinator.commit_flush(overlap).await.is_err());
        assert_eq!(snapshot(&coordinator), before);
        assert_eq!(store.commits(), commits);
    }

    #[tokio::test]
    async fn flush_is_all_or_nothing() {
        let (store, coordinator, t) = setup(2).await;
        let before = snapshot(&coordinator);
        // A topic deleted during the flush.
        let flush = vec![
            commit(t, 0, 0, chunk(0, 4)),
            commit(Uuid::new_v4(), 0, 0, chunk(0, 4)),
        ];
        let result = coordinator.commit_flush(flush).await;
        assert!(
            matches!(result, Err(CoordinatorError::UnknownTopicOrPartition(_))),
            "{result:?}"
        );
        let flush = vec![commit(t, 0, 0, chunk(0, 4)), commit(t, 2, 0, chunk(0, 4))];
        assert_eq!(
            coordinator
                .commit_flush(flush)
                .await
                .unwrap_err()
                .error_code(),
            3
        );
        let flush = vec![commit(t, 0, 0, chunk(0, 4)), commit(t, 1, 7, chunk(0, 4))];
        assert_eq!(
            coordinator
                .commit_flush(flush)
                .await
                .unwrap_err()
                .error_code(),
            74
        );
        // The store fails.
        store.fail_commits(true);
        let flush = vec![commit(t, 0, 0, chunk(0, 4)), commit(t, 1, 0, chunk(0, 4))];
        assert_eq!(
            coordinator
                .commit_flush(flush.clone())
                .await
                .unwrap_err()
                .error_code(),
            56
        );
        assert_eq!(snapshot(&coordinator), before);
        store.fail_commits(false);
        coordinator.commit_flush(flush).await.unwrap();
        assert_eq!(coordinator.partition_log(t, 1).unwrap().high_watermark, 5);
    }

    #[tokio::test]
    async fn producer_states_keep_the_last_five_batches() {
        let (_store, coordinator, t) = setup(1).await;
        let mut c = commit(t, 0, 0, chunk(0, 3));
        c.producers = vec![
            producer(7, 0, &[(0, 0), (1, 1), (2, 2)]),
            producer(8, 0, &[(0, 3)]),
        ];
        coordinator.commit_flush(vec![c]).await.unwrap();
        // Only the new batches (or the whole window) may come with the next chunk.
        let mut c = commit(t, 0, 0, chunk(4, 6));
        c.producers = vec![producer(7, 0, &[(1, 1), (2, 2), (3, 4), (4, 5), (5, 6)])];
        coordinator.commit_flush(vec![c]).await.unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(
            log.producers,
            vec![
                producer(7, 0, &[(1, 1), (2, 2), (3, 4), (4, 5), (5, 6)]),
                producer(8, 0, &[(0, 3)]),
            ]
        );

        // A newer epoch replaces the state; an older one changes nothing.
        let mut c = commit(t, 0, 0, chunk(7, 8));
        c.producers = vec![producer(7, 1, &[(0, 7)]), producer(8, 0, &[(1, 8)])];
        coordinator.commit_flush(vec![c]).await.unwrap();
        let mut c = commit(t, 0, 0, chunk(9, 9));
        c.producers = vec![producer(7, 0, &[(6, 9)])];
        coordinator.commit_flush(vec![c]).await.unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(
            log.producers,
            vec![producer(7, 1, &[(0, 7)]), producer(8, 0, &[(0, 3), (1, 8)])]
        );
    }

    #[tokio::test]
    async fn commit_segments_replaces_exactly_tiling_chunks() {
        let (_store, coordinator, t) = setup(1).await;
        flush_chunks(&coordinator, t, &[(0, 9), (10, 19), (20, 29)]).await;
        let before = snapshot(&coordinator);
        // Starts inside a chunk, ends inside one, covers nothing, is backwards, reaches past the log.
        for (base, last) in [(5, 19), (0, 15), (30, 39), (19, 10), (20, 39)] {
            let result = coordinator
                .commit_segments(t, 0, 0, vec![segment(base, last)])
                .await;
            assert!(
                matches!(result, Err(CoordinatorError::NonContiguousCommit(_))),
                "{base}..={last}: {result:?}"
            );
        }
        let fenced = coordinator
            .commit_segments(t, 0, 1, vec![segment(0, 19)])
            .await;
        assert!(matches!(
            fenced,
            Err(CoordinatorError::FencedLeaderEpoch(_))
        ));
        let unknown = coordinator
            .commit_segments(t, 1, 0, vec![segment(0, 19)])
            .await;
        assert!(matches!(
            unknown,
            Err(CoordinatorError::UnknownTopicOrPartition(_))
        ));
        assert_eq!(snapshot(&coordinator), before);

        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 19)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.segments, vec![segment(0, 19)]);
        assert_eq!(log.chunks, vec![chunk(20, 29)]);
        assert_eq!(log.high_watermark, 30);
        // The chunks are gone: the same segment again no longer matches.
        assert!(coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 19)])
            .await
            .is_err());
        coordinator
            .commit_segments(t, 0, 0, vec![segment(20, 29)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(
            (log.segments.len(), log.chunks.len(), log.high_watermark),
            (2, 0, 30)
        );
        // Flushes go on after the segments.
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(30, 30))])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn several_segments_replace_their_chunks_in_one_commit() {
        let (_store, coordinator, t) = setup(1).await;
        flush_chunks(&coordinator, t, &[(0, 9), (10, 19)]).await;
        let before = snapshot(&coordinator);
        for segments in [
            vec![segment(0, 4), segment(6, 19)],
            vec![segment(0, 4), segment(4, 19)],
        ] {
            let result = coordinator.commit_segments(t, 0, 0, segments).await;
            assert!(
                matches!(result, Err(CoordinatorError::NonContiguousCommit(_))),
                "{result:?}"
            );
        }
        assert_eq!(snapshot(&coordinator), before);

        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 4), segment(5, 19)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.segments, vec![segment(0, 4), segment(5, 19)]);
        assert!(log.chunks.is_empty());
        assert_eq!(log.high_watermark, 20);
    }

    #[tokio::test]
    async fn advance_log_start_offset_drops_whole_entries() {
        let (_store, coordinator, t) = setup(1).await;
        let mut first = commit(t, 0, 0, chunk(0, 9));
        first.producers = vec![producer(1, 0, &[(0, 9)])];
        let mut second = commit(t, 0, 0, chunk(10, 19));
        second.producers = vec![producer(2, 0, &[(0, 15)])];
        coordinator.commit_flush(vec![first, second]).await.unwrap();
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(20, 29))])
            .await
            .unwrap();
        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 9)])
            .await
            .unwrap();

        for offset in [31, -1] {
            let result = coordinator.advance_log_start_offset(t, 0, offset).await;
            assert!(
                matches!(result, Err(CoordinatorError::OffsetOutOfRange(_))),
                "{offset}: {result:?}"
            );
        }
        assert!(coordinator.advance_log_start_offset(t, 1, 0).await.is_err());

        // Inside the first chunk: nothing is entirely below it yet.
        assert_eq!(
            coordinator
                .advance_log_start_offset(t, 0, 12)
                .await
                .unwrap(),
            12
        );
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.log_start_offset, 12);
        assert_eq!(log.segments, Vec::<SegmentMeta>::new());
        assert_eq!(log.chunks, vec![chunk(10, 19), chunk(20, 29)]);
        assert_eq!(log.producers, vec![producer(2, 0, &[(0, 15)])]);
        // Never backwards.
        assert_eq!(
            coordinator.advance_log_start_offset(t, 0, 5).await.unwrap(),
            12
        );

        // Up to the high watermark: the log is empty and continues there.
        assert_eq!(
            coordinator
                .advance_log_start_offset(t, 0, 30)
                .await
                .unwrap(),
            30
        );
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!((log.log_start_offset, log.high_watermark), (30, 30));
        assert_eq!(
            (log.chunks, log.producers),
            (Vec::<ChunkMeta>::new(), vec![])
        );
        assert!(coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(0, 4))])
            .await
            .is_err());
        coordinator
            .commit_flush(vec![commit(t, 0, 0, chunk(30, 34))])
            .await
            .unwrap();
        assert_eq!(coordinator.partition_log(t, 0).unwrap().high_watermark, 35);
    }

    #[tokio::test]
    async fn referenced_objects_shrink_as_entries_go() {
        let (_store, coordinator, t) = setup(1).await;
        flush_chunks(&coordinator, t, &[(0, 9), (10, 19)]).await;
        let keys = |list: &[&str]| list.iter().map(|k| k.to_string()).collect::<HashSet<_>>();
        let (c0, c1) = (chunk(0, 9).object_key, chunk(10, 19).object_key);
        assert_eq!(coordinator.referenced_objects(), keys(&[&c0, &c1]));
        let s = segment(0, 9);
        coordinator
            .commit_segments(t, 0, 0, vec![s.clone()])
            .await
            .unwrap();
        assert_eq!(
            coordinator.referenced_objects(),
            keys(&[&c1, &s.log_key, &s.offset_index_key, &s.time_index_key])
        );
        coordinator
            .advance_log_start_offset(t, 0, 10)
            .await
            .unwrap();
        assert_eq!(coordinator.referenced_objects(), keys(&[&c1]));
        coordinator.delete_topic("t").await.unwrap();
        assert!(coordinator.referenced_objects().is_empty());
    }
}
