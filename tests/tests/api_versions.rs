//! ApiVersions negotiation, including the KIP-511 answer to a version the broker does not know.

use bytes::BytesMut;
use proto_compat::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use proto_compat::kafka_protocol::protocol::{Encodable, StrBytes};
use strata_tests::{decode_response, error_code, Broker};

fn request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("strata-tests"))
        .with_client_software_version(StrBytes::from_static_str("0"))
}

/// The (min, max) the response advertises for `key`.
fn advertised(response: &ApiVersionsResponse, key: ApiKey) -> Option<(i16, i16)> {
    response
        .api_keys
        .iter()
        .find(|k| k.api_key == key as i16)
        .map(|k| (k.min_version, k.max_version))
}

#[test]
fn api_versions_v0_to_v4_succeed() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in 0..=4 {
        let response = conn.request(version, &request());
        assert_eq!(
            response.error_code,
            error_code::NONE,
            "ApiVersions v{version} error"
        );
        assert_eq!(
            advertised(&response, ApiKey::ApiVersions),
            Some((0, 4)),
            "ApiVersions v{version} advertises ApiVersions 0..=4"
        );
        for key in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::ListOffsets,
        ] {
            assert!(
                advertised(&response, key).is_some(),
                "ApiVersions v{version} does not advertise {key:?}"
            );
        }
    }
}

/// KIP-511: a client newer than the broker sends its own ApiVersions version; the broker
/// answers UNSUPPORTED_VERSION encoded as v0, with its ranges, so the client can downgrade.
#[test]
fn api_versions_v127_gets_unsupported_version_as_v0() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    // A future client would use the flexible header (v2) and a v3+-style body.
    let (header, correlation_id) = conn.header(ApiKey::ApiVersions as i16, 127, 2);
    let mut body = BytesMut::new();
    request().encode(&mut body, 4).unwrap();
    conn.send_frame(&header, &body);
    let mut frame = conn.read_frame().expect("an answer to ApiVersions v127");
    let response: ApiVersionsResponse = decode_response(&mut frame, 0, correlation_id);
    assert_eq!(
        response.error_code,
        error_code::UNSUPPORTED_VERSION,
        "ApiVersions v127 error code"
    );
    assert_eq!(
        advertised(&response, ApiKey::ApiVersions),
        Some((0, 4)),
        "the v0 answer lists the broker's ranges"
    );
    assert!(
        advertised(&response, ApiKey::Metadata).is_some(),
        "the v0 answer lists Metadata"
    );
    assert!(frame.is_empty(), "{} bytes after the v0 body", frame.len());

    // The client downgrades on the same connection.
    let response = conn.request(3, &request());
    assert_eq!(
        response.error_code,
        error_code::NONE,
        "ApiVersions v3 after v127"
    );
}
