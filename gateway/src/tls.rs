//! TLS for SSL listeners (rustls): the certificate chain and key from a PEM file, reloaded
//! when the files change so certificates rotate without a restart; client certificates
//! checked against a CA bundle (`ssl.client.auth`); the client's principal taken from its
//! certificate's subject through `ssl.principal.mapping.rules`, as Kafka does; and TLS to
//! other brokers' SSL listeners.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use regex::Regex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS settings: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err("expected none, requested or required".to_string()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// The `ssl.*` settings of the broker's SSL listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl.keystore.location`: a PEM file with the certificate chain, and the private key
    /// unless `key` names another file.
    pub keystore: Option<PathBuf>,
    /// `ssl.key.location`: a PEM file with the private key.
    pub key: Option<PathBuf>,
    /// `ssl.truststore.location`: a PEM bundle of the CAs client certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub principal_mapping: PrincipalMapping,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            keystore: None,
            key: None,
            truststore: None,
            client_auth: ClientAuth::None,
            principal_mapping: PrincipalMapping::default(),
        }
    }
}

/// The acceptor of an SSL listener, rebuilt from the files when they change.
pub struct ReloadingAcceptor {
    settings: TlsSettings,
    current: Mutex<(Vec<Option<SystemTime>>, TlsAcceptor)>,
}

impl ReloadingAcceptor {
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let stamps = stamps(&settings);
        let acceptor = build(&settings)?;
        Ok(Self {
            settings,
            current: Mutex::new((stamps, acceptor)),
        })
    }

    /// The acceptor for a new connection: rebuilt first if a file changed since the last
    /// build. A file that no longer loads (caught mid-rotation, say) keeps the old one.
    pub fn acceptor(&self) -> TlsAcceptor {
        let stamps = stamps(&self.settings);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != stamps {
            match build(&self.settings) {
                Ok(acceptor) => {
                    tracing::info!("reloaded the TLS certificate files");
                    *current = (stamps, acceptor);
                }
                Err(e) => tracing::warn!(error = %e, "keeping the previous TLS certificates"),
            }
        }
        current.1.clone()
    }

    pub fn principal_mapping(&self) -> &PrincipalMapping {
        &self.settings.principal_mapping
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [&settings.keystore, &settings.key, &settings.truststore]
        .into_iter()
        .map(|path| {
            let metadata = std::fs::metadata(path.as_ref()?).ok()?;
            metadata.modified().ok()
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| pem_error(path, e.to_string()))?
        .ok_or_else(|| {
            pem_error(
                path,
                "no unencrypted PRIVATE KEY in the file (encrypted keys are not supported)",
            )
        })
}

fn build(settings: &TlsSettings) -> Result<TlsAcceptor, TlsError> {
    let keystore = settings.keystore.as_deref().ok_or_else(|| {
        TlsError::Config("an SSL listener needs ssl.keystore.location".to_string())
    })?;
    let chain = certificates(keystore)?;
    let key = private_key(settings.key.as_deref().unwrap_or(keystore))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (settings.client_auth, &settings.truststore) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "ssl.client.auth needs ssl.truststore.location".to_string(),
            ))
        }
        (auth, Some(truststore)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(truststore)?), provider);
            let verifier = match auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| pem_error(keystore, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS to another broker's SSL listener: its certificate checked against
/// `ssl.truststore.location`, and this broker's own certificate (`ssl.keystore.location`)
/// offered for listeners that ask for client certificates. Built for each connection, so
/// rotated files apply at once.
pub fn connector(settings: &TlsSettings) -> Result<TlsConnector, TlsError> {
    let truststore = settings.truststore.as_deref().ok_or_else(|| {
        TlsError::Config(
            "an SSL inter-broker listener needs ssl.truststore.location to check other brokers"
                .to_string(),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(truststore)?);
    let config = match settings.keystore.as_deref() {
        Some(keystore) => {
            let chain = certificates(keystore)?;
            let key = private_key(settings.key.as_deref().unwrap_or(keystore))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| pem_error(keystore, e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

fn roots(truststore: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(truststore)? {
        roots
            .add(ca)
            .map_err(|e| pem_error(truststore, e.to_string()))?;
    }
    Ok(roots)
}

/// A certificate's subject as Java prints it (RFC 2253: most specific first, e.g.
/// `CN=app,OU=payments,O=Example,C=GB`), which is what principal mapping rules match.
pub fn subject_name(certificate: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let mut parts = Vec::new();
    for rdn in cert.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attribute| {
                let oid = attribute.attr_type().to_id_string();
                // The keywords Java's RFC 2253 form uses; other attributes by OID.
                let name = match oid.as_str() {
                    "2.5.4.3" => "CN",
                    "2.5.4.11" => "OU",
                    "2.5.4.10" => "O",
                    "2.5.4.7" => "L",
                    "2.5.4.8" => "ST",
                    "2.5.4.6" => "C",
                    "2.5.4.9" => "STREET",
                    "0.9.2342.19200300.100.1.25" => "DC",
                    "0.9.2342.19200300.100.1.1" => "UID",
                    other => other,
                };
                let value = attribute.as_str().unwrap_or_default();
                format!("{name}={}", escape_rfc2253(value))
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let leading = i == 0 && (c == '#' || c == ' ');
        let trailing = i == value.chars().count() - 1 && c == ' ';
        if leading || trailing || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Kafka's `ssl.principal.mapping.rules`: `RULE:pattern/replacement/[LU]` items and
/// `DEFAULT` (the subject as is), tried in order; the first whose pattern matches the whole
/// subject gives the principal's name.
#[derive(Debug, Clone)]
pub struct PrincipalMapping {
    rules: Vec<MappingRule>,
    /// As configured, for DescribeConfigs.
    pub text: String,
}

impl PartialEq for PrincipalMapping {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PrincipalMapping {}

#[derive(Debug, Clone)]
enum MappingRule {
    Default,
    Rule {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl Default for PrincipalMapping {
    fn default() -> Self {
        Self {
            rules: vec![MappingRule::Default],
            text: "DEFAULT".to_string(),
        }
    }
}

impl PrincipalMapping {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(MappingRule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = split_unescaped(after)
                    .ok_or_else(|| format!("rule {rest:?} has no /replacement/"))?;
                let (replacement, after) = split_unescaped(after)
                    .ok_or_else(|| format!("rule {rest:?} does not end with /"))?;
                let case = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => Some(c),
                    _ => None,
                };
                let pattern = Regex::new(&format!("^(?:{})$", pattern.replace("\\/", "/")))
                    .map_err(|e| format!("rule pattern {pattern:?}: {e}"))?;
                rules.push(MappingRule::Rule {
                    pattern,
                    replacement: replacement.replace("\\/", "/"),
                    case,
                });
                rest = &after[case.map_or(0, |_| 1)..];
            } else {
                return Err(format!(
                    "{rest:?} is not DEFAULT or RULE:pattern/replacement/"
                ));
            }
            rest = rest.trim_start();
            rest = rest
                .strip_prefix(',')
                .or_else(|| rest.strip_prefix('\n'))
                .unwrap_or(rest)
                .trim_start();
        }
        if rules.is_empty() {
            return Err("no rule".to_string());
        }
        Ok(Self {
            rules,
            text: text.to_string(),
        })
    }

    /// The principal's name for a certificate subject; None when no rule matches (the
    /// client is then refused, as Kafka does).
    pub fn map(&self, subject: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            MappingRule::Default => Some(subject.to_string()),
            MappingRule::Rule {
                pattern,
                replacement,
                case,
            } => {
                let captures = pattern.captures(subject)?;
                let mut name = String::new();
                captures.expand(replacement, &mut name);
                Some(match case {
                    Some('L') => name.to_lowercase(),
                    Some('U') => name.to_uppercase(),
                    _ => name,
                })
            }
        })
    }
}

/// `text` split at its first `/` not escaped as `\/`.
fn split_unescaped(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b'/' && (i == 0 || bytes[i - 1] != b'\\'))
        .map(|i| (&text[..i], &text[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_are_kafkas() {
        let mapping = PrincipalMapping::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([^,]*),O=(.*)$/$1@$2/,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            mapping
                .map("CN=Payments,OU=ServiceUsers,O=Example,C=GB")
                .as_deref(),
            Some("payments")
        );
        assert_eq!(
            mapping.map("CN=app,O=Example").as_deref(),
            Some("app@Example")
        );
        assert_eq!(
            mapping.map("CN=other,C=GB").as_deref(),
            Some("CN=other,C=GB")
        );
        let only = PrincipalMapping::parse("RULE:^CN=(.*)$/$1/U").unwrap();
        assert_eq!(only.map("CN=app").as_deref(), Some("APP"));
        assert_eq!(only.map("O=nobody"), None, "no rule matches: refused");
        assert_eq!(
            PrincipalMapping::default().map("CN=x").as_deref(),
            Some("CN=x")
        );
        for bad in ["RULE:^CN=(.*$", "RULE:abc", "SOMETHING"] {
            assert!(PrincipalMapping::parse(bad).is_err(), "{bad}");
        }
        // An escaped slash belongs to the pattern.
        let slash = PrincipalMapping::parse("RULE:^CN=a\\/b$/ab/").unwrap();
        assert_eq!(slash.map("CN=a/b").as_deref(), Some("ab"));
    }

    #[test]
    fn subject_values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" lead#"), "\\ lead#");
        assert_eq!(escape_rfc2253("#x "), "\\#x\\ ");
    }
}
