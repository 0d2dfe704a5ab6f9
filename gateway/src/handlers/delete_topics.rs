//! DeleteTopics, by name (all versions) or by topic id (v6+).

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use proto_compat::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // v0-5 list names; v6+ list (name or id) pairs.
    let targets: Vec<(Option<String>, Uuid)> = if version < 6 {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, topic_id) in targets {
        let mut result = DeletableTopicResult::default();
        result.topic_id = topic_id;
        let meta = match &name {
            Some(name) => broker
                .coordinator
                .topic(name)
                .ok_or(ResponseError::UnknownTopicOrPartition.code()),
            None => broker
                .coordinator
                .topic_by_id(topic_id)
                .ok_or(ResponseError::UnknownTopicId.code()),
        };
        // Without DELETE a topic is refused, even one that does not exist (an unknown id
        // names nothing to authorize).
        let named = match &meta {
            Ok(meta) => Some(meta.name.as_str()),
            Err(_) => name.as_deref(),
        };
        let meta = match named {
            Some(named)
                if !broker
                    .authorizer
                    .topic(session, AclOperation::Delete, named) =>
            {
                Err(ResponseError::TopicAuthorizationFailed.code())
            }
            _ => meta,
        };
        result.name = name.map(topic_name);
        match meta {
            Ok(meta) => match broker.coordinator.delete_topic(&meta.name).await {
                Ok(deleted) => {
                    broker.forget_topic(&deleted);
                    tracing::info!(topic = %deleted.name, "deleted topic");
                    result.name = Some(topic_name(deleted.name));
                    if version >= 6 {
                        result.topic_id = deleted.topic_id;
                    }
                }
                Err(e) => {
                    result.error_code = e.error_code();
                    if version >= 5 {
                        result.error_message = Some(str_bytes(e.to_string()));
                    }
                }
            },
            Err(code) => result.error_code = code,
        }
        response.responses.push(result);
    }
    response
}
