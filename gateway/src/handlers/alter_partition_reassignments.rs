//! AlterPartitionReassignments: moves partitions by hand. A partition's only replica is its
//! leader, so a reassignment names exactly one live broker: it becomes the partition's
//! preferred leader and leadership is handed over to it (the answer comes once the move has
//! started, as in Kafka). A partition without replicas cancels its reassignment.

use coordinator::acl::AclOperation;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use proto_compat::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use coordinator::CoordinatorError;

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    if !broker.authorizer.cluster(session, AclOperation::Alter) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    response.allow_replication_factor_change = request.allow_replication_factor_change;
    for topic in request.topics {
        let meta = broker.coordinator.topic(topic.name.as_str());
        let mut topic_response = ReassignableTopicResponse::default();
        topic_response.name = topic.name.clone();
        for partition in topic.partitions {
            let index = partition.partition_index;
            let target = match partition.replicas.as_deref() {
                None => Ok(None),
                Some([target]) => Ok(Some(target.0)),
                Some(replicas) => Err(CoordinatorError::InvalidReplicaAssignment(format!(
                    "a partition has one replica, its leader: name exactly one broker, not {}",
                    replicas.len()
                ))),
            };
            let reassigned = match (&meta, target) {
                (None, _) => Err(CoordinatorError::UnknownTopicOrPartition(format!(
                    "topic {} does not exist",
                    topic.name.as_str()
                ))),
                (Some(_), Err(e)) => Err(e),
                (Some(meta), Ok(target)) => {
                    let coordinator = &broker.coordinator;
                    coordinator
                        .reassign_partition(meta.topic_id, index, target)
                        .await
                }
            };
            let mut result = ReassignablePartitionResponse::default();
            result.partition_index = index;
            if let Err(e) = reassigned {
                result.error_code = e.error_code();
                result.error_message = Some(str_bytes(e.to_string()));
            }
            topic_response.partitions.push(result);
        }
        response.responses.push(topic_response);
    }
    response
}
