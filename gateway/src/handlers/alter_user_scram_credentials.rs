//! AlterUserScramCredentials: creates, replaces and deletes users' SCRAM credentials, with
//! Kafka's checks. The client sends the salted password; only the stored and server keys
//! derived from it are kept. Every user's valid changes go in one transaction.

use coordinator::acl::AclOperation;
use std::collections::{BTreeMap, BTreeSet};

use coordinator::ScramMechanism;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use proto_compat::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;
use crate::sasl::scram::{self, MAX_ITERATIONS, MIN_ITERATIONS};

type Refusal = (ResponseError, String);

fn mechanism(code: i8) -> Result<ScramMechanism, Refusal> {
    ScramMechanism::from_code(code).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        format!("Unknown SCRAM mechanism {code}"),
    ))
}

pub async fn handle(
    broker: &Broker,
    session: &Session,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !broker.authorizer.cluster(session, AclOperation::Alter) {
        return refused(request);
    }
    let mut outcome: BTreeMap<String, Option<Refusal>> = BTreeMap::new();
    let mut altered = BTreeSet::new();
    let mut twice = BTreeSet::new();
    let named = request
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism))
        .chain(
            request
                .upsertions
                .iter()
                .map(|u| (u.name.as_str(), u.mechanism)),
        );
    for (user, mechanism) in named {
        outcome.entry(user.to_string()).or_insert(None);
        if !altered.insert((user.to_string(), mechanism)) {
            twice.insert(user.to_string());
        }
    }
    let mut refuse = |user: &str, refusal: Refusal| {
        let slot = outcome.entry(user.to_string()).or_insert(None);
        slot.get_or_insert(refusal);
    };
    for user in &twice {
        refuse(
            user,
            (
                ResponseError::DuplicateResource,
                format!("A user credential cannot be altered twice in the same request: {user}"),
            ),
        );
    }
    let mut deletions = Vec::new();
    for deletion in &request.deletions {
        let user = deletion.name.as_str();
        let checked = mechanism(deletion.mechanism).and_then(|mechanism| {
            if user.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Username must not be empty".to_string(),
                ));
            }
            match broker.coordinator.scram_credential(user, mechanism) {
                Some(_) => Ok(mechanism),
                None => Err((
                    ResponseError::ResourceNotFound,
                    format!(
                        "Attempt to delete a user credential that does not exist: {user} {}",
                        mechanism.name()
                    ),
                )),
            }
        });
        match checked {
            Ok(mechanism) => deletions.push((user.to_string(), mechanism)),
            Err(refusal) => refuse(user, refusal),
        }
    }
    let mut upsertions = Vec::new();
    for upsertion in &request.upsertions {
        let user = upsertion.name.as_str();
        let checked = mechanism(upsertion.mechanism).and_then(|mechanism| {
            let unacceptable =
                |why: &str| Err((ResponseError::UnacceptableCredential, why.to_string()));
            if user.is_empty() {
                return unacceptable("Username must not be empty");
            }
            if upsertion.iterations < MIN_ITERATIONS {
                return unacceptable(&format!("Too few iterations: at least {MIN_ITERATIONS}"));
            }
            if upsertion.iterations > MAX_ITERATIONS {
                return unacceptable(&format!("Too many iterations: at most {MAX_ITERATIONS}"));
            }
            if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
                return unacceptable("Salt and salted password must not be empty");
            }
            Ok(scram::credential(
                user,
                mechanism,
                &upsertion.salted_password,
                &upsertion.salt,
                upsertion.iterations,
            ))
        });
        match checked {
            Ok(credential) => upsertions.push(credential),
            Err(refusal) => refuse(user, refusal),
        }
    }
    // A user with any refused change has none of its changes made.
    let accepted = |user: &String| matches!(outcome.get(user), Some(None));
    upsertions.retain(|c| accepted(&c.user));
    deletions.retain(|(user, _)| accepted(user));
    let mut results: Vec<AlterUserScramCredentialsResult> = outcome
        .into_iter()
        .map(|(user, refusal)| {
            let mut result = AlterUserScramCredentialsResult::default();
            result.user = str_bytes(user);
            if let Some((error, message)) = refusal {
                result.error_code = error.code();
                result.error_message = Some(str_bytes(message));
            }
            result
        })
        .collect();
    if let Err(e) = broker
        .coordinator
        .alter_scram_credentials(upsertions, deletions)
        .await
    {
        let code = e.error_code();
        for result in &mut results {
            if result.error_code == 0 {
                result.error_code = code;
                result.error_message = Some(str_bytes(e.to_string()));
            }
        }
    }
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = results;
    response
}

/// Every user the request names, refused: the principal may not ALTER the cluster.
fn refused(request: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let users: BTreeSet<String> = request
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(request.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    let mut response = AlterUserScramCredentialsResponse::default();
    response.results = users
        .into_iter()
        .map(|user| {
            let mut result = AlterUserScramCredentialsResult::default();
            result.user = str_bytes(user);
            result.error_code = ResponseError::ClusterAuthorizationFailed.code();
            result.error_message = Some(str_bytes("Cluster authorization failed."));
            result
        })
        .collect();
    response
}
