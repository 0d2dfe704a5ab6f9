//! OffsetDelete (KIP-496): removes a group's committed offsets of topics it does not consume.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use proto_compat::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::connection::Session;
use crate::handlers::offset_commit::topic_results;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let authorizer = &broker.authorizer;
    if !authorizer.group(session, AclOperation::Delete, &request.group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    // Kafka deletes the offsets of the topics the principal may read and refuses the others.
    let readable = |name: &str| authorizer.topic(session, AclOperation::Read, name);
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .filter(|t| readable(&t.name))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let results = match broker
        .groups
        .delete_offsets(&request.group_id, &partitions)
        .await
    {
        Ok(results) => results,
        Err(error) => {
            response.error_code = error.code();
            return response;
        }
    };
    let mut results = results.into_iter();
    response.topics = topic_results(
        request.topics,
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
        |topic, _| {
            if readable(topic) {
                results.next().and_then(Result::err).map_or(0, |e| e.code())
            } else {
                ResponseError::TopicAuthorizationFailed.code()
            }
        },
        |name, results| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    results
                        .into_iter()
                        .map(|(index, code)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    response
}
