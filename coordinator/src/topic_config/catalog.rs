//! Every topic config Kafka knows (4.x, and the 3.x ones clients still send), with Kafka's
//! types, defaults, limits and the broker config that sets its default, so that tools that
//! create topics with standard configs (Terraform, operators, Kafka Connect) are answered as
//! Kafka answers them.

use crate::error::CoordinatorError;

/// Kafka's config types, as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConfigKind {
    Boolean,
    Int {
        min: i64,
        max: i64,
    },
    Long {
        min: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A comma-separated list of these strings (any string when empty).
    List(&'static [&'static str]),
    /// Any string.
    Text,
}

impl ConfigKind {
    /// Kafka's ConfigType code (DescribeConfigs v3+).
    pub fn code(self) -> i8 {
        match self {
            ConfigKind::Boolean => 1,
            ConfigKind::Choice(_) | ConfigKind::Text => 2,
            ConfigKind::Int { .. } => 3,
            ConfigKind::Long { .. } => 5,
            ConfigKind::Double { .. } => 6,
            ConfigKind::List(_) => 7,
        }
    }
}

#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    /// The broker config that sets its default (Kafka's synonym), if there is one.
    pub broker_name: Option<&'static str>,
    pub kind: ConfigKind,
    /// Kafka's default, as DescribeConfigs prints it (Strata's where they differ).
    pub default: &'static str,
    pub documentation: &'static str,
}

const MAX_LONG: &str = "9223372036854775807";

const fn def(
    name: &'static str,
    broker_name: Option<&'static str>,
    kind: ConfigKind,
    default: &'static str,
    documentation: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_name,
        kind,
        default,
        documentation,
    }
}

const fn int(min: i64, max: i64) -> ConfigKind {
    ConfigKind::Int { min, max }
}

const fn long(min: i64) -> ConfigKind {
    ConfigKind::Long { min }
}

const INT_MAX: i64 = i32::MAX as i64;

/// By name.
pub const CONFIGS: [ConfigDef; 36] = [
    def("cleanup.policy", Some("log.cleanup.policy"), ConfigKind::List(&["compact", "delete"]), "delete",
        "delete: old segments are deleted by retention.ms and retention.bytes. compact: the log cleaner keeps the latest record of each key."),
    def("compression.gzip.level", Some("compression.gzip.level"), int(-1, 9), "-1",
        "The gzip level when the broker recompresses with gzip (-1: gzip's default)."),
    def("compression.lz4.level", Some("compression.lz4.level"), int(1, 17), "9",
        "The lz4 level when the broker recompresses with lz4."),
    def("compression.type", Some("compression.type"),
        ConfigKind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]), "producer",
        "producer keeps the producer's compression; a codec has the broker recompress every batch with it."),
    def("compression.zstd.level", Some("compression.zstd.level"), int(-131_072, 22), "3",
        "The zstd level when the broker recompresses with zstd."),
    def("delete.retention.ms", Some("log.cleaner.delete.retention.ms"), long(0), "86400000",
        "How long tombstones are kept on compacted topics."),
    def("file.delete.delay.ms", Some("log.segment.delete.delay.ms"), long(0), "60000",
        "Accepted; Strata deletes unreferenced objects after object.delete.grace.ms."),
    def("flush.messages", Some("log.flush.interval.messages"), long(1), MAX_LONG,
        "Accepted; every write is flushed to the object store before acks=all is answered."),
    def("flush.ms", Some("log.flush.interval.ms"), long(0), MAX_LONG,
        "Accepted; every write is flushed to the object store before acks=all is answered."),
    def("follower.replication.throttled.replicas", None, ConfigKind::List(&[]), "",
        "Accepted; the object store replicates, not the brokers."),
    def("index.interval.bytes", Some("log.index.interval.bytes"), int(0, INT_MAX), "4096",
        "Accepted; segments are indexed every index.interval.bytes of the broker's config."),
    def("leader.replication.throttled.replicas", None, ConfigKind::List(&[]), "",
        "Accepted; the object store replicates, not the brokers."),
    def("local.retention.bytes", Some("log.local.retention.bytes"), long(-2), "-2",
        "Accepted; the whole log is in the object store (tiered storage's local tier does not exist)."),
    def("local.retention.ms", Some("log.local.retention.ms"), long(-2), "-2",
        "Accepted; the whole log is in the object store (tiered storage's local tier does not exist)."),
    def("max.compaction.lag.ms", Some("log.cleaner.max.compaction.lag.ms"), long(1), MAX_LONG,
        "The longest a record stays uncompacted on compacted topics."),
    def("max.message.bytes", Some("message.max.bytes"), int(0, INT_MAX), "1048588",
        "The largest record batch the topic accepts."),
    def("message.downconversion.enable", Some("log.message.downconversion.enable"), ConfigKind::Boolean, "true",
        "Kafka 3.x; accepted and ignored, as Kafka 4 does not down-convert."),
    def("message.format.version", Some("log.message.format.version"), ConfigKind::Text, "3.0-IV1",
        "Kafka 3.x; accepted and ignored: batches are always v2."),
    def("message.timestamp.after.max.ms", Some("log.message.timestamp.after.max.ms"), long(0), "3600000",
        "How far in the future a CreateTime timestamp may be (Kafka 4's default: one hour); produce is refused with INVALID_TIMESTAMP past it."),
    def("message.timestamp.before.max.ms", Some("log.message.timestamp.before.max.ms"), long(0), MAX_LONG,
        "How far in the past a CreateTime timestamp may be; produce is refused with INVALID_TIMESTAMP past it."),
    def("message.timestamp.difference.max.ms", Some("log.message.timestamp.difference.max.ms"), long(0), MAX_LONG,
        "Kafka 3.x: how far a CreateTime timestamp may be from the broker's time, either way."),
    def("message.timestamp.type", Some("log.message.timestamp.type"),
        ConfigKind::Choice(&["CreateTime", "LogAppendTime"]), "CreateTime",
        "CreateTime keeps the producer's timestamps; LogAppendTime sets the broker's."),
    def("min.cleanable.dirty.ratio", Some("log.cleaner.min.cleanable.ratio"),
        ConfigKind::Double { min: 0.0, max: 1.0 }, "0.5",
        "How much of a compacted topic's log may be uncompacted before it is cleaned."),
    def("min.compaction.lag.ms", Some("log.cleaner.min.compaction.lag.ms"), long(0), "0",
        "The shortest a record stays uncompacted on compacted topics."),
    def("min.insync.replicas", Some("min.insync.replicas"), int(1, INT_MAX), "1",
        "Accepted; acks=all is answered once the object store holds the write durably, whatever the value."),
    def("preallocate", Some("log.preallocate"), ConfigKind::Boolean, "false",
        "Accepted; there are no local segment files to preallocate."),
    def("remote.log.copy.disable", None, ConfigKind::Boolean, "false",
        "Accepted; the whole log is in the object store."),
    def("remote.log.delete.on.disable", None, ConfigKind::Boolean, "false",
        "Accepted; the whole log is in the object store."),
    def("remote.storage.enable", None, ConfigKind::Boolean, "false",
        "Accepted; the whole log is in the object store whatever the value."),
    def("retention.bytes", Some("log.retention.bytes"), long(-1), "-1",
        "Old segments are deleted while the rest still holds this many bytes (-1: no limit)."),
    def("retention.ms", Some("log.retention.ms"), long(-1), "604800000",
        "Segments whose newest record is older than this are deleted (-1: no limit)."),
    def("segment.bytes", Some("log.segment.bytes"), int(14, INT_MAX), "1073741824",
        "The largest segment compaction writes (with the broker's compaction.bytes)."),
    def("segment.index.bytes", Some("log.index.size.max.bytes"), int(4, INT_MAX), "10485760",
        "Accepted; a segment's index holds an entry per index.interval.bytes whatever its size."),
    def("segment.jitter.ms", Some("log.roll.jitter.ms"), long(0), "0",
        "Accepted; segments are sealed by compaction."),
    def("segment.ms", Some("log.roll.ms"), long(1), "604800000",
        "The longest data waits to be sealed in a segment, and the age past which segments are not merged."),
    def("unclean.leader.election.enable", Some("unclean.leader.election.enable"), ConfigKind::Boolean, "false",
        "Accepted; every broker reads the whole log from the object store, so no election loses data."),
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    CONFIGS.iter().find(|def| def.name == name)
}

pub fn find_by_broker_name(broker_name: &str) -> Option<&'static ConfigDef> {
    CONFIGS
        .iter()
        .find(|def| def.broker_name == Some(broker_name))
}

/// Checks `value` against the config's type, limits and what Strata supports; errors call
/// it `shown_as`. Returns the value as Kafka prints it (trimmed).
pub fn validate(def: &ConfigDef, shown_as: &str, value: &str) -> Result<String, CoordinatorError> {
    let value = value.trim();
    let invalid = |reason: String| {
        CoordinatorError::InvalidConfig(format!(
            "Invalid value {value} for configuration {shown_as}: {reason}"
        ))
    };
    match def.kind {
        ConfigKind::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(invalid("Expected value to be either true or false".into()));
            }
        }
        ConfigKind::Int { min, max } => {
            let n: i32 = value
                .parse()
                .map_err(|_| invalid("Not a number of type INT".into()))?;
            in_range(i64::from(n), min, max).map_err(invalid)?;
        }
        ConfigKind::Long { min } => {
            let n: i64 = value
                .parse()
                .map_err(|_| invalid("Not a number of type LONG".into()))?;
            in_range(n, min, i64::MAX).map_err(invalid)?;
        }
        ConfigKind::Double { min, max } => {
            let n: f64 = value
                .parse()
                .map_err(|_| invalid("Not a number of type DOUBLE".into()))?;
            if !(min..=max).contains(&n) {
                return Err(invalid(format!("Value must be in [{min}, {max}]")));
            }
        }
        ConfigKind::Choice(choices) => {
            if !choices.contains(&value) {
                return Err(invalid(format!(
                    "String must be one of: {}",
                    choices.join(", ")
                )));
            }
        }
        ConfigKind::List(items) => {
            let listed: Vec<&str> = value.split(',').map(str::trim).collect();
            if !items.is_empty() {
                if let Some(unknown) = listed.iter().find(|item| !items.contains(item)) {
                    return Err(invalid(format!(
                        "{unknown} is not one of: {}",
                        items.join(", ")
                    )));
                }
            }
        }
        ConfigKind::Text => {}
    }
    Ok(value.to_string())
}

fn in_range(n: i64, min: i64, max: i64) -> Result<(), String> {
    if n < min {
        return Err(format!("Value must be at least {min}"));
    }
    if n > max {
        return Err(format!("Value must be no more than {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_sorted_and_its_defaults_are_valid() {
        let names: Vec<&str> = CONFIGS.iter().map(|def| def.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted by name, each once");
        for def in &CONFIGS {
            validate(def, def.name, def.default)
                .unwrap_or_else(|e| panic!("the default of {}: {e}", def.name));
        }
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let check = |name: &str, value: &str| validate(find(name).unwrap(), name, value);
        assert_eq!(check("min.insync.replicas", " 2 ").unwrap(), "2");
        assert!(check("min.insync.replicas", "0").is_err());
        assert!(check("min.insync.replicas", "2147483648").is_err());
        assert!(check("preallocate", "TRUE").is_ok());
        assert!(check("preallocate", "yes").is_err());
        assert!(check("min.cleanable.dirty.ratio", "0.9").is_ok());
        assert!(check("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(check("local.retention.ms", "-2").is_ok());
        assert!(check("local.retention.ms", "-3").is_err());
        assert!(check("message.format.version", "2.8-IV1").is_ok());
        assert!(check("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(check("cleanup.policy", "delete,sometimes").is_err());
    }

    #[test]
    fn an_unknown_codec_is_an_invalid_value() {
        let codec =
            |value: &str| validate(find("compression.type").unwrap(), "compression.type", value);
        assert!(codec("zstd").is_ok());
        let invalid = codec("brotli").unwrap_err().to_string();
        assert!(invalid.contains("must be one of"), "{invalid}");
    }
}
