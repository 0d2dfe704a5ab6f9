//! An object store wrapper that counts and times requests, and counts errors, per operation
//! for `/metrics`.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use segment_store::store::{ObjectMeta, ObjectStore, StoreError};
use segment_store::Payload;

use crate::metrics::{Metrics, StoreOperationMetrics};

#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    put: StoreOperationMetrics,
    create: StoreOperationMetrics,
    get: StoreOperationMetrics,
    get_range: StoreOperationMetrics,
    delete: StoreOperationMetrics,
    list: StoreOperationMetrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: &Metrics) -> Self {
        Self {
            inner,
            put: metrics.store_operation("put"),
            create: metrics.store_operation("create"),
            get: metrics.store_operation("get"),
            get_range: metrics.store_operation("get_range"),
            delete: metrics.store_operation("delete"),
            list: metrics.store_operation("list"),
        }
    }
}

async fn metered<T>(
    metrics: &StoreOperationMetrics,
    request: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = request.await;
    metrics.latency.observe(started.elapsed().as_secs_f64());
    metrics.requests.inc();
    // A missing object, or a taken key for a create, is an answer, not a store failure.
    let answer = |e: &StoreError| {
        matches!(
            e,
            StoreError::NotFound { .. } | StoreError::AlreadyExists { .. }
        )
    };
    if matches!(&result, Err(e) if !answer(e)) {
        metrics.errors.inc();
    }
    result
}

#[async_trait::async_trait]
impl ObjectStore for MeteredStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        metered(&self.put, self.inner.put(key, data)).await
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        metered(&self.create, self.inner.create(key, data)).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        metered(&self.get, self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        metered(&self.get_range, self.inner.get_range(key, range)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        metered(&self.delete, self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        metered(&self.list, self.inner.list(prefix)).await
    }
}

#[cfg(test)]
mod tests {
    use segment_store::backends::memory::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_and_timed_per_operation() {
        let metrics = Metrics::new();
        let store = MeteredStore::new(Arc::new(MemoryStore::new()), &metrics);
        store
            .put("a", Bytes::from_static(b"x").into())
            .await
            .unwrap();
        assert!(store.get("missing").await.is_err());
        let text = metrics.encode();
        for line in [
            "strata_object_store_requests_total{operation=\"put\"} 1",
            "strata_object_store_request_duration_seconds_count{operation=\"put\"} 1",
            "strata_object_store_requests_total{operation=\"get\"} 1",
            "strata_object_store_request_duration_seconds_count{operation=\"get\"} 1",
            "strata_object_store_errors_total{operation=\"get\"} 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
