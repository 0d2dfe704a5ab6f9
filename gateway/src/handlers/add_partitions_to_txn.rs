//! AddPartitionsToTxn (v0-3, the producer's own request): the partitions join the
//! transactional id's transaction, which begins if none is under way. KIP-890's v4+ (brokers
//! verifying a partition with the coordinator) is not needed here: every broker reads the
//! transaction state itself when a transactional batch arrives.

use coordinator::acl::AclOperation;
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use proto_compat::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
};

use crate::broker::Broker;
use crate::connection::Session;
use crate::handlers::offset_commit::topic_results;
use crate::transaction_coordinator::{producer_step, ServedBy};

/// AddPartitionsToTxn v2 (KIP-588) knows PRODUCER_FENCED.
const FIRST_VERSION_WITH_PRODUCER_FENCED: i16 = 2;

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let id = request.v3_and_below_transactional_id.as_str();
    let authorizer = &broker.authorizer;
    let transactional_id_refused = !authorizer.transactional_id(session, AclOperation::Write, id);
    let refused = |topic: &str| !authorizer.topic(session, AclOperation::Write, topic);
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let unknown = |topic: &str, partition: i32| {
        broker
            .coordinator
            .topic(topic)
            .is_none_or(|meta| partition < 0 || partition >= meta.partitions)
    };
    // Nothing is added when a partition does not exist or may not be written (the others:
    // OPERATION_NOT_ATTEMPTED), as in Kafka.
    let any_unknown = partitions.iter().any(|(t, p)| refused(t) || unknown(t, *p));
    let outcome = if transactional_id_refused {
        Err(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if any_unknown {
        Err(ResponseError::OperationNotAttempted.code())
    } else {
        let (producer_id, epoch) = (
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
        );
        producer_step(
            broker,
            ServedBy::TransactionCoordinator,
            id,
            (version, FIRST_VERSION_WITH_PRODUCER_FENCED),
            |current, now| {
                transaction::add_partitions(current, producer_id, epoch, &partitions, now)
            },
        )
        .await
    };
    let code = |topic: &str, partition: i32| match outcome {
        Err(code) if transactional_id_refused => code,
        _ if any_unknown && refused(topic) => ResponseError::TopicAuthorizationFailed.code(),
        _ if any_unknown && unknown(topic, partition) => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        Ok(()) => 0,
        Err(code) => code,
    };
    let mut response = AddPartitionsToTxnResponse::default();
    response.results_by_topic_v3_and_below = topic_results(
        request.v3_and_below_topics,
        |t| (t.name, t.partitions),
        code,
        |name, results| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(name)
                .with_results_by_partition(
                    results
                        .into_iter()
                        .map(|(index, code)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(index)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        },
    );
    response
}
