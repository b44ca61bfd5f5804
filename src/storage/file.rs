//! Segment files: O_DIRECT through glommio's `DmaFile`, or (development switch
//! only) buffered through `BufferedFile`. Writes always cover whole aligned
//! blocks, so the partial last block is rewritten as it fills.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use glommio::io::{BufferedFile, DmaFile, OpenOptions, ReadResult};

use super::descriptors::{Closable, Ticket};
use super::error::Error;

/// Write alignment: a multiple of every logical block size we accept.
pub const BLOCK_BYTES: u64 = 4096;
const _: () = assert!(BLOCK_BYTES.is_power_of_two() && BLOCK_BYTES.is_multiple_of(512));

pub fn align_down(v: u64) -> u64 {
    v & !(BLOCK_BYTES - 1)
}
pub fn align_up(v: u64) -> u64 {
    (v + BLOCK_BYTES - 1) & !(BLOCK_BYTES - 1)
}

/// Which I/O path a partition's files use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    Direct,
    Buffered,
}

/// Why the O_DIRECT probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The directory cannot do O_DIRECT (the reason, for the user).
    Unsupported(String),
    /// The probe could not run: no descriptor left, and the like.
    Storage(Error),
}

/// Checks that `dir` can do O_DIRECT. glommio silently falls back to buffered
/// I/O on tmpfs, so tmpfs counts as unavailable too. Running out of file
/// descriptors is reported as that, not as missing O_DIRECT.
///
/// It also primes glommio's per-thread iopoll probe for the device with a file
/// that holds data: glommio probes iopoll by reading offset 0 of the first file
/// it opens on a device, and on an empty file that read succeeds without
/// reaching the device, wrongly enabling the poll ring (reads then fail with
/// EOPNOTSUPP on devices without iopoll, such as virtio disks).
pub async fn probe_direct_io(dir: &Path) -> Result<(), ProbeError> {
    let stat = nix_statfs(dir).map_err(ProbeError::Unsupported)?;
    if stat == libc::TMPFS_MAGIC {
        return Err(ProbeError::Unsupported(
            "tmpfs keeps data in memory and glommio bypasses O_DIRECT on it".into(),
        ));
    }
    // One name per thread: shards probe the same directory at the same time.
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::gettid() };
    let probe = dir.join(format!(".direct-io-probe-{thread}"));
    let result = probe_with_file(&probe).await;
    let _ = std::fs::remove_file(&probe);
    result
}

async fn probe_with_file(probe: &Path) -> Result<(), ProbeError> {
    let failed = |what: &str, context: &'static str, error: std::io::Error| match Error::io(
        context, probe, error,
    ) {
        e @ Error::OpenFilesExhausted { .. } => ProbeError::Storage(e),
        Error::Io { source, .. } => ProbeError::Unsupported(format!("{what}: {source}")),
        other => ProbeError::Unsupported(format!("{what}: {other}")),
    };
    std::fs::write(probe, [0u8; BLOCK_BYTES as usize])
        .map_err(|e| failed("cannot write a probe file", "writing", e))?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(probe)
        .map_err(|e| failed("open with O_DIRECT failed", "opening", e))?;
    let file = DmaFile::open(probe)
        .await
        .map_err(|e| failed("glommio could not open a direct file", "opening", e.into()))?;
    let read = file.read_at_aligned(0, BLOCK_BYTES as usize).await;
    let _ = file.close().await;
    read.map(|_| ())
        .map_err(|e| failed("direct read failed", "reading", e.into()))
}

fn nix_statfs(dir: &Path) -> Result<i64, String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` a properly sized out-parameter.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(format!(
            "statfs failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(buf.f_type as i64)
}

/// An open descriptor of a segment file.
enum Handle {
    Direct(DmaFile),
    Buffered(BufferedFile),
}

/// Where a segment file keeps its descriptor while open, shared (weakly)
/// with the shard's LRU of open files.
#[derive(Default)]
struct Slot {
    handle: RefCell<Option<Rc<Handle>>>,
    ticket: Ticket,
}

impl Closable for Slot {
    fn close_if_idle(&self) -> bool {
        let Ok(mut handle) = self.handle.try_borrow_mut() else {
            return false;
        };
        // An operation in flight holds a clone: never close under it.
        if handle.as_ref().is_some_and(|h| Rc::strong_count(h) > 1) {
            return false;
        }
        // Dropping the handle closes the descriptor (glommio closes it on its ring).
        *handle = None;
        self.ticket.detach();
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ticket.closed();
    }
}

/// One segment file. Its descriptor is opened on first use and may be closed
/// by the shard's LRU of open files when another file needs the room; the
/// next operation opens it again. Closing between a write and its fdatasync
/// is safe: Linux syncs the file (its inode), whichever descriptor asks, and
/// a direct write reports its own errors.
pub struct SegmentFile {
    path: PathBuf,
    mode: IoMode,
    slot: Rc<Slot>,
}

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("open", &self.slot.ticket.is_open())
            .finish()
    }
}

impl SegmentFile {
    /// Opens (creating when missing) a file for reading and writing.
    pub async fn open(path: &Path, mode: IoMode) -> Result<SegmentFile, Error> {
        let file = SegmentFile {
            path: path.to_path_buf(),
            mode,
            slot: Rc::default(),
        };
        file.open_handle(true).await?;
        Ok(file)
    }

    /// The open descriptor, opened again if the LRU closed it.
    async fn handle(&self) -> Result<Rc<Handle>, Error> {
        if let Some(handle) = self.slot.handle.borrow().as_ref() {
            self.slot.ticket.touch();
            return Ok(handle.clone());
        }
        self.open_handle(false).await
    }

    async fn open_handle(&self, create: bool) -> Result<Rc<Handle>, Error> {
        Ticket::make_room();
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(create);
        let path = &self.path;
        let handle = match self.mode {
            IoMode::Direct => options.dma_open(path).await.map(Handle::Direct),
            IoMode::Buffered => options.buffered_open(path).await.map(Handle::Buffered),
        }
        .map_err(|e| Error::io("opening", path, e))?;
        // Another operation may have opened it while this one waited.
        if let Some(existing) = self.slot.handle.borrow().as_ref() {
            return Ok(existing.clone());
        }
        let handle = Rc::new(handle);
        *self.slot.handle.borrow_mut() = Some(handle.clone());
        let slot: Weak<dyn Closable> = Rc::downgrade(&self.slot) as Weak<Slot>;
        self.slot.ticket.opened(slot, !create);
        Ok(handle)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file uses O_DIRECT (false only in the development mode).
    pub fn is_direct(&self) -> bool {
        self.mode == IoMode::Direct
    }

    /// Whether the file holds an open descriptor now.
    pub fn is_open(&self) -> bool {
        self.slot.ticket.is_open()
    }

    /// Writes `head` then each of `parts` at the block-aligned `position`, padding
    /// with zeros to a whole block. `head` is the already-written start of the
    /// partial block at `position`.
    ///
    /// A non-empty head's block goes out as its own write: that block is already
    /// written and the blocks after it are only reserved, and ext4 completes a
    /// direct write in line only when it covers one kind of extent (a write
    /// spanning both is handed to a kernel worker thread).
    pub async fn write_blocks(
        &self,
        position: u64,
        head: &[u8],
        parts: &[bytes::Bytes],
    ) -> Result<(), Error> {
        debug_assert_eq!(position % BLOCK_BYTES, 0);
        let data_len = head.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let padded = align_up(data_len as u64);
        if head.is_empty() || padded <= BLOCK_BYTES {
            return self.write_range(position, head, parts, 0, padded).await;
        }
        let (first, rest) = futures::join!(
            self.write_range(position, head, parts, 0, BLOCK_BYTES),
            self.write_range(
                position + BLOCK_BYTES,
                head,
                parts,
                BLOCK_BYTES,
                padded - BLOCK_BYTES
            )
        );
        first.and(rest)
    }

    /// Writes `len` bytes of `head ++ parts`, starting `skip` bytes in and
    /// zero-padded past their end, at `position`.
    async fn write_range(
        &self,
        position: u64,
        head: &[u8],
        parts: &[bytes::Bytes],
        skip: u64,
        len: u64,
    ) -> Result<(), Error> {
        let len = len as usize;
        let fill = |out: &mut [u8]| {
            let mut skip = skip as usize;
            let mut at = 0;
            for piece in std::iter::once(head).chain(parts.iter().map(|p| &p[..])) {
                if at == out.len() {
                    break;
                }
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                let piece = &piece[skip..];
                skip = 0;
                let n = piece.len().min(out.len() - at);
                out[at..at + n].copy_from_slice(&piece[..n]);
                at += n;
            }
            out[at..].fill(0);
        };
        let path = &self.path;
        let written = match &*self.handle().await? {
            Handle::Direct(file) => {
                let mut buffer = file.alloc_dma_buffer(len);
                fill(buffer.as_bytes_mut());
                file.write_at(buffer, position)
                    .await
                    .map_err(|e| Error::io("writing", path, e))?
            }
            Handle::Buffered(file) => {
                let mut buffer = vec![0u8; len];
                fill(&mut buffer);
                file.write_at(buffer, position)
                    .await
                    .map_err(|e| Error::io("writing", path, e))?
            }
        };
        if written != len {
            return Err(Error::io(
                "writing (short write)",
                self.path(),
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("{written} of {len} bytes"),
                ),
            ));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at any `position` (alignment handled here).
    pub async fn read(&self, position: u64, len: usize) -> Result<ReadResult, Error> {
        let path = &self.path;
        match &*self.handle().await? {
            Handle::Direct(file) => file
                .read_at(position, len)
                .await
                .map_err(|e| Error::io("reading", path, e)),
            Handle::Buffered(file) => file
                .read_at(position, len)
                .await
                .map_err(|e| Error::io("reading", path, e)),
        }
    }

    pub async fn fdatasync(&self) -> Result<(), Error> {
        let path = &self.path;
        let handle = self.handle().await?;
        let started = std::time::Instant::now();
        let synced = match &*handle {
            Handle::Direct(file) => file
                .fdatasync()
                .await
                .map_err(|e| Error::io("syncing", path, e)),
            Handle::Buffered(file) => file
                .fdatasync()
                .await
                .map_err(|e| Error::io("syncing", path, e)),
        };
        crate::metrics::local::fsync_done(started.elapsed());
        synced
    }

    pub async fn truncate(&self, size: u64) -> Result<(), Error> {
        let path = &self.path;
        match &*self.handle().await? {
            Handle::Direct(file) => file
                .truncate(size)
                .await
                .map_err(|e| Error::io("truncating", path, e)),
            Handle::Buffered(file) => file
                .truncate(size)
                .await
                .map_err(|e| Error::io("truncating", path, e)),
        }
    }

    /// Where the next bytes the filesystem holds as data start, at or after
    /// `from` (`lseek(SEEK_DATA)`): `None` when only holes or space reserved
    /// and never written follow. Filesystems that cannot tell report `from`.
    pub async fn next_data(&self, from: u64) -> Result<Option<u64>, Error> {
        let handle = self.handle().await?;
        let fd = match &*handle {
            Handle::Direct(file) => file.as_raw_fd(),
            Handle::Buffered(file) => file.as_raw_fd(),
        };
        let Ok(offset) = libc::off_t::try_from(from) else {
            return Ok(Some(from));
        };
        // SAFETY: lseek on a descriptor `handle` keeps open; no memory is passed.
        let found = unsafe { libc::lseek(fd, offset, libc::SEEK_DATA) };
        if found >= 0 {
            return Ok(Some(found as u64));
        }
        Ok(match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENXIO) => None,
            _ => Some(from),
        })
    }

    /// Allocates blocks so the file is at least `len` bytes long; the new space
    /// reads as zeros. Only direct-I/O files reserve space.
    pub async fn reserve(&self, len: u64) -> Result<(), Error> {
        let path = &self.path;
        match &*self.handle().await? {
            Handle::Direct(file) => file
                .pre_allocate(len, false)
                .await
                .map_err(|e| Error::io("reserving space in", path, e)),
            Handle::Buffered(..) => Ok(()),
        }
    }

    pub async fn size(&self) -> Result<u64, Error> {
        let path = &self.path;
        match &*self.handle().await? {
            Handle::Direct(file) => file
                .file_size()
                .await
                .map_err(|e| Error::io("sizing", path, e)),
            Handle::Buffered(file) => file
                .file_size()
                .await
                .map_err(|e| Error::io("sizing", path, e)),
        }
    }
}

/// Writes a small file atomically: temp file, fdatasync, rename, directory fsync.
pub async fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let target = dir.join(name);
    let temp = dir.join(format!("{name}.tmp"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&temp)
        .await
        .map_err(|e| Error::io("creating", &temp, e))?;
    let written = file
        .write_at(bytes.to_vec(), 0)
        .await
        .map_err(|e| Error::io("writing", &temp, e))?;
    if written != bytes.len() {
        return Err(Error::io(
            "writing (short write)",
            &temp,
            std::io::Error::from(std::io::ErrorKind::WriteZero),
        ));
    }
    file.fdatasync()
        .await
        .map_err(|e| Error::io("syncing", &temp, e))?;
    file.close()
        .await
        .map_err(|e| Error::io("closing", &temp, e))?;
    glommio::io::rename(&temp, &target)
        .await
        .map_err(|e| Error::io("renaming", &temp, e))?;
    sync_dir(dir).await
}

/// [`write_file_atomically`] with plain blocking calls, for small files
/// written rarely or off a shard's executor: `<name>.tmp` beside `path`,
/// synced, renamed over it, and the directory synced.
pub fn replace_file_blocking(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.sync_data()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Makes file creations, renames and removals in `dir` durable.
pub async fn sync_dir(dir: &Path) -> Result<(), Error> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| Error::io("opening directory", dir, e))?;
    d.sync()
        .await
        .map_err(|e| Error::io("syncing directory", dir, e))?;
    d.close()
        .await
        .map_err(|e| Error::io("closing directory", dir, e))
}

/// Reads a whole small file, or `None` if it does not exist.
pub async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}
