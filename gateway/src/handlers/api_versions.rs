//! ApiVersions: the versions Strata serves (the too-new-version fallback of KIP-511 is in
//! `connection`, because such a request cannot be decoded).

use proto_compat::api_versions::api_versions_response;
use proto_compat::kafka_protocol::messages::ApiVersionsResponse;

pub fn handle() -> ApiVersionsResponse {
    api_versions_response(0)
}
