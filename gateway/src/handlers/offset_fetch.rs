//! OffsetFetch: a group's committed offsets, of the listed partitions or of all (a null
//! topic list, v2+); one group (v1-7) or several (v8+). A partition without a committed
//! offset gets offset -1.

use std::collections::BTreeMap;

use coordinator::CommittedOffset;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use proto_compat::kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

/// (topic, [(partition, committed offset)])
type Fetched = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

pub fn handle(broker: &Broker, version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = request
            .groups
            .into_iter()
            .map(|group| {
                let topics = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let member_id = group.member_id.as_deref();
                let fetched = fetch(
                    broker,
                    &group.group_id,
                    member_id,
                    group.member_epoch,
                    topics,
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
            })
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
    let fetched = fetch(broker, &request.group_id, None, -1, requested.clone())
        .map_err(|error| (error, requested.unwrap_or_default()));
    let (fetched, error) = match fetched {
        Ok(fetched) => (fetched, None),
        // v2+ report it once for the group; v1 on every partition.
        Err((error, _)) if version >= 2 => (Vec::new(), Some(error)),
        Err((error, requested)) => {
            let failed = requested
                .into_iter()
                .map(|(topic, partitions)| {
                    (topic, partitions.into_iter().map(|p| (p, None)).collect())
                })
                .collect();
            (failed, Some(error))
        }
    };
    let partition_error = if version < 2 { error } else { None };
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
                    let (offset, leader_epoch, metadata) = fields(committed);
                    p.committed_offset = offset;
                    p.metadata = metadata;
                    // v5+ (KIP-320)
                    if version >= 5 {
                        p.committed_leader_epoch = leader_epoch;
                    }
                    p.error_code = partition_error.map_or(0, |e| e.code());
                    p
                })
                .collect();
            topic
        })
        .collect();
    if version >= 2 {
        response.error_code = error.map_or(0, |e| e.code());
    }
    response
}

fn fetch(
    broker: &Broker,
    group_id: &str,
    member_id: Option<&str>,
    member_epoch: i32,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, ResponseError> {
    let mut committed = broker
        .groups
        .fetch_offsets(group_id, member_id, member_epoch)?;
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|p| (p, committed.get(&(topic.clone(), p)).cloned()))
                    .collect();
                (topic, partitions)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                BTreeMap::new();
            for ((topic, partition), offset) in std::mem::take(&mut committed) {
                by_topic
                    .entry(topic)
                    .or_default()
                    .push((partition, Some(offset)));
            }
            by_topic.into_iter().collect()
        }
    })
}

/// (offset, leader epoch, metadata), Kafka's -1, -1 and "" for a partition without one.
fn fields(
    committed: Option<CommittedOffset>,
) -> (
    i64,
    i32,
    Option<proto_compat::kafka_protocol::protocol::StrBytes>,
) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, Some(str_bytes(c.metadata))),
        None => (-1, -1, Some(str_bytes(""))),
    }
}
