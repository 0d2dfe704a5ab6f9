//! DescribeConfigs for topics (every Kafka topic config: effective value, source, synonyms,
//! type and documentation) and for the broker (its topic defaults).

use coordinator::{ConfigEntry, ConfigSource};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
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

pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    let synonyms = version >= 1 && request.include_synonyms;
    let documentation = version >= 3 && request.include_documentation;
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
                    .map(|entry| describe_entry(entry, version, synonyms, documentation))
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

fn describe_entry(
    entry: ConfigEntry,
    version: i16,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default();
    if version >= 3 {
        out.config_type = entry.config_type;
    }
    if documentation {
        out.documentation = Some(str_bytes(entry.documentation.to_string()));
    }
    if synonyms {
        out.synonyms = entry
            .synonyms
            .into_iter()
            .map(|synonym| {
                let mut out = DescribeConfigsSynonym::default();
                out.name = str_bytes(synonym.name);
                out.value = synonym.value.map(str_bytes);
                out.source = config_source(&synonym.source);
                out
            })
            .collect();
    }
    out.name = str_bytes(entry.name);
    out.value = entry.value.map(str_bytes);
    out.read_only = entry.read_only;
    out.config_source = config_source(&entry.source);
    out.is_sensitive = entry.sensitive;
    out
}
