//! The key-value store behind the coordinator: atomic multi-key transactions, so that an etcd
//! backend can implement it with one etcd txn per commit.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One atomic change. A key appears at most once in it; deletes of missing keys are no-ops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Txn {
    pub puts: Vec<(String, Bytes)>,
    pub deletes: Vec<String>,
}

impl Txn {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }

    /// Applies the txn to a key-value map, as a store does.
    pub fn apply_to(self, map: &mut BTreeMap<String, Bytes>) {
        for key in &self.deletes {
            map.remove(key);
        }
        map.extend(self.puts);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetaStoreError {
    #[error("metadata store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store is corrupt: {0}")]
    Corrupt(String),
}

#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Every key with its value.
    async fn load(&self) -> Result<BTreeMap<String, Bytes>, MetaStoreError>;
    /// Atomic and durable when Ok; changes nothing when Err.
    async fn commit(&self, txn: Txn) -> Result<(), MetaStoreError>;
}
