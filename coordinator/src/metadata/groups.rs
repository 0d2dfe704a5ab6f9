//! Consumer groups' membership records, one per group with members, as Kafka keeps them in
//! `__consumer_offsets`: the group coordinator writes one when a group settles and deletes it
//! when the group empties, and a gateway that becomes coordinator of a group loads it, so
//! neither a restart nor a coordinator move makes the group rebalance. The coordinator
//! stores the value as the group coordinator encoded it.

use bytes::Bytes;

use super::records::{Changes, Key, Record};
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::metadata_store::{Guard, MetaStoreError};

impl Coordinator {
    /// The stored membership record of `group`.
    pub fn group_metadata(&self, group: &str) -> Option<Bytes> {
        self.read().group_metadata.get(group).cloned()
    }

    /// The groups that have a membership record, by id.
    pub fn groups_with_metadata(&self) -> Vec<String> {
        self.read().group_metadata.keys().cloned().collect()
    }

    /// Replaces the membership record of `group` (None deletes it) if the store still holds
    /// `expected`: Ok(false) when it does not, because another gateway coordinated the group
    /// since.
    pub async fn store_group_metadata(
        &self,
        group: &str,
        expected: Option<&Bytes>,
        value: Option<Bytes>,
    ) -> Result<bool, CoordinatorError> {
        let key = Key::GroupMetadata(group.to_string());
        let guard = match expected {
            Some(expected) => Guard::Equals(key.to_string(), expected.clone()),
            None => Guard::Absent(key.to_string()),
        };
        let mut changes = Changes {
            guards: vec![guard],
            ..Changes::default()
        };
        match value {
            Some(value) => changes
                .puts
                .push(Record::GroupMetadata(group.to_string(), value)),
            None => changes.deletes.push(key),
        }
        let write = self.lock_writes().await;
        match self.commit(write, changes).await {
            Ok(()) => Ok(true),
            Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, TestStore};

    #[tokio::test]
    async fn a_record_is_replaced_only_from_what_the_store_holds() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let first = bytes::Bytes::from_static(b"{\"generation\":1}");
        let second = bytes::Bytes::from_static(b"{\"generation\":2}");
        assert!(coordinator
            .store_group_metadata("a/g", None, Some(first.clone()))
            .await
            .unwrap());
        // Another gateway's view, older than the store's: refused.
        assert!(!coordinator
            .store_group_metadata("a/g", None, Some(second.clone()))
            .await
            .unwrap());
        assert!(coordinator
            .store_group_metadata("a/g", Some(&first), Some(second.clone()))
            .await
            .unwrap());
        assert_eq!(coordinator.group_metadata("a/g"), Some(second.clone()));
        assert_eq!(coordinator.groups_with_metadata(), ["a/g"]);
        let groups: Vec<String> = store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("groups/"))
            .collect();
        assert_eq!(groups, ["groups/a%2Fg/metadata"]);

        // The store's copy survives a reload; deleting the group's offsets deletes it too.
        let reopened = open(&store).await;
        assert_eq!(reopened.group_metadata("a/g"), Some(second));
        reopened
            .delete_group_offsets(&["a/g".into()])
            .await
            .unwrap();
        assert_eq!(reopened.group_metadata("a/g"), None);
        assert!(!store.keys().iter().any(|k| k.starts_with("groups/")));
    }
}
