//! Tables of broker settings (the Kafka-style keys of the broker's config file): one
//! definition per setting both reads it from the file and describes it in DescribeConfigs
//! for the broker resource.

use std::time::Duration;

use crate::topic_config::catalog::ConfigKind;
use crate::{ConfigEntry, ConfigSource};

pub struct Setting<C: 'static> {
    pub name: &'static str,
    pub kind: ConfigKind,
    pub documentation: &'static str,
    /// Parses the file's value into the settings; Err says what was expected.
    pub set: fn(&mut C, &str) -> Result<(), String>,
    /// The value in effect; None when unset.
    pub get: fn(&C) -> Option<String>,
}

impl<C> Setting<C> {
    /// The setting as DescribeConfigs reports it: read-only (Kafka's static broker configs),
    /// from the config file or built in.
    pub fn entry(&self, config: &C, set_in_file: bool) -> ConfigEntry {
        ConfigEntry {
            name: self.name.to_string(),
            value: (self.get)(config),
            source: if set_in_file {
                ConfigSource::BrokerDefault
            } else {
                ConfigSource::Default
            },
            read_only: true,
            sensitive: false,
            config_type: self.kind.code(),
            documentation: self.documentation,
            synonyms: Vec::new(),
        }
    }
}

/// The setting named `name` in `table`.
pub fn find<'a, C>(table: &'a [Setting<C>], name: &str) -> Option<&'a Setting<C>> {
    table.iter().find(|setting| setting.name == name)
}

/// Stores a parsed value: `set: |c, v| set_to(&mut c.field, parse_millis(v))`.
pub fn set_to<T>(slot: &mut T, parsed: Result<T, String>) -> Result<(), String> {
    *slot = parsed?;
    Ok(())
}

pub fn parse_bytes(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a byte count".to_string())
}

pub fn parse_millis(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| "expected milliseconds".to_string())
}

/// A count of at least 1.
pub fn parse_count(value: &str) -> Result<usize, String> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| "expected a positive count".to_string())
}

pub fn parse_bool(value: &str) -> Result<bool, String> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected true or false".to_string())
}

pub fn show_millis(duration: Duration) -> Option<String> {
    Some(duration.as_millis().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Settings {
        timeout: Duration,
    }

    const TABLE: &[Setting<Settings>] = &[Setting {
        name: "x.timeout.ms",
        kind: ConfigKind::Long { min: 0 },
        documentation: "How long x waits.",
        set: |s, v| set_to(&mut s.timeout, parse_millis(v)),
        get: |s| show_millis(s.timeout),
    }];

    #[test]
    fn a_setting_is_set_and_described_from_one_definition() {
        let mut settings = Settings {
            timeout: Duration::ZERO,
        };
        let setting = find(TABLE, "x.timeout.ms").unwrap();
        (setting.set)(&mut settings, "1500").unwrap();
        assert_eq!(settings.timeout, Duration::from_millis(1500));
        assert_eq!(
            (setting.set)(&mut settings, "soon").unwrap_err(),
            "expected milliseconds"
        );
        let entry = setting.entry(&settings, true);
        assert_eq!(entry.value.as_deref(), Some("1500"));
        assert_eq!(entry.source, ConfigSource::BrokerDefault);
        assert!(entry.read_only);
        assert_eq!(entry.config_type, 5);
        assert_eq!(
            setting.entry(&settings, false).source,
            ConfigSource::Default
        );
        assert!(find(TABLE, "y").is_none());
    }
}
