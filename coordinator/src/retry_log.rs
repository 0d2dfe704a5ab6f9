//! Logging for operations retried in a tight loop while the metadata store is away: the
//! first failure, then at most one line every [`LOG_EVERY`], so an outage does not flood the
//! log with a line per attempt.

use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(crate) struct RetryLog {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl RetryLog {
    /// Counts a failure; Some(failures not logged since the last line) when this one is to
    /// be logged.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_EVERY);
        if !due {
            self.unlogged += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// The operation succeeded: its next failure is logged at once.
    pub(crate) fn succeeded(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_and_one_every_interval_are_logged() {
        let start = Instant::now();
        let mut log = RetryLog::default();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(log.failed(at(0)), Some(0));
        assert_eq!(log.failed(at(100)), None);
        assert_eq!(log.failed(at(4_900)), None);
        assert_eq!(log.failed(at(5_000)), Some(2));
        assert_eq!(log.failed(at(5_100)), None);
        log.succeeded();
        assert_eq!(log.failed(at(5_200)), Some(0));
    }
}
