//! Our [`ObjectStore`] over a client of the object_store crate (S3, GCS, Azure, HDFS; the
//! files named after each build it): keys live under the URL's prefix, large objects go up
//! in parts, and errors are sorted into missing, transient and refused.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, GetResult, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::payload::Payload;
use crate::store::{ObjectMeta, ObjectStore, StorageOptions, StoreError};

/// Objects larger than this are uploaded in parts. Well above `flush.bytes` (8 MiB), so a
/// flush object stays one PUT request; larger flushes and segments go up in parallel parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// S3 needs at least 5 MiB per part but the last.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one object uploaded at once.
const PART_CONCURRENCY: usize = 4;

#[derive(Debug)]
pub struct RemoteStore {
    inner: Arc<dyn object_store::ObjectStore>,
    /// "" or a path ending in '/'.
    prefix: String,
    multipart_threshold: usize,
    part_size: usize,
}

impl RemoteStore {
    /// `prefix` is "" or ends in '/' (see [`bucket_and_prefix`]).
    pub fn new(inner: Arc<dyn object_store::ObjectStore>, prefix: String) -> Self {
        Self {
            inner,
            prefix,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    async fn put_multipart(&self, path: &Path, data: Payload) -> object_store::Result<()> {
        let mut upload = self.inner.put_multipart(path).await?;
        // Part numbers are given in call order; the uploads themselves run concurrently.
        let parts: Vec<_> = (0..data.len())
            .step_by(self.part_size)
            .map(|start| {
                let end = (start + self.part_size).min(data.len());
                upload.put_part(put_payload(&data.slice(start..end)))
            })
            .collect();
        let uploaded = futures::stream::iter(parts)
            .buffer_unordered(PART_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await;
        let result = match uploaded {
            Ok(_) => upload.complete().await.map(drop),
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Frees the stored parts; if this fails too, a bucket lifecycle rule must.
            if let Err(e) = upload.abort().await {
                tracing::debug!(path = %path, error = %e, "aborting a failed multipart upload failed");
            }
        }
        result
    }
}

/// object_store's payload is a list of buffers too: the parts go as they are.
fn put_payload(data: &Payload) -> PutPayload {
    data.parts().iter().cloned().collect()
}

#[async_trait::async_trait]
impl ObjectStore for RemoteStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let path = self.path(key);
        let result = if data.len() > self.multipart_threshold {
            self.put_multipart(&path, data).await
        } else {
            self.inner.put(&path, put_payload(&data)).await.map(drop)
        };
        result.map_err(|e| error("put", key, e))
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(&self.path(key), put_payload(&data), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            Err(e) => Err(error("create", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let result = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| error("get", key, e))?;
        whole_body("get", key, result).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        if range.start < range.end {
            let options = GetOptions {
                range: Some(GetRange::Bounded(range.clone())),
                ..GetOptions::default()
            };
            match self.inner.get_opts(&path, options).await {
                Ok(result) => return whole_body("get_range", key, result).await,
                Err(e @ object_store::Error::NotFound { .. }) => {
                    return Err(error("get_range", key, e))
                }
                // A range starting at or past the end is an error for the client (416), an
                // empty read for us: tell the two apart by the object's size.
                Err(e) => match self.inner.head(&path).await {
                    Ok(meta) if meta.size <= range.start => return Ok(Bytes::new()),
                    _ => return Err(error("get_range", key, e)),
                },
            }
        }
        // An empty range: only whether the object exists matters.
        match self.inner.head(&path).await {
            Ok(_) => Ok(Bytes::new()),
            Err(e) => Err(error("get_range", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error("delete", key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // The client lists whole path segments: list the deepest one the prefix names and
        // filter the rest of it by string.
        let full = format!("{}{prefix}", self.prefix);
        let dir = Path::from(full.rfind('/').map_or("", |slash| &full[..slash]));
        let mut objects: Vec<ObjectMeta> = self
            .inner
            .list(Some(&dir))
            .map_err(|e| error("list", prefix, e))
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(&full)
                    .map(|rest| format!("{prefix}{rest}"));
                let listed = key.map(|key| ObjectMeta {
                    key,
                    size: meta.size,
                    last_modified: meta.last_modified.into(),
                });
                futures::future::ready(Ok(listed))
            })
            .try_collect()
            .await?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// The body of a response, which must be the range the server said it sent (its
/// Content-Range, which object_store checked against the range asked for): a connection or
/// proxy that ends a body early must not pass for the end of the object. A body cut short
/// is transient: asking again may get all of it.
async fn whole_body(op: &'static str, key: &str, result: GetResult) -> Result<Bytes, StoreError> {
    let served = result.range.clone();
    let data = result.bytes().await.map_err(|e| error(op, key, e))?;
    let expected = served.end - served.start;
    if data.len() as u64 == expected {
        return Ok(data);
    }
    Err(StoreError::Unavailable {
        op,
        key: key.to_string(),
        message: format!(
            "the response carried {} bytes of the {expected} in bytes {served:?}",
            data.len()
        ),
    })
}

/// "scheme://bucket/some/prefix" -> ("bucket", "some/prefix/"); the prefix may be "".
pub(crate) fn bucket_and_prefix(url: &str) -> Result<(&str, String), StoreError> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoreError::invalid_url(
            url,
            "no bucket (scheme://bucket/prefix)",
        ));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket, prefix))
}

/// The clients' own retries are off: `RetryStore` retries, and counts every retry.
pub(crate) fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// The clients' timeouts, set explicitly rather than left to object_store's defaults (or its
/// environment variables), as client config keys so that the client's other settings from
/// the environment stay.
pub(crate) fn client_timeouts(options: &StorageOptions) -> [(ClientConfigKey, String); 2] {
    let millis = |d: std::time::Duration| format!("{}ms", d.as_millis());
    [
        (ClientConfigKey::Timeout, millis(options.request_timeout)),
        (
            ClientConfigKey::ConnectTimeout,
            millis(options.connect_timeout),
        ),
    ]
}

/// A client that could not be configured from the URL, options and environment.
pub(crate) fn config_error(url: &str, e: object_store::Error) -> StoreError {
    StoreError::invalid_url(url, format!("cannot configure the client: {e}"))
}

fn error(op: &'static str, key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let key = key.to_string();
    let message = describe(&e);
    let transient = match &e {
        E::NotFound { .. } => return StoreError::NotFound { key },
        E::Generic { .. } | E::JoinError { .. } => match http_status(&message) {
            Some(status) => status >= 500 || status == 408 || status == 429,
            // No answer at all: connection refused or reset, timeout, body cut off.
            None => true,
        },
        // Permissions, credentials, preconditions, bad paths, unsupported calls.
        _ => false,
    };
    if transient {
        StoreError::Unavailable { op, key, message }
    } else {
        StoreError::Rejected { op, key, message }
    }
}

/// The error's message followed by those of its causes it leaves out (object_store's omits
/// why a request could not be sent, e.g. "Connection refused").
fn describe(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = error.source();
    }
    message
}

/// The HTTP status of a failed request. object_store 0.12 keeps it in a private error type
/// whose message reads "...non-2xx status code: 503 Service Unavailable...".
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        GetResult, ListResult, MultipartUpload, ObjectStore as _, PutMultipartOptions, PutOptions,
        PutPayload, PutResult,
    };

    use super::*;
    use crate::store::tests::check_contract;

    fn in_memory(prefix: &str) -> (RemoteStore, Arc<InMemory>) {
        let memory = Arc::new(InMemory::new());
        (RemoteStore::new(memory.clone(), prefix.to_string()), memory)
    }

    #[tokio::test]
    async fn the_adapter_meets_the_contract() {
        check_contract(&in_memory("").0).await;
        check_contract(&in_memory("strata/cluster-1/").0).await;
    }

    #[tokio::test]
    async fn keys_live_under_the_prefix() {
        let (store, memory) = in_memory("strata/");
        memory
            .put(&Path::from("outside/a"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        memory
            .put(&Path::from("strata-other/a"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        store
            .put("flush/0/a", Bytes::from_static(b"abc").into())
            .await
            .unwrap();

        let stored = memory.get(&Path::from("strata/flush/0/a")).await.unwrap();
        assert_eq!(stored.bytes().await.unwrap(), "abc");
        let keys: Vec<_> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["flush/0/a"]);
        assert_eq!(store.list("fl").await.unwrap().len(), 1);
    }

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let split = |url| bucket_and_prefix(url).unwrap();
        assert_eq!(split("s3://bucket"), ("bucket", String::new()));
        assert_eq!(split("s3://bucket/"), ("bucket", String::new()));
        assert_eq!(split("gs://b/a/b/"), ("b", "a/b/".to_string()));
        assert_eq!(
            split("hdfs://nn:9000/strata"),
            ("nn:9000", "strata/".to_string())
        );
        assert!(matches!(
            bucket_and_prefix("s3:///prefix"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn errors_are_sorted_by_what_a_retry_could_change() {
        let generic = |message: &str| object_store::Error::Generic {
            store: "S3",
            source: message.to_string().into(),
        };
        let kind = |e| match error("put", "k", e) {
            StoreError::NotFound { .. } => "missing",
            StoreError::Unavailable { .. } => "transient",
            StoreError::Rejected { .. } => "refused",
            other => panic!("{other:?}"),
        };
        let status = |code| generic(&format!("Server returned non-2xx status code: {code}: x"));
        assert_eq!(kind(status("503 Service Unavailable")), "transient");
        assert_eq!(kind(status("500 Internal Server Error")), "transient");
        assert_eq!(kind(status("429 Too Many Requests")), "transient");
        assert_eq!(kind(status("404 Not Found")), "refused");
        assert_eq!(kind(status("400 Bad Request")), "refused");
        assert_eq!(
            kind(generic("HTTP error: error sending request")),
            "transient"
        );
        assert_eq!(
            kind(object_store::Error::PermissionDenied {
                path: "k".to_string(),
                source: "403".into()
            }),
            "refused"
        );
        assert_eq!(
            kind(object_store::Error::NotFound {
                path: "k".to_string(),
                source: "404".into()
            }),
            "missing"
        );
    }

    /// An InMemory store that counts the multipart uploads reaching it and, when told to,
    /// cuts every response body short while still announcing the whole range (as a broken
    /// connection or proxy can).
    #[derive(Debug, Default)]
    struct InstrumentedMemory {
        memory: InMemory,
        uploads: AtomicUsize,
        cut_bodies: std::sync::atomic::AtomicBool,
    }

    impl std::fmt::Display for InstrumentedMemory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "InstrumentedMemory")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for InstrumentedMemory {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.memory.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.uploads.fetch_add(1, Ordering::SeqCst);
            self.memory.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let mut result = self.memory.get_opts(location, options).await?;
            if self.cut_bodies.load(Ordering::SeqCst) {
                let whole = result.bytes().await?;
                let half = whole.slice(..whole.len() / 2);
                result = GetResult {
                    payload: object_store::GetResultPayload::Stream(
                        futures::stream::once(async move { Ok(half) }).boxed(),
                    ),
                    ..self
                        .memory
                        .get_opts(location, GetOptions::default())
                        .await?
                };
                result.range = 0..whole.len() as u64;
            }
            Ok(result)
        }

        async fn delete(&self, location: &Path) -> object_store::Result<()> {
            self.memory.delete(location).await
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.memory.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.memory.list_with_delimiter(prefix).await
        }

        async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.memory.copy(from, to).await
        }

        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.memory.copy_if_not_exists(from, to).await
        }
    }

    #[tokio::test]
    async fn objects_over_the_threshold_are_uploaded_in_parts() {
        let counting = Arc::new(InstrumentedMemory::default());
        let store = RemoteStore {
            multipart_threshold: 1000,
            part_size: 300,
            ..RemoteStore::new(counting.clone(), "p/".to_string())
        };
        let small = Bytes::from(vec![1; 1000]);
        store.put("small", small.clone().into()).await.unwrap();
        assert_eq!(counting.uploads.load(Ordering::SeqCst), 0);

        let large: Bytes = (0..1001u32).map(|i| i as u8).collect::<Vec<_>>().into();
        // Payload parts that do not line up with the upload's parts.
        let payload = [0..7, 7..450, 450..1001]
            .into_iter()
            .map(|range| large.slice(range))
            .collect();
        store.put("large", payload).await.unwrap();
        assert_eq!(counting.uploads.load(Ordering::SeqCst), 1);
        // Four parts (300, 300, 300, 101), reassembled in order.
        assert_eq!(store.get("large").await.unwrap(), large);
        assert_eq!(store.get("small").await.unwrap(), small);
        assert_eq!(
            store.get_range("large", 299..302).await.unwrap(),
            large.slice(299..302)
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_is_a_transient_error_not_the_end_of_the_object() {
        let backend = Arc::new(InstrumentedMemory::default());
        let store = RemoteStore::new(backend.clone(), String::new());
        let data: Bytes = (0..100u8).collect::<Vec<_>>().into();
        store.put("a", data.clone().into()).await.unwrap();
        backend.cut_bodies.store(true, Ordering::SeqCst);
        for result in [store.get("a").await, store.get_range("a", 0..100).await] {
            assert!(
                matches!(&result, Err(StoreError::Unavailable { message, .. }) if message.contains("50 bytes of the 100")),
                "{result:?}"
            );
        }
        backend.cut_bodies.store(false, Ordering::SeqCst);
        assert_eq!(
            store.get_range("a", 10..20).await.unwrap(),
            data.slice(10..20)
        );
    }
}
