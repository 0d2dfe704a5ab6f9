//! The flush queue: which partitions have batches buffered for the flusher, how many bytes
//! wait, and since when the oldest has waited.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use super::Partition;

/// Partitions with buffered batches, in the order they first had some.
pub struct FlushQueue {
    dirty: Mutex<Vec<Arc<Partition>>>,
    /// Bytes appended and not yet flushed; also the `strata_buffered_bytes` metric.
    buffered_bytes: Gauge,
    /// Bytes appended and not yet sealed into a flush object.
    unsealed_bytes: AtomicI64,
    pub unflushed: Arc<UnflushedAge>,
    wake: Notify,
}

impl FlushQueue {
    pub fn new(buffered_bytes: Gauge, unflushed: Arc<UnflushedAge>) -> Self {
        Self {
            dirty: Mutex::new(Vec::new()),
            buffered_bytes,
            unsealed_bytes: AtomicI64::new(0),
            unflushed,
            wake: Notify::new(),
        }
    }

    /// Called after every append of `bytes` (exactly the append-buffer permits the batch
    /// took); `newly_dirty` says the partition had nothing buffered.
    pub fn appended(&self, partition: &Arc<Partition>, bytes: usize, newly_dirty: bool) {
        // The first append after a seal makes its partition dirty, so the age of what is
        // unsealed changes only here, off the per-batch path.
        if newly_dirty {
            self.dirty.lock().unwrap().push(partition.clone());
            self.unflushed.appended();
        }
        self.buffered_bytes.inc_by(bytes as i64);
        self.unsealed_bytes
            .fetch_add(bytes as i64, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// The partitions with buffered batches, in the order they first had some; the queue
    /// starts afresh.
    pub(crate) fn take_dirty(&self) -> Vec<Arc<Partition>> {
        std::mem::take(&mut *self.dirty.lock().unwrap())
    }

    /// Resolves after the next append (at once if one came since the last call).
    pub(crate) async fn appended_since(&self) {
        self.wake.notified().await
    }

    /// A flush took `bytes` of what was appended; returns its id.
    pub(crate) fn sealed(&self, bytes: usize) -> u64 {
        self.unsealed_bytes
            .fetch_sub(bytes as i64, Ordering::Relaxed);
        self.unflushed.sealed()
    }

    pub(crate) fn flushed(&self, flush: u64, bytes: usize) {
        self.buffered_bytes.dec_by(bytes as i64);
        self.unflushed.flushed(flush);
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes.get().max(0) as usize
    }

    /// A batch is counted after its append, so this may briefly lag what a seal took.
    pub(crate) fn unsealed_bytes(&self) -> usize {
        self.unsealed_bytes.load(Ordering::Relaxed).max(0) as usize
    }
}

/// When the oldest byte that is not flushed yet was appended. It grows while the store or
/// the coordinator stalls flushes, which `/readyz` and `strata_oldest_unflushed_seconds`
/// report.
#[derive(Debug, Default)]
pub struct UnflushedAge {
    state: Mutex<AgeState>,
}

#[derive(Debug, Default)]
struct AgeState {
    /// The first append since the last seal.
    unsealed_since: Option<tokio::time::Instant>,
    /// Flushes sealed and not yet committed, by id: the first append each holds.
    in_flight: BTreeMap<u64, tokio::time::Instant>,
    next_flush: u64,
}

impl UnflushedAge {
    pub(crate) fn appended(&self) {
        self.lock()
            .unsealed_since
            .get_or_insert_with(tokio::time::Instant::now);
    }

    /// A flush takes what was appended so far; returns its id.
    pub(crate) fn sealed(&self) -> u64 {
        let mut state = self.lock();
        let id = state.next_flush;
        state.next_flush += 1;
        let since = state
            .unsealed_since
            .take()
            .unwrap_or_else(tokio::time::Instant::now);
        state.in_flight.insert(id, since);
        id
    }

    pub(crate) fn flushed(&self, flush: u64) {
        self.lock().in_flight.remove(&flush);
    }

    /// How long the oldest byte not yet flushed has waited; zero when none waits.
    pub fn age(&self) -> Duration {
        let state = self.lock();
        state
            .in_flight
            .values()
            .chain(&state.unsealed_since)
            .min()
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
