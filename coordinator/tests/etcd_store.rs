//! EtcdStore against a real etcd: a single member started on free loopback ports in a temp
//! dir for each test and killed at its end. Skipped, saying so, when no `etcd` binary is
//! on the PATH.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use coordinator::metadata_store::Guard;
use coordinator::{EtcdStore, MetaStoreError, MetadataStore, Txn};
use prometheus_client::registry::Registry;

/// A one-member etcd, killed when dropped.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// None when the `etcd` binary is not installed.
    fn start() -> Option<Etcd> {
        let dir = tempfile::tempdir().unwrap();
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let spawned = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("test={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => Some(Etcd {
                child,
                endpoint: client,
                _dir: dir,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("cannot start etcd: {e}"),
        }
    }

    /// A store connected to it, once etcd answers.
    async fn connect(&self) -> EtcdStore {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let endpoints = [self.endpoint.clone()];
            match EtcdStore::connect(&endpoints, "test/", Duration::from_secs(5)).await {
                Ok(store) => return store,
                Err(e) if Instant::now() > deadline => panic!("etcd did not answer: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn put(key: &str, value: &'static [u8]) -> Txn {
    Txn {
        puts: vec![(key.to_string(), Bytes::from_static(value))],
        ..Txn::default()
    }
}

#[tokio::test]
async fn transactions_are_counted_with_their_request_bytes() {
    let Some(etcd) = Etcd::start() else {
        eprintln!("SKIPPED: no `etcd` binary on the PATH (install etcd to run this test)");
        return;
    };
    let store = etcd.connect().await;
    let metrics = store.metrics().clone();

    // Keys and values: 1 + 3 bytes.
    store.commit(put("a", b"xyz")).await.unwrap();
    // Refused by etcd (the guard does not hold), still a transaction: 1 + 1 + 1 bytes.
    let guarded = Txn {
        guards: vec![Guard::Absent("a".into())],
        ..put("a", b"q")
    };
    assert!(matches!(
        store.commit(guarded).await,
        Err(MetaStoreError::GuardFailed)
    ));
    // Refused before it is sent: not counted.
    let too_many = Txn {
        puts: (0..200)
            .map(|i| (format!("k{i}"), Bytes::from_static(b"v")))
            .collect(),
        ..Txn::default()
    };
    assert!(matches!(
        store.commit(too_many).await,
        Err(MetaStoreError::TooLarge(_))
    ));

    assert_eq!(metrics.transactions.get(), 2);
    assert_eq!(metrics.transaction_bytes.get(), 7);
    let mut registry = Registry::default();
    registry.register("duration", "", metrics.transaction_duration.clone());
    registry.register("size", "", metrics.transaction_size.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "duration_count 2",
        "size_count 2",
        "size_sum 7.0",
        "size_bucket{le=\"64.0\"} 2",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}
