//! The one trait every backend implements, and the URL that picks a backend.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::local::LocalStore;
use crate::memory::MemoryStore;

#[derive(Debug, Clone)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: String },
    /// Transient: the caller may retry.
    #[error("object store {op} {key} failed: {message}")]
    Unavailable {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("invalid storage URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

/// An object store: immutable objects under '/'-separated keys.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// Durable when it returns Ok (local: temp file, fsync, rename, fsync dir).
    /// Atomic: a reader never sees a partial object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Range clipped to the object's end (empty if it starts at or past the end).
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError>;
    /// Ok if missing.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
}

/// "file:///abs/dir" -> LocalStore (the directory is created if missing);
/// "memory://" (any name after it is ignored) -> a fresh MemoryStore; anything else is
/// InvalidUrl. S3/GCS/Azure come later through the object_store crate.
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let Some(path) = url.strip_prefix("file://") {
        if !Path::new(path).is_absolute() {
            return Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "a file URL needs an absolute path (file:///abs/dir)".to_string(),
            });
        }
        return Ok(Arc::new(LocalStore::new(path)?));
    }
    if url.starts_with("memory://") {
        return Ok(Arc::new(MemoryStore::new()));
    }
    Err(StoreError::InvalidUrl {
        url: url.to_string(),
        reason: "supported schemes are file:// and memory://".to_string(),
    })
}

/// Clips `range` to an object of `len` bytes.
pub(crate) fn clip(range: Range<u64>, len: u64) -> Range<u64> {
    let end = range.end.min(len);
    range.start.min(end)..end
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn clip_keeps_ranges_inside_the_object() {
        assert_eq!(clip(2..5, 10), 2..5);
        assert_eq!(clip(2..50, 10), 2..10);
        assert_eq!(clip(20..50, 10), 10..10);
    }

    #[tokio::test]
    async fn open_store_picks_the_backend_from_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("created/on/open");
        let store = open_store(&format!("file://{}", root.display())).unwrap();
        assert!(root.is_dir());
        store.put("a", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"x");

        let memory = open_store("memory://").unwrap();
        memory.put("a", Bytes::from_static(b"y")).await.unwrap();
        // Every memory:// store is fresh.
        let other = open_store("memory://").unwrap();
        assert!(matches!(
            other.get("a").await,
            Err(StoreError::NotFound { .. })
        ));

        for bad in ["s3://bucket", "file://relative/dir", "/abs/dir", ""] {
            match open_store(bad) {
                Err(StoreError::InvalidUrl { url, .. }) => assert_eq!(url, bad),
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    /// The behaviour every backend must show; each backend's tests run it.
    pub(crate) async fn check_contract(store: &dyn ObjectStore) {
        let not_found =
            |r: Result<Bytes, StoreError>| matches!(r, Err(StoreError::NotFound { .. }));

        assert!(not_found(store.get("missing").await));
        assert!(not_found(store.get_range("missing", 0..1).await));
        store.delete("missing").await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());

        store
            .put("topics/t/0/a.log", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        store
            .put("topics/t/1/b.log", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        store
            .put("flush/1/c.flush", Bytes::from_static(b""))
            .await
            .unwrap();

        assert_eq!(store.get("topics/t/0/a.log").await.unwrap(), "0123456789");
        assert_eq!(store.get("flush/1/c.flush").await.unwrap(), "");
        let range = |r| store.get_range("topics/t/0/a.log", r);
        assert_eq!(range(2..5).await.unwrap(), "234");
        assert_eq!(range(8..100).await.unwrap(), "89");
        assert_eq!(range(10..20).await.unwrap(), "");
        assert_eq!(range(50..60).await.unwrap(), "");
        assert_eq!(range(3..3).await.unwrap(), "");

        // Overwrite replaces the whole object.
        store
            .put("topics/t/1/b.log", Bytes::from_static(b"xy"))
            .await
            .unwrap();
        assert_eq!(store.get("topics/t/1/b.log").await.unwrap(), "xy");

        let keys = |prefix: &'static str| async move {
            let listed = store.list(prefix).await.unwrap();
            listed
                .into_iter()
                .map(|m| (m.key, m.size))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys("").await,
            [
                ("flush/1/c.flush".to_string(), 0),
                ("topics/t/0/a.log".to_string(), 10),
                ("topics/t/1/b.log".to_string(), 2)
            ]
        );
        assert_eq!(keys("topics/").await.len(), 2);
        assert_eq!(
            keys("topics/t/0").await,
            [("topics/t/0/a.log".to_string(), 10)]
        );
        assert_eq!(
            keys("topics/t/1/b").await,
            [("topics/t/1/b.log".to_string(), 2)]
        );
        assert!(keys("topics/u").await.is_empty());
        assert!(keys("nothing/here/").await.is_empty());

        store.delete("topics/t/0/a.log").await.unwrap();
        assert!(not_found(store.get("topics/t/0/a.log").await));
        store.delete("topics/t/0/a.log").await.unwrap();
        assert_eq!(keys("topics/").await, [("topics/t/1/b.log".to_string(), 2)]);
    }
}
