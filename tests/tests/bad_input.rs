//! Bad input on the wire: the offending connection is closed and the process keeps serving
//! everyone else.

use proto_compat::kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
use proto_compat::kafka_protocol::protocol::StrBytes;
use strata_tests::{error_code, Broker};

/// A new connection gets a valid ApiVersions and Metadata answer: the broker survived.
fn assert_serves(broker: &mut Broker) {
    broker.assert_alive();
    let mut conn = broker.connect();
    let versions = conn.request(
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strata-tests"))
            .with_client_software_version(StrBytes::from_static_str("0")),
    );
    assert_eq!(versions.error_code, error_code::NONE, "ApiVersions error");
    assert!(!versions.api_keys.is_empty(), "ApiVersions lists no API");
    let metadata = conn.request(12, &MetadataRequest::default().with_topics(None));
    assert_eq!(metadata.brokers.len(), 1, "Metadata lists the one broker");
    assert_eq!(
        metadata.brokers[0].port,
        i32::from(broker.kafka_addr.port()),
        "Metadata advertises the listen port"
    );
}

/// Regression test: kafka-protocol 0.18 aborts the process when a body claims a huge array
/// (2^31-1 topics in 4 bytes). The broker must only drop that connection.
#[test]
fn metadata_with_huge_array_length_closes_only_that_connection() {
    let mut broker = Broker::start();
    let mut conn = broker.connect();
    let (header, _) = conn.header(3, 1, 1); // Metadata v1, request header v1
    conn.send_frame(&header, &[0x7f, 0xff, 0xff, 0xff]);
    conn.expect_closed("Metadata v1 claiming 2^31-1 topics");
    assert_serves(&mut broker);
}

#[test]
fn negative_frame_size_closes_the_connection() {
    let mut broker = Broker::start();
    for size in [-1i32, i32::MIN] {
        let mut conn = broker.connect();
        conn.send_raw(&size.to_be_bytes());
        conn.expect_closed(&format!("frame size {size}"));
    }
    assert_serves(&mut broker);
}

/// socket.request.max.bytes defaults to 100 MiB; the broker must refuse on the size alone,
/// without waiting for (or buffering) the body.
#[test]
fn frame_size_over_100_mib_closes_the_connection() {
    let mut broker = Broker::start();
    for size in [100 * 1024 * 1024 + 1, i32::MAX] {
        let mut conn = broker.connect();
        conn.send_raw(&size.to_be_bytes());
        conn.expect_closed(&format!("frame size {size}"));
    }
    assert_serves(&mut broker);
}

/// A header too short to hold api key, version and correlation id.
#[test]
fn truncated_request_header_closes_the_connection() {
    let mut broker = Broker::start();
    let mut conn = broker.connect();
    conn.send_frame(&[0x00, 0x12, 0x00], &[]);
    conn.expect_closed("3-byte request");
    assert_serves(&mut broker);
}

/// Kafka closes the connection on an API key it does not know.
#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = Broker::start();
    for api_key in [1000i16, -1, i16::MAX] {
        let mut conn = broker.connect();
        let (header, _) = conn.header(api_key, 0, 1);
        conn.send_frame(&header, &[]);
        conn.expect_closed(&format!("API key {api_key}"));
    }
    assert_serves(&mut broker);
}
