//! A filesystem that loses, when the power is cut, everything not made durable (in the style of
//! LazyFS): the power-cut test runs the node's database and journal on it.
//!
//! It is a FUSE filesystem (the `fuser` crate) served by a thread of the test process. What
//! programs see lives in memory; the "disk" is a backing directory, changed only by
//! fsync/fdatasync. [`PowerLayer::cut`] freezes the filesystem (every later operation fails
//! and nothing more reaches the disk), then [`PowerLayer::restart`] unmounts it (the kernel's
//! caches go with the mount) and mounts it again from the backing directory alone: the machine
//! after a power cut and a reboot.
//!
//! What is durable when (the strict POSIX reading, which real filesystems may exceed but never
//! fall short of):
//! - A file's bytes and size: when the file is fsynced or fdatasynced (both make data and size
//!   durable; the other metadata is not modelled). Writes, truncations and extensions before
//!   that are lost at a cut. `sync_file_range` is not a sync: it never reaches this layer.
//! - A name (create, mkdir, unlink, rmdir, rename, in a directory): when that directory is
//!   fsynced; until then a cut brings back the directory as it was at its last fsync. A new
//!   file fsynced in a directory never fsynced since is lost with its name; a directory made
//!   and never fsynced comes back empty. A rename between two directories is durable in each
//!   one as that one is fsynced.
//! - The backing directory holds `<inode>` (a file's bytes at its last fsync) and
//!   `<inode>.dir` (a directory's names at its last fsync, `inode kind name` per line). Inode
//!   numbers survive restarts, so the two stay consistent.
//!
//! Not modelled: torn writes inside one write(2) (a write is all or nothing), reordering of
//! writes to different files before a sync (nothing unsynced survives), hard and symbolic
//! links, extended attributes. Locks are the kernel's own (the filesystem does not take the
//! POSIX-lock capability), so SQLite's locking works as on a local disk, including its
//! shared-memory file (mmap).
// Shared by the crash tests of one node and of a cluster: each uses part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

/// How long the kernel may cache names and attributes: every change goes through it, so its
/// caches stay right until the mount goes.
const TTL: Duration = Duration::from_secs(60);

enum Content {
    File {
        data: Vec<u8>,
        /// Byte ranges written since the last fsync (start, end).
        dirty: Vec<(u64, u64)>,
        /// The smallest size the file had since the last fsync, if it shrank.
        shrunk_to: Option<u64>,
    },
    Dir(BTreeMap<OsString, u64>),
}

struct Inode {
    content: Content,
    mtime: SystemTime,
}

impl Inode {
    fn file(data: Vec<u8>) -> Inode {
        Inode {
            content: Content::File {
                data,
                dirty: Vec::new(),
                shrunk_to: None,
            },
            mtime: SystemTime::now(),
        }
    }

    fn dir(entries: BTreeMap<OsString, u64>) -> Inode {
        Inode {
            content: Content::Dir(entries),
            mtime: SystemTime::now(),
        }
    }

    fn kind(&self) -> FileType {
        match self.content {
            Content::File { .. } => FileType::RegularFile,
            Content::Dir(_) => FileType::Directory,
        }
    }
}

/// What the layer did, for the test's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub bytes_synced: u64,
    /// Operations refused because the power was cut.
    pub refused: u64,
}

struct State {
    backing: PathBuf,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// The power is cut: every operation fails and nothing reaches the backing directory.
    frozen: bool,
    stats: Stats,
}

const ROOT: u64 = 1;

fn listing_path(backing: &Path, ino: u64) -> PathBuf {
    backing.join(format!("{ino}.dir"))
}

fn data_path(backing: &Path, ino: u64) -> PathBuf {
    backing.join(ino.to_string())
}

impl State {
    /// The filesystem as the backing directory has it: what a reboot finds.
    fn load(backing: &Path) -> io::Result<State> {
        let mut st = State {
            backing: backing.to_path_buf(),
            inodes: HashMap::new(),
            next_ino: ROOT + 1,
            frozen: false,
            stats: Stats::default(),
        };
        for e in std::fs::read_dir(backing)? {
            let name = e?.file_name();
            let n = name.to_string_lossy();
            if let Some(ino) = n.split('.').next().and_then(|i| i.parse::<u64>().ok()) {
                st.next_ino = st.next_ino.max(ino + 1);
            }
        }
        st.load_dir(ROOT)?;
        Ok(st)
    }

    fn load_dir(&mut self, ino: u64) -> io::Result<()> {
        let mut entries = BTreeMap::new();
        let mut children = Vec::new();
        match std::fs::read(listing_path(&self.backing, ino)) {
            Ok(text) => {
                for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let mut parts = line.splitn(3, |b| *b == b' ');
                    let (Some(child), Some(kind), Some(name)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(io::Error::other("bad directory listing"));
                    };
                    let child: u64 = std::str::from_utf8(child)
                        .ok()
                        .and_then(|c| c.parse().ok())
                        .ok_or_else(|| io::Error::other("bad inode in a listing"))?;
                    entries.insert(OsStr::from_bytes(name).to_os_string(), child);
                    children.push((child, kind == b"d"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.inodes.insert(ino, Inode::dir(entries));
        for (child, is_dir) in children {
            if is_dir {
                self.load_dir(child)?;
            } else {
                let data = match std::fs::read(data_path(&self.backing, child)) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(e),
                };
                self.inodes.insert(child, Inode::file(data));
            }
        }
        Ok(())
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.inodes.get(&ino)?;
        let (size, perm, nlink) = match &node.content {
            Content::File { data, .. } => (data.len() as u64, 0o644, 1),
            Content::Dir(_) => (0, 0o755, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind: node.kind(),
            perm,
            nlink,
            // SAFETY (both): plain getters without arguments.
            uid: unsafe { libc::getuid() },
            gid: unsafe { libc::getgid() },
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|n| &mut n.content) {
            Some(Content::Dir(entries)) => Ok(entries),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        match self.inodes.get(&parent).map(|n| &n.content) {
            Some(Content::Dir(entries)) => entries.get(name).copied().ok_or(Errno::ENOENT),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// Makes a new inode named `name` in `parent`.
    fn make(&mut self, parent: u64, name: &OsStr, node: Inode) -> Result<FileAttr, Errno> {
        if self.child(parent, name).is_ok() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, node);
        self.dir_mut(parent)?.insert(name.to_os_string(), ino);
        self.touch(parent);
        Ok(self.attr(ino).expect("just made"))
    }

    fn touch(&mut self, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.mtime = SystemTime::now();
        }
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let Some(Content::File { data, dirty, .. }) =
            self.inodes.get_mut(&ino).map(|n| &mut n.content)
        else {
            return Err(Errno::EISDIR);
        };
        let end = offset as usize + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset as usize..end].copy_from_slice(bytes);
        dirty.push((offset, end as u64));
        self.touch(ino);
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let Some(Content::File {
            data, shrunk_to, ..
        }) = self.inodes.get_mut(&ino).map(|n| &mut n.content)
        else {
            return Err(Errno::EISDIR);
        };
        if size < data.len() as u64 {
            *shrunk_to = Some(shrunk_to.map_or(size, |s| s.min(size)));
        }
        data.resize(size as usize, 0);
        self.touch(ino);
        Ok(())
    }

    /// fsync/fdatasync of a file: its bytes and size reach the backing directory.
    fn sync_file(&mut self, ino: u64) -> io::Result<()> {
        let backing = self.backing.clone();
        let Some(Content::File {
            data,
            dirty,
            shrunk_to,
        }) = self.inodes.get_mut(&ino).map(|n| &mut n.content)
        else {
            return Ok(());
        };
        let path = data_path(&backing, ino);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        // Bytes past the smallest size since the last sync are either written again (dirty)
        // or zeros: cutting there and growing back gives the zeros.
        if let Some(s) = shrunk_to.take() {
            file.set_len(s)?;
        }
        file.set_len(data.len() as u64)?;
        dirty.sort_unstable();
        let mut synced = 0;
        let mut i = 0;
        while i < dirty.len() {
            let (start, mut end) = dirty[i];
            while i + 1 < dirty.len() && dirty[i + 1].0 <= end {
                i += 1;
                end = end.max(dirty[i].1);
            }
            i += 1;
            let end = end.min(data.len() as u64);
            if start < end {
                file.write_all_at(&data[start as usize..end as usize], start)?;
                synced += end - start;
            }
        }
        dirty.clear();
        self.stats.file_syncs += 1;
        self.stats.bytes_synced += synced;
        Ok(())
    }

    /// fsync of a directory: its names reach the backing directory.
    fn sync_dir(&mut self, ino: u64) -> io::Result<()> {
        let Some(Content::Dir(entries)) = self.inodes.get(&ino).map(|n| &n.content) else {
            return Ok(());
        };
        let mut text = Vec::new();
        for (name, child) in entries {
            let kind = match self.inodes.get(child).map(Inode::kind) {
                Some(FileType::Directory) => "d",
                _ => "f",
            };
            write!(text, "{child} {kind} ")?;
            text.extend_from_slice(name.as_bytes());
            text.push(b'\n');
        }
        let path = listing_path(&self.backing, ino);
        let tmp = path.with_extension("dir.tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        self.stats.dir_syncs += 1;
        Ok(())
    }
}

/// The FUSE side: every operation on the shared state, refused once the power is cut.
struct LazyFs(Arc<Mutex<State>>);

impl LazyFs {
    /// fsync/fsyncdir: `sync` applied, its failure an I/O error.
    fn sync(&self, reply: ReplyEmpty, sync: impl FnOnce(&mut State) -> io::Result<()>) {
        empty(
            self.state()
                .and_then(|mut st| sync(&mut st).map_err(|e| io_errno(&e))),
            reply,
        );
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if st.frozen {
            st.stats.refused += 1;
            return Err(Errno::EIO);
        }
        Ok(st)
    }
}

fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn entry(result: Result<FileAttr, Errno>, reply: ReplyEntry) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn attr(result: Result<FileAttr, Errno>, reply: ReplyAttr) {
    match result {
        Ok(a) => reply.attr(&TTL, &a),
        Err(e) => reply.error(e),
    }
}

fn io_errno(e: &io::Error) -> Errno {
    eprintln!("lazyfs: backing directory: {e}");
    Errno::EIO
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self.state().and_then(|st| {
            let ino = st.child(parent.0, name)?;
            st.attr(ino).ok_or(Errno::ENOENT)
        });
        entry(r, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        attr(
            self.state()
                .and_then(|st| st.attr(ino.0).ok_or(Errno::ENOENT)),
            reply,
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = self.state().and_then(|mut st| {
            if let Some(size) = size {
                st.truncate(ino.0, size)?;
            }
            st.attr(ino.0).ok_or(Errno::ENOENT)
        });
        attr(r, reply);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        entry(
            self.state()
                .and_then(|mut st| st.make(parent.0, name, Inode::file(Vec::new()))),
            reply,
        );
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            self.state()
                .and_then(|mut st| st.make(parent.0, name, Inode::dir(BTreeMap::new()))),
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.state().and_then(|mut st| {
            let ino = st.child(parent.0, name)?;
            if st.inodes.get(&ino).map(Inode::kind) == Some(FileType::Directory) {
                return Err(Errno::EISDIR);
            }
            // The inode stays while open: its bytes are still read and written through the
            // handles, and a name not yet synced away brings it back after a cut.
            st.dir_mut(parent.0)?.remove(name);
            st.touch(parent.0);
            Ok(())
        });
        empty(r, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self.state().and_then(|mut st| {
            let ino = st.child(parent.0, name)?;
            if !st.dir_mut(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            st.dir_mut(parent.0)?.remove(name);
            st.touch(parent.0);
            Ok(())
        });
        empty(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.state().and_then(|mut st| {
            let ino = st.child(parent.0, name)?;
            let target = st.child(newparent.0, newname).ok();
            if target.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
                return Err(Errno::EINVAL);
            }
            if let Some(t) = target
                && let Some(Content::Dir(e)) = st.inodes.get(&t).map(|n| &n.content)
                && !e.is_empty()
            {
                return Err(Errno::ENOTEMPTY);
            }
            st.dir_mut(parent.0)?.remove(name);
            st.dir_mut(newparent.0)?.insert(newname.to_os_string(), ino);
            st.touch(parent.0);
            st.touch(newparent.0);
            Ok(())
        });
        empty(r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self
            .state()
            .and_then(|st| st.attr(ino.0).ok_or(Errno::ENOENT))
        {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let st = match self.state() {
            Ok(st) => st,
            Err(e) => return reply.error(e),
        };
        match st.inodes.get(&ino.0).map(|n| &n.content) {
            Some(Content::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Content::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self
            .state()
            .and_then(|mut st| st.write(ino.0, offset, data))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(reply, |st| st.sync_file(ino.0));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let st = match self.state() {
            Ok(st) => st,
            Err(e) => return reply.error(e),
        };
        let Some(Content::Dir(entries)) = st.inodes.get(&ino.0).map(|n| &n.content) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all: Vec<(u64, FileType, &OsStr)> = vec![
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ];
        for (name, child) in entries {
            let kind = st
                .inodes
                .get(child)
                .map_or(FileType::RegularFile, Inode::kind);
            all.push((*child, kind, name.as_os_str()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(reply, |st| st.sync_dir(ino.0));
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .state()
            .and_then(|mut st| st.make(parent.0, name, Inode::file(Vec::new())))
        {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }
}

/// The mounted layer, its backing directory and its power switch.
pub struct PowerLayer {
    backing: PathBuf,
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    /// The counters of the previous mounts.
    stats: Stats,
}

impl PowerLayer {
    /// Mounts the layer at `mountpoint` (an empty directory) over `backing` (an empty directory
    /// for a new disk).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<PowerLayer> {
        let state = Arc::new(Mutex::new(State::load(backing)?));
        let mut layer = PowerLayer {
            backing: backing.to_path_buf(),
            mountpoint: mountpoint.to_path_buf(),
            state,
            session: None,
            stats: Stats::default(),
        };
        layer.start_session()?;
        Ok(layer)
    }

    fn start_session(&mut self) -> io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("pagonode-lazyfs".into()),
            fuser::MountOption::NoAtime,
        ];
        config.n_threads = Some(2);
        let session = fuser::spawn_mount(LazyFs(self.state.clone()), &self.mountpoint, &config)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot mount the power-cut filesystem on {} (is /dev/fuse there? CI installs fuse3): {e}",
                        self.mountpoint.display()
                    ),
                )
            })?;
        self.session = Some(session);
        Ok(())
    }

    /// Where programs read and write.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: from this instant nothing more becomes durable and every operation
    /// fails. The programs using the filesystem must be stopped first and killed after.
    pub fn cut(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).frozen = true;
    }

    /// The reboot after a cut: unmounts, forgets everything not durable, mounts the backing
    /// directory's content again. Every file must be closed (its processes dead).
    pub fn restart(&mut self) -> io::Result<()> {
        self.cut();
        self.unmount()?;
        let old = std::mem::replace(
            &mut *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::load(&self.backing)?,
        );
        self.add_stats(old.stats);
        self.start_session()
    }

    fn add_stats(&mut self, s: Stats) {
        self.stats.file_syncs += s.file_syncs;
        self.stats.dir_syncs += s.dir_syncs;
        self.stats.bytes_synced += s.bytes_synced;
        self.stats.refused += s.refused;
    }

    fn umount2(&self, flags: libc::c_int) -> io::Result<()> {
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())
            .map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated path that outlives the call; no other memory is passed.
        if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn unmount(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let busy =
            |r: &io::Result<()>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EBUSY));
        let mut result = self.umount2(0);
        // A file closed a moment ago (a process just reaped) can keep the mount busy briefly.
        for _ in 0..100 {
            if !busy(&result) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            result = self.umount2(0);
        }
        if busy(&result) {
            eprintln!(
                "lazyfs: {} still busy after 2 s: detached",
                self.mountpoint.display()
            );
            result = self.umount2(libc::MNT_DETACH);
        }
        result?;
        match session.join() {
            // The unmount ends the session: with two reader threads, the one that does not see
            // the end (ENODEV) may find the connection aborted instead.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
            r => r,
        }
    }

    /// The counters over every mount so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        let now = self.state.lock().unwrap_or_else(|p| p.into_inner()).stats;
        s.file_syncs += now.file_syncs;
        s.dir_syncs += now.dir_syncs;
        s.bytes_synced += now.bytes_synced;
        s.refused += now.refused;
        s
    }
}

impl Drop for PowerLayer {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("lazyfs: unmounting {}: {e}", self.mountpoint.display());
        }
    }
}

/// Copies the tree under `from` (a mounted layer) to `to`, for a failing run's post-mortem.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            File::create(&target)?.write_all(&std::fs::read(e.path())?)?;
        }
    }
    Ok(())
}
