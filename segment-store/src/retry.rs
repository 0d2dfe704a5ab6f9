//! Retries transient store failures ([`StoreError::Unavailable`]: timeouts, 5xx, SlowDown,
//! lost connections) a few times per call, with exponential backoff and full jitter. The
//! remote clients have their own retries turned off, so every retry happens here and is
//! reported to a [`RetryObserver`]. Callers that must not give up (the flusher) retry
//! further themselves.
//!
//! Every attempt has a deadline, whatever the backend: a local directory on a hung network
//! file system would otherwise stall its caller forever.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::backends::remote::MULTIPART_THRESHOLD;
use crate::payload::Payload;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls to the inner store per operation, the first included.
    pub attempts: u32,
    /// The backoff before retry n is random in [0, min(max_backoff, base_backoff * 2^(n-1))).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// An attempt that has not finished by then fails as Unavailable (and is retried). A
    /// PUT gets this much once more for every `MULTIPART_THRESHOLD` bytes it carries.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry` (1 for the first). Full jitter spreads the retries of
    /// many callers hit by one outage.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubling = 1u32 << (retry.max(1) - 1).min(20);
        let ceiling = self
            .base_backoff
            .saturating_mul(doubling)
            .min(self.max_backoff);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Told of every retry, e.g. to count it in metrics.
pub trait RetryObserver: Send + Sync + 'static {
    /// `op` is the name of the [`ObjectStore`] method ("put", "get_range", ...).
    fn retried(&self, op: &'static str, error: &StoreError);
}

pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    observer: Arc<dyn RetryObserver>,
}

impl RetryStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        policy: RetryPolicy,
        observer: Arc<dyn RetryObserver>,
    ) -> Self {
        Self {
            inner,
            policy,
            observer,
        }
    }

    async fn retry<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        deadline: Duration,
        mut call: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut retry = 0;
        loop {
            let attempt = tokio::time::timeout(deadline, call())
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable {
                        op,
                        key: key.to_string(),
                        message: format!("no answer within {deadline:?}"),
                    })
                });
            match attempt {
                Err(error @ StoreError::Unavailable { .. }) if retry + 1 < self.policy.attempts => {
                    retry += 1;
                    self.observer.retried(op, &error);
                    tracing::debug!(op, retry, %error, "retrying an object store call");
                    tokio::time::sleep(self.policy.backoff(retry)).await;
                }
                result => return result,
            }
        }
    }
}

impl RetryStore {
    /// Uploads above the multipart threshold take several requests.
    fn put_deadline(&self, data: &Payload) -> Duration {
        let requests = 1 + data.len() / MULTIPART_THRESHOLD;
        self.policy.attempt_timeout * requests as u32
    }
}

impl std::fmt::Debug for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryStore")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ObjectStore for RetryStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let deadline = self.put_deadline(&data);
        self.retry("put", key, deadline, || self.inner.put(key, data.clone()))
            .await
    }

    /// A create retried after a lost answer may find its own first attempt: AlreadyExists
    /// then, which the caller tells apart by reading the object.
    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let deadline = self.put_deadline(&data);
        self.retry("create", key, deadline, || {
            self.inner.create(key, data.clone())
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let deadline = self.policy.attempt_timeout;
        self.retry("get", key, deadline, || self.inner.get(key))
            .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let deadline = self.policy.attempt_timeout;
        self.retry("get_range", key, deadline, || {
            self.inner.get_range(key, range.clone())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let deadline = self.policy.attempt_timeout;
        self.retry("delete", key, deadline, || self.inner.delete(key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let deadline = self.policy.attempt_timeout;
        self.retry("list", prefix, deadline, || self.inner.list(prefix))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::simulate_failures::{FaultConfig, FaultyStore};
    use crate::store::tests::check_contract;

    /// Records retries; lifts the outage of `faulty` after `lift_after` of them.
    #[derive(Default)]
    struct Observer {
        retried: Mutex<Vec<&'static str>>,
        faulty: Mutex<Option<(Arc<FaultyStore>, usize)>>,
    }

    impl RetryObserver for Observer {
        fn retried(&self, op: &'static str, error: &StoreError) {
            assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
            let mut retried = self.retried.lock().unwrap();
            retried.push(op);
            if let Some((faulty, lift_after)) = &*self.faulty.lock().unwrap() {
                if retried.len() >= *lift_after {
                    faulty.set_outage(false);
                }
            }
        }
    }

    /// No waiting between attempts: these tests are about counts, not time.
    const IMMEDIATE: RetryPolicy = RetryPolicy {
        attempts: 4,
        base_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        attempt_timeout: Duration::from_secs(5),
    };

    fn setup() -> (RetryStore, Arc<FaultyStore>, Arc<Observer>) {
        let faulty = Arc::new(FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig::default(),
        ));
        let observer = Arc::new(Observer::default());
        let store = RetryStore::new(faulty.clone(), IMMEDIATE, observer.clone());
        (store, faulty, observer)
    }

    #[tokio::test]
    async fn without_failures_it_meets_the_contract() {
        let (store, faulty, observer) = setup();
        check_contract(&store).await;
        assert!(observer.retried.lock().unwrap().is_empty());
        assert_eq!(faulty.stats().injected_failures, 0);
    }

    #[tokio::test]
    async fn a_short_outage_is_ridden_out() {
        let (store, faulty, observer) = setup();
        faulty.set_outage(true);
        *observer.faulty.lock().unwrap() = Some((faulty.clone(), 2));

        store
            .put("a", Bytes::from_static(b"data").into())
            .await
            .unwrap();
        assert_eq!(*observer.retried.lock().unwrap(), ["put", "put"]);
        let stats = faulty.stats();
        assert_eq!(
            (stats.calls, stats.injected_failures, stats.puts),
            (3, 2, 1)
        );
        assert_eq!(faulty.inner().get("a").await.unwrap(), "data");
    }

    #[tokio::test]
    async fn attempts_per_call_are_bounded() {
        let (store, faulty, observer) = setup();
        faulty.set_outage(true);
        let result = store.get_range("a", 0..10).await;
        assert!(matches!(
            result,
            Err(StoreError::Unavailable {
                op: "get_range",
                ..
            })
        ));
        assert_eq!(faulty.stats().calls, 4);
        assert_eq!(observer.retried.lock().unwrap().len(), 3);

        // Every call gets its own attempts.
        assert!(store.list("").await.is_err());
        assert_eq!(faulty.stats().calls, 8);
    }

    #[tokio::test]
    async fn answers_are_not_retried() {
        let (store, faulty, observer) = setup();
        assert!(matches!(
            store.get("missing").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(faulty.stats().calls, 1);
        assert!(observer.retried.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_hangs_fails_at_its_deadline_and_is_retried() {
        // A store whose every call takes an hour, like a local directory on a hung NFS mount.
        let hung = Arc::new(FaultyStore::new(
            Arc::new(MemoryStore::new()),
            FaultConfig {
                latency: Some(Duration::from_secs(3600)),
                ..FaultConfig::default()
            },
        ));
        let observer = Arc::new(Observer::default());
        let store = RetryStore::new(hung.clone(), IMMEDIATE, observer.clone());
        let started = tokio::time::Instant::now();
        let result = store.put("a", Bytes::from_static(b"x").into()).await;
        assert!(
            matches!(&result, Err(StoreError::Unavailable { message, .. }) if message.contains("no answer within")),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), IMMEDIATE.attempt_timeout * 4);
        assert_eq!(observer.retried.lock().unwrap().len(), 3);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_full_jitter() {
        let policy = RetryPolicy {
            attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for (retry, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let waits: Vec<_> = (0..200).map(|_| policy.backoff(retry)).collect();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                waits.iter().all(|wait| *wait < ceiling),
                "retry {retry}: {waits:?}"
            );
            // Jittered over the whole range, not stuck at the top or the bottom.
            assert!(
                waits.iter().any(|wait| *wait < ceiling / 4),
                "retry {retry}"
            );
            assert!(
                waits.iter().any(|wait| *wait > ceiling * 3 / 4),
                "retry {retry}"
            );
        }
    }
}
