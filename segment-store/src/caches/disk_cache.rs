//! A local-disk tier under the [`ReadCache`](crate::caches::read_cache::ReadCache): the blocks it
//! reads from the object store are also kept as files in a directory, bounded in size and
//! evicted least recently used, so a consumer catching up on old data re-reads them from
//! disk after the memory cache has let them go.
//!
//! It is a store wrapper: block reads (aligned `BLOCK_SIZE` ranges, what the read cache
//! asks for) are cached, every other call passes through, and a put or delete of a key
//! drops its blocks. The directory's block files are removed when it is opened, because
//! the index of what they hold lives in memory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::caches::read_cache::BLOCK_SIZE;
use crate::payload::Payload;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

const BLOCK_EXTENSION: &str = "block";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCacheStats {
    /// Block reads served from disk.
    pub hits: u64,
    /// Block reads that went to the store.
    pub misses: u64,
    /// Bytes those misses read from the store.
    pub bytes_read: u64,
    /// Bytes in block files now.
    pub used_bytes: u64,
}

#[derive(Debug)]
pub struct DiskCache {
    inner: Arc<dyn ObjectStore>,
    dir: PathBuf,
    capacity_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Cached blocks by object key, then block index.
    blocks: HashMap<String, HashMap<u64, Block>>,
    /// Cached blocks by last use, least recent first.
    lru: BTreeMap<u64, (String, u64)>,
    next_tick: u64,
    /// Block reads from the store under way, by (key, index): a put or delete of the key
    /// removes them, and a read whose entry is gone does not cache what it read.
    loading: HashMap<(String, u64), u64>,
    /// Numbers files and loads; never reused.
    next_id: u64,
    stats: DiskCacheStats,
}

#[derive(Debug)]
struct Block {
    file: u64,
    len: u64,
    tick: u64,
}

impl DiskCache {
    /// Uses `dir` (created if missing) for at most `capacity_bytes` of blocks, and removes
    /// the block files a previous process left there. Blocks on the file system: call it at
    /// start-up.
    pub fn open(
        inner: Arc<dyn ObjectStore>,
        dir: impl AsRef<Path>,
        capacity_bytes: u64,
    ) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == BLOCK_EXTENSION) {
                fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            inner,
            dir,
            capacity_bytes,
            state: Mutex::new(State::default()),
        })
    }

    pub fn stats(&self) -> DiskCacheStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state consistent, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn file_path(&self, file: u64) -> PathBuf {
        self.dir.join(format!("{file}.{BLOCK_EXTENSION}"))
    }

    /// Block `index` of `key`: from its file if cached, else from the store and then kept.
    async fn block(&self, key: &str, index: u64, range: Range<u64>) -> Result<Bytes, StoreError> {
        if let Some(data) = self.cached(key, index).await {
            return Ok(data);
        }
        let load = {
            let mut state = self.lock();
            state.stats.misses += 1;
            let load = state.next_id();
            state.loading.insert((key.to_string(), index), load);
            load
        };
        let result = self.inner.get_range(key, range).await;
        let still_wanted = {
            let mut state = self.lock();
            let entry = (key.to_string(), index);
            let wanted = state.loading.get(&entry) == Some(&load);
            if wanted {
                state.loading.remove(&entry);
            }
            if let Ok(data) = &result {
                state.stats.bytes_read += data.len() as u64;
            }
            wanted
        };
        let data = result?;
        if still_wanted && !data.is_empty() {
            // Written before the read returns: a local write of one block costs far less
            // than the GET it will save.
            if let Err(e) = self.keep(key, index, data.clone()).await {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write to the read cache directory");
            }
        }
        Ok(data)
    }

    /// The block's bytes from its file, if it is cached and the file is readable.
    async fn cached(&self, key: &str, index: u64) -> Option<Bytes> {
        let (file, len) = {
            let mut state = self.lock();
            let tick = state.next_tick;
            let block = state.blocks.get_mut(key)?.get_mut(&index)?;
            let (file, len, old_tick) = (block.file, block.len, block.tick);
            block.tick = tick;
            state.next_tick += 1;
            let entry = state
                .lru
                .remove(&old_tick)
                .expect("a cached block is in the LRU");
            state.lru.insert(tick, entry);
            (file, len)
        };
        let path = self.file_path(file);
        let read = tokio::task::spawn_blocking(move || fs::read(path)).await;
        match read {
            Ok(Ok(data)) if data.len() as u64 == len => {
                self.lock().stats.hits += 1;
                Some(Bytes::from(data))
            }
            // A file cut short (the disk, or someone, truncated it) is not the block: forget it
            // and read from the store.
            Ok(Ok(_)) => {
                self.invalidate(key).await;
                None
            }
            // Evicted or invalidated while we read it: read from the store instead.
            _ => None,
        }
    }

    /// Writes a block to its file and indexes it, evicting down to the capacity.
    async fn keep(&self, key: &str, index: u64, data: Bytes) -> io::Result<()> {
        let len = data.len() as u64;
        if len > self.capacity_bytes {
            return Ok(());
        }
        let file = self.lock().next_id();
        let path = self.file_path(file);
        tokio::task::spawn_blocking(move || fs::write(path, &data))
            .await
            .map_err(io::Error::other)??;
        let evicted = {
            let mut state = self.lock();
            let tick = state.next_tick;
            state.next_tick += 1;
            let replaced = state
                .blocks
                .entry(key.to_string())
                .or_default()
                .insert(index, Block { file, len, tick });
            let mut evicted = Vec::new();
            if let Some(old) = replaced {
                state.lru.remove(&old.tick);
                state.stats.used_bytes -= old.len;
                evicted.push(old.file);
            }
            state.lru.insert(tick, (key.to_string(), index));
            state.stats.used_bytes += len;
            while state.stats.used_bytes > self.capacity_bytes {
                let (_, (key, index)) = state.lru.pop_first().expect("used bytes are in the LRU");
                let block = state.remove(&key, index).expect("an LRU entry is cached");
                state.stats.used_bytes -= block.len;
                evicted.push(block.file);
            }
            evicted
        };
        self.remove_files(evicted).await;
        Ok(())
    }

    /// Drops every block of `key`, and any read of it under way will not be cached.
    async fn invalidate(&self, key: &str) {
        let files = {
            let mut state = self.lock();
            state.loading.retain(|(loading, _), _| loading != key);
            let blocks = state.blocks.remove(key).unwrap_or_default();
            blocks
                .into_values()
                .map(|block| {
                    state.lru.remove(&block.tick);
                    state.stats.used_bytes -= block.len;
                    block.file
                })
                .collect()
        };
        self.remove_files(files).await;
    }

    async fn remove_files(&self, files: Vec<u64>) {
        if files.is_empty() {
            return;
        }
        let paths: Vec<_> = files.into_iter().map(|file| self.file_path(file)).collect();
        let removed = tokio::task::spawn_blocking(move || {
            for path in paths {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)
        .and_then(|removed| removed);
        if let Err(e) = removed {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove an evicted read cache file");
        }
    }
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn remove(&mut self, key: &str, index: u64) -> Option<Block> {
        let blocks = self.blocks.get_mut(key)?;
        let block = blocks.remove(&index);
        if blocks.is_empty() {
            self.blocks.remove(key);
        }
        block
    }
}

#[async_trait::async_trait]
impl ObjectStore for DiskCache {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let result = self.inner.put(key, data).await;
        self.invalidate(key).await;
        result
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        // A key is only created while free, so no block of it can be cached.
        self.inner.create(key, data).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let is_block =
            range.start.is_multiple_of(BLOCK_SIZE) && range.end == range.start + BLOCK_SIZE;
        if is_block {
            self.block(key, range.start / BLOCK_SIZE, range).await
        } else {
            self.inner.get_range(key, range).await
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let result = self.inner.delete(key).await;
        self.invalidate(key).await;
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::simulate_failures::{FaultConfig, FaultyStore};
    use crate::store::tests::check_contract;

    const MIB: u64 = BLOCK_SIZE;

    fn block(index: u64) -> Range<u64> {
        index * MIB..(index + 1) * MIB
    }

    /// A disk cache of `capacity_bytes` over a store holding "a" (2.5 MiB) and "b" (1 MiB).
    async fn setup(capacity_bytes: u64) -> (DiskCache, Arc<FaultyStore>, tempfile::TempDir, Bytes) {
        let memory = MemoryStore::new();
        let a: Bytes = (0..5 * MIB / 2)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<_>>()
            .into();
        memory.put("a", a.clone().into()).await.unwrap();
        memory
            .put("b", Bytes::from(vec![7; MIB as usize]).into())
            .await
            .unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(memory), FaultConfig::default()));
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(store.clone(), dir.path(), capacity_bytes).unwrap();
        (cache, store, dir, a)
    }

    fn block_files(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[tokio::test]
    async fn it_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(Arc::new(MemoryStore::new()), dir.path(), 4 * MIB).unwrap();
        check_contract(&cache).await;
    }

    #[tokio::test]
    async fn a_block_read_again_comes_from_disk() {
        let (cache, store, dir, a) = setup(8 * MIB).await;
        let slice = |r: Range<u64>| a.slice(r.start as usize..r.end.min(a.len() as u64) as usize);
        assert_eq!(
            cache.get_range("a", block(0)).await.unwrap(),
            slice(block(0))
        );
        assert_eq!(
            cache.get_range("a", block(2)).await.unwrap(),
            slice(block(2))
        );
        assert_eq!(block_files(dir.path()), 2);

        // Served from the files even while the store is down.
        store.set_outage(true);
        assert_eq!(
            cache.get_range("a", block(0)).await.unwrap(),
            slice(block(0))
        );
        assert_eq!(
            cache.get_range("a", block(2)).await.unwrap(),
            slice(block(2))
        );
        assert_eq!(store.stats().calls, 2);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (2, 2));
        assert_eq!(stats.bytes_read, MIB + MIB / 2);
        assert_eq!(stats.used_bytes, MIB + MIB / 2);
    }

    #[tokio::test]
    async fn a_block_file_cut_short_is_read_from_the_store_again() {
        let (cache, store, dir, a) = setup(8 * MIB).await;
        cache.get_range("a", block(0)).await.unwrap();
        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|e| e == BLOCK_EXTENSION))
            .unwrap();
        let whole = std::fs::read(&file).unwrap();
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();

        let read = cache.get_range("a", block(0)).await.unwrap();
        assert_eq!(
            read,
            a.slice(..MIB as usize),
            "the truncated file was served"
        );
        assert_eq!(store.stats().calls, 2, "read again from the store");
    }

    #[tokio::test]
    async fn other_reads_pass_through_uncached() {
        let (cache, store, dir, a) = setup(8 * MIB).await;
        assert_eq!(cache.get_range("a", 10..20).await.unwrap(), a.slice(10..20));
        assert_eq!(cache.get("b").await.unwrap().len(), MIB as usize);
        assert_eq!(block_files(dir.path()), 0);
        assert_eq!(store.stats().calls, 2);
        assert_eq!(cache.stats(), DiskCacheStats::default());
    }

    #[tokio::test]
    async fn the_least_recently_used_block_is_evicted() {
        let (cache, store, dir, _) = setup(2 * MIB).await;
        cache.get_range("a", block(0)).await.unwrap();
        cache.get_range("a", block(1)).await.unwrap();
        cache.get_range("a", block(0)).await.unwrap(); // a:0 is now the most recent
        cache.get_range("b", block(0)).await.unwrap(); // evicts a:1
        assert_eq!(block_files(dir.path()), 2);
        assert_eq!(cache.stats().used_bytes, 2 * MIB);
        assert_eq!(store.stats().calls, 3);

        cache.get_range("a", block(0)).await.unwrap();
        assert_eq!(store.stats().calls, 3, "a:0 stayed");
        cache.get_range("a", block(1)).await.unwrap();
        assert_eq!(store.stats().calls, 4, "a:1 was evicted");
        assert_eq!(block_files(dir.path()), 2);
    }

    #[tokio::test]
    async fn puts_and_deletes_drop_the_keys_blocks() {
        let (cache, store, dir, _) = setup(8 * MIB).await;
        cache.get_range("b", block(0)).await.unwrap();
        cache
            .put("b", Bytes::from_static(b"new").into())
            .await
            .unwrap();
        assert_eq!(block_files(dir.path()), 0);
        assert_eq!(cache.get_range("b", block(0)).await.unwrap(), "new");

        cache.delete("b").await.unwrap();
        assert_eq!(block_files(dir.path()), 0);
        assert_eq!(cache.stats().used_bytes, 0);
        assert!(matches!(
            cache.get_range("b", block(0)).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(store.inner().get("b").await.is_err());
    }

    #[tokio::test]
    async fn a_read_overtaken_by_a_put_is_not_cached() {
        let config = FaultConfig {
            latency: Some(std::time::Duration::from_millis(50)),
            ..FaultConfig::default()
        };
        let memory = Arc::new(MemoryStore::new());
        memory
            .put("k", Bytes::from_static(b"old").into())
            .await
            .unwrap();
        let store = Arc::new(FaultyStore::new(memory.clone(), config));
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(store, dir.path(), 8 * MIB).unwrap();

        // The put lands while the read waits for the store.
        let (read, _) = tokio::join!(cache.get_range("k", block(0)), async {
            tokio::task::yield_now().await;
            memory
                .put("k", Bytes::from_static(b"new").into())
                .await
                .unwrap();
            cache.invalidate("k").await;
        });
        assert_eq!(read.unwrap(), "new");
        assert_eq!(block_files(dir.path()), 0);
    }

    #[tokio::test]
    async fn opening_removes_old_block_files_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("17.block"), b"old").unwrap();
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        DiskCache::open(Arc::new(MemoryStore::new()), dir.path(), MIB).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["notes.txt"]);
    }
}
