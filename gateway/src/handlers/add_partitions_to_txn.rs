//! AddPartitionsToTxn (v0-3, the producer's own request): the partitions join the
//! transactional id's transaction, which begins if none is under way. KIP-890's v4+ (brokers
//! verifying a partition with the coordinator) is not needed here: every broker reads the
//! transaction state itself when a transactional batch arrives.

use coordinator::acl::AclOperation;
use coordinator::TransactionWrite;
use group_coordinator::transaction;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use proto_compat::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
};

use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::transaction_coordinator::check_coordinator;

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
    // Nothing is added when a partition does not exist (the others: OPERATION_NOT_ATTEMPTED).
    // Kafka adds none of the partitions when one is unknown or may not be written.
    let any_unknown = partitions.iter().any(|(t, p)| refused(t) || unknown(t, *p));
    let outcome: Result<(), i16> = if transactional_id_refused {
        Err(ResponseError::TransactionalIdAuthorizationFailed.code())
    } else if any_unknown {
        Err(ResponseError::OperationNotAttempted.code())
    } else {
        match check_coordinator(broker, id) {
            Err(e) => Err(e.code()),
            Ok(()) => {
                let now = now_ms();
                let (producer_id, epoch) = (
                    request.v3_and_below_producer_id.0,
                    request.v3_and_below_producer_epoch,
                );
                broker
                    .coordinator
                    .update_transaction(id, |current| {
                        match transaction::add_partitions(
                            current,
                            producer_id,
                            epoch,
                            &partitions,
                            now,
                        ) {
                            Ok(next) => (Ok(()), next.map(TransactionWrite::Put)),
                            Err(e) => (Err(e), None),
                        }
                    })
                    .await
                    .map_err(|e| e.error_code())
                    .and_then(|r| {
                        r.map_err(|e| e.error_code(version, FIRST_VERSION_WITH_PRODUCER_FENCED))
                    })
            }
        }
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
    response.results_by_topic_v3_and_below = request
        .v3_and_below_topics
        .into_iter()
        .map(|topic| {
            let mut result = AddPartitionsToTxnTopicResult::default();
            result.results_by_partition = topic
                .partitions
                .iter()
                .map(|&p| {
                    let mut partition = AddPartitionsToTxnPartitionResult::default();
                    partition.partition_index = p;
                    partition.partition_error_code = code(&topic.name, p);
                    partition
                })
                .collect();
            result.name = topic.name;
            result
        })
        .collect();
    response
}
