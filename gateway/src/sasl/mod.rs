//! SASL on SASL_PLAINTEXT and SASL_SSL listeners: a connection's authentication state
//! through SaslHandshake and SaslAuthenticate, with PLAIN and SCRAM-SHA-256/512 checked
//! against the users' SCRAM credentials in the coordinator's store (every gateway sees the
//! same users), and KIP-368 session lifetimes with re-authentication.

pub mod jaas;
pub mod plain;
pub mod scram;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use coordinator::{Coordinator, ScramMechanism};

use self::jaas::Login;
use self::scram::ScramExchange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(scram) => scram.name(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// The broker's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`.
    pub enabled_mechanisms: Vec<Mechanism>,
    /// `sasl.server.max.receive.size`: the largest frame a client may send before it has
    /// authenticated.
    pub max_receive_size: usize,
    /// `connections.max.reauth.ms`: the session lifetime (KIP-368); None when sessions last
    /// as long as their connection.
    pub max_reauth: Option<Duration>,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication's
    /// answer waits, to slow down password guessing.
    pub failed_authentication_delay: Duration,
    /// `sasl.mechanism.inter.broker.protocol`: the mechanism this broker logs in to other
    /// brokers' SASL listeners with.
    pub inter_broker_mechanism: Option<Mechanism>,
    /// `listener.name.{listener}.{mechanism}.sasl.jaas.config`, by `{listener}.{mechanism}`
    /// in lower case: the login this broker uses on that listener of other brokers.
    pub logins: BTreeMap<String, Login>,
}

impl Default for SaslSettings {
    fn default() -> Self {
        Self {
            enabled_mechanisms: vec![
                Mechanism::Scram(ScramMechanism::Sha256),
                Mechanism::Scram(ScramMechanism::Sha512),
            ],
            max_receive_size: 524_288,
            max_reauth: None,
            failed_authentication_delay: Duration::from_millis(100),
            inter_broker_mechanism: None,
            logins: BTreeMap::new(),
        }
    }
}

/// Why a SASL request failed; the client is told only `client_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslFailure {
    pub illegal_state: bool,
    pub client_message: String,
    /// For the broker's log; never holds a secret.
    pub reason: String,
}

impl SaslFailure {
    fn illegal_state(reason: &str) -> Self {
        Self {
            illegal_state: true,
            client_message: reason.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A successful step of SaslAuthenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More of the exchange to come: the server's challenge.
    Challenge(Vec<u8>),
    /// Authenticated as `user`, with the server's last message and the session lifetime.
    Authenticated {
        user: String,
        response: Vec<u8>,
        session_lifetime: Option<Duration>,
    },
}

enum Stage {
    Idle,
    Handshaken(Mechanism),
    Scram(Box<ScramExchange>),
}

/// One connection's authentication.
pub struct Authenticator {
    stage: Stage,
    /// After SaslHandshake v0 the exchange's tokens come bare, not in SaslAuthenticate.
    bare_tokens: bool,
    user: Option<String>,
    expires: Option<Instant>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    pub fn new() -> Self {
        Self {
            stage: Stage::Idle,
            bare_tokens: false,
            user: None,
            expires: None,
        }
    }

    /// The authenticated user, while the session lasts.
    pub fn user(&self, now: Instant) -> Option<&str> {
        match self.expires {
            Some(expires) if now >= expires => None,
            _ => self.user.as_deref(),
        }
    }

    /// Whether the session has ended for want of re-authentication.
    pub fn expired(&self, now: Instant) -> bool {
        self.user.is_some() && self.user(now).is_none()
    }

    /// SaslHandshake: picks the mechanism of the exchange that follows (a first one, or a
    /// re-authentication). With `bare_tokens` (SaslHandshake v0) the exchange's tokens
    /// follow as bare frames instead of SaslAuthenticate requests.
    pub fn handshake(
        &mut self,
        settings: &SaslSettings,
        mechanism: &str,
        bare_tokens: bool,
    ) -> Result<(), SaslHandshakeError> {
        if !matches!(self.stage, Stage::Idle) {
            return Err(SaslHandshakeError::IllegalState);
        }
        let mechanism = Mechanism::parse(mechanism)
            .filter(|m| settings.enabled_mechanisms.contains(m))
            .ok_or(SaslHandshakeError::UnsupportedMechanism)?;
        self.stage = Stage::Handshaken(mechanism);
        self.bare_tokens = bare_tokens;
        Ok(())
    }

    /// Whether the connection's next frame is a bare token of the exchange under way.
    pub fn expects_bare_token(&self) -> bool {
        self.bare_tokens && !matches!(self.stage, Stage::Idle)
    }

    /// SaslAuthenticate: one step of the exchange.
    pub fn authenticate(
        &mut self,
        coordinator: &Coordinator,
        settings: &SaslSettings,
        token: &[u8],
        now: Instant,
    ) -> Result<Step, SaslFailure> {
        let failed = |mechanism: Mechanism, reason: String| SaslFailure {
            illegal_state: false,
            client_message: format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                mechanism.name()
            ),
            reason,
        };
        let (user, response) = match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::Idle => {
                return Err(SaslFailure::illegal_state(
                    "SaslAuthenticate before SaslHandshake",
                ))
            }
            Stage::Handshaken(Mechanism::Plain) => {
                let user = plain::authenticate(token, |user, mechanism| {
                    coordinator.scram_credential(user, mechanism)
                })
                .map_err(|e| failed(Mechanism::Plain, e.to_string()))?;
                (user, Vec::new())
            }
            Stage::Handshaken(Mechanism::Scram(mechanism)) => {
                let (exchange, challenge) = ScramExchange::start(mechanism, token, |user| {
                    coordinator.scram_credential(user, mechanism)
                })
                .map_err(|e| failed(Mechanism::Scram(mechanism), e.to_string()))?;
                self.stage = Stage::Scram(Box::new(exchange));
                return Ok(Step::Challenge(challenge));
            }
            Stage::Scram(exchange) => {
                let mechanism = exchange.mechanism();
                exchange
                    .finish(token)
                    .map_err(|e| failed(Mechanism::Scram(mechanism), e.to_string()))?
            }
        };
        // KIP-368: a re-authentication keeps the connection's principal.
        if let Some(previous) = &self.user {
            if *previous != user {
                return Err(SaslFailure {
                    illegal_state: false,
                    client_message: "Cannot change principals during re-authentication".to_string(),
                    reason: format!("re-authentication as {user}, not {previous}"),
                });
            }
        }
        self.user = Some(user.clone());
        self.bare_tokens = false;
        self.expires = settings.max_reauth.map(|lifetime| now + lifetime);
        Ok(Step::Authenticated {
            user,
            response,
            session_lifetime: settings.max_reauth,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslHandshakeError {
    UnsupportedMechanism,
    IllegalState,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_picks_an_enabled_mechanism_once_per_exchange() {
        let settings = SaslSettings::default();
        let mut authenticator = Authenticator::new();
        assert_eq!(
            authenticator.handshake(&settings, "PLAIN", false),
            Err(SaslHandshakeError::UnsupportedMechanism),
            "PLAIN is off unless enabled"
        );
        assert_eq!(
            authenticator.handshake(&settings, "GSSAPI", false),
            Err(SaslHandshakeError::UnsupportedMechanism)
        );
        authenticator
            .handshake(&settings, "SCRAM-SHA-512", false)
            .unwrap();
        assert_eq!(
            authenticator.handshake(&settings, "SCRAM-SHA-512", false),
            Err(SaslHandshakeError::IllegalState)
        );
        assert_eq!(authenticator.user(Instant::now()), None);
        assert!(!authenticator.expects_bare_token());
    }

    #[test]
    fn a_version_0_handshake_is_followed_by_bare_tokens() {
        let settings = SaslSettings::default();
        let mut authenticator = Authenticator::new();
        assert!(!authenticator.expects_bare_token());
        authenticator
            .handshake(&settings, "SCRAM-SHA-256", true)
            .unwrap();
        assert!(authenticator.expects_bare_token());
    }
}
