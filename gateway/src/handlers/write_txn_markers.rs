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
