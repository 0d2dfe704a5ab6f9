//! Prometheus metrics. Label children are looked up once and cached in the structs below
//! (per API key, per topic, per store operation), never on the hot path. The read caches
//! count for themselves; their counters are read at scrape time, as are consumer lag, the
//! partitions led and the memory in use. So do the etcd store's transactions, in cluster
//! mode.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use coordinator::etcd::StoreMetrics;
use coordinator::Coordinator;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use proto_compat::api_versions::SUPPORTED;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::ApiKey;
use segment_store::caches::disk_cache::DiskCache;
use segment_store::caches::read_cache::ReadCache;
use segment_store::retry::RetryObserver;
use segment_store::StoreError;

use crate::fetch_memory::FetchMemory;
use crate::partition::flush_queue::UnflushedAge;
use crate::quotas::ClientQuotaMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLagLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLagLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionErrorLabels {
    api: &'static str,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Counters of one topic, shared by its partitions.
#[derive(Clone, Debug, Default)]
pub struct TopicMetrics {
    pub bytes_in: Counter,
    pub messages_in: Counter,
    pub bytes_out: Counter,
    pub messages_out: Counter,
}

/// Counters of one API.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub requests: Counter,
    pub latency: Histogram,
}

/// Counters of one background task.
#[derive(Clone, Debug, Default)]
pub struct BackgroundTaskMetrics {
    /// Failed passes over one partition or object; the next pass tries again.
    pub errors: Counter,
    /// Times the task stopped unexpectedly and was started again.
    pub restarts: Counter,
}

/// The LogCleaner's work over this broker's compacted partitions (Kafka's LogCleaner
/// metrics).
#[derive(Clone, Debug, Default)]
pub struct LogCleanerMetrics {
    /// Cleans committed.
    pub runs: Counter,
    /// Bytes of batches read and written by cleans (their ratio is the cleaner's write
    /// amplification).
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    /// Records removed: superseded by a later record of their key, tombstones past their
    /// delete horizon, records without key.
    pub records_removed: Counter,
    /// The highest dirty ratio of a compacted partition at the last pass, in percent
    /// (Kafka's max-dirty-percent).
    pub max_dirty_percent: Gauge,
}

/// Partition leaders the controller changed.
#[derive(Clone, Debug, Default)]
pub struct LeaderChangeMetrics {
    /// Partitions without a live leader given one.
    pub failover: Counter,
    /// Handovers started to balance leadership.
    pub balance: Counter,
}

/// The gateway's memory bounds, and the fetch memory whose use is read at each scrape.
#[derive(Debug)]
pub struct MemoryBounds {
    pub buffer_max_bytes: usize,
    pub queued_max_request_bytes: usize,
    pub fetch: FetchMemory,
}

/// Counters of one object-store operation.
#[derive(Clone, Debug)]
pub struct StoreOperationMetrics {
    pub requests: Counter,
    pub errors: Counter,
    pub retries: Counter,
    pub latency: Histogram,
}

pub struct Metrics {
    registry: Registry,
    topic_bytes_in: Family<TopicLabels, Counter>,
    topic_messages_in: Family<TopicLabels, Counter>,
    topic_bytes_out: Family<TopicLabels, Counter>,
    topic_messages_out: Family<TopicLabels, Counter>,
    topics: Mutex<HashMap<String, TopicMetrics>>,
    apis: HashMap<i16, ApiMetrics>,
    store_operations: HashMap<&'static str, StoreOperationMetrics>,
    partition_errors: Family<PartitionErrorLabels, Counter>,
    read_caches: Arc<ReadCacheCollector>,
    cluster: Arc<ClusterCollector>,
    metadata_store: Arc<MetadataStoreCollector>,
    memory: Arc<MemoryCollector>,
    pub flushes: Counter,
    pub flush_bytes: Counter,
    pub flush_errors: Counter,
    pub flush_latency: Histogram,
    pub flush_commit_latency: Histogram,
    pub buffered_bytes: Gauge,
    pub compaction_backlog_bytes: Gauge,
    pub unflushed: Arc<UnflushedAge>,
    pub fetch_memory_exhausted: Counter,
    pub read_integrity_errors: Counter,
    pub connections: Gauge,
    pub connections_rejected: Counter,
    pub authentication_failures: Counter,
    pub request_bytes_queued: Gauge,
    pub request_memory_waits: Counter,
    pub compaction: BackgroundTaskMetrics,
    pub retention: BackgroundTaskMetrics,
    pub garbage_collection: BackgroundTaskMetrics,
    pub offset_expiration: BackgroundTaskMetrics,
    pub transactions: BackgroundTaskMetrics,
    pub controller: BackgroundTaskMetrics,
    pub leadership: BackgroundTaskMetrics,
    pub log_cleaner: BackgroundTaskMetrics,
    pub cleaner: LogCleanerMetrics,
    pub coordinator_active: Gauge,
    pub coordinator_elections: Counter,
    pub leader_changes: LeaderChangeMetrics,
    pub client_quotas: ClientQuotaMetrics,
}

/// The operations of `segment_store::store::ObjectStore`.
pub const STORE_OPERATIONS: [&str; 6] = ["put", "create", "get", "get_range", "delete", "list"];

fn latency_histogram() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let topic_bytes_in = Family::<TopicLabels, Counter>::default();
        let topic_messages_in = Family::<TopicLabels, Counter>::default();
        let topic_bytes_out = Family::<TopicLabels, Counter>::default();
        let topic_messages_out = Family::<TopicLabels, Counter>::default();
        registry.register(
            "topic_bytes_in",
            "Record batch bytes produced to the topic",
            topic_bytes_in.clone(),
        );
        registry.register(
            "topic_messages_in",
            "Records produced to the topic",
            topic_messages_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Record batch bytes fetched from the topic",
            topic_bytes_out.clone(),
        );
        registry.register(
            "topic_messages_out",
            "Records fetched from the topic (in whole batches, as sent)",
            topic_messages_out.clone(),
        );

        let requests = Family::<ApiLabels, Counter>::default();
        let request_latency = Family::<ApiLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "Kafka requests handled, per API",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from decoding a Kafka request to having its response, per API",
            request_latency.clone(),
        );
        let apis = SUPPORTED
            .iter()
            .map(|range| {
                let labels = ApiLabels {
                    api: format!("{:?}", range.api_key),
                };
                let metrics = ApiMetrics {
                    requests: requests.get_or_create(&labels).clone(),
                    latency: request_latency.get_or_create(&labels).clone(),
                };
                (range.api_key as i16, metrics)
            })
            .collect();
        let partition_errors = Family::<PartitionErrorLabels, Counter>::default();
        registry.register(
            "partition_errors",
            "Partitions of Produce and Fetch responses answered with an error, per API and error",
            partition_errors.clone(),
        );

        let store_requests = Family::<OperationLabels, Counter>::default();
        let store_errors = Family::<OperationLabels, Counter>::default();
        let store_retries = Family::<OperationLabels, Counter>::default();
        let store_latency = Family::<OperationLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "object_store_requests",
            "Object store requests, per operation",
            store_requests.clone(),
        );
        registry.register(
            "object_store_errors",
            "Object store requests that failed, per operation",
            store_errors.clone(),
        );
        registry.register(
            "object_store_retries",
            "Object store calls retried after a transient failure, per operation",
            store_retries.clone(),
        );
        registry.register(
            "object_store_request_duration_seconds",
            "Time an object store request took, its retries included, per operation",
            store_latency.clone(),
        );
        let store_operations = STORE_OPERATIONS
            .iter()
            .map(|&operation| {
                let labels = OperationLabels {
                    operation: operation.to_string(),
                };
                let metrics = StoreOperationMetrics {
                    requests: store_requests.get_or_create(&labels).clone(),
                    errors: store_errors.get_or_create(&labels).clone(),
                    retries: store_retries.get_or_create(&labels).clone(),
                    latency: store_latency.get_or_create(&labels).clone(),
                };
                (operation, metrics)
            })
            .collect();

        let read_caches = Arc::new(ReadCacheCollector::default());
        registry.register_collector(Box::new(read_caches.clone()));
        let cluster = Arc::new(ClusterCollector::default());
        registry.register_collector(Box::new(cluster.clone()));
        let metadata_store = Arc::new(MetadataStoreCollector::default());
        registry.register_collector(Box::new(metadata_store.clone()));
        let memory = Arc::new(MemoryCollector::default());
        registry.register_collector(Box::new(memory.clone()));

        let flushes = Counter::default();
        let flush_bytes = Counter::default();
        let flush_errors = Counter::default();
        let flush_latency = latency_histogram();
        let flush_commit_latency = latency_histogram();
        let buffered_bytes = Gauge::default();
        let compaction_backlog_bytes = Gauge::default();
        let fetch_memory_exhausted = Counter::default();
        registry.register(
            "flushes",
            "Flush objects written and committed",
            flushes.clone(),
        );
        registry.register(
            "flush_bytes",
            "Bytes in committed flush objects",
            flush_bytes.clone(),
        );
        registry.register(
            "flush_errors",
            "Failed flush attempts (object PUT or coordinator commit); each is retried",
            flush_errors.clone(),
        );
        registry.register(
            "flush_duration_seconds",
            "Time to PUT and commit one flush object",
            flush_latency.clone(),
        );
        registry.register(
            "flush_commit_duration_seconds",
            "Time to commit one flush object to the coordinator, once its PUT and the previous \
             flush's commit are done",
            flush_commit_latency.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Produced bytes waiting for a flush",
            buffered_bytes.clone(),
        );
        registry.register(
            "compaction_backlog_bytes",
            "Committed bytes of the partitions this broker leads still in flush objects, not \
             yet compacted into segments, measured at the start and end of each compaction \
             pass and as it compacts each partition; grows while compaction falls behind",
            compaction_backlog_bytes.clone(),
        );
        registry.register(
            "fetch_memory_exhausted",
            "Fetches answered without records because fetch.buffer.max.bytes stayed in use \
             for their whole max_wait_ms",
            fetch_memory_exhausted.clone(),
        );
        let unflushed = Arc::new(UnflushedAge::default());
        registry.register_collector(Box::new(UnflushedAgeCollector(unflushed.clone())));
        let read_integrity_errors = Counter::default();
        registry.register(
            "read_integrity_errors",
            "Reads of stored data that were short, out of order or did not cover the offsets \
             the checkpoint gives them; each is read once more from the store",
            read_integrity_errors.clone(),
        );
        let connections = Gauge::default();
        let connections_rejected = Counter::default();
        let authentication_failures = Counter::default();
        let request_bytes_queued = Gauge::default();
        let request_memory_waits = Counter::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_rejected",
            "Connections closed at once because their address already had \
             max.connections.per.ip open",
            connections_rejected.clone(),
        );
        registry.register(
            "authentication_failures",
            "Connections closed because the client did not authenticate: a failed or timed-out \
             TLS handshake (a certificate no trusted CA signed, none where one is required, \
             plaintext to an SSL listener) or a subject no principal mapping rule matches",
            authentication_failures.clone(),
        );
        registry.register(
            "request_bytes_queued",
            "Bytes of request frames being read or handled (bounded by \
             queued.max.request.bytes)",
            request_bytes_queued.clone(),
        );
        registry.register(
            "request_memory_waits",
            "Request frames that waited for queued.max.request.bytes to free up before being read",
            request_memory_waits.clone(),
        );
        let background_errors = Family::<TaskLabels, Counter>::default();
        let background_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "background_errors",
            "Failed passes of a background task over one partition or object, per task; \
             each is tried again on the task's next pass",
            background_errors.clone(),
        );
        registry.register(
            "background_task_restarts",
            "Background tasks that stopped unexpectedly and were started again, per task",
            background_restarts.clone(),
        );
        let cleaner = LogCleanerMetrics::default();
        registry.register(
            "log_cleaner_runs",
            "Cleans of compacted partitions committed",
            cleaner.runs.clone(),
        );
        registry.register(
            "log_cleaner_bytes_read",
            "Bytes of batches the log cleaner read",
            cleaner.bytes_read.clone(),
        );
        registry.register(
            "log_cleaner_bytes_written",
            "Bytes of batches the log cleaner wrote",
            cleaner.bytes_written.clone(),
        );
        registry.register(
            "log_cleaner_records_removed",
            "Records the log cleaner removed: superseded by a later record of their key, \
             tombstones past their delete horizon, records without key",
            cleaner.records_removed.clone(),
        );
        registry.register(
            "log_cleaner_max_dirty_percent",
            "The highest dirty ratio (uncleaned bytes over all segment bytes) of a compacted \
             partition led here, at the cleaner's last pass, in percent",
            cleaner.max_dirty_percent.clone(),
        );
        let coordinator_active = Gauge::default();
        let coordinator_elections = Counter::default();
        let leader_changes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "coordinator_active",
            "1 while this process is the active coordinator (runs the controller), else 0",
            coordinator_active.clone(),
        );
        registry.register(
            "coordinator_elections",
            "Times this process won the coordinator election and became active",
            coordinator_elections.clone(),
        );
        registry.register(
            "leader_changes",
            "Partition leaders the controller changed, per reason: failover (a partition \
             without a live leader, as its gateway left or died or it is new, got one) or \
             balance (a handover started to even out leadership)",
            leader_changes.clone(),
        );
        let reason = |reason: &'static str| {
            leader_changes
                .get_or_create(&ReasonLabels { reason })
                .clone()
        };
        let task = |task: &'static str| BackgroundTaskMetrics {
            errors: background_errors
                .get_or_create(&TaskLabels { task })
                .clone(),
            restarts: background_restarts
                .get_or_create(&TaskLabels { task })
                .clone(),
        };
        let client_quotas = ClientQuotaMetrics::register(&mut registry);

        Self {
            registry,
            topic_bytes_in,
            topic_messages_in,
            topic_bytes_out,
            topic_messages_out,
            topics: Mutex::new(HashMap::new()),
            apis,
            store_operations,
            partition_errors,
            read_caches,
            cluster,
            metadata_store,
            memory,
            flushes,
            flush_bytes,
            flush_errors,
            flush_latency,
            flush_commit_latency,
            buffered_bytes,
            compaction_backlog_bytes,
            unflushed,
            fetch_memory_exhausted,
            read_integrity_errors,
            connections,
            connections_rejected,
            authentication_failures,
            request_bytes_queued,
            request_memory_waits,
            compaction: task("compaction"),
            retention: task("retention"),
            garbage_collection: task("garbage_collection"),
            offset_expiration: task("offset_expiration"),
            transactions: task("transactions"),
            controller: task("controller"),
            leadership: task("leadership"),
            log_cleaner: task("log_cleaner"),
            cleaner,
            coordinator_active,
            coordinator_elections,
            leader_changes: LeaderChangeMetrics {
                failover: reason("failover"),
                balance: reason("balance"),
            },
            client_quotas,
        }
    }

    /// The cached counters of `topic`; called when a partition is loaded, not per request.
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        let mut topics = self.topics.lock().unwrap();
        topics
            .entry(topic.to_string())
            .or_insert_with(|| {
                let labels = TopicLabels {
                    topic: topic.to_string(),
                };
                TopicMetrics {
                    bytes_in: self.topic_bytes_in.get_or_create(&labels).clone(),
                    messages_in: self.topic_messages_in.get_or_create(&labels).clone(),
                    bytes_out: self.topic_bytes_out.get_or_create(&labels).clone(),
                    messages_out: self.topic_messages_out.get_or_create(&labels).clone(),
                }
            })
            .clone()
    }

    /// Drops a deleted topic's series so labels stay bounded.
    pub fn remove_topic(&self, topic: &str) {
        self.topics.lock().unwrap().remove(topic);
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.topic_bytes_in.remove(&labels);
        self.topic_messages_in.remove(&labels);
        self.topic_bytes_out.remove(&labels);
        self.topic_messages_out.remove(&labels);
    }

    pub fn api(&self, api_key: ApiKey) -> Option<&ApiMetrics> {
        self.apis.get(&(api_key as i16))
    }

    pub fn store_operation(&self, operation: &'static str) -> StoreOperationMetrics {
        self.store_operations[operation].clone()
    }

    /// Reports the read caches' counters from now on.
    pub fn observe_read_caches(&self, memory: ReadCache, disk: Option<Arc<DiskCache>>) {
        let _ = self.read_caches.caches.set((memory, disk));
    }

    /// Counts a partition of a Produce or Fetch response answered with `code`. Errors are
    /// off the hot path, so their series are looked up here and made on first use.
    pub fn partition_error(&self, api: &'static str, code: i16) {
        // A code Kafka does not define reads Unknown(code).
        let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code));
        let error = format!("{error:?}");
        self.partition_errors
            .get_or_create(&PartitionErrorLabels { api, error })
            .inc();
    }

    /// Reports the consumer lag of the groups' committed offsets and the partitions this
    /// broker leads from now on.
    pub fn observe_cluster(&self, coordinator: Arc<Coordinator>) {
        let _ = self.cluster.coordinator.set(coordinator);
    }

    /// Reports the gateway's memory bounds and its fetch memory in use from now on.
    pub fn observe_memory(&self, bounds: MemoryBounds) {
        let _ = self.memory.bounds.set(bounds);
    }

    /// Reports the etcd store's transactions from now on.
    pub fn observe_metadata_store(&self, store: StoreMetrics) {
        let _ = self.metadata_store.metrics.set(store);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryObserver for Metrics {
    fn retried(&self, op: &'static str, _error: &StoreError) {
        if let Some(operation) = self.store_operations.get(op) {
            operation.retries.inc();
        }
    }
}

/// The read cache's counters and, if configured, its disk tier's.
#[derive(Debug, Default)]
struct ReadCacheCollector {
    caches: OnceLock<(ReadCache, Option<Arc<DiskCache>>)>,
}

struct TierStats {
    tier: &'static str,
    hits: u64,
    misses: u64,
    bytes_read: u64,
}

impl Collector for ReadCacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((memory, disk)) = self.caches.get() else {
            return Ok(());
        };
        let stats = memory.stats();
        let mut tiers = vec![TierStats {
            tier: "memory",
            hits: stats.hits,
            misses: stats.misses,
            bytes_read: stats.bytes_read,
        }];
        if let Some(disk) = disk {
            let stats = disk.stats();
            tiers.push(TierStats {
                tier: "disk",
                hits: stats.hits,
                misses: stats.misses,
                bytes_read: stats.bytes_read,
            });
        }
        encode_tiers(
            &mut encoder,
            "read_cache_hits",
            "Block reads served by the read cache, per tier",
            tiers.iter().map(|tier| (tier.tier, tier.hits)),
        )?;
        encode_tiers(
            &mut encoder,
            "read_cache_misses",
            "Block reads passed to the tier below (memory: the disk tier if any, else the object store)",
            tiers.iter().map(|tier| (tier.tier, tier.misses)),
        )?;
        encode_tiers(
            &mut encoder,
            "read_cache_bytes_read",
            "Bytes read from the tier below on misses, per tier",
            tiers.iter().map(|tier| (tier.tier, tier.bytes_read)),
        )?;
        Ok(())
    }
}

/// Consumer lag and the partitions this broker leads, computed from the coordinator at each
/// scrape: lag series exist only for groups and partitions that do, so a deleted group or
/// topic disappears.
#[derive(Default)]
struct ClusterCollector {
    coordinator: OnceLock<Arc<Coordinator>>,
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCollector").finish_non_exhaustive()
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(coordinator) = self.coordinator.get() else {
            return Ok(());
        };
        if let Some(broker_id) = coordinator.broker_id() {
            let metric = encoder.encode_descriptor(
                "partitions_led",
                "Partitions this broker leads",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(coordinator.partitions_led(broker_id) as i64).encode(metric)?;
        }
        let lags = coordinator.consumer_lag();
        let mut metric = encoder.encode_descriptor(
            "consumer_group_lag",
            "High watermark minus the group's committed offset, per group, topic and partition",
            None,
            MetricType::Gauge,
        )?;
        let mut sums: BTreeMap<String, i64> = BTreeMap::new();
        for lag in lags {
            *sums.entry(lag.group.clone()).or_default() += lag.lag;
            let labels = PartitionLagLabels {
                group: lag.group,
                topic: lag.topic,
                partition: lag.partition,
            };
            ConstGauge::new(lag.lag).encode(metric.encode_family(&labels)?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "consumer_group_lag_sum",
            "The group's consumer lag over all its partitions",
            None,
            MetricType::Gauge,
        )?;
        for (group, sum) in sums {
            ConstGauge::new(sum).encode(metric.encode_family(&GroupLagLabels { group })?)?;
        }
        Ok(())
    }
}

/// The etcd store's transaction metrics, which the store updates itself.
#[derive(Debug, Default)]
struct MetadataStoreCollector {
    metrics: OnceLock<StoreMetrics>,
}

impl Collector for MetadataStoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = self.metrics.get() else {
            return Ok(());
        };
        let metrics: [(&str, &str, &dyn EncodeMetric); 5] = [
            (
                "metadata_store_transactions",
                "Transactions sent to the metadata store (etcd), applied or not",
                &store.transactions,
            ),
            (
                "metadata_store_transaction_errors",
                "Transactions the metadata store did not answer, or answered with an error (a \
                 guard that did not hold is an answer)",
                &store.errors,
            ),
            (
                "metadata_store_transaction_bytes",
                "Request bytes (keys and values) of the transactions sent to the metadata store",
                &store.transaction_bytes,
            ),
            (
                "metadata_store_transaction_duration_seconds",
                "Time from sending a metadata store transaction to its answer or failure",
                &store.transaction_duration,
            ),
            (
                "metadata_store_transaction_size_bytes",
                "Request bytes (keys and values) per metadata store transaction; etcd refuses \
                 requests above 1.5 MiB by default",
                &store.transaction_size,
            ),
        ];
        for (name, help, metric) in metrics {
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

/// The process's resident memory and, on a gateway, its memory bounds and fetch memory in
/// use, read at each scrape.
#[derive(Debug, Default)]
struct MemoryCollector {
    bounds: OnceLock<MemoryBounds>,
}

impl Collector for MemoryCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(bytes) = resident_memory_bytes() {
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the process (VmRSS)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(bytes as i64).encode(metric)?;
        }
        let Some(bounds) = self.bounds.get() else {
            return Ok(());
        };
        let gauges = [
            (
                "buffer_max_bytes",
                "The bound on produced bytes waiting for a flush (buffer.max.bytes)",
                bounds.buffer_max_bytes,
            ),
            (
                "fetch_buffer_max_bytes",
                "The bound on fetch responses held in memory (fetch.buffer.max.bytes)",
                bounds.fetch.limit(),
            ),
            (
                "fetch_memory_bytes",
                "Bytes of fetch responses held in memory until written",
                bounds.fetch.in_use(),
            ),
            (
                "queued_max_request_bytes",
                "The bound on request bytes being read or handled (queued.max.request.bytes)",
                bounds.queued_max_request_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value as i64).encode(metric)?;
        }
        Ok(())
    }
}

/// VmRSS from /proc/self/status; None where there is no such file (not Linux).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The age of the oldest byte not yet flushed, read at each scrape.
#[derive(Debug)]
struct UnflushedAgeCollector(Arc<UnflushedAge>);

impl Collector for UnflushedAgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(
            "oldest_unflushed_seconds",
            "How long the oldest produced byte not yet flushed and committed has waited \
             (0 when nothing waits); grows while flushes stall",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.0.age().as_secs_f64()).encode(metric)
    }
}

/// One counter with a series per tier.
fn encode_tiers(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (&'static str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (tier, value) in values {
        ConstCounter::new(value).encode(metric.encode_family(&TierLabels { tier })?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_series_appear_and_disappear_with_the_topic() {
        let metrics = Metrics::new();
        metrics.topic("orders").bytes_in.inc_by(42);
        metrics.topic("orders").messages_out.inc_by(3);
        let text = metrics.encode();
        assert!(
            text.contains("strata_topic_bytes_in_total{topic=\"orders\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("strata_topic_messages_out_total{topic=\"orders\"} 3"),
            "{text}"
        );
        metrics.remove_topic("orders");
        assert!(!metrics.encode().contains("orders"));
    }

    #[test]
    fn every_supported_api_has_cached_series() {
        let metrics = Metrics::new();
        let produce = metrics.api(ApiKey::Produce).unwrap();
        produce.requests.inc();
        produce.latency.observe(0.001);
        let text = metrics.encode();
        assert!(
            text.contains("strata_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains("strata_request_duration_seconds_count{api=\"Produce\"} 1"));
    }

    #[tokio::test]
    async fn retries_and_read_cache_counters_are_exposed() {
        let metrics = Metrics::new();
        let error = StoreError::Unavailable {
            op: "put",
            key: "k".to_string(),
            message: "timeout".to_string(),
        };
        metrics.retried("put", &error);
        metrics.retried("put", &error);
        let text = metrics.encode();
        assert!(
            text.contains("strata_object_store_retries_total{operation=\"put\"} 2"),
            "{text}"
        );
        assert!(
            !text.contains("read_cache"),
            "no caches observed yet: {text}"
        );

        use segment_store::ObjectStore;

        let store = Arc::new(segment_store::backends::memory::MemoryStore::new());
        store
            .put("a", bytes::Bytes::from(vec![1; 3000]).into())
            .await
            .unwrap();
        let cache = ReadCache::new(store, 1 << 22);
        cache.get_range("a", 0..10).await.unwrap();
        cache.get_range("a", 20..30).await.unwrap();
        metrics.observe_read_caches(cache, None);
        let text = metrics.encode();
        for line in [
            "strata_read_cache_hits_total{tier=\"memory\"} 1",
            "strata_read_cache_misses_total{tier=\"memory\"} 1",
            "strata_read_cache_bytes_read_total{tier=\"memory\"} 3000",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
    #[tokio::test]
    async fn consumer_lag_and_partitions_led_follow_the_metadata() {
        use coordinator::{BrokerInfo, ChunkCommit, ChunkMeta, CommittedOffset};

        let dir = tempfile::tempdir().unwrap();
        let store = coordinator::embedded::EmbeddedStore::open(dir.path().join("m.log")).unwrap();
        let defaults = coordinator::topic_config::BrokerDefaults::default();
        let coordinator = Coordinator::open(Arc::new(store), defaults).await.unwrap();
        let broker = BrokerInfo {
            broker_id: 0,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            endpoints: Vec::new(),
        };
        coordinator.register_broker(broker).await.unwrap();
        let topic = coordinator
            .create_topic("t", 2, Default::default(), false)
            .await
            .unwrap();
        let chunk = ChunkMeta {
            base_offset: 0,
            last_offset: 9,
            max_timestamp: 0,
            size: 1,
            object_key: "o".into(),
            byte_range: 0..1,
            aborted_transactions: Vec::new(),
        };
        let flush = ChunkCommit {
            topic_id: topic.topic_id,
            partition: 0,
            leader_epoch: 0,
            chunk,
            producers: Vec::new(),
        };
        coordinator.commit_flush(vec![flush]).await.unwrap();
        let committed = |offset| CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        };
        let offsets = vec![("t".into(), 0, committed(3)), ("t".into(), 1, committed(0))];
        coordinator.commit_offsets("g", offsets).await.unwrap();

        let metrics = Metrics::new();
        metrics.observe_cluster(coordinator.clone());
        let text = metrics.encode();
        for line in [
            "strata_partitions_led 2",
            "strata_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 7",
            "strata_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"1\"} 0",
            "strata_consumer_group_lag_sum{group=\"g\"} 7",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        coordinator.delete_topic("t").await.unwrap();
        let text = metrics.encode();
        assert!(!text.contains("group=\"g\""), "{text}");
        assert!(text.contains("strata_partitions_led 0"), "{text}");
    }

    #[test]
    fn partition_errors_are_counted_per_api_and_error() {
        let metrics = Metrics::new();
        assert!(!metrics.encode().contains("strata_partition_errors_total{"));
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        metrics.partition_error("Produce", not_leader);
        metrics.partition_error("Produce", not_leader);
        metrics.partition_error("Fetch", ResponseError::OffsetOutOfRange.code());
        metrics.partition_error("Fetch", 9999);
        let text = metrics.encode();
        for line in [
            "strata_partition_errors_total{api=\"Produce\",error=\"NotLeaderOrFollower\"} 2",
            "strata_partition_errors_total{api=\"Fetch\",error=\"OffsetOutOfRange\"} 1",
            "strata_partition_errors_total{api=\"Fetch\",error=\"Unknown(9999)\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[tokio::test]
    async fn memory_bounds_and_use_are_exposed_once_observed() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        assert!(
            text.contains("strata_process_resident_memory_bytes "),
            "{text}"
        );
        assert!(!text.contains("buffer_max_bytes"), "{text}");
        let fetch = FetchMemory::new(1000, Counter::default());
        let deadline = tokio::time::Instant::now();
        let _held = fetch.reserve(300, deadline).await.unwrap();
        metrics.observe_memory(MemoryBounds {
            buffer_max_bytes: 2000,
            queued_max_request_bytes: 3000,
            fetch,
        });
        let text = metrics.encode();
        for line in [
            "strata_buffer_max_bytes 2000",
            "strata_fetch_buffer_max_bytes 1000",
            "strata_fetch_memory_bytes 300",
            "strata_queued_max_request_bytes 3000",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn coordinator_series_start_at_zero() {
        let metrics = Metrics::new();
        metrics.leader_changes.balance.inc_by(2);
        let text = metrics.encode();
        for line in [
            "strata_coordinator_active 0",
            "strata_coordinator_elections_total 0",
            "strata_leader_changes_total{reason=\"failover\"} 0",
            "strata_leader_changes_total{reason=\"balance\"} 2",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn metadata_store_transactions_are_exposed_once_observed() {
        let metrics = Metrics::new();
        assert!(!metrics.encode().contains("metadata_store"));
        let store = StoreMetrics::new();
        metrics.observe_metadata_store(store.clone());
        store.transactions.inc_by(3);
        store.errors.inc();
        store.transaction_bytes.inc_by(1500);
        store.transaction_size.observe(1000.0);
        let text = metrics.encode();
        for line in [
            "strata_metadata_store_transactions_total 3",
            "strata_metadata_store_transaction_errors_total 1",
            "strata_metadata_store_transaction_bytes_total 1500",
            "strata_metadata_store_transaction_size_bytes_count 1",
            "strata_metadata_store_transaction_size_bytes_sum 1000.0",
            "strata_metadata_store_transaction_duration_seconds_count 0",
            "strata_metadata_store_transaction_size_bytes_bucket{le=\"1024.0\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
