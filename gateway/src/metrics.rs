//! Prometheus metrics. Label children are looked up once and cached in the structs below
//! (per API key, per topic, per store operation), never on the hot path.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use proto_compat::api_versions::SUPPORTED;
use proto_compat::kafka_protocol::messages::ApiKey;

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

/// Counters of one topic, shared by its partitions.
#[derive(Clone, Debug, Default)]
pub struct TopicMetrics {
    pub bytes_in: Counter,
    pub messages_in: Counter,
    pub bytes_out: Counter,
}

/// Counters of one API.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub requests: Counter,
    pub latency: Histogram,
}

/// Counters of one object-store operation.
#[derive(Clone, Debug, Default)]
pub struct StoreOperationMetrics {
    pub requests: Counter,
    pub errors: Counter,
}

pub struct Metrics {
    registry: Registry,
    topic_bytes_in: Family<TopicLabels, Counter>,
    topic_messages_in: Family<TopicLabels, Counter>,
    topic_bytes_out: Family<TopicLabels, Counter>,
    topics: Mutex<HashMap<String, TopicMetrics>>,
    apis: HashMap<i16, ApiMetrics>,
    store_operations: HashMap<&'static str, StoreOperationMetrics>,
    pub flushes: Counter,
    pub flush_bytes: Counter,
    pub flush_errors: Counter,
    pub flush_latency: Histogram,
    pub buffered_bytes: Gauge,
}

/// The operations of `segment_store::store::ObjectStore`.
pub const STORE_OPERATIONS: [&str; 5] = ["put", "get", "get_range", "delete", "list"];

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

        let store_requests = Family::<OperationLabels, Counter>::default();
        let store_errors = Family::<OperationLabels, Counter>::default();
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
        let store_operations = STORE_OPERATIONS
            .iter()
            .map(|&operation| {
                let labels = OperationLabels {
                    operation: operation.to_string(),
                };
                let metrics = StoreOperationMetrics {
                    requests: store_requests.get_or_create(&labels).clone(),
                    errors: store_errors.get_or_create(&labels).clone(),
                };
                (operation, metrics)
            })
            .collect();

        let flushes = Counter::default();
        let flush_bytes = Counter::default();
        let flush_errors = Counter::default();
        let flush_latency = latency_histogram();
        let buffered_bytes = Gauge::default();
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
            "buffered_bytes",
            "Produced bytes waiting for a flush",
            buffered_bytes.clone(),
        );

        Self {
            registry,
            topic_bytes_in,
            topic_messages_in,
            topic_bytes_out,
            topics: Mutex::new(HashMap::new()),
            apis,
            store_operations,
            flushes,
            flush_bytes,
            flush_errors,
            flush_latency,
            buffered_bytes,
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
    }

    pub fn api(&self, api_key: ApiKey) -> Option<&ApiMetrics> {
        self.apis.get(&(api_key as i16))
    }

    pub fn store_operation(&self, operation: &'static str) -> StoreOperationMetrics {
        self.store_operations[operation].clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_series_appear_and_disappear_with_the_topic() {
        let metrics = Metrics::new();
        metrics.topic("orders").bytes_in.inc_by(42);
        let text = metrics.encode();
        assert!(
            text.contains("strata_topic_bytes_in_total{topic=\"orders\"} 42"),
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
}
