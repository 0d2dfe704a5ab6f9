//! `strata gateway`: one broker of a cluster. Its metadata lives in etcd, shared with every
//! other gateway and the coordinators; its data in the object store they all share. It
//! holds no state of its own: its partitions are assigned by the active coordinator, and
//! move when it leaves or its etcd session expires.

use anyhow::Context;

use crate::commands::open_cluster;
use crate::config::{self, GatewayArgs};
use crate::server::{self, Server};

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let (config, defaults) = config::load(args.server.config.as_deref())?;
    let storage_url = args.server.storage.clone().context(
        "a gateway needs --storage: the object store every broker of the cluster shares",
    )?;
    if storage_url.starts_with("memory://") {
        anyhow::bail!("--storage memory:// cannot be shared by the brokers of a cluster");
    }
    let (etcd, coordinator) = open_cluster(&args.etcd, config.session_timeout, defaults).await?;
    let broker_id = match args.broker_id {
        Some(id) => id,
        None => coordinator
            .allocate_broker_id()
            .await
            .context("cannot allocate a broker id")?,
    };
    tracing::info!(broker_id, "starting strata gateway");
    server::run(Server {
        args: args.server,
        config,
        storage_url,
        coordinator,
        broker_id,
        controller: false,
        etcd: Some(etcd),
    })
    .await
}
