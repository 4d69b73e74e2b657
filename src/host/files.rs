//! File effects: the real file system, and a planned overlay for dry runs.
//!
//! Paths here are host paths that [`crate::root::NodeRoot`] already resolved and confined.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What is at a path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub kind: FileKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    pub owner: Owner,
    pub size: u64,
    /// The last modification, in nanoseconds since the Unix epoch (for a dry run's planned
    /// file, when it was planned).
    pub mtime_ns: i64,
    /// For a symlink, where it points.
    pub link_target: Option<PathBuf>,
}

/// The file effects a script can have.
pub trait Files {
    /// What is at `path`, not following a final symlink; `None` when nothing is.
    fn state(&self, path: &Path) -> io::Result<Option<FileState>>;
    /// The content of the file at `path`; `None` when there is none.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// The SHA-256 of the content of the file at `path`, read in chunks (a bundle's binaries
    /// and image archives are large); `None` when there is none.
    fn digest(&self, path: &Path) -> io::Result<Option<[u8; 32]>>;
    /// The names of the entries of folder `path`, sorted; `None` when there is none.
    fn list(&self, path: &Path) -> io::Result<Option<Vec<String>>>;
    /// Replaces the file at `path` atomically: a temporary file in the same folder, written
    /// with `mode` (and `owner`) before any content, then renamed over `path`. It is durable
    /// after the next [`Files::sync`], not before.
    fn write(&self, path: &Path, content: &[u8], mode: u32, owner: Option<Owner>) -> io::Result<()>;
    /// Creates the folder `path` (its parent exists).
    fn mkdir(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()>;
    /// Sets the mode (and owner) of what is at `path`.
    fn set_attrs(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()>;
    /// Makes `path` a symlink to `target`, replacing what is there atomically.
    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()>;
    /// Removes what is at `path` (a folder with its content).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Copies the folder `from`, with everything in it, to `to`, where nothing is (its parent
    /// exists): folders and files with their modes (and owners, when allowed), symlinks as
    /// links. Made durable by the next [`Files::sync`], as a write is.
    fn copy_tree(&self, from: &Path, to: &Path) -> io::Result<Copied>;
    /// Moves what is at `from` (a file, a folder with its content, a symlink) to `to`, where
    /// nothing is, by one rename: both on the same file system. Made durable by the next
    /// [`Files::sync`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes every change made through this backend since the last sync durable. The runner
    /// calls it when a stage ends, before the journal line that vouches for the entries its
    /// steps appended (`journal`'s durability note): a journal read after a crash trusts
    /// nothing the crash undid.
    fn sync(&self) -> io::Result<()>;
    /// Whether this backend shows the disk as it is, so what the root's walk saw of a path
    /// can stand in for asking again (false for a dry run's plan).
    fn reads_disk(&self) -> bool {
        true
    }
}

/// What [`Files::copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Files and symlinks.
    pub files: u64,
    /// The bytes of the files.
    pub bytes: u64,
}

/// The bytes of the files under `path` (symlinks not followed).
fn tree_bytes(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0;
    for e in fs::read_dir(path)? {
        total += tree_bytes(&e?.path())?;
    }
    Ok(total)
}

/// Refuses a copy of `bytes` into `dir`'s file system when it has less free than that plus a
/// margin (1/20 of it, at least 16 MiB) for the folders' own blocks and what else writes there.
fn check_room(dir: &Path, bytes: u64) -> io::Result<()> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let free = st.blocks_available().saturating_mul(st.fragment_size());
    let need = bytes.saturating_add((bytes / 20).max(16 << 20));
    if free < need {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{} bytes to copy, and the file system of {} has {free} bytes free (at least {need} wanted): nothing copied",
                bytes,
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Copies `from` to `to` (nothing there yet), calling `made` with every path made. Folders are
/// made 0700 and given their mode once filled, so no one reads a copy of a closed folder
/// meanwhile. Extended attributes (`SELinux` labels, ACLs) are not copied: the copy is labelled
/// as new files where it is made are; hard links are copied as separate files.
fn copy_walk(from: &Path, to: &Path, copied: &mut Copied, made: &mut dyn FnMut(&Path)) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        symlink(fs::read_link(from)?, to)?;
        copied.files += 1;
    } else if kind.is_dir() {
        fs::DirBuilder::new().mode(0o700).create(to)?;
        let mut names: Vec<_> =
            fs::read_dir(from)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            copy_walk(&from.join(&name), &to.join(&name), copied, made)?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if kind.is_file() {
        copied.bytes += fs::copy(from, to)?;
        copied.files += 1;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} is neither a file, a folder nor a symlink", from.display()),
        ));
    }
    if nix::unistd::geteuid().is_root() && !kind.is_symlink() {
        chown(to, Some(Owner { uid: meta.uid(), gid: meta.gid() }))?;
    }
    made(to);
    Ok(())
}

/// The real file system.
///
/// Durability is per stage, not per file: a write is not synced on its own; [`Files::sync`]
/// syncs each file system changed since the last sync once (`syncfs`), and the runner calls it
/// when a stage ends. One sync per stage instead of one per file is what makes a fresh render
/// on a disk about as fast as on tmpfs.
///
/// What a crash (power loss, kernel panic) can leave, as the journal sees it:
/// - A change whose journal entry a reader trusts is on disk itself, content and name: the
///   sync that made it durable completed before the line that vouches for the entry (a reader
///   in the same boot trusts entries no sync vouches for yet: without a restart, the page cache
///   still holds what they name).
/// - A change of the stage that was running (no sync vouches for it) may be lost or only partly
///   there, as before: a path shows its old file or its new one, never a mix of the two, and a
///   temporary file (`.NAME.kscript-PID-N`) may be left beside it. One case is new: since the
///   content is no longer synced before the rename, a file system may make the new name
///   durable before the new content, so a path may also show the new file empty or cut short.
///   ext4 (`data=ordered`, `auto_da_alloc`) writes the content before a rename that replaces a file
///   commits, so there it is a path that did not exist before the step that can come back
///   empty. Its entries are not trusted after the restart, so a rerun treats the file as it
///   treats any file a crash left: rewritten when its content differs, not counted as kscript's.
/// - Folders made, modes set, symlinks made and paths removed are metadata; they are made
///   durable by the same sync, and can be lost, not torn, before it.
#[derive(Debug)]
pub struct RealFiles {
    counter: Cell<u64>,
    pid: u32,
    /// The file systems changed since the last sync, by device number, each with something on
    /// it held open for `syncfs`.
    unsynced: RefCell<BTreeMap<u64, fs::File>>,
}

impl Default for RealFiles {
    fn default() -> Self {
        Self { counter: Cell::new(0), pid: std::process::id(), unsynced: RefCell::default() }
    }
}

impl RealFiles {
    pub fn new() -> Self {
        Self::default()
    }

    fn temp_name(&self, path: &Path) -> PathBuf {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        path.with_file_name(format!(".{name}.kscript-{}-{n}", self.pid))
    }

    /// Notes that the file system holding `path` has changes the next sync must make durable.
    fn changed(&self, path: &Path) -> io::Result<()> {
        // The folder, not the path: a removed path is gone, and a path may be a symlink to
        // another file system, while the name changed lives in the folder.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => path,
        };
        let dev = fs::metadata(dir)?.dev();
        if !self.unsynced.borrow().contains_key(&dev) {
            let open = OpenOptions::new().read(true).custom_flags(nix::libc::O_DIRECTORY).open(dir)?;
            self.unsynced.borrow_mut().insert(dev, open);
        }
        Ok(())
    }
}

/// The state of what `meta` describes (`path` is read for a symlink's target).
pub fn state_of(meta: &fs::Metadata, path: &Path) -> io::Result<FileState> {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    Ok(FileState {
        kind,
        mode: meta.mode() & 0o7777,
        owner: Owner { uid: meta.uid(), gid: meta.gid() },
        size: meta.len(),
        mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        link_target: if kind == FileKind::Symlink { Some(fs::read_link(path)?) } else { None },
    })
}

/// A SHA-256 as aws-lc-rs hands it over, as an array.
fn sha256_bytes(digest: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest);
    out
}

/// The current time in nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn chown(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    if let Some(o) = owner {
        std::os::unix::fs::lchown(path, Some(o.uid), Some(o.gid))?;
    }
    Ok(())
}

impl Files for RealFiles {
    fn state(&self, path: &Path) -> io::Result<Option<FileState>> {
        match fs::symlink_metadata(path) {
            Ok(m) => state_of(&m, path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn digest(&self, path: &Path) -> io::Result<Option<[u8; 32]>> {
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut buf = vec![0; 1 << 20];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => ctx.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(sha256_bytes(ctx.finish().as_ref())))
    }

    fn list(&self, path: &Path) -> io::Result<Option<Vec<String>>> {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut names = entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<_>>>()?;
        names.sort();
        Ok(Some(names))
    }

    fn write(&self, path: &Path, content: &[u8], mode: u32, owner: Option<Owner>) -> io::Result<()> {
        // Noted before the change, as every change is: a write that happened is never
        // reported as failed because its folder could not be noted afterwards.
        self.changed(path)?;
        let tmp = self.temp_name(path);
        let result = (|| {
            // Created private; the wanted mode is set before any content lands.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            if let Some(o) = owner {
                std::os::unix::fs::fchown(&f, Some(o.uid), Some(o.gid))?;
            }
            f.write_all(content)?;
            // Not synced here: the step's sync makes content and name durable together (see
            // the crash notes on RealFiles).
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn mkdir(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
        self.changed(path)?;
        fs::create_dir(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        chown(path, owner)
    }

    fn set_attrs(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
        self.changed(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        chown(path, owner)
    }

    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        let tmp = self.temp_name(path);
        symlink(target, &tmp)?;
        self.changed(path)?;
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let res = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
            Err(e) => Err(e),
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Ok(()) => self.changed(path),
            Err(e) => {
                // Part of a folder may be gone: that is a change to make durable too.
                let _ = self.changed(path);
                Err(e)
            }
        }
    }

    fn copy_tree(&self, from: &Path, to: &Path) -> io::Result<Copied> {
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
        }
        if !fs::metadata(from)?.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        check_room(to.parent().unwrap_or(Path::new("/")), tree_bytes(from)?)?;
        let mut copied = Copied::default();
        let mut first_error = None;
        let result = copy_walk(from, to, &mut copied, &mut |p| {
            if first_error.is_none()
                && let Err(e) = self.changed(p)
            {
                first_error = Some(e);
            }
        });
        if let Err(e) = result {
            // Nothing was at `to` before: a half-made copy goes, so that no one takes it for
            // a whole one and a retry finds the name free.
            return Err(match fs::remove_dir_all(to) {
                Ok(()) => {
                    let _ = self.changed(to);
                    io::Error::new(
                        e.kind(),
                        format!("{e} (the partial copy at {} was removed)", to.display()),
                    )
                }
                Err(r) if r.kind() == io::ErrorKind::NotFound => e,
                Err(r) => {
                    let _ = self.changed(to);
                    io::Error::new(
                        e.kind(),
                        format!("{e}; the partial copy at {} is left: {r}", to.display()),
                    )
                }
            });
        }
        first_error.map_or(Ok(copied), Err)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
        }
        fs::rename(from, to)?;
        self.changed(from)?;
        self.changed(to)
    }

    fn sync(&self) -> io::Result<()> {
        // Taken first: a failed sync is reported, and the run stops on it.
        let unsynced = std::mem::take(&mut *self.unsynced.borrow_mut());
        for fd in unsynced.values() {
            nix::unistd::syncfs(fd)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Planned {
    Absent,
    Present { state: FileState, content: Option<Vec<u8>> },
}

/// A dry run's file system: reads see the real files under what the run has planned so far;
/// writes only change the plan.
#[derive(Debug, Default)]
pub struct PlannedFiles {
    real: RealFiles,
    plan: RefCell<HashMap<PathBuf, Planned>>,
}

impl PlannedFiles {
    fn planned(&self, path: &Path) -> Option<Planned> {
        let plan = self.plan.borrow();
        if let Some(p) = plan.get(path) {
            return Some(p.clone());
        }
        // A folder removed in the plan takes what was under it along.
        path.ancestors().skip(1).find_map(|a| match plan.get(a) {
            Some(Planned::Absent) => Some(Planned::Absent),
            _ => None,
        })
    }

    fn set(&self, path: &Path, p: Planned) {
        self.plan.borrow_mut().insert(path.to_path_buf(), p);
    }

    fn owner_now() -> Owner {
        Owner { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() }
    }
}

impl Files for PlannedFiles {
    fn reads_disk(&self) -> bool {
        false
    }

    /// Nothing planned is on disk, so there is nothing to sync.
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn state(&self, path: &Path) -> io::Result<Option<FileState>> {
        match self.planned(path) {
            Some(Planned::Absent) => Ok(None),
            Some(Planned::Present { state, .. }) => Ok(Some(state)),
            None => self.real.state(path),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match self.planned(path) {
            Some(Planned::Absent) => Ok(None),
            Some(Planned::Present { content, .. }) => Ok(content),
            None => self.real.read(path),
        }
    }

    fn digest(&self, path: &Path) -> io::Result<Option<[u8; 32]>> {
        match self.planned(path) {
            Some(Planned::Absent) => Ok(None),
            Some(Planned::Present { content, .. }) => Ok(content
                .map(|c| sha256_bytes(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &c).as_ref()))),
            None => self.real.digest(path),
        }
    }

    fn list(&self, path: &Path) -> io::Result<Option<Vec<String>>> {
        let mut names = match self.planned(path) {
            Some(Planned::Absent) => return Ok(None),
            Some(Planned::Present { state, .. }) if state.kind != FileKind::Dir => {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
            // A folder the plan made may be one the disk has too (made again after a removal).
            Some(Planned::Present { .. }) => self.real.list(path)?.unwrap_or_default(),
            None => match self.real.list(path)? {
                Some(names) => names,
                None => return Ok(None),
            },
        };
        for (p, planned) in self.plan.borrow().iter() {
            if p.parent() != Some(path) {
                continue;
            }
            let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
            match planned {
                Planned::Absent => names.retain(|n| *n != name),
                Planned::Present { .. } if !names.contains(&name) => names.push(name),
                Planned::Present { .. } => {}
            }
        }
        names.sort();
        Ok(Some(names))
    }

    fn write(&self, path: &Path, content: &[u8], mode: u32, owner: Option<Owner>) -> io::Result<()> {
        let state = FileState {
            kind: FileKind::File,
            mode,
            owner: owner.unwrap_or_else(Self::owner_now),
            size: content.len() as u64,
            mtime_ns: now_ns(),
            link_target: None,
        };
        self.set(path, Planned::Present { state, content: Some(content.to_vec()) });
        Ok(())
    }

    fn mkdir(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
        let state = FileState {
            kind: FileKind::Dir,
            mode,
            owner: owner.unwrap_or_else(Self::owner_now),
            size: 0,
            mtime_ns: now_ns(),
            link_target: None,
        };
        self.set(path, Planned::Present { state, content: None });
        Ok(())
    }

    fn set_attrs(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
        let Some(mut state) = self.state(path)? else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        // Only a file has content to carry over (reading a folder fails).
        let content = if state.kind == FileKind::File { self.read(path)? } else { None };
        state.mode = mode;
        if let Some(o) = owner {
            state.owner = o;
        }
        self.set(path, Planned::Present { state, content });
        Ok(())
    }

    fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        let state = FileState {
            kind: FileKind::Symlink,
            mode: 0o777,
            owner: Self::owner_now(),
            size: 0,
            mtime_ns: now_ns(),
            link_target: Some(target.to_path_buf()),
        };
        self.set(path, Planned::Present { state, content: None });
        Ok(())
    }

    /// Plans the copy entry by entry, from what `from` holds (as planned over the disk), each
    /// with its state but without its content (an etcd data folder can be large): a later
    /// `exists` or `stat` under `to` in the same dry run sees the copy, a read of a copied
    /// file finds no content.
    fn copy_tree(&self, from: &Path, to: &Path) -> io::Result<Copied> {
        if self.state(to)?.is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
        }
        let Some(top) = self.state(from)? else { return Err(io::Error::from(io::ErrorKind::NotFound)) };
        if top.kind != FileKind::Dir {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        let mut copied = Copied::default();
        self.set(to, Planned::Present { state: top, content: None });
        let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
        while let Some((dir, into)) = pending.pop() {
            for name in self.list(&dir)?.unwrap_or_default() {
                let (path, copy) = (dir.join(&name), into.join(&name));
                let Some(state) = self.state(&path)? else { continue };
                match state.kind {
                    FileKind::Dir => pending.push((path, copy.clone())),
                    FileKind::File => {
                        copied.files += 1;
                        copied.bytes += state.size;
                    }
                    _ => copied.files += 1,
                }
                self.set(&copy, Planned::Present { state, content: None });
            }
        }
        Ok(copied)
    }

    /// Plans the move as a planned copy of `from` (a folder's entries without their content)
    /// and its removal.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.state(to)?.is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
        }
        let Some(state) = self.state(from)? else { return Err(io::Error::from(io::ErrorKind::NotFound)) };
        if state.kind == FileKind::Dir {
            self.copy_tree(from, to)?;
        } else {
            let content = if state.kind == FileKind::File { self.read(from)? } else { None };
            self.set(to, Planned::Present { state, content });
        }
        self.remove(from)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        // What the plan put under a removed folder goes with it.
        self.plan.borrow_mut().retain(|p, _| !p.starts_with(path));
        self.set(path, Planned::Absent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_write_is_atomic_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = RealFiles::new();
        let p = dir.path().join("a.key");
        f.write(&p, b"secret", 0o600, None).unwrap();
        let s = f.state(&p).unwrap().unwrap();
        assert_eq!((s.kind, s.mode, s.size), (FileKind::File, 0o600, 6));
        f.write(&p, b"other", 0o644, None).unwrap();
        assert_eq!(f.read(&p).unwrap().unwrap(), b"other");
        assert_eq!(f.state(&p).unwrap().unwrap().mode, 0o644);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A failed write leaves nothing either (the folder does not exist).
        assert!(f.write(&dir.path().join("no/such"), b"x", 0o644, None).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn digest_list_and_mtime_read_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let f = RealFiles::new();
        let p = dir.path().join("big");
        // More than one read buffer, so the chunks are hashed in order.
        let content: Vec<u8> = (0..3_000_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        fs::write(&p, &content).unwrap();
        let whole = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &content);
        assert_eq!(f.digest(&p).unwrap().unwrap().as_slice(), whole.as_ref());
        assert_eq!(f.digest(&dir.path().join("none")).unwrap(), None);
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 5);
        fs::File::options().write(true).open(&p).unwrap().set_modified(at).unwrap();
        assert_eq!(f.state(&p).unwrap().unwrap().mtime_ns, 1_600_000_000_000_000_005);
        fs::create_dir(dir.path().join("a")).unwrap();
        assert_eq!(f.list(dir.path()).unwrap().unwrap(), ["a", "big"]);
        assert_eq!(f.list(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn planned_digest_and_list_see_the_plan_over_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("kept"), b"disk").unwrap();
        fs::write(dir.path().join("removed"), b"disk").unwrap();
        let f = PlannedFiles::default();
        f.write(&dir.path().join("kept"), b"planned", 0o644, None).unwrap();
        f.write(&dir.path().join("added"), b"new", 0o644, None).unwrap();
        f.remove(&dir.path().join("removed")).unwrap();
        let sha = |b: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref().to_vec();
        assert_eq!(f.digest(&dir.path().join("kept")).unwrap().unwrap().to_vec(), sha(b"planned"));
        assert_eq!(f.digest(&dir.path().join("removed")).unwrap(), None);
        assert_eq!(f.list(dir.path()).unwrap().unwrap(), ["added", "kept"]);
        // A folder only the plan has, and one the plan removed.
        let sub = dir.path().join("sub");
        f.mkdir(&sub, 0o755, None).unwrap();
        f.write(&sub.join("x"), b"x", 0o644, None).unwrap();
        assert_eq!(f.list(&sub).unwrap().unwrap(), ["x"]);
        f.remove(&sub).unwrap();
        assert_eq!(f.list(&sub).unwrap(), None);
        assert!(f.list(&dir.path().join("kept")).is_err());
        // The disk is as it was.
        assert_eq!(fs::read(dir.path().join("kept")).unwrap(), b"disk");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// A real copy keeps modes, copies symlinks as links and binary content as it is, and
    /// refuses a destination that exists; a planned one shows the copy and writes nothing.
    #[test]
    fn copy_tree_copies_folders_and_plans_them_in_a_dry_run() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("data");
        fs::create_dir_all(from.join("member/snap")).unwrap();
        fs::write(from.join("member/snap/db"), [0u8, 159, 146, 150, 255]).unwrap();
        fs::set_permissions(from.join("member"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("snap/db", from.join("member/link")).unwrap();
        let real = RealFiles::new();
        let to = d.path().join("backup");
        let copied = real.copy_tree(&from, &to).unwrap();
        assert_eq!(copied, Copied { files: 2, bytes: 5 });
        assert_eq!(fs::read(to.join("member/snap/db")).unwrap(), [0u8, 159, 146, 150, 255]);
        assert_eq!(fs::metadata(to.join("member")).unwrap().permissions().mode() & 0o7777, 0o700);
        assert_eq!(fs::read_link(to.join("member/link")).unwrap(), Path::new("snap/db"));
        assert_eq!(real.copy_tree(&from, &to).unwrap_err().kind(), io::ErrorKind::AlreadyExists);

        // Something that is not a file, a folder or a symlink (a fifo) fails the copy, and
        // the half-made copy is removed.
        nix::unistd::mkfifo(&from.join("member/zz-fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap();
        let partial = d.path().join("partial");
        let err = real.copy_tree(&from, &partial).unwrap_err();
        assert!(err.to_string().contains("neither a file, a folder nor a symlink"), "{err}");
        assert!(err.to_string().contains("the partial copy at"), "{err}");
        assert!(!partial.exists(), "the partial copy is left");
        fs::remove_file(from.join("member/zz-fifo")).unwrap();

        let planned = PlannedFiles::default();
        let later = d.path().join("planned");
        assert_eq!(planned.copy_tree(&from, &later).unwrap(), Copied { files: 2, bytes: 5 });
        assert_eq!(planned.state(&later.join("member/snap/db")).unwrap().unwrap().size, 5);
        assert!(!later.exists(), "a dry run wrote the copy");
    }

    /// A copy larger than the destination's free space is refused before anything is copied.
    #[test]
    fn copy_tree_refuses_a_copy_the_file_system_has_no_room_for() {
        let d = tempfile::tempdir().unwrap();
        let st = nix::sys::statvfs::statvfs(d.path()).unwrap();
        let free = st.blocks_available() * st.fragment_size();
        // Twice what is free: other work on the machine may free some meanwhile, not that much.
        let err = check_room(d.path(), free.saturating_mul(2)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("nothing copied"), "{err}");
        check_room(d.path(), 0).unwrap();
    }

    /// A real rename moves a folder with its content and refuses a destination that exists;
    /// a planned one shows the folder moved and leaves the disk alone.
    #[test]
    fn rename_moves_and_plans_a_move() {
        let d = tempfile::tempdir().unwrap();
        let from = d.path().join("member");
        fs::create_dir_all(from.join("snap")).unwrap();
        fs::write(from.join("snap/db"), b"db").unwrap();
        fs::create_dir(d.path().join("taken")).unwrap();
        let real = RealFiles::new();
        assert_eq!(
            real.rename(&from, &d.path().join("taken")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );

        let planned = PlannedFiles::default();
        let later = d.path().join("planned");
        planned.rename(&from, &later).unwrap();
        assert_eq!(planned.state(&later.join("snap/db")).unwrap().unwrap().size, 2);
        assert!(planned.state(&from).unwrap().is_none());
        assert!(from.join("snap/db").exists() && !later.exists(), "a dry run moved it");

        let to = d.path().join("moved");
        real.rename(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("snap/db")).unwrap(), b"db");
        assert!(!from.exists());
        real.sync().unwrap();
    }

    #[test]
    fn planned_files_never_touch_disk() {
        let dir = tempfile::tempdir().unwrap();
        let f = PlannedFiles::default();
        let p = dir.path().join("x");
        f.mkdir(&p, 0o755, None).unwrap();
        f.write(&p.join("y"), b"hi", 0o644, None).unwrap();
        assert_eq!(f.read(&p.join("y")).unwrap().unwrap(), b"hi");
        f.remove(&p).unwrap();
        assert!(f.read(&p.join("y")).unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
