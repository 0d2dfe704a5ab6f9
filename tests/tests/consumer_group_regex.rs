//! KIP-848 regex subscriptions on the wire: ConsumerGroupHeartbeat v1's SubscribedTopicRegex
//! is refused with INVALID_REGULAR_EXPRESSION when RE2 would refuse it, and otherwise
//! subscribes the member to the topics it matches, which ConsumerGroupDescribe reports.

use proto_compat::kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use proto_compat::kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId,
};
use proto_compat::kafka_protocol::protocol::StrBytes;
use strata_tests::{error_code, Broker};

const INVALID_REGULAR_EXPRESSION: i16 = 128;

fn joining(group: &str, member: &str, regex: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(Vec::new()))
        .with_subscribed_topic_regex(Some(StrBytes::from_string(regex.into())))
        .with_topic_partitions(Some(Vec::<TopicPartitions>::new()))
}

#[test]
fn a_bad_regex_is_refused_and_a_good_one_subscribes_to_what_it_matches() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for topic in ["logs-a", "logs-b", "metrics"] {
        assert_eq!(
            conn.create_topic(topic, 2, &[]),
            error_code::NONE,
            "{topic}"
        );
    }
    for bad in ["logs-(", "(a)\\1", "(?=logs)"] {
        let response = conn.request(1, &joining("g", "m", bad));
        assert_eq!(response.error_code, INVALID_REGULAR_EXPRESSION, "{bad}");
        let message = response
            .error_message
            .map(|m| m.to_string())
            .unwrap_or_default();
        assert!(message.contains(bad), "{bad}: {message}");
    }

    let joined = conn.request(1, &joining("g", "m", "logs-.*"));
    assert_eq!(joined.error_code, error_code::NONE);
    let assigned: usize = joined
        .assignment
        .expect("an assignment")
        .topic_partitions
        .iter()
        .map(|tp| tp.partitions.len())
        .sum();
    assert_eq!(assigned, 4, "the two partitions of each logs- topic");

    let described = conn.request(
        1,
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("g"))]),
    );
    let member = &described.groups[0].members[0];
    assert_eq!(
        member.subscribed_topic_regex.as_deref(),
        Some("logs-.*"),
        "ConsumerGroupDescribe reports the regex"
    );
    let mut topics: Vec<String> = member
        .assignment
        .topic_partitions
        .iter()
        .map(|tp| tp.topic_name.to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["logs-a", "logs-b"]);
}
