//! `strata standalone`: the coordinator (embedded store in the data directory) and one
//! broker in one process, which is also the active coordinator.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use coordinator::{Coordinator, EmbeddedStore};

use crate::config::{self, StandaloneArgs};
use crate::server::{self, Server};

/// The one broker of a standalone process.
const BROKER_ID: i32 = 0;

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let (config, defaults) = config::load(args.server.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let storage_url = args.storage_url()?;
    check_storage_is_outside_the_data_dir(&storage_url, &args.data_dir)?;
    let metadata_path = args.data_dir.join("metadata.log");
    let metadata = EmbeddedStore::open(&metadata_path)
        .with_context(|| format!("cannot open metadata store {}", metadata_path.display()))?;
    let coordinator = Coordinator::open(Arc::new(metadata), defaults)
        .await
        .context("cannot load the coordinator state")?;
    tracing::info!(data_dir = %args.data_dir.display(), "starting strata standalone");
    server::run(Server {
        args: args.server,
        config,
        storage_url,
        coordinator,
        broker_id: BROKER_ID,
        controller: true,
        etcd: None,
    })
    .await
}

/// The local store may not contain the data directory: its root is the garbage collector's
/// and the coordinator's metadata file must not be one of its objects.
fn check_storage_is_outside_the_data_dir(storage_url: &str, data_dir: &Path) -> anyhow::Result<()> {
    let Some(root) = storage_url.strip_prefix("file://") else {
        return Ok(());
    };
    let data_dir = std::fs::canonicalize(data_dir)
        .with_context(|| format!("cannot resolve data directory {}", data_dir.display()))?;
    // A root that does not exist yet cannot contain the (existing) data directory.
    let Ok(root) = std::fs::canonicalize(root) else {
        return Ok(());
    };
    if data_dir.starts_with(&root) {
        anyhow::bail!(
            "--storage {storage_url} contains the data directory {}: the objects must live apart \
             from the coordinator's metadata (the default is file://{}/objects)",
            data_dir.display(),
            data_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_store_may_not_contain_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("objects")).unwrap();
        let url = |path: &Path| format!("file://{}", path.display());
        for root in [data.clone(), dir.path().to_path_buf(), data.join(".")] {
            let err = check_storage_is_outside_the_data_dir(&url(&root), &data).unwrap_err();
            assert!(
                err.to_string().contains("contains the data directory"),
                "{err}"
            );
        }
        for fine in [data.join("objects"), dir.path().join("elsewhere")] {
            check_storage_is_outside_the_data_dir(&url(&fine), &data).unwrap();
        }
        check_storage_is_outside_the_data_dir("s3://bucket/prefix", &data).unwrap();
    }
}
