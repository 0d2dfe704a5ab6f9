//! DescribeConfigs for topics (every Kafka topic config: effective value, source, synonyms,
//! type and documentation) and for a broker (its own settings and the topic defaults).

use coordinator::acl::AclOperation;
use coordinator::topic_config::catalog::ConfigKind;
use coordinator::{ConfigEntry, ConfigSource};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use proto_compat::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

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

/// Why a principal may not do `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource: Kafka asks it of the topic, or of the cluster for a broker.
pub fn config_refusal(
    broker: &Broker,
    session: &Session,
    operation: AclOperation,
    resource_type: i8,
    name: &str,
) -> Option<(i16, String)> {
    let authorizer = &broker.authorizer;
    match resource_type {
        RESOURCE_TOPIC if !authorizer.topic(session, operation, name) => Some((
            ResponseError::TopicAuthorizationFailed.code(),
            format!("Not authorized to {operation:?} topic {name}"),
        )),
        RESOURCE_BROKER if !authorizer.cluster(session, operation) => Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            format!("Not authorized to {operation:?} the cluster"),
        )),
        _ => None,
    }
}

pub fn handle(
    broker: &Broker,
    session: &Session,
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
        let refusal = config_refusal(
            broker,
            session,
            AclOperation::DescribeConfigs,
            resource.resource_type,
            resource.resource_name.as_str(),
        );
        let entries = match resource.resource_type {
            _ if refusal.is_some() => Err(refusal.unwrap_or_default()),
            RESOURCE_TOPIC => broker
                .coordinator
                .describe_topic_config(resource.resource_name.as_str())
                .map_err(|e| (e.error_code(), e.to_string())),
            RESOURCE_BROKER => describe_broker(broker, resource.resource_name.as_str()),
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

/// This broker's settings and topic defaults. An empty name asks for the cluster-wide
/// dynamic defaults, which Strata does not have; another broker's id is a misrouted request.
fn describe_broker(broker: &Broker, name: &str) -> Result<Vec<ConfigEntry>, (i16, String)> {
    if name.is_empty() {
        return Ok(Vec::new());
    }
    if name != broker.broker_id.to_string() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                broker.broker_id
            ),
        ));
    }
    let id = ConfigEntry {
        name: "broker.id".to_string(),
        value: Some(broker.broker_id.to_string()),
        source: ConfigSource::BrokerDefault,
        read_only: true,
        sensitive: false,
        config_type: ConfigKind::Int {
            min: 0,
            max: i64::from(i32::MAX),
        }
        .code(),
        documentation: "The broker's id, from --broker-id or allocated by the coordinator.",
        synonyms: Vec::new(),
    };
    let mut entries = broker.config.describe();
    entries.extend(broker.coordinator.describe_broker_config());
    entries.push(id);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto_compat::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use segment_store::backends::memory::MemoryStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{broker, session};

    fn describe(broker: &Broker, name: &str) -> DescribeConfigsResult {
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = RESOURCE_BROKER;
        resource.resource_name = str_bytes(name.to_string());
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources.push(resource);
        handle(broker, &session("User:ANONYMOUS"), 4, request)
            .results
            .remove(0)
    }

    /// Clients route a broker's DescribeConfigs to that broker, so another id is a misrouted
    /// request, and an empty name asks for cluster-wide dynamic defaults (none here).
    #[tokio::test]
    async fn a_broker_describes_itself_only() {
        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        let own = describe(&broker, "0");
        assert_eq!(own.error_code, 0);
        let names: Vec<_> = own.configs.iter().map(|c| c.name.as_str()).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "sorted, each name once");
        for name in [
            "broker.id",
            "flush.bytes",
            "group.max.size",
            "log.retention.ms",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }

        let other = describe(&broker, "7");
        assert_eq!(other.error_code, ResponseError::InvalidRequest.code());
        assert!(other.error_message.unwrap().contains("expected 0"));
        let cluster = describe(&broker, "");
        assert_eq!((cluster.error_code, cluster.configs.len()), (0, 0));
    }
}
