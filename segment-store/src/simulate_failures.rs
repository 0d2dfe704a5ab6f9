//! A wrapper that injects faults into any store, for crash and outage tests.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::payload::Payload;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Probability (0.0..=1.0) that a call fails with Unavailable without reaching the
    /// inner store.
    pub error_rate: f64,
    /// Delay added before every call.
    pub latency: Option<Duration>,
    /// Delay added before every put (and create), drawn from a distribution: a local
    /// directory made to answer like a remote object store, for benchmarks.
    pub put_latency: Option<LogNormalLatency>,
    /// The first n puts reach the inner store; every later put fails (reads keep working).
    pub fail_after_puts: Option<u64>,
    /// Puts failed by `error_rate` or `fail_after_puts` first write the first half of the
    /// object to the inner store: a crash mid-PUT on a store whose puts are not atomic.
    pub torn_writes: bool,
}

/// A log-normal latency given its median and 99th percentile: the long right tail of object
/// store request latencies (published S3 measurements show a PUT of a few MiB at roughly
/// p50 50 ms and p99 300 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogNormalLatency {
    pub p50: Duration,
    pub p99: Duration,
}

impl LogNormalLatency {
    /// The 99th percentile of the standard normal distribution.
    const Z99: f64 = 2.326_347_874;

    /// One latency drawn from the distribution.
    pub fn sample(&self) -> Duration {
        let sigma = (self.p99.as_secs_f64() / self.p50.as_secs_f64().max(f64::MIN_POSITIVE))
            .ln()
            .max(0.0)
            / Self::Z99;
        // Box-Muller: a standard normal from two uniform draws.
        let u1: f64 = 1.0 - rand::random::<f64>();
        let u2: f64 = rand::random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        self.p50.mul_f64((sigma * z).exp())
    }
}

/// What the wrapper has seen and done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Every call, failed or not.
    pub calls: u64,
    /// Puts passed whole to the inner store.
    pub puts: u64,
    /// Calls failed by an injected fault (outage, error rate, fail_after_puts).
    pub injected_failures: u64,
    /// Truncated objects written by torn puts.
    pub torn_writes: u64,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    config: FaultConfig,
    outage: AtomicBool,
    /// Reads still to cut short.
    cut_reads: AtomicU64,
    stats: Mutex<FaultStats>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: FaultConfig) -> Self {
        Self {
            inner,
            config,
            outage: AtomicBool::new(false),
            cut_reads: AtomicU64::new(0),
            stats: Mutex::new(FaultStats::default()),
        }
    }

    /// While set, every call fails with Unavailable.
    pub fn set_outage(&self, outage: bool) {
        self.outage.store(outage, Ordering::SeqCst);
    }

    /// The next `reads` gets and ranged gets return only the first half of their bytes, as
    /// a proxy or a connection that ends a body early would, without an error.
    pub fn cut_next_reads(&self, reads: u64) {
        self.cut_reads.store(reads, Ordering::SeqCst);
    }

    /// Cuts `data` short if a cut is due.
    fn maybe_cut(&self, data: Bytes) -> Bytes {
        let due = self
            .cut_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if due {
            data.slice(..data.len() / 2)
        } else {
            data
        }
    }

    pub fn stats(&self) -> FaultStats {
        *self.lock_stats()
    }

    /// The wrapped store, to inspect what really got written.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, FaultStats> {
        self.stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts the call, waits the configured latency and decides whether the call fails:
    /// Some(reason) if it does.
    async fn fault(&self, is_put: bool) -> Option<&'static str> {
        self.lock_stats().calls += 1;
        if let Some(latency) = self.config.latency {
            tokio::time::sleep(latency).await;
        }
        if let Some(latency) = self.config.put_latency.filter(|_| is_put) {
            tokio::time::sleep(latency.sample()).await;
        }
        let reason = if self.outage.load(Ordering::SeqCst) {
            Some("injected outage")
        } else if self.config.error_rate > 0.0 && rand::random::<f64>() < self.config.error_rate {
            Some("injected random failure")
        } else if is_put {
            // Decided and counted under one lock so that concurrent puts let exactly n through.
            let mut stats = self.lock_stats();
            if self.config.fail_after_puts.is_some_and(|n| stats.puts >= n) {
                Some("injected failure after the configured number of puts")
            } else {
                stats.puts += 1;
                None
            }
        } else {
            None
        };
        if reason.is_some() {
            self.lock_stats().injected_failures += 1;
        }
        reason
    }

    fn injected(op: &'static str, key: &str, reason: &'static str) -> StoreError {
        StoreError::Unavailable {
            op,
            key: key.to_string(),
            message: reason.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let Some(reason) = self.fault(true).await else {
            return self.inner.put(key, data).await;
        };
        // An unreachable store writes nothing, even a torn object.
        if self.config.torn_writes && !self.outage.load(Ordering::SeqCst) {
            let torn = data.slice(0..data.len() / 2);
            if self.inner.put(key, torn).await.is_ok() {
                self.lock_stats().torn_writes += 1;
            }
        }
        Err(Self::injected("put", key, reason))
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        match self.fault(true).await {
            Some(reason) => Err(Self::injected("create", key, reason)),
            None => self.inner.create(key, data).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        match self.fault(false).await {
            Some(reason) => Err(Self::injected("get", key, reason)),
            None => self.inner.get(key).await.map(|data| self.maybe_cut(data)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        match self.fault(false).await {
            Some(reason) => Err(Self::injected("get_range", key, reason)),
            None => self
                .inner
                .get_range(key, range)
                .await
                .map(|data| self.maybe_cut(data)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.fault(false).await {
            Some(reason) => Err(Self::injected("delete", key, reason)),
            None => self.inner.delete(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        match self.fault(false).await {
            Some(reason) => Err(Self::injected("list", prefix, reason)),
            None => self.inner.list(prefix).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::backends::memory::MemoryStore;
    use crate::store::tests::check_contract;

    fn faulty(config: FaultConfig) -> FaultyStore {
        FaultyStore::new(Arc::new(MemoryStore::new()), config)
    }

    fn is_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::Unavailable { .. }))
    }

    #[tokio::test]
    async fn without_faults_it_meets_the_contract() {
        let store = faulty(FaultConfig::default());
        check_contract(&store).await;
        let stats = store.stats();
        assert_eq!(stats.injected_failures, 0);
        assert_eq!(stats.puts, 6, "four puts and two creates");
        assert!(stats.calls > 20);
    }

    #[tokio::test]
    async fn an_outage_fails_every_call_until_lifted() {
        let store = faulty(FaultConfig::default());
        store
            .put("a", Bytes::from_static(b"1").into())
            .await
            .unwrap();
        store.set_outage(true);
        assert!(is_unavailable(
            store.put("b", Bytes::from_static(b"2").into()).await
        ));
        assert!(is_unavailable(store.get("a").await));
        assert!(is_unavailable(store.get_range("a", 0..1).await));
        assert!(is_unavailable(store.delete("a").await));
        assert!(is_unavailable(store.list("").await));
        assert_eq!(store.stats().injected_failures, 5);

        store.set_outage(false);
        assert_eq!(store.get("a").await.unwrap(), "1");
        assert!(matches!(
            store.inner().get("b").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn puts_fail_after_the_configured_count() {
        let store = faulty(FaultConfig {
            fail_after_puts: Some(2),
            ..FaultConfig::default()
        });
        store
            .put("a", Bytes::from_static(b"1").into())
            .await
            .unwrap();
        store
            .put("b", Bytes::from_static(b"2").into())
            .await
            .unwrap();
        assert!(is_unavailable(
            store.put("c", Bytes::from_static(b"3").into()).await
        ));
        assert!(is_unavailable(
            store.put("a", Bytes::from_static(b"4").into()).await
        ));
        // Nothing of the failed puts got through; reads still work.
        assert!(matches!(
            store.get("c").await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.get("a").await.unwrap(), "1");
        let stats = store.stats();
        assert_eq!(
            (stats.puts, stats.injected_failures, stats.torn_writes),
            (2, 2, 0)
        );
    }

    #[tokio::test]
    async fn torn_writes_leave_a_truncated_object_behind() {
        let store = faulty(FaultConfig {
            fail_after_puts: Some(0),
            torn_writes: true,
            ..FaultConfig::default()
        });
        let result = store
            .put("a", Bytes::from_static(b"0123456789").into())
            .await;
        assert!(is_unavailable(result));
        assert_eq!(store.inner().get("a").await.unwrap(), "01234");
        assert_eq!(store.stats().torn_writes, 1);

        // During an outage nothing reaches the store, torn or not.
        store.set_outage(true);
        assert!(is_unavailable(
            store.put("b", Bytes::from_static(b"0123").into()).await
        ));
        assert!(store.inner().get("b").await.is_err());
        assert_eq!(store.stats().torn_writes, 1);
    }

    #[tokio::test]
    async fn error_rate_fails_about_that_share_of_calls() {
        let always = faulty(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        });
        assert!(is_unavailable(
            always.put("a", Bytes::from_static(b"1").into()).await
        ));
        assert!(is_unavailable(always.list("").await));

        let half = faulty(FaultConfig {
            error_rate: 0.5,
            ..FaultConfig::default()
        });
        let mut failed = 0;
        for _ in 0..1000 {
            if half.list("").await.is_err() {
                failed += 1;
            }
        }
        assert!((350..650).contains(&failed), "{failed} of 1000 failed");
        assert_eq!(half.stats().injected_failures, failed);
    }

    #[tokio::test]
    async fn reads_cut_short_return_half_their_bytes_without_an_error() {
        let store = faulty(FaultConfig::default());
        store
            .put("a", Bytes::from_static(b"0123456789").into())
            .await
            .unwrap();
        store.cut_next_reads(2);
        assert_eq!(store.get_range("a", 0..10).await.unwrap(), "01234");
        assert_eq!(store.get("a").await.unwrap(), "01234");
        assert_eq!(store.get("a").await.unwrap(), "0123456789");
    }

    #[test]
    fn put_latencies_follow_the_given_median_and_99th_percentile() {
        let latency = LogNormalLatency {
            p50: Duration::from_millis(50),
            p99: Duration::from_millis(300),
        };
        let mut samples: Vec<Duration> = (0..20_000).map(|_| latency.sample()).collect();
        samples.sort();
        let at = |q: f64| samples[(q * samples.len() as f64) as usize].as_secs_f64() * 1e3;
        assert!((45.0..55.0).contains(&at(0.5)), "p50 {} ms", at(0.5));
        assert!((250.0..360.0).contains(&at(0.99)), "p99 {} ms", at(0.99));
    }

    #[tokio::test(start_paused = true)]
    async fn put_latency_delays_puts_only() {
        let store = faulty(FaultConfig {
            put_latency: Some(LogNormalLatency {
                p50: Duration::from_secs(1),
                p99: Duration::from_secs(1),
            }),
            ..FaultConfig::default()
        });
        let started = tokio::time::Instant::now();
        store
            .put("a", Bytes::from_static(b"1").into())
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        store.get("a").await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn latency_delays_every_call() {
        let store = faulty(FaultConfig {
            latency: Some(Duration::from_millis(30)),
            ..FaultConfig::default()
        });
        let started = Instant::now();
        store
            .put("a", Bytes::from_static(b"1").into())
            .await
            .unwrap();
        store.get("a").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
    }
}
