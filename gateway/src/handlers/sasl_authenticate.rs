//! SaslAuthenticate (v0-2), or a bare token after SaslHandshake v0: one step of the SASL
//! exchange the handshake chose. A failure is
//! answered after `connection.failed.authentication.delay.ms`, counted, logged without the
//! secret, and the connection is closed.

use std::time::Instant;

use bytes::Bytes;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;
use crate::sasl::{Authenticator, SaslFailure, Step};

/// The response, and whether the connection must close after it. On success the session's
/// principal becomes the user.
pub async fn handle(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &mut Session,
    version: i16,
    request: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, bool) {
    let mut response = SaslAuthenticateResponse::default();
    match step(broker, authenticator, session, &request.auth_bytes).await {
        Ok(Step::Challenge(challenge)) => {
            response.auth_bytes = Bytes::from(challenge);
            (response, false)
        }
        Ok(Step::Authenticated {
            response: last,
            session_lifetime,
            ..
        }) => {
            response.auth_bytes = Bytes::from(last);
            if version >= 1 {
                response.session_lifetime_ms =
                    session_lifetime.map_or(0, |lifetime| lifetime.as_millis() as i64);
            }
            (response, false)
        }
        Err(failure) => {
            response.error_code = if failure.illegal_state {
                ResponseError::IllegalSaslState.code()
            } else {
                ResponseError::SaslAuthenticationFailed.code()
            };
            response.error_message = Some(str_bytes(failure.client_message));
            (response, true)
        }
    }
}

/// A bare token after SaslHandshake v0: the token to answer with, bare too, or None when
/// authentication failed and the connection must close without an answer (the bare
/// exchange has no way to carry an error).
pub async fn bare_token(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &mut Session,
    token: &[u8],
) -> Option<Vec<u8>> {
    match step(broker, authenticator, session, token).await.ok()? {
        Step::Challenge(challenge) => Some(challenge),
        Step::Authenticated { response, .. } => Some(response),
    }
}

/// One step of the exchange. On success the session's principal becomes the user; a
/// failure is counted, logged and answered only after the configured delay.
async fn step(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &mut Session,
    token: &[u8],
) -> Result<Step, SaslFailure> {
    let settings = &broker.config.sasl;
    match authenticator.authenticate(&broker.coordinator, settings, token, Instant::now()) {
        Ok(step) => {
            if let Step::Authenticated { user, .. } = &step {
                tracing::debug!(peer = %session.peer, %user, "SASL authenticated");
                session.principal = format!("User:{user}");
            }
            Ok(step)
        }
        Err(failure) => {
            broker.metrics.authentication_failures.inc();
            tracing::info!(peer = %session.peer, listener = %session.listener, reason = %failure.reason, "closing connection: SASL authentication failed");
            tokio::time::sleep(settings.failed_authentication_delay).await;
            Err(failure)
        }
    }
}
