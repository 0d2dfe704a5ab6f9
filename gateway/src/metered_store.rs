//! An object store wrapper that counts requests and errors per operation for `/metrics`.

use std::ops::Range;
use std::sync::Arc;

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

fn count<T>(
    metrics: &StoreOperationMetrics,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
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
        count(&self.put, self.inner.put(key, data).await)
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        count(&self.create, self.inner.create(key, data).await)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        count(&self.get, self.inner.get(key).await)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        count(&self.get_range, self.inner.get_range(key, range).await)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        count(&self.delete, self.inner.delete(key).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        count(&self.list, self.inner.list(prefix).await)
    }
}
