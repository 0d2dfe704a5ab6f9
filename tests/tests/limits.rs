//! What clients can make the broker hold is bounded whatever they send: request frames over
//! all connections (`queued.max.request.bytes`), connections (`max.connections`,
//! `max.connections.per.ip`), and requests a client stops sending (`socket.stall.timeout.ms`).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proto_compat::kafka_protocol::messages::ApiVersionsRequest;
use strata_tests::{error_code, Broker, Conn};

const MIB: usize = 1024 * 1024;

/// A connection that has sent the header of an ApiVersions request claiming `claimed` bytes
/// and then `sent` bytes of its body (zeros), and nothing more.
fn unfinished_frame(broker: &Broker, claimed: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(broker.kafka_addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut bytes = (claimed as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1]); // ApiVersions v3, correlation id 1
    bytes.resize(4 + sent, 0);
    // The broker may not read it all: what it does not read waits in socket buffers.
    let _ = stream.write_all(&bytes);
    stream
}

fn api_versions(conn: &mut Conn) -> i16 {
    conn.request(3, &ApiVersionsRequest::default()).error_code
}

#[test]
fn frames_being_read_hold_at_most_queued_max_request_bytes() {
    let broker = Broker::start_with_config(&format!(
        "\"queued.max.request.bytes\" = {}\n\"socket.stall.timeout.ms\" = 3000\n",
        8 * MIB
    ));
    let rss_before = broker.rss_bytes();
    // Twenty clients each send 3.5 MiB of a 4 MiB frame: 70 MiB if nothing bounded them.
    let clients: Vec<TcpStream> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| unfinished_frame(&broker, 4 * MIB, 7 * MIB / 2)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    std::thread::sleep(Duration::from_millis(500));
    let grown = broker.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 24 * MIB as u64,
        "20 unfinished 4 MiB frames grew the broker by {} MiB; the bound is 8 MiB",
        grown / MIB as u64
    );
    let queued = broker.metric("strata_request_bytes_queued").unwrap();
    assert!(queued <= (8 * MIB) as f64, "{queued} bytes queued");
    assert!(broker.metric("strata_request_memory_waits_total").unwrap() >= 1.0);

    // The stalled clients are closed one room-holder after another; then a new client is
    // served and the room is free again.
    drop(clients);
    let mut conn = broker.connect();
    assert_eq!(api_versions(&mut conn), error_code::NONE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.metric("strata_request_bytes_queued") != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "room still held after the clients left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_stops_sending_its_request_is_disconnected() {
    let broker = Broker::start_with_config("\"socket.stall.timeout.ms\" = 1000\n");
    let mut conn = broker.connect();
    let started = Instant::now();
    conn.send_raw(&[0, 0, 0, 100, 0, 18]);
    conn.expect_closed("a request that stopped after 2 of its 100 bytes");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let mut other = broker.connect();
    assert_eq!(api_versions(&mut other), error_code::NONE);
}

#[test]
fn connections_beyond_max_connections_per_ip_are_closed_at_once() {
    let broker = Broker::start_with_config("\"max.connections.per.ip\" = 2\n");
    let mut first = broker.connect();
    let mut second = broker.connect();
    assert_eq!(api_versions(&mut first), error_code::NONE);
    assert_eq!(api_versions(&mut second), error_code::NONE);
    let mut third = broker.connect();
    third.expect_closed("a third connection from 127.0.0.1");
    assert_eq!(
        broker.metric("strata_connections_rejected_total"),
        Some(1.0)
    );
    assert_eq!(broker.metric("strata_connections"), Some(2.0));
    drop(first);
    std::thread::sleep(Duration::from_millis(200));
    let mut again = broker.connect();
    assert_eq!(api_versions(&mut again), error_code::NONE);
}

#[test]
fn connections_beyond_max_connections_wait_for_a_slot() {
    let broker = Broker::start_with_config("\"max.connections\" = 2\n");
    let mut first = broker.connect();
    let mut second = broker.connect();
    assert_eq!(api_versions(&mut first), error_code::NONE);
    assert_eq!(api_versions(&mut second), error_code::NONE);
    // Connected (the listen backlog holds it) but not served while both slots are taken.
    let mut waiting = broker.connect();
    let (header, _) = waiting.header(18, 3, 2);
    let mut body = bytes::BytesMut::new();
    use proto_compat::kafka_protocol::protocol::Encodable;
    ApiVersionsRequest::default().encode(&mut body, 3).unwrap();
    waiting.send_frame(&header, &body);
    assert!(
        waiting.try_read_frame(Duration::from_millis(500)).is_none(),
        "a third connection was served beyond max.connections = 2"
    );
    drop(first);
    assert!(
        waiting.try_read_frame(Duration::from_secs(5)).is_some(),
        "the waiting connection was not served once a slot freed"
    );
}
