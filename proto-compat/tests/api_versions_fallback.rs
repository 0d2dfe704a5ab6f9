//! KIP-511: a client newer than the broker opens with an ApiVersions version the broker
//! does not know. The broker answers UNSUPPORTED_VERSION in a v0 response that still lists
//! its versions, and the client retries with one of them.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto_compat::api_versions::{api_versions_response, SUPPORTED};
use proto_compat::kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};
use proto_compat::kafka_protocol::protocol::Decodable;
use proto_compat::kafka_protocol::ResponseError;
use proto_compat::request::{decode_request, RequestError};
use proto_compat::response::encode_response;

#[test]
fn apiversions_above_v4_gets_a_v0_unsupported_version_answer() {
    // ApiVersions v5 from a future client; its header and body are opaque to us.
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(5);
    frame.put_i32(0x0bad_cafe);
    frame.put_slice(b"\x00\x0bfuture-body");

    let err = decode_request(frame.freeze()).unwrap_err();
    let RequestError::UnsupportedVersion {
        api_key: ApiKey::ApiVersions,
        api_version: 5,
        correlation_id,
    } = err
    else {
        panic!("expected UnsupportedVersion, got {err:?}");
    };

    // What the gateway does with it.
    let code = ResponseError::UnsupportedVersion.code();
    let body = ResponseKind::ApiVersions(api_versions_response(code));
    let encoded = encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).unwrap();

    // What the client sees: size, header v0 (just the correlation id), body v0.
    let mut bytes: Bytes = encoded.to_bytes();
    assert_eq!(bytes.get_i32() as usize, bytes.remaining());
    assert_eq!(bytes.get_i32(), 0x0bad_cafe);
    let response = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
    assert!(!bytes.has_remaining());
    assert_eq!(response.error_code, 35);
    let advertised: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|r| (r.api_key as i16, r.min, r.max))
        .collect();
    assert_eq!(advertised, expected);
    assert!(advertised.contains(&(ApiKey::ApiVersions as i16, 0, 4)));
}
