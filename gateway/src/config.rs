//! Broker settings: command-line flags (each also `STRATA_<FLAG>` in the environment) and
//! the optional TOML file with Kafka-style keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use coordinator::topic_config::BrokerDefaults;
use coordinator::LeaderBalance;
use group_coordinator::config::GroupConfig;
use group_coordinator::transaction::TransactionConfig;
use segment_store::simulate_failures::LogNormalLatency;
use segment_store::StorageOptions;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "A Kafka-compatible streaming log on object storage"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator and one broker in one process, on a local data directory.
    Standalone(StandaloneArgs),
    /// Run one broker of a cluster: its metadata in etcd, its data in a shared object store.
    Gateway(GatewayArgs),
    /// Run a cluster's coordinator: one of its replicas is active (elected through etcd) and
    /// assigns partition leaders.
    Coordinator(CoordinatorArgs),
}

/// Where a cluster keeps its metadata.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (http://host:port).
    #[arg(
        long = "etcd",
        env = "STRATA_ETCD",
        value_delimiter = ',',
        required = true
    )]
    pub endpoints: Vec<String>,
    /// The key prefix of this cluster in etcd, so that clusters can share one etcd.
    #[arg(long, env = "STRATA_ETCD_PREFIX", default_value = "strata/")]
    pub etcd_prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// This broker's id (default: a new one allocated through etcd).
    #[arg(long, env = "STRATA_BROKER_ID")]
    pub broker_id: Option<i32>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Address of the HTTP server for GET /metrics, /healthz and /readyz.
    #[arg(long, env = "STRATA_HTTP", default_value = "127.0.0.1:9645")]
    pub http: SocketAddr,
    /// TOML file of settings with Kafka-style keys (broker.session.timeout.ms).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    /// Directory for the coordinator's metadata file (and the objects, unless --storage says otherwise).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What every broker process takes: its listeners, its object store, its settings.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address the Kafka listener binds to.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// HOST:PORT that clients are told to connect to (default: the listen address).
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Address of the HTTP server for GET /metrics, /healthz and /readyz.
    #[arg(long, env = "STRATA_HTTP", default_value = "127.0.0.1:9644")]
    pub http: SocketAddr,
    /// Object storage URL: file:///path, memory://, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix or hdfs://namenode/path (standalone's default:
    /// file://DATA_DIR/objects; a gateway needs one all brokers share).
    #[arg(long, env = "STRATA_STORAGE")]
    pub storage: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers (default: AWS_ENDPOINT, else AWS itself).
    #[arg(long, env = "STRATA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, env = "STRATA_S3_REGION")]
    pub s3_region: Option<String>,
    /// Put the bucket in the URL path rather than the host name (S3-compatible servers).
    #[arg(long, env = "STRATA_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Allow a plain-HTTP S3 endpoint.
    #[arg(long, env = "STRATA_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// TOML file of broker settings with Kafka-style keys, e.g. "num.partitions" = 3.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
}

impl StandaloneArgs {
    pub fn storage_url(&self) -> anyhow::Result<String> {
        match &self.server.storage {
            Some(url) => Ok(url.clone()),
            None => {
                let dir = std::path::absolute(self.data_dir.join("objects"))?;
                Ok(format!("file://{}", dir.display()))
            }
        }
    }
}

impl ServerArgs {
    /// The remote store settings: these flags, else the config file's ("s3.*" keys).
    pub fn storage_options(&self, file: &StorageOptions) -> StorageOptions {
        StorageOptions {
            s3_endpoint: self
                .s3_endpoint
                .clone()
                .or_else(|| file.s3_endpoint.clone()),
            s3_region: self.s3_region.clone().or_else(|| file.s3_region.clone()),
            s3_path_style: self.s3_path_style || file.s3_path_style,
            s3_allow_http: self.s3_allow_http || file.s3_allow_http,
            ..file.clone()
        }
    }

    /// The advertised (host, port).
    pub fn advertised(&self) -> anyhow::Result<(String, i32)> {
        let Some(listener) = &self.advertised_listener else {
            return Ok((self.listen.ip().to_string(), i32::from(self.listen.port())));
        };
        let (host, port) = listener.rsplit_once(':').ok_or_else(|| {
            anyhow::anyhow!("--advertised-listener {listener:?} is not HOST:PORT")
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| anyhow::anyhow!("--advertised-listener {listener:?} has a bad port"))?;
        Ok((host.to_string(), i32::from(port)))
    }
}

/// Settings of the broker process itself; topic defaults live in [`BrokerDefaults`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub auto_create_topics_enable: bool,
    /// A flush starts at once when the flusher is idle; under load the next one waits until
    /// this much is buffered (then it may overlap the flush in flight) or `flush_interval`
    /// has passed since the previous one started and that one has finished.
    pub flush_bytes: usize,
    /// The effective value: the config file's, else the store's default (see
    /// [`BrokerConfig::use_store_defaults`]).
    pub flush_interval: Duration,
    /// Whether the config file set `flush.interval.ms`.
    pub(crate) flush_interval_set: bool,
    /// `/readyz` reports not ready while the oldest unflushed byte is older than this.
    pub flush_stall_timeout: Duration,
    /// Bound on produced bytes not yet flushed; producers wait beyond it.
    pub buffer_max_bytes: usize,
    /// Bound on fetch response record bytes in memory over all connections, from the read
    /// until the response is written; fetches wait (at most their `max_wait_ms`) beyond it.
    pub fetch_buffer_max_bytes: usize,
    /// Committed recent batches kept in memory for tail consumers, over all partitions.
    pub tail_cache_bytes: usize,
    pub read_cache_bytes: u64,
    /// A directory for a disk tier under the read cache, of at most `read_cache_disk_bytes`.
    pub read_cache_dir: Option<PathBuf>,
    pub read_cache_disk_bytes: u64,
    /// Remote store settings from the file; flags override them.
    pub storage: StorageOptions,
    pub socket_request_max_bytes: usize,
    /// Bound on request frame bytes being read or handled over all connections (Kafka's
    /// `queued.max.request.bytes`); connections wait before reading a frame beyond it.
    pub queued_max_request_bytes: usize,
    /// A connection that sends no byte of a request it has begun, or takes no byte of its
    /// responses, for this long is closed (with what its requests hold).
    pub socket_stall_timeout: Duration,
    /// A connection that sends no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`); clients reconnect when they need to.
    pub connections_max_idle: Duration,
    /// Kafka's `max.connections` and `max.connections.per.ip`.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Bound on the bytes a compressed batch may inflate to, checked on produce (and when a
    /// timestamp lookup decodes one).
    pub message_max_uncompressed_bytes: u64,
    /// For benchmarks: PUTs to the store are delayed as a remote object store would answer
    /// (`simulate.put.latency.p50.ms` and `.p99.ms`, both or neither).
    pub simulated_put_latency: Option<LogNormalLatency>,
    pub index_interval_bytes: usize,
    pub compaction_interval: Duration,
    /// A partition's chunks are compacted into a segment at this many bytes, or when the
    /// oldest has waited `compaction_max_lag`.
    pub compaction_bytes: u64,
    pub compaction_max_lag: Duration,
    pub retention_check_interval: Duration,
    /// How long an object stays after nothing references it (readers may still be on it).
    pub object_delete_grace: Duration,
    /// In a cluster: a broker whose etcd session is not renewed for this long is dead, and
    /// its partitions move (Kafka's `broker.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How the controller balances leadership (`auto.leader.rebalance.enable`,
    /// `leader.imbalance.per.broker.percentage`, `leader.imbalance.bytes.in.percentage`,
    /// `leader.imbalance.bytes.in.min.bytes.per.second`).
    pub leader_balance: LeaderBalance,
    /// The `group.*` and `offsets.*` keys.
    pub group: GroupConfig,
    /// The transaction coordinator's settings (`transaction.max.timeout.ms`, ...).
    pub transactions: TransactionConfig,
}

/// `flush.interval.ms` on a local directory (or memory): each flush costs one fsync, so
/// flushes go as soon as the previous one is done.
const LOCAL_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// `flush.interval.ms` on a remote object store, where each flush is a billed PUT: at most
/// 4 PUTs/s per broker at light load (docs/cost.md has the latency/cost dial).
const REMOTE_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

impl BrokerConfig {
    /// Settles what depends on the store: `flush.interval.ms`, unless the config file set it,
    /// is low on a local directory and cost-aware on a remote store. Returns where the
    /// effective value came from, for the start-up log.
    pub fn use_store_defaults(&mut self, storage_url: &str) -> &'static str {
        if self.flush_interval_set {
            return "config file";
        }
        let local = ["file://", "memory://"]
            .iter()
            .any(|scheme| storage_url.starts_with(scheme));
        if local {
            self.flush_interval = LOCAL_FLUSH_INTERVAL;
            "default for a local store"
        } else {
            self.flush_interval = REMOTE_FLUSH_INTERVAL;
            "default for a remote object store"
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            auto_create_topics_enable: true,
            flush_bytes: 8 * 1024 * 1024,
            flush_interval: LOCAL_FLUSH_INTERVAL,
            flush_interval_set: false,
            flush_stall_timeout: Duration::from_secs(60),
            // etcd leases count whole seconds; 3 s keeps failover well under 5 s.
            session_timeout: Duration::from_secs(3),
            leader_balance: LeaderBalance::default(),
            buffer_max_bytes: 64 * 1024 * 1024,
            fetch_buffer_max_bytes: 64 * 1024 * 1024,
            tail_cache_bytes: 64 * 1024 * 1024,
            read_cache_bytes: 128 * 1024 * 1024,
            read_cache_dir: None,
            read_cache_disk_bytes: 1024 * 1024 * 1024,
            storage: StorageOptions::default(),
            socket_request_max_bytes: proto_compat::frame::DEFAULT_MAX_REQUEST_BYTES,
            queued_max_request_bytes: 128 * 1024 * 1024,
            socket_stall_timeout: Duration::from_secs(30),
            connections_max_idle: Duration::from_secs(600),
            max_connections: 10_000,
            max_connections_per_ip: i32::MAX as usize,
            message_max_uncompressed_bytes: 64 * 1024 * 1024,
            simulated_put_latency: None,
            index_interval_bytes: 4096,
            compaction_interval: Duration::from_secs(10),
            compaction_bytes: 64 * 1024 * 1024,
            compaction_max_lag: Duration::from_secs(60),
            retention_check_interval: Duration::from_secs(300),
            object_delete_grace: Duration::from_secs(60),
            group: GroupConfig::default(),
            transactions: TransactionConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config {key} = {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// Loads the TOML file (if any) into broker settings and topic defaults.
pub fn load(path: Option<&Path>) -> Result<(BrokerConfig, BrokerDefaults), ConfigError> {
    let mut broker = BrokerConfig::default();
    let mut defaults = BrokerDefaults::default();
    let Some(path) = path else {
        return Ok((broker, defaults));
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        };
        apply(&mut broker, &mut defaults, &key, &value)?;
    }
    if let Some(latency) = broker.simulated_put_latency {
        if latency.p50.is_zero() || latency.p99 < latency.p50 {
            return Err(ConfigError::Invalid {
                key: "simulate.put.latency.p50.ms, simulate.put.latency.p99.ms".to_string(),
                value: format!("{}, {}", latency.p50.as_millis(), latency.p99.as_millis()),
                reason: "set both, with 0 < p50 <= p99".to_string(),
            });
        }
    }
    Ok((broker, defaults))
}

fn apply(
    broker: &mut BrokerConfig,
    defaults: &mut BrokerDefaults,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let bytes = || {
        value
            .parse::<u64>()
            .map_err(|_| invalid("expected a byte count"))
    };
    let millis = || {
        value
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| invalid("expected milliseconds"))
    };
    let count = || {
        value
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid("expected a positive count"))
    };
    let boolean = || {
        value
            .parse::<bool>()
            .map_err(|_| invalid("expected true or false"))
    };
    match key {
        "auto.create.topics.enable" => broker.auto_create_topics_enable = boolean()?,
        "flush.bytes" => broker.flush_bytes = bytes()? as usize,
        "flush.interval.ms" => {
            broker.flush_interval = millis()?;
            broker.flush_interval_set = true;
        }
        "flush.stall.timeout.ms" => broker.flush_stall_timeout = millis()?,
        "queued.max.request.bytes" => {
            // Kafka's -1: no bound.
            broker.queued_max_request_bytes = match value {
                "-1" => tokio::sync::Semaphore::MAX_PERMITS,
                _ => bytes()? as usize,
            }
        }
        "socket.stall.timeout.ms" => broker.socket_stall_timeout = millis()?,
        "connections.max.idle.ms" => broker.connections_max_idle = millis()?,
        "max.connections" => broker.max_connections = count()?,
        "max.connections.per.ip" => broker.max_connections_per_ip = count()?,
        "message.max.uncompressed.bytes" => broker.message_max_uncompressed_bytes = bytes()?,
        "storage.request.timeout.ms" => broker.storage.request_timeout = millis()?,
        "storage.connect.timeout.ms" => broker.storage.connect_timeout = millis()?,
        "simulate.put.latency.p50.ms" | "simulate.put.latency.p99.ms" => {
            let latency = broker
                .simulated_put_latency
                .get_or_insert(LogNormalLatency {
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                });
            if key.ends_with("p50.ms") {
                latency.p50 = millis()?;
            } else {
                latency.p99 = millis()?;
            }
        }
        "buffer.max.bytes" => broker.buffer_max_bytes = bytes()? as usize,
        "fetch.buffer.max.bytes" => broker.fetch_buffer_max_bytes = bytes()? as usize,
        "tail.cache.bytes" => broker.tail_cache_bytes = bytes()? as usize,
        "read.cache.bytes" => broker.read_cache_bytes = bytes()?,
        "read.cache.dir" => broker.read_cache_dir = Some(PathBuf::from(value)),
        "read.cache.disk.bytes" => broker.read_cache_disk_bytes = bytes()?,
        "s3.endpoint" => broker.storage.s3_endpoint = Some(value.to_string()),
        "s3.region" => broker.storage.s3_region = Some(value.to_string()),
        "s3.path.style" => broker.storage.s3_path_style = boolean()?,
        "s3.allow.http" => broker.storage.s3_allow_http = boolean()?,
        "socket.request.max.bytes" => broker.socket_request_max_bytes = bytes()? as usize,
        "index.interval.bytes" => broker.index_interval_bytes = bytes()?.max(1) as usize,
        "compaction.interval.ms" => broker.compaction_interval = millis()?,
        "compaction.bytes" => broker.compaction_bytes = bytes()?,
        "compaction.max.lag.ms" => broker.compaction_max_lag = millis()?,
        "log.retention.check.interval.ms" => broker.retention_check_interval = millis()?,
        "object.delete.grace.ms" => broker.object_delete_grace = millis()?,
        "broker.session.timeout.ms" => broker.session_timeout = millis()?,
        "auto.leader.rebalance.enable" => broker.leader_balance.auto_rebalance = boolean()?,
        "leader.imbalance.per.broker.percentage" => {
            broker.leader_balance.imbalance_per_broker_percentage = value
                .parse::<u32>()
                .ok()
                .filter(|&percent| percent <= 100)
                .ok_or_else(|| invalid("expected a percentage from 0 to 100"))?
        }
        "leader.imbalance.bytes.in.percentage" => {
            broker.leader_balance.bytes_in_imbalance_percentage = value
                .parse::<u32>()
                .map_err(|_| invalid("expected a percentage (0 or more)"))?
        }
        "leader.imbalance.bytes.in.min.bytes.per.second" => {
            broker.leader_balance.bytes_in_imbalance_min_rate = bytes()?
        }
        key if GroupConfig::owns(key) => broker.group.set(key, value).map_err(|e| invalid(&e))?,
        key if TransactionConfig::owns(key) => broker
            .transactions
            .set(key, value)
            .map_err(|e| invalid(&e))?,
        _ => defaults
            .set(key, value)
            .map_err(|e| invalid(&e.to_string()))?,
    }
    let buffer = match key {
        "buffer.max.bytes" => Some(broker.buffer_max_bytes),
        "fetch.buffer.max.bytes" => Some(broker.fetch_buffer_max_bytes),
        "queued.max.request.bytes" => Some(broker.queued_max_request_bytes),
        "max.connections" => Some(broker.max_connections),
        _ => None,
    };
    match buffer {
        Some(0) => return Err(invalid("must be positive")),
        // Each byte (or connection) is a semaphore permit.
        Some(bytes) if bytes > tokio::sync::Semaphore::MAX_PERMITS => {
            return Err(invalid("too large"))
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<(BrokerConfig, BrokerDefaults), ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        load(Some(file.path()))
    }

    #[test]
    fn kafka_style_keys_set_broker_settings_and_topic_defaults() {
        let (broker, defaults) = load_str(
            "\"auto.create.topics.enable\" = false\n\"num.partitions\" = 3\n\"flush.interval.ms\" = 5\n",
        )
        .unwrap();
        assert!(!broker.auto_create_topics_enable);
        assert_eq!(broker.flush_interval, Duration::from_millis(5));
        assert_eq!(defaults.num_partitions, 3);
    }

    #[test]
    fn leader_balance_keys_are_kafkas() {
        let (broker, _) = load_str(
            "\"auto.leader.rebalance.enable\" = false\n\"leader.imbalance.per.broker.percentage\" = 25\n\
             \"leader.imbalance.bytes.in.percentage\" = 150\n\
             \"leader.imbalance.bytes.in.min.bytes.per.second\" = 65536\n",
        )
        .unwrap();
        let expected = LeaderBalance {
            auto_rebalance: false,
            imbalance_per_broker_percentage: 25,
            bytes_in_imbalance_percentage: 150,
            bytes_in_imbalance_min_rate: 65536,
        };
        assert_eq!(broker.leader_balance, expected);
        assert_eq!(
            BrokerConfig::default().leader_balance,
            LeaderBalance::default()
        );
        for refused in [
            "\"leader.imbalance.per.broker.percentage\" = 101\n",
            "\"leader.imbalance.bytes.in.percentage\" = -1\n",
        ] {
            let refused = load_str(refused);
            assert!(
                matches!(refused, Err(ConfigError::Invalid { .. })),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn storage_keys_are_overridden_by_flags() {
        let (broker, _) = load_str(
            "\"s3.endpoint\" = \"http://127.0.0.1:9000\"\n\"s3.region\" = \"eu-west-1\"\n\"s3.path.style\" = true\n\"read.cache.dir\" = \"/var/cache/strata\"\n",
        )
        .unwrap();
        assert_eq!(
            broker.read_cache_dir,
            Some(PathBuf::from("/var/cache/strata"))
        );
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            args: StandaloneArgs,
        }
        let flags = Flags::parse_from([
            "strata",
            "--s3-endpoint",
            "http://127.0.0.1:9001",
            "--s3-allow-http",
        ]);
        assert_eq!(
            flags.args.server.storage_options(&broker.storage),
            StorageOptions {
                s3_endpoint: Some("http://127.0.0.1:9001".to_string()),
                s3_region: Some("eu-west-1".to_string()),
                s3_path_style: true,
                s3_allow_http: true,
                ..StorageOptions::default()
            }
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_in_the_error() {
        let err = load_str("\"no.such.key\" = 1\n").unwrap_err().to_string();
        assert!(err.contains("no.such.key"), "{err}");
        let err = load_str("\"flush.bytes\" = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("flush.bytes") && err.contains("byte count"),
            "{err}"
        );
        for key in ["buffer.max.bytes", "fetch.buffer.max.bytes"] {
            for (value, reason) in [(0, "must be positive"), (u64::MAX, "too large")] {
                let err = load_str(&format!("\"{key}\" = \"{value}\"\n"))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains(key) && err.contains(reason), "{err}");
            }
        }
    }

    #[test]
    fn the_flush_interval_defaults_by_store_unless_the_file_sets_it() {
        let (mut broker, _) = load_str("").unwrap();
        assert_eq!(
            broker.use_store_defaults("file:///var/lib/strata"),
            "default for a local store"
        );
        assert_eq!(broker.flush_interval, Duration::from_millis(10));
        assert_eq!(
            broker.use_store_defaults("s3://bucket/prefix"),
            "default for a remote object store"
        );
        assert_eq!(broker.flush_interval, Duration::from_millis(250));

        let (mut broker, _) = load_str("\"flush.interval.ms\" = 40\n").unwrap();
        assert_eq!(broker.use_store_defaults("gs://bucket"), "config file");
        assert_eq!(broker.flush_interval, Duration::from_millis(40));
    }

    #[test]
    fn client_limits_and_timeouts_are_read_and_checked() {
        let (broker, _) = load_str(
            "\"queued.max.request.bytes\" = 1048576\n\"max.connections\" = 50\n\
             \"max.connections.per.ip\" = 5\n\"socket.stall.timeout.ms\" = 1500\n\
             \"connections.max.idle.ms\" = 60000\n\"storage.request.timeout.ms\" = 7000\n\
             \"storage.connect.timeout.ms\" = 700\n\"flush.stall.timeout.ms\" = 9000\n\
             \"message.max.uncompressed.bytes\" = 1000000\n",
        )
        .unwrap();
        assert_eq!(broker.queued_max_request_bytes, 1 << 20);
        assert_eq!(
            (broker.max_connections, broker.max_connections_per_ip),
            (50, 5)
        );
        assert_eq!(broker.socket_stall_timeout, Duration::from_millis(1500));
        assert_eq!(broker.connections_max_idle, Duration::from_secs(60));
        assert_eq!(broker.storage.request_timeout, Duration::from_secs(7));
        assert_eq!(broker.storage.connect_timeout, Duration::from_millis(700));
        assert_eq!(broker.flush_stall_timeout, Duration::from_secs(9));
        assert_eq!(broker.message_max_uncompressed_bytes, 1_000_000);
        // Kafka's -1: no bound.
        let (broker, _) = load_str("\"queued.max.request.bytes\" = -1\n").unwrap();
        assert_eq!(
            broker.queued_max_request_bytes,
            tokio::sync::Semaphore::MAX_PERMITS
        );
        for bad in [
            "\"max.connections\" = 0\n",
            "\"max.connections.per.ip\" = -3\n",
            "\"queued.max.request.bytes\" = 0\n",
        ] {
            assert!(load_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_simulated_put_latency_needs_both_percentiles_in_order() {
        let (broker, _) = load_str(
            "\"simulate.put.latency.p50.ms\" = 50\n\"simulate.put.latency.p99.ms\" = 300\n",
        )
        .unwrap();
        assert_eq!(
            broker.simulated_put_latency,
            Some(LogNormalLatency {
                p50: Duration::from_millis(50),
                p99: Duration::from_millis(300),
            })
        );
        for bad in [
            "\"simulate.put.latency.p50.ms\" = 50\n",
            "\"simulate.put.latency.p50.ms\" = 50\n\"simulate.put.latency.p99.ms\" = 10\n",
        ] {
            let err = load_str(bad).unwrap_err().to_string();
            assert!(err.contains("simulate.put.latency"), "{err}");
        }
    }
}
