//! ListTransactions (v0-1): the transactional ids this broker coordinates, filtered by state,
//! producer id and (v1) how long their transaction has been running. v2's regular-expression
//! filter is not served.

use coordinator::acl::AclOperation;
use group_coordinator::transaction::state_name;
use proto_compat::kafka_protocol::messages::list_transactions_response::TransactionState;
use proto_compat::kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::transaction_coordinator::check_coordinator;

const STATES: [coordinator::TransactionState; 6] = [
    coordinator::TransactionState::Empty,
    coordinator::TransactionState::Ongoing,
    coordinator::TransactionState::PrepareCommit,
    coordinator::TransactionState::PrepareAbort,
    coordinator::TransactionState::CompleteCommit,
    coordinator::TransactionState::CompleteAbort,
];

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let wanted: Vec<&str> = request.state_filters.iter().map(|s| s.as_str()).collect();
    response.unknown_state_filters = request
        .state_filters
        .iter()
        .filter(|s| !STATES.iter().any(|state| state_name(*state) == s.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    response.transaction_states = broker
        .coordinator
        .transactions()
        .into_iter()
        .filter(|txn| check_coordinator(broker, &txn.transactional_id).is_ok())
        .filter(|txn| {
            broker.authorizer.transactional_id(
                session,
                AclOperation::Describe,
                &txn.transactional_id,
            )
        })
        .filter(|txn| wanted.is_empty() || wanted.contains(&state_name(txn.state)))
        .filter(|txn| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(txn.producer_id))
        })
        // v1: only transactions running longer than this (negative: no filter).
        .filter(|txn| {
            request.duration_filter < 0
                || (txn.txn_start_ms >= 0 && now - txn.txn_start_ms > request.duration_filter)
        })
        .map(|txn| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(txn.transactional_id)))
                .with_producer_id(ProducerId(txn.producer_id))
                .with_transaction_state(str_bytes(state_name(txn.state)))
        })
        .collect();
    response
}
