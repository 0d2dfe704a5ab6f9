//! TxnOffsetCommit, to the group's coordinator: offsets committed in a transaction, held in
//! the transaction's durable state and committed to the group together with its
//! CompleteCommit (an abort drops them).

use coordinator::acl::AclOperation;
use coordinator::{CommittedOffset, PendingTxnOffset, TransactionWrite};
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use proto_compat::kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;

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
    let now = now_ms();
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
                    offset: CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_deref()
                            .unwrap_or_default()
                            .to_string(),
                        commit_timestamp: now,
                    },
                })
        })
        .collect();
    let is_coordinator = broker
        .coordinator
        .group_coordinator(group)
        .is_some_and(|b| b.broker_id == broker.broker_id);
    let code = if let Some(refusal) = refusal {
        refusal
    } else if !is_coordinator {
        ResponseError::NotCoordinator.code()
    } else {
        let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
        let outcome = broker
            .coordinator
            .update_transaction(
                &request.transactional_id,
                |current| match transaction::add_offsets(
                    current,
                    producer_id,
                    epoch,
                    offsets.clone(),
                    now,
                ) {
                    Ok(next) => (Ok(()), Some(TransactionWrite::Put(next))),
                    Err(e) => (Err(e), None),
                },
            )
            .await;
        match outcome {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => e.error_code(version, FIRST_VERSION_WITH_PRODUCER_FENCED),
            Err(e) => e.error_code(),
        }
    };
    let mut response = TxnOffsetCommitResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut out = TxnOffsetCommitResponseTopic::default();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = TxnOffsetCommitResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = if refusal.is_some() {
                        code
                    } else if refused(&topic.name) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else if unknown(&topic.name, p.partition_index) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        code
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
