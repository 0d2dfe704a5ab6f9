//! The broker's background tasks: the flusher, compaction, retention, the LogCleaner, the
//! garbage collector, following leadership changes and, on the active coordinator, the controller
//! (offset expiration is the group coordinator's). They run so that nothing stops them
//! silently: one partition's or object's failure, or even a panic, is that item's error,
//! counted and logged, and a task that dies anyway is started again.

pub mod compaction;
pub mod controller;
pub mod flusher;
pub mod garbage_collector;
pub mod leadership;
pub mod log_cleaner;
pub mod retention;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use proto_compat::request::panic_message;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::BackgroundTaskMetrics;

/// How long a task that died waits before it starts again, so a task that keeps dying does
/// not spin.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs one item of a pass (a partition, an object): its error or panic is counted in
/// `metrics` and logged with `what`, and the pass goes on. None if it failed.
pub async fn isolated<T, E: std::fmt::Display>(
    task: &'static str,
    metrics: &BackgroundTaskMetrics,
    what: &str,
    item: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    let error = match AssertUnwindSafe(item).catch_unwind().await {
        Ok(Ok(value)) => return Some(value),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
    };
    metrics.errors.inc();
    tracing::warn!(task, item = what, %error, "background work failed; will retry on the next pass");
    None
}

/// The periodic tasks' loop: `while next_pass(interval, &mut stop).await { ... }` runs a
/// pass every `interval` (the first one interval after the start) until `stop` changes.
pub async fn next_pass(interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => true,
        _ = stop.changed() => false,
    }
}

/// Runs background tasks, each `task(context, stop)`, starting one again (after a short
/// delay) whenever it ends other than by `stop` turning true.
pub struct Supervisor<C> {
    tasks: JoinSet<()>,
    context: C,
    stop: watch::Receiver<bool>,
}

impl<C: Clone + Send + 'static> Supervisor<C> {
    pub fn new(context: C, stop: watch::Receiver<bool>) -> Self {
        Self {
            tasks: JoinSet::new(),
            context,
            stop,
        }
    }

    pub fn spawn<F, Fut>(&mut self, name: &'static str, metrics: BackgroundTaskMetrics, task: F)
    where
        F: Fn(C, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (context, stop) = (self.context.clone(), self.stop.clone());
        self.tasks.spawn(async move {
            loop {
                let outcome = tokio::spawn(task(context.clone(), stop.clone())).await;
                if *stop.borrow() {
                    return;
                }
                let why = match outcome {
                    Ok(()) => "returned".to_string(),
                    Err(e) if e.is_panic() => {
                        format!("panicked: {}", panic_message(e.into_panic().as_ref()))
                    }
                    Err(e) => e.to_string(),
                };
                metrics.restarts.inc();
                tracing::error!(task = name, %why, "background task stopped; starting it again");
                let mut stop = stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_DELAY) => {}
                    _ = stop.wait_for(|&stop| stop) => return,
                }
            }
        });
    }

    /// Waits for every task to end (after `stop` turned true).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn an_item_that_fails_or_panics_is_counted_and_the_pass_goes_on() {
        let metrics = BackgroundTaskMetrics::default();
        let ok = isolated("test", &metrics, "a", async { Ok::<_, String>(1) }).await;
        let failed = isolated("test", &metrics, "b", async { Err::<i32, _>("no") }).await;
        let panicked = isolated("test", &metrics, "c", async {
            if metrics.errors.get() > 0 {
                panic!("boom");
            }
            Ok::<i32, String>(3)
        })
        .await;
        assert_eq!((ok, failed, panicked), (Some(1), None, None));
        assert_eq!(metrics.errors.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_dies_is_started_again_until_stopped() {
        let metrics = BackgroundTaskMetrics::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = |runs: Arc<AtomicUsize>, mut stop: watch::Receiver<bool>| async move {
            let run = runs.fetch_add(1, Ordering::SeqCst);
            if run < 2 {
                panic!("run {run} dies");
            }
            let _ = stop.wait_for(|&stop| stop).await;
        };
        let mut supervisor = Supervisor::new(runs.clone(), stopped);
        supervisor.spawn("test", metrics.clone(), task);
        tokio::time::sleep(RESTART_DELAY * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.restarts.get(), 2);
        let _ = stop.send(true);
        supervisor.join().await;
        assert_eq!(metrics.restarts.get(), 2, "stopping is not a restart");
    }
}
