//! Version negotiation: which APIs and versions Strata advertises in ApiVersions, and so
//! which ones `decode_request` accepts.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterConfigsRequest, AlterPartitionReassignmentsRequest,
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsResponse, ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest, CreateAclsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteAclsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeAclsRequest, DescribeClientQuotasRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeProducersRequest,
    DescribeTransactionsRequest, DescribeUserScramCredentialsRequest, ElectLeadersRequest,
    FetchRequest, FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, SyncGroupRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// The full range kafka-protocol can decode for a request type.
const fn full<R: Message>(api_key: ApiKey) -> ApiRange {
    ApiRange {
        api_key,
        min: R::VERSIONS.min,
        max: R::VERSIONS.max,
    }
}

/// What Strata advertises (and so what `decode_request` accepts).
///
/// Strata stores only magic v2 record batches, so the minimums of the record-carrying APIs
/// are raised to the first version that implies magic v2 (Produce v3, Fetch v4) and
/// ListOffsets to v1, the first that returns a single offset rather than the v0 offset
/// array. Older clients then negotiate up or fail cleanly instead of sending batches
/// Strata would have to convert. ApiVersions is pinned to 0..=4: the KIP-511 fallback
/// depends on v0 being answerable and on higher versions being refused.
pub const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        api_key: ApiKey::Produce,
        min: 3,
        max: ProduceRequest::VERSIONS.max,
    },
    ApiRange {
        api_key: ApiKey::Fetch,
        min: 4,
        max: FetchRequest::VERSIONS.max,
    },
    ApiRange {
        api_key: ApiKey::ListOffsets,
        min: 1,
        max: ListOffsetsRequest::VERSIONS.max,
    },
    full::<MetadataRequest>(ApiKey::Metadata),
    ApiRange {
        api_key: ApiKey::ApiVersions,
        min: 0,
        max: 4,
    },
    full::<CreateTopicsRequest>(ApiKey::CreateTopics),
    full::<DeleteTopicsRequest>(ApiKey::DeleteTopics),
    full::<DeleteRecordsRequest>(ApiKey::DeleteRecords),
    full::<InitProducerIdRequest>(ApiKey::InitProducerId),
    full::<DescribeConfigsRequest>(ApiKey::DescribeConfigs),
    full::<AlterConfigsRequest>(ApiKey::AlterConfigs),
    full::<CreatePartitionsRequest>(ApiKey::CreatePartitions),
    full::<IncrementalAlterConfigsRequest>(ApiKey::IncrementalAlterConfigs),
    full::<DescribeClusterRequest>(ApiKey::DescribeCluster),
    full::<FindCoordinatorRequest>(ApiKey::FindCoordinator),
    full::<JoinGroupRequest>(ApiKey::JoinGroup),
    full::<SyncGroupRequest>(ApiKey::SyncGroup),
    full::<HeartbeatRequest>(ApiKey::Heartbeat),
    full::<LeaveGroupRequest>(ApiKey::LeaveGroup),
    full::<OffsetCommitRequest>(ApiKey::OffsetCommit),
    full::<OffsetFetchRequest>(ApiKey::OffsetFetch),
    full::<ListGroupsRequest>(ApiKey::ListGroups),
    full::<DescribeGroupsRequest>(ApiKey::DescribeGroups),
    full::<SaslHandshakeRequest>(ApiKey::SaslHandshake),
    full::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate),
    full::<DescribeUserScramCredentialsRequest>(ApiKey::DescribeUserScramCredentials),
    full::<AlterUserScramCredentialsRequest>(ApiKey::AlterUserScramCredentials),
    full::<DescribeClientQuotasRequest>(ApiKey::DescribeClientQuotas),
    full::<AlterClientQuotasRequest>(ApiKey::AlterClientQuotas),
    full::<DeleteGroupsRequest>(ApiKey::DeleteGroups),
    full::<OffsetDeleteRequest>(ApiKey::OffsetDelete),
    full::<ConsumerGroupHeartbeatRequest>(ApiKey::ConsumerGroupHeartbeat),
    full::<ConsumerGroupDescribeRequest>(ApiKey::ConsumerGroupDescribe),
    full::<ElectLeadersRequest>(ApiKey::ElectLeaders),
    full::<AlterPartitionReassignmentsRequest>(ApiKey::AlterPartitionReassignments),
    full::<ListPartitionReassignmentsRequest>(ApiKey::ListPartitionReassignments),
    full::<CreateAclsRequest>(ApiKey::CreateAcls),
    full::<DescribeAclsRequest>(ApiKey::DescribeAcls),
    full::<DeleteAclsRequest>(ApiKey::DeleteAcls),
    // Transactions as before KIP-890's transaction version 2 (which Strata does not
    // advertise as a feature, so clients add partitions and offsets themselves): the
    // versions whose requests and answers mean the same without it.
    ApiRange {
        api_key: ApiKey::AddPartitionsToTxn,
        min: 0,
        max: 3,
    },
    ApiRange {
        api_key: ApiKey::AddOffsetsToTxn,
        min: 0,
        max: 3,
    },
    ApiRange {
        api_key: ApiKey::EndTxn,
        min: 0,
        max: 4,
    },
    ApiRange {
        api_key: ApiKey::TxnOffsetCommit,
        min: 0,
        max: 4,
    },
    full::<DescribeTransactionsRequest>(ApiKey::DescribeTransactions),
    full::<DescribeProducersRequest>(ApiKey::DescribeProducers),
    // v2's transactional id regular expression is not served.
    ApiRange {
        api_key: ApiKey::ListTransactions,
        min: 0,
        max: 1,
    },
    // From a transaction coordinator to the leaders of its partitions.
    full::<WriteTxnMarkersRequest>(ApiKey::WriteTxnMarkers),
];

pub fn supported_range(api_key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().find(|r| r.api_key == api_key).copied()
}

/// The ApiVersions response body listing SUPPORTED, with `error_code`.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.api_key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// request::tests::decodes_every_supported_api_and_version checks the same against the
    /// request types, whose ranges can be narrower (InitProducerId: request 0..=5, key 0..=6).
    #[test]
    fn every_entry_is_within_what_kafka_protocol_decodes() {
        for range in SUPPORTED {
            let crate_range = range.api_key.valid_versions();
            assert!(range.min <= range.max, "{range:?}");
            assert!(range.min >= crate_range.min, "{range:?} vs {crate_range}");
            assert!(range.max <= crate_range.max, "{range:?} vs {crate_range}");
        }
    }

    #[test]
    fn table_lists_each_api_once_with_the_expected_versions() {
        let keys: Vec<ApiKey> = SUPPORTED.iter().map(|r| r.api_key).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(!keys[i + 1..].contains(key), "{key:?} listed twice");
        }
        // Pinned on purpose: a kafka-protocol upgrade that widens a range should be a
        // deliberate change here, not a silent one.
        assert_eq!(SUPPORTED.len(), 47);
        let range = |key| supported_range(key).map(|r| (r.min, r.max));
        assert_eq!(range(ApiKey::SaslHandshake), Some((0, 1)));
        assert_eq!(range(ApiKey::SaslAuthenticate), Some((0, 2)));
        assert_eq!(range(ApiKey::DescribeUserScramCredentials), Some((0, 0)));
        assert_eq!(range(ApiKey::AlterUserScramCredentials), Some((0, 0)));
        assert_eq!(range(ApiKey::DescribeClientQuotas), Some((0, 1)));
        assert_eq!(range(ApiKey::AlterClientQuotas), Some((0, 1)));
        assert_eq!(range(ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(range(ApiKey::Produce), Some((3, 13)));
        assert_eq!(range(ApiKey::Fetch), Some((4, 18)));
        assert_eq!(range(ApiKey::ListOffsets), Some((1, 10)));
        assert_eq!(range(ApiKey::Metadata), Some((0, 13)));
        assert_eq!(range(ApiKey::InitProducerId), Some((0, 5)));
        assert_eq!(range(ApiKey::ElectLeaders), Some((0, 2)));
        assert_eq!(range(ApiKey::AlterPartitionReassignments), Some((0, 1)));
        assert_eq!(range(ApiKey::ListPartitionReassignments), Some((0, 0)));
        assert_eq!(range(ApiKey::FindCoordinator), Some((0, 6)));
        assert_eq!(range(ApiKey::JoinGroup), Some((0, 9)));
        assert_eq!(range(ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(range(ApiKey::OffsetFetch), Some((1, 9)));
        assert_eq!(range(ApiKey::ConsumerGroupHeartbeat), Some((0, 1)));
        assert_eq!(range(ApiKey::AddPartitionsToTxn), Some((0, 3)));
        assert_eq!(range(ApiKey::EndTxn), Some((0, 4)));
        assert_eq!(range(ApiKey::TxnOffsetCommit), Some((0, 4)));
        assert_eq!(range(ApiKey::WriteTxnMarkers), Some((1, 1)));
    }

    #[test]
    fn response_advertises_the_table() {
        let response = api_versions_response(35);
        assert_eq!(response.error_code, 35);
        assert_eq!(response.api_keys.len(), SUPPORTED.len());
        for (advertised, range) in response.api_keys.iter().zip(SUPPORTED) {
            assert_eq!(advertised.api_key, range.api_key as i16);
            assert_eq!(advertised.min_version, range.min);
            assert_eq!(advertised.max_version, range.max);
        }
    }
}
