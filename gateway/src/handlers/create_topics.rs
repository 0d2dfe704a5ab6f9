//! CreateTopics: validates and creates topics (or only validates, with `validate_only`).
//! Replication factors are accepted as given: durability is the object store's.

use std::collections::{BTreeMap, HashMap};

use coordinator::error::CoordinatorError;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::create_topics_request::CreatableTopic;
use proto_compat::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use proto_compat::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::config_source;
use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.to_string()).or_default() += 1;
    }
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        let outcome = if seen[topic.name.as_str()] > 1 {
            Err((
                ResponseError::InvalidRequest.code(),
                format!(
                    "topic {} appears more than once in the request",
                    topic.name.as_str()
                ),
            ))
        } else if !broker
            .authorizer
            .may_create_topic(session, topic.name.as_str())
        {
            Err((
                ResponseError::TopicAuthorizationFailed.code(),
                format!("Not authorized to create topic {}", topic.name.as_str()),
            ))
        } else {
            create(broker, &topic, request.validate_only).await
        };
        match outcome {
            // Before v5 a success carries nothing but the name.
            Ok(_) if version < 5 => {}
            Ok(created) => {
                if version >= 7 {
                    result.topic_id = created.topic_id;
                }
                result.num_partitions = created.partitions;
                result.replication_factor = topic.replication_factor.max(1);
                result.configs = broker
                    .coordinator
                    .describe_topic_config(&created.name)
                    .ok()
                    .or_else(|| (request.validate_only).then(Vec::new))
                    .map(|entries| {
                        entries
                            .into_iter()
                            .map(|entry| {
                                let mut out = CreatableTopicConfigs::default();
                                out.name = str_bytes(entry.name);
                                out.value = entry.value.map(str_bytes);
                                out.read_only = entry.read_only;
                                out.config_source = config_source(&entry.source);
                                out.is_sensitive = entry.sensitive;
                                out
                            })
                            .collect()
                    });
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(message));
            }
        }
        response.topics.push(result);
    }
    response
}

async fn create(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<coordinator::TopicMeta, (i16, String)> {
    let error = |e: CoordinatorError| (e.error_code(), e.to_string());
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} must be positive or -1",
                topic.replication_factor
            ),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest.code(),
                "numPartitions and replicationFactor must be -1 with manual assignments"
                    .to_string(),
            ));
        }
        topic.assignments.len() as i32
    } else if topic.num_partitions == -1 {
        broker.coordinator.defaults().num_partitions
    } else {
        topic.num_partitions
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("config {} has a null value", config.name.as_str()),
            ));
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    broker
        .coordinator
        .create_topic(topic.name.as_str(), partitions, configs, validate_only)
        .await
        .map_err(error)
}
