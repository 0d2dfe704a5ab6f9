//! DescribeUserScramCredentials: the users with SCRAM credentials, each mechanism with its
//! iteration count (never a salt or key).

use coordinator::acl::AclOperation;
use std::collections::BTreeSet;

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use proto_compat::kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;

pub fn handle(
    broker: &Broker,
    session: &Session,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = broker.coordinator.scram_users();
    let mut response = DescribeUserScramCredentialsResponse::default();
    if !broker.authorizer.cluster(session, AclOperation::Describe) {
        response.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return response;
    }
    let result = |user: &str, error: Option<(ResponseError, String)>| {
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = str_bytes(user.to_string());
        match error {
            Some((error, message)) => {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            None => {
                result.credential_infos = users[user]
                    .iter()
                    .map(|(mechanism, iterations)| {
                        let mut info = CredentialInfo::default();
                        info.mechanism = mechanism.code();
                        info.iterations = *iterations;
                        info
                    })
                    .collect();
            }
        }
        result
    };
    // Null or empty: every user.
    let wanted: Vec<String> = match request.users {
        Some(wanted) if !wanted.is_empty() => {
            wanted.iter().map(|u| u.name.as_str().to_string()).collect()
        }
        _ => users.keys().cloned().collect(),
    };
    let mut seen = BTreeSet::new();
    let duplicates: BTreeSet<&String> = wanted.iter().filter(|u| !seen.insert(*u)).collect();
    let mut described = BTreeSet::new();
    for user in &wanted {
        if !described.insert(user) {
            continue;
        }
        let error = if duplicates.contains(user) {
            Some((
                ResponseError::DuplicateResource,
                format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}"),
            ))
        } else if !users.contains_key(user) {
            Some((
                ResponseError::ResourceNotFound,
                format!("Attempt to describe a user credential that does not exist: {user}"),
            ))
        } else {
            None
        };
        response.results.push(result(user, error));
    }
    response
}
