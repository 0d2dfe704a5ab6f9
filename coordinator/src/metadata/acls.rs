//! ACLs (CreateAcls, DescribeAcls, DeleteAcls, and every gateway's authorizer): one key per
//! ACL, so every gateway of a cluster sees the same ones, from its watch.

use std::collections::BTreeSet;

use super::records::{Changes, Key, Record};
use super::Coordinator;
use crate::acl::AclBinding;
use crate::error::CoordinatorError;

/// ACLs written per store transaction (etcd allows 128 operations in one).
const ACLS_PER_TRANSACTION: usize = 100;

impl Coordinator {
    /// Every ACL.
    pub fn acls(&self) -> Vec<AclBinding> {
        self.read().acls.iter().cloned().collect()
    }

    /// Grows whenever the set of ACLs may have changed: what was decided from `acls()`
    /// while it had a value holds while it keeps it.
    pub fn acl_changes(&self) -> u64 {
        self.read().acl_changes
    }

    /// Stores `acls` (an ACL that exists already stays as it is).
    pub async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<(), CoordinatorError> {
        self.commit_acls(acls, |chunk| Changes {
            puts: chunk.iter().cloned().map(Record::Acl).collect(),
            ..Changes::default()
        })
        .await
    }

    /// Removes `acls` (one that is gone already is no error).
    pub async fn delete_acls(&self, acls: Vec<AclBinding>) -> Result<(), CoordinatorError> {
        self.commit_acls(acls, |chunk| Changes {
            deletes: chunk.iter().cloned().map(Key::Acl).collect(),
            ..Changes::default()
        })
        .await
    }

    /// Commits `changes` of each chunk of `acls`, in transactions etcd accepts.
    async fn commit_acls(
        &self,
        acls: Vec<AclBinding>,
        changes: impl Fn(&[AclBinding]) -> Changes,
    ) -> Result<(), CoordinatorError> {
        // A transaction names each key once.
        let acls: Vec<AclBinding> = acls
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in acls.chunks(ACLS_PER_TRANSACTION) {
            let guard = self.lock_writes().await;
            self.commit(guard, changes(chunk)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, TestStore};
    use super::*;
    use crate::acl::{AclOperation, AclPermission, PatternType, ResourceType};

    fn acl(name: &str, operation: AclOperation) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: name.to_string(),
            principal: "User:alice".to_string(),
            host: "*".to_string(),
            operation,
            permission: AclPermission::Allow,
        }
    }

    #[tokio::test]
    async fn acls_are_stored_once_deleted_and_survive_a_reopen() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let before = coordinator.acl_changes();
        let read = acl("orders/eu", AclOperation::Read);
        let write = acl("orders/eu", AclOperation::Write);
        coordinator
            .create_acls(vec![read.clone(), write.clone(), read.clone()])
            .await
            .unwrap();
        assert_ne!(coordinator.acl_changes(), before);
        assert_eq!(coordinator.acls(), vec![read.clone(), write.clone()]);
        coordinator.delete_acls(vec![write.clone()]).await.unwrap();
        coordinator.delete_acls(vec![write]).await.unwrap();
        assert_eq!(coordinator.acls(), vec![read.clone()]);
        let reopened = open(&store).await;
        assert_eq!(reopened.acls(), vec![read]);
    }
}
