//! Requests one broker sends another: the transaction coordinator's WriteTxnMarkers to the
//! leaders of a transaction's partitions, as Kafka's coordinator sends them. They go to the
//! listener named by `inter.broker.listener.name`, with that listener's security protocol:
//! TLS checked against `ssl.truststore.location` (this broker's certificate offered for
//! mTLS), SASL as the user of the listener's `sasl.jaas.config`, with
//! `sasl.mechanism.inter.broker.protocol`.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use coordinator::BrokerInfo;
use proto_compat::kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use proto_compat::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::BrokerConfig;
use crate::listeners::{self, Listener};
use crate::sasl::jaas::Login;
use crate::sasl::scram::ScramClient;
use crate::sasl::Mechanism;
use crate::tls;

/// The one WriteTxnMarkers version (KIP-890 dropped v0).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const SASL_HANDSHAKE_VERSION: i16 = 1;
const SASL_AUTHENTICATE_VERSION: i16 = 1;
/// Bound on a whole exchange: the leader answers once its markers are committed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the response frame (a response lists a few partitions).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InterBrokerError {
    #[error("broker {broker_id} at {host}:{port}: {source}")]
    Io {
        broker_id: i32,
        host: String,
        port: i32,
        source: std::io::Error,
    },
    #[error("inter-broker listener {listener}: {reason}")]
    Settings { listener: String, reason: String },
}

/// How this broker connects to a listener of other brokers.
struct Security {
    tls: Option<TlsConnector>,
    login: Option<(Mechanism, Login)>,
}

/// The security of `listener` (its protocol from `listener.security.protocol.map`, which
/// brokers share) with this broker's settings.
fn security(config: &BrokerConfig, listener: &str) -> Result<Security, InterBrokerError> {
    let settings = |reason: String| InterBrokerError::Settings {
        listener: listener.to_string(),
        reason,
    };
    let protocol = listeners::protocol_of(&config.listeners, listener).map_err(settings)?;
    let tls = match protocol.tls() {
        true => Some(tls::connector(&config.tls).map_err(|e| settings(e.to_string()))?),
        false => None,
    };
    let login = match protocol.sasl() {
        true => {
            let mechanism = config.sasl.inter_broker_mechanism.ok_or_else(|| {
                settings("a SASL listener needs sasl.mechanism.inter.broker.protocol".to_string())
            })?;
            let key = format!(
                "{}.{}",
                listener.to_lowercase(),
                mechanism.name().to_lowercase()
            );
            let login = config.sasl.logins.get(&key).cloned().ok_or_else(|| {
                settings(format!(
                    "a SASL listener needs listener.name.{key}.sasl.jaas.config"
                ))
            })?;
            Some((mechanism, login))
        }
        false => None,
    };
    Ok(Security { tls, login })
}

/// At start-up in a cluster: whether this broker can reach the inter-broker listener of
/// others (the one named `inter.broker.listener.name`, else the first), with its settings.
pub fn check(config: &BrokerConfig, own: &[Listener]) -> Result<(), InterBrokerError> {
    let listener = own
        .iter()
        .find(|l| l.name == config.inter_broker_listener)
        .or(own.first())
        .map_or(config.inter_broker_listener.as_str(), |l| l.name.as_str());
    security(config, listener).map(|_| ())
}

/// The listener, host and port of `leader` that requests go to: its listener named
/// `listener`, else its first one.
fn target<'a>(leader: &'a BrokerInfo, listener: &'a str) -> (&'a str, &'a str, i32) {
    if let Some((host, port)) = leader.endpoint(listener) {
        return (listener, host, port);
    }
    match leader.endpoints.first() {
        Some(first) => (first.listener.as_str(), first.host.as_str(), first.port),
        None => ("PLAINTEXT", leader.host.as_str(), leader.port),
    }
}

/// Sends WriteTxnMarkers to `leader` and returns its answer.
pub async fn write_txn_markers(
    config: &BrokerConfig,
    from_broker: i32,
    leader: &BrokerInfo,
    request: WriteTxnMarkersRequest,
) -> Result<WriteTxnMarkersResponse, InterBrokerError> {
    let (listener, host, port) = target(leader, &config.inter_broker_listener);
    let security = security(config, listener)?;
    let failed = |source: std::io::Error| InterBrokerError::Io {
        broker_id: leader.broker_id,
        host: host.to_string(),
        port,
        source,
    };
    let client_id = format!("strata-broker-{from_broker}");
    let exchange = async {
        let tcp = TcpStream::connect((host, port as u16)).await?;
        match &security.tls {
            Some(connector) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| std::io::Error::other(format!("host {host}: {e}")))?;
                let mut stream = connector.connect(name, tcp).await?;
                markers(&mut stream, &security, &client_id, request).await
            }
            None => {
                let mut stream = tcp;
                markers(&mut stream, &security, &client_id, request).await
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(failed(std::io::Error::from(std::io::ErrorKind::TimedOut))),
    }
}

async fn markers<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    security: &Security,
    client_id: &str,
    request: WriteTxnMarkersRequest,
) -> std::io::Result<WriteTxnMarkersResponse> {
    if let Some((mechanism, login)) = &security.login {
        authenticate(stream, client_id, *mechanism, login).await?;
    }
    let api_key = ApiKey::WriteTxnMarkers;
    call(
        stream,
        client_id,
        api_key,
        WRITE_TXN_MARKERS_VERSION,
        &request,
    )
    .await
}

/// SaslHandshake, then SaslAuthenticate until the other broker has accepted the login.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    mechanism: Mechanism,
    login: &Login,
) -> std::io::Result<()> {
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let answer: SaslHandshakeResponse = call(
        stream,
        client_id,
        ApiKey::SaslHandshake,
        SASL_HANDSHAKE_VERSION,
        &handshake,
    )
    .await?;
    if answer.error_code != 0 {
        return Err(sasl_refused(format!(
            "{} is not enabled (error {})",
            mechanism.name(),
            answer.error_code
        )));
    }
    match mechanism {
        Mechanism::Plain => {
            let token = format!("\0{}\0{}", login.username, login.password);
            sasl_step(stream, client_id, token.into_bytes()).await?;
        }
        Mechanism::Scram(scram) => {
            let (mut client, first) = ScramClient::start(scram, &login.username, &login.password);
            let server_first = sasl_step(stream, client_id, first).await?;
            let last = client
                .respond(&server_first)
                .map_err(|e| sasl_refused(e.to_string()))?;
            let server_final = sasl_step(stream, client_id, last).await?;
            client
                .verify(&server_final)
                .map_err(|e| sasl_refused(format!("the broker's signature: {e}")))?;
        }
    }
    Ok(())
}

/// One SaslAuthenticate: the other broker's answer to `token`.
async fn sasl_step<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    token: Vec<u8>,
) -> std::io::Result<Bytes> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let answer: SaslAuthenticateResponse = call(
        stream,
        client_id,
        ApiKey::SaslAuthenticate,
        SASL_AUTHENTICATE_VERSION,
        &request,
    )
    .await?;
    match answer.error_code {
        0 => Ok(answer.auth_bytes),
        code => Err(sasl_refused(format!(
            "error {code}: {}",
            answer.error_message.as_deref().unwrap_or("")
        ))),
    }
}

fn sasl_refused(reason: String) -> std::io::Error {
    std::io::Error::other(format!("SASL login refused: {reason}"))
}

/// One request and its response on `stream`.
async fn call<S, Request, Response>(
    stream: &mut S,
    client_id: &str,
    api_key: ApiKey,
    version: i16,
    request: &Request,
) -> std::io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
    Request: Encodable,
    Response: Decodable,
{
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .map_err(std::io::Error::other)?;
    request
        .encode(&mut body, version)
        .map_err(std::io::Error::other)?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let size = stream.read_i32().await?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| std::io::Error::other(format!("response of {size} bytes")))?;
    let mut response = vec![0u8; size];
    stream.read_exact(&mut response).await?;
    let mut response = Bytes::from(response);
    ResponseHeader::decode(&mut response, api_key.response_header_version(version))
        .map_err(std::io::Error::other)?;
    let decoded = Response::decode(&mut response, version).map_err(std::io::Error::other)?;
    if response.has_remaining() {
        return Err(std::io::Error::other("bytes after the response"));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::ListenerSettings;
    use crate::sasl::jaas;

    fn config(protocol: &str) -> BrokerConfig {
        let mut config = BrokerConfig {
            inter_broker_listener: "INTERNAL".to_string(),
            ..BrokerConfig::default()
        };
        config.listeners = ListenerSettings {
            security_protocol_map: Some(format!("PLAINTEXT:PLAINTEXT,INTERNAL:{protocol}")),
            ..ListenerSettings::default()
        };
        config
    }

    fn refusal(config: &BrokerConfig) -> String {
        match security(config, "INTERNAL") {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_secured_inter_broker_listener_needs_its_settings() {
        assert_eq!(refusal(&config("PLAINTEXT")), "accepted");
        assert!(refusal(&config("SSL")).contains("ssl.truststore.location"));
        let mut sasl = config("SASL_PLAINTEXT");
        assert!(refusal(&sasl).contains("sasl.mechanism.inter.broker.protocol"));
        sasl.sasl.inter_broker_mechanism = Mechanism::parse("SCRAM-SHA-256");
        assert!(refusal(&sasl).contains("listener.name.internal.scram-sha-256.sasl.jaas.config"));
        let login = jaas::parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="b" password="p";"#,
        )
        .unwrap();
        sasl.sasl
            .logins
            .insert("internal.scram-sha-256".to_string(), login);
        assert_eq!(refusal(&sasl), "accepted");
        assert!(refusal(&config("KERBEROS")).contains("unknown security protocol"));
    }
}
