//! Kafka's authorization rule over a set of ACLs (StandardAuthorizer's): a super user may do
//! anything; otherwise the ACLs of the resource are those naming it (LITERAL), naming `*`,
//! or naming a prefix of it (PREFIXED). With none, `allow.everyone.if.no.acl.found`
//! decides. A DENY that matches the principal, host and operation (or ALL) refuses; else an
//! ALLOW that matches them, or an operation that implies the one asked for, permits; else
//! the answer is no.

use std::collections::HashMap;

use coordinator::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};

/// The resource name that matches every resource of its type in a LITERAL ACL.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal that matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host that matches every client address.
pub const WILDCARD_HOST: &str = "*";

/// Who asks: a principal (`User:name`) from a client address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// One ACL's entry: who, from where, what, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    principal: String,
    host: String,
    operation: AclOperation,
    permission: AclPermission,
}

impl Entry {
    fn applies_to(&self, requester: Requester<'_>) -> bool {
        let principal = self.principal == requester.principal
            || (self.principal == WILDCARD_PRINCIPAL && requester.principal.starts_with("User:"));
        principal && (self.host == WILDCARD_HOST || self.host == requester.host)
    }
}

/// The ACLs of one resource type, by pattern.
#[derive(Debug, Default)]
struct ResourceAcls {
    literal: HashMap<String, Vec<Entry>>,
    prefixed: Vec<(String, Vec<Entry>)>,
}

/// Every ACL, arranged to find those of a resource.
#[derive(Debug, Default)]
pub struct AclIndex {
    by_type: HashMap<ResourceType, ResourceAcls>,
}

impl AclIndex {
    pub fn new(acls: impl IntoIterator<Item = AclBinding>) -> Self {
        let mut by_type: HashMap<ResourceType, ResourceAcls> = HashMap::new();
        let mut prefixed: HashMap<(ResourceType, String), Vec<Entry>> = HashMap::new();
        for acl in acls {
            let entry = Entry {
                principal: acl.principal,
                host: acl.host,
                operation: acl.operation,
                permission: acl.permission,
            };
            match acl.pattern_type {
                PatternType::Literal => by_type
                    .entry(acl.resource_type)
                    .or_default()
                    .literal
                    .entry(acl.resource_name)
                    .or_default()
                    .push(entry),
                PatternType::Prefixed => prefixed
                    .entry((acl.resource_type, acl.resource_name))
                    .or_default()
                    .push(entry),
            }
        }
        for ((resource_type, prefix), entries) in prefixed {
            by_type
                .entry(resource_type)
                .or_default()
                .prefixed
                .push((prefix, entries));
        }
        AclIndex { by_type }
    }

    /// Whether `requester` may do `operation` on the resource, by the ACLs alone (super
    /// users are the caller's): None when no ACL names the resource at all.
    pub fn authorize(
        &self,
        requester: Requester<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> Option<bool> {
        let acls = self.by_type.get(&resource_type)?;
        let entries: Vec<&Entry> = [name, WILDCARD_RESOURCE]
            .iter()
            .filter_map(|n| acls.literal.get(*n))
            .chain(
                acls.prefixed
                    .iter()
                    .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                    .map(|(_, entries)| entries),
            )
            .flatten()
            .collect();
        if entries.is_empty() {
            return None;
        }
        let applying = || entries.iter().filter(|e| e.applies_to(requester));
        let denied = applying().any(|e| {
            e.permission == AclPermission::Deny
                && (e.operation == operation || e.operation == AclOperation::All)
        });
        if denied {
            return Some(false);
        }
        Some(
            applying()
                .any(|e| e.permission == AclPermission::Allow && implies(e.operation, operation)),
        )
    }
}

impl AclIndex {
    /// Whether `requester` may do `operation` on some resource of the type: an ALLOW that
    /// applies, unless a DENY of it applies to every resource (`*`). None when no ACL names a
    /// resource of the type.
    pub fn authorize_any(
        &self,
        requester: Requester<'_>,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Option<bool> {
        let acls = self.by_type.get(&resource_type)?;
        let entries = acls
            .literal
            .values()
            .chain(acls.prefixed.iter().map(|(_, entries)| entries))
            .flatten()
            .filter(|e| e.applies_to(requester));
        let denied_everywhere = acls.literal.get(WILDCARD_RESOURCE).is_some_and(|entries| {
            entries.iter().any(|e| {
                e.applies_to(requester)
                    && e.permission == AclPermission::Deny
                    && (e.operation == operation || e.operation == AclOperation::All)
            })
        });
        let allowed = entries
            .clone()
            .any(|e| e.permission == AclPermission::Allow && implies(e.operation, operation));
        Some(allowed && !denied_everywhere)
    }
}

/// Whether an ALLOW of `granted` allows `operation` (Kafka's implied operations: reading,
/// writing, deleting or altering a resource lets one describe it; altering its configs
/// lets one describe them).
pub fn implies(granted: AclOperation, operation: AclOperation) -> bool {
    use AclOperation::*;
    granted == operation
        || granted == All
        || (operation == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (operation == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AclOperation::*;
    use ResourceType::*;

    fn acl(
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
        principal: &str,
        host: &str,
        operation: AclOperation,
        permission: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type,
            resource_name: name.to_string(),
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        }
    }

    fn allow(name: &str, principal: &str, operation: AclOperation) -> AclBinding {
        acl(
            Topic,
            PatternType::Literal,
            name,
            principal,
            "*",
            operation,
            AclPermission::Allow,
        )
    }

    const ALICE: Requester = Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    };
    const BOB: Requester = Requester {
        principal: "User:bob",
        host: "10.0.0.2",
    };

    #[test]
    fn literal_acls_name_one_resource_and_star_names_all() {
        let index = AclIndex::new([
            allow("orders", "User:alice", Read),
            allow("*", "User:bob", Write),
        ]);
        assert_eq!(index.authorize(ALICE, Read, Topic, "orders"), Some(true));
        assert_eq!(index.authorize(ALICE, Write, Topic, "orders"), Some(false));
        assert_eq!(index.authorize(ALICE, Read, Topic, "payments"), Some(false));
        assert_eq!(index.authorize(BOB, Write, Topic, "payments"), Some(true));
        // The same name under another resource type is another resource.
        assert_eq!(index.authorize(ALICE, Read, Group, "orders"), None);
    }

    #[test]
    fn prefixed_acls_name_every_resource_that_starts_with_them() {
        let index = AclIndex::new([acl(
            Topic,
            PatternType::Prefixed,
            "orders.",
            "User:alice",
            "*",
            Read,
            AclPermission::Allow,
        )]);
        assert_eq!(index.authorize(ALICE, Read, Topic, "orders.eu"), Some(true));
        assert_eq!(index.authorize(ALICE, Read, Topic, "orders."), Some(true));
        assert_eq!(index.authorize(ALICE, Read, Topic, "orders"), None);
        assert_eq!(index.authorize(BOB, Read, Topic, "orders.eu"), Some(false));
    }

    #[test]
    fn deny_wins_over_allow_whatever_pattern_carries_it() {
        let index = AclIndex::new([
            allow("*", "User:*", All),
            acl(
                Topic,
                PatternType::Prefixed,
                "secret",
                "User:alice",
                "*",
                Read,
                AclPermission::Deny,
            ),
        ]);
        assert_eq!(
            index.authorize(ALICE, Read, Topic, "secret.keys"),
            Some(false)
        );
        // A denied READ is not a denied DESCRIBE: only DENY of the operation or ALL refuses.
        assert_eq!(
            index.authorize(ALICE, Describe, Topic, "secret.keys"),
            Some(true)
        );
        assert_eq!(index.authorize(BOB, Read, Topic, "secret.keys"), Some(true));
        let all_denied = AclIndex::new([
            allow("t", "User:alice", Read),
            acl(
                Topic,
                PatternType::Literal,
                "t",
                "User:*",
                "*",
                All,
                AclPermission::Deny,
            ),
        ]);
        assert_eq!(all_denied.authorize(ALICE, Read, Topic, "t"), Some(false));
    }

    #[test]
    fn host_must_be_the_clients_address_or_star() {
        let index = AclIndex::new([acl(
            Topic,
            PatternType::Literal,
            "t",
            "User:alice",
            "10.0.0.1",
            Read,
            AclPermission::Allow,
        )]);
        assert_eq!(index.authorize(ALICE, Read, Topic, "t"), Some(true));
        let elsewhere = Requester {
            host: "10.0.0.9",
            ..ALICE
        };
        assert_eq!(index.authorize(elsewhere, Read, Topic, "t"), Some(false));
    }

    #[test]
    fn wildcard_principal_matches_users_only() {
        let index = AclIndex::new([allow("t", "User:*", Read)]);
        assert_eq!(index.authorize(BOB, Read, Topic, "t"), Some(true));
        let group = Requester {
            principal: "Group:ops",
            host: "10.0.0.1",
        };
        assert_eq!(index.authorize(group, Read, Topic, "t"), Some(false));
    }

    #[test]
    fn authorize_any_finds_an_allow_on_some_resource() {
        let index = AclIndex::new([
            acl(
                Topic,
                PatternType::Prefixed,
                "orders.",
                "User:alice",
                "*",
                Write,
                AclPermission::Allow,
            ),
            allow("t", "User:bob", Read),
        ]);
        assert_eq!(index.authorize_any(ALICE, Write, Topic), Some(true));
        assert_eq!(index.authorize_any(BOB, Write, Topic), Some(false));
        assert_eq!(index.authorize_any(ALICE, Write, Group), None);
        let denied = AclIndex::new([
            allow("t", "User:alice", Write),
            acl(
                Topic,
                PatternType::Literal,
                "*",
                "User:alice",
                "*",
                Write,
                AclPermission::Deny,
            ),
        ]);
        assert_eq!(denied.authorize_any(ALICE, Write, Topic), Some(false));
    }

    #[test]
    fn operations_imply_describe_as_in_kafka() {
        for granted in [Read, Write, Delete, Alter, All] {
            assert!(implies(granted, Describe), "{granted:?}");
        }
        for granted in [Create, ClusterAction, DescribeConfigs, IdempotentWrite] {
            assert!(!implies(granted, Describe), "{granted:?}");
        }
        assert!(implies(AlterConfigs, DescribeConfigs));
        assert!(!implies(DescribeConfigs, AlterConfigs));
        assert!(!implies(Describe, Read));
        assert!(!implies(Write, Read));
        let index = AclIndex::new([allow("t", "User:alice", Write)]);
        assert_eq!(index.authorize(ALICE, Describe, Topic, "t"), Some(true));
    }
}
