//! A bounded LRU cache of object bytes in fixed, aligned blocks, on the fetch path.
//!
//! Objects are immutable, so a cached block never goes stale; `invalidate` only frees the
//! space of a deleted object. Concurrent misses on one block share a single store read,
//! and a reader moving through an object block by block gets the next block fetched in
//! the background before it asks.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::parts::Parts;
use crate::store::{ObjectStore, StoreError};

/// Blocks are this long and start at multiples of it; an object's last block may be shorter.
pub const BLOCK_SIZE: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from the cache (or from a read already under way).
    pub hits: u64,
    /// Blocks a reader had to fetch from the store.
    pub misses: u64,
    /// Bytes of the blocks fetched from the store (read-ahead included).
    pub bytes_read: u64,
}

/// Cheap to clone: clones share the cache.
#[derive(Debug, Clone)]
pub struct ReadCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    capacity_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Blocks by object key, then block index.
    objects: HashMap<String, HashMap<u64, Slot>>,
    /// Loaded blocks by last use, least recent first.
    lru: BTreeMap<u64, (String, u64)>,
    next_tick: u64,
    used_bytes: u64,
    stats: CacheStats,
}

#[derive(Debug)]
struct Slot {
    /// Filled once by whichever reader loads the block; other readers wait on it.
    cell: Arc<OnceCell<Bytes>>,
    /// The block's key in `lru`, once it is loaded and counted in `used_bytes`.
    tick: Option<u64>,
}

impl ReadCache {
    pub fn new(store: Arc<dyn ObjectStore>, capacity_bytes: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                capacity_bytes,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The bytes of `range` in object `key`, clipped to the object's end. A range within
    /// one block shares the cached buffer.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        Ok(self.get_parts(key, range).await?.join())
    }

    /// [`ReadCache::get_range`] as the slices of the cached blocks it covers, not joined.
    pub async fn get_parts(&self, key: &str, range: Range<u64>) -> Result<Parts, StoreError> {
        if range.start >= range.end {
            return Ok(Parts::default());
        }
        let mut parts = Vec::new();
        let mut last_full_block = None;
        for index in range.start / BLOCK_SIZE..=(range.end - 1) / BLOCK_SIZE {
            let block = self.inner.block(key, index).await?;
            let block_start = index * BLOCK_SIZE;
            let len = block.len() as u64;
            let from = range.start.saturating_sub(block_start).min(len);
            let to = (range.end - block_start).min(len);
            parts.push(block.slice(from as usize..to as usize));
            if len < BLOCK_SIZE {
                // The object ends in this block.
                last_full_block = None;
                break;
            }
            last_full_block = Some(index);
        }
        if let Some(index) = last_full_block {
            self.inner.read_ahead(key, index);
        }
        Ok(Parts::new(parts))
    }

    /// Drops every block of `key` (call it when the object is deleted).
    pub fn invalidate(&self, key: &str) {
        let mut state = self.inner.lock();
        if let Some(blocks) = state.objects.remove(key) {
            for slot in blocks.into_values() {
                state.forget(&slot);
            }
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.lock().stats
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Block `index` of `key`, from the cache or the store.
    async fn block(&self, key: &str, index: u64) -> Result<Bytes, StoreError> {
        let cell = {
            let mut state = self.lock();
            match state
                .slot_mut(key, index)
                .map(|slot| Arc::clone(&slot.cell))
            {
                Some(cell) => {
                    state.stats.hits += 1;
                    if let Some(data) = cell.get() {
                        state.touch(key, index);
                        return Ok(data.clone());
                    }
                    // Another reader is loading it: wait for that read.
                    cell
                }
                None => {
                    state.stats.misses += 1;
                    state.new_slot(key, index)
                }
            }
        };
        self.load(key, index, &cell).await
    }

    /// Fills `cell` (the slot of block `index` of `key`) from the store, unless another
    /// reader already did, and accounts for the new block.
    async fn load(
        &self,
        key: &str,
        index: u64,
        cell: &Arc<OnceCell<Bytes>>,
    ) -> Result<Bytes, StoreError> {
        let mut loaded = false;
        let result = cell
            .get_or_try_init(|| async {
                loaded = true;
                let start = index * BLOCK_SIZE;
                self.store.get_range(key, start..start + BLOCK_SIZE).await
            })
            .await;
        let mut state = self.lock();
        match result {
            Ok(data) => {
                if loaded {
                    state.stats.bytes_read += data.len() as u64;
                    state.insert_loaded(key, index, cell, self.capacity_bytes);
                }
                Ok(data.clone())
            }
            Err(e) => {
                // Leave no empty slot behind, so the next reader tries again.
                state.remove_unloaded(key, index, cell);
                Err(e)
            }
        }
    }

    /// Fetches block `index + 1` in the background if the reader is going through the
    /// object in order (block `index - 1` is cached) and the block is not there yet.
    fn read_ahead(self: &Arc<Self>, key: &str, index: u64) {
        let next = index + 1;
        let cell = {
            let mut state = self.lock();
            let Some(blocks) = state.objects.get(key) else {
                return;
            };
            let sequential = index > 0
                && blocks
                    .get(&(index - 1))
                    .is_some_and(|slot| slot.tick.is_some());
            if !sequential || blocks.contains_key(&next) {
                return;
            }
            state.new_slot(key, next)
        };
        let inner = Arc::clone(self);
        let key = key.to_string();
        tokio::spawn(async move {
            if let Err(error) = inner.load(&key, next, &cell).await {
                tracing::debug!(%key, block = next, %error, "read-ahead failed");
            }
        });
    }
}

impl State {
    /// Inserts an empty slot for a block about to be read; returns its cell.
    fn new_slot(&mut self, key: &str, index: u64) -> Arc<OnceCell<Bytes>> {
        let cell = Arc::new(OnceCell::new());
        let slot = Slot {
            cell: Arc::clone(&cell),
            tick: None,
        };
        self.objects
            .entry(key.to_string())
            .or_default()
            .insert(index, slot);
        cell
    }

    fn slot_mut(&mut self, key: &str, index: u64) -> Option<&mut Slot> {
        self.objects.get_mut(key)?.get_mut(&index)
    }

    fn remove_slot(&mut self, key: &str, index: u64) -> Option<Slot> {
        let blocks = self.objects.get_mut(key)?;
        let slot = blocks.remove(&index);
        if blocks.is_empty() {
            self.objects.remove(key);
        }
        slot
    }

    /// Marks a block most recently used.
    fn touch(&mut self, key: &str, index: u64) {
        let tick = self.next_tick;
        let Some(slot) = self.slot_mut(key, index) else {
            return;
        };
        let Some(old) = slot.tick.replace(tick) else {
            return;
        };
        self.next_tick += 1;
        let entry = self.lru.remove(&old).expect("a loaded block is in the LRU");
        self.lru.insert(tick, entry);
    }

    /// Counts a block just loaded into `cell`, then evicts down to `capacity_bytes`.
    fn insert_loaded(
        &mut self,
        key: &str,
        index: u64,
        cell: &Arc<OnceCell<Bytes>>,
        capacity_bytes: u64,
    ) {
        let len = cell.get().map_or(0, Bytes::len) as u64;
        let tick = self.next_tick;
        // The slot may have been invalidated (or replaced) while the block was read.
        let Some(slot) = self
            .slot_mut(key, index)
            .filter(|slot| Arc::ptr_eq(&slot.cell, cell))
        else {
            return;
        };
        if len == 0 {
            // Past the object's end: nothing worth keeping.
            self.remove_slot(key, index);
            return;
        }
        slot.tick = Some(tick);
        self.next_tick += 1;
        self.lru.insert(tick, (key.to_string(), index));
        self.used_bytes += len;
        while self.used_bytes > capacity_bytes {
            let Some((_, (key, index))) = self.lru.pop_first() else {
                break;
            };
            if let Some(slot) = self.remove_slot(&key, index) {
                self.used_bytes -= slot.cell.get().map_or(0, Bytes::len) as u64;
            }
        }
    }

    fn remove_unloaded(&mut self, key: &str, index: u64, cell: &Arc<OnceCell<Bytes>>) {
        let unloaded = self
            .slot_mut(key, index)
            .is_some_and(|slot| Arc::ptr_eq(&slot.cell, cell) && slot.cell.get().is_none());
        if unloaded {
            self.remove_slot(key, index);
        }
    }

    /// Releases the space of a slot taken out of `objects`.
    fn forget(&mut self, slot: &Slot) {
        if let Some(tick) = slot.tick {
            self.lru.remove(&tick);
            self.used_bytes -= slot.cell.get().map_or(0, Bytes::len) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::simulate_failures::{FaultConfig, FaultyStore};

    const MIB: u64 = BLOCK_SIZE;

    /// A cache over a store holding "a" (3.5 MiB) and "b" and "c" (4 MiB each), with the
    /// store's call counter.
    async fn cache(
        capacity_bytes: u64,
        config: FaultConfig,
    ) -> (ReadCache, Arc<FaultyStore>, Bytes) {
        let memory = MemoryStore::new();
        let data = Bytes::from(
            (0..7 * MIB / 2)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        memory.put("a", data.clone().into()).await.unwrap();
        memory
            .put("b", Bytes::from(vec![1; 4 * MIB as usize]).into())
            .await
            .unwrap();
        memory
            .put("c", Bytes::from(vec![2; 4 * MIB as usize]).into())
            .await
            .unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(memory), config));
        (ReadCache::new(store.clone(), capacity_bytes), store, data)
    }

    fn stats(hits: u64, misses: u64) -> (u64, u64) {
        (hits, misses)
    }

    fn hits_and_misses(cache: &ReadCache) -> (u64, u64) {
        let stats = cache.stats();
        (stats.hits, stats.misses)
    }

    /// Waits for background reads to reach the store.
    async fn wait_for_calls(store: &FaultyStore, calls: u64) {
        for _ in 0..200 {
            if store.stats().calls >= calls {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("store saw {} calls, expected {calls}", store.stats().calls);
    }

    #[tokio::test]
    async fn a_second_read_of_a_block_is_a_zero_copy_hit() {
        let (cache, store, data) = cache(16 * MIB, FaultConfig::default()).await;
        let first = cache.get_range("a", 10..20).await.unwrap();
        assert_eq!(first, data.slice(10..20));
        assert_eq!(hits_and_misses(&cache), stats(0, 1));

        let second = cache.get_range("a", 100..200).await.unwrap();
        assert_eq!(second, data.slice(100..200));
        assert_eq!(hits_and_misses(&cache), stats(1, 1));
        assert_eq!(store.stats().calls, 1);
        assert_eq!(cache.stats().bytes_read, MIB);
        // Both slices point into the one cached block.
        assert_eq!(second.as_ptr() as usize - first.as_ptr() as usize, 90);
    }

    #[tokio::test]
    async fn ranges_across_blocks_are_assembled_and_clipped_to_the_object() {
        let (cache, _, data) = cache(16 * MIB, FaultConfig::default()).await;
        let range = MIB - 5..MIB + 5;
        assert_eq!(
            cache.get_range("a", range).await.unwrap(),
            data.slice(MIB as usize - 5..MIB as usize + 5)
        );
        let to_the_end = cache.get_range("a", 2 * MIB - 1..10 * MIB).await.unwrap();
        assert_eq!(to_the_end, data.slice(2 * MIB as usize - 1..));
        assert_eq!(cache.get_range("a", 0..u64::MAX).await.unwrap(), data);
        assert!(cache
            .get_range("a", 5 * MIB..6 * MIB)
            .await
            .unwrap()
            .is_empty());
        assert!(cache.get_range("a", 7..7).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_least_recently_used_block_is_evicted() {
        let (cache, _, _) = cache(2 * MIB, FaultConfig::default()).await;
        // Out of order, so no read-ahead gets in the way.
        cache.get_range("b", 0..1).await.unwrap();
        cache.get_range("b", 2 * MIB..2 * MIB + 1).await.unwrap();
        cache.get_range("b", 1..2).await.unwrap(); // b:0 is now the most recent
        assert_eq!(hits_and_misses(&cache), stats(1, 2));

        cache.get_range("c", 0..1).await.unwrap(); // evicts b:2
        assert_eq!(hits_and_misses(&cache), stats(1, 3));
        cache.get_range("b", 2..3).await.unwrap();
        assert_eq!(hits_and_misses(&cache), stats(2, 3), "b:0 stayed");
        cache.get_range("b", 2 * MIB..2 * MIB + 1).await.unwrap();
        assert_eq!(hits_and_misses(&cache), stats(2, 4), "b:2 was evicted");
    }

    #[tokio::test]
    async fn sequential_reads_fetch_the_next_block_ahead() {
        let (cache, store, _) = cache(16 * MIB, FaultConfig::default()).await;
        cache.get_range("b", 0..10).await.unwrap();
        cache.get_range("b", MIB..MIB + 10).await.unwrap();
        // b:1 followed b:0, so b:2 is read in the background.
        wait_for_calls(&store, 3).await;
        cache.get_range("b", 2 * MIB..2 * MIB + 10).await.unwrap();
        assert_eq!(hits_and_misses(&cache), stats(1, 2));
        // And reading b:2 after b:1 fetches b:3.
        wait_for_calls(&store, 4).await;
        cache.get_range("b", 3 * MIB..3 * MIB + 10).await.unwrap();
        assert_eq!(hits_and_misses(&cache), stats(2, 2));
    }

    #[tokio::test]
    async fn random_reads_do_not_read_ahead() {
        let (cache, store, _) = cache(16 * MIB, FaultConfig::default()).await;
        cache.get_range("b", 0..10).await.unwrap();
        cache.get_range("b", 2 * MIB..2 * MIB + 10).await.unwrap();
        cache.get_range("c", MIB..MIB + 10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.stats().calls, 3);
    }

    #[tokio::test]
    async fn concurrent_misses_on_a_block_share_one_read() {
        let config = FaultConfig {
            latency: Some(Duration::from_millis(50)),
            ..FaultConfig::default()
        };
        let (cache, store, data) = cache(16 * MIB, config).await;
        let (first, second) =
            tokio::join!(cache.get_range("a", 0..10), cache.get_range("a", 20..30));
        assert_eq!(first.unwrap(), data.slice(0..10));
        assert_eq!(second.unwrap(), data.slice(20..30));
        assert_eq!(store.stats().calls, 1);
        assert_eq!(hits_and_misses(&cache), stats(1, 1));
    }

    #[tokio::test]
    async fn failed_reads_are_not_cached() {
        let (cache, store, data) = cache(16 * MIB, FaultConfig::default()).await;
        assert!(matches!(
            cache.get_range("missing", 0..10).await,
            Err(StoreError::NotFound { .. })
        ));
        store
            .put("missing", Bytes::from_static(b"now here").into())
            .await
            .unwrap();
        assert_eq!(cache.get_range("missing", 0..3).await.unwrap(), "now");

        store.set_outage(true);
        assert!(matches!(
            cache.get_range("a", 0..10).await,
            Err(StoreError::Unavailable { .. })
        ));
        store.set_outage(false);
        assert_eq!(
            cache.get_range("a", 0..10).await.unwrap(),
            data.slice(0..10)
        );
    }

    #[tokio::test]
    async fn invalidate_drops_the_objects_blocks() {
        let (cache, store, _) = cache(16 * MIB, FaultConfig::default()).await;
        cache.get_range("a", 0..10).await.unwrap();
        cache.invalidate("a");
        store
            .put("a", Bytes::from_static(b"replaced").into())
            .await
            .unwrap();
        assert_eq!(cache.get_range("a", 0..10).await.unwrap(), "replaced");
        assert_eq!(hits_and_misses(&cache), stats(0, 2));
        assert_eq!(cache.inner.lock().used_bytes, 8);
    }
}
