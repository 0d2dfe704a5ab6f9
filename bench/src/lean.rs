//! The lean producer: lays out Kafka v2 record batches itself and pipelines ProduceRequests
//! over one connection per partition leader, so that a run measures the broker rather than
//! the client. On a machine shared with the broker, librdkafka spends more CPU per GB than
//! the broker does (and more with every partition it serves), and becomes the limit.
//!
//! It sends whole batches: each goes to one partition, the next batch to the next partition
//! (as Kafka clients spread keyless messages), up to `MAX_IN_FLIGHT` requests per connection.
//! Every record carries its send time in its first 8 bytes, so consumers measure end to end
//! as with librdkafka's messages.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context as _};
use bytes::{BufMut as _, Bytes, BytesMut};
use proto_compat::batch::{seal_batch, BatchHeaderFields, RECORD_BATCH_OVERHEAD};
use proto_compat::kafka_protocol::error::ParseResponseErrorCode as _;
use proto_compat::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use proto_compat::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use proto_compat::kafka_protocol::messages::{
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use proto_compat::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};

use crate::client::{Acks, Compression};
use crate::produce::{filler, Job, Partitioner};
use crate::stats::{now_nanos, Latency, Meter};
use crate::ProducerArgs;

/// Versions every Kafka broker since 2.1 answers; neither is flexible, so headers are plain.
const METADATA_VERSION: i16 = 7;
const PRODUCE_VERSION: i16 = 7;
/// Requests a connection has sent and not yet seen answered. With acks=all each waits for a
/// flush, so a connection sends at most this many batches per flush round trip: the Java
/// producer's 5 held one connection near 0.7 GB/s here, 32 past 1 GB/s.
const MAX_IN_FLIGHT: usize = 32;
/// How long the broker may hold a produce request waiting for acknowledgement.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// The largest response frame accepted; a produce response is a few bytes per partition.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// How long the Metadata request that finds the leaders may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reader waits for an answer: past the broker's own produce timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "strata-bench-lean";

/// Refuses what the lean producer does not do, with the flag to change.
pub fn check(args: &ProducerArgs) -> anyhow::Result<()> {
    ensure!(
        !matches!(args.acks, Acks::None),
        "--client lean counts acknowledgements: use --acks all or 1"
    );
    ensure!(
        matches!(args.compression, Compression::None),
        "--client lean sends uncompressed batches: use --compression none"
    );
    ensure!(
        matches!(args.partitioner, Partitioner::Sticky),
        "--client lean sends each batch to one partition: use --partitioner sticky"
    );
    Ok(())
}

/// Produces `job` until its message count or deadline, as one lean producer.
pub fn run(
    servers: &str,
    args: &ProducerArgs,
    job: &Job<'_>,
    meter: &Meter,
    latency: &Latency,
) -> anyhow::Result<()> {
    let leaders = partition_leaders(servers, job.topic)?;
    if let Some(missing) = (0..job.partitions).find(|p| !leaders.contains_key(p)) {
        bail!("partition {missing} of {} has no leader", job.topic);
    }
    let acks = match args.acks {
        Acks::All => -1,
        _ => 1,
    };
    thread::scope(|scope| {
        let mut connections: HashMap<&str, Connection<'_>> = HashMap::new();
        for address in leaders.values() {
            if !connections.contains_key(address.as_str()) {
                let connection = Connection::open(scope, address, meter, latency)?;
                connections.insert(address, connection);
            }
        }
        let sent = send_batches(args, job, acks, &leaders, &mut connections);
        // A reader's error is why sending stopped, so it comes first.
        let answered = connections.into_values().try_for_each(Connection::close);
        answered.and(sent)
    })
}

/// Sends batches round the partitions until the job is done.
fn send_batches(
    args: &ProducerArgs,
    job: &Job<'_>,
    acks: i16,
    leaders: &HashMap<i32, String>,
    connections: &mut HashMap<&str, Connection<'_>>,
) -> anyhow::Result<()> {
    let full = BatchTemplate::fitting(job.message_size, args.batch_size as usize);
    let mut batch = full.clone();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut partition = job.first_partition;
    loop {
        let left = job.messages.map_or(u64::MAX, |m| m - sent);
        if left == 0 || job.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if left < full.count as u64 {
            batch = BatchTemplate::new(job.message_size, left as usize);
        }
        sent += batch.count as u64;
        if let Some(rate) = job.rate {
            // A batch goes out once its last message is due.
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let connection = connections
            .get_mut(leaders[&partition].as_str())
            .expect("a connection per leader");
        connection.produce(job, partition, acks, &mut batch)?;
        partition = (partition + 1) % job.partitions;
    }
}

/// Each partition's leader as host:port, from a Metadata request to the first bootstrap
/// server that answers.
fn partition_leaders(servers: &str, topic: &str) -> anyhow::Result<HashMap<i32, String>> {
    let mut last_error = None;
    for server in servers.split(',').map(str::trim) {
        match TcpStream::connect(server)
            .map_err(anyhow::Error::from)
            .and_then(|stream| leaders_from(stream, topic))
        {
            Ok(leaders) => return Ok(leaders),
            Err(e) => last_error = Some(e.context(format!("Metadata from {server}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no bootstrap servers given")))
}

fn leaders_from(mut stream: TcpStream, topic: &str) -> anyhow::Result<HashMap<i32, String>> {
    stream.set_read_timeout(Some(METADATA_TIMEOUT))?;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    send(&mut stream, 0, METADATA_VERSION, &request)?;
    let response: MetadataResponse = receive(&mut stream, 0, METADATA_VERSION)?;
    let brokers: HashMap<_, _> = response
        .brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect();
    let topic_metadata = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
        .with_context(|| format!("topic {topic} is not in the metadata"))?;
    if let Some(error) = topic_metadata.error_code.err() {
        bail!("topic {topic}: {error:?}");
    }
    topic_metadata
        .partitions
        .iter()
        .map(|p| {
            let leader = brokers
                .get(&p.leader_id)
                .with_context(|| format!("partition {} has no leader", p.partition_index))?;
            Ok((p.partition_index, leader.clone()))
        })
        .collect()
}

/// A produce request on its way: what its acknowledgement counts.
struct InFlight {
    correlation_id: i32,
    sent_at: u64,
    messages: u64,
    bytes: u64,
}

/// One connection to a leader: requests are written here, and a reader thread takes the
/// answers in order (Kafka answers a connection's requests in the order sent).
struct Connection<'scope> {
    stream: TcpStream,
    in_flight: SyncSender<InFlight>,
    reader: thread::ScopedJoinHandle<'scope, anyhow::Result<()>>,
    next_correlation_id: i32,
}

impl<'scope> Connection<'scope> {
    fn open<'env>(
        scope: &'scope thread::Scope<'scope, 'env>,
        address: &str,
        meter: &'env Meter,
        latency: &'env Latency,
    ) -> anyhow::Result<Self> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("cannot connect to {address}"))?;
        stream.set_nodelay(true)?;
        // The reader holds one request besides those queued in the channel.
        let (in_flight, pending) = mpsc::sync_channel(MAX_IN_FLIGHT - 1);
        let answers = stream.try_clone()?;
        let reader = scope.spawn(move || read_answers(answers, pending, meter, latency));
        Ok(Self {
            stream,
            in_flight,
            reader,
            next_correlation_id: 1,
        })
    }

    fn produce(
        &mut self,
        job: &Job<'_>,
        partition: i32,
        acks: i16,
        batch: &mut BatchTemplate,
    ) -> anyhow::Result<()> {
        let sent_at = now_nanos();
        let records = batch.stamp(sent_at);
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(job.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let in_flight = InFlight {
            correlation_id,
            sent_at,
            messages: batch.count as u64,
            bytes: (batch.count * job.message_size) as u64,
        };
        // Blocks while MAX_IN_FLIGHT requests are unanswered.
        self.in_flight
            .send(in_flight)
            .map_err(|_| anyhow::anyhow!("the connection stopped taking answers"))?;
        send(&mut self.stream, correlation_id, PRODUCE_VERSION, &request)
    }

    /// Waits for the answers to every request sent; the reader's error if it stopped early.
    fn close(self) -> anyhow::Result<()> {
        drop(self.in_flight);
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?
    }
}

/// Takes the answers to the requests in `pending`, in order, and counts them; returns when
/// the producer is done sending and every answer is in.
fn read_answers(
    mut stream: TcpStream,
    pending: Receiver<InFlight>,
    meter: &Meter,
    latency: &Latency,
) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    while let Ok(request) = pending.recv() {
        let response: ProduceResponse =
            receive(&mut stream, request.correlation_id, PRODUCE_VERSION)?;
        let failed = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find_map(|p| Some((p.index, p.error_code.err()?, p.error_message.clone())));
        match failed {
            None => {
                meter.add_many(request.messages, request.bytes);
                latency.record_n_since(request.sent_at, request.messages);
            }
            Some((partition, error, message)) => {
                if meter.error(request.messages) == 0 {
                    let message = message.map(|m| format!(": {m}")).unwrap_or_default();
                    eprintln!(
                        "produce to partition {partition} failed: {error:?}{message} \
                         (only the first failure is shown)"
                    );
                }
            }
        }
    }
    Ok(())
}

/// Writes `request` as one frame.
fn send<R: Request>(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    request: &R,
) -> anyhow::Result<()> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, R::header_version(version))?;
    request.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - 4).context("request too large")?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&frame).context("cannot send a request")
}

/// Reads one response frame and decodes it, checking its correlation id.
fn receive<T: Decodable + HeaderVersion>(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
) -> anyhow::Result<T> {
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .context("no answer from the broker")?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_RESPONSE_BYTES)
        .with_context(|| format!("response frame of {size} bytes"))?;
    let mut body = vec![0u8; size];
    stream
        .read_exact(&mut body)
        .context("the broker closed the connection mid-answer")?;
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, T::header_version(version))?;
    ensure!(
        header.correlation_id == correlation_id,
        "answer to request {} where {correlation_id} was next",
        header.correlation_id
    );
    T::decode(&mut body, version)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A v2 record batch of `count` records of `message_size` bytes (no keys, no headers,
/// CreateTime, no producer id), laid out once; each send writes the send time into every
/// value and the batch's timestamps, then the CRC.
#[derive(Clone)]
struct BatchTemplate {
    bytes: Vec<u8>,
    /// Where each record's value starts.
    values: Vec<usize>,
    count: usize,
}

impl BatchTemplate {
    /// As many records as fit in `batch_size` bytes, at least one.
    fn fitting(message_size: usize, batch_size: usize) -> Self {
        let mut len = RECORD_BATCH_OVERHEAD + record_len(0, message_size);
        let mut count = 1;
        while len + record_len(count, message_size) <= batch_size {
            len += record_len(count, message_size);
            count += 1;
        }
        Self::new(message_size, count)
    }

    fn new(message_size: usize, count: usize) -> Self {
        let value = filler(message_size);
        let mut bytes = vec![0u8; RECORD_BATCH_OVERHEAD];
        let mut values = Vec::with_capacity(count);
        for offset_delta in 0..count {
            put_varint(
                &mut bytes,
                record_body_len(offset_delta, message_size) as i64,
            );
            bytes.push(0); // attributes
            put_varint(&mut bytes, 0); // timestamp delta
            put_varint(&mut bytes, offset_delta as i64);
            put_varint(&mut bytes, -1); // no key
            put_varint(&mut bytes, message_size as i64);
            values.push(bytes.len());
            bytes.extend_from_slice(&value);
            put_varint(&mut bytes, 0); // no headers
        }
        Self {
            bytes,
            values,
            count,
        }
    }

    /// The batch as sent at `sent_at` (a `now_nanos` value).
    fn stamp(&mut self, sent_at: u64) -> Bytes {
        for &at in &self.values {
            self.bytes[at..at + 8].copy_from_slice(&sent_at.to_le_bytes());
        }
        let header = BatchHeaderFields {
            attributes: 0, // no compression, CreateTime
            record_count: i32::try_from(self.count).expect("a batch holds fewer than 2^31 records"),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            producer_id: -1,
            producer_epoch: -1,
        };
        seal_batch(&mut self.bytes, &header);
        Bytes::copy_from_slice(&self.bytes)
    }
}

/// A record's bytes after its length: attributes, timestamp delta 0, offset delta, key
/// length -1, value length and value, header count 0.
fn record_body_len(offset_delta: usize, message_size: usize) -> usize {
    1 + 1 + varint_len(offset_delta as i64) + 1 + varint_len(message_size as i64) + message_size + 1
}

fn record_len(offset_delta: usize, message_size: usize) -> usize {
    let body = record_body_len(offset_delta, message_size);
    varint_len(body as i64) + body
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Kafka's record fields are zigzag varints.
fn put_varint(buf: &mut Vec<u8>, value: i64) {
    let mut z = zigzag(value);
    while z >= 0x80 {
        buf.push(z as u8 | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

fn varint_len(value: i64) -> usize {
    let bits = 64 - zigzag(value).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_compat::batch::validate_batches;
    use proto_compat::kafka_protocol::records::RecordBatchDecoder;
    use proto_compat::records::validate_records;

    #[test]
    fn batches_are_what_a_broker_accepts_and_a_consumer_reads() {
        for (message_size, count) in [(8, 1), (1024, 3), (100, 200)] {
            let mut template = BatchTemplate::new(message_size, count);
            let bytes = template.stamp(42);
            let batches = validate_batches(&bytes).expect("a valid batch");
            assert_eq!(batches.len(), 1);
            validate_records(&batches[0], u64::MAX, None, false).expect("valid records");
            assert_eq!(batches[0].record_count(), count as i32);
            let mut buf = bytes.clone();
            let records: Vec<_> = RecordBatchDecoder::decode_all(&mut buf)
                .expect("decodes")
                .into_iter()
                .flat_map(|set| set.records)
                .collect();
            assert_eq!(records.len(), count);
            for (i, record) in records.iter().enumerate() {
                assert_eq!(record.offset, i as i64);
                assert_eq!(record.key, None);
                let value = record.value.as_ref().expect("a value");
                assert_eq!(value.len(), message_size);
                assert_eq!(crate::produce::sent_at(value), 42);
            }
        }
    }

    #[test]
    fn a_batch_is_stamped_again_for_each_send() {
        let mut template = BatchTemplate::new(64, 2);
        let first = template.stamp(1);
        let second = template.stamp(2);
        assert_ne!(first, second);
        for bytes in [first, second] {
            validate_batches(&bytes).expect("the CRC covers the new send time");
        }
    }

    #[test]
    fn a_full_batch_fills_the_batch_size_without_passing_it() {
        let template = BatchTemplate::fitting(1024, 1_000_000);
        let one_more = BatchTemplate::new(1024, template.count + 1);
        assert!(template.bytes.len() <= 1_000_000);
        assert!(one_more.bytes.len() > 1_000_000);
        assert_eq!(BatchTemplate::fitting(1024, 10).count, 1);
    }

    fn args() -> ProducerArgs {
        ProducerArgs {
            message_size: 100,
            acks: Acks::All,
            linger_ms: 5,
            // About 90 records a batch, so a run sends many batches round the partitions.
            batch_size: 10_000,
            compression: Compression::None,
            producers: 1,
            rate: None,
            partitioner: Partitioner::Sticky,
            client: crate::ProducerClient::Lean,
        }
    }

    fn job(topic: &str, partitions: i32, messages: u64) -> Job<'_> {
        Job {
            topic,
            partitions,
            first_partition: 0,
            partitioner: Partitioner::Sticky,
            message_size: 100,
            messages: Some(messages),
            deadline: None,
            rate: None,
        }
    }

    #[test]
    fn every_message_sent_is_acknowledged_and_reads_back_from_a_real_broker() {
        let broker = strata_tests::Broker::start();
        let mut conn = broker.connect();
        assert_eq!(conn.create_topic("lean", 3, &[]), 0);
        let (meter, latency) = (Meter::default(), Latency::new());
        let servers = broker.kafka_addr.to_string();
        run(&servers, &args(), &job("lean", 3, 1_000), &meter, &latency).expect("produced");
        assert_eq!((meter.messages(), meter.errors()), (1_000, 0));
        let mut read = 0;
        for partition in 0..3 {
            let mut offset = 0;
            loop {
                let fetched = conn.fetch("lean", partition, offset);
                let values = strata_tests::record_values(fetched.records.as_ref());
                if values.is_empty() {
                    break;
                }
                for value in &values {
                    assert_eq!(value.len(), 100);
                    assert!(
                        crate::produce::sent_at(value) > 0,
                        "the send time is stamped"
                    );
                }
                offset += values.len() as i64;
            }
            assert!(offset > 0, "partition {partition} got batches");
            read += offset;
        }
        assert_eq!(read, 1_000);
    }

    #[test]
    fn a_partition_the_topic_does_not_have_is_a_clear_error() {
        let broker = strata_tests::Broker::start();
        assert_eq!(broker.connect().create_topic("two", 2, &[]), 0);
        let (meter, latency) = (Meter::default(), Latency::new());
        let servers = broker.kafka_addr.to_string();
        let error = run(&servers, &args(), &job("two", 3, 1_000), &meter, &latency)
            .expect_err("partition 2 does not exist");
        assert!(
            format!("{error:#}").contains("partition 2 of two has no leader"),
            "{error:#}"
        );
    }

    #[test]
    fn refused_batches_are_counted_as_errors() {
        let broker = strata_tests::Broker::start();
        // Batches of about 10,000 bytes are over this topic's limit.
        let code = broker
            .connect()
            .create_topic("small", 1, &[("max.message.bytes", "5000")]);
        assert_eq!(code, 0);
        let (meter, latency) = (Meter::default(), Latency::new());
        let servers = broker.kafka_addr.to_string();
        run(&servers, &args(), &job("small", 1, 500), &meter, &latency).expect("answered");
        assert_eq!((meter.messages(), meter.errors()), (0, 500));
    }

    #[test]
    fn what_the_lean_producer_does_not_do_is_refused() {
        type Change = fn(&mut ProducerArgs);
        let changes: [(Change, &str); 3] = [
            (|a| a.acks = Acks::None, "--acks"),
            (|a| a.compression = Compression::Lz4, "--compression"),
            (|a| a.partitioner = Partitioner::RoundRobin, "--partitioner"),
        ];
        for (change, flag) in changes {
            let mut refused = args();
            change(&mut refused);
            let error = check(&refused).expect_err("refused");
            assert!(error.to_string().contains(flag), "{error}");
        }
        check(&args()).expect("the defaults of the lean rows pass");
    }

    #[test]
    fn varints_are_zigzag() {
        for (value, encoded) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (1024, vec![0x80, 0x10]),
            (i64::MIN, vec![0xff; 9].into_iter().chain([1]).collect()),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf, encoded, "{value}");
            assert_eq!(varint_len(value), encoded.len(), "{value}");
        }
    }
}
