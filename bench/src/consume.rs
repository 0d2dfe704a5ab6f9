//! One consumer: reads the partitions assigned to it directly (no consumer group), counting
//! messages and, in e2e runs, each one's latency since it was sent.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client;
use crate::produce::sent_at;
use crate::stats::{Latency, Meter};

/// How long one poll waits, which bounds how late a consumer notices it is done.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);
/// fetch.wait.max.ms of a rewinding consumer. librdkafka has one fetch in flight per broker,
/// so the default 500 ms long poll at the end of the log would hold a rewound partition back
/// that long; the data is all there, so the wait only ever stalls the restart.
const REWIND_FETCH_WAIT_MS: &str = "10";

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StartAt {
    Earliest,
    Latest,
}

/// Where a consumer starts, and what it does at the end of a partition (the high
/// watermark when it started).
#[derive(Clone, Copy)]
pub struct Mode {
    pub start: StartAt,
    /// Start the partition over from its beginning.
    pub rewind: bool,
    /// Stop once every partition has reached its end (unless rewinding).
    pub to_end: bool,
}

/// Shows librdkafka's warnings and errors (see `client::print_log`).
struct StderrLog;

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        client::print_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client::print_error(error, reason);
    }
}

impl ConsumerContext for StderrLog {}

/// A partition's offsets when the run started.
struct Extent {
    partition: i32,
    low: i64,
    high: i64,
}

pub struct Consumer {
    consumer: BaseConsumer<StderrLog>,
    topic: String,
    extents: Vec<Extent>,
    mode: Mode,
}

impl Consumer {
    /// `count` consumers with the topic's partitions dealt out among them.
    pub fn assign_all(
        servers: &str,
        topic: &str,
        partitions: i32,
        count: u32,
        mode: Mode,
    ) -> anyhow::Result<Vec<Consumer>> {
        let count = count.clamp(1, partitions as u32) as i32;
        (0..count)
            .map(|i| {
                let mine: Vec<i32> = (i..partitions).step_by(count as usize).collect();
                Self::assign(servers, topic, &mine, mode)
            })
            .collect()
    }

    fn assign(
        servers: &str,
        topic: &str,
        partitions: &[i32],
        mode: Mode,
    ) -> anyhow::Result<Consumer> {
        let mut config = client::base_config(servers);
        // librdkafka needs a group id even to assign partitions; nothing is committed to it.
        config
            .set("group.id", "strata-bench")
            .set("enable.auto.commit", "false");
        if mode.rewind {
            config.set("fetch.wait.max.ms", REWIND_FETCH_WAIT_MS);
        }
        let consumer: BaseConsumer<StderrLog> = config.create_with_context(StderrLog)?;
        let mut extents = Vec::with_capacity(partitions.len());
        let mut assignment = TopicPartitionList::new();
        for &partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
                .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
            let offset = match mode.start {
                StartAt::Earliest => low,
                StartAt::Latest => high,
            };
            assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            extents.push(Extent {
                partition,
                low: offset,
                high,
            });
        }
        consumer.assign(&assignment)?;
        Ok(Consumer {
            consumer,
            topic: topic.to_string(),
            extents,
            mode,
        })
    }

    /// Consumes until `done()` or, per its mode, the end. `latency` records send-to-receipt
    /// times (e2e runs, where the producer is this process).
    pub fn run(
        self,
        meter: &Meter,
        latency: Option<&Latency>,
        done: &(dyn Fn() -> bool + Sync),
    ) -> anyhow::Result<()> {
        let mode = self.mode;
        let mut unfinished = self.extents.iter().filter(|e| e.high > e.low).count();
        if mode.to_end && unfinished == 0 {
            return Ok(());
        }
        while !done() {
            let message = match self.consumer.poll(POLL_TIMEOUT) {
                None => continue,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    if meter.error(1) == 0 {
                        eprintln!("consume failed: {error} (only the first failure is shown)");
                    }
                    continue;
                }
            };
            let payload = message.payload().unwrap_or_default();
            if let Some(latency) = latency {
                latency.record_since(sent_at(payload));
            }
            meter.add(payload.len());
            let Some(extent) = self
                .extents
                .iter()
                .find(|e| e.partition == message.partition())
            else {
                continue;
            };
            if message.offset() + 1 != extent.high {
                continue;
            }
            if mode.rewind {
                self.consumer.seek(
                    &self.topic,
                    extent.partition,
                    Offset::Offset(extent.low),
                    Duration::ZERO,
                )?;
            } else if mode.to_end {
                unfinished -= 1;
                if unfinished == 0 {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
