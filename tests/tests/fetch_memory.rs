//! Fetch responses in memory are bounded over all connections (`fetch.buffer.max.bytes`): a
//! client that pipelines fetches and does not read its socket holds at most that much, and
//! other fetches wait for room at most their `max_wait_ms`, then get a response without
//! records, as a long poll that found none.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto_compat::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use proto_compat::kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use proto_compat::kafka_protocol::protocol::{Encodable, HeaderVersion, Request};
use strata_tests::{
    decode_response, error_code, record_batch, record_values, topic_name, Broker, Conn,
    FETCH_VERSION,
};

const TOPIC: &str = "fetch-memory";
const MIB: usize = 1024 * 1024;
/// Each fetch asks for 1 MiB of the partition and gets about that.
const PARTITION_MAX_BYTES: i32 = MIB as i32;
const FETCH_BUFFER: usize = 4 * MIB;
const PIPELINED: usize = 200;

fn fetch_request(max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 * MIB as i32)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(PARTITION_MAX_BYTES)])])
}

/// Sends a fetch from offset 0 without reading the response; returns its correlation id.
fn send_fetch(conn: &mut Conn) -> i32 {
    let (header, correlation_id) = conn.header(
        FetchRequest::KEY,
        FETCH_VERSION,
        FetchRequest::header_version(FETCH_VERSION),
    );
    let mut body = BytesMut::new();
    fetch_request(500)
        .encode(&mut body, FETCH_VERSION)
        .expect("encode fetch");
    conn.send_frame(&header, &body);
    correlation_id
}

/// The records of the one partition in `response`, after checking it has no error and the
/// high watermark is `high_watermark`.
fn records(response: FetchResponse, high_watermark: i64) -> usize {
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, error_code::NONE, "fetch error");
    assert_eq!(partition.high_watermark, high_watermark, "high watermark");
    record_values(partition.records.as_ref()).len()
}

/// Produces 2 MiB in 8 batches of four 64 KiB records; returns the records produced.
fn produce_two_mib(broker: &Broker) -> i64 {
    let mut producer = broker.connect();
    assert_eq!(producer.create_topic(TOPIC, 1, &[]), error_code::NONE);
    let value = vec![b'x'; 64 * 1024];
    let mut produced = 0;
    for _ in 0..8 {
        let batch = record_batch(&[&value, &value, &value, &value]).freeze();
        let response = producer.produce(TOPIC, 0, -1, batch);
        assert_eq!(response.error_code, error_code::NONE, "produce");
        produced += 4;
    }
    produced
}

#[test]
fn fetches_that_are_not_read_hold_at_most_the_fetch_buffer() {
    let broker =
        Broker::start_with_config(&format!("\"fetch.buffer.max.bytes\" = {FETCH_BUFFER}\n"));
    let produced = produce_two_mib(&broker);
    let rss_before = broker.rss_bytes();

    // A client sends fetches of ~1 MiB each and does not read the responses.
    let mut stuck = broker.connect();
    let correlation_ids: Vec<i32> = (0..PIPELINED).map(|_| send_fetch(&mut stuck)).collect();
    // Every fetch has been read by the broker and has either its records or waited out
    // its 500 ms for room.
    std::thread::sleep(Duration::from_secs(2));
    let grown = broker.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 64 * MIB as u64,
        "{PIPELINED} unread fetches of 1 MiB grew the broker by {} MiB; the fetch buffer is \
         {} MiB",
        grown / MIB as u64,
        FETCH_BUFFER / MIB
    );

    // Another consumer's fetch waits for room for its max_wait_ms, then gets no records
    // (and the high watermark, so it fetches again).
    let mut other = broker.connect();
    let started = Instant::now();
    let response = other.request(FETCH_VERSION, &fetch_request(300));
    assert_eq!(records(response, produced), 0, "no room: no records");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the fetch waited for room for its max_wait_ms"
    );
    let exhausted = broker
        .metric("strata_fetch_memory_exhausted_total")
        .expect("strata_fetch_memory_exhausted_total on /metrics");
    assert!(exhausted >= 1.0, "the fetch without room is counted");

    // The stuck client reads on: every response comes, in order, with records or without.
    let mut with_records = 0;
    for correlation_id in correlation_ids {
        let mut frame = stuck.read_frame().expect("fetch response");
        let response: FetchResponse = decode_response(&mut frame, FETCH_VERSION, correlation_id);
        if records(response, produced) > 0 {
            with_records += 1;
        }
    }
    assert!(with_records > 0, "some pipelined fetches got their records");
    assert!(
        with_records < PIPELINED,
        "all {PIPELINED} pipelined fetches got records: nothing bounded them"
    );

    // Room is back once the responses are written.
    let response = other.request(FETCH_VERSION, &fetch_request(300));
    assert!(records(response, produced) > 0, "room again: records");
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_its_fetch_memory_freed() {
    let broker = Broker::start_with_config(&format!(
        "\"fetch.buffer.max.bytes\" = {FETCH_BUFFER}\n\"socket.stall.timeout.ms\" = 2000\n"
    ));
    let produced = produce_two_mib(&broker);
    let mut stuck = broker.connect();
    for _ in 0..PIPELINED {
        send_fetch(&mut stuck);
    }
    // Its fetches take the room as they are answered (however slowly the machine runs).
    let mut other = broker.connect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while records(other.request(FETCH_VERSION, &fetch_request(300)), produced) > 0 {
        assert!(
            Instant::now() < deadline,
            "the stuck client's fetches never held the room"
        );
    }

    // Once its responses have not moved for the stall timeout, the stuck client is
    // disconnected and what its fetches held is free again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = other.request(FETCH_VERSION, &fetch_request(300));
        if records(response, produced) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck client still holds the fetch memory"
        );
    }
    assert_eq!(broker.metric("strata_connections"), Some(1.0));
}
