//! Per-partition log metadata: committed chunks (one flush record per flush object, whatever
//! the partitions in it), compacted segments, the log start offset and idempotent producer
//! states. The high watermark is derived from them.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::records::{Changes, FlushRecord, Key, Record};
use super::state::{PartitionState, State};
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::metadata_store::MetaStoreError;
use crate::{ChunkCommit, PartitionLog, SegmentMeta};

/// Dead flush records deleted per transaction (etcd allows 128 operations in one).
const FLUSH_DELETES_PER_TXN: usize = 100;

impl Coordinator {
    /// One transaction per flush, all or nothing, guarded by this broker's registration:
    /// every chunk must be in the flush object of the first, its partition led by this broker
    /// at the chunk's leader epoch (else FencedLeaderEpoch) and its base_offset the
    /// partition's high watermark (else NonContiguousCommit); several chunks of one partition
    /// must follow each other. BrokerFenced when this broker's registration is gone.
    pub async fn commit_flush(&self, commits: Vec<ChunkCommit>) -> Result<(), CoordinatorError> {
        let Some(first) = commits.first() else {
            return Ok(());
        };
        let object_key = first.chunk.object_key.clone();
        if let Some(other) = commits.iter().find(|c| c.chunk.object_key != object_key) {
            return Err(CoordinatorError::NonContiguousCommit(format!(
                "one flush names two objects, {object_key} and {}",
                other.chunk.object_key
            )));
        }
        let registered = self.registration_guard()?;
        let broker_id = self.broker_id();
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            // A retry of a commit whose answer was lost (a timeout, a dropped connection)
            // that the store did apply.
            if state.flushes.contains_key(&object_key) {
                return Ok(());
            }
            // Each partition's log end as this flush extends it.
            let mut log_ends: HashMap<(Uuid, i32), i64> = HashMap::new();
            for commit in &commits {
                let (t, p) = (commit.topic_id, commit.partition);
                let log = led_partition(&state, t, p, broker_id, commit.leader_epoch)?;
                let log_end = log_ends
                    .entry((t, p))
                    .or_insert_with(|| log.high_watermark());
                let chunk = &commit.chunk;
                if chunk.base_offset != *log_end || chunk.last_offset < chunk.base_offset {
                    return Err(CoordinatorError::NonContiguousCommit(format!(
                        "chunk {}..={} of {t}-{p} does not continue its log at offset {log_end}",
                        chunk.base_offset, chunk.last_offset
                    )));
                }
                *log_end = chunk.last_offset + 1;
            }
            Changes {
                guards: vec![registered],
                ..Changes::put(Record::Flush(FlushRecord::new(object_key, &commits)))
            }
        };
        self.commit(guard, changes).await.map_err(fenced)
    }

    pub fn partition_log(&self, topic_id: Uuid, partition: i32) -> Option<PartitionLog> {
        Some(self.read().partition(topic_id, partition)?.to_log())
    }

    /// The bytes of the partition's committed chunks, still in flush objects (not yet in
    /// segments), without copying its log.
    pub fn chunk_bytes(&self, topic_id: Uuid, partition: i32) -> Option<u64> {
        let state = self.read();
        let log = state.partition(topic_id, partition)?;
        Some(log.chunks.values().map(|chunk| chunk.size).sum())
    }

    /// Compaction: replaces what covers exactly the offsets of `segments` (contiguous,
    /// oldest first) with them, atomically: the stored segments starting in their range (small
    /// ones merged into a new one, contiguous from its base offset), then the chunks up to
    /// their end (at least one). NonContiguousCommit if the segments do not follow each other
    /// or the log no longer holds exactly those. The partition's producer states are stored
    /// with them, so the flush records of the replaced chunks can go.
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
        let registered = self.registration_guard()?;
        let broker_id = self.broker_id();
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let log = led_partition(&state, t, p, broker_id, leader_epoch)?;
            let overlapped = log
                .segments
                .range(..base)
                .next_back()
                .is_some_and(|(_, s)| s.last_offset >= base);
            let mut next = base;
            let mut merged = Vec::new();
            let mut replaced = 0;
            if last >= base && !overlapped {
                for segment in log.segments.range(base..=last).map(|(_, s)| s) {
                    // The LogCleaner rewrites its segments itself: compaction never
                    // takes one in (it may have read it before the cleaner replaced it).
                    if segment.base_offset != next || segment.cleaned {
                        break;
                    }
                    next = segment.last_offset + 1;
                    merged.push(segment.base_offset);
                }
                let chunks = log.chunks.range(next..).map(|(_, chunk)| chunk);
                for chunk in chunks.take_while(|chunk| chunk.last_offset <= last) {
                    if chunk.base_offset != next {
                        break;
                    }
                    next = chunk.last_offset + 1;
                    replaced += 1;
                }
            }
            if next != last + 1 || replaced == 0 {
                return Err(CoordinatorError::NonContiguousCommit(format!(
                    "the chunks of {t}-{p} do not tile the segments' offsets {base}..={last}"
                )));
            }
            let deletes = keys_not_taken_over(t, p, merged, &segments);
            let mut puts: Vec<Record> = segments
                .into_iter()
                .map(|segment| Record::Segment(t, p, segment))
                .collect();
            puts.push(Record::Producers(t, p, log.producer_snapshot()));
            Changes {
                guards: vec![registered],
                puts,
                deletes,
                ..Changes::default()
            }
        };
        self.commit(guard, changes).await.map_err(fenced)
    }

    /// The LogCleaner: replaces `replaced` (segments as the clean read them, contiguous,
    /// oldest first) with `cleaned`, which must cover exactly their offsets, atomically.
    /// Fenced as the other log commits (this broker's registration, the partition's leader
    /// and leader epoch: FencedLeaderEpoch). NonContiguousCommit if the stored segments are
    /// no longer exactly `replaced` (retention, DeleteRecords or compaction changed them
    /// since the clean read them) or `cleaned` does not tile their offsets: the clean is
    /// then simply done again, and the objects it wrote are garbage.
    pub async fn replace_segments(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        replaced: &[SegmentMeta],
        cleaned: Vec<SegmentMeta>,
    ) -> Result<(), CoordinatorError> {
        let (t, p) = (topic_id, partition);
        let tiles = |segments: &[SegmentMeta]| {
            segments.windows(2).all(|pair| {
                pair[0].last_offset >= pair[0].base_offset - 1
                    && pair[1].base_offset == pair[0].last_offset + 1
            })
        };
        let same_range = match (
            replaced.first(),
            replaced.last(),
            cleaned.first(),
            cleaned.last(),
        ) {
            (Some(rf), Some(rl), Some(cf), Some(cl)) => {
                rf.base_offset == cf.base_offset && rl.last_offset == cl.last_offset
            }
            _ => false,
        };
        if !same_range || !tiles(replaced) || !tiles(&cleaned) {
            return Err(CoordinatorError::NonContiguousCommit(format!(
                "the cleaned segments of {t}-{p} do not cover exactly the segments they replace"
            )));
        }
        let registered = self.registration_guard()?;
        let broker_id = self.broker_id();
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let log = led_partition(&state, t, p, broker_id, leader_epoch)?;
            if let Some(changed) = replaced
                .iter()
                .find(|s| log.segments.get(&s.base_offset) != Some(*s))
            {
                return Err(CoordinatorError::NonContiguousCommit(format!(
                    "the segment of {t}-{p} at offset {} changed while it was cleaned",
                    changed.base_offset
                )));
            }
            let replaced_bases = replaced.iter().map(|s| s.base_offset);
            let deletes = keys_not_taken_over(t, p, replaced_bases, &cleaned);
            let puts = cleaned
                .into_iter()
                .map(|segment| Record::Segment(t, p, segment))
                .collect();
            Changes {
                guards: vec![registered],
                puts,
                deletes,
                ..Changes::default()
            }
        };
        self.commit(guard, changes).await.map_err(fenced)
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
            let deletes = log
                .segments
                .values()
                .take_while(|s| below(s.last_offset))
                .map(|s| Key::Segment(t, p, s.base_offset))
                .collect();
            let mut producers = log.producer_snapshot();
            producers.producers.retain(|producer| {
                producer.current_txn_first_offset.is_some()
                    || producer
                        .batches
                        .last()
                        .is_some_and(|batch| !below(batch.last_offset))
            });
            Changes {
                puts: vec![
                    Record::LogStart(t, p, offset),
                    Record::Producers(t, p, producers),
                ],
                deletes,
                ..Changes::default()
            }
        };
        self.commit(guard, changes).await?;
        Ok(offset)
    }

    /// Deletes the flush records none of whose chunks is part of a log any more (compacted,
    /// below the log start, or of a deleted topic), keeping the store's keyspace bounded.
    /// Returns how many it deleted.
    pub async fn delete_dead_flush_records(&self) -> Result<usize, CoordinatorError> {
        let mut deleted = 0;
        loop {
            let guard = self.lock_writes().await;
            let deletes: Vec<Key> = {
                let state = self.read();
                state
                    .flushes
                    .iter()
                    .filter(|(_, live)| **live == 0)
                    .take(FLUSH_DELETES_PER_TXN)
                    .map(|(object_key, _)| Key::Flush(object_key.clone()))
                    .collect()
            };
            if deletes.is_empty() {
                return Ok(deleted);
            }
            let count = deletes.len();
            let changes = Changes {
                deletes,
                ..Changes::default()
            };
            self.commit(guard, changes).await?;
            deleted += count;
        }
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

/// A guard refusing a log commit means this broker's registration is gone.
fn fenced(error: CoordinatorError) -> CoordinatorError {
    match error {
        CoordinatorError::Store(MetaStoreError::GuardFailed) => CoordinatorError::BrokerFenced(
            "this broker's registration expired; its partitions moved to other brokers".into(),
        ),
        other => other,
    }
}

fn unknown_partition(topic_id: Uuid, partition: i32) -> CoordinatorError {
    CoordinatorError::UnknownTopicOrPartition(format!("Unknown partition {topic_id}-{partition}."))
}

/// The partition's log, if this broker leads it at `leader_epoch` (else FencedLeaderEpoch).
fn led_partition(
    state: &State,
    topic_id: Uuid,
    partition: i32,
    broker_id: Option<i32>,
    leader_epoch: i32,
) -> Result<&PartitionState, CoordinatorError> {
    let log = state
        .partition(topic_id, partition)
        .ok_or_else(|| unknown_partition(topic_id, partition))?;
    match log.leader {
        Some(leader)
            if leader.leader_epoch == leader_epoch && Some(leader.broker_id) == broker_id =>
        {
            Ok(log)
        }
        current => Err(CoordinatorError::FencedLeaderEpoch(format!(
            "leader epoch {leader_epoch} of {topic_id}-{partition} is not the current one ({})",
            current.map_or(-1, |leader| leader.leader_epoch)
        ))),
    }
}

/// The keys of replaced segments that no new segment takes over: a replaced segment's key
/// that a new one reuses is put, not deleted.
fn keys_not_taken_over(
    topic_id: Uuid,
    partition: i32,
    replaced_bases: impl IntoIterator<Item = i64>,
    new: &[SegmentMeta],
) -> Vec<Key> {
    replaced_bases
        .into_iter()
        .filter(|base| !new.iter().any(|s| s.base_offset == *base))
        .map(|base| Key::Segment(topic_id, partition, base))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use uuid::Uuid;

    use super::super::test_support::{
        broker, chunk, commit, one_object, open, segment, snapshot, TestStore,
    };
    use super::*;
    use crate::{ChunkMeta, ProducerBatch, ProducerState};

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
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }

    #[tokio::test]
    async fn flushes_extend_the_log() {
        let (_store, coordinator, t) = setup(2).await;
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!((log.log_start_offset, log.high_watermark), (0, 0));
        coordinator
            .commit_flush(one_object(vec![
                commit(t, 0, 0, chunk(0, 9)),
                commit(t, 1, 0, chunk(0, 0)),
            ]))
            .await
            .unwrap();
        // Two chunks of one partition in one flush follow each other.
        coordinator
            .commit_flush(one_object(vec![
                commit(t, 0, 0, chunk(10, 14)),
                commit(t, 0, 0, chunk(15, 15)),
            ]))
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.high_watermark, 16);
        let ranges: Vec<_> = log
            .chunks
            .iter()
            .map(|c| (c.base_offset, c.last_offset))
            .collect();
        assert_eq!(ranges, [(0, 9), (10, 14), (15, 15)]);
        assert_eq!(log.chunks[2].object_key, log.chunks[1].object_key);
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

    fn cleaned(base: i64, last: i64) -> SegmentMeta {
        SegmentMeta {
            log_key: format!("topics/t/0/{base:020}-cleaned.log"),
            size: 10,
            cleaned: true,
            ..segment(base, last)
        }
    }

    #[tokio::test]
    async fn cleaned_segments_replace_exactly_the_segments_read_fenced_by_leader_epoch() {
        let (_store, coordinator, t) = setup(1).await;
        flush_chunks(&coordinator, t, &[(0, 9), (10, 19), (20, 29)]).await;
        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 9), segment(10, 19)])
            .await
            .unwrap();
        let read = [segment(0, 9), segment(10, 19)];
        let before = snapshot(&coordinator);
        let fenced = coordinator
            .replace_segments(t, 0, 1, &read, vec![cleaned(0, 19)])
            .await;
        assert!(
            matches!(fenced, Err(CoordinatorError::FencedLeaderEpoch(_))),
            "{fenced:?}"
        );
        // A segment that is not what is stored, cleaned segments that do not cover exactly
        // the replaced offsets, or no segment at all.
        let stale = [
            SegmentMeta {
                size: 7,
                ..segment(0, 9)
            },
            segment(10, 19),
        ];
        for (replaced, new) in [
            (&stale[..], vec![cleaned(0, 19)]),
            (&read[..], vec![cleaned(0, 15)]),
            (&read[..], vec![cleaned(0, 9), cleaned(12, 19)]),
            (&read[..], vec![cleaned(0, 29)]),
            (&read[..1], vec![cleaned(0, 19)]),
            (&read[..], vec![]),
        ] {
            let result = coordinator.replace_segments(t, 0, 0, replaced, new).await;
            assert!(
                matches!(result, Err(CoordinatorError::NonContiguousCommit(_))),
                "{result:?}"
            );
        }
        assert_eq!(snapshot(&coordinator), before);

        // Two cleaned segments, one of them empty (its range is still covered).
        coordinator
            .replace_segments(t, 0, 0, &read, vec![cleaned(0, 4), cleaned(5, 19)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.segments, [cleaned(0, 4), cleaned(5, 19)]);
        assert_eq!(log.chunks, [chunk(20, 29)]);
        assert_eq!(log.high_watermark, 30);
        // Compaction never merges a cleaned segment.
        let merge = coordinator
            .commit_segments(t, 0, 0, vec![segment(5, 29)])
            .await;
        assert!(matches!(
            merge,
            Err(CoordinatorError::NonContiguousCommit(_))
        ));
        // What the clean read is gone: the same commit again is stale.
        let again = coordinator
            .replace_segments(t, 0, 0, &read, vec![cleaned(0, 19)])
            .await;
        assert!(matches!(
            again,
            Err(CoordinatorError::NonContiguousCommit(_))
        ));
        // Retention removed a segment the clean read: stale too.
        let read = [cleaned(0, 4), cleaned(5, 19)];
        coordinator.advance_log_start_offset(t, 0, 5).await.unwrap();
        let after_retention = coordinator
            .replace_segments(t, 0, 0, &read, vec![cleaned(0, 19)])
            .await;
        assert!(matches!(
            after_retention,
            Err(CoordinatorError::NonContiguousCommit(_))
        ));
        let referenced = coordinator.referenced_objects();
        assert!(referenced.contains(&cleaned(5, 19).log_key));
        assert!(!referenced.contains(&segment(10, 19).log_key));
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
    async fn a_segment_takes_in_the_small_segments_before_its_chunks() {
        let (store, coordinator, t) = setup(1).await;
        flush_chunks(&coordinator, t, &[(0, 9), (10, 19), (20, 29), (30, 39)]).await;
        for (base, last) in [(0, 9), (10, 19)] {
            coordinator
                .commit_segments(t, 0, 0, vec![segment(base, last)])
                .await
                .unwrap();
        }
        let before = snapshot(&coordinator);
        // Starts inside a segment; takes in segments but no chunk.
        for (base, last) in [(5, 29), (0, 19)] {
            let result = coordinator
                .commit_segments(t, 0, 0, vec![segment(base, last)])
                .await;
            assert!(
                matches!(result, Err(CoordinatorError::NonContiguousCommit(_))),
                "{base}..={last}: {result:?}"
            );
        }
        assert_eq!(snapshot(&coordinator), before);

        // The last segment and a chunk, then both segments and the last chunk.
        let segment_keys = || {
            let keys = store.keys();
            keys.iter().filter(|k| k.contains("/segments/")).count()
        };
        coordinator
            .commit_segments(t, 0, 0, vec![segment(10, 29)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.segments, vec![segment(0, 9), segment(10, 29)]);
        assert_eq!(log.chunks, vec![chunk(30, 39)]);
        assert_eq!(segment_keys(), 2);
        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 39)])
            .await
            .unwrap();
        let log = coordinator.partition_log(t, 0).unwrap();
        assert_eq!(log.segments, vec![segment(0, 39)]);
        assert!(log.chunks.is_empty());
        assert_eq!(log.high_watermark, 40);
        assert_eq!(segment_keys(), 1, "{:?}", store.keys());
        // What the store holds is what the watch applied.
        let reopened = open(&store).await;
        assert_eq!(snapshot(&reopened), snapshot(&coordinator));
    }

    #[tokio::test]
    async fn advance_log_start_offset_drops_whole_entries() {
        let (_store, coordinator, t) = setup(1).await;
        let mut first = commit(t, 0, 0, chunk(0, 9));
        first.producers = vec![producer(1, 0, &[(0, 9)])];
        let mut second = commit(t, 0, 0, chunk(10, 19));
        second.producers = vec![producer(2, 0, &[(0, 15)])];
        coordinator
            .commit_flush(one_object(vec![first, second]))
            .await
            .unwrap();
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
        let ranges: Vec<_> = log
            .chunks
            .iter()
            .map(|c| (c.base_offset, c.last_offset))
            .collect();
        assert_eq!(ranges, [(10, 19), (20, 29)]);
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

    #[tokio::test]
    async fn a_flush_of_ten_thousand_partitions_is_one_small_store_operation() {
        let object_key = "flush/1/0123456789abcdef0123456789abcdef.flush".to_string();
        let topics = [Uuid::new_v4(), Uuid::new_v4()];
        let commits: Vec<_> = (0..10_000i64)
            .map(|i| {
                let mut chunk = chunk(1_000_000 + i, 1_000_099 + i);
                chunk.object_key = object_key.clone();
                chunk.byte_range = (i as u64) * 100_000..(i as u64 + 1) * 100_000;
                ChunkCommit {
                    topic_id: topics[(i % 2) as usize],
                    partition: (i / 2) as i32,
                    leader_epoch: 3,
                    chunk,
                    producers: vec![producer(1_000 + i, 2, &[(1_000, 1_000_099 + i)])],
                }
            })
            .collect();
        let record = Record::Flush(FlushRecord::new(object_key, &commits));
        let changes = Changes {
            guards: vec![crate::metadata_store::Guard::Equals(
                "brokers/1".into(),
                bytes::Bytes::from_static(b"{}"),
            )],
            ..Changes::put(record.clone())
        };
        let txn = changes.to_txn();
        assert_eq!(txn.operations(), 2);
        let bytes = record.value().len();
        assert!(bytes < crate::etcd::MAX_REQUEST_BYTES, "{bytes} bytes");
        // Decoding gives every chunk back.
        let Record::Flush(flush) =
            Record::decode(&record.key().to_string(), &record.value()).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(flush.chunks().unwrap().len(), 10_000);
    }

    #[tokio::test]
    async fn compacted_flush_records_are_deleted_and_producers_survive_a_reload() {
        let (store, coordinator, t) = setup(2).await;
        let mut first = commit(t, 0, 0, chunk(0, 9));
        first.producers = vec![producer(7, 0, &[(0, 9)])];
        let other = commit(t, 1, 0, chunk(0, 4));
        coordinator
            .commit_flush(one_object(vec![first, other]))
            .await
            .unwrap();
        let mut second = commit(t, 0, 0, chunk(10, 19));
        second.producers = vec![producer(7, 0, &[(1, 19)])];
        coordinator.commit_flush(vec![second]).await.unwrap();
        let flush_keys = |store: &TestStore| {
            store
                .keys()
                .into_iter()
                .filter(|k| k.starts_with("flushes/"))
                .count()
        };
        assert_eq!(flush_keys(&store), 2);

        // Partition 1 still needs the first flush record: nothing can go yet.
        coordinator
            .commit_segments(t, 0, 0, vec![segment(0, 19)])
            .await
            .unwrap();
        assert_eq!(coordinator.delete_dead_flush_records().await.unwrap(), 1);
        assert_eq!(flush_keys(&store), 1);
        coordinator.advance_log_start_offset(t, 1, 5).await.unwrap();
        assert_eq!(coordinator.delete_dead_flush_records().await.unwrap(), 1);
        assert_eq!(flush_keys(&store), 0);

        let reopened = open(&store).await;
        let log = reopened.partition_log(t, 0).unwrap();
        assert!(log.chunks.is_empty());
        assert_eq!(log.segments, vec![segment(0, 19)]);
        assert_eq!(log.producers, vec![producer(7, 0, &[(0, 9), (1, 19)])]);
        assert_eq!(reopened.partition_log(t, 1).unwrap().high_watermark, 5);
    }
}
