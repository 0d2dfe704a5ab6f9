//! Kafka's AclBindingFilter, as DescribeAcls and DeleteAcls carry it: which ACLs a request
//! means, with ANY for any value, MATCH for every pattern that applies to a resource name,
//! and no name, principal or host for any.

use coordinator::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};

use super::acl_index::WILDCARD_RESOURCE;

/// Kafka's ANY code, shared by resource types, pattern types, operations and permissions.
const ANY: i8 = 1;
/// PatternType MATCH.
const MATCH: i8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternFilter {
    Any,
    Match,
    Exactly(PatternType),
}

/// A filter of ACLs; None fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    resource_type: Option<ResourceType>,
    resource_name: Option<String>,
    pattern_type: PatternFilter,
    principal: Option<String>,
    host: Option<String>,
    operation: Option<AclOperation>,
    permission: Option<AclPermission>,
}

/// The codes of a filter as a request carries them.
pub struct FilterCodes<'a> {
    pub resource_type: i8,
    pub resource_name: Option<&'a str>,
    pub pattern_type: i8,
    pub principal: Option<&'a str>,
    pub host: Option<&'a str>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// The filter, or why it is not one (Kafka answers INVALID_REQUEST): a code that is
    /// UNKNOWN or not Kafka's, or a resource type Strata does not serve.
    pub fn parse(codes: FilterCodes<'_>) -> Result<AclFilter, String> {
        let any_or = |code: i8, what: &str, parse: &dyn Fn(i8) -> bool| {
            if code == ANY || parse(code) {
                Ok(())
            } else {
                Err(format!(
                    "unknown or unsupported {what} {code} in the filter"
                ))
            }
        };
        any_or(codes.resource_type, "resource type", &|c| {
            ResourceType::from_code(c).is_some()
        })?;
        any_or(codes.operation, "operation", &|c| {
            AclOperation::from_code(c).is_some()
        })?;
        any_or(codes.permission, "permission type", &|c| {
            AclPermission::from_code(c).is_some()
        })?;
        let pattern_type = match codes.pattern_type {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            code => PatternFilter::Exactly(
                PatternType::from_code(code)
                    .ok_or_else(|| format!("unknown pattern type {code} in the filter"))?,
            ),
        };
        Ok(AclFilter {
            resource_type: ResourceType::from_code(codes.resource_type),
            resource_name: codes.resource_name.map(str::to_string),
            pattern_type,
            principal: codes.principal.map(str::to_string),
            host: codes.host.map(str::to_string),
            operation: AclOperation::from_code(codes.operation),
            permission: AclPermission::from_code(codes.permission),
        })
    }

    /// Kafka's AclBindingFilter.matches.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        fn is<T: PartialEq>(wanted: &Option<T>, actual: &T) -> bool {
            wanted.as_ref().is_none_or(|w| w == actual)
        }
        is(&self.resource_type, &acl.resource_type)
            && self.matches_pattern(acl)
            && self.principal.as_deref().is_none_or(|p| p == acl.principal)
            && self.host.as_deref().is_none_or(|h| h == acl.host)
            && is(&self.operation, &acl.operation)
            && is(&self.permission, &acl.permission)
    }

    /// Kafka's ResourcePatternFilter.matches.
    fn matches_pattern(&self, acl: &AclBinding) -> bool {
        if let PatternFilter::Exactly(pattern_type) = self.pattern_type {
            if pattern_type != acl.pattern_type {
                return false;
            }
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type != PatternFilter::Match {
            return *name == acl.resource_name;
        }
        match acl.pattern_type {
            PatternType::Literal => {
                *name == acl.resource_name || acl.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&acl.resource_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(pattern_type: PatternType, name: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type,
            resource_name: name.to_string(),
            principal: "User:alice".to_string(),
            host: "*".to_string(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }

    fn filter(resource_type: i8, name: Option<&str>, pattern_type: i8) -> AclFilter {
        AclFilter::parse(FilterCodes {
            resource_type,
            resource_name: name,
            pattern_type,
            principal: None,
            host: None,
            operation: ANY,
            permission: ANY,
        })
        .unwrap()
    }

    #[test]
    fn match_finds_every_acl_that_applies_to_a_name() {
        let literal = acl(PatternType::Literal, "orders.eu");
        let wildcard = acl(PatternType::Literal, "*");
        let prefixed = acl(PatternType::Prefixed, "orders.");
        let other = acl(PatternType::Literal, "orders");
        let matching = filter(2, Some("orders.eu"), MATCH);
        for a in [&literal, &wildcard, &prefixed] {
            assert!(matching.matches(a), "{a:?}");
        }
        assert!(!matching.matches(&other));
        // ANY with a name: that exact name, of any pattern type.
        let exact = filter(ANY, Some("orders."), ANY);
        assert!(exact.matches(&prefixed));
        assert!(!exact.matches(&literal));
        let prefixed_only = filter(2, None, 4);
        assert!(prefixed_only.matches(&prefixed));
        assert!(!prefixed_only.matches(&literal));
        assert!(!filter(3, None, ANY).matches(&literal));
    }

    #[test]
    fn unknown_codes_are_refused() {
        let parse = |resource_type, pattern_type, operation, permission| {
            AclFilter::parse(FilterCodes {
                resource_type,
                resource_name: None,
                pattern_type,
                principal: None,
                host: None,
                operation,
                permission,
            })
        };
        assert!(parse(0, ANY, ANY, ANY).is_err());
        assert!(parse(6, ANY, ANY, ANY).is_err());
        assert!(parse(ANY, 0, ANY, ANY).is_err());
        assert!(parse(ANY, ANY, 0, ANY).is_err());
        assert!(parse(ANY, ANY, ANY, 0).is_err());
        assert!(parse(ANY, ANY, ANY, ANY).is_ok());
    }
}
