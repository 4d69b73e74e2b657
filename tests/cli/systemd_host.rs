//! A real systemd host for tests: a Debian 12 root file system booted by systemd-nspawn with
//! systemd as PID 1. The real kscript binary runs inside it (`nsenter` into the container),
//! with no `--root`: its real run changes the container through systemctl, apt and the CRI
//! socket, as on a node.
//!
//! The root file system is built once by debootstrap (minbase, systemd, dbus, procps, kmod)
//! and kept under `/var/tmp/kscript-test-rootfs-<recipe hash>` with a `ready` marker, so that
//! reruns, and other checkouts on the same machine, reuse it; a build is serialised by a lock
//! file. Each [`Node`] boots an overlay of it whose writes go to the test's temporary folder,
//! so tests never change it and run side by side.
//!
//! Cgroups: a systemd manager started in a cgroup root adopts every process of that cgroup
//! (on the project's machines, every process of the machine). So nspawn starts in a child
//! cgroup of the test's own cgroup, in every hierarchy, which the Node makes and removes.
//! Dropping a Node, also when the test panics, powers the container off (SIGTERM to nspawn),
//! kills by PID whatever is still in those cgroups, removes them and unmounts the overlay. If
//! the test process itself is killed, nspawn gets SIGTERM (its parent-death signal) and the
//! container powers off; the next run removes the empty cgroups and the overlay it left.

use std::fs::{self, File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Run;
use super::cri::folders_deepest_first;

/// What the root file system holds besides debootstrap's minbase: systemd as init, D-Bus, and
/// what every real node has and stage 1 runs (`sysctl` of procps, `modprobe` of kmod).
const PACKAGES: &[&str] = &["systemd", "systemd-sysv", "dbus", "procps", "kmod"];
const SUITE: &str = "bookworm";

/// Where debootstrap downloads from; `KSCRIPT_TEST_DEBIAN_MIRROR` overrides it.
fn mirror() -> String {
    std::env::var("KSCRIPT_TEST_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// The programs the harness runs on the test machine, and the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("umount", "mount"),
];

/// PATH inside the container.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fails the test, saying what to install, unless every tool is there and we are root.
#[track_caller]
fn require_tools() {
    super::require_tools(
        TOOLS,
        "the systemd tests boot a Debian container with systemd-nspawn",
        "the systemd tests boot containers, which needs root",
    );
}

/// The recipe of a root file system, and a short stable hash of it (FNV-1a) that names its
/// folder: a changed recipe builds a new folder instead of changing one that a running test
/// may have under its overlay.
fn recipe(suite: &str, packages: &[&str]) -> (String, String) {
    let text = if packages.is_empty() {
        format!("debootstrap --variant=minbase {suite}\n")
    } else {
        format!("debootstrap --variant=minbase --include={} {suite}\n", packages.join(","))
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (text, format!("{:08x}", hash >> 32))
}

/// The root file system, built on first use (a few minutes: debootstrap downloads ~110
/// packages) and reused afterwards.
fn rootfs() -> PathBuf {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        require_tools();
        debootstrap_root(SUITE, PACKAGES, "usr/lib/systemd/systemd")
    })
    .clone()
}

/// A Debian `suite` root file system (minbase and `packages`), built by debootstrap into
/// `/var/tmp/kscript-test-rootfs-<recipe hash>/root` on first use and reused afterwards, by
/// this and other test processes: a build is serialised by a lock file and the tree is
/// renamed into place whole, with a `ready` marker; `check` is a file the finished tree has.
/// Tests never change it: they work in an overlay of it, or a copy.
pub(super) fn debootstrap_root(suite: &str, packages: &[&str], check: &str) -> PathBuf {
    let (text, hash) = recipe(suite, packages);
    let home = PathBuf::from(format!("/var/tmp/kscript-test-rootfs-{hash}"));
    fs::create_dir_all(&home).unwrap();
    // Other test processes (another checkout, a CI clone) may build it at the same time.
    let lock = File::create(home.join("lock")).unwrap();
    lock.lock().unwrap();
    let tree = home.join("root");
    let marker = home.join("ready");
    if marker.is_file() && tree.join(check).exists() {
        return tree;
    }
    // A build killed half-way, or a tree without its marker: start again.
    let partial = home.join("root.partial");
    for old in [&partial, &tree] {
        if old.exists() {
            fs::remove_dir_all(old).unwrap();
        }
    }
    let start = Instant::now();
    let log = home.join("debootstrap.log");
    let mut command = Command::new("debootstrap");
    command.arg("--variant=minbase");
    if !packages.is_empty() {
        command.arg(format!("--include={}", packages.join(",")));
    }
    let status = command
        .arg(suite)
        .arg(&partial)
        .arg(mirror())
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(home.join("debootstrap.err")).unwrap())
        .status()
        .expect("debootstrap runs");
    if !status.success() {
        let out = fs::read_to_string(&log).unwrap_or_default();
        let err = fs::read_to_string(home.join("debootstrap.err")).unwrap_or_default();
        let tail: Vec<&str> = out.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "debootstrap {suite} into {} failed ({status}); it needs network access to {}\n{}\n{err}",
            partial.display(),
            mirror(),
            tail.join("\n")
        );
    }
    // The packages debootstrap downloaded are not needed any more (~40 MB).
    for deb in fs::read_dir(partial.join("var/cache/apt/archives")).into_iter().flatten().flatten() {
        if deb.path().extension().is_some_and(|e| e == "deb") {
            let _ = fs::remove_file(deb.path());
        }
    }
    fs::rename(&partial, &tree).unwrap();
    let took = start.elapsed();
    fs::write(&marker, format!("{text}built in {:.1}s\n", took.as_secs_f64())).unwrap();
    eprintln!("built the test root file system {} in {:.1}s", tree.display(), took.as_secs_f64());
    tree
}

/// The test process's own cgroup in each hierarchy, as a folder: the paths of
/// /proc/self/cgroup under the cgroup mounts of /proc/self/mountinfo (each v1 controller, the
/// v2 tree of a hybrid layout, or the one v2 tree). cpuset is left out: a v1 cpuset child
/// takes no process before its cpus and mems are set, and nspawn does not need it.
fn own_cgroups() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // (file system type, super options, mount point) of each cgroup mount at its root.
    let mounts: Vec<(String, Vec<String>, PathBuf)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (root, point, fstype) = (*fields.get(3)?, *fields.get(4)?, *right.first()?);
            let opts = right.get(2).map(|o| o.split(',').map(String::from).collect()).unwrap_or_default();
            (root == "/" && (fstype == "cgroup" || fstype == "cgroup2"))
                .then(|| (fstype.to_string(), opts, PathBuf::from(point)))
        })
        .collect();
    let mut out = Vec::new();
    for line in fs::read_to_string("/proc/self/cgroup").unwrap().lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let first = controllers.split(',').next().unwrap_or_default();
        if first == "cpuset" {
            continue;
        }
        let mount = mounts.iter().find(|(fstype, opts, _)| {
            if controllers.is_empty() {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup" && opts.iter().any(|o| o == first)
            }
        });
        if let Some((_, _, point)) = mount {
            let dir = point.join(path.trim_start_matches('/'));
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    assert!(!out.is_empty(), "no cgroup hierarchy found in /proc/self/mountinfo");
    out
}

/// Whether `pid` is gone or a zombie.
fn dead(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// The parent PID of `pid`, from /proc.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// Whether the mount table of this process has something mounted at `point`.
fn is_mounted(point: &Path) -> bool {
    let point = point.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(point.as_str()))
}

/// The name prefix of everything a Node makes on the machine (cgroups, temporary folders),
/// followed by the test process's PID, so that leftovers of a killed run can be told apart.
const PREFIX: &str = "kscript-node-";

/// Leftovers of test processes that were killed before their Nodes could clean up: empty
/// cgroups, overlays and temporary folders named after a process that no longer runs. A
/// container still running is left alone with its folder (its nspawn got SIGTERM when the
/// test died, and it powers off on its own); nothing is killed.
fn sweep_leftovers_of_killed_runs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let gone_owner = |name: &str| {
            name.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok())
                .filter(|pid| *pid != std::process::id().cast_signed() && dead(*pid))
        };
        let mut busy = Vec::new();
        for top in own_cgroups() {
            for entry in fs::read_dir(&top).into_iter().flatten().flatten() {
                if let Some(owner) = gone_owner(&entry.file_name().to_string_lossy()) {
                    for d in folders_deepest_first(&entry.path()) {
                        let _ = fs::remove_dir(d);
                    }
                    if entry.path().exists() {
                        busy.push(owner);
                    }
                }
            }
        }
        for entry in fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            if let Some(owner) = gone_owner(&entry.file_name().to_string_lossy())
                && !busy.contains(&owner)
            {
                let merged = entry.path().join("merged");
                if is_mounted(&merged) {
                    let _ = Command::new("umount").arg(&merged).stderr(Stdio::null()).status();
                }
                if !is_mounted(&merged) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}

/// A booted container: Debian 12 with systemd as PID 1, the kscript binary at
/// /usr/local/bin/kscript (read-only) and the test's work folder at /mnt/work.
pub(super) struct Node {
    /// The machine name (also the container's host name), unique on the machine.
    pub name: String,
    dir: Option<tempfile::TempDir>,
    /// The container's root as the host sees it (the overlay).
    merged: PathBuf,
    mounted: bool,
    nspawn: Option<Child>,
    /// The container's PID 1, as the host numbers it.
    leader: i32,
    /// The child cgroup nspawn runs in, in each hierarchy.
    cgroups: Vec<PathBuf>,
}

/// What a Node has on the machine, for a look after it is gone.
#[derive(Debug, Clone)]
pub(super) struct Footprint {
    pub nspawn: i32,
    pub leader: i32,
    /// Every process in its cgroups (the container's, as the host numbers them).
    pub processes: Vec<i32>,
    pub cgroups: Vec<PathBuf>,
    pub merged: PathBuf,
    pub dir: PathBuf,
}

impl Footprint {
    /// What of it is still there: live processes, cgroup folders, the overlay, the folder.
    pub(super) fn left(&self) -> Vec<String> {
        let mut left: Vec<String> = [self.nspawn, self.leader]
            .iter()
            .chain(&self.processes)
            .filter(|p| !dead(**p))
            .map(|p| format!("process {p}"))
            .collect();
        left.extend(self.cgroups.iter().filter(|c| c.exists()).map(|c| format!("cgroup {}", c.display())));
        if is_mounted(&self.merged) {
            left.push(format!("mount {}", self.merged.display()));
        }
        if self.dir.exists() {
            left.push(format!("folder {}", self.dir.display()));
        }
        left
    }
}

impl Node {
    /// Boots a new container from the shared root file system, in the machine's network
    /// namespace; waits until systemd reports `running` (or `degraded`).
    pub(super) fn boot() -> Self {
        Self::boot_with(false)
    }

    /// Boots a new container with a network namespace of its own (nspawn's
    /// `--private-network`: only a loopback): what listens in it cannot collide with the ports
    /// of the machine or of other tests, nor they with it.
    pub(super) fn boot_private_network() -> Self {
        Self::boot_with(true)
    }

    fn boot_with(private_network: bool) -> Self {
        require_tools();
        let tree = rootfs();
        sweep_leftovers_of_killed_runs();
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let name = format!("kst-{pid}-{}", COUNT.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new().prefix(&format!("{PREFIX}{pid}-")).tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        for sub in ["upper", "overlay-work", "merged", "work", "containerd"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        let merged = base.join("merged");
        let mut node = Self {
            name,
            dir: Some(dir),
            merged,
            mounted: false,
            nspawn: None,
            leader: 0,
            cgroups: Vec::new(),
        };
        // From here on, a panic cleans up what is made so far.
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                tree.display(),
                base.join("upper").display(),
                base.join("overlay-work").display()
            ))
            .arg(&node.merged)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting the overlay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        node.mounted = true;
        node.start_nspawn(&base, private_network);
        node.wait_running();
        node
    }

    fn start_nspawn(&mut self, base: &Path, private_network: bool) {
        let cgroup_name = format!("{PREFIX}{}-{}", std::process::id(), self.name);
        let mut procs = Vec::new();
        for top in own_cgroups() {
            let d = top.join(&cgroup_name);
            fs::create_dir(&d).unwrap_or_else(|e| panic!("cannot make cgroup {}: {e}", d.display()));
            self.cgroups.push(d.clone());
            procs.push(OpenOptions::new().write(true).open(d.join("cgroup.procs")).unwrap());
        }
        let kscript = fs::canonicalize(env!("CARGO_BIN_EXE_kscript")).unwrap();
        let bind = |flag: &str, host: &Path, inside: &str| {
            let host = host.to_str().unwrap();
            assert!(!host.contains(':'), "nspawn cannot bind a path with a colon: {host}");
            format!("--{flag}={host}:{inside}")
        };
        let log = File::create(base.join("nspawn.log")).unwrap();
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("-D")
            .arg(&self.merged)
            .args(["-M", &self.name, "--boot", "--register=no", "--keep-unit", "--console=pipe"])
            .arg(bind("bind-ro", &kscript, "/usr/local/bin/kscript"))
            .arg(bind("bind", &base.join("work"), "/mnt/work"))
            // containerd's overlayfs snapshotter mounts overlays with their upper layer under
            // /var/lib/containerd, and the kernel refuses an overlay there ("not supported as
            // upperdir"): a plain folder of the host's instead.
            .arg(bind("bind", &base.join("containerd"), "/var/lib/containerd"))
            .args(private_network.then_some("--private-network"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: between fork and exec only async-signal-safe calls: write(2) to files opened
        // before the fork, and prctl(2).
        unsafe {
            cmd.pre_exec(move || {
                // Into the child cgroups first (the hazard above), then: die with the test.
                for f in &procs {
                    nix::unistd::write(f, b"0")?;
                }
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("systemd-nspawn starts");
        let nspawn = child.id().cast_signed();
        self.nspawn = Some(child);
        // The leader is nspawn's child in a PID namespace of its own.
        let own_ns = fs::read_link("/proc/self/ns/pid").unwrap();
        let start = Instant::now();
        loop {
            self.check_nspawn_runs();
            let found = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                (parent_of(pid) == Some(nspawn)
                    && fs::read_link(format!("/proc/{pid}/ns/pid")).ok()? != own_ns)
                    .then_some(pid)
            });
            if let Some(pid) = found {
                self.leader = pid;
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nspawn started no container in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[track_caller]
    fn check_nspawn_runs(&mut self) {
        if let Some(status) = self.nspawn.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("systemd-nspawn exited ({status}):\n{}", self.log());
        }
    }

    fn wait_running(&mut self) {
        let start = Instant::now();
        loop {
            self.check_nspawn_runs();
            let out = self.exec(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "systemd in {} is `{state}` after 60 s:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// nspawn's output: the container's console.
    pub(super) fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| fs::read_to_string(d.path().join("nspawn.log")).ok())
            .unwrap_or_default()
    }

    /// The host folder bound at /mnt/work in the container.
    pub(super) fn work(&self) -> PathBuf {
        self.dir.as_ref().unwrap().path().join("work")
    }

    /// Writes a file into the work folder; returns its path inside the container.
    pub(super) fn write(&self, name: &str, text: &str) -> String {
        let p = self.work().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        format!("/mnt/work/{name}")
    }

    /// A container path as the host sees it (through the overlay), for reading.
    pub(super) fn path(&self, inside: &str) -> PathBuf {
        self.merged.join(inside.trim_start_matches('/'))
    }

    /// `args` run inside the container, in /mnt/work, with a clean environment.
    pub(super) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a"])
            .args([
                "env",
                "-i",
                "-C",
                "/mnt/work",
                &format!("PATH={PATH}"),
                "LANG=C.UTF-8",
                "HOME=/root",
                "NO_COLOR=1",
            ])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// A program of the test machine run in the container's network namespace only (its
    /// other namespaces, its files and its process numbers are the machine's): `ss` of the
    /// machine, looking at the container's sockets.
    pub(super) fn in_network(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-n", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub(super) fn exec(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A shell command inside; fails the test unless it succeeds; its stdout, trimmed.
    #[track_caller]
    pub(super) fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` in {} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `systemctl show UNIT -p ...` inside, as `(property, value)` pairs in the order asked.
    pub(super) fn show(&self, unit: &str, properties: &[&str]) -> Vec<(String, String)> {
        let out = self.exec(&["systemctl", "show", unit, "-p", &properties.join(",")]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        properties
            .iter()
            .map(|p| {
                let value = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{p}=")))
                    .unwrap_or_else(|| panic!("systemctl show {unit} has no {p}:\n{text}"));
                ((*p).to_string(), value.to_string())
            })
            .collect()
    }

    /// One property of `systemctl show`.
    pub(super) fn property(&self, unit: &str, property: &str) -> String {
        self.show(unit, &[property]).remove(0).1
    }

    /// `kscript ARGS...` inside the container, in /mnt/work: a real run changes the container.
    pub(super) fn kscript(&self, args: &[&str]) -> Run {
        let mut all = vec!["kscript"];
        all.extend_from_slice(args);
        Run::from(&self.exec(&all))
    }

    /// Every process in the Node's cgroups, as the host numbers them.
    fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for top in &self.cgroups {
            for d in folders_deepest_first(top) {
                for line in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                    if let Ok(pid) = line.trim().parse::<i32>()
                        && !out.contains(&pid)
                    {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }

    pub(super) fn footprint(&self) -> Footprint {
        Footprint {
            nspawn: self.nspawn.as_ref().map_or(0, |c| c.id().cast_signed()),
            leader: self.leader,
            processes: self.processes(),
            cgroups: self.cgroups.iter().flat_map(|c| folders_deepest_first(c)).collect(),
            merged: self.merged.clone(),
            dir: self.dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default(),
        }
    }

    /// Powers the container off and removes everything it made; what could not be removed is
    /// printed. Runs once (Drop calls it).
    fn shutdown(&mut self) {
        // Power off: nspawn turns the first SIGTERM into the container's poweroff.
        if let Some(mut child) = self.nspawn.take() {
            let pid = Pid::from_raw(child.id().cast_signed());
            if child.try_wait().ok().flatten().is_none() {
                let _ = kill(pid, Signal::SIGTERM);
                let start = Instant::now();
                while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if child.try_wait().ok().flatten().is_none() {
                    eprintln!("clean-up: {} did not power off in 30 s: killing it", self.name);
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = child.wait();
                }
            }
        }
        // What is still in its cgroups is the container's: killed by PID.
        let start = Instant::now();
        loop {
            let left: Vec<i32> = self.processes().into_iter().filter(|p| !dead(*p)).collect();
            if left.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            for p in left {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its cgroups, children first; a folder stays busy for a moment after its last process.
        let start = Instant::now();
        for top in std::mem::take(&mut self.cgroups) {
            for d in folders_deepest_first(&top) {
                while fs::remove_dir(&d).is_err() && d.exists() && start.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if d.exists() {
                    eprintln!("clean-up: cannot remove cgroup {}", d.display());
                }
            }
        }
        // nspawn's own folder for the machine, if a killed nspawn left it.
        let _ = fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        if self.mounted {
            let start = Instant::now();
            while is_mounted(&self.merged) && start.elapsed() < Duration::from_secs(5) {
                let _ = Command::new("umount").arg(&self.merged).stderr(Stdio::null()).status();
                if is_mounted(&self.merged) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if is_mounted(&self.merged) {
                let _ = Command::new("umount").arg("--lazy").arg(&self.merged).status();
            }
            self.mounted = false;
        }
        // The temporary folder goes with its TempDir, unless the overlay is still there: then
        // removing it would write whiteouts through the overlay, so it is left (and said).
        if is_mounted(&self.merged)
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "clean-up: {} is still mounted; leaving {}",
                self.merged.display(),
                dir.keep().display()
            );
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}
