//! SaslHandshake: the mechanism of the exchange that follows, in SaslAuthenticate requests
//! (v1) or as bare tokens (v0, Kafka 0.10 clients).

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::str_bytes;
use crate::sasl::{Authenticator, SaslHandshakeError, SaslSettings};

/// The response, and whether the connection must close after it (a mechanism the broker
/// does not offer, or a handshake in the middle of an exchange).
pub fn handle(
    authenticator: &mut Authenticator,
    settings: &SaslSettings,
    version: i16,
    request: SaslHandshakeRequest,
) -> (SaslHandshakeResponse, bool) {
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = settings
        .enabled_mechanisms
        .iter()
        .map(|m| str_bytes(m.name()))
        .collect();
    let error = match authenticator.handshake(settings, request.mechanism.as_str(), version == 0) {
        Ok(()) => return (response, false),
        Err(SaslHandshakeError::UnsupportedMechanism) => ResponseError::UnsupportedSaslMechanism,
        Err(SaslHandshakeError::IllegalState) => ResponseError::IllegalSaslState,
    };
    response.error_code = error.code();
    (response, true)
}
