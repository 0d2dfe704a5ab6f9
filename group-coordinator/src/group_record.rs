//! A group's membership as the coordinator's metadata store keeps it, one record per group
//! with members, like Kafka's GroupMetadata records in `__consumer_offsets`: written when the
//! group settles (a classic rebalance completes, a consumer group's epochs or assignments
//! change), deleted when it empties, loaded by the gateway that coordinates the group next.
//! Deadlines are not kept: a loaded group gives every member a fresh session, as Kafka does.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::assignor::Assignment;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum GroupRecord {
    Classic(ClassicRecord),
    Consumer(ConsumerRecord),
}

impl GroupRecord {
    pub fn encode(&self) -> Bytes {
        serde_json::to_vec(self)
            .expect("group records serialize to JSON")
            .into()
    }

    pub fn decode(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

/// A classic group as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassicRecord {
    pub protocol_type: String,
    pub protocol_name: String,
    pub generation_id: i32,
    pub leader: String,
    pub members: Vec<ClassicMemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassicMemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// Its protocols with their subscriptions, in its order of preference.
    pub protocols: Vec<(String, HexBytes)>,
    pub assignment: HexBytes,
}

/// A consumer group (KIP-848): its epochs, target assignment and members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Id and partition count of the subscribed topics the target assignment was made for.
    pub subscribed_topics: BTreeMap<String, (Uuid, i32)>,
    /// The target assignment of each member, by member id.
    pub target: BTreeMap<String, Assignment>,
    pub members: Vec<ConsumerMemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: ReconciliationState,
    pub rebalance_timeout_ms: u64,
    pub server_assignor: Option<String>,
    pub subscribed_topic_names: BTreeSet<String>,
    #[serde(default)]
    pub subscribed_topic_regex: Option<String>,
    pub assigned: Assignment,
    pub pending_revocation: Assignment,
    /// A member that speaks the classic protocol (a group upgraded from it, or a classic
    /// consumer that joined the consumer group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<ClassicProtocolRecord>,
}

/// What a classic member of a consumer group said in its JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicProtocolRecord {
    pub session_timeout_ms: u64,
    /// Its protocols (client-side assignor names) with their subscriptions, in its order of
    /// preference.
    pub protocols: Vec<(String, HexBytes)>,
}

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconciliationState {
    /// Has its target assignment, or will at the next epoch.
    Stable,
    /// Must revoke partitions before it can move on.
    UnrevokedPartitions,
    /// Waits for partitions that their previous owners still hold.
    UnreleasedPartitions,
}

/// Opaque protocol bytes (subscriptions, assignments), as a hex string in the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Bytes);

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        serializer.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        let invalid = || serde::de::Error::custom("invalid hex bytes");
        if hex.len() % 2 != 0 {
            return Err(invalid());
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(invalid)
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(|bytes| HexBytes(bytes.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_their_encoding() {
        let topic = Uuid::new_v4();
        let assignment: Assignment = BTreeMap::from([(topic, BTreeSet::from([0, 2]))]);
        let records = [
            GroupRecord::Classic(ClassicRecord {
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                generation_id: 7,
                leader: "a-1".into(),
                members: vec![ClassicMemberRecord {
                    member_id: "a-1".into(),
                    group_instance_id: Some("a".into()),
                    client_id: "client".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![("range".into(), HexBytes(Bytes::from_static(&[0, 1, 0xab])))],
                    assignment: HexBytes(Bytes::from_static(&[0xff, 0])),
                }],
            }),
            GroupRecord::Consumer(ConsumerRecord {
                group_epoch: 4,
                assignment_epoch: 4,
                subscribed_topics: BTreeMap::from([("t".into(), (topic, 3))]),
                target: BTreeMap::from([("m".into(), assignment.clone())]),
                members: vec![ConsumerMemberRecord {
                    member_id: "m".into(),
                    instance_id: None,
                    rack_id: Some("r".into()),
                    client_id: "client".into(),
                    client_host: "/127.0.0.1".into(),
                    member_epoch: 4,
                    previous_member_epoch: 3,
                    state: ReconciliationState::UnrevokedPartitions,
                    rebalance_timeout_ms: 30_000,
                    server_assignor: Some("uniform".into()),
                    subscribed_topic_names: BTreeSet::from(["t".into()]),
                    subscribed_topic_regex: Some("^t-.*".into()),
                    assigned: assignment.clone(),
                    pending_revocation: Assignment::new(),
                    classic: None,
                }],
            }),
        ];
        for record in records {
            let encoded = record.encode();
            assert_eq!(GroupRecord::decode(&encoded).unwrap(), record);
        }
        let classic = String::from_utf8(
            GroupRecord::Classic(ClassicRecord {
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                generation_id: 1,
                leader: String::new(),
                members: Vec::new(),
            })
            .encode()
            .to_vec(),
        )
        .unwrap();
        assert!(classic.starts_with(r#"{"protocol":"classic""#), "{classic}");
    }

    /// etcd takes requests of 1.5 MiB: a group of a thousand members must fit well under it.
    #[test]
    fn a_thousand_member_group_fits_one_etcd_request() {
        const ETCD_REQUEST_BYTES: usize = 1536 * 1024;
        let topic = Uuid::new_v4();
        let consumer = GroupRecord::Consumer(ConsumerRecord {
            group_epoch: 1000,
            assignment_epoch: 1000,
            subscribed_topics: BTreeMap::from([("orders".into(), (topic, 1000))]),
            target: (0..1000)
                .map(|i| {
                    (
                        Uuid::new_v4().to_string(),
                        BTreeMap::from([(topic, BTreeSet::from([i]))]),
                    )
                })
                .collect(),
            members: (0..1000)
                .map(|i| ConsumerMemberRecord {
                    member_id: Uuid::new_v4().to_string(),
                    instance_id: None,
                    rack_id: None,
                    client_id: format!("consumer-{i}"),
                    client_host: "/10.0.0.1".into(),
                    member_epoch: 1000,
                    previous_member_epoch: 999,
                    state: ReconciliationState::Stable,
                    rebalance_timeout_ms: 300_000,
                    server_assignor: None,
                    subscribed_topic_names: BTreeSet::from(["orders".into()]),
                    subscribed_topic_regex: None,
                    assigned: BTreeMap::from([(topic, BTreeSet::from([i]))]),
                    pending_revocation: Assignment::new(),
                    classic: None,
                })
                .collect(),
        });
        // A subscription to one topic and an assignment of one partition: ~30 bytes each.
        let classic = GroupRecord::Classic(ClassicRecord {
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            generation_id: 1000,
            leader: "consumer-0".into(),
            members: (0..1000)
                .map(|i| ClassicMemberRecord {
                    member_id: format!("consumer-{i}-{}", Uuid::new_v4()),
                    group_instance_id: None,
                    client_id: format!("consumer-{i}"),
                    client_host: "/10.0.0.1".into(),
                    session_timeout_ms: 45_000,
                    rebalance_timeout_ms: 300_000,
                    protocols: vec![("range".into(), HexBytes(vec![0u8; 30].into()))],
                    assignment: HexBytes(vec![0u8; 30].into()),
                })
                .collect(),
        });
        for record in [consumer, classic] {
            let bytes = record.encode().len();
            assert!(bytes < ETCD_REQUEST_BYTES / 2, "{bytes} bytes");
        }
    }

    #[test]
    fn malformed_bytes_are_refused() {
        for hex in ["\"abc\"", "\"zz\"", "\"é0\""] {
            assert!(serde_json::from_str::<HexBytes>(hex).is_err(), "{hex}");
        }
        assert!(GroupRecord::decode(b"{\"protocol\":\"other\"}").is_err());
    }
}
