//! A directory on a local file system as an object store: key "a/b/c" is the file
//! `{root}/a/b/c`.
//!
//! A put writes a temp file next to its target (".tmp-{uuid}"), fsyncs it, renames it into
//! place and fsyncs the directory, so a reader or a crash never exposes a partial object
//! and the object survives power loss once put returns. A create hard-links the temp file
//! into place instead, which fails if the name is taken. Temp files are never listed; those
//! left by a crash are removed when the store is opened, once they are old enough that no
//! live put can own them (several processes of a cluster may share one directory).
//!
//! Where the file system takes them, objects are written with direct I/O (`O_DIRECT`),
//! copied into reused aligned buffers first. A buffered write copies into the page cache,
//! and on a virtual machine that hands free memory back to its host that copy ran at
//! 0.4–0.6 GB/s, a third of the disk, costing the broker more CPU than all else on the
//! write path. Large reads go around the page cache too (the data is not in it); small ones
//! (indexes, footers) stay buffered.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// Direct I/O needs buffers, file offsets and lengths aligned to the disk's logical block
/// size; 4 KiB is a multiple of every common one.
const DIRECT_IO_ALIGN: usize = 4096;

/// A flush object written with direct I/O goes to the disk in writes of at most this much:
/// large enough for the disk's full speed, small enough to keep the aligned buffers small.
const DIRECT_IO_WRITE_BYTES: usize = 4 * 1024 * 1024;

/// Reads of at least this much go around the page cache where writes do: the data is
/// rarely in it (objects are written around it), and a read through it costs the same slow
/// copy. Smaller reads (indexes, footers) are served from the page cache when they can be.
const DIRECT_IO_READ_MIN_BYTES: u64 = 256 * 1024;

/// Aligned buffers kept for reuse: about as many as puts run at once (flushes and
/// compaction). Memory new to the process is slow to touch for the same reason the page
/// cache is, so buffers are kept rather than freed.
const KEPT_ALIGNED_BUFFERS: usize = 4;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
    /// Buffers for direct I/O writes; None where the file system refuses direct I/O.
    direct_io: Option<Arc<AlignedBuffers>>,
}

impl LocalStore {
    /// Opens (creating if missing) the store rooted at `root` and removes the temp files of
    /// puts torn by a crash. Blocks on the file system: call it at startup.
    ///
    /// Temp files modified within the last ten minutes are kept: another process sharing the
    /// directory may be writing them.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open(root, true)
    }

    /// Opens the store as [`LocalStore::new`] does; with `direct_io` false every read and
    /// write goes through the page cache even where direct I/O works (on a machine whose
    /// page cache is cheap, compaction and catch-up reads then find recent objects there).
    pub fn open(root: impl AsRef<Path>, direct_io: bool) -> Result<Self, StoreError> {
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
        if !direct_io {
            tracing::info!(root = %root.display(),
                "direct I/O turned off: objects are written through the page cache");
        }
        let direct_io = (direct_io && takes_direct_io(&root)).then(Arc::default);
        Ok(Self {
            root: Arc::new(root),
            direct_io,
        })
    }

    /// Whether objects are written, and large ranges read, with direct I/O.
    pub fn direct_io(&self) -> bool {
        self.direct_io.is_some()
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
        let direct_io = self.direct_io.clone();
        let in_pieces = !key.starts_with(FLUSH_PREFIX);
        // `other` so that a missing directory is not reported as a missing object.
        Self::blocking("put", key, move || {
            let how = Writing {
                placement: Placement::Replace,
                in_pieces,
                direct_io: direct_io.as_deref(),
            };
            write_durably(&root, &path, &data, how).map_err(io::Error::other)
        })
        .await
    }

    async fn create(&self, key: &str, data: Payload) -> Result<(), StoreError> {
        let path = self.object_path("create", key)?;
        let root = Arc::clone(&self.root);
        let direct_io = self.direct_io.clone();
        Self::blocking("create", key, move || {
            let how = Writing {
                placement: Placement::CreateNew,
                in_pieces: true,
                direct_io: direct_io.as_deref(),
            };
            write_durably(&root, &path, &data, how).map_err(|e| {
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
        let direct_io = self.direct_io.is_some();
        Self::blocking("get", key, move || {
            read_range(&path, 0..u64::MAX, direct_io)
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.object_path("get_range", key)?;
        let direct_io = self.direct_io.is_some();
        Self::blocking("get_range", key, move || {
            read_range(&path, range, direct_io)
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

/// The bytes of the file at `path` in `range` (clipped to the file), with direct I/O if
/// asked and the range is large (see [`DIRECT_IO_READ_MIN_BYTES`]).
fn read_range(path: &Path, range: Range<u64>, direct_io: bool) -> io::Result<Bytes> {
    let mut file = File::open(path)?;
    let range = clip(range, file.metadata()?.len());
    let len = range.end - range.start;
    if direct_io && len >= DIRECT_IO_READ_MIN_BYTES {
        return read_direct(&file, range);
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(range.start))?;
    // Reading into the spare capacity spares zeroing the buffer first, which cost as much
    // CPU as the read itself on catch-up reads.
    file.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(buf))
}

/// Reads `range` of `file` with direct I/O (switched on for the open file, so the read is of
/// the file whose length was checked): the whole blocks around the range into an aligned
/// buffer, of which the range is returned as a slice.
#[cfg(target_os = "linux")]
fn read_direct(file: &File, range: Range<u64>) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    set_direct_io(file, true)?;
    let fd = file.as_raw_fd();
    let align = DIRECT_IO_ALIGN as u64;
    let start = range.start / align * align;
    let end = range.end.next_multiple_of(align);
    let blocks_len = (end - start) as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(blocks_len + DIRECT_IO_ALIGN);
    let skip = buf.as_ptr().align_offset(DIRECT_IO_ALIGN);
    buf.resize(skip, 0);
    let mut read = 0;
    while read < blocks_len {
        // SAFETY: the destination is the vector's spare capacity, at least
        // `blocks_len - read` bytes from `skip + read`; the descriptor is open for the call.
        // The length is set only to what the kernel wrote.
        let result = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().add(skip + read).cast(),
                blocks_len - read,
                (start + read as u64) as libc::off_t,
            )
        };
        match result {
            0 => break,
            n if n > 0 => {
                read += n as usize;
                // SAFETY: the kernel wrote these `n` bytes, within the capacity.
                unsafe { buf.set_len(skip + read) };
            }
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
    let from = skip + (range.start - start) as usize;
    let to = from + (range.end - range.start) as usize;
    if buf.len() < to {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Bytes::from(buf).slice(from..to))
}

/// Direct I/O is only ever enabled on Linux.
#[cfg(not(target_os = "linux"))]
fn read_direct(_file: &File, _range: Range<u64>) -> io::Result<Bytes> {
    unreachable!("direct I/O is only enabled on Linux")
}

/// How a written object takes its name.
#[derive(Clone, Copy)]
enum Placement {
    /// Replaces whatever has the name (rename).
    Replace,
    /// Fails with AlreadyExists if the name is taken (hard link, then the temp name goes).
    CreateNew,
}

/// How [`write_durably`] writes an object.
struct Writing<'a> {
    placement: Placement,
    /// Written out piece by piece and paced (see [`WRITE_OUT_EVERY_BYTES`]).
    in_pieces: bool,
    /// With direct I/O through these buffers; through the page cache when None.
    direct_io: Option<&'a AlignedBuffers>,
}

/// Writes `data` to `path` atomically and durably (see the module comment).
fn write_durably(root: &Path, path: &Path, data: &Payload, how: Writing<'_>) -> io::Result<()> {
    let dir = path.parent().expect("an object path has a parent");
    create_dirs_durably(root, dir)?;
    let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = create_file(&temp, how.direct_io.is_some())?;
        write_all_parts(&mut file, data.parts(), how.in_pieces, how.direct_io)?;
        file.sync_all()?;
        match how.placement {
            Placement::Replace => fs::rename(&temp, path),
            Placement::CreateNew => fs::hard_link(&temp, path),
        }
    })();
    if written.is_err() || matches!(how.placement, Placement::CreateNew) {
        let _ = fs::remove_file(&temp);
    }
    written?;
    sync_dir(dir)
}

/// Creates (or truncates) the file at `path` for writing, with direct I/O if asked.
fn create_file(path: &Path, direct_io: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(target_os = "linux")]
    if direct_io {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path)
}

/// Whether the file system under `root` takes direct I/O writes (some refuse them: tmpfs
/// before Linux 6.6, some network and FUSE file systems): tried on a temp file, which is
/// removed.
fn takes_direct_io(root: &Path) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let probe = root.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let file = create_file(&probe, true)?;
        let mut buffer = AlignedBuffer(Vec::new());
        write_direct(&file, &mut buffer, &[&[0; DIRECT_IO_ALIGN]], 0)
    })();
    let _ = fs::remove_file(&probe);
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(root = %root.display(), error = %e,
                "direct I/O refused: objects are written through the page cache");
            false
        }
    }
}

/// Writes the parts back to back. Through the page cache with as few system calls as the
/// kernel allows; with direct I/O in aligned writes of [`DIRECT_IO_WRITE_BYTES`] (see
/// [`write_direct`] for the last block). `in_pieces` writes the data out every
/// [`WRITE_OUT_EVERY_BYTES`], waiting for each piece and then pausing as long before the
/// next, so at most one piece is ever queued at the disk ahead of another write's sync and
/// other writes get at least half of the disk's time (the caller syncs the file).
fn write_all_parts(
    file: &mut File,
    parts: &[Bytes],
    in_pieces: bool,
    direct_io: Option<&AlignedBuffers>,
) -> io::Result<()> {
    let piece_len = match (in_pieces, direct_io) {
        (true, _) => WRITE_OUT_EVERY_BYTES,
        (false, Some(_)) => DIRECT_IO_WRITE_BYTES,
        (false, None) => usize::MAX,
    };
    let mut buffer = direct_io.map(AlignedBuffers::take);
    let mut offset = 0;
    let mut pause = Duration::ZERO;
    let written = for_each_piece(parts, piece_len, |piece| {
        // Yield the disk as long as the last piece took: flush objects, which producers
        // wait on, get at least half of its time while a segment is written.
        thread::sleep(pause);
        let started = Instant::now();
        let len: usize = piece.iter().map(|slice| slice.len()).sum();
        match &mut buffer {
            Some(buffer) => write_direct(file, buffer, piece, offset)?,
            None => {
                write_vectored_all(file, piece)?;
                if in_pieces {
                    write_out(file, offset, len)?;
                }
            }
        }
        if in_pieces {
            pause = started.elapsed();
        }
        offset += len as u64;
        Ok(())
    });
    if let (Some(buffers), Some(buffer)) = (direct_io, buffer) {
        buffers.give_back(buffer);
    }
    written
}

/// Calls `write_piece` with the parts cut into pieces of `piece_len` bytes, in order (the
/// last may be shorter); each piece is the slices of the parts it spans.
fn for_each_piece(
    parts: &[Bytes],
    piece_len: usize,
    mut write_piece: impl FnMut(&[&[u8]]) -> io::Result<()>,
) -> io::Result<()> {
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut pieces_len = 0;
    for part in parts {
        let mut part = &part[..];
        while !part.is_empty() {
            let (piece, rest) = part.split_at(part.len().min(piece_len - pieces_len));
            pieces.push(piece);
            pieces_len += piece.len();
            part = rest;
            if pieces_len == piece_len {
                write_piece(&pieces)?;
                pieces.clear();
                pieces_len = 0;
            }
        }
    }
    if pieces.is_empty() {
        return Ok(());
    }
    write_piece(&pieces)
}

/// Writes `piece` at `offset` (aligned) of a file opened for direct I/O, copied into
/// `buffer`. A last piece that ends inside a block writes that block's bytes through
/// the page cache (switching direct I/O off): padding the block and cutting the file back
/// would make the kernel read the block back from the disk to zero its tail.
fn write_direct(
    file: &File,
    buffer: &mut AlignedBuffer,
    piece: &[&[u8]],
    offset: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len: usize = piece.iter().map(|slice| slice.len()).sum();
    let whole_blocks = len / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN;
    let aligned = buffer.aligned(len);
    let mut filled = 0;
    for slice in piece {
        aligned[filled..filled + slice.len()].copy_from_slice(slice);
        filled += slice.len();
    }
    file.write_all_at(&aligned[..whole_blocks], offset)?;
    if whole_blocks < len {
        set_direct_io(file, false)?;
        file.write_all_at(&aligned[whole_blocks..], offset + whole_blocks as u64)?;
    }
    Ok(())
}

/// Switches direct I/O on or off for the open `file`.
#[cfg(target_os = "linux")]
fn set_direct_io(file: &File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl reads and sets the flags of a descriptor open for as long as `file` is
    // borrowed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Direct I/O is only ever enabled on Linux.
#[cfg(not(target_os = "linux"))]
fn set_direct_io(_file: &File, _on: bool) -> io::Result<()> {
    Ok(())
}

/// Reused buffers for direct I/O writes (see [`KEPT_ALIGNED_BUFFERS`]).
#[derive(Debug, Default)]
struct AlignedBuffers {
    kept: Mutex<Vec<Vec<u8>>>,
}

impl AlignedBuffers {
    fn take(&self) -> AlignedBuffer {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop();
        AlignedBuffer(kept.unwrap_or_default())
    }

    fn give_back(&self, buffer: AlignedBuffer) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_ALIGNED_BUFFERS {
            kept.push(buffer.0);
        }
    }
}

/// A buffer with room for an aligned run of bytes somewhere inside it.
struct AlignedBuffer(Vec<u8>);

impl AlignedBuffer {
    /// `len` bytes starting at an address aligned to [`DIRECT_IO_ALIGN`]; their contents
    /// are whatever the last use left.
    fn aligned(&mut self, len: usize) -> &mut [u8] {
        let needed = len + DIRECT_IO_ALIGN;
        if self.0.len() < needed {
            self.0.resize(needed, 0);
        }
        let start = self.0.as_ptr().align_offset(DIRECT_IO_ALIGN);
        &mut self.0[start..start + len]
    }
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
pub(crate) mod tests {
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

    /// A directory on the disk the tests are built on, where direct I/O works (a temp
    /// directory may be on a file system that refuses it).
    pub(crate) fn disk_dir() -> tempfile::TempDir {
        let target = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir_in(target.parent().unwrap()).unwrap();
        assert!(
            takes_direct_io(dir.path()),
            "the build directory takes direct I/O"
        );
        dir
    }

    /// A store writing with direct I/O and one writing through the page cache.
    fn both_stores() -> Vec<(LocalStore, tempfile::TempDir)> {
        let (direct, buffered) = (disk_dir(), disk_dir());
        vec![
            (LocalStore::new(direct.path()).unwrap(), direct),
            (LocalStore::open(buffered.path(), false).unwrap(), buffered),
        ]
    }

    #[tokio::test]
    async fn a_store_writing_through_the_page_cache_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), false).unwrap();
        assert!(!store.direct_io());
        check_contract(&store).await;
    }

    #[tokio::test]
    async fn direct_io_is_used_where_the_file_system_takes_it() {
        let dir = disk_dir();
        let store = LocalStore::new(dir.path()).unwrap();
        assert!(store.direct_io());
        // The probe leaves nothing behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        check_contract(&store).await;
    }

    #[tokio::test]
    async fn a_put_of_more_parts_than_one_writev_takes_is_written_whole() {
        for (store, _dir) in both_stores() {
            let whole: Bytes = (0..3000u32).map(|i| i as u8).collect::<Vec<_>>().into();
            let parts: Payload = (0..3000).map(|i| whole.slice(i..i + 1)).collect();
            store.put("a", parts).await.unwrap();
            assert_eq!(store.get("a").await.unwrap(), whole);
        }
    }

    /// Parts of an odd size, so pieces and direct writes end inside parts and at their ends,
    /// and the object does not end on a block boundary.
    fn odd_parts(len: usize, part: usize) -> (Bytes, Payload) {
        let whole: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let parts = (0..len)
            .step_by(part)
            .map(|start| whole.slice(start..(start + part).min(len)))
            .collect();
        (whole, parts)
    }

    #[tokio::test]
    async fn a_put_written_out_in_pieces_is_written_whole() {
        for (store, dir) in both_stores() {
            let len = 3 * WRITE_OUT_EVERY_BYTES + 12_345;
            let (whole, parts) = odd_parts(len, WRITE_OUT_EVERY_BYTES / 3 + 7);
            store.put("topics/a", parts).await.unwrap();
            assert_eq!(store.get("topics/a").await.unwrap(), whole);
            let file_len = fs::metadata(dir.path().join("topics/a")).unwrap().len();
            assert_eq!(file_len, len as u64, "no padding is left");
        }
    }

    #[tokio::test]
    async fn a_flush_object_larger_than_one_direct_write_is_written_whole() {
        for (store, dir) in both_stores() {
            let key = format!("{FLUSH_PREFIX}1/a.flush");
            let len = 2 * DIRECT_IO_WRITE_BYTES + 4321;
            let (whole, parts) = odd_parts(len, DIRECT_IO_WRITE_BYTES / 3 + 11);
            store.put(&key, parts).await.unwrap();
            assert_eq!(store.get(&key).await.unwrap(), whole);
            let file_len = fs::metadata(dir.path().join(&key)).unwrap().len();
            assert_eq!(file_len, len as u64, "no padding is left");
            // A shorter object put over it leaves nothing of the longer one.
            store.put(&key, whole.slice(..10).into()).await.unwrap();
            assert_eq!(store.get(&key).await.unwrap(), whole.slice(..10));
        }
    }

    #[tokio::test]
    async fn large_reads_return_exactly_the_range() {
        for (store, _dir) in both_stores() {
            let len = 3 * DIRECT_IO_READ_MIN_BYTES + 777;
            let (whole, parts) = odd_parts(len as usize, 100_003);
            store.put("topics/a", parts).await.unwrap();
            assert_eq!(store.get("topics/a").await.unwrap(), whole);
            let min = DIRECT_IO_READ_MIN_BYTES;
            // Unaligned at both ends, aligned, past the end, and the last partial block.
            for range in [
                1..len - 1,
                4095..4096 + min,
                4096..4096 + 2 * min,
                len - min - 5..len + 100,
            ] {
                let clipped = clip(range.clone(), len);
                let expected = whole.slice(clipped.start as usize..clipped.end as usize);
                let read = store.get_range("topics/a", range.clone()).await.unwrap();
                assert_eq!(read, expected, "{range:?}");
            }
        }
    }

    #[test]
    fn aligned_buffers_are_aligned_and_kept_up_to_their_number() {
        let buffers = AlignedBuffers::default();
        let mut taken: Vec<AlignedBuffer> = (0..KEPT_ALIGNED_BUFFERS + 2)
            .map(|_| buffers.take())
            .collect();
        for (i, buffer) in taken.iter_mut().enumerate() {
            let aligned = buffer.aligned(DIRECT_IO_ALIGN * (i + 1));
            assert_eq!(aligned.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
            assert_eq!(aligned.len(), DIRECT_IO_ALIGN * (i + 1));
        }
        for buffer in taken {
            buffers.give_back(buffer);
        }
        assert_eq!(buffers.kept.lock().unwrap().len(), KEPT_ALIGNED_BUFFERS);
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
