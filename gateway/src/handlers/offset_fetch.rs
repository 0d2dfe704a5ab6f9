//! OffsetFetch: a group's committed offsets, of the listed partitions or of all (a null
//! topic list, v2+); one group (v1-7) or several (v8+). A partition without a committed
//! offset gets offset -1. A consumer that requires stable offsets (v7+, read_committed ones)
//! gets UNSTABLE_OFFSET_COMMIT for a partition whose offset a transaction under way commits,
//! and asks again.

use coordinator::acl::AclOperation;
use std::collections::BTreeMap;

use coordinator::CommittedOffset;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use proto_compat::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use proto_compat::kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use proto_compat::kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::connection::Session;

/// (topic, [(partition, committed offset)]); Err for an offset a transaction under way
/// commits, when stable offsets were required.
type Fetched = Vec<(
    String,
    Vec<(i32, Result<Option<CommittedOffset>, ResponseError>)>,
)>;

pub fn handle(
    broker: &Broker,
    session: &Session,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = request
            .groups
            .into_iter()
            .map(|group| fetch_group(broker, session, request.require_stable, group))
            .collect();
        return response;
    }
    // v1 always lists its partitions; v2+ may ask for all with a null list.
    let requested: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let require_stable = version >= 7 && request.require_stable;
    let group_id = &request.group_id;
    let (fetched, error) = match fetch(
        broker,
        session,
        group_id,
        None,
        -1,
        requested.clone(),
        require_stable,
    ) {
        Ok(fetched) => (fetched, None),
        // v1 has no group error: every partition carries it.
        Err(error) if version < 2 => (unfetched(requested.unwrap_or_default()), Some(error)),
        Err(error) => (Vec::new(), Some(error)),
    };
    let error_code = error.map_or(0, |e| e.code());
    response.topics = fetched
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = topic_name(name);
            topic.partitions = partitions
                .into_iter()
                .map(|(index, committed)| {
                    let mut p = OffsetFetchResponsePartition::default();
                    p.partition_index = index;
                    let (offset, leader_epoch, metadata, unstable) = fields(committed);
                    p.error_code = unstable;
                    p.committed_offset = offset;
                    p.metadata = metadata;
                    // v5+ (KIP-320)
                    if version >= 5 {
                        p.committed_leader_epoch = leader_epoch;
                    }
                    if version < 2 && error.is_some() {
                        p.error_code = error_code;
                    }
                    p
                })
                .collect();
            topic
        })
        .collect();
    if version >= 2 {
        response.error_code = error_code;
    }
    response
}

/// One group of a v8+ request; a member of a consumer group (v9) sends its epoch.
fn fetch_group(
    broker: &Broker,
    session: &Session,
    require_stable: bool,
    group: OffsetFetchRequestGroup,
) -> OffsetFetchResponseGroup {
    let topics = group.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let member_id = group.member_id.as_deref();
    let fetched = fetch(
        broker,
        session,
        &group.group_id,
        member_id,
        group.member_epoch,
        topics,
        require_stable,
    );
    let mut out = OffsetFetchResponseGroup::default();
    match fetched {
        Ok(fetched) => {
            out.topics = fetched
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = OffsetFetchResponseTopics::default();
                    topic.name = topic_name(name);
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(index, committed)| {
                            let mut p = OffsetFetchResponsePartitions::default();
                            p.partition_index = index;
                            (
                                p.committed_offset,
                                p.committed_leader_epoch,
                                p.metadata,
                                p.error_code,
                            ) = fields(committed);
                            p
                        })
                        .collect();
                    topic
                })
                .collect()
        }
        Err(error) => out.error_code = error.code(),
    }
    out.group_id = group.group_id;
    out
}

/// Kafka's rules: the group needs DESCRIBE, and so does each topic, whose partitions are
/// refused when named and left out of a listing of all.
fn fetch(
    broker: &Broker,
    session: &Session,
    group_id: &str,
    member_id: Option<&str>,
    member_epoch: i32,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Fetched, ResponseError> {
    let authorizer = &broker.authorizer;
    if !authorizer.group(session, AclOperation::Describe, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let may_describe = |topic: &str| authorizer.topic(session, AclOperation::Describe, topic);
    let committed = broker
        .groups
        .fetch_offsets(group_id, member_id, member_epoch)?;
    let unstable = if require_stable {
        broker.coordinator.pending_transactional_offsets(group_id)
    } else {
        Default::default()
    };
    let offset = |topic: &str, partition: i32, committed: Option<CommittedOffset>| {
        if !may_describe(topic) {
            Err(ResponseError::TopicAuthorizationFailed)
        } else if unstable.contains(&(topic.to_string(), partition)) {
            Err(ResponseError::UnstableOffsetCommit)
        } else {
            Ok(committed)
        }
    };
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|p| {
                        (
                            p,
                            offset(&topic, p, committed.get(&(topic.clone(), p)).cloned()),
                        )
                    })
                    .collect();
                (topic, partitions)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<_>> = BTreeMap::new();
            for ((topic, partition), committed) in committed {
                if !may_describe(&topic) {
                    continue;
                }
                let fetched = offset(&topic, partition, Some(committed));
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((partition, fetched));
            }
            by_topic.into_iter().collect()
        }
    })
}

/// The requested partitions, none of them fetched.
fn unfetched(requested: Vec<(String, Vec<i32>)>) -> Fetched {
    requested
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions.into_iter().map(|p| (p, Ok(None))).collect();
            (topic, partitions)
        })
        .collect()
}

/// (offset, leader epoch, metadata, error code), Kafka's -1, -1 and "" for a partition
/// without one or whose offset is not stable.
fn fields(
    committed: Result<Option<CommittedOffset>, ResponseError>,
) -> (i64, i32, Option<StrBytes>, i16) {
    match committed {
        Ok(Some(c)) => (c.offset, c.leader_epoch, Some(str_bytes(c.metadata)), 0),
        Ok(None) => (-1, -1, Some(str_bytes("")), 0),
        Err(e) => (-1, -1, Some(str_bytes("")), e.code()),
    }
}
