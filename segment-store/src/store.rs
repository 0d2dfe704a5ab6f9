//! The one trait every backend implements, and the URL that picks a backend.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::backends::local::LocalStore;
use crate::backends::memory::MemoryStore;
use crate::backends::remote::RemoteStore;
use crate::payload::Payload;

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
    /// `create` found the key taken.
    #[error("object {key} already exists")]
    AlreadyExists { key: String },
    /// Transient: the caller may retry.
    #[error("object store {op} {key} failed: {message}")]
    Unavailable {
        op: &'static str,
        key: String,
        message: String,
    },
    /// The store refused the request (credentials, permissions, a bad request): retrying
    /// will not help.
    #[error("object store {op} {key} was refused: {message}")]
    Rejected {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("invalid storage URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The start-up check of a remote store failed.
    #[error("object store {url} is not usable")]
    Unreachable {
        url: String,
        source: Box<StoreError>,
    },
}

impl StoreError {
    pub(crate) fn invalid_url(url: &str, reason: impl Into<String>) -> Self {
        Self::InvalidUrl {
            url: url.to_string(),
            reason: reason.into(),
        }
    }
}

/// Settings of the remote backends that the URL does not carry. Anything left unset comes
/// from the backend's standard environment variables (AWS_*, GOOGLE_*, AZURE_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// S3 endpoint URL, for S3-compatible servers (default: AWS for the region).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Bucket in the path (http://endpoint/bucket/key) instead of the host name.
    pub s3_path_style: bool,
    /// Allow an http:// endpoint.
    pub s3_allow_http: bool,
    /// How long one request to a remote store may take, body included, before it fails
    /// (and is retried); also the deadline of one attempt of any store call (see
    /// [`RetryStore`](crate::retry::RetryStore)).
    pub request_timeout: Duration,
    /// How long connecting to a remote store may take.
    pub connect_timeout: Duration,
    /// Whether a local store writes and reads around the page cache where the file system
    /// takes direct I/O (see [`LocalStore::open`]).
    pub local_direct_io: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_allow_http: false,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            local_direct_io: true,
        }
    }
}

/// An object store: immutable objects under '/'-separated keys.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug + 'static {
    /// Durable when it returns Ok (local: temp file, fsync, rename, fsync dir).
    /// Atomic: a reader never sees a partial object.
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError>;
    /// A put that succeeds only if no object has the key (AlreadyExists otherwise), decided
    /// atomically by the store: of two concurrent creates, one fails.
    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Exactly the bytes of `range` clipped to the object's end (empty if it starts at or
    /// past the end), or an error: never fewer bytes because a transfer was cut short.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError>;
    /// Ok if missing.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every object whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
}

/// Opens the store `url` names with default options (see [`open_store_with`]), without the
/// start-up check.
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    build_store(url, &StorageOptions::default())
}

/// Opens the store `url` names:
/// - "file:///abs/dir": LocalStore (the directory is created if missing);
/// - "memory://" (any name after it is ignored): a fresh MemoryStore;
/// - "s3://bucket/prefix", "gs://bucket/prefix", "az://container/prefix": the object_store
///   crate's clients, every key under the prefix;
/// - "hdfs://namenode/path" with the cargo feature `hdfs`.
///
/// A remote store is checked before it is returned: its bucket must exist and the
/// credentials must allow reads, so that a wrong setting fails at start-up rather than at
/// the first flush.
pub async fn open_store_with(
    url: &str,
    options: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let store = build_store(url, options)?;
    if !matches!(scheme(url), "file" | "memory") {
        // One list request that matches nothing needs both.
        if let Err(e) = store.list(CHECK_PREFIX).await {
            return Err(StoreError::Unreachable {
                url: url.to_string(),
                source: Box::new(e),
            });
        }
    }
    Ok(store)
}

/// A key prefix no object has.
const CHECK_PREFIX: &str = "strata-start-up-check/";

fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("", |(scheme, _)| scheme)
}

fn build_store(url: &str, options: &StorageOptions) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let remote: RemoteStore = match scheme(url) {
        "file" => return Ok(Arc::new(local_store(url, options)?)),
        "memory" => return Ok(Arc::new(MemoryStore::new())),
        "s3" => crate::backends::s3::open(url, options)?,
        "gs" => crate::backends::gcs::open(url, options)?,
        "az" => crate::backends::azure::open(url, options)?,
        #[cfg(feature = "hdfs")]
        "hdfs" => crate::backends::hdfs::open(url)?,
        #[cfg(not(feature = "hdfs"))]
        "hdfs" => {
            return Err(StoreError::invalid_url(
                url,
                "this build has no HDFS support (cargo feature `hdfs`)",
            ))
        }
        _ => {
            return Err(StoreError::invalid_url(
                url,
                "supported schemes are file://, memory://, s3://, gs://, az:// and hdfs://",
            ))
        }
    };
    Ok(Arc::new(remote))
}

/// The store of a file:// URL.
fn local_store(url: &str, options: &StorageOptions) -> Result<LocalStore, StoreError> {
    let path = &url["file://".len()..];
    if !Path::new(path).is_absolute() {
        return Err(StoreError::invalid_url(
            url,
            "a file URL needs an absolute path (file:///abs/dir)",
        ));
    }
    LocalStore::open(path, options.local_direct_io)
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
        store
            .put("a", Bytes::from_static(b"x").into())
            .await
            .unwrap();
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"x");

        let memory = open_store("memory://").unwrap();
        memory
            .put("a", Bytes::from_static(b"y").into())
            .await
            .unwrap();
        // Every memory:// store is fresh.
        let other = open_store("memory://").unwrap();
        assert!(matches!(
            other.get("a").await,
            Err(StoreError::NotFound { .. })
        ));

        for bad in [
            "ftp://host/dir",
            "file://relative/dir",
            "/abs/dir",
            "",
            "s3://",
        ] {
            match open_store(bad) {
                Err(StoreError::InvalidUrl { url, .. }) => assert_eq!(url, bad),
                other => panic!("{bad}: expected InvalidUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_local_store_takes_direct_io_unless_the_options_turn_it_off() {
        let dir = crate::backends::local::tests::disk_dir();
        let url = format!("file://{}", dir.path().display());
        assert!(local_store(&url, &StorageOptions::default())
            .unwrap()
            .direct_io());
        let off = StorageOptions {
            local_direct_io: false,
            ..StorageOptions::default()
        };
        assert!(!local_store(&url, &off).unwrap().direct_io());
    }

    /// The behaviour every backend must show; each backend's tests run it.
    pub(crate) async fn check_contract(store: &dyn ObjectStore) {
        let not_found =
            |r: Result<Bytes, StoreError>| matches!(r, Err(StoreError::NotFound { .. }));

        assert!(not_found(store.get("missing").await));
        assert!(not_found(store.get_range("missing", 0..1).await));
        store.delete("missing").await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());

        // An object in parts is stored as their concatenation.
        let parts: &[&'static [u8]] = &[b"01", b"234", b"", b"56789"];
        store
            .put(
                "topics/t/0/a.log",
                parts.iter().map(|p| Bytes::from_static(p)).collect(),
            )
            .await
            .unwrap();
        store
            .put("topics/t/1/b.log", Bytes::from_static(b"abc").into())
            .await
            .unwrap();
        store
            .put("flush/1/c.flush", Bytes::from_static(b"").into())
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

        // create takes a free key only, and leaves a taken one as it was.
        store
            .create("cluster/marker", Bytes::from_static(b"first").into())
            .await
            .unwrap();
        let again = store
            .create("cluster/marker", Bytes::from_static(b"second").into())
            .await;
        assert!(
            matches!(&again, Err(StoreError::AlreadyExists { key }) if key == "cluster/marker"),
            "{again:?}"
        );
        assert_eq!(store.get("cluster/marker").await.unwrap(), "first");
        store.delete("cluster/marker").await.unwrap();

        // Overwrite replaces the whole object.
        store
            .put("topics/t/1/b.log", Bytes::from_static(b"xy").into())
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
