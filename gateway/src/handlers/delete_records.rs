//! DeleteRecords: advances partitions' log start offsets; retention later removes the
//! segments entirely below them. Refused on topics whose `cleanup.policy` lacks `delete`
//! (POLICY_VIOLATION), as Kafka refuses it.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use proto_compat::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::connection::Session;

/// DeleteRecords offset meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let deletable = broker
            .authorizer
            .topic(session, AclOperation::Delete, topic.name.as_str());
        let meta = broker.coordinator.topic(topic.name.as_str());
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        for partition in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = partition.partition_index;
            result.low_watermark = -1;
            let outcome = match &meta {
                _ if !deletable => Err(ResponseError::TopicAuthorizationFailed.code()),
                Some(meta) => {
                    delete_records(broker, meta, partition.partition_index, partition.offset).await
                }
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match outcome {
                Ok(low_watermark) => result.low_watermark = low_watermark,
                Err(code) => result.error_code = code,
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

async fn delete_records(
    broker: &Broker,
    topic: &coordinator::TopicMeta,
    index: i32,
    offset: i64,
) -> Result<i64, i16> {
    let partition = broker.partition(topic, index)?;
    let config = broker
        .coordinator
        .topic_config(&topic.name)
        .map_err(|e| e.error_code())?;
    if !config.cleanup_policy.deletes() {
        return Err(ResponseError::PolicyViolation.code());
    }
    let high_watermark = partition.commit_state().high_watermark;
    let offset = if offset == HIGH_WATERMARK {
        high_watermark
    } else {
        offset
    };
    if offset < 0 || offset > high_watermark {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    let log_start_offset = broker
        .coordinator
        .advance_log_start_offset(topic.topic_id, index, offset)
        .await
        .map_err(|e| e.error_code())?;
    partition.set_log_start_offset(log_start_offset);
    Ok(log_start_offset)
}
