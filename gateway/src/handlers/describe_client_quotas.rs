//! DescribeClientQuotas: the quota entities a filter matches, with their values, matched
//! as Kafka's ClientQuotasImage matches them. A component matches an exact name
//! (match type 0), the default entity of its type (1), or any entity of its type,
//! default or named (2); with `strict`, an entity must have no other type.

use std::collections::{BTreeMap, BTreeSet};

use coordinator::acl::AclOperation;
use coordinator::{ClientQuotaEntity, QuotaName};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use proto_compat::kafka_protocol::messages::describe_client_quotas_response::{
    EntityData, EntryData, ValueData,
};
use proto_compat::kafka_protocol::messages::{
    DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};

use super::alter_client_quotas::{CLIENT_ID, IP, USER};
use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

const MATCH_TYPE_EXACT: i8 = 0;
const MATCH_TYPE_DEFAULT: i8 = 1;
const MATCH_TYPE_SPECIFIED: i8 = 2;

/// The filter: entity types whose name must be the given one (None: the default), and
/// entity types the entity must have.
#[derive(Debug, Default)]
struct Filter {
    exact: BTreeMap<String, Option<String>>,
    of_type: BTreeSet<String>,
    strict: bool,
}

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let mut response = DescribeClientQuotasResponse::default();
    // Kafka: DESCRIBE_CONFIGS on the cluster.
    if !broker
        .authorizer
        .cluster(session, AclOperation::DescribeConfigs)
    {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    let filter = match filter(&request.components, request.strict) {
        Ok(filter) => filter,
        Err((error, message)) => {
            response.error_code = error.code();
            response.error_message = Some(str_bytes(message));
            return response;
        }
    };
    let quotas = broker.coordinator.client_quotas();
    let entries = quotas
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            let mut entry = EntryData::default();
            entry.entity = parts(entity)
                .into_iter()
                .map(|(entity_type, name)| {
                    let mut data = EntityData::default();
                    data.entity_type = str_bytes(entity_type);
                    data.entity_name = name.map(str_bytes);
                    data
                })
                .collect();
            entry.values = values
                .iter()
                .map(|(key, value)| {
                    let mut data = ValueData::default();
                    data.key = str_bytes(key.clone());
                    data.value = *value;
                    data
                })
                .collect();
            entry
        })
        .collect();
    response.entries = Some(entries);
    response
}

fn filter(components: &[ComponentData], strict: bool) -> Result<Filter, (ResponseError, String)> {
    let invalid = |message: String| (ResponseError::InvalidRequest, message);
    let mut filter = Filter {
        strict,
        ..Filter::default()
    };
    for component in components {
        let entity_type = component.entity_type.to_string();
        if entity_type.is_empty() {
            return Err(invalid("Invalid empty entity type.".to_string()));
        }
        if filter.exact.contains_key(&entity_type) || filter.of_type.contains(&entity_type) {
            return Err(invalid(format!(
                "Entity type {entity_type} cannot appear more than once in the filter."
            )));
        }
        if ![USER, CLIENT_ID, IP].contains(&entity_type.as_str()) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {entity_type}"),
            ));
        }
        let name = component._match.as_ref().map(|m| m.to_string());
        match (component.match_type, name) {
            (MATCH_TYPE_EXACT, None) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".to_string(),
                ))
            }
            (MATCH_TYPE_EXACT, name) => {
                filter.exact.insert(entity_type, name);
            }
            (MATCH_TYPE_DEFAULT, None) => {
                filter.exact.insert(entity_type, None);
            }
            (MATCH_TYPE_SPECIFIED, None) => {
                filter.of_type.insert(entity_type);
            }
            (MATCH_TYPE_DEFAULT, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                        .to_string(),
                ))
            }
            (MATCH_TYPE_SPECIFIED, Some(_)) => {
                return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .to_string(),
                ))
            }
            (other, _) => {
                return Err((
                    ResponseError::UnsupportedVersion,
                    format!("Unknown match type {other}"),
                ))
            }
        }
    }
    let has = |t: &str| filter.exact.contains_key(t) || filter.of_type.contains(t);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component."
                .to_string(),
        ));
    }
    Ok(filter)
}

/// The entity's types with their names (None: the default).
fn parts(entity: &ClientQuotaEntity) -> Vec<(&'static str, Option<String>)> {
    let name = |n: &QuotaName| n.as_option().map(str::to_string);
    let mut parts = Vec::with_capacity(2);
    if let Some(user) = &entity.user {
        parts.push((USER, name(user)));
    }
    if let Some(client_id) = &entity.client_id {
        parts.push((CLIENT_ID, name(client_id)));
    }
    parts
}

impl Filter {
    fn matches(&self, entity: &ClientQuotaEntity) -> bool {
        let parts: BTreeMap<&str, Option<String>> = parts(entity).into_iter().collect();
        if self.strict && parts.len() != self.exact.len() + self.of_type.len() {
            return false;
        }
        self.exact
            .iter()
            .all(|(entity_type, name)| parts.get(entity_type.as_str()) == Some(name))
            && self
                .of_type
                .iter()
                .all(|entity_type| parts.contains_key(entity_type.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(entity_type: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(str_bytes(entity_type))
            .with_match_type(match_type)
            .with_match(name.map(str_bytes))
    }

    fn entity(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> ClientQuotaEntity {
        let name = |n: Option<&str>| match n {
            Some(n) => QuotaName::Name(n.to_string()),
            None => QuotaName::Default,
        };
        ClientQuotaEntity {
            user: user.map(name),
            client_id: client_id.map(name),
        }
    }

    #[test]
    fn filters_match_as_kafkas() {
        let alice = entity(Some(Some("alice")), None);
        let default_user = entity(Some(None), None);
        let alice_app = entity(Some(Some("alice")), Some(Some("app")));
        let app = entity(None, Some(Some("app")));
        let all = [&alice, &default_user, &alice_app, &app];
        let matching = |components: &[ComponentData], strict: bool| -> Vec<ClientQuotaEntity> {
            let filter = filter(components, strict).unwrap();
            all.iter()
                .filter(|e| filter.matches(e))
                .map(|e| (*e).clone())
                .collect()
        };
        let exact_alice = [component(USER, MATCH_TYPE_EXACT, Some("alice"))];
        assert_eq!(
            matching(&exact_alice, false),
            vec![alice.clone(), alice_app.clone()]
        );
        assert_eq!(matching(&exact_alice, true), vec![alice.clone()]);
        assert_eq!(
            matching(&[component(USER, MATCH_TYPE_DEFAULT, None)], true),
            vec![default_user.clone()]
        );
        assert_eq!(
            matching(&[component(USER, MATCH_TYPE_SPECIFIED, None)], true),
            vec![alice.clone(), default_user.clone()]
        );
        assert_eq!(
            matching(&[component(CLIENT_ID, MATCH_TYPE_SPECIFIED, None)], false),
            vec![alice_app.clone(), app.clone()]
        );
        assert_eq!(matching(&[], false).len(), 4);
        assert!(matching(&[], true).is_empty());
    }

    #[test]
    fn bad_filters_are_refused() {
        let refused = |components: &[ComponentData]| filter(components, false).unwrap_err();
        assert_eq!(
            refused(&[component(USER, MATCH_TYPE_EXACT, None)]).0,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            refused(&[component(USER, MATCH_TYPE_DEFAULT, Some("x"))]).0,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            refused(&[
                component(USER, MATCH_TYPE_SPECIFIED, None),
                component(USER, MATCH_TYPE_DEFAULT, None)
            ])
            .0,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            refused(&[component("group", MATCH_TYPE_SPECIFIED, None)]).0,
            ResponseError::UnsupportedVersion
        );
        assert_eq!(
            refused(&[component(USER, 7, None)]).0,
            ResponseError::UnsupportedVersion
        );
        assert_eq!(
            refused(&[
                component(IP, MATCH_TYPE_SPECIFIED, None),
                component(USER, MATCH_TYPE_SPECIFIED, None)
            ])
            .0,
            ResponseError::InvalidRequest
        );
    }
}
