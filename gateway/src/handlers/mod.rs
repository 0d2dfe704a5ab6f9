//! One module per Kafka API family; `dispatch` routes a decoded request to its handler.

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

use std::sync::Arc;

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{RequestKind, ResponseKind, TopicName};
use proto_compat::kafka_protocol::protocol::StrBytes;
use proto_compat::request::Request;

use crate::broker::Broker;

/// The response to `request`: `Some(None)` when the API sends none (acks=0 produce),
/// `None` when no handler serves it (decode_request only lets supported APIs through).
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Option<Option<ResponseKind>> {
    let version = request.header.request_api_version;
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, version, r).await)
        }
        RequestKind::Produce(r) => {
            return Some(
                produce::handle(broker, version, r)
                    .await
                    .map(ResponseKind::Produce),
            )
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, version, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, version, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, version, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, version, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, version, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle_alter(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(broker, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r).await)
        }
        _ => return None,
    };
    Some(Some(response))
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// Kafka's check of the leader epoch a client believes in (KIP-320): older is fenced,
/// newer means this broker's metadata is behind.
fn check_leader_epoch(requested: i32, current: i32) -> Option<i16> {
    if requested < 0 || requested == current {
        None
    } else if requested < current {
        Some(ResponseError::FencedLeaderEpoch.code())
    } else {
        Some(ResponseError::UnknownLeaderEpoch.code())
    }
}
