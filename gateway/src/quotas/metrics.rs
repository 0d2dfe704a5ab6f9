//! Per-client usage and throttling, labelled by the tags of the quota that applies (the
//! user and client id of its entity, empty where the entity names none), as Kafka labels
//! its quota metrics. Clients without a quota are not measured, so the series stay as
//! bounded as the configured quotas, and a series goes with its idle measurement.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::entity::QuotaTags;
use super::QuotaType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    user: String,
    client_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    quota: &'static str,
    user: String,
    client_id: String,
}

#[derive(Debug, Default, Clone)]
pub struct ClientQuotaMetrics {
    bytes_in: Family<ClientLabels, Counter>,
    bytes_out: Family<ClientLabels, Counter>,
    requests: Family<ClientLabels, Counter>,
    request_time: Family<ClientLabels, Counter<f64, AtomicU64>>,
    throttle_time: Family<ThrottleLabels, Counter<f64, AtomicU64>>,
}

/// The series of one measurement, looked up when it is created.
#[derive(Debug)]
pub struct SensorMetrics {
    /// Bytes produced or fetched, or seconds of request handling.
    usage: Usage,
    pub throttle_time: Counter<f64, AtomicU64>,
}

#[derive(Debug)]
enum Usage {
    Bytes(Counter),
    Time {
        requests: Counter,
        seconds: Counter<f64, AtomicU64>,
    },
}

impl SensorMetrics {
    /// Counts `value` as recorded for the quota: bytes, or percent-seconds of handling.
    pub fn count(&self, value: f64) {
        match &self.usage {
            Usage::Bytes(bytes) => {
                bytes.inc_by(value as u64);
            }
            Usage::Time { requests, seconds } => {
                requests.inc();
                seconds.inc_by(value / 100.0);
            }
        }
    }
}

impl ClientQuotaMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ClientQuotaMetrics::default();
        registry.register(
            "client_bytes_in",
            "Bytes of produce requests, per quota entity in use (user, client id)",
            metrics.bytes_in.clone(),
        );
        registry.register(
            "client_bytes_out",
            "Bytes of record sets fetched, per quota entity in use (user, client id)",
            metrics.bytes_out.clone(),
        );
        registry.register(
            "client_requests",
            "Requests under a request_percentage quota, per quota entity in use",
            metrics.requests.clone(),
        );
        registry.register(
            "client_request_time_seconds",
            "Time spent handling requests under a request_percentage quota, per quota entity in use",
            metrics.request_time.clone(),
        );
        registry.register(
            "client_throttle_time_seconds",
            "Throttle time asked of clients, per quota type and quota entity in use",
            metrics.throttle_time.clone(),
        );
        metrics
    }

    pub fn sensor(&self, quota: QuotaType, tags: &QuotaTags) -> SensorMetrics {
        let labels = client_labels(tags);
        let usage = match quota {
            QuotaType::Produce => Usage::Bytes(self.bytes_in.get_or_create(&labels).clone()),
            QuotaType::Fetch => Usage::Bytes(self.bytes_out.get_or_create(&labels).clone()),
            QuotaType::Request => Usage::Time {
                requests: self.requests.get_or_create(&labels).clone(),
                seconds: self.request_time.get_or_create(&labels).clone(),
            },
        };
        let throttle_time = self
            .throttle_time
            .get_or_create(&throttle_labels(quota, tags))
            .clone();
        SensorMetrics {
            usage,
            throttle_time,
        }
    }

    /// Drops the series of a measurement that has expired.
    pub fn remove(&self, quota: QuotaType, tags: &QuotaTags) {
        let labels = client_labels(tags);
        match quota {
            QuotaType::Produce => self.bytes_in.remove(&labels),
            QuotaType::Fetch => self.bytes_out.remove(&labels),
            QuotaType::Request => {
                self.requests.remove(&labels);
                self.request_time.remove(&labels)
            }
        };
        self.throttle_time.remove(&throttle_labels(quota, tags));
    }
}

fn client_labels(tags: &QuotaTags) -> ClientLabels {
    ClientLabels {
        user: tags.user.clone(),
        client_id: tags.client_id.clone(),
    }
}

fn throttle_labels(quota: QuotaType, tags: &QuotaTags) -> ThrottleLabels {
    ThrottleLabels {
        quota: quota.name(),
        user: tags.user.clone(),
        client_id: tags.client_id.clone(),
    }
}
