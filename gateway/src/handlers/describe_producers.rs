//! DescribeProducers: the producers with state on partitions this broker leads, with their
//! epoch, last sequence, the max timestamp of its last batch and open transaction. Markers
//! carry no coordinator epoch (the metadata store's guards fence coordinators), so it is -1.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use proto_compat::kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let readable = broker
                .authorizer
                .topic(session, AclOperation::Read, &topic.name);
            let meta = broker.coordinator.topic(&topic.name);
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let mut out = PartitionResponse::default();
                    out.partition_index = index;
                    let partition = match &meta {
                        _ if !readable => Err(ResponseError::TopicAuthorizationFailed.code()),
                        Some(meta) => broker.partition(meta, index),
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                    };
                    match partition {
                        Ok(partition) => {
                            out.active_producers = partition
                                .producer_states()
                                .into_iter()
                                .map(|state| {
                                    let last_sequence =
                                        state.batches.last().map_or(-1, |b| b.last_seq);
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(state.producer_id))
                                        .with_producer_epoch(i32::from(state.producer_epoch))
                                        .with_last_sequence(last_sequence)
                                        .with_last_timestamp(state.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(
                                            state.current_txn_first_offset.unwrap_or(-1),
                                        )
                                })
                                .collect()
                        }
                        Err(code) => out.error_code = code,
                    }
                    out
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    response
}
