//! The coordinator's errors, each with the Kafka error code a broker answers with.

use crate::metadata_store::MetaStoreError;

/// The messages are meant for clients (a response's `error_message`).
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    #[error("{0}")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidConfig(String),
    /// The committing leader was deposed: its leader epoch is not the partition's current one.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// The commit does not continue the partition's log (flush) or no longer matches it
    /// (segment): the caller's view of the log is stale.
    #[error("{0}")]
    NonContiguousCommit(String),
    #[error("{0}")]
    OffsetOutOfRange(String),
    /// A committed offset's metadata is longer than Kafka's `offset.metadata.max.bytes`.
    #[error("{0}")]
    OffsetMetadataTooLarge(String),
    /// This broker's registration is gone (left, or its session expired): whatever it led
    /// has moved, and it may commit nothing more.
    #[error("{0}")]
    BrokerFenced(String),
    /// Another live broker is registered with this id.
    #[error("{0}")]
    BrokerIdInUse(String),
    #[error("{0}")]
    LeaderNotAvailable(String),
    /// A reassignment names no live broker, or more than one (a partition's only replica is
    /// its leader).
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// The partition is already led by the broker an election would choose.
    #[error("{0}")]
    ElectionNotNeeded(String),
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// A log commit from a process that has not registered as a broker.
    #[error("this process is not registered as a broker")]
    NotRegistered,
    #[error(transparent)]
    Store(#[from] MetaStoreError),
}

impl CoordinatorError {
    /// The Kafka error code.
    pub fn error_code(&self) -> i16 {
        match self {
            CoordinatorError::UnknownTopicOrPartition(_) => 3, // UNKNOWN_TOPIC_OR_PARTITION
            CoordinatorError::TopicAlreadyExists(_) => 36,     // TOPIC_ALREADY_EXISTS
            CoordinatorError::InvalidTopic(_) => 17,           // INVALID_TOPIC_EXCEPTION
            CoordinatorError::InvalidPartitions(_) => 37,      // INVALID_PARTITIONS
            CoordinatorError::InvalidConfig(_) => 40,          // INVALID_CONFIG
            CoordinatorError::FencedLeaderEpoch(_) => 74,      // FENCED_LEADER_EPOCH
            // No Kafka equivalent: the broker acts on it (reloads the partition) itself.
            CoordinatorError::NonContiguousCommit(_) => -1, // UNKNOWN_SERVER_ERROR
            CoordinatorError::OffsetOutOfRange(_) => 1,     // OFFSET_OUT_OF_RANGE
            CoordinatorError::OffsetMetadataTooLarge(_) => 12, // OFFSET_METADATA_TOO_LARGE
            CoordinatorError::LeaderNotAvailable(_) => 5,   // LEADER_NOT_AVAILABLE
            CoordinatorError::InvalidReplicaAssignment(_) => 39, // INVALID_REPLICA_ASSIGNMENT
            CoordinatorError::NoReassignmentInProgress(_) => 85, // NO_REASSIGNMENT_IN_PROGRESS
            CoordinatorError::ElectionNotNeeded(_) => 84,   // ELECTION_NOT_NEEDED
            CoordinatorError::PreferredLeaderNotAvailable(_) => 80, // PREFERRED_LEADER_NOT_AVAILABLE
            CoordinatorError::EligibleLeadersNotAvailable(_) => 83, // ELIGIBLE_LEADERS_NOT_AVAILABLE
            CoordinatorError::BrokerFenced(_) | CoordinatorError::NotRegistered => 6, // NOT_LEADER_OR_FOLLOWER
            // Refused at start-up, never answered to a client.
            CoordinatorError::BrokerIdInUse(_) => -1, // UNKNOWN_SERVER_ERROR
            CoordinatorError::Store(_) => 56,         // KAFKA_STORAGE_ERROR
        }
    }
}
