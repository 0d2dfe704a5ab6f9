//! Harness for the cross-process tests: starts a real `strata standalone` process on free
//! loopback ports and talks raw Kafka protocol to it over blocking sockets.
//!
//! Everything is synchronous std networking with timeouts, so a misbehaving broker fails a
//! test with a message instead of hanging it.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_compat::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use proto_compat::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use proto_compat::kafka_protocol::messages::fetch_response::PartitionData;
use proto_compat::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use proto_compat::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use proto_compat::kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader, TopicName,
};
use proto_compat::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};
use proto_compat::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tempfile::TempDir;

/// How long any single wait (readiness, a response, a close) may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Request versions the tests speak: every one is inside what the broker advertises (all
/// versions kafka-protocol 0.18 knows).
pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12; // the last version that names topics instead of ids
pub const CREATE_TOPICS_VERSION: i16 = 5;

/// Kafka error codes the tests check.
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_RECORD: i16 = 87;
}

/// The `strata` binary: `$STRATA_BIN`, else `strata` in the target dir of this test executable
/// (`target/debug/deps/<test>` -> `target/debug/strata`).
pub fn strata_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("STRATA_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps")
        .join("strata");
    assert!(
        bin.exists(),
        "{} does not exist: build it with `cargo build -p gateway` or set STRATA_BIN",
        bin.display()
    );
    bin
}

/// Two distinct free loopback ports (both listeners are held until both are chosen).
fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

/// `strata standalone` on the given ports with `config_toml` (if not empty) written to
/// `dir/strata.toml`; the caller adds the data directory and anything else.
fn standalone(
    dir: &Path,
    kafka_addr: SocketAddr,
    http_addr: SocketAddr,
    config_toml: &str,
) -> Command {
    let mut cmd = Command::new(strata_bin());
    cmd.arg("standalone")
        .arg("--listen")
        .arg(kafka_addr.to_string())
        .arg("--http")
        .arg(http_addr.to_string())
        .stdin(Stdio::null());
    if !config_toml.is_empty() {
        let config = dir.join("strata.toml");
        std::fs::write(&config, config_toml).expect("write config file");
        cmd.arg("--config").arg(config);
    }
    cmd
}

/// A running `strata standalone`, killed (SIGKILL) and reaped on drop. Its output goes to
/// `broker.log` in the data dir's parent and is printed when a test panics.
pub struct Broker {
    child: Child,
    dir: TempDir,
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

impl Broker {
    /// Starts a broker with the built-in defaults.
    pub fn start() -> Broker {
        Self::start_with_config("")
    }

    /// Starts a broker with `config_toml` as its `--config` file (empty: no config file).
    pub fn start_with_config(config_toml: &str) -> Broker {
        Self::start_with(config_toml, &[])
    }

    /// Starts a broker with `config_toml` (as for [`Broker::start_with_config`]) and more
    /// flags, e.g. `--storage`.
    pub fn start_with(config_toml: &str, args: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let (kafka_addr, http_addr) = free_addrs();
        let log = File::create(dir.path().join("broker.log")).expect("create broker.log");
        let mut cmd = standalone(dir.path(), kafka_addr, http_addr, config_toml);
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args);
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", strata_bin().display()));
        let mut broker = Broker {
            child,
            dir,
            kafka_addr,
            http_addr,
        };
        broker.wait_ready();
        broker
    }

    /// Runs `strata standalone` with `args` (which name its data directory) and expects it to
    /// stop at start-up with a failure; returns what it printed on stderr.
    pub fn start_up_error(args: &[&str]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let (kafka_addr, http_addr) = free_addrs();
        let mut child = standalone(dir.path(), kafka_addr, http_addr, "")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", strata_bin().display()));
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("strata standalone {args:?} still runs after {TIMEOUT:?}; it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        assert!(
            !status.success(),
            "strata standalone {args:?} started: {stderr}"
        );
        stderr
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            self.assert_alive();
            if http_get(self.http_addr, "/readyz").is_some_and(|r| {
                r.starts_with("HTTP/1.") && r.split_whitespace().nth(1) == Some("200")
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready (GET /readyz != 200) after {TIMEOUT:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics (with the broker's log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("broker exited with {status}\n{}", self.log());
        }
    }

    /// The broker's output so far.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        format!("--- broker log ---\n{text}--- end of broker log ---")
    }

    /// A new Kafka connection to the broker.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.kafka_addr)
    }

    /// The process's resident memory (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the broker's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    /// The current value of one series on `/metrics` (its exact name with labels).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let response = http_get(self.http_addr, "/metrics")?;
        response.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// `GET path` over HTTP/1.0; the whole response, or None if the server is not answering.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// One Kafka connection with blocking I/O and read timeouts.
pub struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to the broker at {addr}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// Writes raw bytes; errors are ignored because the broker may already have closed.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Encodes a request header for `api_key`/`api_version` (as a client of that version
    /// would) and returns it with the correlation id used.
    pub fn header(
        &mut self,
        api_key: i16,
        api_version: i16,
        header_version: i16,
    ) -> (BytesMut, i32) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strata-tests")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, header_version)
            .expect("encode request header");
        (buf, correlation_id)
    }

    /// Sends one size-prefixed frame made of `header` followed by `body`.
    pub fn send_frame(&mut self, header: &[u8], body: &[u8]) {
        let size = i32::try_from(header.len() + body.len()).expect("frame fits in i32");
        let mut frame = Vec::with_capacity(4 + header.len() + body.len());
        frame.extend_from_slice(&size.to_be_bytes());
        frame.extend_from_slice(header);
        frame.extend_from_slice(body);
        self.send_raw(&frame);
    }

    /// Reads one size-prefixed response frame (without the size).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size).map_err(|_| {
            std::io::Error::new(
                ErrorKind::InvalidData,
                format!("response frame size {size}"),
            )
        })?;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(body.into())
    }

    /// A response frame if one arrives within `wait`, else None (the connection stays usable).
    pub fn try_read_frame(&mut self, wait: Duration) -> Option<Bytes> {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut size = [0u8; 1];
        let peeked = self.stream.peek(&mut size);
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        match peeked {
            Ok(n) if n > 0 => Some(self.read_frame().expect("a whole response frame")),
            Ok(_) => panic!("the broker closed the connection"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Sends `request` as version `version` and decodes the response body, checking the
    /// correlation id.
    pub fn request<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let (header, correlation_id) = self.header(R::KEY, version, R::header_version(version));
        let mut body = BytesMut::new();
        request
            .encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode API {} v{version}: {e}", R::KEY));
        self.send_frame(&header, &body);
        let mut frame = self
            .read_frame()
            .unwrap_or_else(|e| panic!("no response to API {} v{version}: {e}", R::KEY));
        decode_response::<R::Response>(&mut frame, version, correlation_id)
    }

    /// Asserts that the broker closes this connection (EOF or reset) without answering.
    pub fn expect_closed(&mut self, what: &str) {
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!(
                "{what}: expected the broker to close the connection, it sent {n} bytes: {:02x?}",
                &buf[..n]
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: the broker neither answered nor closed the connection within {TIMEOUT:?}")
            }
            Err(e) => panic!("{what}: unexpected read error {e}"),
        }
    }

    // Typed helpers for the data path.

    /// Creates `name` with `partitions` partitions and topic `configs`; returns the error code.
    pub fn create_topic(&mut self, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(10_000);
        let response = self.request(CREATE_TOPICS_VERSION, &request);
        assert_eq!(response.topics.len(), 1, "CreateTopics answers one topic");
        response.topics[0].error_code
    }

    /// Produces `records` (one or more encoded batches) to one partition.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        records: Bytes,
    ) -> PartitionProduceResponse {
        let request = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let response = self.request(PRODUCE_VERSION, &request);
        let mut partitions: Vec<_> = response
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .collect();
        assert_eq!(partitions.len(), 1, "Produce answers one partition");
        partitions.remove(0)
    }

    /// Fetches one partition from `offset` without waiting.
    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> PartitionData {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(10 * 1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024)])]);
        let response = self.request(FETCH_VERSION, &request);
        assert_eq!(
            response.error_code,
            error_code::NONE,
            "Fetch top-level error"
        );
        let mut partitions: Vec<_> = response
            .responses
            .into_iter()
            .flat_map(|t| t.partitions)
            .collect();
        assert_eq!(partitions.len(), 1, "Fetch answers one partition");
        partitions.remove(0)
    }
}

/// Decodes a response frame: header (version from the response type) then body.
pub fn decode_response<T: Decodable + HeaderVersion>(
    frame: &mut Bytes,
    version: i16,
    correlation_id: i32,
) -> T {
    use proto_compat::kafka_protocol::messages::ResponseHeader;
    let header = ResponseHeader::decode(frame, T::header_version(version)).unwrap_or_else(|e| {
        panic!(
            "decode response header v{}: {e}",
            T::header_version(version)
        )
    });
    assert_eq!(
        header.correlation_id, correlation_id,
        "response correlation id"
    );
    T::decode(frame, version).unwrap_or_else(|e| panic!("decode response body v{version}: {e}"))
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One uncompressed v2 record batch holding `values` (keys empty, CreateTime now).
pub fn record_batch(values: &[&[u8]]) -> BytesMut {
    compressed_batch(values, Compression::None)
}

/// One v2 record batch holding `values` (keys empty, CreateTime now), compressed.
pub fn compressed_batch(values: &[&[u8]], compression: Compression) -> BytesMut {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes; a
            // non-idempotent batch's base sequence is -1.
            sequence: i as i32 - 1,
            timestamp: now,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf
}

/// The values of every record in `records` (a Fetch response's record batches).
pub fn record_values(records: Option<&Bytes>) -> Vec<Bytes> {
    use proto_compat::kafka_protocol::records::RecordBatchDecoder;
    let Some(records) = records else {
        return Vec::new();
    };
    let mut buf = records.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode fetched record batches")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| r.value.unwrap_or_default())
        .collect()
}
