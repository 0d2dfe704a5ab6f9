//! Metadata: brokers, cluster id, controller, and topics with their partition leaders;
//! auto-creates requested topics when the broker and the request allow it. Topics the
//! principal may not DESCRIBE are left out of a listing of all, and refused when named.

use coordinator::acl::{AclOperation, ResourceType};
use coordinator::TopicMeta;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use proto_compat::kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::describe_cluster::cluster_authorized_operations;
use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;

/// Topics and partitions, and the brokers as clients of the session's listener reach them.
pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let coordinator = &broker.coordinator;
    let authorizer = &broker.authorizer;
    let may_describe = |name: &str| authorizer.topic(session, AclOperation::Describe, name);
    let topic_operations = version >= 8 && request.include_topic_authorized_operations;
    let describe = |topic: &TopicMeta| {
        let mut described = describe_topic(broker, version, topic);
        if topic_operations {
            described.topic_authorized_operations =
                authorizer.authorized_operations(session, ResourceType::Topic, &topic.name);
        }
        described
    };
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all_topics = match &request.topics {
        None => true,
        Some(topics) => version == 0 && topics.is_empty(),
    };
    // Before v4 there is no flag and Kafka always auto-creates.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = if all_topics {
        coordinator
            .topics()
            .iter()
            .filter(|t| may_describe(&t.name))
            .map(describe)
            .collect()
    } else {
        let mut out = Vec::new();
        for requested in request.topics.unwrap_or_default() {
            let refused = ResponseError::TopicAuthorizationFailed.code();
            let result = match &requested.name {
                Some(name) if !may_describe(name) => {
                    Err((refused, Some(name.to_string()), Uuid::nil()))
                }
                // Kafka's rule: auto-creation needs CREATE, else the topic is refused.
                Some(name)
                    if allow_auto_create
                        && broker.config.auto_create_topics_enable
                        && coordinator.topic(name).is_none()
                        && !authorizer.may_create_topic(session, name) =>
                {
                    Err((refused, Some(name.to_string()), Uuid::nil()))
                }
                Some(name) => broker
                    .topic_or_auto_create(name.as_str(), allow_auto_create)
                    .await
                    .map_err(|e| (e.error_code(), Some(name.to_string()), Uuid::nil())),
                None => match coordinator.topic_by_id(requested.topic_id) {
                    Some(topic) if !may_describe(&topic.name) => {
                        Err((refused, None, requested.topic_id))
                    }
                    Some(topic) => Ok(topic),
                    None => Err((
                        ResponseError::UnknownTopicId.code(),
                        None,
                        requested.topic_id,
                    )),
                },
            };
            out.push(match result {
                Ok(topic) => describe(&topic),
                Err((error_code, name, topic_id)) => {
                    let mut topic = MetadataResponseTopic::default();
                    topic.error_code = error_code;
                    topic.name = name.map(topic_name);
                    if version >= 10 {
                        topic.topic_id = topic_id;
                    }
                    topic
                }
            });
        }
        out
    };

    let mut response = MetadataResponse::default();
    // Each broker as clients of this listener reach it.
    response.brokers = coordinator
        .brokers()
        .into_iter()
        .filter_map(|b| {
            let (host, port) = b.endpoint(&session.listener)?;
            let mut out = MetadataResponseBroker::default();
            out.node_id = BrokerId(b.broker_id);
            out.host = str_bytes(host.to_string());
            out.port = port;
            out.rack = b.rack.clone().map(str_bytes);
            Some(out)
        })
        .collect();
    if version >= 2 {
        response.cluster_id = Some(str_bytes(coordinator.cluster_id()));
    }
    if version >= 1 {
        response.controller_id = BrokerId(coordinator.controller_id());
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = cluster_authorized_operations(broker, session);
    }
    response.topics = topics;
    response
}

fn describe_topic(broker: &Broker, version: i16, topic: &TopicMeta) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(topic_name(topic.name.clone()));
    if version >= 10 {
        out.topic_id = topic.topic_id;
    }
    out.partitions = (0..topic.partitions)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            match broker.coordinator.leader(topic.topic_id, index) {
                Some(leader) => {
                    // Durability is the object store's: the leader is the only replica.
                    let id = BrokerId(leader.broker_id);
                    partition.leader_id = id;
                    if version >= 7 {
                        partition.leader_epoch = leader.leader_epoch;
                    }
                    partition.replica_nodes = vec![id];
                    partition.isr_nodes = vec![id];
                }
                None => {
                    partition.error_code = ResponseError::LeaderNotAvailable.code();
                    partition.leader_id = BrokerId(-1);
                }
            }
            partition
        })
        .collect();
    out
}
