//! The cluster marker: an object naming the cluster whose data a store location holds, so a
//! broker never works on (and never garbage-collects) another cluster's objects. The first
//! broker of a cluster creates it; every broker checks it at start-up.

use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

/// Outside the key spaces that hold data (`flush/`, `topics/`), which the collector owns.
pub const CLUSTER_MARKER_KEY: &str = "strata-cluster.json";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    cluster_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(
        "the store belongs to cluster {found}, not to this broker's cluster {ours}: give each \
         cluster its own bucket or prefix"
    )]
    OtherCluster { ours: String, found: String },
    #[error("the store's {CLUSTER_MARKER_KEY} is not a Strata cluster marker: {reason}")]
    Unreadable { reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Claims the store for `cluster_id`: creates the marker if there is none (atomically, so of
/// two clusters starting at once on an empty location one wins) and checks it otherwise.
pub async fn claim(store: &dyn ObjectStore, cluster_id: &str) -> Result<(), MarkerError> {
    let marker = serde_json::to_vec(&Marker {
        cluster_id: cluster_id.to_string(),
    })
    .expect("a marker always serializes");
    match store
        .create(CLUSTER_MARKER_KEY, bytes::Bytes::from(marker).into())
        .await
    {
        Ok(()) => {
            tracing::info!(cluster_id, "claimed the store for this cluster");
            Ok(())
        }
        Err(StoreError::AlreadyExists { .. }) => {
            let bytes = store.get(CLUSTER_MARKER_KEY).await?;
            let found: Marker =
                serde_json::from_slice(&bytes).map_err(|e| MarkerError::Unreadable {
                    reason: e.to_string(),
                })?;
            if found.cluster_id == cluster_id {
                Ok(())
            } else {
                Err(MarkerError::OtherCluster {
                    ours: cluster_id.to_string(),
                    found: found.cluster_id,
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::backends::memory::MemoryStore;

    #[tokio::test]
    async fn the_first_claim_marks_the_store_and_only_that_cluster_passes_later() {
        let store = MemoryStore::new();
        claim(&store, "cluster-a").await.unwrap();
        claim(&store, "cluster-a").await.unwrap();
        let err = claim(&store, "cluster-b").await.unwrap_err();
        assert!(matches!(err, MarkerError::OtherCluster { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("cluster-a") && message.contains("cluster-b"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_foreign_object_under_the_marker_key_is_refused() {
        let store = MemoryStore::new();
        store
            .put(CLUSTER_MARKER_KEY, Bytes::from_static(b"hello").into())
            .await
            .unwrap();
        assert!(matches!(
            claim(&store, "cluster-a").await,
            Err(MarkerError::Unreadable { .. })
        ));
    }

    #[tokio::test]
    async fn of_two_clusters_claiming_an_empty_store_at_once_one_wins() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let (a, b) = tokio::join!(claim(store.as_ref(), "a"), claim(store.as_ref(), "b"));
        assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    }
}
