//! Kafka's `Rate` over a `SampledStat`: a value recorded into `quota.window.num` samples of
//! `quota.window.size.seconds` each, measured as their sum over the time they span.

use std::time::{Duration, Instant};

/// The windows quotas are measured over (Kafka's `quota.window.num` samples of
/// `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindow {
    pub samples: usize,
    pub size: Duration,
}

impl Default for QuotaWindow {
    fn default() -> Self {
        QuotaWindow {
            samples: 11,
            size: Duration::from_secs(1),
        }
    }
}

impl QuotaWindow {
    /// The span the oldest sample may start before an expired one is reset.
    fn span(&self) -> Duration {
        self.size * self.samples as u32
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    value: f64,
}

/// A rate per second measured over the samples of a [`QuotaWindow`].
#[derive(Debug)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new(now: Instant) -> Self {
        Rate {
            samples: vec![Sample {
                start: now,
                value: 0.0,
            }],
            current: 0,
        }
    }

    /// Adds `value` to the current sample, first moving to the next one if the current
    /// sample has lasted its window (Kafka's `SampledStat.record`).
    pub fn record(&mut self, window: QuotaWindow, value: f64, now: Instant) {
        if now.saturating_duration_since(self.samples[self.current].start) >= window.size {
            self.current = (self.current + 1) % window.samples;
            let fresh = Sample {
                start: now,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// The value per second over the samples' span.
    pub fn measure(&mut self, window: QuotaWindow, now: Instant) -> f64 {
        let elapsed = self.window_size(window, now);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / elapsed.as_secs_f64()
    }

    /// Kafka's `Rate.windowSize`: the time since the oldest live sample began, but at least
    /// `samples - 1` whole windows, so a new client is not judged on its first moments.
    pub fn window_size(&mut self, window: QuotaWindow, now: Instant) -> Duration {
        for sample in &mut self.samples {
            if now.saturating_duration_since(sample.start) >= window.span() {
                *sample = Sample {
                    start: now,
                    value: 0.0,
                };
            }
        }
        let oldest = self.samples.iter().map(|s| s.start).min().unwrap_or(now);
        let mut elapsed = now.saturating_duration_since(oldest);
        let full_windows = (elapsed.as_nanos() / window.size.as_nanos()) as u32;
        let min_full_windows = window.samples as u32 - 1;
        if full_windows < min_full_windows {
            elapsed += window.size * (min_full_windows - full_windows);
        }
        elapsed.max(Duration::from_millis(1))
    }
}

/// Kafka's `QuotaUtils.throttleTime`: how long the client must send nothing for its rate,
/// `value` over `window_size`, to come back down to `bound`.
pub fn throttle_time(value: f64, bound: f64, window_size: Duration) -> Duration {
    if value <= bound {
        return Duration::ZERO;
    }
    let millis = (value - bound) / bound * window_size.as_millis() as f64;
    Duration::from_millis(millis.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: QuotaWindow = QuotaWindow {
        samples: 11,
        size: Duration::from_secs(1),
    };

    #[test]
    fn a_new_rate_is_measured_over_at_least_ten_windows() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        rate.record(WINDOW, 5000.0, start);
        // 0.5 s in: the span is padded to 10 whole windows (10.5 s).
        let now = start + Duration::from_millis(500);
        assert_eq!(rate.window_size(WINDOW, now), Duration::from_millis(10_500));
        assert!((rate.measure(WINDOW, now) - 5000.0 / 10.5).abs() < 1e-9);
    }

    #[test]
    fn a_steady_rate_is_measured_as_it_is() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        // 1,000 per 100 ms for 30 s: 10,000 per second.
        for tick in 0..300 {
            rate.record(WINDOW, 1000.0, start + Duration::from_millis(100 * tick));
        }
        let measured = rate.measure(WINDOW, start + Duration::from_millis(29_950));
        assert!((measured - 10_000.0).abs() < 200.0, "{measured}");
    }

    #[test]
    fn old_samples_expire() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        rate.record(WINDOW, 1_000_000.0, start);
        let later = start + Duration::from_secs(12);
        rate.record(WINDOW, 10.0, later);
        assert!((rate.measure(WINDOW, later) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_bound() {
        let window = Duration::from_secs(10);
        assert_eq!(throttle_time(100.0, 100.0, window), Duration::ZERO);
        // 150/s over 10 s is 1,500: at 100/s that takes 15 s, 5 s more.
        assert_eq!(throttle_time(150.0, 100.0, window), Duration::from_secs(5));
        assert_eq!(
            throttle_time(100.1, 100.0, window),
            Duration::from_millis(10)
        );
    }
}
