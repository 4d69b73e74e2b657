//! Measuring a node's components: systemd for services, the container runtime for static
//! Pods, the API server for Deployments, `DaemonSets` and the Node. The three sources are asked
//! in parallel (each in a thread of its own, with backends of its own: the host backends are
//! single-threaded), and a source that cannot be reached is named in its rows.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::spec::{Component, Runs, Spec};
use crate::host::cluster::{ObjectRef, answered_status, retry_reason};
use crate::host::cri::{Container, ContainerFilter, ContainerState, Cri, ImageLookup, PodFilter, RealCri};
use crate::host::{Host, Mode, UnitStatus};

/// How long each request to the API server or the container runtime may take by default
/// (`kscript status --timeout`): a status answers quickly or names what did not, and an API
/// server that takes longer than this to list a kind is worth naming.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);

/// A component's state, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not measured: a rendered folder has nothing running.
    Rendered,
    /// Its source could not be asked (named in the detail).
    Unknown,
    /// Its source refuses to tell with the credentials at hand (a kubelet's kubeconfig may not
    /// read `DaemonSets`); it does not count against a stage.
    Unreadable,
    NotInstalled,
    /// A unit loaded but not running.
    Stopped,
    /// A unit starting (not in a restart loop).
    Starting,
    Running,
    CrashLooping,
    Failed,
    /// A container that ran and exited.
    Exited,
    /// A manifest written, no container running it yet.
    NotStarted,
    /// A Deployment or `DaemonSet` with every replica ready.
    Ready,
    NotReady,
}

impl State {
    /// The word of the JSON document.
    pub fn token(self) -> &'static str {
        match self {
            State::Rendered => "not-measured",
            State::Unknown => "unknown",
            State::Unreadable => "unreadable",
            State::NotInstalled => "not-installed",
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::CrashLooping => "crash-looping",
            State::Failed => "failed",
            State::Exited => "exited",
            State::NotStarted => "not-started",
            State::Ready => "ready",
            State::NotReady => "not-ready",
        }
    }

    /// How the table shows it.
    pub fn text(self) -> &'static str {
        match self {
            State::Rendered => "n/a (rendered)",
            State::Unknown => "unknown",
            State::Unreadable => "not readable",
            State::NotInstalled => "not installed",
            State::Stopped => "installed, stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::CrashLooping => "crash-looping",
            State::Failed => "failed",
            State::Exited => "exited",
            State::NotStarted => "not started",
            State::Ready => "ready",
            State::NotReady => "not ready",
        }
    }

    /// Whether it counts as installed (present, whatever it does).
    pub fn installed(self) -> bool {
        !matches!(self, State::Rendered | State::Unknown | State::NotInstalled)
    }

    /// Whether it counts as running (for a Deployment or `DaemonSet`: every replica ready).
    pub fn running(self) -> bool {
        matches!(self, State::Running | State::Ready | State::Unreadable)
    }
}

/// What was measured of one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub state: State,
    /// Why, in a few words, shown with the state: `config.yaml missing`.
    pub reason: String,
    /// More: restarts, ready replicas, the last error.
    pub detail: String,
    /// Restarts counted by systemd or the kubelet.
    pub restarts: Option<u64>,
    /// Ready and desired replicas.
    pub replicas: Option<(u64, u64)>,
}

impl Measured {
    pub fn new(state: State, detail: impl Into<String>) -> Self {
        Self { state, reason: String::new(), detail: detail.into(), restarts: None, replicas: None }
    }
}

/// The Node's Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Rendered,
    Unknown(String),
    NotRegistered,
    Ready,
    /// Its Ready condition's reason and message.
    NotReady {
        reason: String,
        message: String,
    },
}

/// What the node's files say, read before measuring (the probes run in other threads).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The host path of the CRI socket.
    pub socket: Option<PathBuf>,
    /// The host path of the kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// Per static Pod component: its Pod's name and its container's image, from its manifest;
    /// `None` when the manifest is absent.
    pub manifests: BTreeMap<String, Option<(String, String)>>,
    /// Per service component: the first of its `needs` missing on the node (its file name).
    pub first_missing: BTreeMap<String, String>,
    /// How long each request to the runtime or the API server may take.
    pub deadline: Duration,
}

/// Every component's measure, and the Node's.
#[derive(Debug, Clone)]
pub struct Measures {
    pub components: Vec<Measured>,
    pub node: NodeState,
}

/// Measures every component of `spec` on a node in `mode` (`Apply`: this host; `Render`: a
/// folder, where nothing is asked, except what the test hooks make real).
pub fn measure(mode: Mode, spec: &Spec, inputs: &Inputs) -> Measures {
    let units: Vec<String> = spec
        .components
        .iter()
        .filter_map(|c| match &c.runs {
            Runs::Service { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    let (systemd, cri, api) = std::thread::scope(|s| {
        let systemd = s.spawn(|| systemd_source(mode, &units));
        let cri = s.spawn(|| cri_source(mode, spec, inputs));
        let api = s.spawn(|| api_source(mode, spec, inputs));
        (
            systemd.join().unwrap_or_else(|_| Source::Unreachable("the systemd probe panicked".into())),
            cri.join().unwrap_or_else(|_| Source::Unreachable("the CRI probe panicked".into())),
            api.join().unwrap_or_else(|_| Source::Unreachable("the API probe panicked".into())),
        )
    });
    let components = spec
        .components
        .iter()
        .map(|c| match &c.runs {
            Runs::Service { unit, .. } => service(c, unit, &systemd, inputs),
            Runs::StaticPod { .. } => from_source(&cri, "CRI", |m| m.get(&c.name).cloned()),
            Runs::Deployment { namespace, object } | Runs::DaemonSet { namespace, object } => {
                workload(c, namespace, object, &api)
            }
        })
        .collect();
    let node = match &api {
        Source::NotAsked => NodeState::Rendered,
        Source::Unreachable(e) => NodeState::Unknown(format!("API server not reachable: {e}")),
        Source::Got(a) => a.node.clone(),
    };
    Measures { components, node }
}

/// What one source answered.
enum Source<T> {
    /// Not asked: a render has no live node.
    NotAsked,
    Unreachable(String),
    Got(T),
}

fn from_source<T>(source: &Source<T>, name: &str, pick: impl Fn(&T) -> Option<Measured>) -> Measured {
    match source {
        Source::NotAsked => Measured::new(State::Rendered, ""),
        Source::Unreachable(e) => Measured::new(State::Unknown, format!("{name} not reachable: {e}")),
        Source::Got(t) => pick(t).unwrap_or_else(|| Measured::new(State::Unknown, "not measured")),
    }
}

// ---------------------------------------------------------------------------------------
// systemd

/// Each unit's state and, for one restarting or failed, its last journal line.
type Units = BTreeMap<String, (UnitStatus, Option<String>)>;

fn systemd_source(mode: Mode, units: &[String]) -> Source<Units> {
    let host = Host::for_mode(mode);
    let names: Vec<&str> = units.iter().map(String::as_str).collect();
    match host.systemd.units(&names) {
        Ok(None) => Source::NotAsked,
        Err(e) => Source::Unreachable(e.to_string()),
        Ok(Some(list)) => Source::Got(
            names
                .iter()
                .zip(list)
                .map(|(name, u)| {
                    let troubled = u.active_state == "failed"
                        || u.sub_state == "auto-restart"
                        || (u.active_state != "inactive" && u.restarts > 0);
                    let line = if troubled { host.systemd.last_log_line(name) } else { None };
                    ((*name).to_string(), (u, line))
                })
                .collect(),
        ),
    }
}

fn service(c: &Component, unit: &str, source: &Source<Units>, inputs: &Inputs) -> Measured {
    from_source(source, "systemd", |units| {
        let (u, last) = units.get(unit)?;
        let missing = inputs.first_missing.get(&c.name);
        Some(unit_state(u, last.as_deref(), missing.map(String::as_str)))
    })
}

/// A unit's state from what systemd says: a restart loop is `activating (auto-restart)`, or
/// running again after restarts while a file it needs is still missing (seen between two
/// exits). Its reason: that missing file, else its last journal line.
pub fn unit_state(u: &UnitStatus, last_line: Option<&str>, missing: Option<&str>) -> Measured {
    let restarts = (u.restarts > 0).then_some(u.restarts);
    let why =
        || missing.map_or_else(|| last_line.unwrap_or_default().to_string(), |f| format!("{f} missing"));
    let mut m = if u.load_state == "not-found" {
        Measured::new(State::NotInstalled, format!("no unit {}", u.id))
    } else if u.load_state == "masked" {
        Measured::new(State::Stopped, "masked")
    } else if u.sub_state == "auto-restart"
        || (matches!(u.active_state.as_str(), "active" | "activating") && u.restarts > 0 && missing.is_some())
    {
        let mut m = Measured::new(State::CrashLooping, format!("exit status {}", u.exec_main_status));
        m.reason = why();
        m
    } else if u.active_state == "failed" {
        let mut m = Measured::new(State::Failed, format!("result {}", u.result));
        m.reason = why();
        m
    } else if u.active_state == "active" || u.active_state == "reloading" {
        Measured::new(State::Running, "")
    } else if u.active_state == "activating" {
        Measured::new(State::Starting, u.sub_state.clone())
    } else {
        Measured::new(State::Stopped, "")
    };
    if m.state != State::NotInstalled && !u.unit_file_state.is_empty() {
        m.detail = join(&[&m.detail, &u.unit_file_state]);
    }
    if let Some(n) = restarts {
        m.detail = join(&[&m.detail, &format!("restarts: {n}")]);
    }
    m.restarts = restarts;
    m
}

fn join(parts: &[&str]) -> String {
    parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("; ")
}

// ---------------------------------------------------------------------------------------
// The container runtime

/// The kubelet's labels on the containers and sandboxes of its Pods.
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The kubelet's annotation counting a container's restarts.
const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

fn cri_source(mode: Mode, spec: &Spec, inputs: &Inputs) -> Source<BTreeMap<String, Measured>> {
    let Some(socket) = &inputs.socket else {
        return Source::Unreachable(format!("`{}` is not a unix socket endpoint", spec.cri_socket));
    };
    if Host::for_mode(mode).cri.at(socket).is_recording() {
        return Source::NotAsked;
    }
    let cri = RealCri::with_deadline(socket, inputs.deadline);
    if let Err(e) = cri.version() {
        return Source::Unreachable(e.to_string());
    }
    let mut labels = BTreeMap::new();
    labels.insert(POD_NAMESPACE.to_string(), "kube-system".to_string());
    let containers = match cri.containers(&ContainerFilter { labels: labels.clone(), ..Default::default() }) {
        Ok(c) => c,
        Err(e) => return Source::Unreachable(e.to_string()),
    };
    let pods = match cri.pods(&PodFilter { labels, ..Default::default() }) {
        Ok(p) => p,
        Err(e) => return Source::Unreachable(e.to_string()),
    };
    let mut out = BTreeMap::new();
    for c in &spec.components {
        let Runs::StaticPod { manifest, container } = &c.runs else { continue };
        let Some(Some((pod_name, image))) = inputs.manifests.get(&c.name) else {
            out.insert(c.name.clone(), Measured::new(State::NotInstalled, format!("no manifest {manifest}")));
            continue;
        };
        let mut mine: Vec<&Container> = containers
            .iter()
            .filter(|k| k.labels.get(CONTAINER_NAME).is_some_and(|n| n == container))
            .collect();
        mine.sort_by_key(|k| k.created_at);
        let m = if let Some(k) = mine.last() {
            container_state(&cri, k)
        } else {
            let sandbox = pods.iter().any(|p| p.name == format!("{pod_name}-{}", spec.node));
            let mut m = Measured::new(State::NotStarted, "");
            m.reason = match cri.image_status(image) {
                Ok(ImageLookup::Absent) => format!("image {image} not present"),
                _ if sandbox => format!("Pod sandbox ready, no {container} container"),
                _ => format!("no {container} container"),
            };
            m
        };
        out.insert(c.name.clone(), m);
    }
    Source::Got(out)
}

fn container_state(cri: &dyn Cri, k: &Container) -> Measured {
    let restarts = k
        .annotations
        .get(RESTART_COUNT)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| u64::from(k.attempt));
    let mut m = match k.state {
        ContainerState::Running => Measured::new(State::Running, ""),
        ContainerState::Created => Measured::new(State::NotStarted, "created, not started"),
        ContainerState::Exited | ContainerState::Unknown => {
            let mut m = Measured::new(State::Exited, "");
            if let Ok(Some(s)) = cri.container_status(&k.id) {
                let why = if s.reason.is_empty() { String::new() } else { format!(" ({})", s.reason) };
                m.reason = format!("exit code {}{why}", s.exit_code);
                let last = cri
                    .container_log(&k.id, 1)
                    .ok()
                    .flatten()
                    .and_then(|l| l.last().map(|l| l.text.trim().to_string()))
                    .filter(|t| !t.is_empty());
                m.detail = last.unwrap_or_else(|| s.message.trim().to_string());
            }
            m
        }
    };
    if restarts > 0 {
        m.detail = join(&[&format!("restarts: {restarts}"), &m.detail]);
    }
    m.restarts = Some(restarts);
    m
}

// ---------------------------------------------------------------------------------------
// The API server

/// What the API server answered: each list (or why not), and the Node.
struct Api {
    deployments: Result<Vec<Value>, io::Error>,
    daemonsets: Result<Vec<Value>, io::Error>,
    node: NodeState,
}

fn api_source(mode: Mode, spec: &Spec, inputs: &Inputs) -> Source<Api> {
    if Host::for_mode(mode).cluster.is_recording() {
        return Source::NotAsked;
    }
    let Some(kubeconfig) = &inputs.kubeconfig else {
        return Source::Unreachable(format!("the kubeconfig {} is outside the node root", spec.kubeconfig));
    };
    if !kubeconfig.exists() {
        return Source::Unreachable(format!(
            "no kubeconfig {} yet (init or join writes it)",
            spec.kubeconfig
        ));
    }
    let wants = |kind: &str| {
        spec.components.iter().any(|c| {
            matches!(
                (&c.runs, kind),
                (Runs::Deployment { .. }, "Deployment") | (Runs::DaemonSet { .. }, "DaemonSet")
            )
        })
    };
    let list = |kind: &'static str| -> Result<Vec<Value>, io::Error> {
        if !wants(kind) {
            return Ok(Vec::new());
        }
        let host = Host::for_mode(mode);
        let collection = ObjectRef::collection("apps/v1", kind, "").map_err(io::Error::other)?;
        host.cluster.list_within(kubeconfig, &collection, "", inputs.deadline)
    };
    let (deployments, daemonsets, node) = std::thread::scope(|s| {
        let d = s.spawn(|| list("Deployment"));
        let ds = s.spawn(|| list("DaemonSet"));
        let n = s.spawn(|| node_state(mode, kubeconfig, &spec.node, inputs.deadline));
        let failed = || io::Error::other("the probe panicked");
        (
            d.join().unwrap_or_else(|_| Err(failed())),
            ds.join().unwrap_or_else(|_| Err(failed())),
            n.join().unwrap_or_else(|_| NodeState::Unknown("the probe panicked".into())),
        )
    });
    Source::Got(Api { deployments, daemonsets, node })
}

fn node_state(mode: Mode, kubeconfig: &Path, name: &str, deadline: Duration) -> NodeState {
    let host = Host::for_mode(mode);
    let r = match ObjectRef::new("v1", "Node", "", name) {
        Ok(r) => r,
        Err(e) => return NodeState::Unknown(e),
    };
    match host.cluster.get_within(kubeconfig, &r, deadline) {
        Err(e) => NodeState::Unknown(unreachable(&e)),
        Ok(None) => NodeState::NotRegistered,
        Ok(Some(node)) => {
            let ready = node["status"]["conditions"]
                .as_array()
                .and_then(|l| l.iter().find(|c| c["type"] == "Ready").cloned());
            match ready {
                Some(c) if c["status"] == "True" => NodeState::Ready,
                Some(c) => NodeState::NotReady {
                    reason: c["reason"].as_str().unwrap_or_default().to_string(),
                    message: c["message"].as_str().unwrap_or_default().to_string(),
                },
                None => NodeState::NotReady {
                    reason: String::new(),
                    message: "the kubelet has not reported a Ready condition".into(),
                },
            }
        }
    }
}

/// An API error as a row shows it: `API server not reachable: <why>`, or what the server said.
fn unreachable(e: &io::Error) -> String {
    match retry_reason(e) {
        Some(short) if short.starts_with("API server not answering") => {
            format!("API server not reachable: {}", short.trim_start_matches("API server not answering: "))
        }
        _ if e.kind() == io::ErrorKind::PermissionDenied => e.to_string(),
        _ => format!("API server not reachable: {e}"),
    }
}

/// Whether an error is the server refusing this kubeconfig's user the read (403), not its
/// credentials (401): a worker's kubelet.conf may not read Deployments or `DaemonSets`.
fn forbidden(e: &io::Error) -> bool {
    answered_status(e) == Some(403)
}

fn workload(c: &Component, namespace: &str, object: &str, source: &Source<Api>) -> Measured {
    let daemonset = matches!(c.runs, Runs::DaemonSet { .. });
    let pick = |api: &Api| -> Option<Measured> {
        let list = if daemonset { &api.daemonsets } else { &api.deployments };
        let items = match list {
            Err(e) if forbidden(e) => {
                return Some(Measured::new(
                    State::Unreadable,
                    format!("the kubeconfig may not read it: {e}"),
                ));
            }
            Err(e) => return Some(Measured::new(State::Unknown, unreachable(e))),
            Ok(items) => items,
        };
        let Some(o) =
            items.iter().find(|o| o["metadata"]["namespace"] == namespace && o["metadata"]["name"] == object)
        else {
            return Some(Measured::new(
                State::NotInstalled,
                format!("no {} {namespace}/{object}", c.runs.label()),
            ));
        };
        let num = |v: &Value| v.as_u64().unwrap_or(0);
        let (ready, desired) = if daemonset {
            (num(&o["status"]["numberReady"]), num(&o["status"]["desiredNumberScheduled"]))
        } else {
            (num(&o["status"]["readyReplicas"]), o["spec"]["replicas"].as_u64().unwrap_or(1))
        };
        let ok = ready >= desired && (desired > 0 || !daemonset);
        let mut m = Measured::new(
            if ok { State::Ready } else { State::NotReady },
            format!("{ready}/{desired} ready"),
        );
        m.replicas = Some((ready, desired));
        Some(m)
    };
    from_source(source, "API server", pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(active: &str, sub: &str, restarts: u64) -> UnitStatus {
        UnitStatus {
            id: "kubelet.service".into(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: "exit-code".into(),
            restarts,
            unit_file_state: "enabled".into(),
            exec_main_status: 1,
        }
    }

    #[test]
    fn a_restart_loop_is_told_from_a_start_and_a_run() {
        // Waiting to be started again: a crash loop, named by the file it misses.
        let m = unit_state(&unit("activating", "auto-restart", 3), Some("E1207 failed"), Some("config.yaml"));
        assert_eq!((m.state, m.reason.as_str()), (State::CrashLooping, "config.yaml missing"));
        assert_eq!(m.detail, "exit status 1; enabled; restarts: 3");
        // With its files there: its last log line says why.
        let m = unit_state(&unit("activating", "auto-restart", 3), Some("E1207 failed"), None);
        assert_eq!((m.state, m.reason.as_str()), (State::CrashLooping, "E1207 failed"));
        // Caught in the few milliseconds it runs between two exits.
        let m = unit_state(&unit("active", "running", 4), None, Some("config.yaml"));
        assert_eq!(m.state, State::CrashLooping);
        // Restarted once, running with its files: running.
        let m = unit_state(&unit("active", "running", 1), None, None);
        assert_eq!((m.state, m.detail.as_str()), (State::Running, "enabled; restarts: 1"));
        // Its first start, not a loop.
        assert_eq!(
            unit_state(&unit("activating", "start", 0), None, Some("config.yaml")).state,
            State::Starting
        );
        assert_eq!(unit_state(&unit("failed", "failed", 0), Some("boom"), None).reason, "boom");
        assert_eq!(unit_state(&unit("inactive", "dead", 0), None, None).state, State::Stopped);
        let mut gone = unit("inactive", "dead", 0);
        gone.load_state = "not-found".into();
        let m = unit_state(&gone, None, None);
        assert_eq!((m.state, m.detail.as_str()), (State::NotInstalled, "no unit kubelet.service"));
    }

    #[test]
    fn states_count_as_installed_and_running() {
        assert!(State::CrashLooping.installed() && !State::CrashLooping.running());
        assert!(State::NotStarted.installed() && !State::NotStarted.running());
        assert!(!State::Unknown.installed() && !State::NotInstalled.installed());
        assert!(State::Ready.running() && State::Running.running() && !State::NotReady.running());
        // A read the kubeconfig may not make does not count against a stage.
        assert!(State::Unreadable.running());
    }
}
