//! `strata-bench`: a load generator for Strata (or any Kafka broker) built on librdkafka,
//! with a lean producer of its own for runs that measure the broker rather than the client.
//! Subcommands `produce`, `consume` and `e2e`; see bench/README.md.

mod client;
mod consume;
mod lean;
mod produce;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use client::{Acks, Compression};
use consume::StartAt;
use stats::{Latency, Meter, Report};

#[derive(Parser)]
#[command(
    name = "strata-bench",
    about = "Kafka load generator (librdkafka): produce, consume, end-to-end"
)]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap_servers: String,
    /// Print the result as JSON on stdout (progress still goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce messages, as fast as possible or at --rate; latency is send to acknowledgement.
    Produce {
        #[command(flatten)]
        topic: TopicArgs,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        producer: ProducerArgs,
    },
    /// Consume messages (partitions are assigned directly: no consumer group). Without
    /// --messages or --duration, reads to the end of the log as it was at the start.
    Consume {
        #[command(flatten)]
        topic: TopicArgs,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
        /// Where to start in each partition.
        #[arg(long, value_enum, default_value_t = StartAt::Earliest)]
        from: StartAt,
        /// At the end of a partition, start over from its beginning (to read a data set that
        /// fits the broker's memory for as long as --duration says).
        #[arg(long)]
        rewind: bool,
    },
    /// Produce and consume at once; latency is send to receipt by the consumer.
    E2e {
        #[command(flatten)]
        topic: TopicArgs,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        producer: ProducerArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
    },
}

#[derive(Args)]
struct TopicArgs {
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    /// Partitions of the topic when it has to be created (an existing topic keeps its own).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

#[derive(Args)]
struct LimitArgs {
    /// Stop after this many messages in all.
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = positive)]
    duration: Option<f64>,
}

impl LimitArgs {
    fn deadline(&self, start: Instant) -> Option<Instant> {
        self.duration.map(|s| start + Duration::from_secs_f64(s))
    }
}

#[derive(Args)]
struct ProducerArgs {
    /// Payload bytes per message (at least 8: the send time is written into it).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..))]
    message_size: u32,
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    /// linger.ms: how long librdkafka waits to fill a batch.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// batch.size: the most bytes in one partition's batch.
    #[arg(long, default_value_t = 1_000_000)]
    batch_size: u32,
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
    /// Producer instances, each on its own thread, sharing the load evenly.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Target messages per second over all producers (default: as fast as possible).
    #[arg(long, value_parser = positive)]
    rate: Option<f64>,
    /// How messages are spread over the partitions.
    #[arg(long, value_enum, default_value_t = produce::Partitioner::RoundRobin)]
    partitioner: produce::Partitioner,
    /// Which producer sends.
    #[arg(long, value_enum, default_value_t = ProducerClient::Librdkafka)]
    client: ProducerClient,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProducerClient {
    /// librdkafka, as Kafka applications produce.
    Librdkafka,
    /// strata-bench's own: whole batches of --batch-size laid out once and re-stamped,
    /// each to the next partition, 32 requests in flight per connection (uncompressed,
    /// --partitioner sticky, acks all or 1). It spends a fraction of librdkafka's CPU per
    /// GB, so the broker, not the client, is the limit. Without --rate a batch goes out as
    /// soon as a request slot is free (--linger-ms does not apply); with it, once its last
    /// message is due.
    Lean,
}

#[derive(Args)]
struct ConsumerArgs {
    /// Consumer instances, each on its own thread; partitions are dealt out among them.
    #[arg(long, default_value_t = 1)]
    consumers: u32,
}

fn positive(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{value} is not a positive number")),
    }
}

/// When nothing else says how long a produce or e2e run lasts.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// How long an e2e run waits, after the producers finish, for the last messages to arrive.
const E2E_DRAIN: Duration = Duration::from_secs(10);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let servers = &cli.bootstrap_servers;
    let report = match &cli.command {
        Command::Produce {
            topic,
            limit,
            producer,
        } => produce(servers, topic, limit, producer)?,
        Command::Consume {
            topic,
            limit,
            consumer,
            from,
            rewind,
        } => {
            let mode = consume::Mode {
                start: *from,
                rewind: *rewind,
                to_end: limit.messages.is_none() && limit.duration.is_none(),
            };
            consume(servers, topic, limit, consumer, mode)?
        }
        Command::E2e {
            topic,
            limit,
            producer,
            consumer,
        } => e2e(servers, topic, limit, producer, consumer)?,
    };
    report.print(cli.json);
    Ok(())
}

fn produce(
    servers: &str,
    topic: &TopicArgs,
    limit: &LimitArgs,
    producer: &ProducerArgs,
) -> anyhow::Result<Report> {
    let partitions = client::ensure_topic(servers, &topic.topic, topic.partitions)?;
    let (meter, latency) = (Arc::new(Meter::default()), Arc::new(Latency::new()));
    let start = Instant::now();
    let job = producer_job(&topic.topic, partitions, limit, producer, start);
    stats::with_progress(&meter, || {
        run_producers(servers, producer, &job, &meter, &latency)
    })?;
    Ok(Report::new(
        "produce",
        &meter,
        start.elapsed(),
        &[("ack", &latency)],
    ))
}

fn consume(
    servers: &str,
    topic: &TopicArgs,
    limit: &LimitArgs,
    consumer: &ConsumerArgs,
    mode: consume::Mode,
) -> anyhow::Result<Report> {
    let partitions = client::ensure_topic(servers, &topic.topic, topic.partitions)?;
    let consumers =
        consume::Consumer::assign_all(servers, &topic.topic, partitions, consumer.consumers, mode)?;
    let meter = Meter::default();
    let start = Instant::now();
    let deadline = limit.deadline(start);
    let done = || {
        deadline.is_some_and(|d| Instant::now() >= d)
            || limit.messages.is_some_and(|m| meter.messages() >= m)
    };
    stats::with_progress(&meter, || run_consumers(consumers, &meter, None, &done))?;
    Ok(Report::new("consume", &meter, start.elapsed(), &[]))
}

fn e2e(
    servers: &str,
    topic: &TopicArgs,
    limit: &LimitArgs,
    producer: &ProducerArgs,
    consumer: &ConsumerArgs,
) -> anyhow::Result<Report> {
    let partitions = client::ensure_topic(servers, &topic.topic, topic.partitions)?;
    // Consumers are positioned at the end before anything is sent.
    let mode = consume::Mode {
        start: StartAt::Latest,
        rewind: false,
        to_end: false,
    };
    let consumers =
        consume::Consumer::assign_all(servers, &topic.topic, partitions, consumer.consumers, mode)?;
    let (sent, received) = (Arc::new(Meter::default()), Meter::default());
    let (ack_latency, latency) = (Arc::new(Latency::new()), Latency::new());
    let producers_done = AtomicBool::new(false);
    let drained_by = OnceLock::new();
    // Done once everything acknowledged has arrived, or the drain time is up.
    let done = || {
        producers_done.load(Ordering::Acquire)
            && (received.messages() >= sent.messages()
                || Instant::now() >= *drained_by.get_or_init(|| Instant::now() + E2E_DRAIN))
    };
    let start = Instant::now();
    let job = producer_job(&topic.topic, partitions, limit, producer, start);
    stats::with_progress(&received, || {
        thread::scope(|scope| {
            let consuming =
                scope.spawn(|| run_consumers(consumers, &received, Some(&latency), &done));
            let produced = run_producers(servers, producer, &job, &sent, &ack_latency);
            producers_done.store(true, Ordering::Release);
            let consumed = consuming.join().expect("consumers do not panic");
            produced.and(consumed)
        })
    })?;
    Ok(Report::new(
        "e2e",
        &received,
        start.elapsed(),
        &[("e2e", &latency), ("ack", &ack_latency)],
    ))
}

/// The whole load of a produce or e2e run; without --messages or --duration it lasts
/// DEFAULT_DURATION.
fn producer_job<'a>(
    topic: &'a str,
    partitions: i32,
    limit: &LimitArgs,
    args: &ProducerArgs,
    start: Instant,
) -> produce::Job<'a> {
    let deadline = match (limit.messages, limit.deadline(start)) {
        (None, None) => Some(start + DEFAULT_DURATION),
        (_, deadline) => deadline,
    };
    produce::Job {
        topic,
        partitions,
        first_partition: 0,
        partitioner: args.partitioner,
        message_size: args.message_size as usize,
        messages: limit.messages,
        deadline,
        rate: args.rate,
    }
}

/// Splits `job` over `args.producers` producers, each on its own thread.
fn run_producers(
    servers: &str,
    args: &ProducerArgs,
    job: &produce::Job<'_>,
    meter: &Arc<Meter>,
    latency: &Arc<Latency>,
) -> anyhow::Result<()> {
    let count = args.producers.max(1);
    if let ProducerClient::Lean = args.client {
        lean::check(args)?;
    }
    let config = client::producer_config(servers, args);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .map(|i| {
                let (config, share) = (&config, job.share(i, count));
                scope.spawn(move || match args.client {
                    ProducerClient::Librdkafka => produce::run(config, &share, meter, latency),
                    ProducerClient::Lean => lean::run(servers, args, &share, meter, latency),
                })
            })
            .collect();
        join_all(workers)
    })
}

fn run_consumers(
    consumers: Vec<consume::Consumer>,
    meter: &Meter,
    latency: Option<&Latency>,
    done: &(dyn Fn() -> bool + Sync),
) -> anyhow::Result<()> {
    thread::scope(|scope| {
        let workers: Vec<_> = consumers
            .into_iter()
            .map(|c| scope.spawn(move || c.run(meter, latency, done)))
            .collect();
        join_all(workers)
    })
}

fn join_all(workers: Vec<thread::ScopedJoinHandle<'_, anyhow::Result<()>>>) -> anyhow::Result<()> {
    workers.into_iter().try_for_each(|worker| {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?
            .context("worker failed")
    })
}
