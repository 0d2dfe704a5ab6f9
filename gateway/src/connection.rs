//! One client connection: reads size-prefixed frames, decodes them, runs each request's
//! ordered part (its state changes) before reading the next, lets what remains (acks=all
//! waits, fetch long-polls) overlap later requests, and writes the responses back strictly
//! in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proto_compat::api_versions::api_versions_response;
use proto_compat::frame::{read_frame, FrameError};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{ApiKey, ResponseKind};
use proto_compat::request::{decode_request, RequestError};
use proto_compat::response::{encode_response, EncodeError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::fetch_memory::Reservation;
use crate::handlers;

/// Requests a client may have in flight on one connection before we stop reading; bounds
/// what one connection holds (produced bytes are bounded by the append buffer anyway).
/// librdkafka pipelines without limit: at 1,000 partitions it kept ~200 acks=all produces
/// in flight, each waiting ~15 ms for its flush, and a cap of 16 held its batches back in
/// the client for 0.4 s (bench/RESULTS.md).
const MAX_IN_FLIGHT: usize = 256;

/// The bytes to write for one request (None: no response, as for acks=0), or why the
/// connection must close.
type Response = Result<Option<Encoded>, ResponseFailure>;

/// An encoded response, and the fetch memory it holds until it has been written.
struct Encoded {
    bytes: Bytes,
    _memory: Option<Reservation>,
}

#[derive(Debug, thiserror::Error)]
enum ResponseFailure {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("no handler for {0:?}")]
    Unhandled(ApiKey),
}

pub async fn serve(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let (responses, pending) = mpsc::channel::<JoinHandle<Response>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_responses(writer, pending, peer));
    let max_frame = broker.config.socket_request_max_bytes;
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, max_frame) => frame,
            _ = stop.changed() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::InvalidSize { size, max }) => {
                tracing::warn!(%peer, size, max, "closing connection: invalid frame size");
                break;
            }
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection read failed");
                break;
            }
        };
        let task = match decode_request(frame) {
            Ok(request) => {
                let started = Instant::now();
                let api_key = request.api_key;
                let version = request.header.request_api_version;
                let correlation_id = request.header.correlation_id;
                let rest = handlers::prepare(&broker, request).await;
                tokio::spawn(finish(
                    broker.clone(),
                    api_key,
                    version,
                    correlation_id,
                    started,
                    rest,
                ))
            }
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => {
                // KIP-511: answer a too-new ApiVersions with our ranges in v0 so the
                // client downgrades instead of failing.
                let body = ResponseKind::ApiVersions(api_versions_response(
                    ResponseError::UnsupportedVersion.code(),
                ));
                let encoded = encode(ApiKey::ApiVersions, 0, correlation_id, body.into());
                tokio::spawn(async move { encoded })
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request");
                break;
            }
        };
        if responses.send(task).await.is_err() {
            break;
        }
    }
    drop(responses);
    let _ = writer.await;
}

/// Completes a request whose ordered part has run, and encodes its response.
async fn finish(
    broker: Arc<Broker>,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    started: Instant,
    rest: handlers::Deferred,
) -> Response {
    let response = rest.await.ok_or(ResponseFailure::Unhandled(api_key))?;
    if let Some(metrics) = broker.metrics.api(api_key) {
        metrics.requests.inc();
        metrics.latency.observe(started.elapsed().as_secs_f64());
    }
    match response {
        Some(reply) => encode(api_key, version, correlation_id, reply),
        None => Ok(None),
    }
}

/// Encodes `reply`; the bytes keep the fetch memory it holds.
fn encode(api_key: ApiKey, version: i16, correlation_id: i32, reply: handlers::Reply) -> Response {
    let bytes = encode_response(api_key, version, correlation_id, &reply.body)?;
    Ok(Some(Encoded {
        bytes,
        _memory: reply.memory,
    }))
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<JoinHandle<Response>>,
    peer: SocketAddr,
) {
    while let Some(task) = pending.recv().await {
        let encoded = match task.await {
            Ok(Ok(Some(encoded))) => encoded,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::error!(%peer, error = %e, "closing connection: cannot answer request");
                return;
            }
            Err(e) => {
                tracing::error!(%peer, error = %e, "closing connection: request handler failed");
                return;
            }
        };
        if let Err(e) = writer.write_all(&encoded.bytes).await {
            tracing::debug!(%peer, error = %e, "connection write failed");
            return;
        }
    }
}
