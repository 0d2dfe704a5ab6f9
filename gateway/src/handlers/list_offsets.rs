//! ListOffsets: earliest (-2), latest (-1; the last stable offset for read_committed),
//! max timestamp (-3), earliest local (-4), and the first offset at or after a timestamp,
//! through the segments' time indexes.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use proto_compat::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use proto_compat::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::check_leader_epoch;
use crate::broker::Broker;
use crate::connection::Session;

const LATEST: i64 = -1;
/// The isolation level of consumers that see committed transactions only (v2+).
const READ_COMMITTED: i8 = 1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let name = topic.name.as_str();
        let described = broker
            .authorizer
            .topic(session, AclOperation::Describe, name);
        let meta = broker.coordinator.topic(name);
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        for partition in topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = partition.partition_index;
            out.timestamp = -1;
            out.offset = -1;
            out.leader_epoch = -1;
            let result = match &meta {
                _ if !described => Err(ResponseError::TopicAuthorizationFailed.code()),
                Some(meta) => {
                    let read_committed = version >= 2 && request.isolation_level == READ_COMMITTED;
                    list_offset(broker, meta, &partition, read_committed).await
                }
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            match result {
                Ok((offset, timestamp, leader_epoch)) => {
                    out.offset = offset;
                    out.timestamp = timestamp;
                    // v4+ (KIP-320)
                    if version >= 4 {
                        out.leader_epoch = leader_epoch;
                    }
                }
                Err(code) => out.error_code = code,
            }
            topic_response.partitions.push(out);
        }
        response.topics.push(topic_response);
    }
    response
}

/// (offset, timestamp, leader epoch); offset and timestamp are -1 when no record matches.
async fn list_offset(
    broker: &Broker,
    topic: &coordinator::TopicMeta,
    request: &ListOffsetsPartition,
    read_committed: bool,
) -> Result<(i64, i64, i32), i16> {
    let partition = broker.partition(topic, request.partition_index)?;
    let epoch = partition.leader_epoch;
    if let Some(code) = check_leader_epoch(request.current_leader_epoch, epoch) {
        return Err(code);
    }
    let state = partition.commit_state();
    let found = match request.timestamp {
        LATEST if read_committed => Some((state.last_stable_offset, -1)),
        LATEST => Some((state.high_watermark, -1)),
        EARLIEST | EARLIEST_LOCAL => Some((state.log_start_offset, -1)),
        // Nothing is tiered: everything is in the same object store.
        LATEST_TIERED => None,
        timestamp => {
            let reader = broker.log_reader();
            let (topic_id, index) = (topic.topic_id, request.partition_index);
            let result = if timestamp == MAX_TIMESTAMP {
                reader.offset_of_max_timestamp(topic_id, index).await
            } else {
                reader
                    .offset_for_timestamp(topic_id, index, timestamp)
                    .await
            };
            result.map_err(|e| {
                tracing::error!(topic = %topic.name, partition = request.partition_index, error = %e, "ListOffsets read failed");
                ResponseError::KafkaStorageError.code()
            })?
        }
    };
    Ok(match found {
        Some((offset, timestamp)) => (offset, timestamp, epoch),
        None => (-1, -1, epoch),
    })
}
