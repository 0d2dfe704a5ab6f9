//! Response encoding: size prefix, response header and body in one buffer, ready for the
//! socket.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// 4-byte size prefix + response header + body.
///
/// The header version comes from `api_key.response_header_version`, which is v0 for every
/// ApiVersions version: a client that does not yet know the broker's versions must be able
/// to read the answer (KIP-511).
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let error = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    let body_size = match body_api_key_and_size(body, api_version) {
        Some((key, size)) if key == api_key => size.map_err(error)?,
        Some((key, _)) => return Err(error(format!("the body is a {key:?} response"))),
        None => return Err(error("the body is an unknown response type".to_owned())),
    };
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| error(format!("header v{header_version}: {e:#}")))?;

    let mut buf = BytesMut::with_capacity(4 + header_size + body_size);
    buf.put_i32(0); // patched below
    header
        .encode(&mut buf, header_version)
        .map_err(|e| error(format!("header v{header_version}: {e:#}")))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| error(format!("{e:#}")))?;
    // The prefix is the length actually written, so a compute_size bug can never
    // desynchronise the client's framing.
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| error(format!("{} bytes exceed the i32 size prefix", buf.len())))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// kafka-protocol's `ResponseKind` has no `compute_size`, so dispatch over its variants,
/// which are named like their `ApiKey`. `None` for a variant newer than this list.
macro_rules! api_key_and_size {
    ($body:expr, $version:expr, [$($api:ident)*]) => {
        match $body {
            $(ResponseKind::$api(b) => Some((
                ApiKey::$api,
                b.compute_size($version).map_err(|e| format!("{e:#}")),
            )),)*
            _ => None,
        }
    };
}

fn body_api_key_and_size(
    body: &ResponseKind,
    version: i16,
) -> Option<(ApiKey, Result<usize, String>)> {
    api_key_and_size!(body, version, [
        Produce Fetch ListOffsets Metadata OffsetCommit OffsetFetch FindCoordinator JoinGroup
        Heartbeat LeaveGroup SyncGroup DescribeGroups ListGroups SaslHandshake ApiVersions
        CreateTopics DeleteTopics DeleteRecords InitProducerId OffsetForLeaderEpoch
        AddPartitionsToTxn AddOffsetsToTxn EndTxn WriteTxnMarkers TxnOffsetCommit DescribeAcls
        CreateAcls DeleteAcls DescribeConfigs AlterConfigs AlterReplicaLogDirs DescribeLogDirs
        SaslAuthenticate CreatePartitions CreateDelegationToken RenewDelegationToken
        ExpireDelegationToken DescribeDelegationToken DeleteGroups ElectLeaders
        IncrementalAlterConfigs AlterPartitionReassignments ListPartitionReassignments
        OffsetDelete DescribeClientQuotas AlterClientQuotas DescribeUserScramCredentials
        AlterUserScramCredentials Vote BeginQuorumEpoch EndQuorumEpoch DescribeQuorum
        AlterPartition UpdateFeatures Envelope FetchSnapshot DescribeCluster DescribeProducers
        BrokerRegistration BrokerHeartbeat UnregisterBroker DescribeTransactions ListTransactions
        AllocateProducerIds ConsumerGroupHeartbeat ConsumerGroupDescribe ControllerRegistration
        GetTelemetrySubscriptions PushTelemetry AssignReplicasToDirs ListConfigResources
        DescribeTopicPartitions ShareGroupHeartbeat ShareGroupDescribe ShareFetch
        ShareAcknowledge AddRaftVoter RemoveRaftVoter UpdateRaftVoter InitializeShareGroupState
        ReadShareGroupState WriteShareGroupState DeleteShareGroupState ReadShareGroupStateSummary
        DescribeShareGroupOffsets AlterShareGroupOffsets DeleteShareGroupOffsets
    ])
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::messages::{
        ApiVersionsResponse, MetadataResponse, ProduceResponse, ResponseHeader,
    };
    use kafka_protocol::protocol::Decodable;

    use super::*;
    use crate::api_versions::api_versions_response;

    /// Checks the size prefix and strips it.
    fn unframe(encoded: &Bytes) -> Bytes {
        let mut bytes = encoded.clone();
        let size = bytes.get_i32();
        assert_eq!(size as usize, bytes.len(), "size prefix");
        bytes
    }

    /// A decodable body of any API: a buffer filled with one of these bytes always parses
    /// (zeros for plain fields, ones for compact lengths, which must not be null).
    fn any_body(api_key: ApiKey, version: i16) -> ResponseKind {
        [0u8, 1, 2]
            .iter()
            .find_map(|&fill| {
                ResponseKind::decode(api_key, &mut Bytes::from(vec![fill; 4096]), version).ok()
            })
            .unwrap_or_else(|| panic!("no sample body for {api_key:?}"))
    }

    #[test]
    fn every_response_type_is_encodable() {
        for api_key in ApiKey::iter() {
            let version = api_key.valid_versions().min;
            let body = any_body(api_key, version);
            let encoded = encode_response(api_key, version, 3, &body)
                .unwrap_or_else(|e| panic!("{api_key:?}: {e}"));
            let mut bytes = unframe(&encoded);
            let header_version = api_key.response_header_version(version);
            assert_eq!(
                ResponseHeader::decode(&mut bytes, header_version)
                    .unwrap()
                    .correlation_id,
                3
            );
            assert_eq!(
                ResponseKind::decode(api_key, &mut bytes, version).unwrap(),
                body
            );
        }
    }

    #[test]
    fn apiversions_responses_use_header_v0_in_every_version() {
        for version in 0..=4 {
            assert_eq!(ApiKey::ApiVersions.response_header_version(version), 0);
            let body = ResponseKind::ApiVersions(api_versions_response(0));
            let encoded = encode_response(ApiKey::ApiVersions, version, 11, &body).unwrap();
            let mut bytes = unframe(&encoded);
            assert_eq!(bytes.get_i32(), 11, "correlation id");
            // No tagged-field byte after the correlation id: the body follows at once and
            // decodes to the end.
            let decoded = ApiVersionsResponse::decode(&mut bytes, version).unwrap();
            assert_eq!(ResponseKind::ApiVersions(decoded), body, "v{version}");
            assert!(bytes.is_empty(), "v{version}");
        }
    }

    #[test]
    fn flexible_versions_get_header_v1() {
        let body = ResponseKind::Metadata(MetadataResponse::default().with_throttle_time_ms(9));
        let encoded = encode_response(ApiKey::Metadata, 12, -5, &body).unwrap();
        let mut bytes = unframe(&encoded);
        let header = ResponseHeader::decode(&mut bytes, 1).unwrap();
        assert_eq!(header.correlation_id, -5);
        let decoded = MetadataResponse::decode(&mut bytes, 12).unwrap();
        assert_eq!(decoded.throttle_time_ms, 9);
        assert!(bytes.is_empty());
    }

    #[test]
    fn prefix_header_and_body_add_up() {
        let body = ResponseKind::Produce(ProduceResponse::default());
        let encoded = encode_response(ApiKey::Produce, 9, 1, &body).unwrap();
        let expected = 4 + 4 + 1 + ProduceResponse::default().compute_size(9).unwrap();
        assert_eq!(encoded.len(), expected);
    }

    #[test]
    fn body_of_another_api_is_refused() {
        let body = ResponseKind::Produce(ProduceResponse::default());
        let err = encode_response(ApiKey::Fetch, 4, 1, &body).unwrap_err();
        assert_eq!(err.api_key, ApiKey::Fetch);
        assert!(err.reason.contains("Produce"), "{err}");
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        let body = ResponseKind::Metadata(MetadataResponse::default());
        let err = encode_response(ApiKey::Metadata, 99, 1, &body).unwrap_err();
        assert_eq!(err.api_version, 99);
    }
}
