//! OffsetCommit: a group's consumed positions, durable in the coordinator before the answer.

use coordinator::acl::AclOperation;
use coordinator::CommittedOffset;
use group_coordinator::OffsetCommit;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use proto_compat::kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::clock;
use crate::connection::Session;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let authorizer = &broker.authorizer;
    let group_refused = !authorizer.group(session, AclOperation::Read, &request.group_id);
    // Kafka commits the partitions of the topics the principal may read and refuses the others.
    let refused: Vec<bool> = request
        .topics
        .iter()
        .map(|t| group_refused || !authorizer.topic(session, AclOperation::Read, &t.name))
        .collect();
    let commit_timestamp = clock::now_ms();
    let offsets = request
        .topics
        .iter()
        .zip(&refused)
        .filter(|(_, refused)| !**refused)
        .flat_map(|(topic, _)| {
            topic.partitions.iter().map(|p| {
                let offset = CommittedOffset {
                    offset: p.committed_offset,
                    // v6+ (KIP-320)
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p
                        .committed_metadata
                        .as_deref()
                        .unwrap_or_default()
                        .to_string(),
                    commit_timestamp,
                };
                (topic.name.to_string(), p.partition_index, offset)
            })
        })
        .collect::<Vec<_>>();
    let count = offsets.len();
    let commit = OffsetCommit {
        version,
        generation_id_or_member_epoch: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        offsets,
    };
    let codes: Vec<i16> = if group_refused {
        Vec::new()
    } else {
        match broker
            .groups
            .commit_offsets(&request.group_id, commit)
            .await
        {
            Ok(results) => results
                .iter()
                .map(|r| r.err().map_or(0, |e| e.code()))
                .collect(),
            Err(error) => vec![error.code(); count],
        }
    };
    let refusal = if group_refused {
        ResponseError::GroupAuthorizationFailed.code()
    } else {
        ResponseError::TopicAuthorizationFailed.code()
    };
    let mut codes = codes.into_iter();
    let mut response = OffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .zip(refused)
        .map(|(topic, refused)| {
            let mut out = OffsetCommitResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = OffsetCommitResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = if refused {
                        refusal
                    } else {
                        codes.next().unwrap_or_default()
                    };
                    partition
                })
                .collect();
            out.name = topic.name;
            out
        })
        .collect();
    response
}
