//! The key layout of the metadata store: every key the coordinator writes, typed, with its
//! JSON value. A mutation is a [`Changes`]: the same list is committed to the store and then
//! applied to the in-memory state, and loading applies every stored record the same way.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::metadata_store::Txn;
use crate::{
    BrokerInfo, ChunkMeta, CommittedOffset, PartitionLeader, ProducerState, SegmentMeta, TopicMeta,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
    /// `cluster/id`
    ClusterId,
    /// `producer_ids/next`: the first producer id not yet reserved.
    NextProducerId,
    /// `topics/{name}`
    Topic(String),
    /// `partitions/{topic_id}/{p}/leader`
    Leader(Uuid, i32),
    /// `partitions/{topic_id}/{p}/log_start`
    LogStart(Uuid, i32),
    /// `partitions/{topic_id}/{p}/chunks/{base_offset:020}`
    Chunk(Uuid, i32, i64),
    /// `partitions/{topic_id}/{p}/segments/{base_offset:020}`
    Segment(Uuid, i32, i64),
    /// `partitions/{topic_id}/{p}/producers/{producer_id}`
    Producer(Uuid, i32, i64),
    /// `groups/{group}/offsets/{topic}/{p}`, the group id escaped (it may contain `/`).
    Offset(String, String, i32),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::ClusterId => f.write_str("cluster/id"),
            Key::NextProducerId => f.write_str("producer_ids/next"),
            Key::Topic(name) => write!(f, "topics/{name}"),
            Key::Leader(t, p) => write!(f, "partitions/{t}/{p}/leader"),
            Key::LogStart(t, p) => write!(f, "partitions/{t}/{p}/log_start"),
            Key::Chunk(t, p, base) => write!(f, "partitions/{t}/{p}/chunks/{base:020}"),
            Key::Segment(t, p, base) => write!(f, "partitions/{t}/{p}/segments/{base:020}"),
            Key::Producer(t, p, id) => write!(f, "partitions/{t}/{p}/producers/{id}"),
            Key::Offset(group, topic, p) => {
                write!(f, "groups/{}/offsets/{topic}/{p}", escape(group))
            }
        }
    }
}

impl Key {
    fn parse(key: &str) -> Option<Key> {
        let parts: Vec<&str> = key.split('/').collect();
        Some(match parts[..] {
            ["cluster", "id"] => Key::ClusterId,
            ["producer_ids", "next"] => Key::NextProducerId,
            ["topics", name] => Key::Topic(name.to_string()),
            ["groups", group, "offsets", topic, p] => {
                Key::Offset(unescape(group)?, topic.to_string(), p.parse().ok()?)
            }
            ["partitions", t, p, ref rest @ ..] => {
                let (t, p) = (t.parse().ok()?, p.parse().ok()?);
                match rest {
                    ["leader"] => Key::Leader(t, p),
                    ["log_start"] => Key::LogStart(t, p),
                    ["chunks", base] => Key::Chunk(t, p, base.parse().ok()?),
                    ["segments", base] => Key::Segment(t, p, base.parse().ok()?),
                    ["producers", id] => Key::Producer(t, p, id.parse().ok()?),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// Group ids are arbitrary strings: `%` and `/` are percent-encoded so the key splits on `/`.
fn escape(group: &str) -> String {
    group.replace('%', "%25").replace('/', "%2F")
}

fn unescape(escaped: &str) -> Option<String> {
    let unescaped = escaped.replace("%2F", "/").replace("%25", "%");
    // Only canonical encodings: every key has exactly one spelling.
    (escape(&unescaped) == escaped).then_some(unescaped)
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    ClusterId(String),
    NextProducerId(i64),
    Topic(TopicMeta),
    Leader(Uuid, i32, PartitionLeader),
    LogStart(Uuid, i32, i64),
    Chunk(Uuid, i32, ChunkMeta),
    Segment(Uuid, i32, SegmentMeta),
    Producer(Uuid, i32, ProducerState),
    /// Group, topic, partition.
    Offset(String, String, i32, CommittedOffset),
}

impl Record {
    pub(super) fn key(&self) -> Key {
        match self {
            Record::ClusterId(_) => Key::ClusterId,
            Record::NextProducerId(_) => Key::NextProducerId,
            Record::Topic(meta) => Key::Topic(meta.name.clone()),
            Record::Leader(t, p, _) => Key::Leader(*t, *p),
            Record::LogStart(t, p, _) => Key::LogStart(*t, *p),
            Record::Chunk(t, p, chunk) => Key::Chunk(*t, *p, chunk.base_offset),
            Record::Segment(t, p, segment) => Key::Segment(*t, *p, segment.base_offset),
            Record::Producer(t, p, producer) => Key::Producer(*t, *p, producer.producer_id),
            Record::Offset(group, topic, p, _) => Key::Offset(group.clone(), topic.clone(), *p),
        }
    }

    fn value(&self) -> Bytes {
        fn json(value: &impl Serialize) -> Bytes {
            serde_json::to_vec(value)
                .expect("metadata values serialize to JSON")
                .into()
        }
        match self {
            Record::ClusterId(id) => json(id),
            Record::NextProducerId(id) => json(id),
            Record::Topic(meta) => json(meta),
            Record::Leader(_, _, leader) => json(leader),
            Record::LogStart(_, _, offset) => json(offset),
            Record::Chunk(_, _, chunk) => json(chunk),
            Record::Segment(_, _, segment) => json(segment),
            Record::Producer(_, _, producer) => json(producer),
            Record::Offset(_, _, _, offset) => json(offset),
        }
    }

    /// Decodes a stored key and value; Err describes what is wrong with them.
    pub(super) fn decode(key: &str, value: &[u8]) -> Result<Record, String> {
        let parsed = Key::parse(key).ok_or_else(|| format!("unknown key {key}"))?;
        let bad = |e: serde_json::Error| format!("bad value of {key}: {e}");
        let record = match parsed {
            Key::ClusterId => Record::ClusterId(serde_json::from_slice(value).map_err(bad)?),
            Key::NextProducerId => {
                Record::NextProducerId(serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Topic(_) => Record::Topic(serde_json::from_slice(value).map_err(bad)?),
            Key::Leader(t, p) => Record::Leader(t, p, serde_json::from_slice(value).map_err(bad)?),
            Key::LogStart(t, p) => {
                Record::LogStart(t, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Chunk(t, p, _) => Record::Chunk(t, p, serde_json::from_slice(value).map_err(bad)?),
            Key::Segment(t, p, _) => {
                Record::Segment(t, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Producer(t, p, _) => {
                Record::Producer(t, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Offset(group, topic, p) => {
                Record::Offset(group, topic, p, serde_json::from_slice(value).map_err(bad)?)
            }
        };
        // The key repeats part of the value (a name, an offset, an id): they must agree.
        if record.key().to_string() != key {
            return Err(format!("key {key} does not match its value"));
        }
        Ok(record)
    }
}

/// The broker registry is not persisted (brokers register again after a restart), but it
/// changes together with the leadership its changes cause.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum BrokerChange {
    Register(BrokerInfo),
    Unregister(i32),
}

/// One mutation of the coordinator's state: one store transaction. Keys are unique in it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Changes {
    pub(super) puts: Vec<Record>,
    pub(super) deletes: Vec<Key>,
    pub(super) broker: Option<BrokerChange>,
}

impl Changes {
    pub(super) fn put(record: Record) -> Self {
        Changes {
            puts: vec![record],
            ..Changes::default()
        }
    }

    pub(super) fn to_txn(&self) -> Txn {
        Txn {
            puts: self
                .puts
                .iter()
                .map(|r| (r.key().to_string(), r.value()))
                .collect(),
            deletes: self.deletes.iter().map(Key::to_string).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_offset() {
        let t = Uuid::new_v4();
        for key in [
            Key::ClusterId,
            Key::NextProducerId,
            Key::Topic("orders.v1".into()),
            Key::Leader(t, 3),
            Key::LogStart(t, 3),
            Key::Chunk(t, 3, 42),
            Key::Segment(t, 3, 0),
            Key::Producer(t, 3, 7),
            Key::Offset("payments".into(), "orders.v1".into(), 3),
            Key::Offset("a/b%2F%/".into(), "t".into(), 0),
            Key::Offset(String::new(), "t".into(), 0),
        ] {
            assert_eq!(Key::parse(&key.to_string()), Some(key));
        }
        assert_eq!(
            Key::Offset("a/b%".into(), "t".into(), 1).to_string(),
            "groups/a%2Fb%25/offsets/t/1"
        );
        // A second spelling of the same group would be a second key for one offset.
        assert_eq!(Key::parse("groups/a%2fb/offsets/t/1"), None);
        assert_eq!(Key::parse("groups/a/offsets/t/x"), None);
        assert_eq!(
            Key::Chunk(t, 0, 42).to_string(),
            format!("partitions/{t}/0/chunks/00000000000000000042")
        );
        assert!(Key::Chunk(t, 0, 999).to_string() < Key::Chunk(t, 0, 1000).to_string());
        assert_eq!(Key::parse("partitions/nope/0/leader"), None);
        assert_eq!(Key::parse("topics/a/b"), None);
    }

    #[test]
    fn decode_checks_key_against_value() {
        let record = Record::Leader(
            Uuid::new_v4(),
            1,
            PartitionLeader {
                broker_id: 2,
                leader_epoch: 3,
            },
        );
        let key = record.key().to_string();
        assert_eq!(Record::decode(&key, &record.value()), Ok(record));
        let meta = TopicMeta {
            name: "a".into(),
            topic_id: Uuid::new_v4(),
            partitions: 1,
            configs: Default::default(),
        };
        let value = Record::Topic(meta).value();
        assert!(Record::decode("topics/b", &value).is_err());
        assert!(Record::decode("topics/a", b"{").is_err());
        assert!(Record::decode("brokers/1", &value).is_err());
    }
}
