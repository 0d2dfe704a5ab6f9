//! The group coordinator's settings, with Kafka's broker config names and defaults.

use std::time::Duration;

use super::assignor::Assignor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`: the session
    /// timeouts classic members may ask for.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty classic
    /// group waits for more members.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`: members of a classic group.
    pub max_size: usize,
    /// `group.consumer.session.timeout.ms`: set by the broker in the consumer protocol.
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`
    pub consumer_heartbeat_interval: Duration,
    /// `group.consumer.max.size`
    pub consumer_max_size: usize,
    /// `group.consumer.assignors`: the server-side assignors, the first one the default.
    pub consumer_assignors: Vec<Assignor>,
    /// `offsets.retention.minutes`: how long an empty group keeps its committed offsets.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(1_800_000),
            initial_rebalance_delay: Duration::from_millis(3_000),
            max_size: i32::MAX as usize,
            consumer_session_timeout: Duration::from_millis(45_000),
            consumer_heartbeat_interval: Duration::from_millis(5_000),
            consumer_max_size: i32::MAX as usize,
            consumer_assignors: vec![Assignor::Uniform, Assignor::Range],
            offsets_retention: Duration::from_secs(10_080 * 60),
            offsets_retention_check_interval: Duration::from_millis(600_000),
        }
    }
}

impl GroupConfig {
    /// Whether `key` is one of these settings (`group.*` and `offsets.*`).
    pub fn owns(key: &str) -> bool {
        key.starts_with("group.") || key.starts_with("offsets.")
    }

    /// Sets one setting by its Kafka name; Err says why the value or the key is wrong.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = || {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| "expected a non-negative integer".to_string())
        };
        let millis = || number().map(Duration::from_millis);
        let size = || match number()? {
            0 => Err("must be at least 1".to_string()),
            n => Ok(n as usize),
        };
        match key {
            "group.min.session.timeout.ms" => self.min_session_timeout = millis()?,
            "group.max.session.timeout.ms" => self.max_session_timeout = millis()?,
            "group.initial.rebalance.delay.ms" => self.initial_rebalance_delay = millis()?,
            "group.max.size" => self.max_size = size()?,
            "group.consumer.session.timeout.ms" => self.consumer_session_timeout = millis()?,
            "group.consumer.heartbeat.interval.ms" => self.consumer_heartbeat_interval = millis()?,
            "group.consumer.max.size" => self.consumer_max_size = size()?,
            "group.consumer.assignors" => {
                self.consumer_assignors = value
                    .split(',')
                    .map(|name| {
                        Assignor::from_name(name.trim())
                            .ok_or_else(|| format!("unknown assignor {name:?}: uniform or range"))
                    })
                    .collect::<Result<_, _>>()?;
                if self.consumer_assignors.is_empty() {
                    return Err("at least one assignor is needed".into());
                }
            }
            "offsets.retention.minutes" => {
                self.offsets_retention = Duration::from_secs(number()?.saturating_mul(60))
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval = millis()?
            }
            _ => return Err(format!("Unknown config name: {key}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_set_the_settings() {
        let mut config = GroupConfig::default();
        config.set("group.min.session.timeout.ms", "500").unwrap();
        config.set("offsets.retention.minutes", "2").unwrap();
        config
            .set("group.consumer.assignors", "range, uniform")
            .unwrap();
        assert_eq!(config.min_session_timeout, Duration::from_millis(500));
        assert_eq!(config.offsets_retention, Duration::from_secs(120));
        assert_eq!(
            config.consumer_assignors,
            [Assignor::Range, Assignor::Uniform]
        );
        assert!(config.set("group.consumer.assignors", "sticky").is_err());
        assert!(config.set("group.max.size", "0").is_err());
        assert!(config
            .set("group.nope", "1")
            .unwrap_err()
            .contains("group.nope"));
        assert!(GroupConfig::owns("offsets.retention.minutes"));
        assert!(!GroupConfig::owns("num.partitions"));
    }
}
