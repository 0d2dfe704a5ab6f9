//! EmbeddedStore: the metadata of a standalone Strata in ONE crash-safe file.
//!
//! Layout: a magic (`STRMETA1`), then one record per committed [`Txn`]:
//! `length u32 | CRC-32C u32 of the payload | payload` (big-endian), where the payload is
//! `put count u32, (key, value)*, delete count u32, key*`, each key and value `length u32 | bytes`.
//!
//! A commit appends one record and fdatasyncs it. Opening replays the records; a torn or
//! CRC-bad tail (a crash mid-append) is cut off, while damage followed by valid records cannot
//! come from a crash and is reported as corruption. When the file grows past
//! max(4 MiB, 4x the live data) it is rewritten as one snapshot record (temp file, fsync,
//! rename, fsync dir). The file is locked, so two processes cannot share a data dir.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use crc_fast::CrcAlgorithm;

use tokio::sync::mpsc;

use crate::metadata_store::{Change, MetaStoreError, MetadataStore, Snapshot, Txn};

/// The file's name inside the data dir.
pub const METADATA_FILE: &str = "metadata.log";

const MAGIC: &[u8; 8] = b"STRMETA1";
/// length + CRC in front of every record's payload.
const RECORD_HEADER: usize = 8;
const REWRITE_MIN_BYTES: u64 = 4 * 1024 * 1024;

pub struct EmbeddedStore {
    log: Arc<Mutex<MetadataLog>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the metadata file at `path`, e.g. `DATA_DIR/metadata.log`
    /// ([`METADATA_FILE`]), creating its directory if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaStoreError> {
        Self::open_with(path.as_ref(), REWRITE_MIN_BYTES)
    }

    fn open_with(path: &Path, rewrite_min_bytes: u64) -> Result<Self, MetaStoreError> {
        let log = MetadataLog::open(path, rewrite_min_bytes)?;
        Ok(EmbeddedStore {
            log: Arc::new(Mutex::new(log)),
        })
    }

    /// Runs file work off the async threads; commits are serialized by the mutex.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut MetadataLog) -> Result<T, MetaStoreError> + Send + 'static,
    ) -> Result<T, MetaStoreError> {
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || work(&mut log.lock().expect("metadata log poisoned")))
            .await
            .map_err(|e| MetaStoreError::Io(io::Error::other(e)))?
    }
}

#[async_trait::async_trait]
impl MetadataStore for EmbeddedStore {
    async fn load(&self) -> Result<Snapshot, MetaStoreError> {
        self.blocking(|log| {
            let mut entries = log.live.clone();
            entries.extend(log.session.clone());
            Ok(Snapshot {
                entries,
                revision: log.revision,
            })
        })
        .await
    }

    async fn commit(&self, txn: Txn) -> Result<u64, MetaStoreError> {
        self.blocking(move |log| log.append(txn)).await
    }

    async fn watch(
        &self,
        revision: u64,
    ) -> Result<mpsc::UnboundedReceiver<Result<Change, MetaStoreError>>, MetaStoreError> {
        self.blocking(move |log| {
            if revision != log.revision {
                return Err(MetaStoreError::WatchLost(format!(
                    "revision {revision} is not the current one ({})",
                    log.revision
                )));
            }
            let (sender, receiver) = mpsc::unbounded_channel();
            log.watchers.push(sender);
            Ok(receiver)
        })
        .await
    }
}

struct MetadataLog {
    path: PathBuf,
    file: File,
    /// Bytes of the file that hold committed records.
    len: u64,
    /// What the records add up to, and its size as a snapshot record would encode it.
    live: BTreeMap<String, Bytes>,
    live_bytes: u64,
    rewrite_min_bytes: u64,
    /// Set when the file's tail is unknown after a failed write that could not be undone:
    /// no more commits until a restart replays the file.
    broken: bool,
    /// Session keys (the broker registry): this process's only, so never written to the file.
    session: BTreeMap<String, Bytes>,
    /// Commits since the file was opened.
    revision: u64,
    watchers: Vec<mpsc::UnboundedSender<Result<Change, MetaStoreError>>>,
}

impl MetadataLog {
    fn open(path: &Path, rewrite_min_bytes: u64) -> Result<Self, MetaStoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        if !path.exists() {
            // Created through a rename, so the file never exists without its magic.
            drop(write_atomically(path, MAGIC)?);
            sync_dir(path)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        lock(&file, path)?;
        // A rewrite that crashed before its rename leaves a temp file behind.
        match fs::remove_file(temp_path(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }

        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let (live, len) = replay(&buf)?;
        if len < buf.len() {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = len,
                dropped_bytes = buf.len() - len,
                "metadata log has a torn tail (crash mid-commit); truncating it"
            );
            file.set_len(len as u64)?;
            file.sync_all()?;
        }
        let live_bytes = live.iter().map(|(k, v)| entry_size(k, v)).sum();
        tracing::info!(
            path = %path.display(),
            keys = live.len(),
            bytes = len,
            "opened metadata log"
        );
        Ok(MetadataLog {
            path: path.to_path_buf(),
            file,
            len: len as u64,
            live,
            live_bytes,
            rewrite_min_bytes,
            broken: false,
            session: BTreeMap::new(),
            revision: 0,
            watchers: Vec::new(),
        })
    }

    fn append(&mut self, mut txn: Txn) -> Result<u64, MetaStoreError> {
        if self.broken {
            return Err(
                io::Error::other("an earlier metadata write failed; restart to recover").into(),
            );
        }
        let current = |key: &str| self.session.get(key).or_else(|| self.live.get(key));
        if !txn.guards_hold(current) {
            return Err(MetaStoreError::GuardFailed);
        }
        txn.expand_prefixes(self.live.keys().chain(self.session.keys()));
        let events = txn.events();
        let session_puts = std::mem::take(&mut txn.session_puts);
        let record = encode_record(&txn);
        let written = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&record))
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Cut a partial record off, or later appends would follow garbage.
            if self
                .file
                .set_len(self.len)
                .and_then(|_| self.file.sync_data())
                .is_err()
            {
                self.broken = true;
            }
            return Err(e.into());
        }
        self.len += record.len() as u64;
        for key in &txn.deletes {
            if let Some(value) = self.live.get(key) {
                self.live_bytes -= entry_size(key, value);
            }
        }
        for (key, value) in &txn.puts {
            self.live_bytes += entry_size(key, value);
            if let Some(old) = self.live.get(key) {
                self.live_bytes -= entry_size(key, old);
            }
        }
        for key in &txn.deletes {
            self.session.remove(key);
        }
        txn.apply_to(&mut self.live);
        for (key, value) in session_puts {
            self.live_bytes -= self
                .live
                .remove(&key)
                .map_or(0, |old| entry_size(&key, &old));
            self.session.insert(key, value);
        }
        self.revision += 1;
        let change = Change {
            revision: self.revision,
            events,
        };
        self.watchers
            .retain(|watcher| watcher.send(Ok(change.clone())).is_ok());

        if self.len > self.rewrite_min_bytes.max(4 * self.live_bytes) {
            // The commit is already durable; a failed rewrite only leaves the file long.
            if let Err(e) = self.rewrite() {
                tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "metadata log rewrite failed"
                );
            }
        }
        Ok(self.revision)
    }

    /// Replaces the file with a single snapshot record of the live data.
    fn rewrite(&mut self) -> io::Result<()> {
        let snapshot = Txn {
            puts: self
                .live
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Txn::default()
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&encode_record(&snapshot));
        let file = write_atomically(&self.path, &bytes)?;
        // The path now names the new file: appends must go there, even if the dir sync fails.
        let old_len = std::mem::replace(&mut self.len, bytes.len() as u64);
        self.file = file;
        if let Err(e) = lock(&self.file, &self.path).and_then(|_| sync_dir(&self.path)) {
            // The rename may not survive a crash, and appends to the new file with it.
            self.broken = true;
            return Err(e);
        }
        tracing::info!(
            path = %self.path.display(),
            old_len,
            new_len = self.len,
            "rewrote metadata log as a snapshot"
        );
        Ok(())
    }
}

/// Replays a whole file: the live data and the length of its valid prefix.
fn replay(buf: &[u8]) -> Result<(BTreeMap<String, Bytes>, usize), MetaStoreError> {
    if !buf.starts_with(MAGIC) {
        return Err(MetaStoreError::Corrupt(
            "not a Strata metadata log (bad magic)".into(),
        ));
    }
    let mut live = BTreeMap::new();
    let mut pos = MAGIC.len();
    while pos < buf.len() {
        match decode_record(&buf[pos..]) {
            Some((txn, used)) => {
                txn.apply_to(&mut live);
                pos += used;
            }
            None => {
                // Only the last append can be torn by a crash.
                if (pos + 1..buf.len()).any(|at| decode_record(&buf[at..]).is_some()) {
                    return Err(MetaStoreError::Corrupt(format!(
                        "bad record at byte {pos} is followed by valid records"
                    )));
                }
                break;
            }
        }
    }
    Ok((live, pos))
}

fn encode_record(txn: &Txn) -> Vec<u8> {
    let mut payload = Vec::new();
    put_u32(&mut payload, txn.puts.len());
    for (key, value) in &txn.puts {
        put_bytes(&mut payload, key.as_bytes());
        put_bytes(&mut payload, value);
    }
    put_u32(&mut payload, txn.deletes.len());
    for key in &txn.deletes {
        put_bytes(&mut payload, key.as_bytes());
    }
    let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
    put_u32(&mut record, payload.len());
    record.extend_from_slice(&crc32c(&payload).to_be_bytes());
    record.extend_from_slice(&payload);
    record
}

/// The txn at the start of `buf` and the record's length, or None if it is incomplete or bad.
fn decode_record(buf: &[u8]) -> Option<(Txn, usize)> {
    let mut header = buf.get(..RECORD_HEADER)?;
    let len = take_u32(&mut header)? as usize;
    let crc = take_u32(&mut header)?;
    let mut payload = buf.get(RECORD_HEADER..RECORD_HEADER.checked_add(len)?)?;
    if crc32c(payload) != crc {
        return None;
    }
    let mut txn = Txn::default();
    for _ in 0..take_u32(&mut payload)? {
        let key = take_string(&mut payload)?;
        let value = Bytes::copy_from_slice(take_bytes(&mut payload)?);
        txn.puts.push((key, value));
    }
    for _ in 0..take_u32(&mut payload)? {
        txn.deletes.push(take_string(&mut payload)?);
    }
    payload.is_empty().then_some((txn, RECORD_HEADER + len))
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("metadata record part exceeds 4 GiB");
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let (n, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(u32::from_be_bytes(*n))
}

fn take_bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(buf)? as usize;
    let bytes = buf.get(..len)?;
    *buf = &buf[len..];
    Some(bytes)
}

fn take_string(buf: &mut &[u8]) -> Option<String> {
    String::from_utf8(take_bytes(buf)?.to_vec()).ok()
}

fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// The encoded size of one live key in a snapshot record.
fn entry_size(key: &str, value: &Bytes) -> u64 {
    (8 + key.len() + value.len()) as u64
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` as the file at `path` through a synced temp file and a rename; returns the
/// new file, open for reading and writing. The caller syncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<File> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        Ok(file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

fn lock(file: &File, path: &Path) -> io::Result<()> {
    file.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is in use by another process", path.display()),
        ),
        fs::TryLockError::Error(e) => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Txn {
        Txn {
            puts: vec![(key.to_string(), Bytes::from(value.to_string()))],
            ..Txn::default()
        }
    }

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, Bytes> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), Bytes::from(v.to_string())))
            .collect()
    }

    async fn commit_three(path: &Path) {
        let store = EmbeddedStore::open(path).unwrap();
        store.commit(put("a", "1")).await.unwrap();
        store.commit(put("b", "2")).await.unwrap();
        store.commit(put("c", "3")).await.unwrap();
    }

    #[tokio::test]
    async fn round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(METADATA_FILE);
        {
            let store = EmbeddedStore::open(&path).unwrap();
            assert!(store.load().await.unwrap().entries.is_empty());
            store.commit(put("a", "1")).await.unwrap();
            let txn = Txn {
                puts: vec![
                    ("b".into(), Bytes::from("2")),
                    ("c".into(), Bytes::from("3")),
                ],
                deletes: vec!["a".into(), "missing".into()],
                ..Txn::default()
            };
            store.commit(txn).await.unwrap();
            store.commit(put("b", "two")).await.unwrap();
            assert_eq!(
                store.load().await.unwrap().entries,
                map(&[("b", "two"), ("c", "3")])
            );
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.load().await.unwrap().entries,
            map(&[("b", "two"), ("c", "3")])
        );
    }

    #[tokio::test]
    async fn torn_tail_is_truncated_and_committed_txns_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        commit_three(&path).await;
        let full = fs::metadata(&path).unwrap().len();
        // A crash in the middle of the third append.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 3)
            .unwrap();

        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.load().await.unwrap().entries,
            map(&[("a", "1"), ("b", "2")])
        );
        // The torn record is gone from the file, so a new append follows valid data.
        store.commit(put("d", "4")).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.load().await.unwrap().entries,
            map(&[("a", "1"), ("b", "2"), ("d", "4")])
        );
    }

    #[tokio::test]
    async fn garbage_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        commit_three(&path).await;
        let full = fs::metadata(&path).unwrap().len();
        for tail in [
            &[0u8; 16][..],
            &[
                0x00, 0x00, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5,
            ],
        ] {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(tail)
                .unwrap();
            let store = EmbeddedStore::open(&path).unwrap();
            assert_eq!(
                store.load().await.unwrap().entries,
                map(&[("a", "1"), ("b", "2"), ("c", "3")])
            );
            drop(store);
            assert_eq!(fs::metadata(&path).unwrap().len(), full);
        }
    }

    #[tokio::test]
    async fn corruption_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        commit_three(&path).await;
        let mut bytes = fs::read(&path).unwrap();
        // The last byte of the first record's payload (its value "1").
        let first_len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        bytes[MAGIC.len() + RECORD_HEADER + first_len - 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(MetaStoreError::Corrupt(_))
        ));
    }

    #[test]
    fn foreign_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        fs::write(&path, b"{\"not\": \"a metadata log\"}").unwrap();
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(MetaStoreError::Corrupt(_))
        ));
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        let _store = EmbeddedStore::open(&path).unwrap();
        match EmbeddedStore::open(&path) {
            Err(MetaStoreError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            other => panic!("expected a lock error, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn rewrite_as_snapshot_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METADATA_FILE);
        let store = EmbeddedStore::open_with(&path, 1024).unwrap();
        for i in 0..200 {
            store
                .commit(put(&format!("key{}", i % 5), &format!("value{i}")))
                .await
                .unwrap();
        }
        store.commit(put("gone", "x")).await.unwrap();
        store
            .commit(Txn {
                deletes: vec!["gone".into()],
                ..Txn::default()
            })
            .await
            .unwrap();
        let expected = map(&[
            ("key0", "value195"),
            ("key1", "value196"),
            ("key2", "value197"),
            ("key3", "value198"),
            ("key4", "value199"),
        ]);
        assert_eq!(store.load().await.unwrap().entries, expected);
        // 202 appends of ~30 bytes would be ~6 KB without rewrites.
        let len = fs::metadata(&path).unwrap().len();
        assert!(len <= 1024, "file is {len} bytes");
        assert!(!temp_path(&path).exists());
        // The rewritten file is locked and appended to like the original.
        assert!(EmbeddedStore::open(&path).is_err());
        drop(store);
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.load().await.unwrap().entries, expected);
    }
}
