//! The container runtime (CRI v1 over a unix socket): asked for real, recorded elsewhere.
//!
//! kscript is synchronous; [`RealCri`] keeps a current-thread tokio runtime of its own and
//! blocks on each call, with a deadline on every one.

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{io_kind_of, root_cause};

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriChange {
    /// Already so: nothing done.
    Unchanged,
    /// Done now.
    Changed,
    /// Recorded, not done (rendering, dry runs).
    Recorded,
}

/// A pod or container made, or found already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// Its id; `None` when only recorded.
    pub id: Option<String>,
    pub change: CriChange,
}

/// The runtime's `Version` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The CRI API version the runtime speaks to kubelet (`0.1.0`).
    pub version: String,
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// One condition of the runtime's `Status` (`RuntimeReady`, `NetworkReady`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The runtime's `Status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeStatus {
    pub conditions: Vec<Condition>,
}

impl RuntimeStatus {
    /// Whether the condition `kind` holds (a missing condition does not).
    pub fn holds(&self, kind: &str) -> bool {
        self.conditions.iter().any(|c| c.kind == kind && c.status)
    }

    /// Why `kind` does not hold, as the runtime puts it.
    pub fn why_not(&self, kind: &str) -> String {
        match self.conditions.iter().find(|c| c.kind == kind) {
            None => format!("the runtime reports no {kind} condition"),
            Some(c) if c.status => format!("{kind} is true"),
            Some(c) => format!("{kind} is false: {} {}", c.reason, c.message).trim_end().to_string(),
        }
    }
}

/// A pod sandbox's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Ready,
    NotReady,
}

/// A container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl PodState {
    pub const NAMES: &[&str] = &["ready", "notready"];

    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Ready => "ready",
            PodState::NotReady => "notready",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ready" => Some(PodState::Ready),
            "notready" => Some(PodState::NotReady),
            _ => None,
        }
    }

    fn wire(self) -> cri::PodSandboxState {
        match self {
            PodState::Ready => cri::PodSandboxState::SandboxReady,
            PodState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }

    fn from_wire(state: i32) -> Self {
        if state == cri::PodSandboxState::SandboxReady as i32 { PodState::Ready } else { PodState::NotReady }
    }
}

impl ContainerState {
    pub const NAMES: &[&str] = &["created", "running", "exited", "unknown"];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Unknown => "unknown",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "created" => Some(ContainerState::Created),
            "running" => Some(ContainerState::Running),
            "exited" => Some(ContainerState::Exited),
            "unknown" => Some(ContainerState::Unknown),
            _ => None,
        }
    }

    fn wire(self) -> cri::ContainerState {
        match self {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }

    fn from_wire(state: i32) -> Self {
        match cri::ContainerState::try_from(state) {
            Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A pod sandbox, as `ListPodSandbox` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub state: PodState,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A container, as `ListContainers` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub pod_id: String,
    pub name: String,
    pub attempt: u32,
    /// The image as the container was created from it.
    pub image: String,
    /// The image's digest reference or id.
    pub image_ref: String,
    pub state: ContainerState,
    /// Nanoseconds since the Unix epoch.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// An image the runtime holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
}

/// What is known about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLookup {
    /// Nothing: there is no runtime to ask (rendering, dry runs).
    Unknown,
    /// The runtime does not have it.
    Absent,
    Present(Image),
}

/// Which pods to list; every field set must match. `name` is matched here, the rest by the
/// runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFilter {
    pub id: Option<String>,
    pub name: Option<String>,
    pub state: Option<PodState>,
    pub labels: BTreeMap<String, String>,
}

/// Which containers to list; every field set must match. `name` is matched here, the rest by
/// the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub pod_id: Option<String>,
    pub name: Option<String>,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

/// A pod sandbox to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    /// A host folder for the containers' logs (`/var/log/pods/...`); empty for none.
    pub log_directory: String,
    /// Share the node's network namespace (static pods do; without CNI nothing else runs).
    pub host_network: bool,
    /// The cgroup the pod's cgroups go under (`/kubepods/pod<uid>`); empty for the runtime's.
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A host folder or file mounted into a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
}

/// A container to create in a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Under the pod's log directory; empty for no log file.
    pub log_path: String,
}

/// Why a container did not come to run: the containers seen at the last look.
#[derive(Debug, Clone, Default)]
pub struct WaitFailure {
    pub seen: Vec<Container>,
    /// The last error from the runtime, when the last look failed.
    pub last_error: Option<String>,
}

/// A container's `ContainerStatus`: how it ended, and where its log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    /// The image as the container was created from it.
    pub image: String,
    /// Nanoseconds since the Unix epoch; 0 when it has not started (or finished).
    pub started_at: i64,
    pub finished_at: i64,
    /// Meaningful once it has finished.
    pub exit_code: i32,
    /// A word for why it is in its state (`Error`, `Completed`, `OOMKilled`, `StartError`).
    pub reason: String,
    /// The runtime's words for it (a start error: what runc said).
    pub message: String,
    /// The container's log file on this host, in the CRI log format (empty: none).
    pub log_path: String,
}

/// One line of a container's log as the runtime writes it: kubelet's CRI log format
/// `TIMESTAMP STREAM TAG MESSAGE`, a partial line (tag `P`) joined to the lines that complete
/// it (tag `F`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 with nanoseconds, as written (`2026-12-06T21:14:03.123456789Z`).
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// How much of a log file's end is read for its last lines.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The lines of a CRI-format log, a partial line joined to the next line of its stream that
/// completes it (stdout and stderr are written to one file and may interleave). A line not in
/// the format (a log written by something else) is kept whole, as text of no stream, and ends
/// the partial lines before it; a partial line left at the end (still being written) is kept
/// as it is.
pub fn parse_log(text: &str) -> Vec<LogLine> {
    let mut lines: Vec<LogLine> = Vec::new();
    // The partial line of each stream: stdout, stderr.
    let mut partial: [Option<LogLine>; 2] = [None, None];
    for raw in text.lines() {
        let mut fields = raw.splitn(4, ' ');
        let (time, stream, tag) = (fields.next().unwrap_or_default(), fields.next(), fields.next());
        let slot = match stream {
            Some("stdout") => Some(0),
            Some("stderr") => Some(1),
            _ => None,
        };
        // The tag may carry more, colon-separated, after its first field (`F`, `P`).
        let kind = tag.map(|t| t.split(':').next().unwrap_or_default());
        let (Some(slot), Some(kind @ ("F" | "P"))) = (slot, kind) else {
            lines.extend(partial.iter_mut().filter_map(Option::take));
            if !raw.is_empty() {
                lines.push(LogLine { time: String::new(), stream: String::new(), text: raw.to_string() });
            }
            continue;
        };
        let text = fields.next().unwrap_or_default();
        let line = match partial[slot].take() {
            Some(mut p) => {
                p.text.push_str(text);
                p
            }
            None => LogLine {
                time: time.to_string(),
                stream: stream.unwrap_or_default().to_string(),
                text: text.to_string(),
            },
        };
        if kind == "P" {
            partial[slot] = Some(line);
        } else {
            lines.push(line);
        }
    }
    lines.extend(partial.into_iter().flatten());
    lines
}

/// The last `count` lines of the CRI-format log at `path` (from its last 64 KiB); none when
/// the file does not exist (the runtime keeps no log for the container, or it was removed).
pub fn last_log_lines(path: &Path, count: usize) -> io::Result<Vec<LogLine>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The first line read is cut: drop it.
        text = text.split_once('\n').map_or_else(String::new, |(_, rest)| rest.to_string());
    }
    let lines = parse_log(&text);
    Ok(lines[lines.len().saturating_sub(count)..].to_vec())
}

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(200);

/// The container runtime, as kscript uses it. Queries answer `None` or nothing when there is
/// no runtime to ask (rendering, dry runs), so a script can tell that nothing is known.
pub trait Cri {
    fn version(&self) -> io::Result<Option<RuntimeVersion>>;
    fn status(&self) -> io::Result<Option<RuntimeStatus>>;
    fn pods(&self, filter: &PodFilter) -> io::Result<Vec<Pod>>;
    fn containers(&self, filter: &ContainerFilter) -> io::Result<Vec<Container>>;
    fn image_status(&self, image: &str) -> io::Result<ImageLookup>;
    /// Pulls `image` unless the runtime has it.
    fn pull_image(&self, image: &str) -> io::Result<CriChange>;
    /// Stops the pod and its containers, unless it is stopped or gone.
    fn stop_pod(&self, id: &str) -> io::Result<CriChange>;
    /// Removes the pod and its containers (stopping them first), unless it is gone.
    fn remove_pod(&self, id: &str) -> io::Result<CriChange>;
    /// Runs a pod sandbox, unless a ready one with the same name, namespace, uid and attempt
    /// exists.
    fn run_pod(&self, pod: &PodSpec) -> io::Result<Made>;
    /// Creates a container in the pod `pod_id` (run from `pod`), unless one with the same name
    /// and attempt is there.
    fn create_container(&self, pod_id: &str, pod: &PodSpec, container: &ContainerSpec) -> io::Result<Made>;
    /// Starts a container unless it is running.
    fn start_container(&self, id: &str) -> io::Result<CriChange>;
    /// The container's status; `None` when there is no such container, or no runtime to ask.
    fn container_status(&self, id: &str) -> io::Result<Option<ContainerStatus>>;
    /// Whether calls are recorded rather than sent (rendering, dry runs).
    fn is_recording(&self) -> bool {
        false
    }

    /// The last `count` lines of the container's log (from the log file its status names);
    /// `None` when there is no such container, or no runtime to ask.
    fn container_log(&self, id: &str, count: usize) -> io::Result<Option<Vec<LogLine>>> {
        match self.container_status(id)? {
            None => Ok(None),
            Some(s) if s.log_path.is_empty() => Ok(Some(Vec::new())),
            Some(s) => last_log_lines(Path::new(&s.log_path), count).map(Some),
        }
    }

    /// Waits until the runtime answers and reports `RuntimeReady`; on timeout, an error that
    /// says why not. `None` when there is no runtime to wait for.
    fn wait_ready(&self, timeout: Duration) -> io::Result<Option<RuntimeStatus>> {
        let start = Instant::now();
        loop {
            let why = match self.status() {
                Ok(None) => return Ok(None),
                Ok(Some(s)) if s.holds("RuntimeReady") => return Ok(Some(s)),
                Ok(Some(s)) => io::Error::other(s.why_not("RuntimeReady")),
                Err(e) => e,
            };
            if start.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not ready after {}: {why}", super::seconds(timeout)),
                ));
            }
            std::thread::sleep(POLL / 2);
        }
    }

    /// Waits until a container named `name` is running, and returns it; on timeout, the
    /// containers seen. `None` when there is no runtime to wait for.
    fn wait_running(&self, name: &str, timeout: Duration) -> Result<Option<Container>, WaitFailure> {
        let start = Instant::now();
        loop {
            let mut failure = WaitFailure::default();
            match self.containers(&ContainerFilter::default()) {
                Ok(all) => {
                    if let Some(c) = all.iter().find(|c| c.name == name && c.state == ContainerState::Running)
                    {
                        return Ok(Some(c.clone()));
                    }
                    failure.seen = all;
                }
                Err(e) => failure.last_error = Some(e.to_string()),
            }
            if start.elapsed() >= timeout {
                return Err(failure);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// How long one call may take.
const QUERY_DEADLINE: Duration = Duration::from_secs(15);
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// Stopping a pod waits for its containers to stop.
const STOP_DEADLINE: Duration = Duration::from_mins(2);
const PULL_DEADLINE: Duration = Duration::from_mins(10);

/// What to check when the runtime cannot be reached.
const HINT: &str = "is containerd running? `systemctl status containerd`";

/// The runtime behind a unix socket on this host. It connects on first use; a failed
/// connection is tried again on the next call.
pub struct RealCri {
    socket: PathBuf,
    /// How long a query (not a pull, not a stop) may take.
    query_deadline: Duration,
    // The channel is dropped before the runtime it was made in.
    channel: RefCell<Option<Channel>>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl fmt::Debug for RealCri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealCri").field("socket", &self.socket).finish_non_exhaustive()
    }
}

fn map_to_wire(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn map_from_wire(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

impl RealCri {
    /// A client for the socket at `socket` (a host path); nothing is connected yet.
    pub fn new(socket: &Path) -> Self {
        Self::with_deadline(socket, QUERY_DEADLINE)
    }

    /// [`RealCri::new`] whose queries (version, status, lists, image and container status)
    /// give up after `deadline`: `kscript status` asks with a short one.
    pub fn with_deadline(socket: &Path, deadline: Duration) -> Self {
        Self {
            socket: socket.to_path_buf(),
            query_deadline: deadline,
            channel: RefCell::default(),
            runtime: OnceCell::new(),
        }
    }

    fn runtime(&self) -> io::Result<&tokio::runtime::Runtime> {
        super::lazy_runtime(&self.runtime)
    }

    /// Why the socket cannot be reached, named, with what to check.
    fn unreachable(&self, kind: Option<io::ErrorKind>, cause: &str) -> io::Error {
        let s = self.socket.display();
        let (kind, text) = match kind {
            Some(io::ErrorKind::NotFound) => (io::ErrorKind::NotFound, format!("no socket at {s}")),
            Some(io::ErrorKind::ConnectionRefused) => {
                (io::ErrorKind::ConnectionRefused, format!("nothing listens on the socket {s}"))
            }
            Some(k) => (k, format!("cannot connect to {s}: {cause}")),
            None => (io::ErrorKind::Other, format!("cannot connect to {s}: {cause}")),
        };
        io::Error::new(kind, format!("{text}; {HINT}"))
    }

    /// The channel to the runtime, connecting if there is none yet.
    fn channel(&self) -> io::Result<Channel> {
        if let Some(ch) = self.channel.borrow().as_ref() {
            return Ok(ch.clone());
        }
        let ch = match self.connect() {
            // The connection was made and broke while being set up: what the socket says to a
            // second connection is the answer (see `after_break`).
            Err(e) if broke(e.kind()) => self.connect()?,
            other => other?,
        };
        *self.channel.borrow_mut() = Some(ch.clone());
        Ok(ch)
    }

    /// A new connection to the socket (eager: tonic dials before it returns), its failure
    /// classified from the io error in its chain of causes.
    fn connect(&self) -> io::Result<Channel> {
        let socket = self.socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        // The URI is not used: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://cri.invalid").connect_timeout(CONNECT_DEADLINE);
        let rt = self.runtime()?;
        rt.block_on(async {
            tokio::time::timeout(CONNECT_DEADLINE, endpoint.connect_with_connector(connector)).await
        })
        .map_err(|_| {
            self.unreachable(
                Some(io::ErrorKind::TimedOut),
                &format!("no answer within {}s", CONNECT_DEADLINE.as_secs()),
            )
        })?
        .map_err(|e| self.unreachable(io_kind_of(&e), &root_cause(&e)))
    }

    /// Why a connection that was made failed afterwards (reset, closed, a broken pipe). The
    /// moment it broke says little: a listener that goes away while our connection waits in
    /// its queue resets it, and one that was gone already refuses it; which of the two happens
    /// is timing (a child process forked meanwhile by the listening process holds a copy of the
    /// listener until it execs; the reset comes when the last copy closes, and a busy host
    /// widens that window). So the socket is asked again, once: if no connection
    /// can be made now, that is the answer (`nothing listens`, `no socket`), the same as when
    /// the first connection was refused; if one can, the break is reported and the new
    /// connection kept for the next call.
    fn after_break(&self, kind: Option<io::ErrorKind>, cause: &str) -> io::Error {
        self.channel.borrow_mut().take();
        match self.connect() {
            Err(e) => e,
            Ok(ch) => {
                *self.channel.borrow_mut() = Some(ch);
                let s = self.socket.display();
                io::Error::new(
                    kind.unwrap_or(io::ErrorKind::ConnectionAborted),
                    format!("the connection to {s} broke: {cause}; {HINT}"),
                )
            }
        }
    }

    /// Runs one call against the runtime, within `deadline`.
    fn call<T, F, Fut>(&self, what: &str, deadline: Duration, f: F) -> io::Result<T>
    where
        F: FnOnce(RuntimeServiceClient<Channel>, ImageServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let ch = self.channel()?;
        let fut = f(RuntimeServiceClient::new(ch.clone()), ImageServiceClient::new(ch));
        let answer = self.runtime()?.block_on(async { tokio::time::timeout(deadline, fut).await });
        match answer {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: no answer from {} within {}s", self.socket.display(), deadline.as_secs()),
            )),
            Ok(Err(status)) => Err(self.status_error(what, &status)),
        }
    }

    fn status_error(&self, what: &str, status: &tonic::Status) -> io::Error {
        use std::error::Error as _;
        // A status the runtime sent has no source. One tonic made from a transport error keeps
        // that error as its source, whatever code it was given (`Unavailable` when connecting
        // failed, `Unknown` when a made connection broke), so the transport's failure is told
        // from the chain of causes, never from the code.
        if let Some(source) = status.source() {
            let kind = io_kind_of(source);
            let cause = root_cause(source);
            let e = match kind {
                Some(k) if !broke(k) => {
                    // Connecting failed (tonic reconnects on its own after a break): the
                    // socket's state already.
                    self.channel.borrow_mut().take();
                    self.unreachable(kind, &cause)
                }
                _ => self.after_break(kind, &cause),
            };
            return io::Error::new(e.kind(), format!("{what}: {e}"));
        }
        match status.code() {
            tonic::Code::NotFound => {
                io::Error::new(io::ErrorKind::NotFound, format!("{what}: {}", status.message()))
            }
            tonic::Code::Unimplemented => io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{what}: the runtime at {} does not implement it (CRI v1 is needed: containerd 1.6 or later, with the cri plugin enabled): {}",
                    self.socket.display(),
                    status.message()
                ),
            ),
            code => io::Error::other(format!("{what}: {code:?}: {}", status.message())),
        }
    }
}

/// Whether an io error's kind says a connection that was made broke, rather than that none
/// could be made (`NotFound`, `ConnectionRefused`, `PermissionDenied`, `TimedOut`) — or an
/// io error of unknown meaning (`Other`), taken as a break too.
fn broke(kind: io::ErrorKind) -> bool {
    !matches!(
        kind,
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::TimedOut
    )
}

fn check_id(what: &str, id: &str) -> io::Result<()> {
    if id.is_empty() {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}: no id given (was it only recorded, in a render or dry run?)"),
        ))
    } else {
        Ok(())
    }
}

fn pod_from_wire(p: cri::PodSandbox) -> Pod {
    let meta = p.metadata.unwrap_or_default();
    Pod {
        id: p.id,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        state: PodState::from_wire(p.state),
        created_at: p.created_at,
        labels: map_from_wire(p.labels),
        annotations: map_from_wire(p.annotations),
    }
}

fn container_from_wire(c: cri::Container) -> Container {
    let meta = c.metadata.unwrap_or_default();
    Container {
        id: c.id,
        pod_id: c.pod_sandbox_id,
        name: meta.name,
        attempt: meta.attempt,
        image: c.image.map(|i| i.image).unwrap_or_default(),
        image_ref: c.image_ref,
        state: ContainerState::from_wire(c.state),
        created_at: c.created_at,
        labels: map_from_wire(c.labels),
        annotations: map_from_wire(c.annotations),
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.to_string(), ..Default::default() }
}

fn namespaces(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn pod_config(pod: &PodSpec) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            attempt: pod.attempt,
        }),
        hostname: pod.hostname.clone(),
        log_directory: pod.log_directory.clone(),
        labels: map_to_wire(&pod.labels),
        annotations: map_to_wire(&pod.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: pod.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(pod: &PodSpec, c: &ContainerSpec) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: c.name.clone(), attempt: c.attempt }),
        image: Some(image_spec(&c.image)),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs: c.env.iter().map(|(k, v)| cri::KeyValue { key: k.clone(), value: v.clone() }).collect(),
        mounts: c
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                ..Default::default()
            })
            .collect(),
        labels: map_to_wire(&c.labels),
        annotations: map_to_wire(&c.annotations),
        log_path: c.log_path.clone(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(pod.host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Cri for RealCri {
    fn version(&self) -> io::Result<Option<RuntimeVersion>> {
        let v = self.call("Version", self.query_deadline, |mut rs, _| async move {
            rs.version(cri::VersionRequest { version: String::new() }).await
        })?;
        Ok(Some(RuntimeVersion {
            version: v.version,
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        }))
    }

    fn status(&self) -> io::Result<Option<RuntimeStatus>> {
        let s = self.call("Status", self.query_deadline, |mut rs, _| async move {
            rs.status(cri::StatusRequest { verbose: false }).await
        })?;
        let conditions = s
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .map(|c| Condition { kind: c.r#type, status: c.status, reason: c.reason, message: c.message })
            .collect();
        Ok(Some(RuntimeStatus { conditions }))
    }

    fn pods(&self, filter: &PodFilter) -> io::Result<Vec<Pod>> {
        let wire = cri::PodSandboxFilter {
            id: filter.id.clone().unwrap_or_default(),
            state: filter.state.map(|s| cri::PodSandboxStateValue { state: s.wire() as i32 }),
            label_selector: map_to_wire(&filter.labels),
        };
        let answer = self.call("ListPodSandbox", self.query_deadline, |mut rs, _| async move {
            rs.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(wire) }).await
        })?;
        let mut pods: Vec<Pod> = answer
            .items
            .into_iter()
            .map(pod_from_wire)
            .filter(|p| filter.name.as_ref().is_none_or(|n| *n == p.name))
            .collect();
        pods.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(pods)
    }

    fn containers(&self, filter: &ContainerFilter) -> io::Result<Vec<Container>> {
        let wire = cri::ContainerFilter {
            id: filter.id.clone().unwrap_or_default(),
            state: filter.state.map(|s| cri::ContainerStateValue { state: s.wire() as i32 }),
            pod_sandbox_id: filter.pod_id.clone().unwrap_or_default(),
            label_selector: map_to_wire(&filter.labels),
        };
        let answer = self.call("ListContainers", self.query_deadline, |mut rs, _| async move {
            rs.list_containers(cri::ListContainersRequest { filter: Some(wire) }).await
        })?;
        let mut containers: Vec<Container> = answer
            .containers
            .into_iter()
            .map(container_from_wire)
            .filter(|c| filter.name.as_ref().is_none_or(|n| *n == c.name))
            .collect();
        containers.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(containers)
    }

    fn image_status(&self, image: &str) -> io::Result<ImageLookup> {
        let spec = image_spec(image);
        let answer = self.call("ImageStatus", self.query_deadline, |_, mut is| async move {
            is.image_status(cri::ImageStatusRequest { image: Some(spec), verbose: false }).await
        })?;
        Ok(match answer.image {
            None => ImageLookup::Absent,
            Some(i) => ImageLookup::Present(Image {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                size: i.size,
            }),
        })
    }

    fn pull_image(&self, image: &str) -> io::Result<CriChange> {
        if matches!(self.image_status(image)?, ImageLookup::Present(_)) {
            return Ok(CriChange::Unchanged);
        }
        let spec = image_spec(image);
        self.call("PullImage", PULL_DEADLINE, |_, mut is| async move {
            is.pull_image(cri::PullImageRequest { image: Some(spec), auth: None, sandbox_config: None }).await
        })?;
        Ok(CriChange::Changed)
    }

    fn stop_pod(&self, id: &str) -> io::Result<CriChange> {
        check_id("StopPodSandbox", id)?;
        let filter = PodFilter { id: Some(id.to_string()), ..Default::default() };
        if self.pods(&filter)?.iter().all(|p| p.state == PodState::NotReady) {
            return Ok(CriChange::Unchanged);
        }
        let id = id.to_string();
        self.call("StopPodSandbox", STOP_DEADLINE, |mut rs, _| async move {
            rs.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id }).await
        })?;
        Ok(CriChange::Changed)
    }

    fn remove_pod(&self, id: &str) -> io::Result<CriChange> {
        check_id("RemovePodSandbox", id)?;
        let filter = PodFilter { id: Some(id.to_string()), ..Default::default() };
        if self.pods(&filter)?.is_empty() {
            return Ok(CriChange::Unchanged);
        }
        let id = id.to_string();
        self.call("RemovePodSandbox", STOP_DEADLINE, |mut rs, _| async move {
            rs.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id }).await
        })?;
        Ok(CriChange::Changed)
    }

    fn run_pod(&self, pod: &PodSpec) -> io::Result<Made> {
        let existing = self.pods(&PodFilter {
            name: Some(pod.name.clone()),
            state: Some(PodState::Ready),
            ..Default::default()
        })?;
        if let Some(p) = existing
            .iter()
            .find(|p| p.namespace == pod.namespace && p.uid == pod.uid && p.attempt == pod.attempt)
        {
            return Ok(Made { id: Some(p.id.clone()), change: CriChange::Unchanged });
        }
        let config = pod_config(pod);
        let answer = self.call("RunPodSandbox", STOP_DEADLINE, |mut rs, _| async move {
            rs.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })?;
        Ok(Made { id: Some(answer.pod_sandbox_id), change: CriChange::Changed })
    }

    fn create_container(&self, pod_id: &str, pod: &PodSpec, container: &ContainerSpec) -> io::Result<Made> {
        check_id("CreateContainer", pod_id)?;
        let existing = self.containers(&ContainerFilter {
            pod_id: Some(pod_id.to_string()),
            name: Some(container.name.clone()),
            ..Default::default()
        })?;
        if let Some(c) = existing.iter().find(|c| c.attempt == container.attempt) {
            return Ok(Made { id: Some(c.id.clone()), change: CriChange::Unchanged });
        }
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(container_config(pod, container)),
            sandbox_config: Some(pod_config(pod)),
        };
        let answer = self.call("CreateContainer", STOP_DEADLINE, |mut rs, _| async move {
            rs.create_container(request).await
        })?;
        Ok(Made { id: Some(answer.container_id), change: CriChange::Changed })
    }

    fn start_container(&self, id: &str) -> io::Result<CriChange> {
        check_id("StartContainer", id)?;
        let seen = self.containers(&ContainerFilter { id: Some(id.to_string()), ..Default::default() })?;
        if seen.iter().any(|c| c.state == ContainerState::Running) {
            return Ok(CriChange::Unchanged);
        }
        let id = id.to_string();
        self.call("StartContainer", STOP_DEADLINE, |mut rs, _| async move {
            rs.start_container(cri::StartContainerRequest { container_id: id }).await
        })?;
        Ok(CriChange::Changed)
    }

    fn container_status(&self, id: &str) -> io::Result<Option<ContainerStatus>> {
        check_id("ContainerStatus", id)?;
        let container_id = id.to_string();
        let answer = self.call("ContainerStatus", self.query_deadline, |mut rs, _| async move {
            rs.container_status(cri::ContainerStatusRequest { container_id, verbose: false }).await
        });
        let status = match answer {
            Ok(a) => a.status,
            // Gone (the kubelet removes old containers): nothing to tell.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(status.map(|s| {
            let meta = s.metadata.unwrap_or_default();
            ContainerStatus {
                id: s.id,
                name: meta.name,
                attempt: meta.attempt,
                state: ContainerState::from_wire(s.state),
                image: s.image.map(|i| i.image).unwrap_or_default(),
                started_at: s.started_at,
                finished_at: s.finished_at,
                exit_code: s.exit_code,
                reason: s.reason,
                message: s.message,
                log_path: s.log_path,
            }
        }))
    }
}

/// Records runtime operations without a runtime (rendering, dry runs): queries know nothing.
#[derive(Debug, Default)]
pub struct RecordingCri;

impl Cri for RecordingCri {
    fn is_recording(&self) -> bool {
        true
    }
    fn version(&self) -> io::Result<Option<RuntimeVersion>> {
        Ok(None)
    }
    fn status(&self) -> io::Result<Option<RuntimeStatus>> {
        Ok(None)
    }
    fn pods(&self, _filter: &PodFilter) -> io::Result<Vec<Pod>> {
        Ok(Vec::new())
    }
    fn containers(&self, _filter: &ContainerFilter) -> io::Result<Vec<Container>> {
        Ok(Vec::new())
    }
    fn image_status(&self, _image: &str) -> io::Result<ImageLookup> {
        Ok(ImageLookup::Unknown)
    }
    fn pull_image(&self, _image: &str) -> io::Result<CriChange> {
        Ok(CriChange::Recorded)
    }
    fn stop_pod(&self, _id: &str) -> io::Result<CriChange> {
        Ok(CriChange::Recorded)
    }
    fn remove_pod(&self, _id: &str) -> io::Result<CriChange> {
        Ok(CriChange::Recorded)
    }
    fn run_pod(&self, _pod: &PodSpec) -> io::Result<Made> {
        Ok(Made { id: None, change: CriChange::Recorded })
    }
    fn create_container(&self, _pod_id: &str, _pod: &PodSpec, _c: &ContainerSpec) -> io::Result<Made> {
        Ok(Made { id: None, change: CriChange::Recorded })
    }
    fn start_container(&self, _id: &str) -> io::Result<CriChange> {
        Ok(CriChange::Recorded)
    }
    fn container_status(&self, _id: &str) -> io::Result<Option<ContainerStatus>> {
        Ok(None)
    }
    fn wait_ready(&self, _timeout: Duration) -> io::Result<Option<RuntimeStatus>> {
        Ok(None)
    }
    fn wait_running(&self, _name: &str, _timeout: Duration) -> Result<Option<Container>, WaitFailure> {
        Ok(None)
    }
}

/// Makes the client for a socket.
type OpenCri = dyn Fn(&Path) -> Rc<dyn Cri>;

/// Opens the runtime behind a socket, once per socket for a run: the backend the runner
/// picks from the mode, for the sockets scripts name.
pub struct CriSockets {
    open: Box<OpenCri>,
    opened: RefCell<BTreeMap<PathBuf, Rc<dyn Cri>>>,
}

impl CriSockets {
    /// Opens sockets with `open`.
    pub fn new(open: impl Fn(&Path) -> Rc<dyn Cri> + 'static) -> Self {
        Self { open: Box::new(open), opened: RefCell::default() }
    }

    /// Real runtimes on this host.
    pub fn real() -> Self {
        Self::new(|socket| Rc::new(RealCri::new(socket)))
    }

    /// Records only.
    pub fn recording() -> Self {
        Self::new(|_| Rc::new(RecordingCri))
    }

    /// The runtime behind the host path `socket`.
    pub fn at(&self, socket: &Path) -> Rc<dyn Cri> {
        self.opened.borrow_mut().entry(socket.to_path_buf()).or_insert_with(|| (self.open)(socket)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_named_with_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let cri = RealCri::new(&socket);
        let err = cri.version().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let text = err.to_string();
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("is containerd running? `systemctl status containerd`"), "{text}");
        // A socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let err = cri.status().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert!(err.to_string().contains("nothing listens on the socket"), "{err}");
        let err = cri.wait_ready(Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("nothing listens"), "{err}");
        assert!(cri.stop_pod("").unwrap_err().to_string().contains("no id given"));
    }

    /// The flaky failure, made likely: while the listener is open, other threads fork children
    /// (as kscript's commands and parallel tests do), which hold a copy of it until they exec;
    /// a connection made then is queued and reset instead of refused. Every look must still
    /// give the one answer.
    #[test]
    fn a_closed_listener_is_refused_while_children_are_forked() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let forkers: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let _ = std::process::Command::new("true").status();
                    }
                })
            })
            .collect();
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("containerd.sock");
            let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
            // Long enough for a fork to catch the listener now and then.
            std::thread::sleep(Duration::from_micros(300));
            drop(listener);
            let err = RealCri::new(&socket).status().unwrap_err();
            let text = err.to_string().replace(&socket.display().to_string(), "SOCKET");
            *answers.entry(format!("{:?}: {text}", err.kind())).or_default() += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for f in forkers {
            f.join().unwrap();
        }
        assert!(
            answers.keys().all(|a| a.starts_with("ConnectionRefused:") && a.contains("nothing listens")),
            "{answers:#?}"
        );
    }

    #[test]
    fn recording_knows_nothing_and_records() {
        let cri = RecordingCri;
        assert_eq!(cri.version().unwrap(), None);
        assert_eq!(cri.image_status("x").unwrap(), ImageLookup::Unknown);
        assert_eq!(cri.pull_image("x").unwrap(), CriChange::Recorded);
        assert_eq!(cri.run_pod(&PodSpec::default()).unwrap().id, None);
        assert!(cri.wait_running("x", Duration::from_secs(100)).unwrap().is_none());
    }

    fn line(time: &str, stream: &str, text: &str) -> LogLine {
        LogLine { time: time.into(), stream: stream.into(), text: text.into() }
    }

    #[test]
    fn cri_log_lines_are_parsed_and_partial_lines_joined() {
        let log = "\
2026-12-06T21:14:03.000000001Z stdout F I1206 starting
2026-12-06T21:14:03.000000002Z stderr P Error: cannot open
2026-12-06T21:14:03.000000003Z stdout F interleaved
2026-12-06T21:14:03.000000004Z stderr P  /etc/kubernetes/pki/ca.crt
2026-12-06T21:14:03.000000005Z stderr F : no such file
2026-12-06T21:14:03.000000006Z stdout F
2026-12-06T21:14:03.000000007Z stdout F:x spaces  kept  
";
        assert_eq!(
            parse_log(log),
            vec![
                line("2026-12-06T21:14:03.000000001Z", "stdout", "I1206 starting"),
                line("2026-12-06T21:14:03.000000003Z", "stdout", "interleaved"),
                line(
                    "2026-12-06T21:14:03.000000002Z",
                    "stderr",
                    "Error: cannot open /etc/kubernetes/pki/ca.crt: no such file"
                ),
                line("2026-12-06T21:14:03.000000006Z", "stdout", ""),
                line("2026-12-06T21:14:03.000000007Z", "stdout", "spaces  kept  "),
            ]
        );
    }

    #[test]
    fn lines_out_of_format_are_kept_whole_and_a_trailing_partial_line_is_kept() {
        let log = "plain text from elsewhere\n2026-12-06T21:14:03Z stderr P half a li";
        assert_eq!(
            parse_log(log),
            vec![
                line("", "", "plain text from elsewhere"),
                line("2026-12-06T21:14:03Z", "stderr", "half a li")
            ]
        );
        // A partial line followed by one out of format is ended there.
        let log = "2026-12-06T21:14:03Z stderr P cut\nnot a log line\n";
        assert_eq!(
            parse_log(log),
            vec![line("2026-12-06T21:14:03Z", "stderr", "cut"), line("", "", "not a log line")]
        );
        assert_eq!(parse_log("2026 stdout X text\n"), vec![line("", "", "2026 stdout X text")]);
        assert!(parse_log("").is_empty());
    }

    #[test]
    fn the_last_lines_come_from_the_end_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("2026-12-06T21:14:03.{i:09}Z stdout F line {i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let last = last_log_lines(&path, 2).unwrap();
        assert_eq!(last.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["line 4998", "line 4999"]);
        assert!(last_log_lines(&dir.path().join("gone.log"), 1).unwrap().is_empty());
    }

    #[test]
    fn sockets_are_opened_once() {
        let sockets = CriSockets::recording();
        let a = sockets.at(Path::new("/a.sock"));
        assert!(Rc::ptr_eq(&a, &sockets.at(Path::new("/a.sock"))));
        assert!(!Rc::ptr_eq(&a, &sockets.at(Path::new("/b.sock"))));
    }

    #[test]
    fn state_names_round_trip() {
        for n in ContainerState::NAMES {
            assert_eq!(ContainerState::parse(n).unwrap().as_str(), *n);
            assert_eq!(
                ContainerState::from_wire(ContainerState::parse(n).unwrap().wire() as i32).as_str(),
                *n
            );
        }
        for n in PodState::NAMES {
            assert_eq!(PodState::from_wire(PodState::parse(n).unwrap().wire() as i32).as_str(), *n);
        }
    }
}
