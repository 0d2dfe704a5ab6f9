//! Client quotas (AlterClientQuotas, DescribeClientQuotas, and their enforcement on every
//! gateway): one stored value per quota entity and quota key, so alterations of different
//! keys never need to read what they replace.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::records::{Changes, Key, Record};
use super::Coordinator;
use crate::error::CoordinatorError;

/// The name of one part of a quota entity: a user or client id, or the default of its type
/// (`<default>`, a null name in the protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaName {
    Default,
    Name(String),
}

impl QuotaName {
    /// The protocol's spelling: null for the default.
    pub fn as_option(&self) -> Option<&str> {
        match self {
            QuotaName::Default => None,
            QuotaName::Name(name) => Some(name),
        }
    }
}

/// Kafka's client quota entity: a user, a client id, or both (Kafka's
/// `/config/users/<user>/clients/<client-id>`); at least one is set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientQuotaEntity {
    pub user: Option<QuotaName>,
    pub client_id: Option<QuotaName>,
}

/// Every quota entity's values by quota key (`producer_byte_rate`, ...).
pub type ClientQuotas = BTreeMap<ClientQuotaEntity, BTreeMap<String, f64>>;

/// Quota keys altered per store transaction (etcd allows 128 operations).
const QUOTAS_PER_TXN: usize = 100;

/// One alteration of an entity's quota: a new value, or None to remove the key.
pub type QuotaAlteration = (ClientQuotaEntity, String, Option<f64>);

impl Coordinator {
    /// A snapshot of every configured quota; the same `Arc` until a quota changes, so a
    /// reader can tell a change with `Arc::ptr_eq`.
    pub fn client_quotas(&self) -> Arc<ClientQuotas> {
        self.read().client_quotas.clone()
    }

    /// Sets or removes quota keys of entities, in transactions of at most
    /// [`QUOTAS_PER_TXN`] keys (an error may leave the earlier ones done: each alteration
    /// stands alone, and applying one again changes nothing). Each value is stored under its
    /// own key, so concurrent alterations of other keys are not overwritten.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<QuotaAlteration>,
    ) -> Result<(), CoordinatorError> {
        for chunk in alterations.chunks(QUOTAS_PER_TXN) {
            let guard = self.lock_writes().await;
            let mut changes = Changes::default();
            for (entity, key, value) in chunk.iter().cloned() {
                match value {
                    Some(value) => changes.puts.push(Record::ClientQuota(entity, key, value)),
                    None => changes.deletes.push(Key::ClientQuota(entity, key)),
                }
            }
            self.commit(guard, changes).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, TestStore};
    use super::*;

    fn user(name: &str) -> ClientQuotaEntity {
        ClientQuotaEntity {
            user: Some(QuotaName::Name(name.to_string())),
            client_id: None,
        }
    }

    #[tokio::test]
    async fn quotas_are_stored_removed_and_reloaded() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let default_pair = ClientQuotaEntity {
            user: Some(QuotaName::Default),
            client_id: Some(QuotaName::Name("<default>/x%".to_string())),
        };
        coordinator
            .alter_client_quotas(vec![
                (user("alice"), "producer_byte_rate".into(), Some(1024.0)),
                (user("alice"), "request_percentage".into(), Some(12.5)),
                (
                    default_pair.clone(),
                    "consumer_byte_rate".into(),
                    Some(2048.0),
                ),
            ])
            .await
            .unwrap();
        let before = coordinator.client_quotas();
        coordinator
            .alter_client_quotas(vec![(user("alice"), "request_percentage".into(), None)])
            .await
            .unwrap();
        let quotas = coordinator.client_quotas();
        assert!(!Arc::ptr_eq(&before, &quotas));
        let expected = ClientQuotas::from([
            (
                user("alice"),
                BTreeMap::from([("producer_byte_rate".to_string(), 1024.0)]),
            ),
            (
                default_pair,
                BTreeMap::from([("consumer_byte_rate".to_string(), 2048.0)]),
            ),
        ]);
        assert_eq!(*quotas, expected);
        assert_eq!(*open(&store).await.client_quotas(), expected);
    }

    #[tokio::test]
    async fn many_alterations_fit_the_stores_transactions() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let alterations = (0..250)
            .map(|i| {
                (
                    user(&format!("user{i}")),
                    "producer_byte_rate".into(),
                    Some(1.0),
                )
            })
            .collect();
        coordinator.alter_client_quotas(alterations).await.unwrap();
        assert_eq!(coordinator.client_quotas().len(), 250);
    }
}
