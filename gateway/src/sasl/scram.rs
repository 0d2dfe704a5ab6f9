//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka serves them: the server's
//! side of the exchange, the client's side (for requests one broker sends another), and the
//! credential a salted password makes. An unknown user goes
//! through the same exchange with a made-up credential and fails at the same step as a
//! wrong password, so a client learns nothing about which user names exist.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use coordinator::{ScramCredential, ScramMechanism};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// Kafka's bounds on a credential's iteration count.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

fn hmac_algorithm(mechanism: ScramMechanism) -> hmac::Algorithm {
    match mechanism {
        ScramMechanism::Sha256 => hmac::HMAC_SHA256,
        ScramMechanism::Sha512 => hmac::HMAC_SHA512,
    }
}

fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac_algorithm(mechanism), key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    let algorithm = match mechanism {
        ScramMechanism::Sha256 => &digest::SHA256,
        ScramMechanism::Sha512 => &digest::SHA512,
    };
    digest::digest(algorithm, data).as_ref().to_vec()
}

/// RFC 5802's Hi(): PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: i32,
) -> Vec<u8> {
    let (algorithm, len) = match mechanism {
        ScramMechanism::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
        ScramMechanism::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
    };
    let iterations = NonZeroU32::new(iterations.max(1) as u32).expect("at least 1");
    let mut out = vec![0; len];
    pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
    out
}

/// The credential a salted password makes: only the stored and server keys are kept.
pub fn credential(
    user: &str,
    mechanism: ScramMechanism,
    salted_password: &[u8],
    salt: &[u8],
    iterations: i32,
) -> ScramCredential {
    let client_key = hmac(mechanism, salted_password, b"Client Key");
    ScramCredential {
        user: user.to_string(),
        mechanism,
        salt: salt.to_vec(),
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted_password, b"Server Key"),
        iterations,
    }
}

/// Whether `password` is the one `credential` was made from (SASL/PLAIN against the
/// users' SCRAM credentials).
pub fn password_matches(credential: &ScramCredential, password: &[u8]) -> bool {
    let salted = salted_password(
        credential.mechanism,
        password,
        &credential.salt,
        credential.iterations,
    );
    let client_key = hmac(credential.mechanism, &salted, b"Client Key");
    constant_time_eq(
        &hash(credential.mechanism, &client_key),
        &credential.stored_key,
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

/// The made-up credential of a user without one: the same salt every time it is asked for
/// (from a key this process picks), so that asking twice does not tell it from a real one.
fn decoy(user: &str, mechanism: ScramMechanism) -> ScramCredential {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    let key = KEY.get_or_init(|| random_bytes(32));
    let salt = hmac(mechanism, key, user.as_bytes())[..16].to_vec();
    credential(user, mechanism, &random_bytes(32), &salt, MIN_ITERATIONS)
}

/// Why an exchange failed; the client is told only that authentication failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the nonce or channel binding of the final message does not match")]
    Mismatch,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The server's side of one exchange, between the client's first and final messages.
pub struct ScramExchange {
    mechanism: ScramMechanism,
    user: String,
    /// None for an unknown user: the exchange runs on and fails on the proof.
    credential: Option<ScramCredential>,
    decoy: ScramCredential,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// `saslname` decoding: `=2C` is `,` and `=3D` is `=`.
fn decode_name(name: &str) -> Result<String, ScramError> {
    let decoded = name.replace("=2C", ",").replace("=3D", "=");
    if decoded.contains('=') && !name.contains("=3D") {
        return Err(ScramError::Malformed("bad escape in the user name"));
    }
    Ok(decoded)
}

impl ScramExchange {
    /// Takes the client's first message; returns the exchange and the server's first
    /// message. `lookup` finds the user's credential.
    pub fn start(
        mechanism: ScramMechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let binding = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        match binding {
            "n" | "y" => {}
            b if b.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 header")),
        }
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            if let Some(name) = attribute.strip_prefix("n=") {
                user = Some(decode_name(name)?);
            } else if let Some(nonce) = attribute.strip_prefix("r=") {
                client_nonce = Some(nonce);
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no nonce"))?;
        // Kafka takes an authorization id only if it names the user itself.
        if let Some(authzid) = authzid.strip_prefix("a=") {
            if decode_name(authzid)? != user {
                return Err(ScramError::InvalidCredentials);
            }
        }
        let credential = lookup(&user);
        let decoy = decoy(&user, mechanism);
        let shown = credential.as_ref().unwrap_or(&decoy);
        let nonce = format!("{client_nonce}{}", BASE64.encode(random_bytes(18)));
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&shown.salt),
            shown.iterations
        );
        let exchange = ScramExchange {
            mechanism,
            user,
            credential,
            decoy,
            gs2_header: format!("{binding},{authzid},"),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the client's final message; returns the user and the server's final message.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            if let Some(value) = attribute.strip_prefix("c=") {
                binding = Some(value);
            } else if let Some(value) = attribute.strip_prefix("r=") {
                nonce = Some(value);
            }
        }
        // Kafka checks that the nonce ends with the server's (not that it equals it), and
        // librdkafka 2.0 (Debian's kcat) repeats its own nonce in front: accepted, as by Kafka.
        if binding != Some(BASE64.encode(&self.gs2_header).as_str())
            || !nonce.is_some_and(|nonce| nonce.ends_with(&self.nonce))
        {
            return Err(ScramError::Mismatch);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let credential = self.credential.as_ref().unwrap_or(&self.decoy);
        let signature = hmac(
            self.mechanism,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let valid = constant_time_eq(&hash(self.mechanism, &client_key), &credential.stored_key);
        if !valid || self.credential.is_none() {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = hmac(
            self.mechanism,
            &credential.server_key,
            auth_message.as_bytes(),
        );
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// `saslname` encoding: `,` is `=2C` and `=` is `=3D`.
fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `name` (`r`, `s`, `i`, `v`, `e`) in a SCRAM message.
fn attribute<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

/// The client's side of an exchange, for requests one broker sends another.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// The signature the server's final message must carry, once the proof is sent.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// The exchange, and the client's first message.
    pub fn start(mechanism: ScramMechanism, user: &str, password: &str) -> (Self, Vec<u8>) {
        let nonce = BASE64.encode(random_bytes(24));
        let client_first_bare = format!("n={},r={nonce}", encode_name(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let client = Self {
            mechanism,
            password: password.to_string(),
            client_first_bare,
            nonce,
            server_signature: None,
        };
        (client, first)
    }

    /// Takes the server's first message; returns the client's final message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = attribute(text, "r").ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Mismatch);
        }
        let salt = attribute(text, "s")
            .and_then(|salt| BASE64.decode(salt).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations = attribute(text, "i")
            .and_then(|i| i.parse::<i32>().ok())
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or(ScramError::Malformed("iterations out of bounds"))?;
        let mechanism = self.mechanism;
        let salted = salted_password(mechanism, self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(
            mechanism,
            &hash(mechanism, &client_key),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(mechanism, &salted, b"Server Key");
        self.server_signature = Some(hmac(mechanism, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: a server that knows the credential signed it.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if attribute(text, "e").is_some() {
            return Err(ScramError::InvalidCredentials);
        }
        let signature = attribute(text, "v")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match &self.server_signature {
            Some(expected) if constant_time_eq(expected, &signature) => Ok(()),
            _ => Err(ScramError::Mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, with the server nonce it shows.
    #[test]
    fn the_rfc_7677_exchange_verifies() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let stored = credential("user", ScramMechanism::Sha256, &salted, &salt, 4096);
        let (mut exchange, server_first) = ScramExchange::start(
            ScramMechanism::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |user| (user == "user").then(|| stored.clone()),
        )
        .unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert!(server_first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        // Replay the RFC's server nonce.
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_string();
        exchange.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", exchange.nonce);
        let (user, server_final) = exchange
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    /// The final message of a client that sends `nonce` back.
    fn client_final(
        exchange: &ScramExchange,
        nonce: &str,
        password: &[u8],
        salt: &[u8],
    ) -> Vec<u8> {
        let mechanism = exchange.mechanism;
        let salted = salted_password(mechanism, password, salt, MIN_ITERATIONS);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let stored_key = hash(mechanism, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!(
            "{},{},{without_proof}",
            exchange.client_first_bare, exchange.server_first
        );
        let signature = hmac(mechanism, &stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
    }

    #[test]
    fn a_wrong_password_and_an_unknown_user_fail_alike() {
        for mechanism in ScramMechanism::ALL {
            let salt = b"salty".to_vec();
            let salted = salted_password(mechanism, b"secret", &salt, MIN_ITERATIONS);
            let stored = credential("alice", mechanism, &salted, &salt, MIN_ITERATIONS);
            let lookup = |user: &str| (user == "alice").then(|| stored.clone());
            let start = |first: &[u8]| ScramExchange::start(mechanism, first, lookup).unwrap().0;

            let right = start(b"n,,n=alice,r=abc");
            let final_message = client_final(&right, &right.nonce, b"secret", &salt);
            assert_eq!(right.finish(&final_message).unwrap().0, "alice");

            // The client's nonce repeated in front of the server's, as older librdkafka sends.
            let repeated = start(b"n,,n=alice,r=abc");
            let nonce = format!("abc{}", repeated.nonce);
            let final_message = client_final(&repeated, &nonce, b"secret", &salt);
            assert_eq!(repeated.finish(&final_message).unwrap().0, "alice");
            let extended = start(b"n,,n=alice,r=abc");
            let nonce = format!("{}x", extended.nonce);
            let final_message = client_final(&extended, &nonce, b"secret", &salt);
            assert_eq!(
                extended.finish(&final_message).unwrap_err(),
                ScramError::Mismatch
            );

            let wrong = start(b"n,,n=alice,r=abc");
            let final_message = client_final(&wrong, &wrong.nonce, b"guess", &salt);
            assert_eq!(
                wrong.finish(&final_message).unwrap_err(),
                ScramError::InvalidCredentials
            );
            let first = |exchange: ScramExchange| {
                exchange
                    .server_first
                    .split_once(",s=")
                    .map(|(_, rest)| rest.to_string())
            };
            assert_eq!(
                first(start(b"n,,n=mallory,r=abc")),
                first(start(b"n,,n=mallory,r=xyz")),
                "an unknown user's salt and iterations stay the same"
            );
            let unknown = start(b"n,,n=mallory,r=abc");
            let final_message = client_final(&unknown, &unknown.nonce, b"secret", &salt);
            assert_eq!(
                unknown.finish(&final_message).unwrap_err(),
                ScramError::InvalidCredentials
            );

            assert!(password_matches(&stored, b"secret"));
            assert!(!password_matches(&stored, b"secrets"));
        }
    }

    #[test]
    fn the_client_side_authenticates_against_the_server_side() {
        for mechanism in ScramMechanism::ALL {
            let salt = b"salty".to_vec();
            let salted = salted_password(mechanism, b"p=w,d", &salt, MIN_ITERATIONS);
            let stored = credential("a,b=c", mechanism, &salted, &salt, MIN_ITERATIONS);
            let lookup = |user: &str| (user == "a,b=c").then(|| stored.clone());

            let (mut client, first) = ScramClient::start(mechanism, "a,b=c", "p=w,d");
            let (server, server_first) = ScramExchange::start(mechanism, &first, lookup).unwrap();
            let final_message = client.respond(&server_first).unwrap();
            let (user, server_final) = server.finish(&final_message).unwrap();
            assert_eq!(user, "a,b=c");
            client.verify(&server_final).unwrap();
            assert_eq!(
                client.verify(b"v=AAAA").unwrap_err(),
                ScramError::Mismatch,
                "a server that does not know the credential"
            );

            let (mut wrong, first) = ScramClient::start(mechanism, "a,b=c", "guess");
            let (server, server_first) = ScramExchange::start(mechanism, &first, lookup).unwrap();
            let final_message = wrong.respond(&server_first).unwrap();
            assert_eq!(
                server.finish(&final_message).unwrap_err(),
                ScramError::InvalidCredentials
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let lookup = |_: &str| None;
        for bad in [
            &b"n,,r=abc"[..],
            b"x,,n=a,r=b",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=a",
            b"\xff\xfe",
            b"",
            b"n,a=bob,n=alice,r=x",
        ] {
            assert!(
                ScramExchange::start(ScramMechanism::Sha256, bad, lookup).is_err(),
                "{bad:?}"
            );
        }
        let (exchange, _) =
            ScramExchange::start(ScramMechanism::Sha256, b"n,,n=a,r=b", lookup).unwrap();
        assert_eq!(
            exchange.finish(b"c=biws,r=other,p=AAAA").unwrap_err(),
            ScramError::Mismatch
        );
    }
}
