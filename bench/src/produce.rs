//! One producer: sends messages round-robin over the topic's partitions (so every partition
//! gets traffic, as with keyed messages) or leaves the partition to librdkafka's sticky
//! partitioner, paced to a rate if asked, and counts each acknowledgement with its latency.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::client;
use crate::stats::{now_nanos, Latency, Meter};

/// How far ahead of its schedule a paced producer may get before it sleeps: sends go out
/// in bursts of at most this long, far below librdkafka's batching (linger.ms).
const PACING_SLACK: Duration = Duration::from_millis(1);
/// Wait before retrying when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Partitioner {
    /// Message after message over every partition, so each gets an equal share (as keyed
    /// messages spread): at many partitions, a batch per partition holds few messages.
    RoundRobin,
    /// librdkafka's own for keyless messages (sticky): a partition takes the messages until
    /// its batch goes out, then the next one does, as Kafka clients send keyless messages.
    Sticky,
}

#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub topic: &'a str,
    pub partitions: i32,
    pub first_partition: i32,
    pub partitioner: Partitioner,
    pub message_size: usize,
    pub messages: Option<u64>,
    pub deadline: Option<Instant>,
    /// Messages per second.
    pub rate: Option<f64>,
}

impl Job<'_> {
    /// Producer `i`'s share when `n` producers split the whole job.
    pub fn share(&self, i: u32, n: u32) -> Self {
        let (i, n) = (u64::from(i), u64::from(n));
        Self {
            // Spread the producers' starting points over the partitions.
            first_partition: (i % self.partitions as u64) as i32,
            // The first producers take the remainder of an uneven split.
            messages: self.messages.map(|m| m / n + u64::from(i < m % n)),
            rate: self.rate.map(|r| r / n as f64),
            ..*self
        }
    }
}

/// Counts acknowledged messages; runs on librdkafka's polling thread.
struct Deliveries {
    meter: Arc<Meter>,
    latency: Arc<Latency>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        client::print_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client::print_error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let payload = message.payload().unwrap_or_default();
                self.latency.record_since(sent_at(payload));
                self.meter.add(payload.len());
            }
            Err((error, _)) => {
                if self.meter.error(1) == 0 {
                    eprintln!("delivery failed: {error} (only the first failure is shown)");
                }
            }
        }
    }
}

/// The send time a producer wrote into the first 8 bytes of the payload.
pub fn sent_at(payload: &[u8]) -> u64 {
    payload
        .first_chunk::<8>()
        .map_or(0, |bytes| u64::from_le_bytes(*bytes))
}

pub fn run(
    config: &ClientConfig,
    job: &Job<'_>,
    meter: &Arc<Meter>,
    latency: &Arc<Latency>,
) -> anyhow::Result<()> {
    let deliveries = Deliveries {
        meter: meter.clone(),
        latency: latency.clone(),
    };
    let producer: ThreadedProducer<Deliveries> = config.create_with_context(deliveries)?;
    let mut payload = filler(job.message_size);
    let start = Instant::now();
    let mut sent = 0u64;
    while job.messages.is_none_or(|m| sent < m) && job.deadline.is_none_or(|d| Instant::now() < d) {
        if let Some(rate) = job.rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now + PACING_SLACK {
                thread::sleep(due - now);
            }
        }
        payload[..8].copy_from_slice(&now_nanos().to_le_bytes());
        let mut record = BaseRecord::<(), [u8]>::to(job.topic).payload(&payload[..]);
        if let Partitioner::RoundRobin = job.partitioner {
            let partition = (job.first_partition as u64 + sent) % job.partitions as u64;
            record = record.partition(partition as i32);
        }
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                thread::sleep(QUEUE_FULL_WAIT)
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
    producer.flush(FLUSH_TIMEOUT)?;
    Ok(())
}

/// A payload that does not compress to nothing (a fixed xorshift sequence), so that
/// --compression measures real work.
pub fn filler(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
