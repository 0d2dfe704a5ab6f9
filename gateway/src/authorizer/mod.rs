//! Authorization: whether a connection's principal may do an operation on a resource, by
//! Kafka's ACL rules (`acl_index`) over the ACLs in the coordinator, with super users and
//! `allow.everyone.if.no.acl.found`. Decisions are cached per connection until the set of
//! ACLs changes, so a produce or fetch costs a lookup.

pub mod acl_filter;
pub mod acl_index;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use coordinator::acl::{AclOperation, ResourceType};
use coordinator::Coordinator;
use proto_compat::kafka_protocol::error::ResponseError;

use self::acl_index::{AclIndex, Requester};
use crate::connection::Session;

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Kafka's authorizers that Strata's is: either name turns authorization on.
const AUTHORIZER_CLASS_NAMES: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// Decisions a connection keeps per resource type before it starts afresh.
const MAX_CACHED_RESOURCES: usize = 10_000;

/// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthorizerSettings {
    /// Empty: no authorizer, every request is allowed and the ACL APIs answer
    /// SECURITY_DISABLED.
    pub class_name: String,
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerSettings {
    pub fn parse_class_name(value: &str) -> Result<String, String> {
        let name = value.trim();
        if name.is_empty() || AUTHORIZER_CLASS_NAMES.contains(&name) {
            Ok(name.to_string())
        } else {
            Err(format!(
                "authorizer {name} is not supported: leave authorizer.class.name empty, or name {}",
                AUTHORIZER_CLASS_NAMES.join(" or ")
            ))
        }
    }

    pub fn parse_super_users(value: &str) -> Result<Vec<String>, String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(p.to_string()),
                _ => Err(format!("super user {p} is not a principal (User:name)")),
            })
            .collect()
    }
}

pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_everyone_if_no_acl_found: bool,
    coordinator: Arc<Coordinator>,
    /// The ACLs as of a value of `Coordinator::acl_changes`.
    index: RwLock<(u64, Arc<AclIndex>)>,
}

impl Authorizer {
    pub fn new(settings: &AuthorizerSettings, coordinator: Arc<Coordinator>) -> Self {
        Authorizer {
            enabled: !settings.class_name.is_empty(),
            super_users: settings.super_users.clone(),
            allow_everyone_if_no_acl_found: settings.allow_everyone_if_no_acl_found,
            coordinator,
            index: RwLock::new((u64::MAX, Arc::default())),
        }
    }

    pub fn topic(&self, session: &Session, operation: AclOperation, name: &str) -> bool {
        self.authorize(session, operation, ResourceType::Topic, name)
    }

    pub fn group(&self, session: &Session, operation: AclOperation, name: &str) -> bool {
        self.authorize(session, operation, ResourceType::Group, name)
    }

    pub fn cluster(&self, session: &Session, operation: AclOperation) -> bool {
        self.authorize(session, operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub fn transactional_id(&self, session: &Session, operation: AclOperation, id: &str) -> bool {
        self.authorize(session, operation, ResourceType::TransactionalId, id)
    }

    /// Kafka's rule for creating a topic (explicitly or by auto-creation): CREATE on the
    /// cluster or on the topic.
    pub fn may_create_topic(&self, session: &Session, name: &str) -> bool {
        self.cluster(session, AclOperation::Create)
            || self.topic(session, AclOperation::Create, name)
    }

    /// Whether the principal may do `operation` on some resource of the type (Kafka's
    /// authorizeByResourceType, which lets a producer that may write a topic be idempotent
    /// without IDEMPOTENT_WRITE on the cluster): an ALLOW for it that no DENY on every
    /// resource of the type (`*`) cancels. Not cached: it serves InitProducerId only.
    pub fn authorize_any(
        &self,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.enabled || self.super_users.contains(&session.principal) {
            return true;
        }
        let host = peer_host(session.peer.ip());
        let requester = Requester {
            principal: &session.principal,
            host: &host,
        };
        self.index_at(self.coordinator.acl_changes())
            .authorize_any(requester, operation, resource_type)
            .unwrap_or(self.allow_everyone_if_no_acl_found)
    }

    /// Whether the session's principal may do `operation` on the resource.
    pub fn authorize(
        &self,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let changes = self.coordinator.acl_changes();
        let mut decisions = session.decisions.0.lock().expect("decisions poisoned");
        if decisions.acl_changes != changes || decisions.principal != session.principal {
            decisions.acl_changes = changes;
            decisions.principal.clone_from(&session.principal);
            decisions.by_type.clear();
        }
        let bit = 1u16 << operation.code();
        let resources = decisions.by_type.entry(resource_type).or_default();
        if let Some(known) = resources.get(name) {
            if known.decided & bit != 0 {
                return known.allowed & bit != 0;
            }
        }
        let allowed = self.decide(session, operation, resource_type, name, changes);
        if resources.len() >= MAX_CACHED_RESOURCES {
            resources.clear();
        }
        let known = resources.entry(name.to_string()).or_default();
        known.decided |= bit;
        if allowed {
            known.allowed |= bit;
        }
        allowed
    }

    /// Kafka's authorized operations bit field (bit = operation code) of the resource, for
    /// the responses that carry one: which of `operations` the principal may do.
    pub fn authorized_operations(
        &self,
        session: &Session,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        operations_of(resource_type)
            .iter()
            .filter(|&&op| self.authorize(session, op, resource_type, name))
            .fold(0, |bits, op| bits | 1 << op.code())
    }

    fn decide(
        &self,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
        changes: u64,
    ) -> bool {
        if self.super_users.contains(&session.principal) {
            return true;
        }
        let index = self.index_at(changes);
        let host = peer_host(session.peer.ip());
        let requester = Requester {
            principal: &session.principal,
            host: &host,
        };
        index
            .authorize(requester, operation, resource_type, name)
            .unwrap_or(self.allow_everyone_if_no_acl_found)
    }

    /// The index of the ACLs, rebuilt when they changed since it was built.
    fn index_at(&self, changes: u64) -> Arc<AclIndex> {
        {
            let index = self.index.read().expect("ACL index poisoned");
            if index.0 == changes {
                return index.1.clone();
            }
        }
        let mut index = self.index.write().expect("ACL index poisoned");
        // Read the changes count before the ACLs: a change in between rebuilds again.
        let changes = self.coordinator.acl_changes();
        if index.0 != changes {
            *index = (changes, Arc::new(AclIndex::new(self.coordinator.acls())));
        }
        index.1.clone()
    }
}

/// A client's address as ACLs name it: an IPv4 client on an IPv6 socket by its IPv4 form.
fn peer_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The operations a resource type has (Kafka's, as authorized operations list them).
fn operations_of(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Delete, Describe],
        ResourceType::Cluster => &[
            Create,
            Alter,
            Describe,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
        ],
        ResourceType::TransactionalId => &[Write, Describe],
    }
}

/// One connection's decisions, for its principal as of one state of the ACLs.
#[derive(Debug, Clone, Default)]
pub struct Decisions(Arc<Mutex<DecisionCache>>);

#[derive(Debug, Default)]
struct DecisionCache {
    acl_changes: u64,
    principal: String,
    by_type: HashMap<ResourceType, HashMap<String, Known>>,
}

/// Bit sets by operation code: which operations are decided, and which of them allowed.
#[derive(Debug, Default, Clone, Copy)]
struct Known {
    decided: u16,
    allowed: u16,
}

impl Authorizer {
    /// Why the ACL APIs refuse a request: SECURITY_DISABLED without an authorizer, and
    /// CLUSTER_AUTHORIZATION_FAILED when the principal may not do `operation` (ALTER to
    /// create or delete ACLs, DESCRIBE to list them) on the cluster.
    pub fn acl_api_refusal(
        &self,
        session: &Session,
        operation: AclOperation,
    ) -> Option<(ResponseError, &'static str)> {
        if !self.enabled {
            Some((
                ResponseError::SecurityDisabled,
                "No Authorizer is configured.",
            ))
        } else if !self.cluster(session, operation) {
            Some((
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.",
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coordinator::acl::{AclBinding, AclPermission, PatternType};
    use segment_store::backends::memory::MemoryStore;

    use super::*;
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::test_support::{broker, session};

    async fn broker_with(settings: AuthorizerSettings) -> (Arc<Broker>, tempfile::TempDir) {
        let config = BrokerConfig {
            authorizer: settings,
            ..BrokerConfig::default()
        };
        broker(Arc::new(MemoryStore::new()), config).await
    }

    fn on() -> AuthorizerSettings {
        AuthorizerSettings {
            class_name: AUTHORIZER_CLASS_NAMES[0].to_string(),
            super_users: vec!["User:admin".to_string()],
            allow_everyone_if_no_acl_found: false,
        }
    }

    fn allow_read(topic: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: topic.to_string(),
            principal: principal.to_string(),
            host: "*".to_string(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }

    #[tokio::test]
    async fn without_an_authorizer_everything_is_allowed() {
        let (broker, _dir) = broker_with(AuthorizerSettings::default()).await;
        let alice = session("User:alice");
        assert!(broker.authorizer.topic(&alice, AclOperation::Delete, "t"));
        assert!(broker.authorizer.cluster(&alice, AclOperation::Alter));
    }

    #[tokio::test]
    async fn super_users_bypass_acls_and_others_need_one() {
        let (broker, _dir) = broker_with(on()).await;
        let (admin, alice) = (session("User:admin"), session("User:alice"));
        assert!(broker.authorizer.topic(&admin, AclOperation::Delete, "t"));
        assert!(!broker.authorizer.topic(&alice, AclOperation::Read, "t"));
        broker
            .coordinator
            .create_acls(vec![allow_read("t", "User:alice")])
            .await
            .unwrap();
        // The decision cached before the ACL existed is not used once it does.
        assert!(broker.authorizer.topic(&alice, AclOperation::Read, "t"));
        assert!(broker.authorizer.topic(&alice, AclOperation::Describe, "t"));
        assert!(!broker.authorizer.topic(&alice, AclOperation::Write, "t"));
        broker
            .coordinator
            .delete_acls(vec![allow_read("t", "User:alice")])
            .await
            .unwrap();
        assert!(!broker.authorizer.topic(&alice, AclOperation::Read, "t"));
    }

    #[tokio::test]
    async fn allow_everyone_if_no_acl_found_opens_only_resources_without_acls() {
        let settings = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..on()
        };
        let (broker, _dir) = broker_with(settings).await;
        broker
            .coordinator
            .create_acls(vec![allow_read("guarded", "User:bob")])
            .await
            .unwrap();
        let alice = session("User:alice");
        assert!(broker.authorizer.topic(&alice, AclOperation::Write, "open"));
        assert!(!broker
            .authorizer
            .topic(&alice, AclOperation::Read, "guarded"));
    }

    #[test]
    fn settings_accept_kafkas_authorizers_and_principals() {
        for name in ["", AUTHORIZER_CLASS_NAMES[0], AUTHORIZER_CLASS_NAMES[1]] {
            assert_eq!(AuthorizerSettings::parse_class_name(name).unwrap(), name);
        }
        let refused = AuthorizerSettings::parse_class_name("com.example.Custom").unwrap_err();
        assert!(refused.contains("com.example.Custom"), "{refused}");
        assert_eq!(
            AuthorizerSettings::parse_super_users(" User:admin ;User:ANONYMOUS;").unwrap(),
            vec!["User:admin".to_string(), "User:ANONYMOUS".to_string()]
        );
        assert!(AuthorizerSettings::parse_super_users("admin").is_err());
    }
}
