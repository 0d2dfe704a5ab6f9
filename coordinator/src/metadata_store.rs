//! The key-value store behind the coordinator: guarded multi-key transactions, a revision
//! that orders them, and a watch of every change, so that an etcd backend implements it with
//! one etcd txn per commit and every process keeps the same state in memory.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A condition a transaction needs to hold, checked atomically with its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key exists with exactly this value.
    Equals(String, Bytes),
}

/// One atomic change. A key appears at most once in it; deletes of missing keys are no-ops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Txn {
    /// All must hold, else nothing changes ([`MetaStoreError::GuardFailed`]).
    pub guards: Vec<Guard>,
    pub puts: Vec<(String, Bytes)>,
    /// Puts bound to this process's session: they disappear when the process stops renewing
    /// it (etcd: a lease). The broker registry lives in them.
    pub session_puts: Vec<(String, Bytes)>,
    pub deletes: Vec<String>,
    /// Every key starting with one of these is deleted.
    pub delete_prefixes: Vec<String>,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.session_puts.is_empty()
            && self.deletes.is_empty()
            && self.delete_prefixes.is_empty()
    }

    /// Store operations it takes (etcd counts every compare, put and delete).
    pub fn operations(&self) -> usize {
        self.guards.len()
            + self.puts.len()
            + self.session_puts.len()
            + self.deletes.len()
            + self.delete_prefixes.len()
    }

    /// Turns the prefix deletes into deletes of the keys they match among `keys`, for stores
    /// that delete key by key.
    pub fn expand_prefixes<'a>(&mut self, keys: impl Iterator<Item = &'a String>) {
        if self.delete_prefixes.is_empty() {
            return;
        }
        let prefixes = std::mem::take(&mut self.delete_prefixes);
        let matched = keys.filter(|key| {
            prefixes.iter().any(|prefix| key.starts_with(prefix)) && !self.deletes.contains(key)
        });
        let matched: Vec<String> = matched.cloned().collect();
        self.deletes.extend(matched);
    }

    /// Whether the guards hold, given each key's current value.
    pub fn guards_hold<'a>(&self, current: impl Fn(&str) -> Option<&'a Bytes>) -> bool {
        self.guards.iter().all(|guard| match guard {
            Guard::Absent(key) => current(key).is_none(),
            Guard::Equals(key, value) => current(key) == Some(value),
        })
    }

    /// The changes as watch events, deletes first (prefixes must be expanded).
    pub fn events(&self) -> Vec<Event> {
        let deletes = self.deletes.iter().map(|key| Event {
            key: key.clone(),
            value: None,
        });
        let puts = self
            .puts
            .iter()
            .chain(&self.session_puts)
            .map(|(key, value)| Event {
                key: key.clone(),
                value: Some(value.clone()),
            });
        deletes.chain(puts).collect()
    }

    /// Applies the txn to a key-value map, as a store does (guards are not checked).
    pub fn apply_to(self, map: &mut BTreeMap<String, Bytes>) {
        for key in &self.deletes {
            map.remove(key);
        }
        map.extend(self.puts);
        map.extend(self.session_puts);
    }
}

/// One key changed: its new value, or None when it was deleted (or its session ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub key: String,
    pub value: Option<Bytes>,
}

/// Every key with its value, as of a revision.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub entries: BTreeMap<String, Bytes>,
    pub revision: u64,
}

/// The changes of one revision, in order.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: u64,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaStoreError {
    #[error("metadata store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store is corrupt: {0}")]
    Corrupt(String),
    /// A guard did not hold: nothing changed. The caller's view was stale or it was fenced.
    #[error("metadata store transaction refused: a condition it depends on changed")]
    GuardFailed,
    /// The transaction is larger than the store accepts in one request.
    #[error("metadata store transaction too large: {0}")]
    TooLarge(String),
    /// This process's session ended (etcd: its lease expired): its session keys are gone.
    #[error("metadata store session expired")]
    SessionExpired,
    /// The store cannot be reached; the operation may be retried.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The watch fell behind what the store still keeps: reload a snapshot.
    #[error("metadata store watch fell behind: {0}")]
    WatchLost(String),
}

#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Every key with its value and the revision they are at.
    async fn load(&self) -> Result<Snapshot, MetaStoreError>;
    /// Atomic and durable when Ok, returning the revision it made; changes nothing when Err.
    async fn commit(&self, txn: Txn) -> Result<u64, MetaStoreError>;
    /// Every change after `revision`, in order, until the receiver is dropped. An error
    /// ends the stream; the caller loads a snapshot and watches again.
    async fn watch(
        &self,
        revision: u64,
    ) -> Result<mpsc::UnboundedReceiver<Result<Change, MetaStoreError>>, MetaStoreError>;
}
