//! ListPartitionReassignments: the partitions on their way to the broker they were
//! reassigned to, in Kafka's terms: the replicas are the target and the current leader, the
//! target being added and the leader removed.

use coordinator::acl::AclOperation;
use std::collections::BTreeMap;

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use proto_compat::kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::topic_name;
use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !broker.authorizer.cluster(session, AclOperation::Describe) {
        let mut response = ListPartitionReassignmentsResponse::default();
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    let coordinator = &broker.coordinator;
    // None lists every partition.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let mut ongoing: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for reassignment in coordinator.reassignments() {
        let Some(topic) = coordinator.topic_by_id(reassignment.topic_id) else {
            continue;
        };
        let listed = wanted.as_ref().is_none_or(|wanted| {
            wanted
                .get(&topic.name)
                .is_some_and(|partitions| partitions.contains(&reassignment.partition))
        });
        if !listed {
            continue;
        }
        let mut partition = OngoingPartitionReassignment::default();
        partition.partition_index = reassignment.partition;
        partition.replicas = vec![BrokerId(reassignment.target), BrokerId(reassignment.leader)];
        partition.adding_replicas = vec![BrokerId(reassignment.target)];
        partition.removing_replicas = vec![BrokerId(reassignment.leader)];
        ongoing.entry(topic.name).or_default().push(partition);
    }
    let mut response = ListPartitionReassignmentsResponse::default();
    for (name, mut partitions) in ongoing {
        partitions.sort_by_key(|p| p.partition_index);
        let mut topic = OngoingTopicReassignment::default();
        topic.name = topic_name(name);
        topic.partitions = partitions;
        response.topics.push(topic);
    }
    response
}
