//! What a run measures: message and byte counters, a latency histogram, the once-a-second
//! progress line, and the final report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Nanoseconds since the first call in this process: the send time written into each
/// message, read back on acknowledgement or receipt by the same process.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Messages and payload bytes counted so far, shared by the worker threads.
#[derive(Default)]
pub struct Meter {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

impl Meter {
    pub fn add(&self, bytes: usize) {
        self.add_many(1, bytes as u64);
    }

    pub fn add_many(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `messages` that failed; returns how many had failed before.
    pub fn error(&self, messages: u64) -> u64 {
        self.errors.fetch_add(messages, Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Latencies in microseconds. Workers record under a mutex: one lock per message is cheap
/// next to librdkafka's own per-message work.
pub struct Latency(Mutex<Histogram<u64>>);

impl Latency {
    pub fn new() -> Self {
        // 1 µs to 1 hour at 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("the histogram bounds are valid");
        Self(Mutex::new(histogram))
    }

    /// Records the time since `sent` (a `now_nanos` value).
    pub fn record_since(&self, sent: u64) {
        self.record_n_since(sent, 1);
    }

    /// Records the time since `sent` once for each of `messages` sent together.
    pub fn record_n_since(&self, sent: u64, messages: u64) {
        let micros = now_nanos().saturating_sub(sent) / 1_000;
        self.0
            .lock()
            .unwrap()
            .saturating_record_n(micros.max(1), messages);
    }

    fn summary(&self) -> Option<LatencySummary> {
        let histogram = self.0.lock().unwrap();
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Some(LatencySummary {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        })
    }
}

#[derive(Serialize)]
struct LatencySummary {
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

/// The result of one run; `mb_per_sec` counts message payload in 10^6 bytes.
#[derive(Serialize)]
pub struct Report {
    command: &'static str,
    messages: u64,
    bytes: u64,
    seconds: f64,
    messages_per_sec: f64,
    mb_per_sec: f64,
    errors: u64,
    /// By kind: "ack" is send to acknowledgement, "e2e" send to receipt by a consumer.
    latency: BTreeMap<&'static str, LatencySummary>,
    /// This process's CPU time (librdkafka's threads included), to tell a run the client
    /// held back from one the broker did.
    cpu_seconds: CpuSeconds,
}

#[derive(Serialize)]
struct CpuSeconds {
    user: f64,
    system: f64,
}

impl CpuSeconds {
    fn of_this_process() -> Self {
        // SAFETY: getrusage only writes the struct it is given.
        let usage = unsafe {
            let mut usage = std::mem::zeroed::<libc::rusage>();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Self {
            user: seconds(usage.ru_utime),
            system: seconds(usage.ru_stime),
        }
    }
}

impl Report {
    pub fn new(
        command: &'static str,
        meter: &Meter,
        elapsed: Duration,
        latencies: &[(&'static str, &Latency)],
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            command,
            messages: meter.messages(),
            bytes: meter.bytes(),
            seconds,
            messages_per_sec: meter.messages() as f64 / seconds,
            mb_per_sec: meter.bytes() as f64 / seconds / 1e6,
            errors: meter.errors(),
            latency: latencies
                .iter()
                .filter_map(|&(kind, latency)| Some((kind, latency.summary()?)))
                .collect(),
            cpu_seconds: CpuSeconds::of_this_process(),
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(self).expect("a report serializes")
            );
            return;
        }
        let mut rows = vec![
            ("messages".to_string(), self.messages.to_string()),
            ("MB".to_string(), format!("{:.1}", self.bytes as f64 / 1e6)),
            ("seconds".to_string(), format!("{:.2}", self.seconds)),
            (
                "messages/s".to_string(),
                format!("{:.0}", self.messages_per_sec),
            ),
            ("MB/s".to_string(), format!("{:.1}", self.mb_per_sec)),
            ("errors".to_string(), self.errors.to_string()),
            (
                "CPU s".to_string(),
                format!(
                    "{:.2} + {:.2}",
                    self.cpu_seconds.user, self.cpu_seconds.system
                ),
            ),
        ];
        for (kind, l) in &self.latency {
            for (quantile, ms) in [
                ("p50", l.p50_ms),
                ("p99", l.p99_ms),
                ("p99.9", l.p999_ms),
                ("max", l.max_ms),
            ] {
                rows.push((format!("{kind} {quantile} ms"), format!("{ms:.2}")));
            }
        }
        println!("strata-bench {}", self.command);
        for (name, value) in rows {
            println!("  {name:<14} {value:>12}");
        }
    }
}

/// Runs `work` while printing the rate of `meter` to stderr once a second.
pub fn with_progress<T>(meter: &Meter, work: impl FnOnce() -> T) -> T {
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let progress = scope.spawn(|| {
            let start = Instant::now();
            let (mut messages, mut bytes) = (0, 0);
            let mut next = start + Duration::from_secs(1);
            loop {
                while Instant::now() < next {
                    thread::park_timeout(next - Instant::now());
                    if done.load(Ordering::Relaxed) {
                        return;
                    }
                }
                let (m, b) = (meter.messages(), meter.bytes());
                eprintln!(
                    "[{:>4}s] {:>9} msg/s {:>9.1} MB/s   total {m} messages",
                    (next - start).as_secs(),
                    m - messages,
                    (b - bytes) as f64 / 1e6
                );
                (messages, bytes) = (m, b);
                next += Duration::from_secs(1);
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        progress.thread().unpark();
        result
    })
}
