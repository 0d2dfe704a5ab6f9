//! TxnOffsetCommit, to the group's coordinator: offsets committed in a transaction, held in
//! the transaction's durable state and committed to the group together with its
//! CompleteCommit (an abort drops them).

use coordinator::acl::AclOperation;
use coordinator::PendingTxnOffset;
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use proto_compat::kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::handlers::offset_commit::{committed_offset, topic_results};
use crate::transaction_coordinator::{producer_step, ServedBy};

/// TxnOffsetCommit v3 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 3;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group = request.group_id.as_str();
    let authorizer = &broker.authorizer;
    // Refused as a whole without WRITE on the transactional id or READ on the group; else
    // the topics the principal may not read are refused and the others committed.
    let refusal =
        if !authorizer.transactional_id(session, AclOperation::Write, &request.transactional_id) {
            Some(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if !authorizer.group(session, AclOperation::Read, group) {
            Some(ResponseError::GroupAuthorizationFailed.code())
        } else {
            None
        };
    let refused = |topic: &str| !authorizer.topic(session, AclOperation::Read, topic);
    let commit_timestamp = now_ms();
    let unknown = |topic: &str, partition: i32| {
        broker
            .coordinator
            .topic(topic)
            .is_none_or(|meta| partition < 0 || partition >= meta.partitions)
    };
    let offsets: Vec<PendingTxnOffset> = request
        .topics
        .iter()
        .filter(|t| !refused(&t.name))
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| !unknown(&t.name, p.partition_index))
                .map(|p| PendingTxnOffset {
                    group: group.to_string(),
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: committed_offset(
                        p.committed_offset,
                        (version >= 2).then_some(p.committed_leader_epoch),
                        p.committed_metadata.as_deref(),
                        commit_timestamp,
                    ),
                })
        })
        .collect();
    let code = match refusal {
        Some(refusal) => refusal,
        None => {
            let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
            let outcome = producer_step(
                broker,
                ServedBy::GroupCoordinator(group),
                &request.transactional_id,
                (version, FIRST_VERSION_WITH_PRODUCER_FENCED),
                |current, now| {
                    transaction::add_offsets(current, producer_id, epoch, offsets.clone(), now)
                        .map(Some)
                },
            )
            .await;
            outcome.err().unwrap_or(0)
        }
    };
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = topic_results(
        request.topics,
        |t| {
            (
                t.name,
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        },
        |topic, partition| {
            if refusal.is_some() {
                code
            } else if refused(topic) {
                ResponseError::TopicAuthorizationFailed.code()
            } else if unknown(topic, partition) {
                ResponseError::UnknownTopicOrPartition.code()
            } else {
                code
            }
        },
        |name, results| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    results
                        .into_iter()
                        .map(|(index, code)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    response
}
