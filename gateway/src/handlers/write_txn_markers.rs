//! WriteTxnMarkers, from the transaction coordinator of a transaction whose partitions this
//! broker leads: each marker appended and committed before the answer.

use coordinator::acl::AclOperation;
use proto_compat::batch::ControlType;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use proto_compat::kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::connection::Session;
use crate::transaction_coordinator::append_marker;

/// Only brokers send it: Kafka requires CLUSTER_ACTION on the cluster.
pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut response = WriteTxnMarkersResponse::default();
    let refused = !broker
        .authorizer
        .cluster(session, AclOperation::ClusterAction);
    for marker in request.markers {
        let control = if marker.transaction_result {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut result = WritableTxnMarkerResult::default();
        result.producer_id = marker.producer_id;
        for topic in marker.topics {
            let mut topic_result = WritableTxnMarkerTopicResult::default();
            for &partition in &topic.partition_indexes {
                let (pid, epoch) = (marker.producer_id.0, marker.producer_epoch);
                let written = if refused {
                    Err(ResponseError::ClusterAuthorizationFailed.code())
                } else {
                    append_marker(broker, &topic.name, partition, pid, epoch, control).await
                };
                let mut partition_result = WritableTxnMarkerPartitionResult::default();
                partition_result.partition_index = partition;
                partition_result.error_code = written.err().unwrap_or(0);
                topic_result.partitions.push(partition_result);
            }
            topic_result.name = topic.name;
            result.topics.push(topic_result);
        }
        response.markers.push(result);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proto_compat::kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use proto_compat::kafka_protocol::messages::ProducerId;
    use segment_store::backends::memory::MemoryStore;

    use super::*;
    use crate::authorizer::AuthorizerSettings;
    use crate::config::BrokerConfig;
    use crate::handlers::topic_name;
    use crate::test_support::{broker, session};

    /// The one partition's error code of a commit marker for `t`-0 sent as `principal`.
    async fn marker_error(broker: &Broker, principal: &str) -> i16 {
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(7))
            .with_producer_epoch(0)
            .with_transaction_result(true)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(topic_name("t"))
                .with_partition_indexes(vec![0])]);
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        let response = handle(broker, &session(principal), request).await;
        response.markers[0].topics[0].partitions[0].error_code
    }

    #[tokio::test]
    async fn markers_need_cluster_action_which_the_inter_broker_principal_gets_as_a_super_user() {
        let config = BrokerConfig {
            authorizer: AuthorizerSettings {
                class_name: "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
                super_users: vec!["User:ANONYMOUS".to_string()],
                allow_everyone_if_no_acl_found: false,
            },
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), config).await;
        assert_eq!(
            marker_error(&broker, "User:alice").await,
            ResponseError::ClusterAuthorizationFailed.code()
        );
        // Authorized, it is answered as a marker for a topic that is gone: written.
        assert_eq!(marker_error(&broker, "User:ANONYMOUS").await, 0);
    }
}
