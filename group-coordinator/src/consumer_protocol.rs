//! Kafka's consumer protocol bytes, which classic consumers exchange through JoinGroup and
//! SyncGroup: the subscription (a member's topics and the partitions it owns) and the
//! assignment. The coordinator reads them for OffsetDelete and to serve classic members in a
//! consumer group, and writes assignments for the latter.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto_compat::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use proto_compat::kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use proto_compat::kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

/// The protocol type of Kafka consumers, whose subscriptions the coordinator can read.
pub const PROTOCOL_TYPE: &str = "consumer";

/// A member's subscription: its topics and the partitions it owns (v1+; none before).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub owned_partitions: Vec<(String, Vec<i32>)>,
}

/// Reads a subscription; None if the bytes are not one.
pub fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let mut metadata = metadata.clone();
    if metadata.len() < 2 {
        return None;
    }
    let version = metadata.get_i16();
    // Newer versions only add fields: read them as the newest known one.
    let max = ConsumerProtocolSubscription::VERSIONS.max;
    let subscription =
        ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, max)).ok()?;
    Some(Subscription {
        topics: subscription.topics.iter().map(|t| t.to_string()).collect(),
        owned_partitions: subscription
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic.to_string(), tp.partitions))
            .collect(),
    })
}

/// Reads an assignment as (topic, partitions); empty if the bytes are not one (a member
/// that has none yet).
pub fn decode_assignment(assignment: &Bytes) -> Vec<(String, Vec<i32>)> {
    let mut bytes = assignment.clone();
    if bytes.len() < 2 {
        return Vec::new();
    }
    let version = bytes.get_i16();
    let max = ConsumerProtocolAssignment::VERSIONS.max;
    ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, max))
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.to_string(), tp.partitions))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes an assignment of (topic, partitions) as version 0, which every client reads.
pub fn encode_assignment(partitions: Vec<(String, Vec<i32>)>) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .into_iter()
            .map(|(topic, partitions)| {
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    assignment
        .encode(&mut bytes, 0)
        .expect("a version 0 assignment encodes");
    bytes.freeze()
}

/// A subscription as a client writes it (version 1, with the partitions it owns).
#[cfg(test)]
pub fn encode_subscription(topics: &[&str], owned: Vec<(String, Vec<i32>)>) -> Bytes {
    use proto_compat::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        )
        .with_owned_partitions(
            owned
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let mut bytes = BytesMut::new();
    bytes.put_i16(1);
    subscription.encode(&mut bytes, 1).unwrap();
    bytes.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip_and_garbage_reads_as_none() {
        let partitions = vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])];
        let bytes = encode_assignment(partitions.clone());
        assert_eq!(decode_assignment(&bytes), partitions);
        assert!(decode_assignment(&Bytes::new()).is_empty());
        assert_eq!(decode_subscription(&Bytes::from_static(b"\x00")), None);
        let subscription = encode_subscription(&["a"], vec![("a".to_string(), vec![1])]);
        assert_eq!(
            decode_subscription(&subscription),
            Some(Subscription {
                topics: vec!["a".to_string()],
                owned_partitions: vec![("a".to_string(), vec![1])],
            })
        );
    }
}
