//! ElectLeaders: Kafka's preferred and unclean leader elections. A preferred election hands
//! leadership back to the broker a partition was reassigned to; an unclean one gives a
//! partition whose leader is gone a live leader (every broker holds every partition's
//! whole log, so nothing is lost either way). The answer comes once the elections are done,
//! or at the request's timeout.

use coordinator::acl::AclOperation;
use std::time::Duration;

use coordinator::CoordinatorError;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use proto_compat::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use tokio::time::Instant;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Where an election is to leave a partition's leadership.
#[derive(Clone, Copy)]
enum Outcome {
    /// Led by this broker.
    LedBy(i32),
    /// Led by a live broker.
    Live,
}

pub async fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    if !broker.authorizer.cluster(session, AclOperation::Alter) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    // v0 has no election type: it is a preferred election.
    let election_type = if version >= 1 {
        request.election_type
    } else {
        PREFERRED
    };
    if election_type != PREFERRED && election_type != UNCLEAN {
        response.error_code = ResponseError::InvalidRequest.code();
        return response;
    }
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let coordinator = &broker.coordinator;
    // All partitions when none are named; then only those an election moved are listed.
    let every_partition = request.topic_partitions.is_none();
    let partitions: Vec<(String, i32)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect(),
        None => coordinator
            .topics()
            .into_iter()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p)))
            .collect(),
    };

    let mut started = Vec::new();
    for (topic, partition) in partitions {
        let elected = match coordinator.topic(&topic) {
            None => Err(CoordinatorError::UnknownTopicOrPartition(format!(
                "topic {topic} does not exist"
            ))),
            Some(meta) => elect(broker, election_type, meta.topic_id, partition)
                .await
                .map(|outcome| (meta.topic_id, outcome)),
        };
        if every_partition && matches!(elected, Err(CoordinatorError::ElectionNotNeeded(_))) {
            continue;
        }
        started.push((topic, partition, elected));
    }

    let done = |topic_id: Uuid, partition: i32, outcome: Outcome| {
        let leader = coordinator.leader(topic_id, partition);
        match outcome {
            Outcome::LedBy(broker_id) => leader.is_some_and(|l| l.broker_id == broker_id),
            Outcome::Live => leader.is_some_and(|l| {
                coordinator
                    .brokers()
                    .iter()
                    .any(|b| b.broker_id == l.broker_id)
            }),
        }
    };
    let all_done = || {
        started.iter().all(|(_, partition, elected)| match elected {
            Ok((topic_id, outcome)) => done(*topic_id, *partition, *outcome),
            Err(_) => true,
        })
    };
    let mut changes = coordinator.changes();
    let _ = tokio::time::timeout_at(deadline, async {
        while !all_done() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
    .await;

    for (topic, partition, elected) in started {
        let mut result = PartitionResult::default();
        result.partition_id = partition;
        match elected {
            Ok((topic_id, outcome)) if !done(topic_id, partition, outcome) => {
                result.error_code = ResponseError::RequestTimedOut.code();
                result.error_message = Some(str_bytes("the election did not complete in time"));
            }
            Ok(_) => {}
            Err(e) => {
                result.error_code = e.error_code();
                result.error_message = Some(str_bytes(e.to_string()));
            }
        }
        let topic = topic_name(topic);
        match response
            .replica_election_results
            .iter_mut()
            .find(|r| r.topic == topic)
        {
            Some(results) => results.partition_result.push(result),
            None => {
                let mut results = ReplicaElectionResult::default();
                results.topic = topic;
                results.partition_result.push(result);
                response.replica_election_results.push(results);
            }
        }
    }
    response
}

async fn elect(
    broker: &Broker,
    election_type: i8,
    topic_id: Uuid,
    partition: i32,
) -> Result<Outcome, CoordinatorError> {
    let coordinator = &broker.coordinator;
    if election_type == UNCLEAN {
        coordinator.elect_leader(topic_id, partition).await?;
        Ok(Outcome::Live)
    } else {
        let preferred = coordinator
            .elect_preferred_leader(topic_id, partition)
            .await?;
        Ok(Outcome::LedBy(preferred))
    }
}
