//! OffsetDelete (KIP-496): removes a group's committed offsets of topics it does not consume.

use proto_compat::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use proto_compat::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;

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
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = OffsetDeleteResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = OffsetDeleteResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code =
                        results.next().and_then(Result::err).map_or(0, |e| e.code());
                    partition
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
