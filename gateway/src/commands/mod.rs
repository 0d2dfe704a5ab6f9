//! The `strata` subcommands.

pub mod coordinator;
pub mod gateway;
pub mod standalone;

use std::sync::Arc;
use std::time::Duration;

use ::coordinator::topic_config::BrokerDefaults;
use ::coordinator::{Coordinator, EtcdStore};
use anyhow::Context;

use crate::config::EtcdArgs;

/// Connects to the cluster's etcd with a session of `session_timeout` and loads its metadata.
async fn open_cluster(
    etcd: &EtcdArgs,
    session_timeout: Duration,
    defaults: BrokerDefaults,
) -> anyhow::Result<(Arc<EtcdStore>, Arc<Coordinator>)> {
    let store = EtcdStore::connect(&etcd.endpoints, &etcd.etcd_prefix, session_timeout)
        .await
        .with_context(|| format!("cannot connect to etcd at {}", etcd.endpoints.join(",")))?;
    let store = Arc::new(store);
    let coordinator = Coordinator::open(store.clone(), defaults)
        .await
        .context("cannot load the cluster's metadata from etcd")?;
    Ok((store, coordinator))
}
