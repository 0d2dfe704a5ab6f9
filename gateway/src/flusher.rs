//! The flusher: seals the buffered batches of all partitions into one flush object, PUTs it,
//! and commits every partition's chunk to the coordinator in one call (design.md, write path
//! step 5). One flush is in flight at a time, which keeps each partition's commits in offset
//! order; what arrives meanwhile goes into the next object (group commit).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::error::CoordinatorError;
use coordinator::ChunkCommit;
use prometheus_client::metrics::gauge::Gauge;
use segment_store::flush_object::{flush_object_key, FlushObjectBuilder};
use tokio::sync::{watch, Notify};

use crate::broker::Broker;
use crate::partition::{Partition, PendingChunk};

const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Partitions with buffered batches, in the order they first had some.
pub struct FlushQueue {
    dirty: Mutex<Vec<Arc<Partition>>>,
    /// Bytes appended and not yet flushed; also the `strata_buffered_bytes` metric.
    buffered_bytes: Gauge,
    wake: Notify,
}

impl FlushQueue {
    pub fn new(buffered_bytes: Gauge) -> Self {
        Self {
            dirty: Mutex::new(Vec::new()),
            buffered_bytes,
            wake: Notify::new(),
        }
    }

    /// Called after every append; `newly_dirty` says the partition had nothing buffered.
    pub fn appended(&self, partition: &Arc<Partition>, bytes: usize, newly_dirty: bool) {
        if newly_dirty {
            self.dirty.lock().unwrap().push(partition.clone());
        }
        self.buffered_bytes.inc_by(bytes as i64);
        self.wake.notify_one();
    }

    fn flushed(&self, bytes: usize) {
        self.buffered_bytes.dec_by(bytes as i64);
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes.get().max(0) as usize
    }
}

/// Runs until `shutdown` turns true and nothing is left buffered.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let queue = &broker.flush_queue;
    let interval = broker.config.flush_interval;
    let mut last_start: Option<Instant> = None;
    loop {
        while queue.buffered_bytes() == 0 {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = queue.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        // Right after a flush, wait for a full object or the interval; when idle, go at once.
        if let Some(started) = last_start {
            let due = started + interval;
            while queue.buffered_bytes() < broker.config.flush_bytes
                && Instant::now() < due
                && !*shutdown.borrow()
            {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = queue.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        last_start = Some(Instant::now());
        flush(&broker).await;
    }
}

/// One flush: seal, PUT, commit, publish. Retries until done, because acks=0/1 batches in
/// it were already acknowledged and acks=all producers are waiting.
pub(crate) async fn flush(broker: &Broker) {
    let started = Instant::now();
    let partitions = std::mem::take(&mut *broker.flush_queue.dirty.lock().unwrap());
    let chunks: Vec<(Arc<Partition>, PendingChunk)> = partitions
        .into_iter()
        .filter_map(|p| p.take_pending().map(|chunk| (p, chunk)))
        .collect();
    if chunks.is_empty() {
        return;
    }
    let key = flush_object_key(broker.broker_id);
    let buffered: usize = chunks.iter().map(|(_, c)| c.bytes).sum();
    let mut builder = FlushObjectBuilder::with_capacity(buffered);
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
    let object = builder.finish();
    let object_bytes = object.len();

    retry("flush object PUT", broker, || {
        broker.store.put(&key, object.clone())
    })
    .await;
    let committed = commit(broker, commits).await;

    let tail_limit = broker.tail_limit();
    for (partition, chunk) in chunks {
        if committed.contains(&(partition.topic_id, partition.index)) {
            partition.committed(chunk, tail_limit);
        } else {
            partition.close();
        }
    }
    broker.buffer.add_permits(buffered);
    broker.flush_queue.flushed(buffered);
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

    use segment_store::flush_object::{read_flush_object_index, FLUSH_PREFIX};
    use segment_store::memory::MemoryStore;
    use segment_store::simulate_failures::{FaultConfig, FaultyStore};
    use segment_store::store::ObjectStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{self, broker, record_batch, topic};

    fn append(broker: &Broker, partition: &Arc<Partition>, count: i32) -> i64 {
        test_support::append(broker, partition, &record_batch(-1, -1, -1, count, 1_000))
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
    }

    #[tokio::test]
    async fn an_outage_holds_commits_back_and_they_complete_when_the_store_returns() {
        let faulty = Arc::new(FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig::default(),
        ));
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
        tokio::time::timeout(
            Duration::from_secs(5),
            partition.subscribe().wait_for(|c| c.high_watermark == 1),
        )
        .await
        .unwrap()
        .unwrap();
        append(&broker, &partition, 1);
        // ...but shutdown does not.
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), flusher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(partition.commit_state().high_watermark, 2);
    }
}
