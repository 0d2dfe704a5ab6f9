//! Produce-side validation: a bad batch fails its partition with the right error code and
//! nothing of it is stored.

use bytes::{Bytes, BytesMut};
use proto_compat::batch::crc32c;
use proto_compat::kafka_protocol::records::Compression;
use strata_tests::{compressed_batch, error_code, record_batch, record_values, Broker, Conn};

/// The rejected produce left the partition empty: high watermark 0, nothing fetched, and the
/// next good batch gets offset 0.
fn assert_partition_empty(conn: &mut Conn, topic: &str, why: &str) {
    let fetched = conn.fetch(topic, 0, 0);
    assert_eq!(fetched.error_code, error_code::NONE, "{why}: fetch error");
    assert_eq!(fetched.high_watermark, 0, "{why}: high watermark");
    assert!(
        record_values(fetched.records.as_ref()).is_empty(),
        "{why}: fetch returned records"
    );
}

#[test]
fn corrupt_batches_get_corrupt_message_and_are_not_stored() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    let topic = "corrupt";
    assert_eq!(
        conn.create_topic(topic, 1, &[]),
        error_code::NONE,
        "create topic"
    );

    // v2 batch header: base offset (0..8), batch length (8..12), leader epoch (12..16),
    // magic (16), CRC-32C (17..21) over attributes (21..) to the end.
    // Broken bytes get CORRUPT_MESSAGE; for a magic other than 2 Kafka answers
    // INVALID_RECORD (Produce v3+ only takes magic 2), which is accepted too.
    const CORRUPT: &[i16] = &[error_code::CORRUPT_MESSAGE];
    const CORRUPT_OR_INVALID: &[i16] = &[error_code::CORRUPT_MESSAGE, error_code::INVALID_RECORD];
    type Corruption = fn(&mut BytesMut);
    let corruptions: [(&str, Corruption, &[i16]); 5] = [
        ("bad CRC", |b| b[17] ^= 0xff, CORRUPT),
        (
            "payload flipped under the CRC",
            |b| {
                let last = b.len() - 1;
                b[last] ^= 0x01
            },
            CORRUPT,
        ),
        ("magic 3", |b| b[16] = 3, CORRUPT_OR_INVALID),
        (
            "batch length past the end",
            |b| {
                let len = i32::from_be_bytes(b[8..12].try_into().unwrap());
                b[8..12].copy_from_slice(&(len + 100).to_be_bytes())
            },
            CORRUPT,
        ),
        ("truncated batch", |b| b.truncate(b.len() - 5), CORRUPT),
    ];
    for (what, corrupt, expected) in corruptions {
        let mut batch = record_batch(&[b"one", b"two", b"three"]);
        corrupt(&mut batch);
        let response = conn.produce(topic, 0, -1, batch.freeze());
        assert!(
            expected.contains(&response.error_code),
            "{what}: produce error code {}, expected one of {expected:?}",
            response.error_code
        );
        assert_partition_empty(&mut conn, topic, what);
    }

    // The partition is still usable and the rejected batches consumed no offsets.
    let response = conn.produce(topic, 0, -1, record_batch(&[b"good"]).freeze());
    assert_eq!(response.error_code, error_code::NONE, "good produce error");
    assert_eq!(response.base_offset, 0, "good batch base offset");
    let fetched = conn.fetch(topic, 0, 0);
    assert_eq!(
        record_values(fetched.records.as_ref()),
        vec![Bytes::from_static(b"good")],
        "fetched values"
    );
}

#[test]
fn batch_over_max_message_bytes_gets_message_too_large() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    let topic = "small-messages";
    assert_eq!(
        conn.create_topic(topic, 1, &[("max.message.bytes", "1024")]),
        error_code::NONE,
        "create topic with max.message.bytes=1024"
    );
    let big = vec![b'x'; 4096];
    let response = conn.produce(topic, 0, -1, record_batch(&[&big]).freeze());
    assert_eq!(
        response.error_code,
        error_code::MESSAGE_TOO_LARGE,
        "4 KiB batch on a 1 KiB topic"
    );
    assert_partition_empty(&mut conn, topic, "after MESSAGE_TOO_LARGE");

    // Under the limit still works.
    let response = conn.produce(topic, 0, -1, record_batch(&[&big[..100]]).freeze());
    assert_eq!(response.error_code, error_code::NONE, "100-byte batch");
}

#[test]
fn unknown_topic_without_auto_create_gets_unknown_topic_or_partition() {
    let broker = Broker::start_with_config("\"auto.create.topics.enable\" = false\n");
    let mut conn = broker.connect();
    let response = conn.produce("no-such-topic", 0, -1, record_batch(&[b"x"]).freeze());
    assert_eq!(
        response.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "produce to an unknown topic"
    );
    // Produce must not have created it either.
    let fetched = conn.fetch("no-such-topic", 0, 0);
    assert_eq!(
        fetched.error_code,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
        "fetch from the unknown topic"
    );
}

/// Sets a batch's record count (and its last offset delta to match) and its CRC again, as a
/// client that lies about its records carefully would.
fn claim_records(batch: &mut BytesMut, count: i32) {
    batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    batch[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_compressed_batch_that_lies_about_its_record_count_is_invalid_and_not_stored() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    let topic = "lying-count";
    assert_eq!(conn.create_topic(topic, 1, &[]), error_code::NONE);
    for (count, why) in [
        (i32::MAX, "2^31-1 records claimed"),
        (2, "one record fewer"),
    ] {
        let mut batch = compressed_batch(&[b"a", b"b", b"c"], Compression::Zstd);
        claim_records(&mut batch, count);
        let response = conn.produce(topic, 0, -1, batch.freeze());
        assert_eq!(response.error_code, error_code::INVALID_RECORD, "{why}");
        assert_partition_empty(&mut conn, topic, why);
    }

    // An honest compressed batch is stored, its offsets counted by its records.
    let batch = compressed_batch(&[b"a", b"b", b"c"], Compression::Zstd);
    let response = conn.produce(topic, 0, -1, batch.freeze());
    assert_eq!(response.error_code, error_code::NONE);
    let fetched = conn.fetch(topic, 0, 0);
    assert_eq!(fetched.high_watermark, 3);
    assert_eq!(record_values(fetched.records.as_ref()).len(), 3);
}

#[test]
fn a_compressed_batch_inflating_past_the_limit_is_invalid_and_not_stored() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let broker =
        Broker::start_with_config(&format!("\"message.max.uncompressed.bytes\" = {LIMIT}\n"));
    let mut conn = broker.connect();
    let topic = "inflating";
    assert_eq!(conn.create_topic(topic, 1, &[]), error_code::NONE);
    let zeros = vec![0u8; 2 * LIMIT];
    let batch = compressed_batch(&[&zeros], Compression::Zstd);
    assert!(batch.len() < 64 * 1024, "{} bytes compressed", batch.len());
    let response = conn.produce(topic, 0, -1, batch.freeze());
    assert_eq!(response.error_code, error_code::INVALID_RECORD);
    assert_partition_empty(&mut conn, topic, "after a batch inflating past the limit");

    let within = vec![0u8; LIMIT / 2];
    let batch = compressed_batch(&[&within], Compression::Zstd);
    let response = conn.produce(topic, 0, -1, batch.freeze());
    assert_eq!(response.error_code, error_code::NONE);
}
