//! The node root: every path a script names goes through here.
//!
//! Scripts speak in node paths (`/etc/kubernetes/pki/ca.crt`). A [`NodeRoot`] maps them to
//! host paths under the root folder (`/` on a real host, the `--root` folder when rendering)
//! and refuses any path whose resolution would leave that folder: a `..` that climbs above
//! the root, a symlink (absolute or relative, alone or in a chain) whose target lies outside
//! it, or a chain too long to follow. Symlinks are followed the way the kernel would follow
//! them when the file is opened, so what is checked is what would be touched.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// Why a node path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("`{path}` is not an absolute node path: node paths start with `/`")]
    NotAbsolute { path: String },
    #[error("`{path}` is empty or holds a NUL byte")]
    Invalid { path: String },
    #[error("`{path}` escapes the node root: `..` climbs above `/`")]
    DotDotEscape { path: String },
    #[error("`{path}` escapes the node root: symlink `{link}` points to `{target}`, outside {root}")]
    SymlinkEscape { path: String, link: String, target: String, root: String },
    #[error("`{path}` cannot be resolved: more than {MAX_SYMLINKS} symlinks to follow")]
    SymlinkLoop { path: String },
    #[error("`{path}` cannot be resolved: {message}")]
    Io { path: String, message: String },
}

/// A node path resolved inside the root.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The node path as the node sees it, normalised (`/etc/x`), after following symlinks.
    pub node: String,
    /// The host path to open.
    pub host: PathBuf,
    /// What the walk saw at the final component: `None` if it did not look (the last
    /// component of a no-follow resolution), `Some(None)` if nothing was there.
    pub seen: Option<Option<fs::Metadata>>,
    /// Whether the walk saw every folder above the final component exist as a folder.
    pub parent_is_dir: bool,
}

impl PartialEq for Resolved {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node && self.host == other.host
    }
}

impl Eq for Resolved {}

/// The folder that stands for `/` of the node.
#[derive(Debug, Clone)]
pub struct NodeRoot {
    host: PathBuf,
}

impl NodeRoot {
    /// A root at `dir`, which must exist; it is canonicalised so later checks compare real paths.
    pub fn new(dir: &Path) -> io::Result<Self> {
        Ok(Self { host: fs::canonicalize(dir)? })
    }

    /// A root at `dir` that may not exist yet (a dry run creates nothing): the deepest
    /// existing ancestor is canonicalised and the rest appended.
    pub fn new_lenient(dir: &Path) -> io::Result<Self> {
        let abs = std::path::absolute(dir)?;
        let mut missing = Vec::new();
        let mut cur = abs.as_path();
        loop {
            if let Ok(real) = fs::canonicalize(cur) {
                let mut host = real;
                for part in missing.iter().rev() {
                    host.push(part);
                }
                return Ok(Self { host });
            }
            match (cur.parent(), cur.file_name()) {
                (Some(parent), Some(name)) => {
                    missing.push(name.to_os_string());
                    cur = parent;
                }
                _ => return Err(io::Error::from(io::ErrorKind::NotFound)),
            }
        }
    }

    /// The canonical host folder of this root.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Whether this root is the host's own `/`.
    pub fn is_host_root(&self) -> bool {
        self.host == Path::new("/")
    }

    /// Resolves `path`, following every symlink including the last component.
    pub fn resolve(&self, path: &str) -> Result<Resolved, RootError> {
        self.resolve_impl(path, true)
    }

    /// Resolves `path`, following symlinks in the parent folders but not the last component
    /// (for creating, reading or removing a symlink itself).
    pub fn resolve_nofollow(&self, path: &str) -> Result<Resolved, RootError> {
        self.resolve_impl(path, false)
    }

    /// The node path of a host path under this root, if it is under it.
    pub fn node_path_of(&self, host: &Path) -> Option<String> {
        let rel = host.strip_prefix(&self.host).ok()?;
        Some(node_string(rel.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })))
    }

    fn resolve_impl(&self, path: &str, follow_last: bool) -> Result<Resolved, RootError> {
        if path.is_empty() || path.contains('\0') {
            return Err(RootError::Invalid { path: path.into() });
        }
        if !path.starts_with('/') {
            return Err(RootError::NotAbsolute { path: path.into() });
        }
        // Components still to walk, and the components of the real path walked so far.
        let mut pending: VecDeque<OsString> = split(Path::new(path));
        let mut done: Vec<OsString> = Vec::new();
        // What was seen at each component of `done` (see `Resolved::seen`).
        let mut seen: Vec<Option<Option<fs::Metadata>>> = Vec::new();
        let mut hops = 0usize;
        // Once a component does not exist, nothing below it can be a symlink.
        let mut exists = true;
        while let Some(comp) = pending.pop_front() {
            if comp == ".." {
                if done.pop().is_none() {
                    return Err(RootError::DotDotEscape { path: path.into() });
                }
                seen.pop();
                // Back in a folder the walk saw (or the root): what is below it is unknown again.
                exists = seen.last().is_none_or(|s| matches!(s, Some(Some(_))));
                continue;
            }
            done.push(comp);
            let is_last = pending.is_empty();
            if is_last && !follow_last {
                seen.push(None);
                continue;
            }
            if !exists {
                seen.push(Some(None));
                continue;
            }
            let host = self.host_of(&done);
            let meta = match fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    exists = false;
                    seen.push(Some(None));
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                    exists = false;
                    seen.push(Some(None));
                    continue;
                }
                Err(e) => {
                    return Err(RootError::Io { path: path.into(), message: e.to_string() });
                }
            };
            if !meta.file_type().is_symlink() {
                seen.push(Some(Some(meta)));
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINKS {
                return Err(RootError::SymlinkLoop { path: path.into() });
            }
            let target = fs::read_link(&host)
                .map_err(|e| RootError::Io { path: path.into(), message: e.to_string() })?;
            let link = node_string(done.iter().cloned());
            done.pop();
            // (`seen` has no entry for the link itself: it was never pushed.)
            let mut next = split(&target);
            if target.is_absolute() {
                // The kernel follows an absolute target from the host's `/`: it stays inside
                // only if it names a place under the root folder.
                let inside = self.host_relative(&target).ok_or_else(|| RootError::SymlinkEscape {
                    path: path.into(),
                    link: link.clone(),
                    target: target.display().to_string(),
                    root: self.host.display().to_string(),
                })?;
                done.clear();
                seen.clear();
                next = inside;
            } else if escapes(&done, &next) {
                return Err(RootError::SymlinkEscape {
                    path: path.into(),
                    link,
                    target: target.display().to_string(),
                    root: self.host.display().to_string(),
                });
            }
            for c in next.into_iter().rev() {
                pending.push_front(c);
            }
        }
        let n = seen.len();
        let parent_is_dir = n <= 1 || seen[..n - 1].iter().all(|s| matches!(s, Some(Some(m)) if m.is_dir()));
        Ok(Resolved {
            node: node_string(done.iter().cloned()),
            host: self.host_of(&done),
            seen: seen.pop().flatten(),
            parent_is_dir,
        })
    }

    /// Components under the root of an absolute host path, if it lies under the root.
    fn host_relative(&self, target: &Path) -> Option<VecDeque<OsString>> {
        // Normalise `..` lexically first: `/root/dir/../../etc` must not pass as "under root".
        let mut parts: Vec<OsString> = Vec::new();
        for c in target.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_os_string()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        let root_parts = split(&self.host);
        if parts.len() < root_parts.len() || !parts.iter().zip(&root_parts).all(|(a, b)| a == b) {
            return None;
        }
        Some(parts.into_iter().skip(root_parts.len()).collect())
    }

    fn host_of(&self, comps: &[OsString]) -> PathBuf {
        let mut p = self.host.clone();
        for c in comps {
            p.push(c);
        }
        p
    }
}

/// Whether walking `rel` (a relative symlink target) from `base` climbs above the root.
fn escapes(base: &[OsString], rel: &VecDeque<OsString>) -> bool {
    let mut depth = base.len();
    for c in rel {
        if c == ".." {
            if depth == 0 {
                return true;
            }
            depth -= 1;
        } else {
            depth += 1;
        }
    }
    false
}

fn split(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn node_string(comps: impl Iterator<Item = OsString>) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c.as_bytes()));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, NodeRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn plain_paths_map_under_root() {
        let (_d, r) = root();
        let got = r.resolve("/etc/kubernetes/pki/ca.crt").unwrap();
        assert_eq!(got.node, "/etc/kubernetes/pki/ca.crt");
        assert_eq!(got.host, r.host().join("etc/kubernetes/pki/ca.crt"));
        assert_eq!(r.resolve("/a/./b/../c").unwrap().node, "/a/c");
        assert_eq!(r.resolve("/").unwrap().node, "/");
    }

    #[test]
    fn dotdot_above_root_is_refused() {
        let (_d, r) = root();
        assert!(matches!(r.resolve("/.."), Err(RootError::DotDotEscape { .. })));
        assert!(matches!(r.resolve("/a/../../b"), Err(RootError::DotDotEscape { .. })));
        assert!(matches!(r.resolve("relative"), Err(RootError::NotAbsolute { .. })));
    }

    #[test]
    fn symlinks_inside_are_followed_and_outside_refused() {
        let (_d, r) = root();
        fs::create_dir_all(r.host().join("usr/lib")).unwrap();
        symlink("usr/lib", r.host().join("lib")).unwrap();
        assert_eq!(r.resolve("/lib/x").unwrap().node, "/usr/lib/x");
        symlink("/etc", r.host().join("evil")).unwrap();
        assert!(matches!(r.resolve("/evil/passwd"), Err(RootError::SymlinkEscape { .. })));
        // Not following the last component leaves the link itself addressable.
        assert_eq!(r.resolve_nofollow("/evil").unwrap().node, "/evil");
        symlink(r.host().join("usr"), r.host().join("abs-inside")).unwrap();
        assert_eq!(r.resolve("/abs-inside/lib").unwrap().node, "/usr/lib");
        symlink("loop", r.host().join("loop")).unwrap();
        assert!(matches!(r.resolve("/loop"), Err(RootError::SymlinkLoop { .. })));
    }

    #[test]
    fn host_root_never_escapes() {
        let r = NodeRoot::new(Path::new("/")).unwrap();
        assert!(r.is_host_root());
        assert_eq!(r.resolve("/tmp").unwrap().host, PathBuf::from("/tmp"));
    }
}
