//! Requests one broker sends another: the transaction coordinator's WriteTxnMarkers to the
//! leaders of a transaction's partitions, as Kafka's coordinator sends them.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use coordinator::BrokerInfo;
use proto_compat::kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use proto_compat::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The one WriteTxnMarkers version (KIP-890 dropped v0).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;
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
}

/// Sends WriteTxnMarkers to `leader` at its `listener` (`inter.broker.listener.name`; its
/// first listener when it has none of that name) and returns its answer. Inter-broker
/// requests are plaintext: the listener must be a PLAINTEXT one.
pub async fn write_txn_markers(
    from_broker: i32,
    listener: &str,
    leader: &BrokerInfo,
    request: WriteTxnMarkersRequest,
) -> Result<WriteTxnMarkersResponse, InterBrokerError> {
    let (host, port) = leader
        .endpoint(listener)
        .unwrap_or((leader.host.as_str(), leader.port));
    let failed = |source: std::io::Error| InterBrokerError::Io {
        broker_id: leader.broker_id,
        host: host.to_string(),
        port,
        source,
    };
    let exchange = async {
        let api_key = ApiKey::WriteTxnMarkers;
        let version = WRITE_TXN_MARKERS_VERSION;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_string(format!(
                "strata-broker-{from_broker}"
            ))));
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
        let mut socket = TcpStream::connect((host, port as u16)).await?;
        socket.write_all(&frame).await?;
        let size = socket.read_i32().await?;
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| std::io::Error::other(format!("response of {size} bytes")))?;
        let mut response = vec![0u8; size];
        socket.read_exact(&mut response).await?;
        let mut response = bytes::Bytes::from(response);
        ResponseHeader::decode(&mut response, api_key.response_header_version(version))
            .map_err(std::io::Error::other)?;
        let decoded = WriteTxnMarkersResponse::decode(&mut response, version)
            .map_err(std::io::Error::other)?;
        if response.has_remaining() {
            return Err(std::io::Error::other("bytes after the response"));
        }
        Ok(decoded)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(failed(std::io::Error::from(std::io::ErrorKind::TimedOut))),
    }
}
