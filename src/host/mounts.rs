//! Mounts: the mount table of this host, and unmounting (reset unmounts what the kubelet
//! mounted under /var/lib/kubelet before removing its files, as kubeadm's cleanup-node does).

use std::io;
use std::path::{Path, PathBuf};

/// What an unmount did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted now.
    Done,
    /// Recorded, not done (rendering, dry runs): the host's mounts are never touched then.
    Recorded,
}

/// The mount table and `umount`, as reset uses them.
pub trait Mounts {
    /// The mount points strictly below host folder `dir` in this process's mount table
    /// (/proc/self/mountinfo), deepest first: the order they can be unmounted in. A mount
    /// point stacked twice is listed twice.
    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Unmounts host path `path` (the topmost mount there).
    fn unmount(&self, path: &Path) -> io::Result<Unmounted>;
}

/// The mount table of this host, read from /proc/self/mountinfo; unmounts for real.
#[derive(Debug, Default)]
pub struct RealMounts;

/// The mount table read as the real side does (reading changes nothing), unmounts recorded:
/// a render or a dry run never unmounts anything on the host.
#[derive(Debug, Default)]
pub struct RecordingMounts;

fn read_table() -> io::Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read /proc/self/mountinfo: {e}")))
}

impl Mounts for RealMounts {
    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(under(&mount_points(&read_table()?), dir))
    }

    fn unmount(&self, path: &Path) -> io::Result<Unmounted> {
        nix::mount::umount2(path, nix::mount::MntFlags::empty()).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("umount {}: {e}", path.display()))
        })?;
        Ok(Unmounted::Done)
    }
}

impl Mounts for RecordingMounts {
    fn mounts_under(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(under(&mount_points(&read_table()?), dir))
    }

    fn unmount(&self, _path: &Path) -> io::Result<Unmounted> {
        Ok(Unmounted::Recorded)
    }
}

/// The mount points of a mountinfo table, in its order. Each line is `ID PARENT MAJ:MIN ROOT
/// MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPEROPTIONS`; the mount point has space, tab,
/// newline and backslash escaped in octal (`\040`). Lines too short to have one are passed over.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect()
}

/// A mountinfo field with its octal escapes (`\040`) decoded.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let n = bytes[i + 1..i + 4].iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(n) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points of `points` strictly below `dir`, deepest first (more path components
/// first; among equals, later in the table first, so stacked mounts come off top first).
pub fn under(points: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(usize, usize, PathBuf)> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.starts_with(dir) && *p != dir)
        .map(|(i, p)| (p.components().count(), i, p.clone()))
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    found.into_iter().map(|(_, _, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mountinfo table as the kernel prints it, with the kubelet's mounts: a Pod's secret
    /// volume (tmpfs), a projected token, a mount point with a space, a mount stacked twice,
    /// and folders that only share a prefix with /var/lib/kubelet.
    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
40 22 8:2 / /var/lib/kubelet rw,relatime shared:20 - ext4 /dev/sda2 rw
41 40 0:50 / /var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~secret/tls rw,relatime shared:21 - tmpfs tmpfs rw,size=1024k
42 40 0:51 / /var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~projected/kube-api-access-x rw,relatime shared:22 - tmpfs tmpfs rw
43 40 0:52 / /var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~empty-dir/a\\040b rw shared:23 - tmpfs tmpfs rw
44 40 0:53 / /var/lib/kubelet/plugins rw shared:24 - tmpfs tmpfs rw
45 44 0:54 / /var/lib/kubelet/plugins rw shared:25 - tmpfs tmpfs rw
46 22 0:55 / /var/lib/kubelet-other/x rw shared:26 - tmpfs tmpfs rw
47 22 0:56 / /var/lib/kubeletx rw shared:27 - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_is_parsed_with_its_escapes() {
        let points = mount_points(TABLE);
        assert_eq!(points.len(), 10);
        assert_eq!(points[0], Path::new("/"));
        assert_eq!(points[5], Path::new("/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~empty-dir/a b"));
        assert_eq!(unescape(r"tab\011nl\012bs\134end\04"), "tab\tnl\nbs\\end\\04");
        assert!(mount_points("torn line\n").is_empty());
    }

    /// Deepest first, stacked mounts top first; the folder itself and its namesakes are not
    /// below it.
    #[test]
    fn mounts_below_a_folder_come_deepest_first() {
        let found = under(&mount_points(TABLE), Path::new("/var/lib/kubelet"));
        let shown: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~empty-dir/a b",
                "/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~projected/kube-api-access-x",
                "/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~secret/tls",
                "/var/lib/kubelet/plugins",
                "/var/lib/kubelet/plugins",
            ]
        );
        assert!(under(&mount_points(TABLE), Path::new("/srv")).is_empty());
    }

    /// The recording side reads the real table but never unmounts: `/proc` under `/` is
    /// listed, and "unmounting" it only records.
    #[test]
    fn the_recording_side_lists_and_never_unmounts() {
        let m = RecordingMounts;
        let listed = m.mounts_under(Path::new("/")).unwrap();
        assert!(listed.iter().any(|p| p == Path::new("/proc")), "{listed:?}");
        assert_eq!(m.unmount(Path::new("/proc")).unwrap(), Unmounted::Recorded);
        assert!(Path::new("/proc/self").exists());
    }
}
