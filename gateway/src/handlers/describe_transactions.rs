//! DescribeTransactions: the state of transactional ids this broker coordinates.

use coordinator::acl::AclOperation;
use std::collections::BTreeMap;

use group_coordinator::transaction::state_name;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use proto_compat::kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId,
};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;
use crate::transaction_coordinator::check_coordinator;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let mut out = TransactionState::default();
            out.producer_id = ProducerId(-1);
            out.producer_epoch = -1;
            out.transaction_start_time_ms = -1;
            out.transaction_state = str_bytes("");
            let authorized =
                broker
                    .authorizer
                    .transactional_id(session, AclOperation::Describe, &id);
            let described = if !authorized {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            } else {
                check_coordinator(broker, &id)
            }
            .and_then(|()| {
                broker
                    .coordinator
                    .transaction(&id)
                    .ok_or(ResponseError::TransactionalIdNotFound)
            });
            match described {
                Ok(txn) => {
                    out.transaction_state = str_bytes(state_name(txn.state));
                    out.transaction_timeout_ms = txn.timeout_ms;
                    out.transaction_start_time_ms = txn.txn_start_ms;
                    out.producer_id = ProducerId(txn.producer_id);
                    out.producer_epoch = txn.producer_epoch;
                    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                    for (topic, partition) in txn.partitions {
                        topics.entry(topic).or_default().push(partition);
                    }
                    out.topics = topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicData::default()
                                .with_topic(topic_name(topic))
                                .with_partitions(partitions)
                        })
                        .collect();
                }
                Err(error) => out.error_code = error.code(),
            }
            out.transactional_id = id;
            out
        })
        .collect();
    response
}
