//! An in-memory object store, for tests and `memory://`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use crate::payload::Payload;
use crate::store::{clip, ObjectMeta, ObjectStore, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, (Bytes, SystemTime)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Bytes, SystemTime)>> {
        // The map is consistent after every operation, so a poisoned lock is still usable.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        self.objects()
            .insert(key.to_string(), (data.to_bytes(), SystemTime::now()));
        Ok(())
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        match self.objects().entry(key.to_string()) {
            Entry::Occupied(_) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            Entry::Vacant(entry) => {
                entry.insert((data.to_bytes(), SystemTime::now()));
                Ok(())
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let objects = self.objects();
        let (data, _) = objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(data.clone())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let data = self.get(key).await?;
        let range = clip(range, data.len() as u64);
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let objects = self.objects();
        let listed = objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (data, modified))| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
                last_modified: *modified,
            })
            .collect();
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::check_contract;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        check_contract(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn ranges_share_the_stored_buffer() {
        let store = MemoryStore::new();
        let data = Bytes::from(vec![7u8; 64]);
        store.put("a", data.clone().into()).await.unwrap();
        let range = store.get_range("a", 8..16).await.unwrap();
        assert_eq!(range.as_ptr(), data[8..].as_ptr());
    }
}
