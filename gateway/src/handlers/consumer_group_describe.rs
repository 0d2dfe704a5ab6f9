//! ConsumerGroupDescribe (KIP-848): consumer-protocol groups with their members' current and
//! target assignments.

use coordinator::acl::{AclOperation, ResourceType};
use group_coordinator::assignor;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use proto_compat::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;

/// ConsumerGroupDescribe v1's member type of a consumer-protocol member.
const CONSUMER_MEMBER_TYPE: i8 = 1;

pub fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut response = ConsumerGroupDescribeResponse::default();
    response.groups = request
        .group_ids
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
            match broker.groups.consumer_group_describe(&group_id) {
                Ok(group) => {
                    out.group_state = str_bytes(group.state);
                    out.group_epoch = group.group_epoch;
                    out.assignment_epoch = group.assignment_epoch;
                    out.assignor_name = str_bytes(group.assignor_name);
                    out.members = group
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut member = Member::default();
                            member.member_id = str_bytes(m.member_id);
                            member.instance_id = m.instance_id.map(str_bytes);
                            member.rack_id = m.rack_id.map(str_bytes);
                            member.member_epoch = m.member_epoch;
                            member.client_id = str_bytes(m.client_id);
                            member.client_host = str_bytes(m.client_host);
                            member.subscribed_topic_names = m
                                .subscribed_topic_names
                                .into_iter()
                                .map(topic_name)
                                .collect();
                            member.subscribed_topic_regex = m.subscribed_topic_regex.map(str_bytes);
                            member.assignment = assignment(broker, m.assignment);
                            member.target_assignment = assignment(broker, m.target_assignment);
                            if version >= 1 {
                                member.member_type = CONSUMER_MEMBER_TYPE;
                            }
                            member
                        })
                        .collect();
                    if request.include_authorized_operations {
                        out.authorized_operations = broker.authorizer.authorized_operations(
                            session,
                            ResourceType::Group,
                            &group_id,
                        );
                    }
                }
                Err(e) => {
                    out.error_code = e.error.code();
                    if !e.message.is_empty() {
                        out.error_message = Some(str_bytes(e.message));
                    }
                }
            }
            out.group_id = group_id;
            out
        })
        .collect();
    response
}

fn assignment(broker: &Broker, partitions: assignor::Assignment) -> Assignment {
    let mut out = Assignment::default();
    out.topic_partitions = partitions
        .into_iter()
        .map(|(topic_id, partitions)| {
            let mut tp = TopicPartitions::default();
            tp.topic_id = topic_id;
            tp.topic_name = topic_name(
                broker
                    .coordinator
                    .topic_by_id(topic_id)
                    .map(|t| t.name)
                    .unwrap_or_default(),
            );
            tp.partitions = partitions.into_iter().collect();
            tp
        })
        .collect();
    out
}
