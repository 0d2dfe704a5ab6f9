//! OffsetDelete (KIP-496): removes a group's committed offsets of topics it does not consume.

use proto_compat::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use proto_compat::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::handlers::offset_commit::topic_results;

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
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
        |_, _| results.next().and_then(Result::err).map_or(0, |e| e.code()),
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
