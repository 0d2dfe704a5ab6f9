//! CreatePartitions: raises a topic's partition count (or only validates it).

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use proto_compat::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        if !broker
            .authorizer
            .topic(session, AclOperation::Alter, topic.name.as_str())
        {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Not authorized to alter the topic"));
        } else if let Err(e) = broker
            .coordinator
            .create_partitions(topic.name.as_str(), topic.count, request.validate_only)
            .await
        {
            result.error_code = e.error_code();
            result.error_message = Some(str_bytes(e.to_string()));
        }
        response.results.push(result);
    }
    response
}
