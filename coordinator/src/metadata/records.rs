//! The key layout of the metadata store: every key the coordinator writes, typed, with its
//! JSON value. A mutation is a [`Changes`]: the same list is committed to the store and then
//! applied to the in-memory state, and loading applies every stored record the same way.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::client_quotas::{ClientQuotaEntity, QuotaName};
use crate::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use crate::metadata_store::{Guard, Txn};
use crate::{
    AbortedTxn, BrokerInfo, ChunkCommit, ChunkMeta, CommittedOffset, PartitionLeader,
    ProducerBatch, ProducerState, ScramCredential, ScramMechanism, SegmentMeta, TopicMeta,
    TransactionMetadata,
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
    /// `partitions/{topic_id}/{p}/segments/{base_offset:020}`
    Segment(Uuid, i32, i64),
    /// `partitions/{topic_id}/{p}/producers`: the idempotent producers' states as of an offset.
    Producers(Uuid, i32),
    /// `flushes/{object_key}`: every partition's chunk of one flush object, one key per flush
    /// so a commit costs one store operation whatever the number of partitions in it.
    Flush(String),
    /// `brokers/{broker_id}`, a session key: a live broker.
    Broker(i32),
    /// `brokers_next_id`: the next broker id to allocate.
    NextBrokerId,
    /// `controller`, a session key: the active coordinator, which won its election.
    Controller,
    /// `groups/{group}/offsets/{topic}/{p}`, the group id escaped (it may contain `/`).
    Offset(String, String, i32),
    /// `users/{user}/scram/{mechanism}`, the user name escaped as group ids are.
    ScramCredential(String, ScramMechanism),
    /// `groups/{group}/metadata`: the group's membership, as the group coordinator encodes it.
    GroupMetadata(String),
    /// `transactions/{transactional_id}`, the id escaped as group ids are.
    Transaction(String),
    /// `quotas/users/{user}/clients/{client_id}/{quota_key}` (either part may be absent),
    /// names escaped as group ids are and `<` too, so the default, `<default>`, is no name.
    ClientQuota(ClientQuotaEntity, String),
    /// `acls/{resource type}/{pattern type}/{resource}/{principal}/{host}/{operation}/{permission}`:
    /// one key per ACL, all of it in the key (names escaped as group ids are, the rest
    /// Kafka's codes), so creating an ACL twice writes the same key.
    Acl(AclBinding),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::ClusterId => f.write_str("cluster/id"),
            Key::NextProducerId => f.write_str("producer_ids/next"),
            Key::Topic(name) => write!(f, "topics/{name}"),
            Key::Leader(t, p) => write!(f, "partitions/{t}/{p}/leader"),
            Key::LogStart(t, p) => write!(f, "partitions/{t}/{p}/log_start"),
            Key::Segment(t, p, base) => write!(f, "partitions/{t}/{p}/segments/{base:020}"),
            Key::Producers(t, p) => write!(f, "partitions/{t}/{p}/producers"),
            Key::Flush(object_key) => write!(f, "flushes/{object_key}"),
            Key::Broker(id) => write!(f, "brokers/{id}"),
            Key::NextBrokerId => f.write_str("brokers_next_id"),
            Key::Controller => f.write_str("controller"),
            Key::Offset(group, topic, p) => {
                write!(f, "groups/{}/offsets/{topic}/{p}", escape(group))
            }
            Key::ScramCredential(user, mechanism) => {
                write!(f, "users/{}/scram/{}", escape(user), mechanism.name())
            }
            Key::GroupMetadata(group) => write!(f, "groups/{}/metadata", escape(group)),
            Key::Transaction(id) => write!(f, "transactions/{}", escape(id)),
            Key::ClientQuota(entity, quota_key) => {
                f.write_str("quotas")?;
                if let Some(user) = &entity.user {
                    write!(f, "/users/{}", escape_quota_name(user))?;
                }
                if let Some(client_id) = &entity.client_id {
                    write!(f, "/clients/{}", escape_quota_name(client_id))?;
                }
                write!(f, "/{quota_key}")
            }
            Key::Acl(acl) => write!(
                f,
                "acls/{}/{}/{}/{}/{}/{}/{}",
                acl.resource_type.code(),
                acl.pattern_type.code(),
                escape(&acl.resource_name),
                escape(&acl.principal),
                escape(&acl.host),
                acl.operation.code(),
                acl.permission.code()
            ),
        }
    }
}

impl Key {
    pub(super) fn parse(key: &str) -> Option<Key> {
        if let Some(object_key) = key.strip_prefix("flushes/") {
            return Some(Key::Flush(object_key.to_string()));
        }
        let parts: Vec<&str> = key.split('/').collect();
        Some(match parts[..] {
            ["cluster", "id"] => Key::ClusterId,
            ["brokers_next_id"] => Key::NextBrokerId,
            ["controller"] => Key::Controller,
            ["brokers", id] => Key::Broker(id.parse().ok()?),
            ["producer_ids", "next"] => Key::NextProducerId,
            ["topics", name] => Key::Topic(name.to_string()),
            ["transactions", id] => Key::Transaction(unescape(id)?),
            ["groups", group, "offsets", topic, p] => {
                Key::Offset(unescape(group)?, topic.to_string(), p.parse().ok()?)
            }
            ["users", user, "scram", mechanism] => {
                Key::ScramCredential(unescape(user)?, ScramMechanism::from_name(mechanism)?)
            }
            ["groups", group, "metadata"] => Key::GroupMetadata(unescape(group)?),
            ["quotas", "users", user, quota_key] => Key::ClientQuota(
                ClientQuotaEntity {
                    user: Some(unescape_quota_name(user)?),
                    client_id: None,
                },
                quota_key.to_string(),
            ),
            ["quotas", "clients", client_id, quota_key] => Key::ClientQuota(
                ClientQuotaEntity {
                    user: None,
                    client_id: Some(unescape_quota_name(client_id)?),
                },
                quota_key.to_string(),
            ),
            ["quotas", "users", user, "clients", client_id, quota_key] => Key::ClientQuota(
                ClientQuotaEntity {
                    user: Some(unescape_quota_name(user)?),
                    client_id: Some(unescape_quota_name(client_id)?),
                },
                quota_key.to_string(),
            ),
            ["acls", resource_type, pattern_type, name, principal, host, operation, permission] => {
                Key::Acl(AclBinding {
                    resource_type: ResourceType::from_code(resource_type.parse().ok()?)?,
                    pattern_type: PatternType::from_code(pattern_type.parse().ok()?)?,
                    resource_name: unescape(name)?,
                    principal: unescape(principal)?,
                    host: unescape(host)?,
                    operation: AclOperation::from_code(operation.parse().ok()?)?,
                    permission: AclPermission::from_code(permission.parse().ok()?)?,
                })
            }
            ["partitions", t, p, ref rest @ ..] => {
                let (t, p) = (t.parse().ok()?, p.parse().ok()?);
                match rest {
                    ["leader"] => Key::Leader(t, p),
                    ["log_start"] => Key::LogStart(t, p),
                    ["segments", base] => Key::Segment(t, p, base.parse().ok()?),
                    ["producers"] => Key::Producers(t, p),
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

const DEFAULT_QUOTA_NAME: &str = "<default>";

fn escape_quota_name(name: &QuotaName) -> String {
    match name {
        QuotaName::Default => DEFAULT_QUOTA_NAME.to_string(),
        QuotaName::Name(name) => escape(name).replace('<', "%3C"),
    }
}

fn unescape_quota_name(escaped: &str) -> Option<QuotaName> {
    if escaped == DEFAULT_QUOTA_NAME {
        return Some(QuotaName::Default);
    }
    let name = escaped
        .replace("%3C", "<")
        .replace("%2F", "/")
        .replace("%25", "%");
    let name = QuotaName::Name(name);
    // Only canonical encodings: every key has exactly one spelling.
    (escape_quota_name(&name) == escaped).then_some(name)
}

/// A key with its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    ClusterId(String),
    NextProducerId(i64),
    Topic(TopicMeta),
    Leader(Uuid, i32, PartitionLeader),
    LogStart(Uuid, i32, i64),
    Segment(Uuid, i32, SegmentMeta),
    Producers(Uuid, i32, ProducerSnapshot),
    Flush(FlushRecord),
    Broker(BrokerRegistration),
    NextBrokerId(i32),
    /// Who the active coordinator is.
    Controller(String),
    /// Group, topic, partition.
    Offset(String, String, i32, CommittedOffset),
    ScramCredential(ScramCredential),
    /// Group, and its membership in the group coordinator's encoding, stored as it is.
    GroupMetadata(String, Bytes),
    Transaction(TransactionMetadata),
    /// An entity's quota key and its value.
    ClientQuota(ClientQuotaEntity, String, f64),
    Acl(AclBinding),
}

impl Record {
    pub(super) fn key(&self) -> Key {
        match self {
            Record::ClusterId(_) => Key::ClusterId,
            Record::NextProducerId(_) => Key::NextProducerId,
            Record::Topic(meta) => Key::Topic(meta.name.clone()),
            Record::Leader(t, p, _) => Key::Leader(*t, *p),
            Record::LogStart(t, p, _) => Key::LogStart(*t, *p),
            Record::Segment(t, p, segment) => Key::Segment(*t, *p, segment.base_offset),
            Record::Producers(t, p, _) => Key::Producers(*t, *p),
            Record::Flush(flush) => Key::Flush(flush.object_key.clone()),
            Record::Broker(registration) => Key::Broker(registration.info.broker_id),
            Record::NextBrokerId(_) => Key::NextBrokerId,
            Record::Controller(_) => Key::Controller,
            Record::Offset(group, topic, p, _) => Key::Offset(group.clone(), topic.clone(), *p),
            Record::ScramCredential(credential) => {
                Key::ScramCredential(credential.user.clone(), credential.mechanism)
            }
            Record::GroupMetadata(group, _) => Key::GroupMetadata(group.clone()),
            Record::Transaction(txn) => Key::Transaction(txn.transactional_id.clone()),
            Record::ClientQuota(entity, quota_key, _) => {
                Key::ClientQuota(entity.clone(), quota_key.clone())
            }
            Record::Acl(acl) => Key::Acl(acl.clone()),
        }
    }

    pub(super) fn value(&self) -> Bytes {
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
            Record::Segment(_, _, segment) => json(segment),
            Record::Producers(_, _, snapshot) => json(snapshot),
            Record::Flush(flush) => json(flush),
            Record::Broker(registration) => json(registration),
            Record::NextBrokerId(id) => json(id),
            Record::Controller(name) => json(name),
            Record::Offset(_, _, _, offset) => json(offset),
            Record::ScramCredential(credential) => json(credential),
            Record::GroupMetadata(_, value) => value.clone(),
            Record::Transaction(txn) => json(txn),
            Record::ClientQuota(_, _, value) => json(value),
            Record::Acl(acl) => json(acl),
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
            Key::Segment(t, p, _) => {
                Record::Segment(t, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Producers(t, p) => {
                Record::Producers(t, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::Flush(_) => Record::Flush(serde_json::from_slice(value).map_err(bad)?),
            Key::Broker(_) => Record::Broker(serde_json::from_slice(value).map_err(bad)?),
            Key::NextBrokerId => Record::NextBrokerId(serde_json::from_slice(value).map_err(bad)?),
            Key::Controller => Record::Controller(serde_json::from_slice(value).map_err(bad)?),
            Key::Offset(group, topic, p) => {
                Record::Offset(group, topic, p, serde_json::from_slice(value).map_err(bad)?)
            }
            Key::ScramCredential(..) => {
                Record::ScramCredential(serde_json::from_slice(value).map_err(bad)?)
            }
            Key::GroupMetadata(group) => {
                Record::GroupMetadata(group, Bytes::copy_from_slice(value))
            }
            Key::Transaction(_) => Record::Transaction(serde_json::from_slice(value).map_err(bad)?),
            Key::ClientQuota(entity, quota_key) => Record::ClientQuota(
                entity,
                quota_key,
                serde_json::from_slice(value).map_err(bad)?,
            ),
            Key::Acl(_) => Record::Acl(serde_json::from_slice(value).map_err(bad)?),
        };
        // The key repeats part of the value (a name, an offset, an id): they must agree.
        if record.key().to_string() != key {
            return Err(format!("key {key} does not match its value"));
        }
        Ok(record)
    }
}

/// One mutation of the coordinator's state: one store transaction. Keys are unique in it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Changes {
    pub(super) guards: Vec<Guard>,
    pub(super) puts: Vec<Record>,
    /// Bound to this process's session (the broker registry).
    pub(super) session_puts: Vec<Record>,
    pub(super) deletes: Vec<Key>,
    /// Every key under these prefixes is deleted (a deleted topic's partitions).
    pub(super) delete_prefixes: Vec<String>,
}

impl Changes {
    pub(super) fn put(record: Record) -> Self {
        Changes {
            puts: vec![record],
            ..Changes::default()
        }
    }

    pub(super) fn to_txn(&self) -> Txn {
        let encode = |records: &[Record]| {
            records
                .iter()
                .map(|r| (r.key().to_string(), r.value()))
                .collect()
        };
        Txn {
            guards: self.guards.clone(),
            puts: encode(&self.puts),
            session_puts: encode(&self.session_puts),
            deletes: self.deletes.iter().map(Key::to_string).collect(),
            delete_prefixes: self.delete_prefixes.clone(),
        }
    }
}

/// The guard that a record is stored exactly as given.
pub(super) fn unchanged(record: &Record) -> Guard {
    Guard::Equals(record.key().to_string(), record.value())
}

/// A live broker's session key. The incarnation tells a restarted broker from its old self,
/// whose commits its registration guard then refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BrokerRegistration {
    pub(super) info: BrokerInfo,
    pub(super) incarnation: Uuid,
}

/// A partition's idempotent producers as of `next_offset`: the chunks from there on add to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ProducerSnapshot {
    pub(super) next_offset: i64,
    pub(super) producers: Vec<ProducerState>,
}

/// One flush object's chunks, one per partition it holds. Compact (rows as JSON arrays,
/// topic ids listed once), so that a flush of 10,000 partitions fits one etcd request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FlushRecord {
    pub(super) object_key: String,
    pub(super) topics: Vec<Uuid>,
    pub(super) chunks: Vec<FlushChunk>,
}

/// Topic index in [`FlushRecord::topics`], partition, base offset, last offset, max
/// timestamp, size, byte range start and end, producer updates, and the transactions whose
/// abort markers the chunk holds as (producer id, first offset, last offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FlushChunk(
    u32,
    i32,
    i64,
    i64,
    i64,
    u64,
    u64,
    u64,
    Vec<FlushProducer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")] Vec<(i64, i64, i64)>,
);

/// Producer id, epoch, batches as (first seq, last seq, base offset, last offset), the
/// first offset of its open transaction, and the max timestamp of its last batch (records
/// written before it was kept have neither or only the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FlushProducer(
    i64,
    i16,
    Vec<(i32, i32, i64, i64)>,
    #[serde(default)] Option<i64>,
    #[serde(default = "no_timestamp")] i64,
);

fn no_timestamp() -> i64 {
    -1
}

impl FlushRecord {
    /// The record of one flush object's commits (which all name that object).
    pub(super) fn new(object_key: String, commits: &[ChunkCommit]) -> Self {
        let mut topics: Vec<Uuid> = Vec::new();
        let chunks = commits
            .iter()
            .map(|commit| {
                let topic = match topics.iter().position(|t| *t == commit.topic_id) {
                    Some(index) => index,
                    None => {
                        topics.push(commit.topic_id);
                        topics.len() - 1
                    }
                };
                let chunk = &commit.chunk;
                let producers = commit
                    .producers
                    .iter()
                    .map(|producer| {
                        let batches = producer
                            .batches
                            .iter()
                            .map(|b| (b.first_seq, b.last_seq, b.base_offset, b.last_offset));
                        FlushProducer(
                            producer.producer_id,
                            producer.producer_epoch,
                            batches.collect(),
                            producer.current_txn_first_offset,
                            producer.last_timestamp,
                        )
                    })
                    .collect();
                FlushChunk(
                    topic as u32,
                    commit.partition,
                    chunk.base_offset,
                    chunk.last_offset,
                    chunk.max_timestamp,
                    chunk.size,
                    chunk.byte_range.start,
                    chunk.byte_range.end,
                    producers,
                    chunk
                        .aborted_transactions
                        .iter()
                        .map(|t| (t.producer_id, t.first_offset, t.last_offset))
                        .collect(),
                )
            })
            .collect();
        FlushRecord {
            object_key,
            topics,
            chunks,
        }
    }

    /// Each chunk with its topic, partition and producer updates; Err if a chunk names a
    /// topic the record does not list.
    pub(super) fn chunks(&self) -> Result<Vec<FlushedChunk>, String> {
        self.chunks
            .iter()
            .map(
                |FlushChunk(
                    topic,
                    partition,
                    base,
                    last,
                    max_ts,
                    size,
                    start,
                    end,
                    producers,
                    aborted,
                )| {
                    let topic_id = *self.topics.get(*topic as usize).ok_or_else(|| {
                        format!("flush record {} names topic #{topic}", self.object_key)
                    })?;
                    let producers = producers
                        .iter()
                        .map(|FlushProducer(id, epoch, batches, txn, last_timestamp)| {
                            ProducerState {
                                producer_id: *id,
                                producer_epoch: *epoch,
                                batches: batches
                                    .iter()
                                    .map(|&(first_seq, last_seq, base_offset, last_offset)| {
                                        ProducerBatch {
                                            first_seq,
                                            last_seq,
                                            base_offset,
                                            last_offset,
                                        }
                                    })
                                    .collect(),
                                current_txn_first_offset: *txn,
                                last_timestamp: *last_timestamp,
                            }
                        })
                        .collect();
                    Ok(FlushedChunk {
                        topic_id,
                        partition: *partition,
                        chunk: ChunkMeta {
                            base_offset: *base,
                            last_offset: *last,
                            max_timestamp: *max_ts,
                            size: *size,
                            object_key: self.object_key.clone(),
                            byte_range: *start..*end,
                            aborted_transactions: aborted
                                .iter()
                                .map(|&(producer_id, first_offset, last_offset)| AbortedTxn {
                                    producer_id,
                                    first_offset,
                                    last_offset,
                                })
                                .collect(),
                        },
                        producers,
                    })
                },
            )
            .collect()
    }
}

/// One partition's chunk of a flush record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FlushedChunk {
    pub(super) topic_id: Uuid,
    pub(super) partition: i32,
    pub(super) chunk: ChunkMeta,
    pub(super) producers: Vec<ProducerState>,
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
            Key::Segment(t, 3, 0),
            Key::Producers(t, 3),
            Key::Flush("flush/1/abc.flush".into()),
            Key::Broker(4),
            Key::NextBrokerId,
            Key::Controller,
            Key::Offset("payments".into(), "orders.v1".into(), 3),
            Key::Offset("a/b%2F%/".into(), "t".into(), 0),
            Key::Offset(String::new(), "t".into(), 0),
            Key::ScramCredential("alice/x%".into(), ScramMechanism::Sha512),
            Key::GroupMetadata("a/b%".into()),
            Key::ClientQuota(
                ClientQuotaEntity {
                    user: Some(QuotaName::Name("<default>/%".into())),
                    client_id: Some(QuotaName::Default),
                },
                "producer_byte_rate".into(),
            ),
            Key::ClientQuota(
                ClientQuotaEntity {
                    user: None,
                    client_id: Some(QuotaName::Name("app".into())),
                },
                "request_percentage".into(),
            ),
            Key::ClientQuota(
                ClientQuotaEntity {
                    user: Some(QuotaName::Default),
                    client_id: None,
                },
                "consumer_byte_rate".into(),
            ),
            Key::Acl(AclBinding {
                resource_type: ResourceType::Topic,
                pattern_type: PatternType::Prefixed,
                resource_name: "orders/v%".into(),
                principal: "User:alice/x".into(),
                host: "*".into(),
                operation: AclOperation::IdempotentWrite,
                permission: AclPermission::Deny,
            }),
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
            Key::Segment(t, 0, 42).to_string(),
            format!("partitions/{t}/0/segments/00000000000000000042")
        );
        assert!(Key::Segment(t, 0, 999).to_string() < Key::Segment(t, 0, 1000).to_string());
        assert_eq!(Key::parse("partitions/nope/0/leader"), None);
        assert_eq!(Key::parse("topics/a/b"), None);
        // A user named `<default>` is not the default user.
        assert_eq!(
            Key::ClientQuota(
                ClientQuotaEntity {
                    user: Some(QuotaName::Name("<default>".into())),
                    client_id: None,
                },
                "producer_byte_rate".into(),
            )
            .to_string(),
            "quotas/users/%3Cdefault>/producer_byte_rate"
        );
    }

    #[test]
    fn flushed_producer_states_keep_their_last_timestamp() {
        let state = ProducerState {
            producer_id: 7,
            producer_epoch: 1,
            batches: vec![ProducerBatch {
                first_seq: 0,
                last_seq: 2,
                base_offset: 10,
                last_offset: 12,
            }],
            current_txn_first_offset: None,
            last_timestamp: 1_700_000_000_123,
        };
        let producer = FlushProducer(7, 1, vec![(0, 2, 10, 12)], None, state.last_timestamp);
        let json = serde_json::to_string(&producer).unwrap();
        assert_eq!(
            serde_json::from_str::<FlushProducer>(&json).unwrap(),
            producer
        );
        // Written before the timestamp was kept: unknown.
        let old: FlushProducer = serde_json::from_str("[7,1,[[0,2,10,12]]]").unwrap();
        assert_eq!(old, FlushProducer(7, 1, vec![(0, 2, 10, 12)], None, -1));
        let old: FlushProducer = serde_json::from_str("[7,1,[],4]").unwrap();
        assert_eq!(old, FlushProducer(7, 1, vec![], Some(4), -1));
    }

    #[test]
    fn decode_checks_key_against_value() {
        let record = Record::Leader(
            Uuid::new_v4(),
            1,
            PartitionLeader {
                broker_id: 2,
                leader_epoch: 3,
                moving_to: Some(4),
                preferred: Some(4),
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
