//! DescribeConfigs for topics (effective values with their source) and for the broker (its
//! topic defaults).

use coordinator::{ConfigEntry, ConfigSource};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use proto_compat::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's DescribeConfigs ConfigSource codes.
pub fn config_source(source: &ConfigSource) -> i8 {
    match source {
        ConfigSource::TopicOverride => 1,
        ConfigSource::BrokerDefault => 4,
        ConfigSource::Default => 5,
    }
}

/// Kafka's ConfigType codes (DescribeConfigs v3+).
fn config_type(name: &str) -> i8 {
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match name {
        "segment.bytes" | "max.message.bytes" | "message.max.bytes" | "num.partitions" => INT,
        "cleanup.policy" | "log.cleanup.policy" => LIST,
        "message.timestamp.type" | "log.message.timestamp.type" => STRING,
        _ => LONG,
    }
}

pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let entries = match resource.resource_type {
            RESOURCE_TOPIC => broker
                .coordinator
                .describe_topic_config(resource.resource_name.as_str())
                .map_err(|e| (e.error_code(), e.to_string())),
            RESOURCE_BROKER => Ok(broker.coordinator.describe_broker_config()),
            other => Err((
                ResponseError::InvalidRequest.code(),
                format!("config resource type {other} is not supported"),
            )),
        };
        match entries {
            Ok(entries) => {
                let wanted = resource.configuration_keys.as_ref();
                result.configs = entries
                    .into_iter()
                    .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
                    .map(|entry| describe_entry(entry, version))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.results.push(result);
    }
    response
}

fn describe_entry(entry: ConfigEntry, version: i16) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default();
    if version >= 3 {
        out.config_type = config_type(&entry.name);
    }
    out.name = str_bytes(entry.name);
    out.value = entry.value.map(str_bytes);
    out.read_only = entry.read_only;
    out.config_source = config_source(&entry.source);
    out.is_sensitive = entry.sensitive;
    out
}
