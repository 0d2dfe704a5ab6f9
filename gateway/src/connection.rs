//! One client connection: reads size-prefixed frames, decodes them, runs each request's
//! ordered part (its state changes) before reading the next, lets what remains (acks=all
//! waits, fetch long-polls) overlap later requests, and writes the responses back strictly
//! in request order.
//!
//! A frame's bytes count against `queued.max.request.bytes` from before its body is read
//! until its ordered part has run. A client that stops sending a request it has begun, or
//! stops reading its responses, for `socket.stall.timeout.ms` is disconnected, and the
//! requests it still has in flight are dropped with the memory they hold (fetch responses);
//! one that sends no request for `connections.max.idle.ms` too.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proto_compat::api_versions::api_versions_response;
use proto_compat::frame::{read_frame_body, read_frame_size, FrameError};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{ApiKey, ResponseKind};
use proto_compat::request::{decode_request, RequestError};
use proto_compat::response::{encode_response, EncodeError, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::authorizer::Decisions;
use crate::broker::Broker;
use crate::fetch_memory::Reservation;
use crate::handlers::{self, SaslGate};
use crate::limits::{Connection, RequestRoom};
use crate::quotas::ChannelThrottle;
use crate::sasl::Authenticator;
use crate::server::ListenerRuntime;
use crate::tls;

/// Requests a client may have in flight on one connection before we stop reading; bounds
/// what one connection holds (produced bytes are bounded by the append buffer, fetched ones
/// by the fetch memory, frames by the request memory: a waiting request holds little).
/// librdkafka pipelines without limit, one produce every few ms at linger.ms 5, each waiting
/// for its flush: ~540 requests/s at 1,000 messages/s, so a flush interval of 500 ms keeps
/// ~270 in flight, and a cap of 256 held its batches back in the client for seconds
/// (bench/RESULTS.md).
const MAX_IN_FLIGHT: usize = 1024;

/// The bytes to write for one request (None: no response, as for acks=0), or why the
/// connection must close.
type Response = Result<Option<Encoded>, ResponseFailure>;

/// An encoded response, and the fetch memory it holds until it has been written.
struct Encoded {
    frame: Frame,
    _memory: Option<Reservation>,
}

#[derive(Debug, thiserror::Error)]
enum ResponseFailure {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("no handler for {0:?}")]
    Unhandled(ApiKey),
}

/// What requests on a connection may depend on: the listener it came in on (whose
/// addresses Metadata and FindCoordinator answer with) and who the client is.
#[derive(Debug, Clone)]
pub struct Session {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    /// Kafka's principal: `User:ANONYMOUS`, the name a client certificate maps to, or the
    /// SASL user.
    pub principal: String,
    /// When the connection may be read again after a client quota throttled it.
    pub throttle: ChannelThrottle,
    /// The authorizer's decisions for this connection.
    pub decisions: Decisions,
}

/// Serves a connection accepted on `listener`: a TLS handshake first on an SSL or SASL_SSL
/// listener (within `socket.stall.timeout.ms`), then its requests, which on a SASL listener
/// must begin with authentication.
pub async fn accept(
    broker: Arc<Broker>,
    socket: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerRuntime>,
    stop: watch::Receiver<bool>,
    admitted: Connection,
) {
    let _ = socket.set_nodelay(true);
    let authenticator = listener.sasl.then(Authenticator::new);
    let mut session = Session {
        listener: listener.name.clone(),
        peer,
        principal: ANONYMOUS.to_string(),
        throttle: ChannelThrottle::default(),
        decisions: Decisions::default(),
    };
    let Some(tls) = &listener.tls else {
        let (reader, writer) = socket.into_split();
        return serve(
            broker,
            reader,
            writer,
            session,
            authenticator,
            stop,
            admitted,
        )
        .await;
    };
    let handshake = tls.acceptor().accept(socket);
    let stream = match tokio::time::timeout(broker.config.socket_stall_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            broker.metrics.authentication_failures.inc();
            tracing::info!(%peer, listener = %session.listener, error = %e, "closing connection: TLS handshake failed");
            return;
        }
        Err(_) => {
            broker.metrics.authentication_failures.inc();
            tracing::info!(%peer, listener = %session.listener, "closing connection: TLS handshake timed out");
            return;
        }
    };
    if let Some(certificate) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        let subject = tls::subject_name(certificate).unwrap_or_default();
        let Some(name) = tls.principal_mapping().map(&subject) else {
            broker.metrics.authentication_failures.inc();
            tracing::info!(%peer, %subject, "closing connection: no ssl.principal.mapping.rules rule matches the client certificate");
            return;
        };
        session.principal = format!("User:{name}");
    }
    tracing::debug!(%peer, listener = %session.listener, principal = %session.principal, "TLS connection");
    let (reader, writer) = tokio::io::split(stream);
    serve(
        broker,
        reader,
        writer,
        session,
        authenticator,
        stop,
        admitted,
    )
    .await
}

/// Kafka's principal for a client that did not authenticate.
const ANONYMOUS: &str = "User:ANONYMOUS";

async fn serve<R, W>(
    broker: Arc<Broker>,
    mut reader: R,
    writer: W,
    mut session: Session,
    mut authenticator: Option<Authenticator>,
    mut stop: watch::Receiver<bool>,
    _admitted: Connection,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = session.peer;
    let (responses, pending) = mpsc::channel::<JoinHandle<Response>>(MAX_IN_FLIGHT);
    let stall = broker.config.socket_stall_timeout;
    let mut writer = tokio::spawn(write_responses(writer, pending, peer, stall));
    // Every wait below also ends when the writer gives up on the client, or at shutdown.
    let mut writer_done = false;
    loop {
        // A client that has not authenticated may send only small frames.
        let max_frame = match &authenticator {
            Some(a) if a.user(Instant::now()).is_none() => broker
                .config
                .sasl
                .max_receive_size
                .min(broker.config.socket_request_max_bytes),
            _ => broker.config.socket_request_max_bytes,
        };
        let throttle = session.throttle.clone();
        let next = async {
            // A throttled client's connection is muted: its next request waits.
            throttle.unmuted().await;
            read_request(&broker, &mut reader, max_frame).await
        };
        let frame = tokio::select! {
            frame = next => frame,
            _ = &mut writer => { writer_done = true; break }
            _ = stop.changed() => break,
        };
        let (frame, room) = match frame {
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
        let mut close = false;
        let size = frame.len();
        let bare = authenticator.as_mut().filter(|a| a.expects_bare_token());
        let task = if let Some(authenticator) = bare {
            // After SaslHandshake v0 the frame is a token of the exchange, not a request.
            let token =
                handlers::sasl_bare_token(&broker, authenticator, &mut session, &frame[..]).await;
            let Some(token) = token else { break };
            let answer: Response = Ok(Some(Encoded {
                frame: size_prefixed(&token).into(),
                _memory: None,
            }));
            tokio::spawn(async move { answer })
        } else {
            match decode_request(frame) {
                Ok(request) => {
                    let started = Instant::now();
                    let api_key = request.api_key;
                    let version = request.header.request_api_version;
                    let correlation_id = request.header.correlation_id;
                    let gate = match authenticator.as_mut() {
                        Some(authenticator) => {
                            handlers::sasl_gate(&broker, authenticator, &mut session, request).await
                        }
                        None => SaslGate::Pass(request),
                    };
                    match gate {
                        SaslGate::Pass(request) => {
                            let rest = handlers::prepare(&broker, &session, request, size).await;
                            tokio::spawn(finish(
                                broker.clone(),
                                api_key,
                                version,
                                correlation_id,
                                started,
                                rest,
                            ))
                        }
                        SaslGate::Answered {
                            response,
                            close: then_close,
                        } => {
                            close = then_close;
                            let encoded = encode(api_key, version, correlation_id, response.into());
                            tokio::spawn(async move { encoded })
                        }
                        SaslGate::Refused(reason) => {
                            tracing::info!(%peer, %reason, "closing connection");
                            break;
                        }
                    }
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
            }
        };
        // The ordered part has run: nothing refers to the frame any more.
        drop(room);
        tokio::select! {
            sent = responses.send(task) => if sent.is_err() { break },
            _ = &mut writer => { writer_done = true; break }
            _ = stop.changed() => break,
        }
        if close {
            break;
        }
    }
    drop(responses);
    if !writer_done {
        let _ = writer.await;
    }
}

/// The next frame, read once there is room for it in `queued.max.request.bytes`; the room
/// comes with it. None at a clean end of the connection, or after `connections.max.idle.ms`
/// without a request.
async fn read_request<R: AsyncRead + Unpin>(
    broker: &Broker,
    reader: &mut R,
    max_frame: usize,
) -> Result<Option<(Bytes, RequestRoom)>, FrameError> {
    let idle = broker.config.connections_max_idle;
    let Ok(size) = tokio::time::timeout(idle, read_frame_size(reader, max_frame)).await else {
        return Ok(None);
    };
    let Some(size) = size? else {
        return Ok(None);
    };
    let room = broker.request_memory.reserve(size).await;
    let frame = read_frame_body(
        reader,
        size,
        room.bytes(),
        broker.config.socket_stall_timeout,
    )
    .await?;
    Ok(Some((frame, room)))
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
    let frame = encode_response(api_key, version, correlation_id, &reply.body)?;
    Ok(Some(Encoded {
        frame,
        _memory: reply.memory,
    }))
}

/// A bare frame: its size, then the bytes.
fn size_prefixed(bytes: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(4 + bytes.len());
    frame.put_i32(bytes.len() as i32);
    frame.put_slice(bytes);
    frame.freeze()
}

async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut pending: mpsc::Receiver<JoinHandle<Response>>,
    peer: SocketAddr,
    timeout: Duration,
) {
    while let Some(task) = pending.recv().await {
        let encoded = match task.await {
            Ok(Ok(Some(encoded))) => encoded,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                tracing::error!(%peer, error = %e, "closing connection: cannot answer request");
                break;
            }
            Err(e) => {
                tracing::error!(%peer, error = %e, "closing connection: request handler failed");
                break;
            }
        };
        if let Err(e) = write_frame(&mut writer, &encoded.frame, timeout).await {
            tracing::debug!(%peer, error = %e, "connection write failed");
            break;
        }
    }
    // Whatever is still in flight will never be written: drop it and what it holds.
    pending.close();
    while let Some(task) = pending.recv().await {
        task.abort();
    }
}

/// Pieces handed to one vectored write, which keeps each call's slice list short (Linux would
/// take up to IOV_MAX, 1024).
const MAX_WRITE_PIECES: usize = 64;

/// Writes `frame` piece by piece with vectored writes, so borrowed record sets go to the
/// socket (or the TLS session, which encrypts them as it takes them) without a copy, and
/// flushes it, failing if the client takes none of it for `timeout`.
async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    timeout: Duration,
) -> std::io::Result<()> {
    let mut pieces = frame.pieces();
    // Bytes of `pieces[0]` already written.
    let mut skip = 0;
    while let Some(first) = pieces.first() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&first[skip..])
            .chain(pieces[1..].iter().map(|p| &p[..]))
            .take(MAX_WRITE_PIECES)
            .map(IoSlice::new)
            .collect();
        let mut n = match tokio::time::timeout(timeout, writer.write_vectored(&slices)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(stalled(timeout)),
        };
        while let Some(first) = pieces.first() {
            let left = first.len() - skip;
            if n < left {
                skip += n;
                break;
            }
            n -= left;
            skip = 0;
            pieces = &pieces[1..];
        }
    }
    match tokio::time::timeout(timeout, writer.flush()).await {
        Ok(flushed) => flushed,
        Err(_) => Err(stalled(timeout)),
    }
}

fn stalled(timeout: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the client read nothing for {timeout:?}"),
    )
}
