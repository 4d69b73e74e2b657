//! HOW effects are carried out: one trait per effect family, each with a real implementation
//! and a recording one. The runner picks the implementations once, from the mode; the script
//! API calls the traits and never asks which mode it is in.

pub mod cluster;
pub mod commands;
pub mod cri;
pub mod etcd;
pub mod facts;
pub mod files;
mod https;
pub mod mounts;
pub mod systemd;

pub use cluster::{Cluster, ReadingCluster, RealCluster, RecordingCluster};
pub use commands::{CommandOutput, CommandSpec, Commands, RealCommands, RecordingCommands};
pub use cri::{Cri, CriSockets, RealCri, RecordingCri};
pub use facts::{Facts, RealFacts};
pub use files::{Copied, FileKind, FileState, Files, Owner, PlannedFiles, RealFiles};
pub use mounts::{Mounts, RealMounts, RecordingMounts};
pub use systemd::{RealSystemd, RecordingSystemd, Systemd, UnitStatus};

/// What a run does to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A real run on this host: files under `/`, commands executed.
    Apply,
    /// `--root DIR`: files written under DIR, host commands recorded, not run.
    Render,
    /// `--dry-run`: nothing changed; files planned in memory, commands recorded.
    DryRun,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Apply => "apply",
            Mode::Render => "render",
            Mode::DryRun => "dry run",
        }
    }
}

/// The backends a run uses.
pub struct Host {
    pub mode: Mode,
    pub files: Box<dyn Files>,
    pub commands: Box<dyn Commands>,
    pub facts: Box<dyn Facts>,
    pub systemd: Box<dyn Systemd>,
    /// The mount table, and unmounting (recorded unless a real run).
    pub mounts: Box<dyn Mounts>,
    /// The container runtimes behind the sockets scripts name.
    pub cri: CriSockets,
    /// The Kubernetes API, reached through the kubeconfigs scripts name (one client each).
    pub cluster: Box<dyn Cluster>,
}

/// Test hook: `KSCRIPT_TEST_CLUSTER_API=real` makes a render (`--root DIR`) send its API
/// calls for real (and a dry run read the cluster, see [`Host::reading_cluster`]), with the
/// kubeconfigs under DIR, so the integration tests can run init's API
/// steps against a fake API server without touching the host's `/`.
const REAL_API_WHEN_RENDERING: &str = "KSCRIPT_TEST_CLUSTER_API";

/// Test hook: `KSCRIPT_TEST_CRI=real` makes a render (`--root DIR`) talk to the container
/// runtimes for real, their sockets resolved under DIR, so the integration tests can run
/// init's `ImagePull` preflight check, `images.rhai` and the control plane's wait against a
/// private containerd without touching the host's `/`. Not for users: a render never needs
/// a runtime.
const REAL_CRI_WHEN_RENDERING: &str = "KSCRIPT_TEST_CRI";

fn rendering_cri() -> CriSockets {
    if std::env::var(REAL_CRI_WHEN_RENDERING).as_deref() == Ok("real") {
        CriSockets::real()
    } else {
        CriSockets::recording()
    }
}

fn rendering_cluster() -> Box<dyn Cluster> {
    if std::env::var(REAL_API_WHEN_RENDERING).as_deref() == Ok("real") {
        Box::new(RealCluster::new())
    } else {
        Box::new(RecordingCluster::default())
    }
}

impl Host {
    /// Makes a dry run read the cluster it would change: on this host's own `/` (or, for the
    /// tests, with `KSCRIPT_TEST_CLUSTER_API=real`), reads are sent to the API server and what
    /// the run would apply is recorded over them ([`ReadingCluster`]), as kubeadm's dry-run
    /// client reads through a real one. `upgrade.rhai --dry-run` plans against the cluster so.
    #[must_use]
    pub fn reading_cluster(mut self, on_this_host: bool) -> Self {
        let hook = std::env::var(REAL_API_WHEN_RENDERING).as_deref() == Ok("real");
        if self.mode == Mode::DryRun && (on_this_host || hook) {
            self.cluster = Box::new(ReadingCluster::default());
        }
        self
    }

    /// Lets a dry run against this host's own `/` read the host for preflight checks (a dry
    /// run into a folder, like a render, does not).
    #[must_use]
    pub fn probing_host(mut self, yes: bool) -> Self {
        self.facts = Box::new(RealFacts { probes_host: yes });
        self
    }

    /// The backends for `mode`: all real on a real run; when rendering, real files (under the
    /// root) and the rest recorded (the API real with `KSCRIPT_TEST_CLUSTER_API=real`, the
    /// runtimes with `KSCRIPT_TEST_CRI=real`); in a dry run, files planned and the rest
    /// recorded.
    pub fn for_mode(mode: Mode) -> Self {
        let real = mode == Mode::Apply;
        Self {
            mode,
            files: if mode == Mode::DryRun {
                Box::new(PlannedFiles::default())
            } else {
                Box::new(RealFiles::new())
            },
            commands: if real { Box::new(RealCommands) } else { Box::new(RecordingCommands) },
            facts: Box::new(RealFacts { probes_host: real }),
            systemd: if real { Box::new(RealSystemd) } else { Box::new(RecordingSystemd) },
            mounts: if real { Box::new(RealMounts) } else { Box::new(RecordingMounts) },
            cri: match mode {
                Mode::Apply => CriSockets::real(),
                Mode::Render => rendering_cri(),
                Mode::DryRun => CriSockets::recording(),
            },
            cluster: match mode {
                Mode::Apply => Box::new(RealCluster::new()),
                Mode::Render => rendering_cluster(),
                Mode::DryRun => Box::new(RecordingCluster::default()),
            },
        }
    }
}

/// The innermost cause of an error (tonic wraps the connector's `io::Error` twice).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The kind of the first `io::Error` in an error's chain of causes.
pub(crate) fn io_kind_of(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// A duration as messages give it: `30s`, `0.5s`.
pub fn seconds(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// The current-thread tokio runtime in `cell`, made on first use: the synchronous backends
/// (cluster, CRI) block on their calls with it.
pub(crate) fn lazy_runtime(
    cell: &std::cell::OnceCell<tokio::runtime::Runtime>,
) -> std::io::Result<&tokio::runtime::Runtime> {
    if let Some(rt) = cell.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    Ok(cell.get_or_init(|| rt))
}
