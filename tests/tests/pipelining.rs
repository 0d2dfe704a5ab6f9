//! Clients keep several requests in flight on one connection (librdkafka without limit):
//! Kafka handles them one at a time, so batches are appended and answered in request order.

use bytes::BytesMut;
use proto_compat::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use proto_compat::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use proto_compat::kafka_protocol::protocol::{Encodable, HeaderVersion, Request};
use strata_tests::{
    decode_response, error_code, record_batch, record_values, topic_name, Broker, Conn,
    PRODUCE_VERSION,
};

/// Sends an acks=all produce of one record without reading the response; returns its
/// correlation id.
fn send_produce(conn: &mut Conn, topic: &str, value: &str) -> i32 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
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
    correlation_id
}

/// Reads one produce response per correlation id, in order (decode_response checks each
/// id), and asserts the base offsets count up from 0.
fn expect_responses_in_order(conn: &mut Conn, correlation_ids: Vec<i32>) {
    for (i, correlation_id) in correlation_ids.into_iter().enumerate() {
        let mut frame = conn.read_frame().expect("produce response");
        let response: ProduceResponse =
            decode_response(&mut frame, PRODUCE_VERSION, correlation_id);
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, error_code::NONE, "request {i} error");
        assert_eq!(partition.base_offset, i as i64, "request {i} base offset");
    }
}

/// A broker started with `config_toml`, and a connection to it with `topic` (one partition)
/// created.
fn broker_with_topic(config_toml: &str, topic: &str) -> (Broker, Conn) {
    let broker = Broker::start_with_config(config_toml);
    let mut conn = broker.connect();
    assert_eq!(
        conn.create_topic(topic, 1, &[]),
        error_code::NONE,
        "create topic"
    );
    (broker, conn)
}

/// Writes `count` produces before reading any response, then checks the responses; returns
/// the values produced, in order.
fn produce_pipelined(conn: &mut Conn, topic: &str, count: usize) -> Vec<String> {
    let values: Vec<String> = (0..count).map(|i| format!("request-{i:03}")).collect();
    let correlation_ids = values
        .iter()
        .map(|value| send_produce(conn, topic, value))
        .collect();
    expect_responses_in_order(conn, correlation_ids);
    values
}

#[test]
fn pipelined_produces_are_appended_and_answered_in_order() {
    let topic = "pipelined";
    let (_broker, mut conn) = broker_with_topic("", topic);
    let expected = produce_pipelined(&mut conn, topic, 20);

    let fetched = conn.fetch(topic, 0, 0);
    let values: Vec<String> = record_values(fetched.records.as_ref())
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(values, expected, "log order differs from request order");
}

/// acks=all produces wait for a flush; the broker must keep reading the ones pipelined
/// behind them, so that they join the next flush instead of waiting one flush per few
/// requests (librdkafka keeps hundreds in flight: at 1,000 partitions, or at a 500 ms flush
/// interval).
#[test]
fn acks_all_produces_pipelined_behind_a_flush_share_the_next_one() {
    const IN_FLIGHT: usize = 600;
    let topic = "pipelined-acks-all";
    // The first flush goes at once (the flusher is idle); the next waits a second.
    let (broker, mut conn) = broker_with_topic("\"flush.interval.ms\" = 1000\n", topic);
    produce_pipelined(&mut conn, topic, IN_FLIGHT);

    let flushes = broker
        .metric("strata_flushes_total")
        .expect("strata_flushes_total on /metrics");
    assert!(
        flushes <= 3.0,
        "{IN_FLIGHT} pipelined produces took {flushes} flushes: the broker stopped reading \
         requests while earlier ones waited for their flush"
    );
}
