//! A directory on a local file system as an object store: key "a/b/c" is the file
//! `{root}/a/b/c`.
//!
//! A put writes a temp file next to its target (".tmp-{uuid}"), fsyncs it, renames it into
//! place and fsyncs the directory, so a reader or a crash never exposes a partial object
//! and the object survives power loss once put returns. A create hard-links the temp file
//! into place instead, which fails if the name is taken. Temp files are never listed; those
//! left by a crash are removed when the store is opened, once they are old enough that no
//! live put can own them (several processes of a cluster may share one directory).

use std::fs::{self, File};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::formats::flush_object::FLUSH_PREFIX;
use crate::payload::Payload;
use crate::store::{clip, ObjectMeta, ObjectStore, StoreError};

const TEMP_PREFIX: &str = ".tmp-";

/// A temp file untouched this long belongs to a put that died: a live put writes, syncs and
/// renames its temp file in far less time.
const TORN_TEMP_FILE_AGE: Duration = Duration::from_secs(600);

/// Objects other than flush objects (compacted segments above all) have their data written
/// out piece by piece as they are written. Written whole and synced once, a 64 MiB segment's
/// writeback would sit in the disk's queue ahead of the flush objects producers wait on,
/// holding their syncs (and acks=all) up for hundreds of milliseconds. Flush objects are
/// written whole: their sync is what producers wait for, and pieces would only slow it.
const WRITE_OUT_EVERY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

impl LocalStore {
    /// Opens (creating if missing) the store rooted at `root` and removes the temp files of
    /// puts torn by a crash. Blocks on the file system: call it at startup.
    ///
    /// Temp files modified within the last ten minutes are kept: another process sharing the
    /// directory may be writing them.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = root.as_ref().to_path_buf();
        let unavailable = |e: io::Error| StoreError::Unavailable {
            op: "open",
            key: root.display().to_string(),
            message: e.to_string(),
        };
        fs::create_dir_all(&root).map_err(unavailable)?;
        let removed = remove_torn_temp_files(&root, SystemTime::now()).map_err(unavailable)?;
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed temp files of interrupted puts");
        }
        Ok(Self {
            root: Arc::new(root),
        })
    }

    /// The file of `key`. Keys come from Strata itself, so a key that could escape the
    /// root or collide with temp files is a bug, reported rather than served.
    fn object_path(&self, op: &'static str, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() || !key.split('/').all(is_plain_component) {
            return Err(StoreError::Unavailable {
                op,
                key: key.to_string(),
                message: "key must be '/'-separated names, none empty, '.', '..' or '.tmp-*'"
                    .to_string(),
            });
        }
        Ok(self.root.join(key))
    }

    /// Runs blocking file-system work off the async threads.
    async fn blocking<T: Send + 'static>(
        op: &'static str,
        key: &str,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let result = tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        result.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound {
                key: key.to_string(),
            },
            io::ErrorKind::AlreadyExists => StoreError::AlreadyExists {
                key: key.to_string(),
            },
            _ => StoreError::Unavailable {
                op,
                key: key.to_string(),
                message: e.to_string(),
            },
        })
    }
}

fn is_plain_component(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && !component.starts_with(TEMP_PREFIX)
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let path = self.object_path("put", key)?;
        let root = Arc::clone(&self.root);
        let in_pieces = !key.starts_with(FLUSH_PREFIX);
        // `other` so that a missing directory is not reported as a missing object.
        Self::blocking("put", key, move || {
            write_durably(&root, &path, &data, Placement::Replace, in_pieces)
                .map_err(io::Error::other)
        })
        .await
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let path = self.object_path("create", key)?;
        let root = Arc::clone(&self.root);
        Self::blocking("create", key, move || {
            write_durably(&root, &path, &data, Placement::CreateNew, true).map_err(|e| {
                // Only a taken name reads as AlreadyExists; nothing else as NotFound.
                match e.kind() {
                    io::ErrorKind::AlreadyExists => e,
                    _ => io::Error::other(e),
                }
            })
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.object_path("get", key)?;
        Self::blocking("get", key, move || fs::read(path).map(Bytes::from)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.object_path("get_range", key)?;
        Self::blocking("get_range", key, move || {
            let mut file = File::open(path)?;
            let range = clip(range, file.metadata()?.len());
            let len = range.end - range.start;
            let mut buf = Vec::with_capacity(len as usize);
            file.seek(SeekFrom::Start(range.start))?;
            // Reading into the spare capacity spares zeroing the buffer first, which cost
            // as much CPU as the read itself on catch-up reads.
            file.take(len).read_to_end(&mut buf)?;
            if buf.len() as u64 != len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    /// Not fsynced: a delete lost in a crash is redone by the next garbage collection.
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.object_path("delete", key)?;
        Self::blocking("delete", key, move || match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Walk only the deepest directory the prefix names; the rest of it filters keys.
        let dir = prefix.rfind('/').map_or("", |slash| &prefix[..slash]);
        if !dir.is_empty() && !dir.split('/').all(is_plain_component) {
            return Err(StoreError::Unavailable {
                op: "list",
                key: prefix.to_string(),
                message: "prefix must be a relative '/'-separated path".to_string(),
            });
        }
        let start = self.root.join(dir);
        let root = Arc::clone(&self.root);
        let prefix_owned = prefix.to_string();
        Self::blocking("list", prefix, move || {
            let mut objects = Vec::new();
            walk_files(&start, &mut |path| {
                // Temp files have no key.
                let Some(key) = key_of(&root, path).filter(|key| key.starts_with(&prefix_owned))
                else {
                    return Ok(());
                };
                match fs::metadata(path) {
                    Ok(meta) => objects.push(ObjectMeta {
                        key,
                        size: meta.len(),
                        last_modified: meta.modified()?,
                    }),
                    // Deleted while we walked.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            })
            // NotFound here is not about an object, so it must not read as one.
            .map_err(io::Error::other)?;
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
        })
        .await
    }
}

/// How a written object takes its name.
#[derive(Clone, Copy)]
enum Placement {
    /// Replaces whatever has the name (rename).
    Replace,
    /// Fails with AlreadyExists if the name is taken (hard link, then the temp name goes).
    CreateNew,
}

/// Writes `data` to `path` atomically and durably (see the module comment).
fn write_durably(
    root: &Path,
    path: &Path,
    data: &Payload,
    placement: Placement,
    in_pieces: bool,
) -> io::Result<()> {
    let dir = path.parent().expect("an object path has a parent");
    create_dirs_durably(root, dir)?;
    let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = File::create(&temp)?;
        write_all_parts(&mut file, data.parts(), in_pieces)?;
        file.sync_all()?;
        match placement {
            Placement::Replace => fs::rename(&temp, path),
            Placement::CreateNew => fs::hard_link(&temp, path),
        }
    })();
    if written.is_err() || matches!(placement, Placement::CreateNew) {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

/// Writes the parts back to back with as few system calls as the kernel allows; `in_pieces`
/// writes the data out every [`WRITE_OUT_EVERY_BYTES`], waiting for each piece and then
/// pausing as long before the next, so at most one piece is ever queued at the disk ahead of
/// another write's sync and other writes get at least half of the disk's time (the caller
/// syncs the file).
fn write_all_parts(file: &mut File, parts: &[Bytes], in_pieces: bool) -> io::Result<()> {
    if !in_pieces {
        let whole: Vec<&[u8]> = parts.iter().map(|part| &part[..]).collect();
        return write_vectored_all(file, &whole);
    }
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut pieces_len = 0;
    let mut offset = 0;
    for part in parts {
        let mut part = &part[..];
        while !part.is_empty() {
            let (piece, rest) = part.split_at(part.len().min(WRITE_OUT_EVERY_BYTES - pieces_len));
            pieces.push(piece);
            pieces_len += piece.len();
            part = rest;
            if pieces_len == WRITE_OUT_EVERY_BYTES {
                write_vectored_all(file, &pieces)?;
                let started = Instant::now();
                write_out(file, offset, pieces_len)?;
                // Yield the disk as long again: flush objects, which producers wait on, get
                // at least half of its time while a segment is written.
                thread::sleep(started.elapsed());
                offset += pieces_len as u64;
                pieces.clear();
                pieces_len = 0;
            }
        }
    }
    write_vectored_all(file, &pieces)
}

/// Writes the file's data in `offset..offset + len` to the disk and waits for it, without
/// the file's metadata: no journal commit, so it costs the disk only the bytes.
#[cfg(target_os = "linux")]
fn write_out(file: &File, offset: u64, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call only reads
    // its arguments.
    let result =
        unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the final sync writes it all.
#[cfg(not(target_os = "linux"))]
fn write_out(_file: &File, _offset: u64, _len: usize) -> io::Result<()> {
    Ok(())
}

fn write_vectored_all(file: &mut File, pieces: &[&[u8]]) -> io::Result<()> {
    // Linux takes at most IOV_MAX (1024) buffers per writev.
    for group in pieces.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|piece| IoSlice::new(piece)).collect();
        let mut slices = slices.as_mut_slice();
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => IoSlice::advance_slices(&mut slices, written),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents below `root`, fsyncing each parent so the new
/// directory entries survive a crash.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    if dir == root || dir.is_dir() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .expect("a directory below the root has a parent");
    create_dirs_durably(root, parent)?;
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Calls `visit` for every file under `dir`, recursively. A directory that does not
/// exist, or vanishes during the walk, has no files.
fn walk_files(dir: &Path, visit: &mut dyn FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries?,
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk_files(&path, visit)?;
        } else {
            visit(&path)?;
        }
    }
    Ok(())
}

/// The key of the file at `path`, or None for a file that is not an object (temp files).
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let components = path
        .strip_prefix(root)
        .ok()?
        .iter()
        .map(|c| c.to_str().filter(|c| is_plain_component(c)))
        .collect::<Option<Vec<_>>>()?;
    Some(components.join("/"))
}

/// Removes the temp files under `root` last modified before `now - TORN_TEMP_FILE_AGE`; one
/// that vanishes meanwhile was renamed into place or removed by another process.
fn remove_torn_temp_files(root: &Path, now: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    walk_files(root, &mut |path| {
        let is_temp = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if !is_temp {
            return Ok(());
        }
        let modified = match fs::metadata(path).and_then(|m| m.modified()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            modified => modified?,
        };
        let torn = now
            .duration_since(modified)
            .is_ok_and(|age| age >= TORN_TEMP_FILE_AGE);
        if torn {
            match fs::remove_file(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                result => {
                    result?;
                    removed += 1;
                }
            }
        }
        Ok(())
    })?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::check_contract;

    #[tokio::test]
    async fn local_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        check_contract(&LocalStore::new(dir.path()).unwrap()).await;
    }

    #[tokio::test]
    async fn nested_keys_are_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        store
            .put(
                "topics/abc/7/00000000000000000042-x.log",
                Bytes::from_static(b"log").into(),
            )
            .await
            .unwrap();
        let file = dir.path().join("topics/abc/7/00000000000000000042-x.log");
        assert_eq!(fs::read(file).unwrap(), b"log");
        // No temp file is left next to it.
        let siblings: Vec<_> = fs::read_dir(dir.path().join("topics/abc/7"))
            .unwrap()
            .collect();
        assert_eq!(siblings.len(), 1);
    }

    #[tokio::test]
    async fn a_put_of_more_parts_than_one_writev_takes_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let whole: Bytes = (0..3000u32).map(|i| i as u8).collect::<Vec<_>>().into();
        let parts: Payload = (0..3000).map(|i| whole.slice(i..i + 1)).collect();
        store.put("a", parts).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), whole);
    }

    #[tokio::test]
    async fn a_put_written_out_in_pieces_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let len = 3 * WRITE_OUT_EVERY_BYTES + 12_345;
        let whole: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        // Parts of an odd size, so pieces end inside parts and at their ends.
        let part = WRITE_OUT_EVERY_BYTES / 3 + 7;
        let parts: Payload = (0..len)
            .step_by(part)
            .map(|start| whole.slice(start..(start + part).min(len)))
            .collect();
        store.put("a", parts).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), whole);
    }

    #[tokio::test]
    async fn concurrent_puts_to_one_key_leave_one_whole_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let versions: Vec<Bytes> = (0..8u8).map(|i| Bytes::from(vec![i; 64 * 1024])).collect();
        let mut puts = tokio::task::JoinSet::new();
        for data in &versions {
            let (store, data) = (store.clone(), data.clone());
            puts.spawn(async move { store.put("a/b", data.into()).await });
        }
        while let Some(result) = puts.join_next().await {
            result.unwrap().unwrap();
        }
        let stored = store.get("a/b").await.unwrap();
        assert!(versions.contains(&stored));
        assert_eq!(fs::read_dir(dir.path().join("a")).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn opening_removes_torn_temp_files_and_keeps_objects() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("flush/1")).unwrap();
        fs::write(dir.path().join("flush/1/a.flush"), b"whole").unwrap();
        let torn = SystemTime::now() - TORN_TEMP_FILE_AGE - Duration::from_secs(1);
        for path in ["flush/1/.tmp-1234", ".tmp-5678"] {
            let file = File::create(dir.path().join(path)).unwrap();
            file.set_modified(torn).unwrap();
        }
        fs::write(dir.path().join("flush/1/.tmp-inflight"), b"being written").unwrap();

        let store = LocalStore::new(dir.path()).unwrap();
        assert!(!dir.path().join("flush/1/.tmp-1234").exists());
        assert!(!dir.path().join(".tmp-5678").exists());
        assert!(
            dir.path().join("flush/1/.tmp-inflight").exists(),
            "a recent temp file may be another process's put in progress"
        );
        assert_eq!(store.get("flush/1/a.flush").await.unwrap(), "whole");
    }

    #[test]
    fn temp_files_that_vanish_during_the_sweep_are_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("flush/1")).unwrap();
        for i in 0..200 {
            fs::write(dir.path().join(format!("flush/1/.tmp-{i}")), b"x").unwrap();
        }
        let root = dir.path().to_path_buf();
        let remover = std::thread::spawn(move || {
            for i in 0..200 {
                let _ = fs::remove_file(root.join(format!("flush/1/.tmp-{i}")));
            }
        });
        let later = SystemTime::now() + TORN_TEMP_FILE_AGE * 2;
        for _ in 0..20 {
            remove_torn_temp_files(dir.path(), later).unwrap();
        }
        remover.join().unwrap();
    }

    #[tokio::test]
    async fn temp_files_are_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        store
            .put("flush/1/a.flush", Bytes::from_static(b"a").into())
            .await
            .unwrap();
        // A put in progress right now.
        fs::write(dir.path().join("flush/1/.tmp-inflight"), b"partial").unwrap();
        let keys: Vec<_> = store
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["flush/1/a.flush"]);
    }

    #[tokio::test]
    async fn keys_that_escape_the_root_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root")).unwrap();
        for key in [
            "../escape",
            "/etc/passwd",
            "a/../../b",
            "",
            "a//b",
            "a/",
            "./a",
            "a/.tmp-x",
        ] {
            let result = store.put(key, Bytes::from_static(b"x").into()).await;
            assert!(
                matches!(result, Err(StoreError::Unavailable { op: "put", .. })),
                "{key}: {result:?}"
            );
            assert!(
                matches!(store.get(key).await, Err(StoreError::Unavailable { .. })),
                "{key}"
            );
        }
        assert!(!dir.path().join("escape").exists());
        assert!(matches!(
            store.list("../").await,
            Err(StoreError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn a_put_that_cannot_create_its_directory_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root")).unwrap();
        // A file where a directory is needed makes the put fail.
        fs::write(dir.path().join("root/topics"), b"").unwrap();
        let result = store.put("topics/a", Bytes::from_static(b"x").into()).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable { op: "put", .. })),
            "{result:?}"
        );
    }
}
