//! Each API through the request path with the authorizer on: a principal without ACLs is
//! refused with Kafka's authorization error for the API's resource, and one holding the ACL
//! the API needs is not.

use std::sync::Arc;

use coordinator::acl::{AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::*;
use proto_compat::kafka_protocol::protocol::StrBytes;
use proto_compat::request::Request;
use segment_store::backends::memory::MemoryStore;

use crate::authorizer::AuthorizerSettings;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::test_support::{broker, session};

const TOPIC: &str = "t";
const GROUP: &str = "g";
const TRANSACTIONAL_ID: &str = "tx";

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic_name() -> TopicName {
    TopicName(text(TOPIC))
}

fn group_id() -> GroupId {
    GroupId(text(GROUP))
}

/// An API, the request to send, the error a principal without ACLs gets, and the ACLs
/// that let one through.
struct Case {
    api: ApiKey,
    version: i16,
    body: RequestKind,
    refused: ResponseError,
    needs: &'static [(ResourceType, AclOperation)],
}

fn cases() -> Vec<Case> {
    use AclOperation::*;
    use ResourceType::{Cluster, Group, Topic};
    let case = |api, version, body, refused, needs| Case {
        api,
        version,
        body,
        refused,
        needs,
    };
    vec![
        case(
            ApiKey::ListOffsets,
            7,
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name())
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                    ]),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, Describe)],
        ),
        case(
            ApiKey::DeleteTopics,
            4,
            RequestKind::DeleteTopics(
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name()]),
            ),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, Delete)],
        ),
        case(
            ApiKey::CreatePartitions,
            2,
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name())
                    .with_count(4),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, Alter)],
        ),
        case(
            ApiKey::DeleteRecords,
            2,
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name())
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default().with_offset(0),
                    ]),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, Delete)],
        ),
        case(
            ApiKey::AlterConfigs,
            1,
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text(TOPIC))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(text("retention.ms"))
                        .with_value(Some(text("1000")))]),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, AlterConfigs)],
        ),
        case(
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text(TOPIC)),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, DescribeConfigs)],
        ),
        case(
            ApiKey::DescribeProducers,
            0,
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic_name())
                    .with_partition_indexes(vec![0]),
            ])),
            ResponseError::TopicAuthorizationFailed,
            &[(Topic, Read)],
        ),
        case(
            ApiKey::OffsetFetch,
            7,
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_group_id(group_id())),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Describe)],
        ),
        case(
            ApiKey::OffsetDelete,
            0,
            RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(group_id())
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(topic_name())
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default(),
                            ]),
                    ]),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Delete), (Topic, Read)],
        ),
        case(
            ApiKey::DeleteGroups,
            2,
            RequestKind::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![group_id()]),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Delete)],
        ),
        case(
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![group_id()]),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Describe)],
        ),
        case(
            ApiKey::ConsumerGroupDescribe,
            0,
            RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id()]),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Describe)],
        ),
        case(
            ApiKey::JoinGroup,
            5,
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group_id())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(text("consumer")),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Read)],
        ),
        case(
            ApiKey::Heartbeat,
            4,
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group_id())),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Read)],
        ),
        case(
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![text(GROUP)]),
            ),
            ResponseError::GroupAuthorizationFailed,
            &[(Group, Describe)],
        ),
        case(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(text(TRANSACTIONAL_ID))))
                    .with_transaction_timeout_ms(10_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
            ResponseError::TransactionalIdAuthorizationFailed,
            &[(ResourceType::TransactionalId, Write)],
        ),
        case(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(text(TRANSACTIONAL_ID))]),
            ),
            ResponseError::TransactionalIdAuthorizationFailed,
            &[(ResourceType::TransactionalId, Describe)],
        ),
        case(
            ApiKey::ElectLeaders,
            2,
            RequestKind::ElectLeaders(ElectLeadersRequest::default().with_topic_partitions(Some(
                vec![elect_leaders_request::TopicPartitions::default()
                    .with_topic(topic_name())
                    .with_partitions(vec![0])],
            ))),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Alter)],
        ),
        case(
            ApiKey::AlterPartitionReassignments,
            0,
            RequestKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsRequest::default().with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name())
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default(),
                        ]),
                ]),
            ),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Alter)],
        ),
        case(
            ApiKey::ListPartitionReassignments,
            0,
            RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Describe)],
        ),
        case(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(
                DescribeUserScramCredentialsRequest::default(),
            ),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Describe)],
        ),
        case(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(
                AlterUserScramCredentialsRequest::default().with_deletions(vec![
                    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(text("someone"))
                        .with_mechanism(1),
                ]),
            ),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Alter)],
        ),
        case(
            ApiKey::DescribeClientQuotas,
            1,
            RequestKind::DescribeClientQuotas(DescribeClientQuotasRequest::default()),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, DescribeConfigs)],
        ),
        case(
            ApiKey::AlterClientQuotas,
            1,
            RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(text("client-id"))
                        .with_entity_name(Some(text("app")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(text("producer_byte_rate"))
                        .with_value(1024.0)]),
            ])),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, AlterConfigs)],
        ),
        case(
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(
                DescribeAclsRequest::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Describe)],
        ),
        case(
            ApiKey::CreateAcls,
            3,
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![
                create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(text("other"))
                    .with_resource_pattern_type(3)
                    .with_principal(text("User:dave"))
                    .with_host(text("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ])),
            ResponseError::ClusterAuthorizationFailed,
            &[(Cluster, Alter)],
        ),
    ]
}

fn acl(principal: &str, resource_type: ResourceType, operation: AclOperation) -> AclBinding {
    let resource_name = match resource_type {
        ResourceType::Topic => TOPIC,
        ResourceType::Group => GROUP,
        ResourceType::TransactionalId => TRANSACTIONAL_ID,
        _ => "kafka-cluster",
    };
    AclBinding {
        resource_type,
        pattern_type: PatternType::Literal,
        resource_name: resource_name.to_string(),
        principal: principal.to_string(),
        host: "*".to_string(),
        operation,
        permission: AclPermission::Allow,
    }
}

/// The response to `case` as `principal`, as text: Kafka's error codes show in it as
/// `error_code: N` (whatever the field's prefix).
async fn answer(broker: &Arc<Broker>, principal: &str, case: &Case) -> String {
    let header = RequestHeader::default()
        .with_request_api_key(case.api as i16)
        .with_request_api_version(case.version)
        .with_correlation_id(1);
    let request = Request {
        header,
        api_key: case.api,
        body: case.body.clone(),
    };
    let reply = super::prepare(broker, &session(principal), request, 100)
        .await
        .await;
    let reply = reply.flatten().expect("a response");
    format!("{:?}", reply.body)
}

#[tokio::test]
async fn every_api_refuses_a_principal_without_its_acl_and_serves_one_with_it() {
    let config = BrokerConfig {
        authorizer: AuthorizerSettings {
            class_name: "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_string(),
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
        },
        ..BrokerConfig::default()
    };
    let (broker, _dir) = broker(Arc::new(MemoryStore::new()), config).await;
    for (i, case) in cases().into_iter().enumerate() {
        // A fresh topic each time: some cases delete it or add partitions.
        broker
            .coordinator
            .create_topic(TOPIC, 3, Default::default(), false)
            .await
            .ok();
        let code = format!("error_code: {}", case.refused.code());
        let refused = answer(&broker, "User:nobody", &case).await;
        assert!(
            refused.contains(&code),
            "{:?} without ACLs: {refused}",
            case.api
        );

        let principal = format!("User:holder-{i}");
        let acls = case
            .needs
            .iter()
            .map(|&(resource_type, operation)| acl(&principal, resource_type, operation))
            .collect();
        broker.coordinator.create_acls(acls).await.unwrap();
        let served = answer(&broker, &principal, &case).await;
        assert!(
            !served.contains(&code),
            "{:?} with its ACLs: {served}",
            case.api
        );
    }
}
