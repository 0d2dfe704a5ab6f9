//! Broker settings: command-line flags (each also `STRATA_<FLAG>` in the environment) and
//! the optional TOML file with Kafka-style keys.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use coordinator::broker_settings::{
    self, parse_bool, parse_bytes, parse_count, parse_millis, set_to, show_millis, Setting,
};
use coordinator::topic_config::catalog::ConfigKind;
use coordinator::topic_config::BrokerDefaults;
use coordinator::LeaderBalance;
use coordinator::{ConfigEntry, Endpoint};
use group_coordinator::config::GroupConfig;
use group_coordinator::transaction::TransactionConfig;
use segment_store::simulate_failures::LogNormalLatency;
use segment_store::StorageOptions;

use crate::authorizer::AuthorizerSettings;
use crate::listeners::{self, Listener, ListenerSettings, SecurityProtocol};
use crate::quotas::QuotaWindow;
use crate::sasl::{jaas, Mechanism, SaslSettings};
use crate::tls::{ClientAuth, PrincipalMapping, TlsSettings};

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
    /// Address the Kafka listener (PLAINTEXT) binds to [default: 127.0.0.1:9092]; the config
    /// file's `listeners` replaces it.
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// HOST:PORT that clients are told to connect to (default: the listen address).
    #[arg(long, env = "STRATA_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Kafka's `listeners` (NAME://HOST:PORT,...), over the config file's: per-process
    /// values such as a pod's own address come from the environment this way.
    #[arg(long, env = "STRATA_LISTENERS")]
    pub listeners: Option<String>,
    /// Kafka's `advertised.listeners` (NAME://HOST:PORT,...), over the config file's.
    #[arg(long, env = "STRATA_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,
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

    /// The broker's listeners: `--listeners` or the config file's `listeners`, else one
    /// PLAINTEXT listener from `--listen` and `--advertised-listener`.
    pub fn listeners(&self, file: &ListenerSettings) -> anyhow::Result<Vec<Listener>> {
        let settings = ListenerSettings {
            listeners: self.listeners.clone().or_else(|| file.listeners.clone()),
            advertised_listeners: self
                .advertised_listeners
                .clone()
                .or_else(|| file.advertised_listeners.clone()),
            security_protocol_map: file.security_protocol_map.clone(),
        };
        if let Some(listeners) = listeners::resolve(&settings).map_err(|e| anyhow::anyhow!(e))? {
            if self.listen.is_some() || self.advertised_listener.is_some() {
                anyhow::bail!(
                    "listeners is set: --listen and --advertised-listener would be ignored, so \
                     leave them out"
                );
            }
            return Ok(listeners);
        }
        let bind = self.listen.unwrap_or(DEFAULT_LISTEN);
        let (host, port) = self.advertised(bind)?;
        Ok(vec![Listener {
            name: "PLAINTEXT".to_string(),
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised: Endpoint {
                listener: "PLAINTEXT".to_string(),
                host,
                port,
            },
        }])
    }

    /// The advertised (host, port) of the `--listen` listener.
    fn advertised(&self, listen: SocketAddr) -> anyhow::Result<(String, i32)> {
        let Some(listener) = &self.advertised_listener else {
            return Ok((listen.ip().to_string(), i32::from(listen.port())));
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

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9092);

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
    /// The windows client quotas are measured over (`quota.window.num`,
    /// `quota.window.size.seconds`).
    pub quota_window: QuotaWindow,
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
    /// How long the LogCleaner waits between passes over the compacted partitions (Kafka's
    /// `log.cleaner.backoff.ms`).
    pub cleaner_backoff: Duration,
    /// The memory of one clean's OffsetMap (Kafka's `log.cleaner.dedupe.buffer.size`): a
    /// clean takes in the dirty segments whose keys fit.
    pub cleaner_dedupe_buffer_size: usize,
    /// How long an object stays after nothing references it (readers may still be on it).
    pub object_delete_grace: Duration,
    /// In a cluster: a broker whose etcd session is not renewed for this long is dead, and
    /// its partitions move (Kafka's `broker.session.timeout.ms`).
    pub session_timeout: Duration,
    /// How the controller balances leadership (`auto.leader.rebalance.enable`,
    /// `leader.imbalance.per.broker.percentage`, `leader.imbalance.bytes.in.percentage`,
    /// `leader.imbalance.bytes.in.min.bytes.per.second`).
    pub leader_balance: LeaderBalance,
    /// `listeners`, `advertised.listeners`, `listener.security.protocol.map`.
    pub listeners: ListenerSettings,
    /// The `ssl.*` keys of SSL listeners.
    pub tls: TlsSettings,
    /// The `sasl.*` keys and the session settings of SASL listeners.
    pub sasl: SaslSettings,
    /// The `group.*` and `offsets.*` keys.
    pub group: GroupConfig,
    /// The transaction coordinator's settings (`transaction.max.timeout.ms`, ...).
    pub transactions: TransactionConfig,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: AuthorizerSettings,
    /// `inter.broker.listener.name`: the listener of other brokers this one sends requests
    /// to (transaction markers).
    pub inter_broker_listener: String,
    /// The settings the config file set, which DescribeConfigs reports as static.
    pub(crate) set_in_file: BTreeSet<&'static str>,
}

/// `flush.interval.ms` on a local directory (or memory): a flush costs a few fsyncs, not a
/// billed PUT, so the next one goes as soon as the previous one has committed: a producer
/// waits for the flush in flight and its own, never for a timer.
const LOCAL_FLUSH_INTERVAL: Duration = Duration::ZERO;
/// `flush.interval.ms` on a remote object store, where each flush is a billed PUT: at most
/// 4 PUTs/s per broker at light load (docs/cost.md has the latency/cost dial).
const REMOTE_FLUSH_INTERVAL: Duration = Duration::from_millis(250);

impl BrokerConfig {
    /// Settles what depends on the store: `flush.interval.ms`, unless the config file set it,
    /// is low on a local directory and cost-aware on a remote store. Returns where the
    /// effective value came from, for the start-up log.
    pub fn use_store_defaults(&mut self, storage_url: &str) -> &'static str {
        if self.set_in_file.contains("flush.interval.ms") {
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
            quota_window: QuotaWindow::default(),
            max_connections: 10_000,
            max_connections_per_ip: i32::MAX as usize,
            message_max_uncompressed_bytes: 64 * 1024 * 1024,
            simulated_put_latency: None,
            index_interval_bytes: 4096,
            compaction_interval: Duration::from_secs(10),
            compaction_bytes: 64 * 1024 * 1024,
            compaction_max_lag: Duration::from_secs(60),
            retention_check_interval: Duration::from_secs(300),
            cleaner_backoff: Duration::from_secs(15),
            cleaner_dedupe_buffer_size: 128 * 1024 * 1024,
            object_delete_grace: Duration::from_secs(60),
            listeners: ListenerSettings::default(),
            tls: TlsSettings::default(),
            sasl: SaslSettings::default(),
            group: GroupConfig::default(),
            transactions: TransactionConfig::default(),
            authorizer: AuthorizerSettings::default(),
            inter_broker_listener: "PLAINTEXT".to_string(),
            set_in_file: BTreeSet::new(),
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
    let invalid = |reason: String| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    if let Some(login) = jaas_config_key(key) {
        // The value holds a password: errors do not repeat it.
        let login_value = jaas::parse(value).map_err(|reason| ConfigError::Invalid {
            key: key.to_string(),
            value: "(hidden)".to_string(),
            reason,
        })?;
        broker.sasl.logins.insert(login, login_value);
    } else if let Some(setting) = broker_settings::find(SETTINGS, key) {
        (setting.set)(broker, value).map_err(invalid)?;
        broker.set_in_file.insert(setting.name);
    } else if GroupConfig::owns(key) {
        broker.group.set(key, value).map_err(invalid)?;
        if let Some(setting) = broker_settings::find(group_coordinator::config::SETTINGS, key) {
            broker.set_in_file.insert(setting.name);
        }
    } else {
        defaults
            .set(key, value)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

impl BrokerConfig {
    /// Every broker setting with its value, for DescribeConfigs on this broker.
    pub fn describe(&self) -> Vec<ConfigEntry> {
        let broker = SETTINGS
            .iter()
            .map(|setting| setting.entry(self, self.set_in_file.contains(setting.name)));
        let group = group_coordinator::config::SETTINGS
            .iter()
            .map(|setting| setting.entry(&self.group, self.set_in_file.contains(setting.name)));
        broker.chain(group).collect()
    }
}

/// `{listener}.{mechanism}` in lower case, of a `listener.name.{listener}.{mechanism}.sasl.jaas.config` key.
fn jaas_config_key(key: &str) -> Option<String> {
    let login = key
        .strip_prefix("listener.name.")?
        .strip_suffix(".sasl.jaas.config")?;
    Some(login.to_lowercase())
}

/// A semaphore's permits (bytes or connections): at least 1, at most what it can hold.
fn parse_permits(value: usize) -> Result<usize, String> {
    match value {
        0 => Err("must be positive".to_string()),
        n if n > tokio::sync::Semaphore::MAX_PERMITS => Err("too large".to_string()),
        n => Ok(n),
    }
}

fn parse_buffer_bytes(value: &str) -> Result<usize, String> {
    parse_permits(usize::try_from(parse_bytes(value)?).unwrap_or(usize::MAX))
}

fn parse_mechanisms(value: &str) -> Result<Vec<Mechanism>, String> {
    let mechanisms = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Mechanism::parse(name).ok_or_else(|| {
                format!(
                    "SASL mechanism {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if mechanisms.is_empty() {
        return Err("at least one mechanism is needed".to_string());
    }
    Ok(mechanisms)
}

/// Kafka's transaction settings are ints of milliseconds, at least 1.
fn parse_transaction_millis(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&ms| ms >= 1 && ms <= i32::MAX as u64)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("expected milliseconds from 1 to {}", i32::MAX))
}

fn parse_percentage(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&percent| percent <= 100)
        .ok_or_else(|| "expected a percentage from 0 to 100".to_string())
}

/// `simulate.put.latency.p50.ms` or `.p99.ms`: each sets one percentile.
fn simulated_latency(broker: &mut BrokerConfig) -> &mut LogNormalLatency {
    broker
        .simulated_put_latency
        .get_or_insert(LogNormalLatency {
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        })
}

fn show<T: ToString>(value: T) -> Option<String> {
    Some(value.to_string())
}

const BOOLEAN: ConfigKind = ConfigKind::Boolean;
const LONG: ConfigKind = ConfigKind::Long { min: 0 };
const INT: ConfigKind = ConfigKind::Int {
    min: 1,
    max: i32::MAX as i64,
};
const TEXT: ConfigKind = ConfigKind::Text;

/// Every setting of the broker process, with Kafka's names where Kafka has the setting.
static SETTINGS: &[Setting<BrokerConfig>] = &[
    Setting {
        name: "auto.create.topics.enable",
        kind: BOOLEAN,
        documentation: "Whether a Metadata or Produce request for an unknown topic creates it.",
        set: |b, v| set_to(&mut b.auto_create_topics_enable, parse_bool(v)),
        get: |b| show(b.auto_create_topics_enable),
    },
    Setting {
        name: "flush.bytes",
        kind: LONG,
        documentation: "Under load, a flush to the store starts once this much is buffered.",
        set: |b, v| set_to(&mut b.flush_bytes, parse_bytes(v).map(|n| n as usize)),
        get: |b| show(b.flush_bytes),
    },
    Setting {
        name: "flush.interval.ms",
        kind: LONG,
        documentation: "The longest a buffered byte waits for its flush: low on a local store, \
                        cost-aware (fewer PUTs) on a remote one unless set.",
        set: |b, v| set_to(&mut b.flush_interval, parse_millis(v)),
        get: |b| show_millis(b.flush_interval),
    },
    Setting {
        name: "flush.stall.timeout.ms",
        kind: LONG,
        documentation:
            "/readyz reports not ready while the oldest unflushed byte is older than this.",
        set: |b, v| set_to(&mut b.flush_stall_timeout, parse_millis(v)),
        get: |b| show_millis(b.flush_stall_timeout),
    },
    Setting {
        name: "buffer.max.bytes",
        kind: LONG,
        documentation:
            "Produced bytes not yet flushed, over all partitions; producers wait beyond it.",
        set: |b, v| set_to(&mut b.buffer_max_bytes, parse_buffer_bytes(v)),
        get: |b| show(b.buffer_max_bytes),
    },
    Setting {
        name: "fetch.buffer.max.bytes",
        kind: LONG,
        documentation:
            "Fetch response record bytes in memory over all connections; fetches wait beyond it.",
        set: |b, v| set_to(&mut b.fetch_buffer_max_bytes, parse_buffer_bytes(v)),
        get: |b| show(b.fetch_buffer_max_bytes),
    },
    Setting {
        name: "tail.cache.bytes",
        kind: LONG,
        documentation:
            "Committed recent batches kept in memory for tail consumers, over all partitions.",
        set: |b, v| set_to(&mut b.tail_cache_bytes, parse_bytes(v).map(|n| n as usize)),
        get: |b| show(b.tail_cache_bytes),
    },
    Setting {
        name: "read.cache.bytes",
        kind: LONG,
        documentation: "Memory for byte ranges read from the store.",
        set: |b, v| set_to(&mut b.read_cache_bytes, parse_bytes(v)),
        get: |b| show(b.read_cache_bytes),
    },
    Setting {
        name: "read.cache.dir",
        kind: TEXT,
        documentation: "A directory for a disk tier under the read cache; none when unset.",
        set: |b, v| {
            b.read_cache_dir = Some(PathBuf::from(v));
            Ok(())
        },
        get: |b| {
            b.read_cache_dir
                .as_ref()
                .map(|dir| dir.display().to_string())
        },
    },
    Setting {
        name: "read.cache.disk.bytes",
        kind: LONG,
        documentation: "The size of the read cache's disk tier.",
        set: |b, v| set_to(&mut b.read_cache_disk_bytes, parse_bytes(v)),
        get: |b| show(b.read_cache_disk_bytes),
    },
    Setting {
        name: "socket.request.max.bytes",
        kind: INT,
        documentation: "The largest request frame a client may send.",
        set: |b, v| {
            set_to(
                &mut b.socket_request_max_bytes,
                parse_bytes(v).map(|n| n as usize),
            )
        },
        get: |b| show(b.socket_request_max_bytes),
    },
    Setting {
        name: "queued.max.request.bytes",
        kind: LONG,
        documentation: "Request bytes being read or handled over all connections (-1: no bound); \
                        connections wait before reading a frame beyond it.",
        set: |b, v| {
            // Kafka's -1: no bound.
            let bytes = match v.trim() {
                "-1" => Ok(tokio::sync::Semaphore::MAX_PERMITS),
                _ => parse_buffer_bytes(v),
            };
            set_to(&mut b.queued_max_request_bytes, bytes)
        },
        get: |b| show(b.queued_max_request_bytes),
    },
    Setting {
        name: "socket.stall.timeout.ms",
        kind: LONG,
        documentation: "A connection that stops mid-request, or takes no byte of its responses, \
                        for this long is closed.",
        set: |b, v| set_to(&mut b.socket_stall_timeout, parse_millis(v)),
        get: |b| show_millis(b.socket_stall_timeout),
    },
    Setting {
        name: "connections.max.idle.ms",
        kind: LONG,
        documentation: "A connection that sends no request for this long is closed.",
        set: |b, v| set_to(&mut b.connections_max_idle, parse_millis(v)),
        get: |b| show_millis(b.connections_max_idle),
    },
    Setting {
        name: "quota.window.num",
        kind: INT,
        documentation: "The number of samples client quotas are measured over.",
        set: |b, v| set_to(&mut b.quota_window.samples, parse_count(v)),
        get: |b| show(b.quota_window.samples),
    },
    Setting {
        name: "quota.window.size.seconds",
        kind: INT,
        documentation: "The time span of each sample client quotas are measured over.",
        set: |b, v| {
            let seconds = parse_count(v).map(|n| Duration::from_secs(n as u64));
            set_to(&mut b.quota_window.size, seconds)
        },
        get: |b| show(b.quota_window.size.as_secs()),
    },
    Setting {
        name: "max.connections",
        kind: INT,
        documentation: "The most client connections the broker accepts.",
        set: |b, v| {
            set_to(
                &mut b.max_connections,
                parse_count(v).and_then(parse_permits),
            )
        },
        get: |b| show(b.max_connections),
    },
    Setting {
        name: "max.connections.per.ip",
        kind: INT,
        documentation: "The most client connections from one address.",
        set: |b, v| set_to(&mut b.max_connections_per_ip, parse_count(v)),
        get: |b| show(b.max_connections_per_ip),
    },
    Setting {
        name: "message.max.uncompressed.bytes",
        kind: LONG,
        documentation: "The most bytes a compressed batch may inflate to, checked on produce.",
        set: |b, v| set_to(&mut b.message_max_uncompressed_bytes, parse_bytes(v)),
        get: |b| show(b.message_max_uncompressed_bytes),
    },
    Setting {
        name: "storage.request.timeout.ms",
        kind: LONG,
        documentation: "How long one request to the store may take before it fails and is retried.",
        set: |b, v| set_to(&mut b.storage.request_timeout, parse_millis(v)),
        get: |b| show_millis(b.storage.request_timeout),
    },
    Setting {
        name: "storage.connect.timeout.ms",
        kind: LONG,
        documentation: "How long connecting to a remote store may take.",
        set: |b, v| set_to(&mut b.storage.connect_timeout, parse_millis(v)),
        get: |b| show_millis(b.storage.connect_timeout),
    },
    Setting {
        name: "storage.local.direct.io",
        kind: BOOLEAN,
        documentation:
            "Whether a file:// store writes and reads around the page cache where it can.",
        set: |b, v| set_to(&mut b.storage.local_direct_io, parse_bool(v)),
        get: |b| show(b.storage.local_direct_io),
    },
    Setting {
        name: "s3.endpoint",
        kind: TEXT,
        documentation:
            "The S3 endpoint URL, for S3-compatible servers; AWS for the region when unset.",
        set: |b, v| {
            b.storage.s3_endpoint = Some(v.to_string());
            Ok(())
        },
        get: |b| b.storage.s3_endpoint.clone(),
    },
    Setting {
        name: "s3.region",
        kind: TEXT,
        documentation: "The S3 region.",
        set: |b, v| {
            b.storage.s3_region = Some(v.to_string());
            Ok(())
        },
        get: |b| b.storage.s3_region.clone(),
    },
    Setting {
        name: "s3.path.style",
        kind: BOOLEAN,
        documentation:
            "Whether the bucket goes in the path (http://endpoint/bucket/key), not the host name.",
        set: |b, v| set_to(&mut b.storage.s3_path_style, parse_bool(v)),
        get: |b| show(b.storage.s3_path_style),
    },
    Setting {
        name: "s3.allow.http",
        kind: BOOLEAN,
        documentation: "Whether an http:// S3 endpoint is allowed.",
        set: |b, v| set_to(&mut b.storage.s3_allow_http, parse_bool(v)),
        get: |b| show(b.storage.s3_allow_http),
    },
    Setting {
        name: "simulate.put.latency.p50.ms",
        kind: LONG,
        documentation:
            "For benchmarks: PUTs to the store are delayed with this median (with the p99).",
        set: |b, v| set_to(&mut simulated_latency(b).p50, parse_millis(v)),
        get: |b| b.simulated_put_latency.and_then(|l| show_millis(l.p50)),
    },
    Setting {
        name: "simulate.put.latency.p99.ms",
        kind: LONG,
        documentation:
            "For benchmarks: PUTs to the store are delayed with this p99 (with the median).",
        set: |b, v| set_to(&mut simulated_latency(b).p99, parse_millis(v)),
        get: |b| b.simulated_put_latency.and_then(|l| show_millis(l.p99)),
    },
    Setting {
        name: "index.interval.bytes",
        kind: INT,
        documentation: "The bytes between entries of a segment's offset and time indexes.",
        set: |b, v| {
            set_to(
                &mut b.index_interval_bytes,
                parse_bytes(v).map(|n| n.max(1) as usize),
            )
        },
        get: |b| show(b.index_interval_bytes),
    },
    Setting {
        name: "compaction.interval.ms",
        kind: LONG,
        documentation: "How often partitions are checked for chunks to compact into segments.",
        set: |b, v| set_to(&mut b.compaction_interval, parse_millis(v)),
        get: |b| show_millis(b.compaction_interval),
    },
    Setting {
        name: "compaction.bytes",
        kind: LONG,
        documentation: "A partition's chunks are compacted into a segment at this many bytes.",
        set: |b, v| set_to(&mut b.compaction_bytes, parse_bytes(v)),
        get: |b| show(b.compaction_bytes),
    },
    Setting {
        name: "compaction.max.lag.ms",
        kind: LONG,
        documentation: "...or once the oldest chunk has waited this long.",
        set: |b, v| set_to(&mut b.compaction_max_lag, parse_millis(v)),
        get: |b| show_millis(b.compaction_max_lag),
    },
    Setting {
        name: "log.retention.check.interval.ms",
        kind: LONG,
        documentation: "How often segments are checked for deletion by retention.",
        set: |b, v| set_to(&mut b.retention_check_interval, parse_millis(v)),
        get: |b| show_millis(b.retention_check_interval),
    },
    Setting {
        name: "log.cleaner.backoff.ms",
        kind: LONG,
        documentation:
            "How long the LogCleaner waits between passes over the compacted partitions.",
        set: |b, v| set_to(&mut b.cleaner_backoff, parse_millis(v)),
        get: |b| show_millis(b.cleaner_backoff),
    },
    Setting {
        name: "log.cleaner.dedupe.buffer.size",
        kind: LONG,
        documentation: "The memory of one clean's OffsetMap: a clean takes in the dirty segments \
                        whose keys fit.",
        set: |b, v| {
            set_to(
                &mut b.cleaner_dedupe_buffer_size,
                parse_bytes(v).map(|n| n as usize),
            )
        },
        get: |b| show(b.cleaner_dedupe_buffer_size),
    },
    Setting {
        name: "transaction.max.timeout.ms",
        kind: INT,
        documentation: "The longest transaction.timeout.ms a transactional producer may ask for.",
        set: |b, v| set_to(&mut b.transactions.max_timeout, parse_transaction_millis(v)),
        get: |b| show_millis(b.transactions.max_timeout),
    },
    Setting {
        name: "transactional.id.expiration.ms",
        kind: INT,
        documentation: "A transactional id idle for this long is forgotten.",
        set: |b, v| {
            set_to(
                &mut b.transactions.id_expiration,
                parse_transaction_millis(v),
            )
        },
        get: |b| show_millis(b.transactions.id_expiration),
    },
    Setting {
        name: "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        kind: INT,
        documentation:
            "How often timed-out transactions are aborted and unfinished ones completed.",
        set: |b, v| {
            set_to(
                &mut b.transactions.check_interval,
                parse_transaction_millis(v),
            )
        },
        get: |b| show_millis(b.transactions.check_interval),
    },
    Setting {
        name: "object.delete.grace.ms",
        kind: LONG,
        documentation: "How long an object stays in the store after nothing references it.",
        set: |b, v| set_to(&mut b.object_delete_grace, parse_millis(v)),
        get: |b| show_millis(b.object_delete_grace),
    },
    Setting {
        name: "broker.session.timeout.ms",
        kind: LONG,
        documentation: "In a cluster: a broker whose session is not renewed for this long is dead \
                        and its partitions move.",
        set: |b, v| set_to(&mut b.session_timeout, parse_millis(v)),
        get: |b| show_millis(b.session_timeout),
    },
    Setting {
        name: "listeners",
        kind: TEXT,
        documentation: "The listeners, NAME://HOST:PORT each; when unset, one PLAINTEXT listener \
                        from --listen.",
        set: |b, v| {
            b.listeners.listeners = Some(v.to_string());
            Ok(())
        },
        get: |b| b.listeners.listeners.clone(),
    },
    Setting {
        name: "advertised.listeners",
        kind: TEXT,
        documentation: "The addresses clients of each listener are told, NAME://HOST:PORT each; \
                        a listener left out advertises the address it binds.",
        set: |b, v| {
            b.listeners.advertised_listeners = Some(v.to_string());
            Ok(())
        },
        get: |b| b.listeners.advertised_listeners.clone(),
    },
    Setting {
        name: "listener.security.protocol.map",
        kind: TEXT,
        documentation: "Each listener's security protocol, NAME:PROTOCOL each (PLAINTEXT or SSL).",
        set: |b, v| {
            b.listeners.security_protocol_map = Some(v.to_string());
            Ok(())
        },
        get: |b| b.listeners.security_protocol_map.clone(),
    },
    Setting {
        name: "inter.broker.listener.name",
        kind: TEXT,
        documentation: "The listener brokers send each other requests on (transaction markers), \
                        with its security protocol; a broker without a listener of that name is \
                        sent them on its first listener.",
        set: |b, v| {
            b.inter_broker_listener = v.trim().to_string();
            Ok(())
        },
        get: |b| show(&b.inter_broker_listener),
    },
    Setting {
        name: "sasl.mechanism.inter.broker.protocol",
        kind: TEXT,
        documentation: "The SASL mechanism brokers log in to each other with on a SASL \
                        inter-broker listener, as the user of \
                        listener.name.{listener}.{mechanism}.sasl.jaas.config.",
        set: |b, v| {
            let mechanism = Mechanism::parse(v.trim())
                .ok_or_else(|| "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".to_string())?;
            b.sasl.inter_broker_mechanism = Some(mechanism);
            Ok(())
        },
        get: |b| b.sasl.inter_broker_mechanism.map(|m| m.name().to_string()),
    },
    Setting {
        name: "authorizer.class.name",
        kind: TEXT,
        documentation: "The authorizer: empty for none (every request is allowed), or \
                        org.apache.kafka.metadata.authorizer.StandardAuthorizer (or \
                        kafka.security.authorizer.AclAuthorizer) for Kafka's ACLs, kept in the \
                        coordinator.",
        set: |b, v| {
            set_to(
                &mut b.authorizer.class_name,
                AuthorizerSettings::parse_class_name(v),
            )
        },
        get: |b| show(&b.authorizer.class_name),
    },
    Setting {
        name: "super.users",
        kind: TEXT,
        documentation: "Principals the authorizer allows everything, separated by semicolons \
                        (User:admin;User:ANONYMOUS).",
        set: |b, v| {
            set_to(
                &mut b.authorizer.super_users,
                AuthorizerSettings::parse_super_users(v),
            )
        },
        get: |b| show(b.authorizer.super_users.join(";")),
    },
    Setting {
        name: "allow.everyone.if.no.acl.found",
        kind: BOOLEAN,
        documentation: "Whether a resource that no ACL names is open to everyone (false: only \
                        super users may use it).",
        set: |b, v| {
            set_to(
                &mut b.authorizer.allow_everyone_if_no_acl_found,
                parse_bool(v),
            )
        },
        get: |b| show(b.authorizer.allow_everyone_if_no_acl_found),
    },
    Setting {
        name: "ssl.keystore.type",
        kind: TEXT,
        documentation: "PEM: the keystore is a PEM file.",
        set: |_, v| match v.trim() {
            "PEM" => Ok(()),
            _ => Err("only PEM keystores are supported".to_string()),
        },
        get: |_| show("PEM"),
    },
    Setting {
        name: "ssl.keystore.location",
        kind: TEXT,
        documentation: "A PEM file with the certificate chain and the unencrypted private key of \
                        SSL listeners; reloaded when it changes.",
        set: |b, v| {
            b.tls.keystore = Some(PathBuf::from(v));
            Ok(())
        },
        get: |b| b.tls.keystore.as_ref().map(|p| p.display().to_string()),
    },
    Setting {
        name: "ssl.key.location",
        kind: TEXT,
        documentation: "A PEM file with the unencrypted private key, when ssl.keystore.location \
                        holds only the certificate chain (a Kubernetes TLS Secret's tls.key \
                        beside its tls.crt); reloaded when it changes.",
        set: |b, v| {
            b.tls.key = Some(PathBuf::from(v));
            Ok(())
        },
        get: |b| b.tls.key.as_ref().map(|p| p.display().to_string()),
    },
    Setting {
        name: "ssl.truststore.type",
        kind: TEXT,
        documentation: "PEM: the truststore is a PEM file.",
        set: |_, v| match v.trim() {
            "PEM" => Ok(()),
            _ => Err("only PEM truststores are supported".to_string()),
        },
        get: |_| show("PEM"),
    },
    Setting {
        name: "ssl.truststore.location",
        kind: TEXT,
        documentation: "A PEM bundle of the CAs client certificates must chain to; reloaded when \
                        it changes.",
        set: |b, v| {
            b.tls.truststore = Some(PathBuf::from(v));
            Ok(())
        },
        get: |b| b.tls.truststore.as_ref().map(|p| p.display().to_string()),
    },
    Setting {
        name: "ssl.client.auth",
        kind: ConfigKind::Choice(&["required", "requested", "none"]),
        documentation: "Whether SSL clients must (required) or may (requested) present a \
                        certificate the truststore's CAs signed.",
        set: |b, v| set_to(&mut b.tls.client_auth, ClientAuth::parse(v)),
        get: |b| show(b.tls.client_auth.name()),
    },
    Setting {
        name: "ssl.principal.mapping.rules",
        kind: TEXT,
        documentation: "How a client certificate's subject becomes the principal's name: \
                        RULE:pattern/replacement/[LU] items and DEFAULT, the first match wins.",
        set: |b, v| set_to(&mut b.tls.principal_mapping, PrincipalMapping::parse(v)),
        get: |b| show(&b.tls.principal_mapping.text),
    },
    Setting {
        name: "sasl.enabled.mechanisms",
        kind: ConfigKind::List(&["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
        documentation: "The SASL mechanisms SASL listeners offer. PLAIN checks passwords against \
                        the users' SCRAM credentials; enable it only with TLS.",
        set: |b, v| set_to(&mut b.sasl.enabled_mechanisms, parse_mechanisms(v)),
        get: |b| {
            let names: Vec<_> = b.sasl.enabled_mechanisms.iter().map(|m| m.name()).collect();
            show(names.join(","))
        },
    },
    Setting {
        name: "sasl.server.max.receive.size",
        kind: INT,
        documentation: "The largest request a client may send before it has authenticated.",
        set: |b, v| set_to(&mut b.sasl.max_receive_size, parse_count(v)),
        get: |b| show(b.sasl.max_receive_size),
    },
    Setting {
        name: "connections.max.reauth.ms",
        kind: LONG,
        documentation: "The lifetime of a SASL session: a client re-authenticates before it \
                        ends or its connection is closed (0: sessions last as long as their \
                        connection).",
        set: |b, v| {
            let lifetime = parse_millis(v).map(|d| (!d.is_zero()).then_some(d));
            set_to(&mut b.sasl.max_reauth, lifetime)
        },
        get: |b| show(b.sasl.max_reauth.map_or(0, |d| d.as_millis())),
    },
    Setting {
        name: "connection.failed.authentication.delay.ms",
        kind: INT,
        documentation: "How long the answer to a failed authentication waits, to slow down \
                        password guessing.",
        set: |b, v| set_to(&mut b.sasl.failed_authentication_delay, parse_millis(v)),
        get: |b| show_millis(b.sasl.failed_authentication_delay),
    },
    Setting {
        name: "auto.leader.rebalance.enable",
        kind: BOOLEAN,
        documentation: "Whether the controller balances leadership; when false it moves only when \
                        a broker leaves or dies, or by hand.",
        set: |b, v| set_to(&mut b.leader_balance.auto_rebalance, parse_bool(v)),
        get: |b| show(b.leader_balance.auto_rebalance),
    },
    Setting {
        name: "leader.imbalance.per.broker.percentage",
        kind: INT,
        documentation: "A broker takes back its preferred partitions once more than this share \
                        of them is led elsewhere.",
        set: |b, v| {
            set_to(
                &mut b.leader_balance.imbalance_per_broker_percentage,
                parse_percentage(v),
            )
        },
        get: |b| show(b.leader_balance.imbalance_per_broker_percentage),
    },
    Setting {
        name: "leader.imbalance.bytes.in.percentage",
        kind: INT,
        documentation: "Partitions move to even out bytes-in once the busiest broker takes more \
                        than this share above the mean...",
        set: |b, v| {
            let percentage = v
                .trim()
                .parse::<u32>()
                .map_err(|_| "expected a percentage (0 or more)".to_string());
            set_to(
                &mut b.leader_balance.bytes_in_imbalance_percentage,
                percentage,
            )
        },
        get: |b| show(b.leader_balance.bytes_in_imbalance_percentage),
    },
    Setting {
        name: "leader.imbalance.bytes.in.min.bytes.per.second",
        kind: LONG,
        documentation: "...and at least this many bytes per second more than the idlest.",
        set: |b, v| {
            set_to(
                &mut b.leader_balance.bytes_in_imbalance_min_rate,
                parse_bytes(v),
            )
        },
        get: |b| show(b.leader_balance.bytes_in_imbalance_min_rate),
    },
];

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
    fn listener_logins_are_read_and_never_repeated_in_errors() {
        let (broker, _) = load_str(concat!(
            r#""sasl.mechanism.inter.broker.protocol" = "SCRAM-SHA-512""#,
            "\n",
            r#""listener.name.INTERNAL.SCRAM-SHA-512.sasl.jaas.config" = "#,
            r#"'org.apache.kafka.common.security.scram.ScramLoginModule required "#,
            r#"username="b" password="p";'"#,
        ))
        .unwrap();
        assert_eq!(broker.sasl.logins["internal.scram-sha-512"].username, "b");
        let error =
            load_str("\"listener.name.internal.plain.sasl.jaas.config\" = \"password=hunter2\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("listener.name.internal.plain.sasl.jaas.config"),
            "{error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
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
    fn listener_flags_take_over_the_files_listeners() {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            args: StandaloneArgs,
        }
        let file = ListenerSettings {
            listeners: Some("PLAINTEXT://127.0.0.1:9092".into()),
            advertised_listeners: None,
            security_protocol_map: Some(
                "INTERNAL:PLAINTEXT,EXTERNAL:SSL,PLAINTEXT:PLAINTEXT".into(),
            ),
        };
        let flags = Flags::parse_from([
            "strata",
            "--listeners",
            "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094",
            "--advertised-listeners",
            "INTERNAL://gw-0.internal:9092,EXTERNAL://gw-0.example.com:9094",
        ]);
        let listeners = flags.args.server.listeners(&file).unwrap();
        let advertised: Vec<_> = listeners
            .iter()
            .map(|l| (l.name.as_str(), l.protocol, l.advertised.host.as_str()))
            .collect();
        assert_eq!(
            advertised,
            [
                ("INTERNAL", SecurityProtocol::Plaintext, "gw-0.internal"),
                ("EXTERNAL", SecurityProtocol::Ssl, "gw-0.example.com")
            ]
        );
        let both = Flags::parse_from(["strata", "--listen", "127.0.0.1:1"]);
        let err = both.args.server.listeners(&file).unwrap_err().to_string();
        assert!(err.contains("--listen"), "{err}");
        let plain = Flags::parse_from(["strata"]);
        let listeners = plain
            .args
            .server
            .listeners(&ListenerSettings::default())
            .unwrap();
        assert_eq!(listeners[0].bind, DEFAULT_LISTEN);
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
        assert_eq!(broker.flush_interval, Duration::ZERO);
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
        assert!(broker.storage.local_direct_io, "on unless turned off");
        assert_eq!(broker.flush_stall_timeout, Duration::from_secs(9));
        assert_eq!(broker.message_max_uncompressed_bytes, 1_000_000);
        let (broker, _) = load_str("\"storage.local.direct.io\" = false\n").unwrap();
        assert!(!broker.storage.local_direct_io);
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
