//! Strata's coordinator: the nameserver that holds all metadata while brokers stay stateless.
//!
//! It keeps the broker registry, topics and their configs, partition leadership with leader
//! epochs, producer-id allocation, each partition's committed log (chunks in flush objects,
//! compacted segments, log start offset) and the consumer groups' committed offsets, all
//! in a [`MetadataStore`]: [`EmbeddedStore`] (one file in the data dir) in standalone mode,
//! [`EtcdStore`] in a cluster, where every process keeps the same state from a watch.

pub mod acl;
pub mod broker_settings;
pub mod embedded;
pub mod error;
pub mod etcd;
mod metadata;
pub mod metadata_store;
mod retry_log;
pub mod topic_config;

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::embedded::EmbeddedStore;
pub use crate::error::CoordinatorError;
pub use crate::etcd::EtcdStore;
pub use crate::metadata::{
    BytesInRates, ClientQuotaEntity, ClientQuotas, Coordinator, LeaderBalance, PartitionRates,
    QuotaAlteration, QuotaName, Reassignment, TransactionWrite,
};
pub use crate::metadata_store::{MetaStoreError, MetadataStore, Txn};
pub use crate::topic_config::{BrokerDefaults, CleanupPolicy, TimestampType, TopicConfig};

/// A live broker, as it advertises itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub broker_id: i32,
    /// The first listener's advertised address.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Every listener's advertised address; empty for a broker with the one listener above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

impl BrokerInfo {
    /// Where a client connected to `listener` reaches this broker; None when the broker has
    /// no listener of that name (Kafka then leaves the broker out).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.listener == listener)
            .map(|endpoint| (endpoint.host.as_str(), endpoint.port))
    }
}

/// The SCRAM mechanisms (Kafka's ScramMechanism codes 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }
}

/// A user's SCRAM credential for one mechanism (RFC 5802's stored and server keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// One listener of a broker, as clients of that listener are told to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// Explicit topic-level overrides only; see [`Coordinator::topic_config`] for effective values.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLeader {
    pub broker_id: i32,
    pub leader_epoch: i32,
    /// Set while leadership is being handed over to this live broker: the leader accepts no
    /// more writes, commits what it buffered, then passes the partition on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<i32>,
    /// The broker an operator assigned the partition to (Kafka's preferred replica, set by a
    /// partition reassignment): the controller brings leadership back to it while it is live.
    /// None leaves the choice to the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<i32>,
}

/// One batch of an idempotent producer, remembered to answer duplicates with their offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The last 5 batches (Kafka's idempotence window), oldest first.
    pub batches: Vec<ProducerBatch>,
    /// The first offset of the producer's open transaction on the partition, if one is open:
    /// the last stable offset stays at or below it until a marker closes the transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_txn_first_offset: Option<i64>,
    /// The max timestamp of the producer's last batch (or marker), as DescribeProducers
    /// reports it; -1 in states committed before it was kept.
    #[serde(default = "no_timestamp")]
    pub last_timestamp: i64,
}

fn no_timestamp() -> i64 {
    -1
}

/// An aborted transaction of one producer on one partition, as Kafka's transaction index
/// keeps it: its records lie from `first_offset` up to the abort marker at `last_offset`.
/// read_committed consumers are told of those overlapping what they fetch and drop them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The aborted transactions a piece of log covering `base_offset..=last_offset` carries,
/// taken from the pieces it is made of (a segment written from chunks and merged segments):
/// each aborted transaction belongs to the piece holding its abort marker, so it lives as
/// long as that piece and is dropped with it by retention.
pub fn aborted_transactions_within<'a>(
    sources: impl IntoIterator<Item = &'a [AbortedTxn]>,
    base_offset: i64,
    last_offset: i64,
) -> Vec<AbortedTxn> {
    let mut within: Vec<AbortedTxn> = sources
        .into_iter()
        .flatten()
        .filter(|txn| (base_offset..=last_offset).contains(&txn.last_offset))
        .copied()
        .collect();
    within.sort_by_key(|txn| txn.last_offset);
    within
}

/// A committed range of one partition's batches inside a flush object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u64,
    pub object_key: String,
    pub byte_range: Range<u64>,
    /// Oldest first; see [`AbortedTxn`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// A compacted LogSegment of one partition with its offset and time indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u64,
    pub log_key: String,
    pub offset_index_key: String,
    pub time_index_key: String,
    pub created_ms: i64,
    /// Written by the LogCleaner: records were removed, so its batches may skip offsets
    /// (its range still covers them). Cleaned segments are always a prefix of the log.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleaned: bool,
    /// The earliest delete horizon of its batches holding tombstones (KIP-534): from then on
    /// a clean has tombstones to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_horizon_ms: Option<i64>,
    /// Kafka's transaction index of the segment, oldest first; see [`AbortedTxn`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted_transactions: Vec<AbortedTxn>,
}

/// One partition's share of a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCommit {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub chunk: ChunkMeta,
    /// The producer states touched by this chunk.
    pub producers: Vec<ProducerState>,
}

/// The checkpoint of one partition: everything needed to serve it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLog {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// Oldest first. Segments and chunks together cover the offsets below the high watermark
    /// without gaps or overlaps (the first may start below the log start offset).
    pub segments: Vec<SegmentMeta>,
    /// Oldest first.
    pub chunks: Vec<ChunkMeta>,
    /// By producer id.
    pub producers: Vec<ProducerState>,
}

/// A consumer group's committed offset of one partition (Kafka's OffsetAndMetadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when the committer did not know it.
    pub leader_epoch: i32,
    pub metadata: String,
    /// Milliseconds since the Unix epoch.
    pub commit_timestamp: i64,
}

/// Kafka's transaction states (TransactionState), as the transaction coordinator stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

/// An offset committed by TxnOffsetCommit, pending until its transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTxnOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

/// A transactional id's state (Kafka's TransactionMetadata), durable in the metadata store so
/// that any broker that takes over its coordination completes or aborts what was under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    pub state: TransactionState,
    /// The partitions of the transaction under way (or being completed), by topic name.
    pub partitions: Vec<(String, i32)>,
    /// Offsets committed in the transaction under way, visible to groups once it commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_offsets: Vec<PendingTxnOffset>,
    /// When the transaction under way began (Ongoing), -1 when none.
    pub txn_start_ms: i64,
    pub last_update_ms: i64,
}

/// How far a group is behind on one partition: high watermark minus committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// AlterConfigs (Replace: the new complete set of overrides) or IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigAlteration {
    Replace(BTreeMap<String, String>),
    Incremental(Vec<(String, AlterConfigOp)>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterConfigOp {
    Set(String),
    Delete,
    /// List-valued configs only.
    Append(String),
    /// List-valued configs only.
    Subtract(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// Kafka's ConfigType code.
    pub config_type: i8,
    pub documentation: &'static str,
    /// Where the value could come from, the one in effect first (Kafka's synonyms).
    pub synonyms: Vec<ConfigSynonym>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigSource {
    TopicOverride,
    /// Set in the broker's config file.
    BrokerDefault,
    /// Built in.
    Default,
}
