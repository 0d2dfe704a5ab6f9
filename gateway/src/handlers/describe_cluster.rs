//! DescribeCluster: the live brokers, the cluster id and the controller.

use coordinator::acl::{AclOperation, ResourceType};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use proto_compat::kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse,
};

use super::str_bytes;
use crate::authorizer::CLUSTER_NAME;
use crate::broker::Broker;
use crate::connection::Session;

/// DescribeCluster v1+ endpoint types.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// The brokers as clients of `listener` reach them.
pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = ENDPOINT_TYPE_BROKERS;
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Strata has no separate controller endpoints, as a Kafka broker listener does not.
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(str_bytes("only broker endpoints are served"));
        return response;
    }
    let coordinator = &broker.coordinator;
    response.cluster_id = str_bytes(coordinator.cluster_id());
    response.controller_id = BrokerId(coordinator.controller_id());
    response.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        cluster_authorized_operations(broker, session)
    } else {
        i32::MIN
    };
    response.brokers = coordinator
        .brokers()
        .into_iter()
        .filter_map(|b| {
            let (host, port) = b.endpoint(&session.listener)?;
            let mut out = DescribeClusterBroker::default();
            out.broker_id = BrokerId(b.broker_id);
            out.host = str_bytes(host.to_string());
            out.port = port;
            out.rack = b.rack.clone().map(str_bytes);
            Some(out)
        })
        .collect();
    response
}

/// Kafka answers the cluster's authorized operations only to a principal that may DESCRIBE
/// it (none, 0, to others); DescribeCluster and Metadata themselves need no ACL.
pub fn cluster_authorized_operations(broker: &Broker, session: &Session) -> i32 {
    let authorizer = &broker.authorizer;
    if authorizer.cluster(session, AclOperation::Describe) {
        authorizer.authorized_operations(session, ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}
