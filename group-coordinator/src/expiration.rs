//! Every `offsets.retention.check.interval.ms`, expires the committed offsets of groups that
//! stayed empty past `offsets.retention.minutes` and forgets empty groups left without any.

use std::future::Future;
use std::pin::Pin;

use coordinator::CoordinatorError;
use tokio::sync::watch;

use crate::GroupCoordinator;

/// One expiration pass: how many offsets expired.
type Pass<'a> = Pin<Box<dyn Future<Output = Result<usize, CoordinatorError>> + Send + 'a>>;

/// Runs a pass every check interval until `shutdown` changes. Each pass goes through
/// `isolate`, which contains its error or panic (the caller counts and logs it as a failed
/// background pass) so that the next pass still runs.
pub async fn run<'a, I, F>(
    groups: &'a GroupCoordinator,
    mut shutdown: watch::Receiver<bool>,
    isolate: I,
) where
    I: Fn(Pass<'a>) -> F,
    F: Future,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(groups.config().offsets_retention_check_interval) => {}
            _ = shutdown.changed() => return,
        }
        isolate(Box::pin(groups.expire_offsets())).await;
    }
}
