//! AlterClientQuotas: sets and removes quota keys of user, client-id and (user, client-id)
//! entities, with Kafka's checks (ClientQuotaControlManager). Each entity succeeds or fails
//! on its own; the valid ones are stored in one transaction, unless `validate_only`.

use std::collections::BTreeSet;

use coordinator::acl::AclOperation;
use coordinator::{ClientQuotaEntity, QuotaAlteration, QuotaName};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData};
use proto_compat::kafka_protocol::messages::alter_client_quotas_response;
use proto_compat::kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;
use crate::quotas::{
    CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

type Refusal = (ResponseError, String);

fn invalid(message: impl Into<String>) -> Refusal {
    (ResponseError::InvalidRequest, message.into())
}

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut outcomes = Vec::with_capacity(request.entries.len());
    let mut alterations = Vec::new();
    let mut seen = BTreeSet::new();
    // Kafka: ALTER_CONFIGS on the cluster, else every entry is refused.
    let authorized = broker
        .authorizer
        .cluster(session, AclOperation::AlterConfigs);
    for entry in &request.entries {
        if !authorized {
            let refusal = (ResponseError::ClusterAuthorizationFailed, String::new());
            outcomes.push(Some(refusal));
            continue;
        }
        let checked = entity(&entry.entity).and_then(|entity| {
            if !seen.insert(entity.clone()) {
                return Err(invalid(format!("Ignoring duplicate entity {entity:?}")));
            }
            let changes = entity_alterations(&entity, entry)?;
            Ok(changes)
        });
        match checked {
            Ok(changes) => {
                alterations.extend(changes);
                outcomes.push(None);
            }
            Err(refusal) => outcomes.push(Some(refusal)),
        }
    }
    if !request.validate_only && !alterations.is_empty() {
        if let Err(e) = broker.coordinator.alter_client_quotas(alterations).await {
            let error = ResponseError::try_from_code(e.error_code())
                .unwrap_or(ResponseError::UnknownServerError);
            for outcome in outcomes.iter_mut().filter(|o| o.is_none()) {
                *outcome = Some((error, e.to_string()));
            }
        }
    }
    let mut response = AlterClientQuotasResponse::default();
    response.entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let mut result = alter_client_quotas_response::EntryData::default();
            result.entity = entry
                .entity
                .iter()
                .map(|e| {
                    let mut entity = alter_client_quotas_response::EntityData::default();
                    entity.entity_type = e.entity_type.clone();
                    entity.entity_name = e.entity_name.clone();
                    entity
                })
                .collect();
            if let Some((error, message)) = outcome {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            result
        })
        .collect();
    response
}

/// The entity an entry names, checked as Kafka's validateEntity does.
fn entity(parts: &[EntityData]) -> Result<ClientQuotaEntity, Refusal> {
    if parts.is_empty() {
        return Err(invalid("Invalid empty client quota entity"));
    }
    let mut entity = ClientQuotaEntity {
        user: None,
        client_id: None,
    };
    let mut types = BTreeSet::new();
    for part in parts {
        let entity_type = part.entity_type.as_str();
        if !types.insert(entity_type) {
            return Err(invalid(format!(
                "Invalid client quota entity, duplicate entity entry {entity_type}"
            )));
        }
        let name = match part.entity_name.as_deref() {
            Some("") => return Err(invalid(format!("Empty {entity_type} not supported"))),
            Some(name) => QuotaName::Name(name.to_string()),
            None => QuotaName::Default,
        };
        match entity_type {
            USER => entity.user = Some(name),
            CLIENT_ID => entity.client_id = Some(name),
            IP => {
                return Err(invalid(
                    "IP quotas (connection_creation_rate) are not supported",
                ))
            }
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {other}"
                )))
            }
        }
    }
    Ok(entity)
}

/// The changes an entry's ops make to `entity`: a removal of any key, or a valid value of a
/// known key (Kafka's validateQuotaKeyValue).
fn entity_alterations(
    entity: &ClientQuotaEntity,
    entry: &EntryData,
) -> Result<Vec<QuotaAlteration>, Refusal> {
    let mut keys = BTreeSet::new();
    let mut changes = Vec::with_capacity(entry.ops.len());
    for op in &entry.ops {
        let key = op.key.as_str();
        if !keys.insert(key) {
            return Err(invalid(format!(
                "Duplicate quota key {key} not updating quota for this entity"
            )));
        }
        if op.remove {
            changes.push((entity.clone(), key.to_string(), None));
            continue;
        }
        let value = op.value;
        let integral = match key {
            PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => true,
            REQUEST_PERCENTAGE => false,
            CONTROLLER_MUTATION_RATE => {
                return Err(invalid(
                    "controller_mutation_rate is not supported: topic and partition mutations are not throttled",
                ))
            }
            _ => return Err(invalid(format!("Invalid configuration key {key}"))),
        };
        if value.is_nan() || value <= 0.0 {
            return Err(invalid(format!("Quota {key} must be greater than 0")));
        }
        if integral {
            if value > i64::MAX as f64 {
                return Err(invalid(format!(
                    "Proposed value for {key} is too large for a LONG."
                )));
            }
            if (value % 1.0).abs() > 1e-6 {
                return Err(invalid(format!("{key} cannot be a fractional value.")));
            }
        }
        changes.push((entity.clone(), key.to_string(), Some(value)));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use proto_compat::kafka_protocol::messages::alter_client_quotas_request::OpData;

    use super::*;

    fn part(entity_type: &str, name: Option<&str>) -> EntityData {
        EntityData::default()
            .with_entity_type(str_bytes(entity_type))
            .with_entity_name(name.map(str_bytes))
    }

    fn op(key: &str, value: f64, remove: bool) -> OpData {
        OpData::default()
            .with_key(str_bytes(key))
            .with_value(value)
            .with_remove(remove)
    }

    fn check(parts: &[EntityData], ops: Vec<OpData>) -> Result<Vec<QuotaAlteration>, String> {
        let entity = entity(parts).map_err(|(_, message)| message)?;
        let entry = EntryData::default().with_ops(ops);
        entity_alterations(&entity, &entry).map_err(|(_, message)| message)
    }

    #[test]
    fn entities_are_checked_as_kafka_checks_them() {
        let rate = || vec![op(PRODUCER_BYTE_RATE, 1024.0, false)];
        assert_eq!(
            check(&[], rate()).unwrap_err(),
            "Invalid empty client quota entity"
        );
        assert_eq!(
            check(&[part(USER, Some("a")), part(USER, None)], rate()).unwrap_err(),
            "Invalid client quota entity, duplicate entity entry user"
        );
        assert_eq!(
            check(&[part(USER, Some(""))], rate()).unwrap_err(),
            "Empty user not supported"
        );
        assert_eq!(
            check(&[part("group", Some("g"))], rate()).unwrap_err(),
            "Unhandled client quota entity type: group"
        );
        let both = check(&[part(USER, None), part(CLIENT_ID, Some("app"))], rate()).unwrap();
        let entity = ClientQuotaEntity {
            user: Some(QuotaName::Default),
            client_id: Some(QuotaName::Name("app".into())),
        };
        assert_eq!(
            both,
            vec![(entity, PRODUCER_BYTE_RATE.into(), Some(1024.0))]
        );
    }

    #[test]
    fn keys_and_values_are_checked_as_kafka_checks_them() {
        let user = [part(USER, Some("alice"))];
        let refused = |ops| check(&user, ops).unwrap_err();
        assert_eq!(
            refused(vec![op("bytes_per_second", 1.0, false)]),
            "Invalid configuration key bytes_per_second"
        );
        assert_eq!(
            refused(vec![op(CONSUMER_BYTE_RATE, 0.0, false)]),
            "Quota consumer_byte_rate must be greater than 0"
        );
        assert_eq!(
            refused(vec![op(REQUEST_PERCENTAGE, -1.0, false)]),
            "Quota request_percentage must be greater than 0"
        );
        assert_eq!(
            refused(vec![op(PRODUCER_BYTE_RATE, 1.5, false)]),
            "producer_byte_rate cannot be a fractional value."
        );
        assert_eq!(
            refused(vec![
                op(PRODUCER_BYTE_RATE, 1.0, false),
                op(PRODUCER_BYTE_RATE, 2.0, false)
            ]),
            "Duplicate quota key producer_byte_rate not updating quota for this entity"
        );
        assert!(refused(vec![op(CONTROLLER_MUTATION_RATE, 10.0, false)])
            .starts_with("controller_mutation_rate is not supported"));
        // A fractional percentage is fine; a removal needs no valid value.
        let changes = check(
            &user,
            vec![
                op(REQUEST_PERCENTAGE, 12.5, false),
                op(CONSUMER_BYTE_RATE, 0.0, true),
            ],
        )
        .unwrap();
        assert_eq!(changes[0].2, Some(12.5));
        assert_eq!(changes[1].2, None);
    }
}
