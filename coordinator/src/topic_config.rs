//! Topic configs: every topic-level config Kafka has (the catalogue), the typed effective
//! values of those Strata acts on, the broker-level defaults they fall back to, and their
//! validation, with Kafka's names and limits.

pub mod catalog;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use self::catalog::{ConfigDef, ConfigKind, CONFIGS};
use crate::error::CoordinatorError;
use crate::{AlterConfigOp, ConfigAlteration, ConfigEntry, ConfigSource, ConfigSynonym};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type`: keep the producer's codec, or store every batch with this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// `cleanup.policy`: retention deletes old segments (`delete`), the LogCleaner keeps the
/// latest record of each key (`compact`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// The effective configs of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub max_message_bytes: i32,
    pub message_timestamp_type: TimestampType,
    /// How far in the past and in the future a CreateTime timestamp may be.
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    /// Kafka 3.x's single bound for both, applied as well.
    pub message_timestamp_difference_max_ms: i64,
    pub cleanup_policy: CleanupPolicy,
    /// The LogCleaner's settings, for compacted topics.
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub compression_type: CompressionType,
    /// `compression.gzip.level` (-1: the codec's default), `.lz4.level`, `.zstd.level`.
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
}

/// Kafka's built-in defaults.
impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            message_timestamp_difference_max_ms: i64::MAX,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            compression_type: CompressionType::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
        }
    }
}

const CLEANUP_POLICY: &str = "cleanup.policy";
const NUM_PARTITIONS: &str = "num.partitions";

impl TopicConfig {
    /// The effective config of a topic: its overrides over the broker defaults.
    pub fn resolve(
        defaults: &BrokerDefaults,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, CoordinatorError> {
        let mut config = defaults.topic.clone();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// The timestamps a CreateTime record produced at `now_ms` may carry; None when any goes
    /// (LogAppendTime topics, or no bound set).
    pub fn timestamp_window(&self, now_ms: i64) -> Option<std::ops::RangeInclusive<i64>> {
        let before = self
            .message_timestamp_before_max_ms
            .min(self.message_timestamp_difference_max_ms);
        let after = self
            .message_timestamp_after_max_ms
            .min(self.message_timestamp_difference_max_ms);
        let unbounded = before == i64::MAX && after == i64::MAX;
        if unbounded || self.message_timestamp_type == TimestampType::LogAppendTime {
            return None;
        }
        Some(now_ms.saturating_sub(before)..=now_ms.saturating_add(after))
    }

    /// Sets one config by its topic-level name, validated.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), CoordinatorError> {
        self.set_as(name, value, name).map(drop)
    }

    /// The value of a config Strata acts on, by its topic-level name, as Kafka prints it;
    /// None for the others.
    pub fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            CLEANUP_POLICY => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete",
                CleanupPolicy::Compact => "compact",
                CleanupPolicy::CompactDelete => "compact,delete",
            }
            .to_string(),
            "compression.type" => format!("{:?}", self.compression_type).to_lowercase(),
            "compression.gzip.level" => self.compression_gzip_level.to_string(),
            "compression.lz4.level" => self.compression_lz4_level.to_string(),
            "compression.zstd.level" => self.compression_zstd_level.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => format!("{:?}", self.message_timestamp_type),
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms.to_string(),
            "message.timestamp.difference.max.ms" => {
                self.message_timestamp_difference_max_ms.to_string()
            }
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => return None,
        })
    }

    /// Validates `name` (topic-level) and sets it if Strata acts on it; errors call it
    /// `shown_as` (the broker-level name for defaults).
    /// Returns the value as Kafka prints it.
    fn set_as(
        &mut self,
        name: &str,
        value: &str,
        shown_as: &str,
    ) -> Result<String, CoordinatorError> {
        let def = catalog::find(name).ok_or_else(|| unknown_config(shown_as))?;
        let checked = catalog::validate(def, shown_as, value)?;
        let value = checked.as_str();
        // The catalogue checked the type, names and ranges: what is left is to take them.
        match name {
            CLEANUP_POLICY => self.cleanup_policy = parse_cleanup_policy(value),
            "delete.retention.ms" => self.delete_retention_ms = checked_number(value),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio = checked_number(value),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = checked_number(value),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = checked_number(value),
            "compression.type" => {
                self.compression_type = match value {
                    "uncompressed" => CompressionType::Uncompressed,
                    "gzip" => CompressionType::Gzip,
                    "snappy" => CompressionType::Snappy,
                    "lz4" => CompressionType::Lz4,
                    "zstd" => CompressionType::Zstd,
                    _ => CompressionType::Producer,
                }
            }
            "compression.gzip.level" => self.compression_gzip_level = checked_number(value),
            "compression.lz4.level" => self.compression_lz4_level = checked_number(value),
            "compression.zstd.level" => self.compression_zstd_level = checked_number(value),
            "max.message.bytes" => self.max_message_bytes = checked_number(value),
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => TimestampType::CreateTime,
                }
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = checked_number(value)
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = checked_number(value)
            }
            "message.timestamp.difference.max.ms" => {
                self.message_timestamp_difference_max_ms = checked_number(value)
            }
            "retention.bytes" => self.retention_bytes = checked_number(value),
            "retention.ms" => self.retention_ms = checked_number(value),
            "segment.bytes" => self.segment_bytes = checked_number(value),
            "segment.ms" => self.segment_ms = checked_number(value),
            // Validated, and stored as the topic's override; nothing here acts on it.
            _ => {}
        }
        Ok(checked)
    }
}

/// A number the catalogue has checked.
fn checked_number<T: FromStr>(value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{value}: the catalogue's type disagrees with the field's"))
}

fn unknown_config(name: &str) -> CoordinatorError {
    CoordinatorError::InvalidConfig(format!("Unknown config name: {name}"))
}

/// The broker-level defaults of topic configs, from the broker's config file.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerDefaults {
    /// `num.partitions`: for topics created without a partition count (and auto-created ones).
    pub num_partitions: i32,
    /// The defaults of the topic-level configs (`log.retention.ms`, `message.max.bytes`, ...).
    pub topic: TopicConfig,
    /// The broker-level names set through [`BrokerDefaults::set`].
    set_names: BTreeSet<String>,
    /// The defaults set of the configs nothing acts on, by topic-level name, as given.
    others: BTreeMap<&'static str, String>,
}

impl Default for BrokerDefaults {
    fn default() -> Self {
        BrokerDefaults {
            num_partitions: 1,
            topic: TopicConfig::default(),
            set_names: BTreeSet::new(),
            others: BTreeMap::new(),
        }
    }
}

impl BrokerDefaults {
    /// Sets a default by its broker-level name (`num.partitions`, `log.retention.ms`, ...).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), CoordinatorError> {
        if key == NUM_PARTITIONS {
            self.num_partitions = parse_number(key, value, 1)?;
        } else {
            let def = catalog::find_by_broker_name(key).ok_or_else(|| unknown_config(key))?;
            let value = self.topic.set_as(def.name, value, key)?;
            if self.topic.value(def.name).is_none() {
                self.others.insert(def.name, value);
            }
        }
        self.set_names.insert(key.to_string());
        Ok(())
    }

    /// The default of a topic-level config: the broker's, else Kafka's.
    fn default_value(&self, def: &ConfigDef) -> String {
        self.topic
            .value(def.name)
            .or_else(|| self.others.get(def.name).cloned())
            .unwrap_or_else(|| def.default.to_string())
    }

    /// Where a topic-level config's default comes from.
    fn default_source(&self, def: &ConfigDef) -> ConfigSource {
        match def.broker_name {
            Some(broker_name) if self.set_names.contains(broker_name) => {
                ConfigSource::BrokerDefault
            }
            _ => ConfigSource::Default,
        }
    }

    /// Every broker-level config, for DescribeConfigs on a broker.
    pub(crate) fn describe(&self) -> Vec<ConfigEntry> {
        let partitions = ConfigEntry {
            name: NUM_PARTITIONS.to_string(),
            value: Some(self.num_partitions.to_string()),
            source: self.source(NUM_PARTITIONS),
            // Static: set in the config file.
            read_only: true,
            sensitive: false,
            config_type: ConfigKind::Int {
                min: 1,
                max: i64::from(i32::MAX),
            }
            .code(),
            documentation: "The partitions of topics created without a count.",
            synonyms: Vec::new(),
        };
        let mut entries: Vec<ConfigEntry> = CONFIGS
            .iter()
            .filter_map(|def| {
                let broker_name = def.broker_name?;
                Some(ConfigEntry {
                    name: broker_name.to_string(),
                    value: Some(self.default_value(def)),
                    source: self.default_source(def),
                    read_only: true,
                    sensitive: false,
                    config_type: def.kind.code(),
                    documentation: def.documentation,
                    synonyms: Vec::new(),
                })
            })
            .chain([partitions])
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    /// Every topic-level config of a topic with these overrides, for DescribeConfigs, with
    /// Kafka's synonyms: the override, the broker's default, Kafka's default.
    pub(crate) fn describe_topic(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Vec<ConfigEntry>, CoordinatorError> {
        let effective = TopicConfig::resolve(self, overrides)?;
        Ok(CONFIGS
            .iter()
            .map(|def| {
                let overridden = overrides.get(def.name).map(|value| {
                    effective
                        .value(def.name)
                        .unwrap_or_else(|| value.trim().to_string())
                });
                let mut synonyms = Vec::new();
                if let Some(value) = &overridden {
                    synonyms.push(ConfigSynonym {
                        name: def.name.to_string(),
                        value: Some(value.clone()),
                        source: ConfigSource::TopicOverride,
                    });
                }
                if let Some(broker_name) = def.broker_name {
                    if self.set_names.contains(broker_name) {
                        synonyms.push(ConfigSynonym {
                            name: broker_name.to_string(),
                            value: Some(self.default_value(def)),
                            source: ConfigSource::BrokerDefault,
                        });
                    }
                    synonyms.push(ConfigSynonym {
                        name: broker_name.to_string(),
                        value: Some(def.default.to_string()),
                        source: ConfigSource::Default,
                    });
                }
                ConfigEntry {
                    name: def.name.to_string(),
                    source: match overridden {
                        Some(_) => ConfigSource::TopicOverride,
                        None => self.default_source(def),
                    },
                    value: Some(overridden.unwrap_or_else(|| self.default_value(def))),
                    read_only: false,
                    sensitive: false,
                    config_type: def.kind.code(),
                    documentation: def.documentation,
                    synonyms,
                }
            })
            .collect())
    }

    /// The new overrides of a topic after `alteration`, validated.
    pub(crate) fn alter_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
        alteration: ConfigAlteration,
    ) -> Result<BTreeMap<String, String>, CoordinatorError> {
        let altered = match alteration {
            ConfigAlteration::Replace(configs) => configs,
            ConfigAlteration::Incremental(ops) => {
                let mut altered = overrides.clone();
                for (name, op) in ops {
                    let def = catalog::find(&name).ok_or_else(|| unknown_config(&name))?;
                    let is_list = matches!(def.kind, ConfigKind::List(_));
                    match op {
                        AlterConfigOp::Set(value) => {
                            altered.insert(name, value);
                        }
                        AlterConfigOp::Delete => {
                            altered.remove(&name);
                        }
                        AlterConfigOp::Append(items) | AlterConfigOp::Subtract(items)
                            if !is_list =>
                        {
                            return Err(CoordinatorError::InvalidConfig(format!(
                                "Config value append/subtract is not allowed for config key {name}: \
                                 it is not a list (values: {items})"
                            )));
                        }
                        AlterConfigOp::Append(items) => {
                            let mut list = self.list_value(&altered, &name)?;
                            for item in split_list(&items) {
                                if !list.contains(&item) {
                                    list.push(item);
                                }
                            }
                            altered.insert(name, list.join(","));
                        }
                        AlterConfigOp::Subtract(items) => {
                            let remove = split_list(&items);
                            let mut list = self.list_value(&altered, &name)?;
                            list.retain(|item| !remove.contains(item));
                            altered.insert(name, list.join(","));
                        }
                    }
                }
                altered
            }
        };
        TopicConfig::resolve(self, &altered)?;
        Ok(altered)
    }

    /// The items of a list-valued config: its override, else its default.
    fn list_value(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<Vec<String>, CoordinatorError> {
        let def = catalog::find(name).ok_or_else(|| unknown_config(name))?;
        match overrides.get(name) {
            Some(value) => Ok(split_list(value)),
            None => Ok(split_list(&self.default_value(def))),
        }
    }

    fn source(&self, broker_name: &str) -> ConfigSource {
        if self.set_names.contains(broker_name) {
            ConfigSource::BrokerDefault
        } else {
            ConfigSource::Default
        }
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// A list the catalogue checked: items among `compact` and `delete`.
fn parse_cleanup_policy(value: &str) -> CleanupPolicy {
    let items = split_list(value);
    let has = |policy: &str| items.iter().any(|item| item == policy);
    match (has("compact"), has("delete")) {
        (true, true) => CleanupPolicy::CompactDelete,
        (true, false) => CleanupPolicy::Compact,
        (false, _) => CleanupPolicy::Delete,
    }
}

fn parse_number<T: FromStr + PartialOrd + Display>(
    name: &str,
    value: &str,
    min: T,
) -> Result<T, CoordinatorError> {
    let n: T = value
        .trim()
        .parse()
        .map_err(|_| invalid_value(name, value, "Not a number of the expected type"))?;
    if n < min {
        return Err(invalid_value(
            name,
            value,
            &format!("Value must be at least {min}"),
        ));
    }
    Ok(n)
}

fn invalid_value(name: &str, value: &str, reason: &str) -> CoordinatorError {
    CoordinatorError::InvalidConfig(format!(
        "Invalid value {value} for configuration {name}: {reason}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn assert_invalid(result: Result<impl std::fmt::Debug, CoordinatorError>, needle: &str) {
        match result {
            Err(CoordinatorError::InvalidConfig(message)) => {
                assert!(
                    message.contains(needle),
                    "{message:?} does not mention {needle:?}"
                )
            }
            other => panic!("expected InvalidConfig mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn resolve_applies_overrides_over_defaults() {
        let mut defaults = BrokerDefaults::default();
        defaults.set("log.retention.ms", "60000").unwrap();
        defaults.set("num.partitions", "3").unwrap();
        let config = TopicConfig::resolve(
            &defaults,
            &overrides(&[
                ("segment.bytes", "1024"),
                ("message.timestamp.type", "LogAppendTime"),
            ]),
        )
        .unwrap();
        assert_eq!(defaults.num_partitions, 3);
        assert_eq!(
            config,
            TopicConfig {
                retention_ms: 60_000,
                segment_bytes: 1024,
                message_timestamp_type: TimestampType::LogAppendTime,
                ..TopicConfig::default()
            }
        );
    }

    #[test]
    fn compaction_policies_and_the_cleaner_settings_are_taken() {
        let mut config = TopicConfig::default();
        assert!(config.cleanup_policy.deletes() && !config.cleanup_policy.compacts());
        config.set("cleanup.policy", "compact").unwrap();
        assert!(config.cleanup_policy.compacts() && !config.cleanup_policy.deletes());
        config.set("cleanup.policy", "delete, compact").unwrap();
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactDelete);
        config.set("delete.retention.ms", "10").unwrap();
        config.set("min.cleanable.dirty.ratio", "0.01").unwrap();
        config.set("min.compaction.lag.ms", "20").unwrap();
        config.set("max.compaction.lag.ms", "30").unwrap();
        assert_eq!(
            (
                config.delete_retention_ms,
                config.min_cleanable_dirty_ratio,
                config.min_compaction_lag_ms,
                config.max_compaction_lag_ms
            ),
            (10, 0.01, 20, 30)
        );
        assert_invalid(config.set("min.cleanable.dirty.ratio", "1.5"), "dirty");
    }

    #[test]
    fn validation_follows_kafka_limits() {
        let mut config = TopicConfig::default();
        assert_invalid(config.set("segment.bytes", "13"), "at least 14");
        assert_invalid(config.set("segment.bytes", "4294967296"), "segment.bytes");
        assert_invalid(config.set("retention.ms", "-2"), "at least -1");
        assert_invalid(config.set("retention.bytes", "lots"), "retention.bytes");
        assert_invalid(config.set("segment.ms", "0"), "at least 1");
        assert_invalid(config.set("max.message.bytes", "-1"), "at least 0");
        assert_invalid(
            config.set("message.timestamp.type", "createtime"),
            "CreateTime",
        );
        assert_invalid(config.set("cleanup.policy", "shred"), "cleanup.policy");
        assert_invalid(
            config.set("bogus.config", "1"),
            "Unknown config name: bogus.config",
        );
        assert_invalid(config.set("compression.type", "brotli"), "must be one of");
        // Nothing invalid was applied.
        assert_eq!(config, TopicConfig::default());
        // Kafka configs nothing here acts on are validated and stored, not refused.
        config.set("flush.ms", "1").unwrap();
        config.set("min.insync.replicas", "2").unwrap();
        assert_invalid(config.set("min.insync.replicas", "0"), "at least 1");
        config.set("retention.ms", "-1").unwrap();
        config.set("cleanup.policy", " delete ").unwrap();
        assert_eq!(config.retention_ms, -1);
    }

    #[test]
    fn the_timestamp_window_follows_the_bounds_and_the_timestamp_type() {
        let mut config = TopicConfig::default();
        let window = config.timestamp_window(1_000_000).unwrap();
        assert_eq!(
            (*window.start() < -1 << 62, *window.end()),
            (true, 4_600_000),
            "Kafka 4 bounds the future at an hour by default, the past not at all"
        );
        config
            .set("message.timestamp.after.max.ms", &i64::MAX.to_string())
            .unwrap();
        assert_eq!(config.timestamp_window(1_000_000), None, "unbounded");
        config
            .set("message.timestamp.before.max.ms", "1000")
            .unwrap();
        assert_eq!(config.timestamp_window(1_000_000), Some(999_000..=i64::MAX));
        // Kafka 3.x's single bound tightens both sides.
        config
            .set("message.timestamp.difference.max.ms", "500")
            .unwrap();
        assert_eq!(
            config.timestamp_window(1_000_000),
            Some(999_500..=1_000_500)
        );
        config
            .set("message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(
            config.timestamp_window(1_000_000),
            None,
            "the broker sets it"
        );
    }

    #[test]
    fn broker_defaults_use_broker_level_names() {
        let mut defaults = BrokerDefaults::default();
        defaults.set("message.max.bytes", "2000").unwrap();
        defaults.set("log.roll.ms", "1000").unwrap();
        assert_eq!(defaults.topic.max_message_bytes, 2000);
        assert_eq!(defaults.topic.segment_ms, 1000);
        assert_invalid(
            defaults.set("max.message.bytes", "2000"),
            "max.message.bytes",
        );
        assert_invalid(defaults.set("num.partitions", "0"), "num.partitions");
        assert_invalid(defaults.set("log.segment.bytes", "1"), "log.segment.bytes");
        defaults.set("log.cleanup.policy", "compact").unwrap();
        assert_eq!(defaults.topic.cleanup_policy, CleanupPolicy::Compact);
    }

    #[test]
    fn describe_reports_sources() {
        let mut defaults = BrokerDefaults::default();
        defaults.set("log.retention.bytes", "1000").unwrap();
        defaults.set("min.insync.replicas", "2").unwrap();
        let entries = defaults
            .describe_topic(&overrides(&[
                ("retention.ms", "5"),
                ("preallocate", " true"),
            ]))
            .unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let every: Vec<&str> = CONFIGS.iter().map(|def| def.name).collect();
        assert_eq!(names, every);
        let entry = |name: &str| entries.iter().find(|e| e.name == name).unwrap().clone();
        // Configs nothing acts on: override, broker default, Kafka's default.
        assert_eq!(
            (
                entry("preallocate").value.as_deref(),
                entry("preallocate").source
            ),
            (Some("true"), ConfigSource::TopicOverride)
        );
        let replicas = entry("min.insync.replicas");
        assert_eq!(
            (replicas.value.as_deref(), replicas.source),
            (Some("2"), ConfigSource::BrokerDefault)
        );
        assert_eq!(replicas.config_type, 3, "INT");
        let sources: Vec<(&str, Option<&str>, ConfigSource)> = replicas
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_deref(), s.source))
            .collect();
        assert_eq!(
            sources,
            [
                (
                    "min.insync.replicas",
                    Some("2"),
                    ConfigSource::BrokerDefault
                ),
                ("min.insync.replicas", Some("1"), ConfigSource::Default)
            ]
        );
        let retention = entry("retention.ms").synonyms;
        assert_eq!(retention[0].source, ConfigSource::TopicOverride);
        assert_eq!(retention[1].name, "log.retention.ms");
        assert_eq!(entry("compression.type").value.as_deref(), Some("producer"));
        assert_eq!(entry("compression.type").source, ConfigSource::Default);
        assert_eq!(entry("retention.ms").value.as_deref(), Some("5"));
        assert_eq!(entry("retention.ms").source, ConfigSource::TopicOverride);
        assert_eq!(entry("retention.bytes").value.as_deref(), Some("1000"));
        assert_eq!(entry("retention.bytes").source, ConfigSource::BrokerDefault);
        assert_eq!(
            entry("message.timestamp.type").value.as_deref(),
            Some("CreateTime")
        );
        assert_eq!(entry("cleanup.policy").source, ConfigSource::Default);
        assert!(entries.iter().all(|e| !e.read_only && !e.sensitive));

        let broker = defaults.describe();
        let with_broker_names = CONFIGS.iter().filter(|d| d.broker_name.is_some()).count();
        assert_eq!(broker.len(), with_broker_names + 1, "and num.partitions");
        let retention = broker
            .iter()
            .find(|e| e.name == "log.retention.bytes")
            .unwrap();
        assert_eq!(
            (retention.value.as_deref(), retention.source),
            (Some("1000"), ConfigSource::BrokerDefault)
        );
        let partitions = broker.iter().find(|e| e.name == "num.partitions").unwrap();
        assert_eq!(
            (partitions.value.as_deref(), partitions.source),
            (Some("1"), ConfigSource::Default)
        );
    }

    #[test]
    fn incremental_alterations() {
        let defaults = BrokerDefaults::default();
        let current = overrides(&[("retention.ms", "5"), ("segment.ms", "10")]);
        let altered = defaults
            .alter_overrides(
                &current,
                ConfigAlteration::Incremental(vec![
                    ("retention.ms".into(), AlterConfigOp::Delete),
                    ("retention.bytes".into(), AlterConfigOp::Set("100".into())),
                    (
                        "cleanup.policy".into(),
                        AlterConfigOp::Append("delete".into()),
                    ),
                ]),
            )
            .unwrap();
        assert_eq!(
            altered,
            overrides(&[
                ("cleanup.policy", "delete"),
                ("retention.bytes", "100"),
                ("segment.ms", "10")
            ])
        );
        let append = |op| ConfigAlteration::Incremental(vec![("cleanup.policy".into(), op)]);
        let compacted = defaults
            .alter_overrides(&current, append(AlterConfigOp::Append("compact".into())))
            .unwrap();
        assert_eq!(compacted["cleanup.policy"], "delete,compact");
        let effective = TopicConfig::resolve(&defaults, &compacted).unwrap();
        assert_eq!(effective.cleanup_policy, CleanupPolicy::CompactDelete);
        assert_eq!(effective.value("cleanup.policy").unwrap(), "compact,delete");
        assert_invalid(
            defaults.alter_overrides(&current, append(AlterConfigOp::Subtract("delete".into()))),
            "cleanup.policy",
        );
        assert_invalid(
            defaults.alter_overrides(
                &current,
                ConfigAlteration::Incremental(vec![(
                    "retention.ms".into(),
                    AlterConfigOp::Append("1".into()),
                )]),
            ),
            "retention.ms",
        );
        assert_invalid(
            defaults.alter_overrides(
                &current,
                ConfigAlteration::Incremental(vec![("bogus".into(), AlterConfigOp::Delete)]),
            ),
            "bogus",
        );
    }

    #[test]
    fn replace_sets_the_complete_overrides() {
        let defaults = BrokerDefaults::default();
        let current = overrides(&[("retention.ms", "5")]);
        let replaced = defaults
            .alter_overrides(
                &current,
                ConfigAlteration::Replace(overrides(&[("segment.ms", "10")])),
            )
            .unwrap();
        assert_eq!(replaced, overrides(&[("segment.ms", "10")]));
        assert_invalid(
            defaults.alter_overrides(
                &current,
                ConfigAlteration::Replace(overrides(&[("segment.ms", "0")])),
            ),
            "segment.ms",
        );
    }
}
