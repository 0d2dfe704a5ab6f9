//! The flusher: seals the buffered batches of all partitions into one flush object, PUTs it,
//! and commits every partition's chunk to the coordinator in one call, so object PUTs and
//! coordinator transactions follow the flush rate, not the partition count. What arrives
//! meanwhile goes into the next object (group commit). Under load a full object starts its
//! PUT while the previous flush is still in flight, so the store is not left idle while an
//! object is sealed and committed; each flush still commits after the one before it, which
//! keeps each partition's chunks in offset order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::error::CoordinatorError;
use coordinator::ChunkCommit;
use segment_store::formats::flush_object::{flush_object_key, FlushObjectBuilder};
use segment_store::Payload;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::in_flight_objects::InFlightGuard;
use crate::partition::{Partition, PendingChunk};

const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Flushes whose PUT and commit may be under way at once (two measured faster than one at
/// full load, see bench/RESULTS.md; more were not tried).
const MAX_FLUSHES_IN_FLIGHT: usize = 2;

/// Runs until `shutdown` turns true, nothing is left buffered and every flush has committed.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let queue = &broker.flush_queue;
    let interval = broker.config.flush_interval;
    let mut last_start: Option<Instant> = None;
    let mut in_flight: VecDeque<JoinHandle<()>> = VecDeque::new();
    // Resolves when the latest flush has committed: the next one commits after it.
    let mut previous_commit: Option<oneshot::Receiver<()>> = None;
    loop {
        while queue.unsealed_bytes() == 0 {
            if *shutdown.borrow() {
                for flush in in_flight {
                    join(flush).await;
                }
                return;
            }
            tokio::select! {
                _ = queue.appended_since() => {}
                _ = shutdown.changed() => {}
            }
        }
        // Group commit: go at once when idle. Otherwise wait for a full object, or for the
        // interval to pass and the flushes in flight to finish: only full objects overlap,
        // so a busy broker writes big objects, not twice as many.
        loop {
            reap_finished(&mut in_flight).await;
            let due = last_start.map(|started| started + interval);
            let interval_passed = due.is_none_or(|due| Instant::now() >= due);
            if queue.unsealed_bytes() >= broker.config.flush_bytes
                || (interval_passed && in_flight.is_empty())
                || *shutdown.borrow()
            {
                break;
            }
            let interval_left = due.filter(|_| !interval_passed);
            tokio::select! {
                _ = tokio::time::sleep_until(interval_left.unwrap_or_else(Instant::now).into()),
                    if interval_left.is_some() => {}
                _ = queue.appended_since() => {}
                // Waiting on the task itself: a signal sent from inside it could arrive
                // before the task counts as finished, and then none would follow.
                () = oldest_finished(&mut in_flight) => {}
                _ = shutdown.changed() => {}
            }
        }
        if in_flight.len() >= MAX_FLUSHES_IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("flushes are in flight");
            join(oldest).await;
        }
        last_start = Some(Instant::now());
        let Some(sealed) = seal(&broker) else {
            continue;
        };
        let (committed, next_commit) = oneshot::channel();
        let after = previous_commit.replace(next_commit);
        let flushing = broker.clone();
        in_flight.push_back(tokio::spawn(async move {
            write_and_commit(&flushing, sealed, after).await;
            let _ = committed.send(());
        }));
    }
}

/// Drops the flushes that are done. One that panicked took its sealed batches with it, so
/// nothing after them can be committed in order: the flusher stops (and the process with
/// it) rather than go on accepting writes it would never acknowledge.
async fn reap_finished(in_flight: &mut VecDeque<JoinHandle<()>>) {
    for flush in std::mem::take(in_flight) {
        if flush.is_finished() {
            join(flush).await;
        } else {
            in_flight.push_back(flush);
        }
    }
}

/// Waits for the oldest flush in flight to finish and drops it; never resolves while none
/// is in flight. Cancel safe: the flush stays in flight until it has finished.
async fn oldest_finished(in_flight: &mut VecDeque<JoinHandle<()>>) {
    let Some(oldest) = in_flight.front_mut() else {
        return std::future::pending().await;
    };
    let result = oldest.await;
    in_flight.pop_front();
    check(result);
}

/// Waits for a flush task. One that panicked takes the flusher down with it (see
/// [`reap_finished`]); one cancelled means the runtime is shutting down.
async fn join(flush: JoinHandle<()>) {
    check(flush.await);
}

fn check(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// One flush from start to end, overlapping no other (for tests).
#[cfg(test)]
pub(crate) async fn flush(broker: &Broker) {
    if let Some(sealed) = seal(broker) {
        write_and_commit(broker, sealed, None).await;
    }
}

/// A flush object ready to PUT, and what its commit needs.
struct SealedFlush {
    /// Its id for [`UnflushedAge`].
    id: u64,
    started: Instant,
    key: String,
    object: Payload,
    chunks: Vec<(Arc<Partition>, PendingChunk)>,
    commits: Vec<ChunkCommit>,
    /// The append-buffer bytes the flush releases.
    buffered: usize,
    /// Keeps the object from the garbage collector until it is committed.
    in_flight: InFlightGuard,
}

/// Takes every partition's buffered batches into one flush object (None if there are none).
fn seal(broker: &Broker) -> Option<SealedFlush> {
    let started = Instant::now();
    let partitions = broker.flush_queue.take_dirty();
    let chunks: Vec<(Arc<Partition>, PendingChunk)> = partitions
        .into_iter()
        .filter_map(|p| p.take_pending().map(|chunk| (p, chunk)))
        .collect();
    if chunks.is_empty() {
        return None;
    }
    let key = flush_object_key(broker.broker_id);
    let in_flight = broker.in_flight.protect(vec![key.clone()]);
    let buffered: usize = chunks.iter().map(|(_, c)| c.bytes).sum();
    let id = broker.flush_queue.sealed(buffered);
    let mut builder = FlushObjectBuilder::new();
    let mut commits = Vec::with_capacity(chunks.len());
    for (partition, chunk) in &chunks {
        let batches: Vec<_> = chunk.batches.iter().map(|b| b.as_bytes().clone()).collect();
        let byte_range = builder.add_chunk(
            partition.topic_id,
            partition.index,
            chunk.base_offset,
            chunk.last_offset,
            &batches,
        );
        commits.push(ChunkCommit {
            topic_id: partition.topic_id,
            partition: partition.index,
            leader_epoch: partition.leader_epoch,
            chunk: Partition::chunk_meta(chunk, &key, byte_range),
            producers: chunk.producers.clone(),
        });
    }
    Some(SealedFlush {
        id,
        started,
        key,
        object: builder.finish(),
        chunks,
        commits,
        buffered,
        in_flight,
    })
}

/// PUTs the object, waits for `after` (the previous flush's commit), then commits and
/// publishes. Retries until done, because acks=0/1 batches in it were already acknowledged
/// and acks=all producers are waiting.
async fn write_and_commit(
    broker: &Broker,
    sealed: SealedFlush,
    after: Option<oneshot::Receiver<()>>,
) {
    let SealedFlush {
        id,
        started,
        key,
        object,
        chunks,
        commits,
        buffered,
        in_flight,
    } = sealed;
    let object_bytes = object.len();
    retry("flush object PUT", broker, || {
        broker.store.put(&key, object.clone())
    })
    .await;
    if let Some(after) = after {
        // An error means the previous flush task died, and its commit never comes.
        let _ = after.await;
    }
    let commit_started = Instant::now();
    let committed = commit(broker, commits).await;
    broker
        .metrics
        .flush_commit_latency
        .observe(commit_started.elapsed().as_secs_f64());
    // Committed (and so referenced), or refused for good: the collector may judge it now.
    drop(in_flight);

    let tail_limit = broker.tail_limit();
    for (partition, chunk) in chunks {
        if committed.contains(&(partition.topic_id, partition.index)) {
            partition.committed(chunk, tail_limit);
        } else {
            // Its next use loads it afresh from the committed log, if this broker still
            // leads it.
            broker.forget_partition(&partition);
        }
    }
    broker.buffer.add_permits(buffered);
    broker.flush_queue.flushed(id, buffered);
    let metrics = &broker.metrics;
    metrics.flushes.inc();
    metrics.flush_bytes.inc_by(object_bytes as u64);
    metrics
        .flush_latency
        .observe(started.elapsed().as_secs_f64());
}

/// Commits the chunks; a partition the coordinator refuses for good (deleted topic, deposed
/// leader) is dropped from the commit and the rest retried. Returns what was committed.
async fn commit(broker: &Broker, mut commits: Vec<ChunkCommit>) -> Vec<(uuid::Uuid, i32)> {
    let mut backoff = Backoff::new();
    loop {
        if commits.is_empty() {
            return Vec::new();
        }
        match broker.coordinator.commit_flush(commits.clone()).await {
            Ok(()) => return commits.iter().map(|c| (c.topic_id, c.partition)).collect(),
            Err(CoordinatorError::Store(e)) => {
                broker.metrics.flush_errors.inc();
                tracing::warn!(error = %e, "flush commit failed; retrying");
                backoff.wait().await;
            }
            Err(e @ (CoordinatorError::BrokerFenced(_) | CoordinatorError::NotRegistered)) => {
                // Every partition moved to other brokers, which serve them from the committed
                // log: nothing in this flush can ever be committed.
                broker.metrics.flush_errors.inc();
                tracing::error!(error = %e, partitions = commits.len(), "flush refused: this broker is fenced");
                return Vec::new();
            }
            Err(e) => {
                broker.metrics.flush_errors.inc();
                let before = commits.len();
                commits.retain(|c| still_committable(broker, c));
                tracing::warn!(
                    error = %e,
                    dropped = before - commits.len(),
                    "flush commit refused; dropping partitions this broker can no longer commit"
                );
                if commits.len() == before {
                    // Nothing identifiable to drop: a bug, not a transient condition.
                    tracing::error!(error = %e, "flush commit refused for every partition");
                    return Vec::new();
                }
            }
        }
    }
}

fn still_committable(broker: &Broker, commit: &ChunkCommit) -> bool {
    let leader = broker.coordinator.leader(commit.topic_id, commit.partition);
    let log = broker
        .coordinator
        .partition_log(commit.topic_id, commit.partition);
    matches!((leader, log), (Some(leader), Some(log))
        if leader.broker_id == broker.broker_id
            && leader.leader_epoch == commit.leader_epoch
            && log.high_watermark == commit.chunk.base_offset)
}

/// Retries a store operation with exponential backoff until it succeeds, logging the first
/// failure of a streak as a warning and counting every one.
async fn retry<F, Fut>(what: &str, broker: &Broker, mut operation: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), segment_store::store::StoreError>>,
{
    let mut backoff = Backoff::new();
    let mut failures = 0u32;
    loop {
        match operation().await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "{what} succeeded again");
                }
                return;
            }
            Err(e) => {
                broker.metrics.flush_errors.inc();
                if failures == 0 {
                    tracing::warn!(error = %e, "{what} failed; producers wait while it is retried");
                }
                failures += 1;
                backoff.wait().await;
            }
        }
    }
}

/// Exponential backoff between retries of a flush step.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(RETRY_BACKOFF_MIN)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(RETRY_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use coordinator::TopicMeta;
    use segment_store::backends::memory::MemoryStore;
    use segment_store::formats::flush_object::{read_flush_object_index, FLUSH_PREFIX};
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{
        self, broker, eventually, faulty_memory_store, record_batch, topic, GatedStore,
    };

    fn append(broker: &Broker, partition: &Arc<Partition>, count: i32) -> i64 {
        test_support::append(broker, partition, &record_batch(-1, -1, -1, count, 1_000))
    }

    /// Waits (at most 5 s) until the partition's high watermark is `high_watermark`.
    async fn committed_up_to(partition: &Partition, high_watermark: i64) {
        tokio::time::timeout(
            Duration::from_secs(5),
            partition
                .subscribe()
                .wait_for(|c| c.high_watermark == high_watermark),
        )
        .await
        .unwrap()
        .unwrap();
    }

    #[tokio::test]
    async fn one_flush_writes_one_object_for_all_partitions_and_commits_each() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let (broker, _dir) = broker(store.clone(), BrokerConfig::default()).await;
        let topic = topic(&broker, "orders", 2).await;
        let p0 = broker.partition(&topic, 0).unwrap();
        let p1 = broker.partition(&topic, 1).unwrap();
        append(&broker, &p0, 3);
        append(&broker, &p1, 2);
        append(&broker, &p0, 1);

        flush(&broker).await;

        let objects = store.list(FLUSH_PREFIX).await.unwrap();
        assert_eq!(
            objects.len(),
            1,
            "one object per flush, whatever the partition count"
        );
        let object = store.get(&objects[0].key).await.unwrap();
        let chunks = read_flush_object_index(&object).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(p0.commit_state().high_watermark, 4);
        assert_eq!(p1.commit_state().high_watermark, 2);
        let log = broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!(log.high_watermark, 4);
        assert_eq!(log.chunks[0].object_key, objects[0].key);
        assert_eq!(broker.flush_queue.buffered_bytes(), 0);
        let metrics = broker.metrics.encode();
        for timed in ["flush_duration_seconds", "flush_commit_duration_seconds"] {
            let line = format!("strata_{timed}_count 1");
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
    }

    #[tokio::test]
    async fn an_outage_holds_commits_back_and_they_complete_when_the_store_returns() {
        let faulty = faulty_memory_store();
        let (broker, _dir) = broker(faulty.clone(), BrokerConfig::default()).await;
        let topic = topic(&broker, "orders", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let (stop, stopped) = watch::channel(false);
        let flusher = tokio::spawn(run(broker.clone(), stopped));

        faulty.set_outage(true);
        let last = append(&broker, &partition, 5);
        let mut commits = partition.subscribe();
        let committed = tokio::time::timeout(Duration::from_millis(300), async {
            commits.wait_for(|c| c.high_watermark > last).await.is_ok()
        })
        .await;
        assert!(
            committed.is_err(),
            "nothing may be committed while the store is down"
        );
        assert!(broker.metrics.flush_errors.get() > 0);

        faulty.set_outage(false);
        tokio::time::timeout(
            Duration::from_secs(10),
            commits.wait_for(|c| c.high_watermark > last),
        )
        .await
        .expect("the flush completes once the store is back")
        .unwrap();
        let _ = stop.send(true);
        flusher.await.unwrap();
        assert_eq!(
            broker
                .coordinator
                .partition_log(topic.topic_id, 0)
                .unwrap()
                .high_watermark,
            5
        );
    }

    #[tokio::test]
    async fn shutdown_flushes_what_is_buffered_before_the_flusher_returns() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let config = BrokerConfig {
            flush_interval: Duration::from_secs(3600),
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store, config).await;
        let topic = topic(&broker, "orders", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let (stop, stopped) = watch::channel(false);
        let flusher = tokio::spawn(run(broker.clone(), stopped));
        append(&broker, &partition, 1);
        // A second append right after the first flush waits for the (hour-long) interval...
        committed_up_to(&partition, 1).await;
        append(&broker, &partition, 1);
        // ...but shutdown does not.
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), flusher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(partition.commit_state().high_watermark, 2);
    }

    /// A broker with a topic of 16 partitions, whose tail holds two and a half one-record
    /// batches per partition once all 16 are loaded.
    async fn broker_with_a_small_tail() -> (Arc<Broker>, tempfile::TempDir, TopicMeta) {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let batch_len = record_batch(-1, -1, -1, 1, 1_000).len();
        let config = BrokerConfig {
            tail_cache_bytes: 16 * (batch_len * 5 / 2),
            ..BrokerConfig::default()
        };
        let (broker, dir) = broker(store, config).await;
        let topic = topic(&broker, "many", 16).await;
        (broker, dir, topic)
    }

    #[tokio::test]
    async fn the_tail_stays_within_tail_cache_bytes_over_all_partitions() {
        let (broker, _dir, topic) = broker_with_a_small_tail().await;
        let partitions: Vec<_> = (0..16)
            .map(|index| broker.partition(&topic, index).unwrap())
            .collect();
        for (index, partition) in partitions.iter().enumerate() {
            for _ in 0..10 {
                append(&broker, partition, 1);
                flush(&broker).await;
            }
            let kept = partition.read_tail(8, usize::MAX, true);
            assert_eq!(kept.map(|batches| batches.len()), Some(2));
            assert!(
                partition.read_tail(7, usize::MAX, true).is_none(),
                "partition {index} keeps more than its share of the tail"
            );
        }
    }

    #[tokio::test]
    async fn batches_larger_than_a_partitions_share_of_the_tail_are_read_from_the_store() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let batch_len = record_batch(-1, -1, -1, 1, 1_000).len();
        // 16 partitions, each with a share of half a batch.
        let config = BrokerConfig {
            tail_cache_bytes: 16 * batch_len / 2,
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store, config).await;
        let topic = topic(&broker, "many", 16).await;
        let partitions: Vec<_> = (0..16)
            .map(|index| broker.partition(&topic, index).unwrap())
            .collect();
        for partition in &partitions {
            append(&broker, partition, 1);
        }
        flush(&broker).await;
        for (index, partition) in partitions.iter().enumerate() {
            assert!(
                partition.read_tail(0, usize::MAX, true).is_none(),
                "partition {index} keeps a batch over its share of the tail"
            );
            let read = broker
                .log_reader()
                .read(partition, 0, 1, usize::MAX, true)
                .await
                .unwrap();
            assert_eq!((read.record_count(), read.last_offset()), (1, Some(0)));
        }
    }

    #[tokio::test]
    async fn partitions_loaded_later_shrink_the_tail_of_idle_ones() {
        let (broker, _dir, topic) = broker_with_a_small_tail().await;
        // Alone, the first partition's share is the whole tail: all ten batches.
        let first = broker.partition(&topic, 0).unwrap();
        for _ in 0..10 {
            append(&broker, &first, 1);
            flush(&broker).await;
        }
        assert!(first.read_tail(0, usize::MAX, true).is_some());

        // Then it stops receiving and fifteen more partitions are loaded.
        for index in 1..16 {
            broker.partition(&topic, index).unwrap();
        }
        let kept = first.read_tail(8, usize::MAX, true);
        assert_eq!(kept.map(|batches| batches.len()), Some(2));
        assert!(
            first.read_tail(7, usize::MAX, true).is_none(),
            "an idle partition keeps the share it had before others were loaded"
        );
    }

    #[tokio::test]
    async fn a_full_flush_puts_while_the_previous_is_in_flight_and_commits_after_it() {
        let store = Arc::new(GatedStore::new(2));
        // Every append fills an object.
        let config = BrokerConfig {
            flush_bytes: 1,
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(store.clone(), config).await;
        let topic = topic(&broker, "orders", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let (stop, stopped) = watch::channel(false);
        let flusher = tokio::spawn(run(broker.clone(), stopped));
        let puts_started = || store.puts_started();

        append(&broker, &partition, 2);
        eventually("the first PUT", || puts_started() == 1).await;
        append(&broker, &partition, 3);
        eventually("the second PUT, the first still in flight", || {
            puts_started() == 2
        })
        .await;

        // The second object is stored first, but its chunk follows the first one's.
        store.release(1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(partition.commit_state().high_watermark, 0);
        let log = || broker.coordinator.partition_log(topic.topic_id, 0).unwrap();
        assert_eq!(log().high_watermark, 0);

        store.release(0);
        committed_up_to(&partition, 5).await;
        let chunks: Vec<(i64, i64)> = log()
            .chunks
            .iter()
            .map(|c| (c.base_offset, c.last_offset))
            .collect();
        assert_eq!(chunks, [(0, 1), (2, 4)]);
        let tail = partition.read_tail(0, usize::MAX, true).unwrap();
        let offsets: Vec<i64> = tail.iter().map(|b| b.base_offset()).collect();
        assert_eq!(
            offsets,
            [0, 2],
            "the tail holds the batches in offset order"
        );
        let _ = stop.send(true);
        flusher.await.unwrap();
        assert_eq!(broker.flush_queue.buffered_bytes(), 0);
    }

    /// A batch that arrives while a flush is in flight waits for it (one flush at a time
    /// below a full object), then goes out with no further append to wake the flusher: the
    /// producers waiting on it may send nothing more until it is acknowledged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_waiting_for_the_flush_in_flight_goes_out_when_that_flush_ends() {
        for round in 0..20 {
            let store = Arc::new(GatedStore::new(1));
            let (broker, _dir) = broker(store.clone(), BrokerConfig::default()).await;
            let topic = topic(&broker, "orders", 1).await;
            let partition = broker.partition(&topic, 0).unwrap();
            let (stop, stopped) = watch::channel(false);
            let flusher = tokio::spawn(run(broker.clone(), stopped));

            append(&broker, &partition, 1);
            eventually("the first PUT", || store.puts_started() == 1).await;
            tokio::time::sleep(broker.config.flush_interval * 2).await;
            append(&broker, &partition, 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                store.puts_started(),
                1,
                "round {round}: one flush at a time"
            );

            store.release(0);
            committed_up_to(&partition, 2).await;
            let _ = stop.send(true);
            flusher.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_flush_that_panics_stops_the_flusher_instead_of_losing_its_batches_quietly() {
        let store = Arc::new(GatedStore::panicking());
        let (broker, _dir) = broker(store, BrokerConfig::default()).await;
        let topic = topic(&broker, "orders", 1).await;
        let partition = broker.partition(&topic, 0).unwrap();
        let (_stop, stopped) = watch::channel(false);
        let flusher = tokio::spawn(run(broker.clone(), stopped));
        append(&broker, &partition, 1);
        // The next seal looks at the flushes in flight and finds the panic.
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&broker, &partition, 1);
        let stopped = tokio::time::timeout(Duration::from_secs(5), flusher)
            .await
            .expect("the flusher keeps running after a flush panicked");
        assert!(stopped.unwrap_err().is_panic());
    }
}
