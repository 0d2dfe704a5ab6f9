//! DescribeGroups: classic groups with their members. A group that does not exist (or is a
//! consumer-protocol group) is described as Dead, with GROUP_ID_NOT_FOUND from v6.

use coordinator::acl::{AclOperation, ResourceType};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use proto_compat::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    response.groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let mut out = DescribedGroup::default();
            if !broker
                .authorizer
                .group(session, AclOperation::Describe, &group_id)
            {
                out.error_code = ResponseError::GroupAuthorizationFailed.code();
                out.group_id = group_id;
                return out;
            }
            match broker.groups.describe_group(&group_id) {
                Ok(group) => {
                    out.group_state = str_bytes(group.state.as_str());
                    out.protocol_type = str_bytes(group.protocol_type);
                    out.protocol_data = str_bytes(group.protocol_name);
                    out.members = group
                        .members
                        .into_iter()
                        .map(|member| {
                            let mut m = DescribedGroupMember::default();
                            m.member_id = str_bytes(member.member_id);
                            if version >= 4 {
                                m.group_instance_id = member.group_instance_id.map(str_bytes);
                            }
                            m.client_id = str_bytes(member.client_id);
                            m.client_host = str_bytes(member.client_host);
                            m.member_metadata = member.metadata;
                            m.member_assignment = member.assignment;
                            m
                        })
                        .collect();
                    if version >= 3 && request.include_authorized_operations {
                        out.authorized_operations = broker.authorizer.authorized_operations(
                            session,
                            ResourceType::Group,
                            &group_id,
                        );
                    }
                }
                Err(e) if e.error == ResponseError::GroupIdNotFound => {
                    out.group_state = str_bytes("Dead");
                    if version >= 6 {
                        out.error_code = e.error.code();
                        out.error_message = Some(str_bytes(e.message));
                    }
                }
                Err(e) => out.error_code = e.error.code(),
            }
            out.group_id = group_id;
            out
        })
        .collect();
    response
}
