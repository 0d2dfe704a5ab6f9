//! Kafka's client quotas (ClientQuotaManager and ClientRequestQuotaManager): the bytes a
//! client produces and fetches per second, and the share of the broker's time its requests
//! take, each measured over `quota.window.num` windows of `quota.window.size.seconds`
//! against the quota of the entity that applies to it. A client over its quota is
//! throttled: its response says for how long, and its connection is muted that long.
//!
//! Quotas live in the coordinator's store, so every gateway applies the same ones, each
//! measuring the clients connected to it (as each Kafka broker does).

mod entity;
mod metrics;
mod rate;
mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coordinator::Coordinator;

pub use self::entity::QuotaTags;
pub use self::metrics::ClientQuotaMetrics;
use self::metrics::SensorMetrics;
pub use self::rate::QuotaWindow;
use self::rate::{throttle_time, Rate};
pub use self::throttle::{set_throttle_time, ChannelThrottle};

/// How long a measurement no client has added to is kept (Kafka's inactive sensor
/// expiration), and how often expired ones are looked for.
const SENSOR_EXPIRATION: Duration = Duration::from_secs(3600);
const EXPIRATION_CHECK: Duration = Duration::from_secs(60);

/// The quota keys a client quota entity may set.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaType {
    /// Bytes of produce requests per second.
    Produce,
    /// Bytes of fetched record sets per second.
    Fetch,
    /// Percent of one thread's time spent handling the client's requests.
    Request,
}

impl QuotaType {
    fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => PRODUCER_BYTE_RATE,
            QuotaType::Fetch => CONSUMER_BYTE_RATE,
            QuotaType::Request => REQUEST_PERCENTAGE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::Request => "request",
        }
    }
}

/// Who a request is from, as quotas see it: the user (the principal's name) and client id.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

impl<'a> Client<'a> {
    /// `principal` as Kafka writes it, `User:<name>`.
    pub fn new(principal: &'a str, client_id: &'a str) -> Self {
        Client {
            user: principal.strip_prefix("User:").unwrap_or(principal),
            client_id,
        }
    }
}

/// One client's (or one entity's clients') usage of one quota type on this broker.
struct Sensor {
    rate: Rate,
    last_recorded: Instant,
    metrics: SensorMetrics,
}

struct Sensors {
    by_tags: HashMap<(QuotaType, QuotaTags), Sensor>,
    last_expiration: Instant,
}

pub struct ClientQuotaManager {
    window: QuotaWindow,
    coordinator: Arc<Coordinator>,
    sensors: Mutex<Sensors>,
    metrics: ClientQuotaMetrics,
}

impl ClientQuotaManager {
    pub fn new(
        window: QuotaWindow,
        coordinator: Arc<Coordinator>,
        metrics: ClientQuotaMetrics,
    ) -> Self {
        ClientQuotaManager {
            window,
            coordinator,
            sensors: Mutex::new(Sensors {
                by_tags: HashMap::new(),
                last_expiration: Instant::now(),
            }),
            metrics,
        }
    }

    /// Records `value` against the client's quota of `quota` and returns how long it must
    /// be throttled (zero within its quota, or without one). A request quota's throttle is
    /// bounded by one window, as Kafka bounds it.
    pub fn record(&self, quota: QuotaType, client: Client<'_>, value: f64) -> Duration {
        self.measure(quota, client, value, true)
    }

    /// As [`record`](Self::record), but a value that would throttle the client is not kept:
    /// a throttled fetch returns no data, so it counts none (Kafka's unrecord).
    pub fn record_unless_throttled(
        &self,
        quota: QuotaType,
        client: Client<'_>,
        value: f64,
    ) -> Duration {
        self.measure(quota, client, value, false)
    }

    /// The most `quota` can take at once without being throttled whatever came before
    /// (Kafka's getMaxValueInQuotaWindow); None without a quota.
    pub fn max_value_in_window(&self, quota: QuotaType, client: Client<'_>) -> Option<f64> {
        let quotas = self.coordinator.client_quotas();
        let (_, bound) = entity::resolve(&quotas, client.user, client.client_id, quota.key())?;
        Some(bound * (self.window.samples - 1) as f64 * self.window.size.as_secs_f64())
    }

    fn measure(&self, quota: QuotaType, client: Client<'_>, value: f64, keep: bool) -> Duration {
        let quotas = self.coordinator.client_quotas();
        if quotas.is_empty() {
            return Duration::ZERO;
        }
        let Some((tags, bound)) =
            entity::resolve(&quotas, client.user, client.client_id, quota.key())
        else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let window = self.window;
        let mut sensors = self.sensors.lock().unwrap();
        self.expire(&mut sensors, now);
        let sensor = sensors
            .by_tags
            .entry((quota, tags))
            .or_insert_with_key(|(quota, tags)| Sensor {
                rate: Rate::new(now),
                last_recorded: now,
                metrics: self.metrics.sensor(*quota, tags),
            });
        sensor.last_recorded = now;
        sensor.rate.record(window, value, now);
        let measured = sensor.rate.measure(window, now);
        let mut throttle = throttle_time(measured, bound, sensor.rate.window_size(window, now));
        if quota == QuotaType::Request {
            throttle = throttle.min(window.size);
        }
        if keep || throttle.is_zero() {
            sensor.metrics.count(value);
        } else {
            sensor.rate.record(window, -value, now);
        }
        if !throttle.is_zero() {
            sensor.metrics.throttle_time.inc_by(throttle.as_secs_f64());
        }
        throttle
    }

    fn expire(&self, sensors: &mut Sensors, now: Instant) {
        if now.saturating_duration_since(sensors.last_expiration) < EXPIRATION_CHECK {
            return;
        }
        sensors.last_expiration = now;
        sensors.by_tags.retain(|(quota, tags), sensor| {
            let live = now.saturating_duration_since(sensor.last_recorded) < SENSOR_EXPIRATION;
            if !live {
                self.metrics.remove(*quota, tags);
            }
            live
        });
    }
}

#[cfg(test)]
mod tests {
    use coordinator::{BrokerDefaults, ClientQuotaEntity, EmbeddedStore, QuotaName};

    use super::*;

    /// A manager over a coordinator holding `quotas` for user alice; keep the TempDir.
    async fn manager(quotas: &[(&str, f64)]) -> (ClientQuotaManager, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("metadata.log")).unwrap();
        let coordinator = Coordinator::open(Arc::new(store), BrokerDefaults::default())
            .await
            .unwrap();
        let alterations = quotas
            .iter()
            .map(|&(key, value)| (user("alice"), key.to_string(), Some(value)))
            .collect();
        coordinator.alter_client_quotas(alterations).await.unwrap();
        let manager = ClientQuotaManager::new(
            QuotaWindow::default(),
            coordinator,
            ClientQuotaMetrics::default(),
        );
        (manager, dir)
    }

    fn user(name: &str) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: Some(QuotaName::Name(name.to_string())),
            client_id: None,
        }
    }

    #[tokio::test]
    async fn a_client_over_its_quota_is_throttled_and_others_are_not() {
        let (quotas, _dir) =
            manager(&[(PRODUCER_BYTE_RATE, 1000.0), (CONSUMER_BYTE_RATE, 1000.0)]).await;
        let alice = Client::new("User:alice", "app");
        // 10 windows' worth is within the quota at once; then the next bytes are over it.
        assert_eq!(
            quotas.record(QuotaType::Produce, alice, 10_000.0),
            Duration::ZERO
        );
        let throttle = quotas.record(QuotaType::Produce, alice, 5_000.0);
        // 15,000 bytes over a 10 s span is 1,500/s: 5 s more brings it to 1,000/s.
        let expected = Duration::from_secs(5).as_millis() as f64;
        assert!(
            (throttle.as_millis() as f64 - expected).abs() < 50.0,
            "{throttle:?}"
        );
        // Another client id of the same user shares the user's quota.
        let other = Client::new("User:alice", "other");
        assert!(!quotas.record(QuotaType::Produce, other, 1.0).is_zero());
        // Another user has no quota.
        let bob = Client::new("User:bob", "app");
        assert!(quotas.record(QuotaType::Produce, bob, 1e9).is_zero());
        assert_eq!(
            quotas.max_value_in_window(QuotaType::Fetch, alice),
            Some(10_000.0)
        );
        assert_eq!(quotas.max_value_in_window(QuotaType::Fetch, bob), None);
    }

    #[tokio::test]
    async fn a_throttled_fetch_counts_nothing() {
        let (quotas, _dir) = manager(&[(CONSUMER_BYTE_RATE, 1000.0)]).await;
        let alice = Client::new("User:alice", "app");
        let throttled = quotas.record_unless_throttled(QuotaType::Fetch, alice, 20_000.0);
        assert!(!throttled.is_zero());
        // The refused 20,000 bytes were taken back: 9,000 still fit.
        let fits = quotas.record_unless_throttled(QuotaType::Fetch, alice, 9_000.0);
        assert_eq!(fits, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_request_quota_throttles_for_at_most_one_window() {
        let (quotas, _dir) = manager(&[(REQUEST_PERCENTAGE, 1.0)]).await;
        // 5 s of handling against 1% of a thread.
        let throttle = quotas.record(QuotaType::Request, Client::new("User:alice", ""), 500.0);
        assert_eq!(throttle, Duration::from_secs(1));
    }
}
