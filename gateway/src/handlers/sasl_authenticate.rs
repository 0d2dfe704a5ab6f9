//! SaslAuthenticate (v0-2): one step of the SASL exchange the handshake chose. A failure is
//! answered after `connection.failed.authentication.delay.ms`, counted, logged without the
//! secret, and the connection is closed.

use std::time::Instant;

use bytes::Bytes;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::connection::Session;
use crate::sasl::{Authenticator, Step};

/// The response, and whether the connection must close after it. On success the session's
/// principal becomes the user.
pub async fn handle(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &mut Session,
    version: i16,
    request: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, bool) {
    let settings = &broker.config.sasl;
    let mut response = SaslAuthenticateResponse::default();
    let outcome = authenticator.authenticate(
        &broker.coordinator,
        settings,
        &request.auth_bytes,
        Instant::now(),
    );
    match outcome {
        Ok(Step::Challenge(challenge)) => {
            response.auth_bytes = Bytes::from(challenge);
            (response, false)
        }
        Ok(Step::Authenticated {
            user,
            response: last,
            session_lifetime,
        }) => {
            tracing::debug!(peer = %session.peer, %user, "SASL authenticated");
            session.principal = format!("User:{user}");
            response.auth_bytes = Bytes::from(last);
            if version >= 1 {
                response.session_lifetime_ms =
                    session_lifetime.map_or(0, |lifetime| lifetime.as_millis() as i64);
            }
            (response, false)
        }
        Err(failure) => {
            broker.metrics.authentication_failures.inc();
            tracing::info!(peer = %session.peer, listener = %session.listener, reason = %failure.reason, "closing connection: SASL authentication failed");
            tokio::time::sleep(settings.failed_authentication_delay).await;
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
