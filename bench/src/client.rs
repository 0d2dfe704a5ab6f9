//! librdkafka settings, topic creation, and where librdkafka's errors go.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::ProducerArgs;

/// How long to wait for metadata and admin answers.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Acks {
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    None,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
}

pub fn base_config(servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    config
}

pub fn producer_config(servers: &str, args: &ProducerArgs) -> ClientConfig {
    let acks = match args.acks {
        Acks::All => "all",
        Acks::One => "1",
        Acks::None => "0",
    };
    let compression = match args.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
    };
    let mut config = base_config(servers);
    config
        .set("acks", acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("compression.type", compression);
    config
}

/// Shows librdkafka's warnings and errors on stderr (the rdkafka crate sends them to the
/// `log` facade, which this binary does not set up).
pub fn print_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel::*;
    if matches!(level, Emerg | Alert | Critical | Error | Warning) {
        eprintln!("librdkafka {facility}: {message}");
    }
}

pub fn print_error(error: KafkaError, reason: &str) {
    eprintln!("librdkafka error: {error}: {reason}");
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count.
pub fn ensure_topic(servers: &str, topic: &str, partitions: i32) -> anyhow::Result<i32> {
    let admin: AdminClient<DefaultClientContext> = base_config(servers).create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&new_topic], &options))
        .context("CreateTopics failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    // Metadata may lag the creation briefly.
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
            .context("Metadata request failed")?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if count > 0 {
            return Ok(count as i32);
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} has no partitions in the metadata");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
