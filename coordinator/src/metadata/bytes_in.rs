//! Recent bytes-in per partition, for balancing leadership by load. Every process counts the
//! bytes of the chunks each flush record it watches commits; the controller samples those
//! counters and takes each partition's rate over the last minute. The rates come from the
//! committed metadata alone, so they cost no extra writes and do not depend on which broker
//! leads a partition: a move does not disturb the figures that decided it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Coordinator;

/// Bytes per second by (topic id, partition).
pub type PartitionRates = HashMap<(Uuid, i32), f64>;

/// Bytes committed by (topic id, partition).
type Counters = HashMap<(Uuid, i32), u64>;

/// How far back a rate looks.
const WINDOW: Duration = Duration::from_secs(60);
/// No rates until the samples span this long: a coordinator that just took over has seen
/// too little.
const MIN_SPAN: Duration = Duration::from_secs(10);
/// The time between samples.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The controller's samples of the bytes-in counters.
#[derive(Default)]
pub struct BytesInRates {
    samples: VecDeque<(Instant, Counters)>,
    /// The rates as of the newest sample.
    rates: Option<PartitionRates>,
}

impl BytesInRates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a sample of `coordinator`'s counters if the last one is [`SAMPLE_INTERVAL`] old,
    /// forgets those older than [`WINDOW`] (but one, which the rates start from), and takes
    /// the rates afresh.
    pub fn sample(&mut self, coordinator: &Coordinator, now: Instant) {
        if let Some((last, _)) = self.samples.back() {
            if now.saturating_duration_since(*last) < SAMPLE_INTERVAL {
                return;
            }
        }
        let counters = coordinator.read().bytes_in.clone();
        self.samples.push_back((now, counters));
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.samples.pop_front();
        }
        self.rates = self.compute();
    }

    /// Each partition's bytes per second from the oldest sample to the newest; None while
    /// they span less than [`MIN_SPAN`]. A partition missing took nothing.
    pub fn rates(&self) -> Option<&PartitionRates> {
        self.rates.as_ref()
    }

    fn compute(&self) -> Option<PartitionRates> {
        let (first_at, first) = self.samples.front()?;
        let (last_at, last) = self.samples.back()?;
        let span = last_at.saturating_duration_since(*first_at);
        if span < MIN_SPAN {
            return None;
        }
        let seconds = span.as_secs_f64();
        Some(
            last.iter()
                .map(|(partition, total)| {
                    let before = first.get(partition).copied().unwrap_or(0);
                    let rate = total.saturating_sub(before) as f64 / seconds;
                    (*partition, rate)
                })
                .filter(|(_, rate)| *rate > 0.0)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::super::test_support::{
        broker, caught_up, chunk, commit, one_object, open, TestStore,
    };
    use super::BytesInRates;

    #[tokio::test]
    async fn rates_come_from_the_flushes_committed_over_the_last_minute() {
        let store = TestStore::new();
        let one = open(&store).await;
        one.register_broker(broker(1)).await.unwrap();
        let t = one
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap()
            .topic_id;
        // Flushes committed before the process began watching count nothing.
        one.commit_flush(vec![commit(t, 0, 0, chunk(0, 9))])
            .await
            .unwrap();
        let two = open(&store).await;
        let start = Instant::now();
        let mut rates = BytesInRates::new();
        rates.sample(&two, start);
        assert_eq!(rates.rates(), None, "one sample spans nothing");

        // Every chunk of a flush counts for its own partition: 100 bytes each.
        for step in 1..=14u64 {
            let seconds = 5 * step;
            let base = 10 * step as i64;
            let mut chunks = vec![commit(t, 0, 0, chunk(base, base + 9))];
            if step > 12 {
                let base = base - 130;
                chunks.push(commit(t, 1, 0, chunk(base, base + 9)));
            }
            one.commit_flush(one_object(chunks)).await.unwrap();
            caught_up(&two, &store).await;
            // Samples closer together than the interval are not taken.
            rates.sample(
                &two,
                start + Duration::from_secs(seconds) - Duration::from_secs(1),
            );
            rates.sample(&two, start + Duration::from_secs(seconds));
            if seconds == 5 {
                assert_eq!(rates.rates(), None, "5 s is too short a span");
            }
        }
        // The rates span the last minute only: 12 flushes of partition 0 in 60 s, two of
        // partition 1.
        let rates = rates.rates().expect("rates after a minute");
        let (p0, p1) = (rates[&(t, 0)], rates[&(t, 1)]);
        assert!((p0 - 1200.0 / 60.0).abs() < 1e-9, "partition 0: {p0}");
        assert!((p1 - 200.0 / 60.0).abs() < 1e-9, "partition 1: {p1}");
    }
}
