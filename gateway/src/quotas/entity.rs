//! Which quota entity's value applies to a client (Kafka's DefaultQuotaCallback), and the
//! tags its usage is measured under.

use coordinator::{ClientQuotaEntity, ClientQuotas, QuotaName};

/// The (user, client id) a quota's usage is measured under: clients with the same tags
/// share one measurement. A part the entity does not name is empty, so all the clients of
/// a user quota (`/config/users/<user>`) share it, whatever their client ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaTags {
    pub user: String,
    pub client_id: String,
}

/// The quota of `key` for `user` and `client_id`, from the first entity that sets it in
/// Kafka's order of precedence:
/// 1. `/config/users/<user>/clients/<client-id>`
/// 2. `/config/users/<user>/clients/<default>`
/// 3. `/config/users/<user>`
/// 4. `/config/users/<default>/clients/<client-id>`
/// 5. `/config/users/<default>/clients/<default>`
/// 6. `/config/users/<default>`
/// 7. `/config/clients/<client-id>`
/// 8. `/config/clients/<default>`
pub fn resolve(
    quotas: &ClientQuotas,
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(QuotaTags, f64)> {
    let named = |name: &str| Some(QuotaName::Name(name.to_string()));
    let default = || Some(QuotaName::Default);
    // Each entity with whether its measurement is per user, per client id, or both.
    let order = [
        (named(user), named(client_id), true, true),
        (named(user), default(), true, true),
        (named(user), None, true, false),
        (default(), named(client_id), true, true),
        (default(), default(), true, true),
        (default(), None, true, false),
        (None, named(client_id), false, true),
        (None, default(), false, true),
    ];
    order
        .into_iter()
        .find_map(|(user_part, client_part, by_user, by_client)| {
            let entity = ClientQuotaEntity {
                user: user_part,
                client_id: client_part,
            };
            let limit = *quotas.get(&entity)?.get(key)?;
            let tags = QuotaTags {
                user: if by_user { user } else { "" }.to_string(),
                client_id: if by_client { client_id } else { "" }.to_string(),
            };
            Some((tags, limit))
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const KEY: &str = "producer_byte_rate";

    fn name(s: &str) -> Option<QuotaName> {
        match s {
            "<default>" => Some(QuotaName::Default),
            "" => None,
            s => Some(QuotaName::Name(s.to_string())),
        }
    }

    fn quotas(entities: &[(&str, &str, f64)]) -> ClientQuotas {
        entities
            .iter()
            .map(|&(user, client_id, value)| {
                let entity = ClientQuotaEntity {
                    user: name(user),
                    client_id: name(client_id),
                };
                (entity, BTreeMap::from([(KEY.to_string(), value)]))
            })
            .collect()
    }

    fn limit(quotas: &ClientQuotas, user: &str, client_id: &str) -> Option<(String, String, f64)> {
        resolve(quotas, user, client_id, KEY)
            .map(|(tags, limit)| (tags.user, tags.client_id, limit))
    }

    #[test]
    fn precedence_is_kafkas() {
        let levels = [
            ("alice", "app", 1.0),
            ("alice", "<default>", 2.0),
            ("alice", "", 3.0),
            ("<default>", "app", 4.0),
            ("<default>", "<default>", 5.0),
            ("<default>", "", 6.0),
            ("", "app", 7.0),
            ("", "<default>", 8.0),
        ];
        let expected_tags = [
            ("alice", "app"),
            ("alice", "app"),
            ("alice", ""),
            ("alice", "app"),
            ("alice", "app"),
            ("alice", ""),
            ("", "app"),
            ("", "app"),
        ];
        // Removing the most specific level each time leaves the next one in force.
        for skip in 0..levels.len() {
            let configured = quotas(&levels[skip..]);
            let (user, client_id) = expected_tags[skip];
            assert_eq!(
                limit(&configured, "alice", "app"),
                Some((user.to_string(), client_id.to_string(), levels[skip].2)),
                "with levels {}.. configured",
                skip + 1
            );
        }
        assert_eq!(limit(&quotas(&[]), "alice", "app"), None);
    }

    #[test]
    fn other_users_and_clients_do_not_match() {
        let configured = quotas(&[("bob", "", 1.0), ("", "other", 2.0), ("alice", "x", 3.0)]);
        assert_eq!(limit(&configured, "alice", "app"), None);
        // A quota of another key does not apply.
        assert_eq!(
            resolve(&configured, "bob", "app", "consumer_byte_rate"),
            None
        );
    }
}
