//! One module per Kafka API family; `dispatch` routes a decoded request to its handler.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_client_quotas;
mod alter_configs;
mod alter_partition_reassignments;
mod alter_user_scram_credentials;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_client_quotas;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_producers;
mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
pub mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

#[cfg(test)]
mod authorization_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use proto_compat::kafka_protocol::protocol::StrBytes;
use proto_compat::request::Request;

use crate::broker::Broker;
use crate::connection::Session;
use crate::fetch_memory::Reservation;
use crate::quotas::{set_throttle_time, Client, QuotaType};
use crate::sasl::Authenticator;

/// The response to a request, or what is left to compute it: `Some(None)` when the API sends
/// none (acks=0 produce), `None` when no handler serves it (decode_request only lets
/// supported APIs through).
pub type Deferred = BoxFuture<'static, Option<Option<Reply>>>;

/// A response body, and the fetch memory its record sets hold until it has been written.
pub struct Reply {
    pub body: ResponseKind,
    pub memory: Option<Reservation>,
}

impl From<ResponseKind> for Reply {
    fn from(body: ResponseKind) -> Self {
        Reply { body, memory: None }
    }
}

/// Runs the part of `request` that must follow request order on its connection and returns
/// the rest, which may overlap later requests. Kafka handles a connection's requests one at
/// a time, so state changes happen in the order sent (pipelined produces append in order);
/// only waiting for acks=all commits and fetches (read-only, long-polling) run alongside.
///
/// Client quotas are checked here: a client over one gets its response at once with its
/// `throttle_time_ms`, and its connection is muted that long (KIP-219). `size` is the
/// request's size in bytes, which the produce quota counts (as Kafka does).
pub async fn prepare(
    broker: &Arc<Broker>,
    session: &Session,
    request: Request,
    size: usize,
) -> Deferred {
    let started = Instant::now();
    let Request {
        header,
        api_key,
        body,
    } = request;
    let version = header.request_api_version;
    let client_id = header.client_id.clone().unwrap_or_default();
    let client = Client::new(&session.principal, &client_id);
    match body {
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let pending = produce::append_all(broker, session, version, r).await;
            let mut throttle = broker
                .quotas
                .record(QuotaType::Produce, client, size as f64);
            // An acks=0 produce has no response to carry a request throttle (Kafka's rule).
            if acks != 0 {
                throttle = throttle.max(request_throttle(broker, client, started));
            }
            session.throttle.mute_for(throttle);
            Box::pin(async move {
                let response = pending.response().await;
                Some(response.map(|r| throttled(ResponseKind::Produce(r), throttle).into()))
            })
        }
        RequestKind::Fetch(mut r) => {
            // A fetch larger than the quota allows in a whole window would be throttled
            // whatever the client did before: Kafka caps it.
            if let Some(most) = broker.quotas.max_value_in_window(QuotaType::Fetch, client) {
                let most = most.min(i32::MAX as f64) as i32;
                if r.max_bytes <= 0 || r.max_bytes > most {
                    r.max_bytes = most;
                }
                r.min_bytes = r.min_bytes.min(r.max_bytes);
            }
            let broker = broker.clone();
            let session = session.clone();
            Box::pin(async move {
                let client = Client::new(&session.principal, &client_id);
                let (response, memory) = fetch::handle(&broker, &session, version, r).await;
                // A fetch's handling is mostly waiting (long polls, reads): only a client
                // already over its request quota is throttled for it.
                let request = broker.quotas.record(QuotaType::Request, client, 0.0);
                let bytes = fetch::records_size(&response);
                let fetch = if request.is_zero() {
                    let bytes = bytes as f64;
                    broker
                        .quotas
                        .record_unless_throttled(QuotaType::Fetch, client, bytes)
                } else {
                    Duration::ZERO
                };
                let throttle = request.max(fetch);
                if throttle.is_zero() {
                    let body = ResponseKind::Fetch(response);
                    return Some(Some(Reply { body, memory }));
                }
                session.throttle.mute_for(throttle);
                // Kafka answers a throttled fetch with no records.
                drop(memory);
                let empty = fetch::throttled_response(&response);
                Some(Some(throttled(ResponseKind::Fetch(empty), throttle).into()))
            })
        }
        body => {
            let request = Request {
                header,
                api_key,
                body,
            };
            let mut reply = dispatch(broker, session, request).await;
            if !exempt_from_request_quota(api_key) {
                let throttle = request_throttle(broker, client, started);
                session.throttle.mute_for(throttle);
                if let Some(Some(body)) = reply.as_mut() {
                    set_throttle_time(body, throttle);
                }
            }
            Box::pin(std::future::ready(reply.map(|r| r.map(Reply::from))))
        }
    }
}

/// Records the time a request took to handle against its client's request quota, as a
/// percentage of one thread's time (Kafka's ClientRequestQuotaManager).
fn request_throttle(broker: &Broker, client: Client<'_>, started: Instant) -> Duration {
    let percent_seconds = started.elapsed().as_secs_f64() * 100.0;
    broker
        .quotas
        .record(QuotaType::Request, client, percent_seconds)
}

/// Brokers' requests to each other are not held to client quotas (Kafka's cluster actions).
fn exempt_from_request_quota(api_key: ApiKey) -> bool {
    api_key == ApiKey::WriteTxnMarkers
}

fn throttled(mut body: ResponseKind, throttle: Duration) -> ResponseKind {
    set_throttle_time(&mut body, throttle);
    body
}

/// The response to a request that is handled entirely in request order.
async fn dispatch(
    broker: &Arc<Broker>,
    session: &Session,
    request: Request,
) -> Option<Option<ResponseKind>> {
    let version = request.header.request_api_version;
    let response = match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, session, version, r).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, session, version, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, session, version, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, session, version, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, session, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, session, version, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle_alter(broker, session, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            alter_configs::handle_incremental(broker, session, r).await,
        ),
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, session, version, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(broker, session, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(broker, session, r),
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, session, r))
        }
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(
            init_producer_id::handle(broker, session, version, r).await,
        ),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, session, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, session, version, r))
        }
        RequestKind::JoinGroup(r) => {
            let response =
                join_group::handle(broker, session, version, client_id(&request.header), r);
            ResponseKind::JoinGroup(response.await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, session, version, r).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, session, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, session, version, r))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, session, version, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, session, version, r))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(list_groups::handle(broker, session, version, r))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, session, version, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, session, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, session, r).await)
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = client_id(&request.header);
            let response =
                consumer_group_heartbeat::handle(broker, session, version, client_id, r).await;
            ResponseKind::ConsumerGroupHeartbeat(response)
        }
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            consumer_group_describe::handle(broker, session, version, r),
        ),
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            describe_user_scram_credentials::handle(broker, session, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            alter_user_scram_credentials::handle(broker, session, r).await,
        ),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(describe_client_quotas::handle(broker, session, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(alter_client_quotas::handle(broker, session, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            add_partitions_to_txn::handle(broker, session, version, r).await,
        ),
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(
            add_offsets_to_txn::handle(broker, session, version, r).await,
        ),
        RequestKind::EndTxn(r) => {
            ResponseKind::EndTxn(end_txn::handle(broker, session, version, r).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(broker, session, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(broker, session, r))
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::handle(broker, session, r))
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(list_transactions::handle(broker, session, r))
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(create_acls::handle(broker, session, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(describe_acls::handle(broker, session, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(delete_acls::handle(broker, session, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
            txn_offset_commit::handle(broker, session, version, r).await,
        ),
        _ => return None,
    };
    Some(Some(response))
}

pub use sasl_authenticate::bare_token as sasl_bare_token;

/// What a SASL listener's connection does with a request.
pub enum SaslGate {
    /// SaslHandshake or SaslAuthenticate, answered; `close` after the answer is written.
    Answered { response: ResponseKind, close: bool },
    /// A request the connection may make now, to be handled as usual.
    Pass(Request),
    /// A request a connection that has not authenticated (or whose session expired) may not
    /// make: Kafka closes the connection without an answer.
    Refused(String),
}

/// Runs the SASL APIs, and keeps every other API but ApiVersions from a connection until
/// it has authenticated and while its session lasts.
pub async fn sasl_gate(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &mut Session,
    request: Request,
) -> SaslGate {
    let version = request.header.request_api_version;
    match request.body {
        RequestKind::SaslHandshake(r) => {
            let (response, close) =
                sasl_handshake::handle(authenticator, &broker.config.sasl, version, r);
            SaslGate::Answered {
                response: ResponseKind::SaslHandshake(response),
                close,
            }
        }
        RequestKind::SaslAuthenticate(r) => {
            let (response, close) =
                sasl_authenticate::handle(broker, authenticator, session, version, r).await;
            SaslGate::Answered {
                response: ResponseKind::SaslAuthenticate(response),
                close,
            }
        }
        RequestKind::ApiVersions(_) => SaslGate::Pass(request),
        _ => {
            let now = std::time::Instant::now();
            if authenticator.user(now).is_some() {
                SaslGate::Pass(request)
            } else if authenticator.expired(now) {
                SaslGate::Refused(format!(
                    "{:?} after the SASL session expired (connections.max.reauth.ms) without re-authentication",
                    request.api_key
                ))
            } else {
                SaslGate::Refused(format!(
                    "unexpected {:?} request before SASL authentication",
                    request.api_key
                ))
            }
        }
    }
}

fn client_id(header: &RequestHeader) -> &str {
    header.client_id.as_deref().unwrap_or_default()
}

fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

/// Kafka's check of the leader epoch a client believes in (KIP-320): older is fenced,
/// newer means this broker's metadata is behind.
fn check_leader_epoch(requested: i32, current: i32) -> Option<i16> {
    if requested < 0 || requested == current {
        None
    } else if requested < current {
        Some(ResponseError::FencedLeaderEpoch.code())
    } else {
        Some(ResponseError::UnknownLeaderEpoch.code())
    }
}
