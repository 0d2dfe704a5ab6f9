//! OffsetCommit: a group's consumed positions, durable in the coordinator before the answer.
//! Also the per-partition parts the other offset requests (TxnOffsetCommit, OffsetDelete)
//! share with it.

use coordinator::acl::AclOperation;
use coordinator::CommittedOffset;
use group_coordinator::OffsetCommit;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use proto_compat::kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, TopicName,
};

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
    let refused =
        |topic: &str| group_refused || !authorizer.topic(session, AclOperation::Read, topic);
    let commit_timestamp = clock::now_ms();
    let offsets = request
        .topics
        .iter()
        .filter(|topic| !refused(&topic.name))
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                let offset = committed_offset(
                    p.committed_offset,
                    // v6+ (KIP-320)
                    (version >= 6).then_some(p.committed_leader_epoch),
                    p.committed_metadata.as_deref(),
                    commit_timestamp,
                );
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
    response.topics = topic_results(
        request.topics,
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
        |topic, _| {
            if refused(topic) {
                refusal
            } else {
                codes.next().unwrap_or_default()
            }
        },
        |name, results| {
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    results
                        .into_iter()
                        .map(|(index, code)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    response
}

/// A partition's committed offset as an offset request carries it (no leader epoch: -1).
pub fn committed_offset(
    offset: i64,
    leader_epoch: Option<i32>,
    metadata: Option<&str>,
    commit_timestamp: i64,
) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: leader_epoch.unwrap_or(-1),
        metadata: metadata.unwrap_or_default().to_string(),
        commit_timestamp,
    }
}

/// A response's topics in the request's order: `split` gives a request topic's name and
/// partition indexes, `code` answers each partition (in request order), `topic` builds the
/// response topic from the name and the (partition index, error code) pairs.
pub fn topic_results<T, R>(
    topics: Vec<T>,
    split: impl Fn(T) -> (TopicName, Vec<i32>),
    mut code: impl FnMut(&str, i32) -> i16,
    topic: impl Fn(TopicName, Vec<(i32, i16)>) -> R,
) -> Vec<R> {
    topics
        .into_iter()
        .map(|t| {
            let (name, partitions) = split(t);
            let results = partitions
                .into_iter()
                .map(|p| (p, code(&name, p)))
                .collect();
            topic(name, results)
        })
        .collect()
}
