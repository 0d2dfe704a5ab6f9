//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs (set, delete,
//! append, subtract single keys). Broker settings are static (the config file).

use coordinator::acl::AclOperation;
use std::collections::BTreeMap;

use coordinator::{AlterConfigOp, ConfigAlteration};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use proto_compat::kafka_protocol::protocol::StrBytes;

use super::describe_configs::{config_refusal, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub async fn handle_alter(
    broker: &Broker,
    session: &Session,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let outcome = alter(
            broker,
            session,
            resource.resource_type,
            &resource.resource_name,
            ConfigAlteration::Replace(configs),
            request.validate_only,
        )
        .await;
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    response
}

pub async fn handle_incremental(
    broker: &Broker,
    session: &Session,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let operations: Result<Vec<(String, AlterConfigOp)>, (i16, String)> = resource
            .configs
            .iter()
            .map(|c| {
                let value = || c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let op = match c.config_operation {
                    0 => AlterConfigOp::Set(value()),
                    1 => AlterConfigOp::Delete,
                    2 => AlterConfigOp::Append(value()),
                    3 => AlterConfigOp::Subtract(value()),
                    other => {
                        return Err((
                            ResponseError::InvalidRequest.code(),
                            format!("unknown config operation {other}"),
                        ))
                    }
                };
                Ok((c.name.to_string(), op))
            })
            .collect();
        let outcome = match operations {
            Ok(operations) => {
                alter(
                    broker,
                    session,
                    resource.resource_type,
                    &resource.resource_name,
                    ConfigAlteration::Incremental(operations),
                    request.validate_only,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let mut result =
            incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(message));
        }
        response.responses.push(result);
    }
    response
}

async fn alter(
    broker: &Broker,
    session: &Session,
    resource_type: i8,
    name: &StrBytes,
    alteration: ConfigAlteration,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let operation = AclOperation::AlterConfigs;
    if let Some(refusal) = config_refusal(broker, session, operation, resource_type, name) {
        return Err(refusal);
    }
    match resource_type {
        RESOURCE_TOPIC => broker
            .coordinator
            .alter_topic_configs(name.as_str(), alteration, validate_only)
            .await
            .map_err(|e| (e.error_code(), e.to_string())),
        RESOURCE_BROKER => Err((
            ResponseError::InvalidRequest.code(),
            "broker settings are static: set them in the config file and restart".to_string(),
        )),
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("config resource type {other} is not supported"),
        )),
    }
}
