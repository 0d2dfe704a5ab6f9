//! Writes a seed corpus of valid inputs, so the fuzzers start from real requests and
//! batches instead of discovering the Kafka formats byte by byte:
//! corpus/decode_request/ gets one request per supported API and version,
//! corpus/record_batches/ one small batch per codec and a multi-batch blob.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use proto_compat::api_versions::SUPPORTED;
use proto_compat::kafka_protocol::messages::*;
use proto_compat::kafka_protocol::protocol::{Encodable, StrBytes};
use proto_compat::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn main() -> std::io::Result<()> {
    let requests = Path::new("corpus/decode_request");
    fs::create_dir_all(requests)?;
    let batch = record_batch(Compression::None);
    for range in SUPPORTED {
        for version in range.min..=range.max {
            let frame = request(range.api_key, version, &batch);
            fs::write(
                requests.join(format!("{:?}-v{version}", range.api_key)),
                frame,
            )?;
        }
    }

    let batches = Path::new("corpus/record_batches");
    fs::create_dir_all(batches)?;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut blob = Vec::new();
    for codec in codecs {
        let batch = record_batch(codec);
        fs::write(batches.join(format!("{codec:?}")), &batch)?;
        blob.extend_from_slice(&batch);
    }
    fs::write(batches.join("all-codecs"), blob)?;
    Ok(())
}

fn record_batch(compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::from_static(b"value")),
            headers: [(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable batch");
    buf.freeze()
}

/// A request frame (no size prefix) whose body has one element in its main array, so the
/// nested structures are present in the seed.
fn request(api_key: ApiKey, version: i16, batch: &Bytes) -> BytesMut {
    let name = || TopicName(StrBytes::from_static_str("topic"));
    let group = || GroupId(StrBytes::from_static_str("group"));
    let body: RequestKind = match api_key {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_records(Some(batch.clone())),
                ])])
            .into(),
        ApiKey::Fetch => FetchRequest::default()
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name())
                .with_partitions(vec![fetch_request::FetchPartition::default()])])
            .into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name())
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default(),
                ])])
            .into(),
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name()))]))
            .into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("seed"))
            .with_client_software_version(StrBytes::from_static_str("1"))
            .into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name())
                .with_num_partitions(3)])
            .into(),
        // Topics are listed by name up to v5 and as structs from v6.
        ApiKey::DeleteTopics if version < 6 => DeleteTopicsRequest::default()
            .with_topic_names(vec![name()])
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default()
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name()))
            ])
            .into(),
        ApiKey::DeleteRecords => DeleteRecordsRequest::default()
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(name())
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default(),
                ])])
            .into(),
        ApiKey::InitProducerId => InitProducerIdRequest::default().into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default()
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("topic")),
            ])
            .into(),
        ApiKey::AlterConfigs => AlterConfigsRequest::default()
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("topic"))])
            .into(),
        ApiKey::CreatePartitions => CreatePartitionsRequest::default()
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default().with_name(name()),
            ])
            .into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("topic")),
            ])
            .into(),
        ApiKey::DescribeCluster => DescribeClusterRequest::default().into(),
        // One key before v4, a batch of keys from v4.
        ApiKey::FindCoordinator if version < 4 => FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("group"))
            .into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("group")])
            .into(),
        ApiKey::JoinGroup => JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))])
            .into(),
        ApiKey::SyncGroup => SyncGroupRequest::default()
            .with_group_id(group())
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default(),
            ])
            .into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().with_group_id(group()).into(),
        // One member before v3, a batch of members from v3.
        ApiKey::LeaveGroup if version < 3 => {
            LeaveGroupRequest::default().with_group_id(group()).into()
        }
        ApiKey::LeaveGroup => LeaveGroupRequest::default()
            .with_group_id(group())
            .with_members(vec![leave_group_request::MemberIdentity::default()])
            .into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(group())
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name())
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default(),
                    ]),
            ])
            .into(),
        // One group before v8, a batch of groups from v8.
        ApiKey::OffsetFetch if version < 8 => OffsetFetchRequest::default()
            .with_group_id(group())
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0]),
            ]))
            .into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default()
            .with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group()),
            ])
            .into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default()
            .with_groups(vec![group()])
            .into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default()
            .with_groups_names(vec![group()])
            .into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default()
            .with_group_id(group())
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(name())
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default(),
                    ]),
            ])
            .into(),
        ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(StrBytes::from_static_str("member"))
            .with_subscribed_topic_names(Some(vec![name()]))
            .into(),
        ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![group()])
            .into(),
        other => unreachable!("{other:?} is not in SUPPORTED"),
    };
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("seed")))
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("encodable header");
    body.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e:#}"));
    buf
}
