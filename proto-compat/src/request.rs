//! Hardened request decoding: one frame in, a typed request or a typed refusal out.
//!
//! Every byte comes from an untrusted client, so nothing here may panic or allocate from a
//! length it has not checked against the bytes actually present.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::api_versions::supported_range;

/// api_key i16 + api_version i16 + correlation_id i32: common to every header version.
const FIXED_HEADER_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for a request header")]
    Truncated(usize),
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("{api_key:?} v{api_version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Decodes header + body of one frame (without the size prefix).
///
/// Never panics or aborts: checks lengths itself, rejects APIs and versions outside
/// `SUPPORTED` (so an ApiVersions request above v4 gets the KIP-511 fallback), and wraps
/// the decode in `catch_unwind` as a last line of defence. Bytes after the body are
/// ignored, as Kafka does.
pub fn decode_request(frame: Bytes) -> Result<Request, RequestError> {
    if frame.len() < FIXED_HEADER_LEN {
        return Err(RequestError::Truncated(frame.len()));
    }
    let mut fixed = &frame[..FIXED_HEADER_LEN];
    let raw_api_key = fixed.get_i16();
    let api_version = fixed.get_i16();
    let correlation_id = fixed.get_i32();

    let Ok(api_key) = ApiKey::try_from(raw_api_key) else {
        return Err(RequestError::UnknownApiKey {
            api_key: raw_api_key,
            correlation_id,
        });
    };
    let supported = supported_range(api_key)
        .is_some_and(|range| (range.min..=range.max).contains(&api_version));
    if !supported {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }

    let malformed = |reason: String| RequestError::Malformed {
        api_key,
        api_version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    // The buffer is a private cursor that is dropped if decoding panics, so no broken
    // invariant can be observed afterwards.
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        let header_version = api_key.request_header_version(api_version);
        let header = RequestHeader::decode(&mut buf, header_version)
            .map_err(|e| format!("header v{header_version}: {e:#}"))?;
        let body =
            RequestKind::decode(api_key, &mut buf, api_version).map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>((header, body))
    }));
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            header,
            api_key,
            body,
        }),
        Ok(Err(reason)) => Err(malformed(reason)),
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(?api_key, api_version, %message, "request decoder panicked");
            Err(malformed(format!("decoder panicked: {message}")))
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;
    use crate::api_versions::SUPPORTED;

    fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test-client")))
    }

    /// A frame (no size prefix) as a Kafka client would send it.
    fn frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        header(api_key, version, correlation_id)
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    fn topic(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    /// A valid request of each supported API, with a field that is present in every version.
    fn sample(api_key: ApiKey) -> RequestKind {
        match api_key {
            ApiKey::Produce => RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(1500),
            ),
            ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500)),
            ApiKey::ListOffsets => RequestKind::ListOffsets(
                ListOffsetsRequest::default().with_replica_id(BrokerId(-1)),
            ),
            ApiKey::Metadata => {
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic("t"))),
                ])))
            }
            ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
            ApiKey::CreateTopics => {
                RequestKind::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(3000))
            }
            ApiKey::DeleteTopics => {
                RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_timeout_ms(3000))
            }
            ApiKey::DeleteRecords => {
                RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(3000))
            }
            ApiKey::InitProducerId => RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
            ),
            ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
                DescribeConfigsRequest::default().with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str("t")),
                ]),
            ),
            ApiKey::AlterConfigs => {
                RequestKind::AlterConfigs(AlterConfigsRequest::default().with_validate_only(true))
            }
            ApiKey::CreatePartitions => RequestKind::CreatePartitions(
                CreatePartitionsRequest::default().with_timeout_ms(3000),
            ),
            ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default().with_validate_only(true),
            ),
            ApiKey::DescribeCluster => RequestKind::DescribeCluster(
                DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            ),
            ApiKey::FindCoordinator => {
                RequestKind::FindCoordinator(FindCoordinatorRequest::default())
            }
            ApiKey::JoinGroup => {
                RequestKind::JoinGroup(JoinGroupRequest::default().with_session_timeout_ms(10000))
            }
            ApiKey::SyncGroup => {
                RequestKind::SyncGroup(SyncGroupRequest::default().with_generation_id(1))
            }
            ApiKey::Heartbeat => {
                RequestKind::Heartbeat(HeartbeatRequest::default().with_generation_id(1))
            }
            ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
            ApiKey::OffsetCommit => RequestKind::OffsetCommit(
                OffsetCommitRequest::default().with_generation_id_or_member_epoch(1),
            ),
            ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
            ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
            ApiKey::DescribeGroups => RequestKind::DescribeGroups(
                DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_static_str("g"))]),
            ),
            ApiKey::DeleteGroups => RequestKind::DeleteGroups(
                DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(StrBytes::from_static_str("g"))]),
            ),
            ApiKey::OffsetDelete => RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g"))),
            ),
            ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default().with_member_epoch(1),
            ),
            ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![GroupId(StrBytes::from_static_str("g"))]),
            ),
            ApiKey::ElectLeaders => {
                RequestKind::ElectLeaders(ElectLeadersRequest::default().with_timeout_ms(1000))
            }
            ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest::default().with_timeout_ms(1000),
            ),
            ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default().with_timeout_ms(1000),
            ),
            ApiKey::SaslHandshake => RequestKind::SaslHandshake(
                SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
            ),
            ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
                SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from_static(b"n,,n=a,r=b")),
            ),
            ApiKey::DescribeUserScramCredentials => {
                RequestKind::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::AlterUserScramCredentials => {
                RequestKind::AlterUserScramCredentials(Default::default())
            }
            ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(Default::default()),
            ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(Default::default()),
            ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
                AddPartitionsToTxnRequest::default().with_v3_and_below_producer_epoch(1),
            ),
            ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
                AddOffsetsToTxnRequest::default().with_producer_epoch(1),
            ),
            ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default().with_producer_epoch(1)),
            ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
                TxnOffsetCommitRequest::default().with_producer_epoch(1),
            ),
            ApiKey::WriteTxnMarkers => {
                RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                    write_txn_markers_request::WritableTxnMarker::default().with_producer_epoch(1),
                ]))
            }
            ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("t"))]),
            ),
            ApiKey::DescribeProducers => {
                RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(
                    vec![describe_producers_request::TopicRequest::default().with_name(topic("t"))],
                ))
            }
            ApiKey::ListTransactions => {
                RequestKind::ListTransactions(ListTransactionsRequest::default())
            }
            ApiKey::CreateAcls => {
                RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(
                    vec![create_acls_request::AclCreation::default()
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_principal(StrBytes::from_static_str("User:alice"))
                    .with_host(StrBytes::from_static_str("*"))],
                ))
            }
            ApiKey::DescribeAcls => RequestKind::DescribeAcls(
                DescribeAclsRequest::default()
                    .with_resource_name_filter(Some(StrBytes::from_static_str("t"))),
            ),
            ApiKey::DeleteAcls => RequestKind::DeleteAcls(
                DeleteAclsRequest::default()
                    .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]),
            ),
            other => panic!("no sample for {other:?}"),
        }
    }

    #[test]
    fn decodes_every_supported_api_and_version() {
        for range in SUPPORTED {
            for version in range.min..=range.max {
                let body = sample(range.api_key);
                let request = decode_request(frame(range.api_key, version, 42, &body))
                    .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", range.api_key));
                assert_eq!(request.api_key, range.api_key);
                assert_eq!(request.header, header(range.api_key, version, 42));
                assert_eq!(request.body, body, "{:?} v{version}", range.api_key);
            }
        }
    }

    #[test]
    fn ignores_trailing_bytes() {
        let body = sample(ApiKey::Metadata);
        let mut bytes = BytesMut::from(&frame(ApiKey::Metadata, 12, 7, &body)[..]);
        bytes.extend_from_slice(b"trailing garbage");
        let request = decode_request(bytes.freeze()).unwrap();
        assert_eq!(request.body, body);
    }

    #[test]
    fn huge_array_length_is_malformed_not_an_abort() {
        // Metadata v1: header v1 (api key, version, correlation id, null client id), then a
        // topics array claiming 2^31-1 entries with no bytes behind it.
        let bytes =
            Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
        let err = decode_request(bytes).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Malformed {
                    api_key: ApiKey::Metadata,
                    api_version: 1,
                    correlation_id: 9,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn shorter_than_the_fixed_header_is_truncated() {
        for len in 0..FIXED_HEADER_LEN {
            let bytes = Bytes::from(vec![0u8; len]);
            assert!(matches!(decode_request(bytes), Err(RequestError::Truncated(n)) if n == len));
        }
    }

    #[test]
    fn truncated_header_or_body_is_malformed() {
        let body = sample(ApiKey::Produce);
        let full = frame(ApiKey::Produce, 9, 5, &body);
        for len in FIXED_HEADER_LEN..full.len() {
            let err = decode_request(full.slice(..len)).unwrap_err();
            assert!(
                matches!(
                    err,
                    RequestError::Malformed {
                        correlation_id: 5,
                        ..
                    }
                ),
                "cut at {len}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_api_key_keeps_the_correlation_id() {
        let bytes = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0x01, 0x02]);
        let err = decode_request(bytes).unwrap_err();
        assert!(matches!(
            err,
            RequestError::UnknownApiKey {
                api_key: 0x7f00,
                correlation_id: 0x0102
            }
        ));
    }

    #[test]
    fn versions_outside_supported_are_refused() {
        let cases = [
            (ApiKey::Produce, 2i16),
            (ApiKey::Fetch, 3),
            (ApiKey::ListOffsets, 0),
            (ApiKey::Metadata, 14),
            (ApiKey::ApiVersions, -1),
            // Known to kafka-protocol but not served by Strata.
            (ApiKey::EndTxn, 5),
        ];
        for (api_key, version) in cases {
            let mut bytes = BytesMut::new();
            bytes.extend_from_slice(&(api_key as i16).to_be_bytes());
            bytes.extend_from_slice(&version.to_be_bytes());
            bytes.extend_from_slice(&77i32.to_be_bytes());
            let err = decode_request(bytes.freeze()).unwrap_err();
            assert!(
                matches!(err, RequestError::UnsupportedVersion { api_key: k, api_version: v, correlation_id: 77 } if k == api_key && v == version),
                "{err:?}"
            );
        }
    }

    #[test]
    fn apiversions_above_v4_is_unsupported_even_with_an_unparseable_body() {
        // KIP-511: a newer client's ApiVersions body may be in a format we cannot parse; it
        // must still get an UNSUPPORTED_VERSION answer, so the body is never looked at.
        let bytes = Bytes::from_static(&[0, 18, 0, 9, 0, 0, 0, 3, 0xde, 0xad]);
        let err = decode_request(bytes).unwrap_err();
        assert!(matches!(
            err,
            RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                api_version: 9,
                correlation_id: 3
            }
        ));
    }
}
