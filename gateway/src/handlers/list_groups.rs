//! ListGroups: the groups this broker coordinates, filtered by state (v4+) and type (v5+),
//! both case-insensitively as in Kafka.

use coordinator::acl::AclOperation;
use std::collections::HashSet;

use proto_compat::kafka_protocol::messages::list_groups_response::ListedGroup;
use proto_compat::kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use proto_compat::kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    // Kafka lists every group to a principal that may DESCRIBE the cluster, else those it
    // may DESCRIBE.
    let authorizer = &broker.authorizer;
    let all = authorizer.cluster(session, AclOperation::Describe);
    let listed = |id: &str| all || authorizer.group(session, AclOperation::Describe, id);
    let states = if version >= 4 {
        lowercase(&request.states_filter)
    } else {
        HashSet::new()
    };
    let types = if version >= 5 {
        lowercase(&request.types_filter)
    } else {
        HashSet::new()
    };
    let mut response = ListGroupsResponse::default();
    response.groups = broker
        .groups
        .list_groups()
        .into_iter()
        .filter(|group| states.is_empty() || states.contains(&group.state.to_lowercase()))
        .filter(|group| types.is_empty() || types.contains(group.group_type))
        .filter(|group| listed(&group.group_id))
        .map(|group| {
            let mut out = ListedGroup::default();
            out.group_id = GroupId(str_bytes(group.group_id));
            out.protocol_type = str_bytes(group.protocol_type);
            if version >= 4 {
                out.group_state = str_bytes(group.state);
            }
            if version >= 5 {
                out.group_type = str_bytes(group.group_type);
            }
            out
        })
        .collect();
    response
}

fn lowercase(values: &[StrBytes]) -> HashSet<String> {
    values.iter().map(|v| v.trim().to_lowercase()).collect()
}
