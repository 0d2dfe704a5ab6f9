//! Clients keep several requests in flight on one connection (librdkafka up to 5 or more):
//! Kafka handles them one at a time, so batches are appended and answered in request order.

use bytes::BytesMut;
use proto_compat::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use proto_compat::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use proto_compat::kafka_protocol::protocol::{Encodable, HeaderVersion, Request};
use strata_tests::{
    decode_response, error_code, record_batch, record_values, topic_name, Broker, PRODUCE_VERSION,
};

const IN_FLIGHT: usize = 20;

#[test]
fn pipelined_produces_are_appended_and_answered_in_order() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    let topic = "pipelined";
    assert_eq!(
        conn.create_topic(topic, 1, &[]),
        error_code::NONE,
        "create topic"
    );

    // Write every request before reading any response.
    let mut correlation_ids = Vec::new();
    for i in 0..IN_FLIGHT {
        let value = format!("request-{i:02}");
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(record_batch(&[value.as_bytes()]).freeze()))])]);
        let (header, correlation_id) = conn.header(
            ProduceRequest::KEY,
            PRODUCE_VERSION,
            ProduceRequest::header_version(PRODUCE_VERSION),
        );
        let mut body = BytesMut::new();
        request.encode(&mut body, PRODUCE_VERSION).unwrap();
        conn.send_frame(&header, &body);
        correlation_ids.push(correlation_id);
    }

    // decode_response checks each correlation id, so responses must come in request order.
    for (i, correlation_id) in correlation_ids.into_iter().enumerate() {
        let mut frame = conn.read_frame().expect("produce response");
        let response: ProduceResponse =
            decode_response(&mut frame, PRODUCE_VERSION, correlation_id);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, error_code::NONE, "request {i} error");
        assert_eq!(partition.base_offset, i as i64, "request {i} base offset");
    }

    let fetched = conn.fetch(topic, 0, 0);
    let values: Vec<String> = record_values(fetched.records.as_ref())
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let expected: Vec<String> = (0..IN_FLIGHT).map(|i| format!("request-{i:02}")).collect();
    assert_eq!(values, expected, "log order differs from request order");
}
