//! Where a broker keeps its objects: never over its own metadata, and never in a store that
//! belongs to another cluster.

use std::path::Path;

use strata_tests::{error_code, record_batch, Broker};

/// The files under `dir/flush`, recursively.
fn flush_objects(dir: &Path) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .map(|entry| entry.unwrap().path())
                .map(|path| if path.is_dir() { count(&path) } else { 1 })
                .sum()
        })
    }
    count(&dir.join("flush"))
}

#[test]
fn a_storage_root_that_contains_the_data_directory_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    for root in [&data, dir.path()] {
        let storage = format!("file://{}", root.display());
        let stderr = Broker::start_up_error(&["--data-dir", data_arg, "--storage", &storage]);
        assert!(
            stderr.contains("contains the data directory") && stderr.contains(&storage),
            "{storage}: {stderr}"
        );
    }
    assert!(
        !data.join("metadata.log").exists(),
        "the refusal came before anything was written"
    );
}

#[test]
fn a_store_that_belongs_to_another_cluster_is_refused_naming_both() {
    let shared = tempfile::tempdir().unwrap();
    let storage = format!("file://{}", shared.path().display());
    let first = Broker::start_with("", &["--storage", &storage]);
    let mut conn = first.connect();
    for i in 0..10 {
        let value = format!("record-{i}");
        let response = conn.produce("owned", 0, -1, record_batch(&[value.as_bytes()]).freeze());
        assert_eq!(response.error_code, error_code::NONE);
    }
    drop(first);
    let marker = std::fs::read_to_string(shared.path().join("strata-cluster.json")).unwrap();
    let owner = marker
        .split('"')
        .nth(3)
        .expect("the marker names its cluster")
        .to_string();
    let objects = flush_objects(shared.path());
    assert!(objects > 0);

    // A second cluster (its own data directory, so its own cluster id) on the same store.
    let other = tempfile::tempdir().unwrap();
    let data = other.path().join("data");
    let stderr =
        Broker::start_up_error(&["--data-dir", data.to_str().unwrap(), "--storage", &storage]);
    assert!(
        stderr.contains(&format!("belongs to cluster {owner}"))
            && stderr.contains("not to this broker's cluster"),
        "{stderr}"
    );
    assert_eq!(
        flush_objects(shared.path()),
        objects,
        "the refused broker deleted the other cluster's objects"
    );
}
