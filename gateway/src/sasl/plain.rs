//! SASL/PLAIN (RFC 4616): `authzid NUL user NUL password`, checked against the user's SCRAM
//! credentials, so one set of users (managed with AlterUserScramCredentials) serves both.

use coordinator::{ScramCredential, ScramMechanism};

use super::scram;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlainError {
    #[error("malformed PLAIN message")]
    Malformed,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The user the message authenticates; `lookup` finds a user's credential per mechanism.
pub fn authenticate(
    message: &[u8],
    lookup: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
) -> Result<String, PlainError> {
    let mut fields = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed);
    };
    let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    // Kafka takes an authorization id only if it names the user itself.
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(PlainError::InvalidCredentials);
    }
    let credentials: Vec<_> = ScramMechanism::ALL
        .into_iter()
        .filter_map(|mechanism| lookup(user, mechanism))
        .collect();
    // With no credential the password is still hashed, so timing does not tell.
    let matches = match credentials.first() {
        Some(credential) => scram::password_matches(credential, password),
        None => {
            let _ = scram::salted_password(
                ScramMechanism::Sha256,
                password,
                b"no such user",
                scram::MIN_ITERATIONS,
            );
            false
        }
    };
    if matches {
        Ok(user.to_string())
    } else {
        Err(PlainError::InvalidCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_checks_the_password_against_the_scram_credential() {
        let salted = scram::salted_password(ScramMechanism::Sha512, b"pw", b"salt", 4096);
        let stored = scram::credential("alice", ScramMechanism::Sha512, &salted, b"salt", 4096);
        let lookup = |user: &str, mechanism| {
            (user == "alice" && mechanism == ScramMechanism::Sha512).then(|| stored.clone())
        };
        assert_eq!(authenticate(b"\0alice\0pw", lookup).unwrap(), "alice");
        assert_eq!(authenticate(b"alice\0alice\0pw", lookup).unwrap(), "alice");
        for (message, error) in [
            (&b"\0alice\0nope"[..], PlainError::InvalidCredentials),
            (b"\0bob\0pw", PlainError::InvalidCredentials),
            (b"bob\0alice\0pw", PlainError::InvalidCredentials),
            (b"\0alice", PlainError::Malformed),
            (b"\0alice\0pw\0more", PlainError::Malformed),
            (b"\0\0pw", PlainError::Malformed),
        ] {
            assert_eq!(
                authenticate(message, lookup).unwrap_err(),
                error,
                "{message:?}"
            );
        }
    }
}
