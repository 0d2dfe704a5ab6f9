//! Users' SCRAM credentials (AlterUserScramCredentials, DescribeUserScramCredentials, and
//! SASL authentication on every gateway): per user and mechanism the salt, the iteration
//! count and the stored and server keys; never the password or the salted password.

use std::collections::BTreeMap;

use super::records::{Changes, Key, Record};
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::{ScramCredential, ScramMechanism};

impl Coordinator {
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<ScramCredential> {
        self.read()
            .scram_credentials
            .get(&(user.to_string(), mechanism))
            .cloned()
    }

    /// Every user with credentials: their mechanisms and iteration counts.
    pub fn scram_users(&self) -> BTreeMap<String, Vec<(ScramMechanism, i32)>> {
        let mut users: BTreeMap<String, Vec<(ScramMechanism, i32)>> = BTreeMap::new();
        for ((user, mechanism), credential) in &self.read().scram_credentials {
            users
                .entry(user.clone())
                .or_default()
                .push((*mechanism, credential.iterations));
        }
        users
    }

    /// Stores `upsertions` and removes `deletions` in one transaction.
    pub async fn alter_scram_credentials(
        &self,
        upsertions: Vec<ScramCredential>,
        deletions: Vec<(String, ScramMechanism)>,
    ) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = Changes {
            puts: upsertions
                .into_iter()
                .map(Record::ScramCredential)
                .collect(),
            deletes: deletions
                .into_iter()
                .map(|(user, mechanism)| Key::ScramCredential(user, mechanism))
                .collect(),
            ..Changes::default()
        };
        self.commit(guard, changes).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, TestStore};
    use super::*;

    fn credential(user: &str, mechanism: ScramMechanism, iterations: i32) -> ScramCredential {
        ScramCredential {
            user: user.to_string(),
            mechanism,
            salt: vec![1, 2, 3],
            stored_key: vec![4; 32],
            server_key: vec![5; 32],
            iterations,
        }
    }

    #[tokio::test]
    async fn credentials_are_stored_replaced_and_deleted_durably() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let alice = credential("alice/ops%", ScramMechanism::Sha256, 4096);
        coordinator
            .alter_scram_credentials(
                vec![
                    alice.clone(),
                    credential("bob", ScramMechanism::Sha512, 8192),
                ],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            coordinator.scram_credential("alice/ops%", ScramMechanism::Sha256),
            Some(alice)
        );
        assert_eq!(
            coordinator.scram_credential("alice/ops%", ScramMechanism::Sha512),
            None
        );
        coordinator
            .alter_scram_credentials(
                vec![credential("bob", ScramMechanism::Sha256, 5000)],
                vec![("alice/ops%".to_string(), ScramMechanism::Sha256)],
            )
            .await
            .unwrap();
        let users = coordinator.scram_users();
        assert_eq!(
            users,
            BTreeMap::from([(
                "bob".to_string(),
                vec![
                    (ScramMechanism::Sha256, 5000),
                    (ScramMechanism::Sha512, 8192)
                ]
            )])
        );
        let reopened = open(&store).await;
        assert_eq!(reopened.scram_users(), users);
    }
}
