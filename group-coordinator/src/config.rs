//! The group coordinator's settings, with Kafka's broker config names and defaults.

use std::time::Duration;

use coordinator::broker_settings::{self, set_to, show_millis, Setting};
use coordinator::topic_config::catalog::ConfigKind;

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
    /// `group.consumer.migration.policy`: which online conversions between the classic and
    /// the consumer protocol a group with members may go through.
    pub migration_policy: MigrationPolicy,
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
            migration_policy: MigrationPolicy::Bidirectional,
            offsets_retention: Duration::from_secs(10_080 * 60),
            offsets_retention_check_interval: Duration::from_millis(600_000),
        }
    }
}

/// Kafka's `group.consumer.migration.policy`: a classic group with members is upgraded when a
/// consumer-protocol member joins it (UPGRADE), a consumer group whose last
/// consumer-protocol member leaves while classic members remain is downgraded (DOWNGRADE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Bidirectional,
    Upgrade,
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    pub fn upgrades(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade
        )
    }

    pub fn downgrades(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade
        )
    }

    fn name(self) -> &'static str {
        match self {
            MigrationPolicy::Bidirectional => "bidirectional",
            MigrationPolicy::Upgrade => "upgrade",
            MigrationPolicy::Downgrade => "downgrade",
            MigrationPolicy::Disabled => "disabled",
        }
    }

    /// Kafka's names, in any case.
    fn parse(value: &str) -> Result<Self, String> {
        [
            MigrationPolicy::Bidirectional,
            MigrationPolicy::Upgrade,
            MigrationPolicy::Downgrade,
            MigrationPolicy::Disabled,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| {
            format!("unknown policy {value:?}: bidirectional, upgrade, downgrade or disabled")
        })
    }
}

impl GroupConfig {
    /// Whether `key` is one of these settings (`group.*` and `offsets.*`).
    pub fn owns(key: &str) -> bool {
        key.starts_with("group.") || key.starts_with("offsets.")
    }

    /// Sets one setting by its Kafka name; Err says why the value or the key is wrong.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let setting = broker_settings::find(SETTINGS, key)
            .ok_or_else(|| format!("Unknown config name: {key}"))?;
        (setting.set)(self, value)
    }
}

/// Kafka's size limits (`group.max.size`, `group.consumer.max.size`): at least 1.
fn parse_size(value: &str) -> Result<usize, String> {
    match parse_number(value)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n as usize),
    }
}

fn parse_number(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| "expected a non-negative integer".to_string())
}

fn parse_group_millis(value: &str) -> Result<Duration, String> {
    parse_number(value).map(Duration::from_millis)
}

const fn long() -> ConfigKind {
    ConfigKind::Long { min: 0 }
}

const fn int() -> ConfigKind {
    ConfigKind::Int {
        min: 1,
        max: i32::MAX as i64,
    }
}

/// Every group setting, with Kafka's names.
pub static SETTINGS: &[Setting<GroupConfig>] = &[
    Setting {
        name: "group.min.session.timeout.ms",
        kind: long(),
        documentation: "The shortest session timeout a classic group member may ask for.",
        set: |c, v| set_to(&mut c.min_session_timeout, parse_group_millis(v)),
        get: |c| show_millis(c.min_session_timeout),
    },
    Setting {
        name: "group.max.session.timeout.ms",
        kind: long(),
        documentation: "The longest session timeout a classic group member may ask for.",
        set: |c, v| set_to(&mut c.max_session_timeout, parse_group_millis(v)),
        get: |c| show_millis(c.max_session_timeout),
    },
    Setting {
        name: "group.initial.rebalance.delay.ms",
        kind: long(),
        documentation:
            "How long the first rebalance of an empty classic group waits for more members.",
        set: |c, v| set_to(&mut c.initial_rebalance_delay, parse_group_millis(v)),
        get: |c| show_millis(c.initial_rebalance_delay),
    },
    Setting {
        name: "group.max.size",
        kind: int(),
        documentation: "The most members a classic group may have.",
        set: |c, v| set_to(&mut c.max_size, parse_size(v)),
        get: |c| Some(c.max_size.to_string()),
    },
    Setting {
        name: "group.consumer.session.timeout.ms",
        kind: long(),
        documentation: "The session timeout of consumer protocol members, set by the broker.",
        set: |c, v| set_to(&mut c.consumer_session_timeout, parse_group_millis(v)),
        get: |c| show_millis(c.consumer_session_timeout),
    },
    Setting {
        name: "group.consumer.heartbeat.interval.ms",
        kind: long(),
        documentation: "How often consumer protocol members heartbeat.",
        set: |c, v| set_to(&mut c.consumer_heartbeat_interval, parse_group_millis(v)),
        get: |c| show_millis(c.consumer_heartbeat_interval),
    },
    Setting {
        name: "group.consumer.max.size",
        kind: int(),
        documentation: "The most members a consumer protocol group may have.",
        set: |c, v| set_to(&mut c.consumer_max_size, parse_size(v)),
        get: |c| Some(c.consumer_max_size.to_string()),
    },
    Setting {
        name: "group.consumer.assignors",
        kind: ConfigKind::List(&["uniform", "range"]),
        documentation:
            "The server-side assignors of the consumer protocol, the first one the default.",
        set: |c, v| {
            let assignors = v
                .split(',')
                .map(|name| {
                    Assignor::from_name(name.trim())
                        .ok_or_else(|| format!("unknown assignor {name:?}: uniform or range"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if assignors.is_empty() {
                return Err("at least one assignor is needed".into());
            }
            c.consumer_assignors = assignors;
            Ok(())
        },
        get: |c| {
            let names: Vec<_> = c.consumer_assignors.iter().map(|a| a.name()).collect();
            Some(names.join(","))
        },
    },
    Setting {
        name: "group.consumer.migration.policy",
        kind: ConfigKind::Choice(&["bidirectional", "upgrade", "downgrade", "disabled"]),
        documentation: "Which online conversions of a group with members between the classic \
                        and the consumer protocol are allowed: bidirectional, upgrade, \
                        downgrade or disabled.",
        set: |c, v| {
            c.migration_policy = MigrationPolicy::parse(v)?;
            Ok(())
        },
        get: |c| Some(c.migration_policy.name().to_string()),
    },
    Setting {
        name: "offsets.retention.minutes",
        kind: int(),
        documentation: "How long an empty group keeps its committed offsets.",
        set: |c, v| {
            c.offsets_retention = Duration::from_secs(parse_number(v)?.saturating_mul(60));
            Ok(())
        },
        get: |c| Some((c.offsets_retention.as_secs() / 60).to_string()),
    },
    Setting {
        name: "offsets.retention.check.interval.ms",
        kind: long(),
        documentation: "How often expired committed offsets are looked for.",
        set: |c, v| {
            set_to(
                &mut c.offsets_retention_check_interval,
                parse_group_millis(v),
            )
        },
        get: |c| show_millis(c.offsets_retention_check_interval),
    },
];

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
        config
            .set("group.consumer.migration.policy", "UPGRADE")
            .unwrap();
        assert_eq!(config.migration_policy, MigrationPolicy::Upgrade);
        assert!(config.migration_policy.upgrades() && !config.migration_policy.downgrades());
        assert!(config
            .set("group.consumer.migration.policy", "both")
            .is_err());
        assert!(config.set("group.max.size", "0").is_err());
        assert!(config
            .set("group.nope", "1")
            .unwrap_err()
            .contains("group.nope"));
        assert!(GroupConfig::owns("offsets.retention.minutes"));
        assert!(!GroupConfig::owns("num.partitions"));
        for setting in SETTINGS {
            assert!(GroupConfig::owns(setting.name), "{}", setting.name);
        }
        let described = SETTINGS
            .iter()
            .map(|setting| (setting.name, (setting.get)(&config).unwrap()))
            .collect::<std::collections::BTreeMap<_, _>>();
        assert_eq!(described["group.consumer.assignors"], "range,uniform");
        assert_eq!(described["offsets.retention.minutes"], "2");
        assert_eq!(described["group.min.session.timeout.ms"], "500");
    }
}
