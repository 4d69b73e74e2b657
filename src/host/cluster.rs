//! The Kubernetes API: readiness, server-side apply, get, delete, and the `cluster-info` fetch
//! of join discovery. Asked for real with the kube crate; recorded elsewhere.
//!
//! Objects are plain JSON (`serde_json::Value`): kscript sends what scripts build and reads
//! back what the server answers, with no typed model in between. The REST path of an object
//! comes from its `apiVersion`, `kind`, namespace and name ([`ObjectRef`]).
//!
//! kscript is synchronous; [`RealCluster`] keeps a current-thread tokio runtime of its own and
//! blocks on each call, with a deadline on every one. Clients are made once per kubeconfig.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use kube::core::Request;
use kube::core::params::{DeleteParams, GetParams, ListParams, Patch, PatchParams};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

use super::etcd::{self, EtcdTls};
use super::https::{self, Endpoint};
use super::{io_kind_of, root_cause, seconds};

/// The field manager of every server-side apply kscript makes.
pub const FIELD_MANAGER: &str = "kscript";

/// Where discovery reads the cluster's public information.
pub const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// What a server-side apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist: made now.
    Created,
    /// The object changed (its `resourceVersion` moved).
    Configured,
    /// Already so: the `resourceVersion` did not move.
    Unchanged,
    /// Recorded, not sent (rendering, dry runs).
    Recorded,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Deleted,
    /// There was nothing to delete.
    Absent,
    /// Recorded, not sent.
    Recorded,
}

/// How a wait for the API server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// `/livez` and `/readyz` answered 200.
    Ready,
    /// There is no server to wait for (rendering, dry runs).
    Recorded,
    /// The caller's look between tries said to stop.
    Stopped,
}

/// Which server certificates a `cluster-info` fetch accepts.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Any: discovery's first fetch, whose answer is then checked by its signature and pins.
    Nothing,
    /// Those signed by this CA (PEM) for the server's name: discovery's second fetch.
    Ca(&'a str),
}

/// Which object: what its REST path is made from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

/// Plurals that are not the lower-case kind plus `s`, and the kinds the stock flows use
/// (listed so that the table says which resources kscript has been checked against).
const PLURALS: &[(&str, &str)] = &[
    ("ClusterRole", "clusterroles"),
    ("ClusterRoleBinding", "clusterrolebindings"),
    ("ConfigMap", "configmaps"),
    ("DaemonSet", "daemonsets"),
    ("Deployment", "deployments"),
    ("Endpoints", "endpoints"),
    ("Ingress", "ingresses"),
    ("IngressClass", "ingressclasses"),
    ("Namespace", "namespaces"),
    ("NetworkPolicy", "networkpolicies"),
    ("Node", "nodes"),
    ("PriorityClass", "priorityclasses"),
    ("Role", "roles"),
    ("RoleBinding", "rolebindings"),
    ("RuntimeClass", "runtimeclasses"),
    ("Secret", "secrets"),
    ("Service", "services"),
    ("ServiceAccount", "serviceaccounts"),
    ("StorageClass", "storageclasses"),
];

/// The resource name of a kind in REST paths: from the table, else the lower-case kind + `s`.
pub fn plural(kind: &str) -> String {
    PLURALS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or_else(|| format!("{}s", kind.to_ascii_lowercase()), |(_, p)| (*p).to_string())
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('%') && !s.contains('?')
}

impl ObjectRef {
    /// A reference from its parts; an empty namespace means cluster-scoped.
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<Self, String> {
        let version_ok = match api_version.split_once('/') {
            None => valid_segment(api_version),
            Some((group, version)) => valid_segment(group) && valid_segment(version),
        };
        if !version_ok {
            return Err(format!("`{api_version}` is not an apiVersion such as `v1` or `apps/v1`"));
        }
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("`{kind}` is not a kind such as `ConfigMap`"));
        }
        if !valid_segment(name) {
            return Err(format!("`{name}` is not an object name"));
        }
        if !namespace.is_empty() && !valid_segment(namespace) {
            return Err(format!("`{namespace}` is not a namespace"));
        }
        Ok(Self {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name: name.to_string(),
        })
    }

    /// The reference of an object: its `apiVersion`, `kind`, `metadata.namespace` (absent for
    /// cluster-scoped objects) and `metadata.name`.
    pub fn of(object: &Value) -> Result<Self, String> {
        let field = |v: Option<&Value>, what: &str| -> Result<String, String> {
            match v {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(format!("the object has no {what}")),
            }
        };
        if !object.is_object() {
            return Err("an object is a map with apiVersion, kind and metadata".into());
        }
        let meta = object.get("metadata");
        let namespace = match meta.and_then(|m| m.get("namespace")) {
            None | Some(Value::Null) => String::new(),
            Some(v) => field(Some(v), "metadata.namespace as a string")?,
        };
        Self::new(
            &field(object.get("apiVersion"), "apiVersion")?,
            &field(object.get("kind"), "kind")?,
            &namespace,
            &field(meta.and_then(|m| m.get("name")), "metadata.name")?,
        )
    }

    /// The path of the object's collection: `/api/v1/namespaces/kube-system/configmaps`,
    /// `/apis/rbac.authorization.k8s.io/v1/clusterroles`.
    pub fn collection_path(&self) -> String {
        let base = if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        };
        match &self.namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", plural(&self.kind)),
            None => format!("{base}/{}", plural(&self.kind)),
        }
    }

    /// A reference to the collection of `kind` in `namespace` (`""`: cluster-scoped), for a
    /// list; its name is empty.
    pub fn collection(api_version: &str, kind: &str, namespace: &str) -> Result<Self, String> {
        let mut r = Self::new(api_version, kind, namespace, "list")?;
        r.name.clear();
        Ok(r)
    }

    /// The object's own path.
    pub fn path(&self) -> String {
        format!("{}/{}", self.collection_path(), self.name)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where a render keeps the API objects it recorded (Secrets' values redacted), for review
/// and for `kscript test`'s snapshots.
pub const RENDERED_OBJECTS: &str = "/var/lib/kscript/objects.yaml";

/// The objects as one YAML stream, each document a redacted copy under a comment naming it.
pub fn objects_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        let name = ObjectRef::of(object).map_or_else(|_| "?".to_string(), |r| r.to_string());
        out.push_str(&format!("--- # {name}\n"));
        out.push_str(&crate::yaml::to_string(&redacted(object)));
    }
    out
}

/// The placeholder that stands for a Secret's values wherever an object is shown.
pub const REDACTED: &str = "[REDACTED]";

/// A copy of `object` fit to print: a Secret's `data` and `stringData` values replaced by a
/// placeholder (the keys stay, so what the Secret holds is still seen).
pub fn redacted(object: &Value) -> Value {
    let mut copy = object.clone();
    if copy.get("kind").and_then(Value::as_str) == Some("Secret") {
        for key in ["data", "stringData"] {
            if let Some(Value::Object(m)) = copy.get_mut(key) {
                for v in m.values_mut() {
                    *v = Value::String(REDACTED.into());
                }
            }
        }
    }
    copy
}

fn resource_version(object: &Value) -> Option<&str> {
    object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
}

/// Whether two states of one object differ only in what others change on their own: its
/// status and the bookkeeping of every write (resourceVersion, managedFields, generation). A
/// controller that updates a `DaemonSet`'s status between apply's read and its patch changes the
/// resourceVersion without the apply having changed anything.
fn same_but_for_others(before: &Value, after: &Value) -> bool {
    let ours = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in ["resourceVersion", "managedFields", "generation"] {
                m.remove(k);
            }
        }
        v
    };
    ours(before) == ours(after)
}

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(500);

/// The Kubernetes API, as kscript uses it. `kubeconfig` is a host path; the recording
/// implementation never reads it.
pub trait Cluster {
    /// Waits until the API server answers 200 on `/livez`, then on `/readyz`; on timeout, an
    /// error naming the server and the last answer. After each try that finds it not ready,
    /// `between` is called: `Break` ends the wait at once ([`Readiness::Stopped`]). It is never
    /// called when recording.
    fn wait_ready(
        &self,
        kubeconfig: &Path,
        timeout: Duration,
        between: &mut dyn FnMut() -> ControlFlow<()>,
    ) -> io::Result<Readiness>;
    /// Server-side apply of `object` (field manager `kscript`, conflicts forced).
    fn apply(&self, kubeconfig: &Path, object: &Value) -> io::Result<Applied>;
    /// The object, or `None` when there is none (or, recording, when none was recorded).
    fn get(&self, kubeconfig: &Path, object: &ObjectRef) -> io::Result<Option<Value>> {
        self.get_within(kubeconfig, object, QUERY_DEADLINE)
    }
    /// [`Cluster::get`], giving up on an answer after `deadline` (a retrying caller's share of
    /// its own timeout).
    fn get_within(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        deadline: Duration,
    ) -> io::Result<Option<Value>>;
    fn delete(&self, kubeconfig: &Path, object: &ObjectRef) -> io::Result<Removed>;
    /// The `ConfigMap` `kube-public/cluster-info` of the API server at `server`
    /// (`https://host:port` or `host:port`), fetched anonymously with the given trust; `None`
    /// when there is no server to ask.
    fn cluster_info(&self, server: &str, trust: Trust<'_>, timeout: Duration) -> io::Result<Option<Value>>;
    /// The objects of `collection` (see [`ObjectRef::collection`]) whose labels match
    /// `selector` (`key=value` pairs joined by commas; `""` for all), each with its
    /// `apiVersion` and `kind`. Recording: the matching objects recorded.
    fn list(&self, kubeconfig: &Path, collection: &ObjectRef, selector: &str) -> io::Result<Vec<Value>> {
        self.list_within(kubeconfig, collection, selector, QUERY_DEADLINE)
    }
    /// [`Cluster::list`], giving up on an answer after `deadline` (`kscript status` asks with
    /// a short one, so that a server that does not answer does not hold up the others).
    fn list_within(
        &self,
        kubeconfig: &Path,
        collection: &ObjectRef,
        selector: &str,
        deadline: Duration,
    ) -> io::Result<Vec<Value>>;
    /// One call of etcd's JSON gateway at `endpoint` (an etcd client URL): POST `body` to
    /// `path`, over mutual TLS. `None` when recording: there is no etcd to ask.
    fn etcd(&self, endpoint: &str, tls: &EtcdTls, path: &str, body: &Value) -> io::Result<Option<Value>>;
    /// Whether calls are recorded rather than sent.
    fn is_recording(&self) -> bool;
    /// The objects applied and not deleted since this cluster was made, in the order first
    /// applied, when calls are recorded; nothing when they are sent.
    fn recorded(&self) -> Vec<Value> {
        Vec::new()
    }
    /// When calls are recorded, starts from `objects` as if they had been applied (a render
    /// reads back the cluster an earlier render of the same node recorded); nothing otherwise.
    fn preload(&self, _objects: Vec<Value>) {}
    /// Whether [`Cluster::preload`] started this cluster from an earlier render's objects.
    fn preloaded(&self) -> bool {
        false
    }
    /// Whether this run recorded an apply or a delete of its own (beyond what was preloaded).
    fn recorded_any(&self) -> bool {
        false
    }

    /// Waits until the object exists, and returns it; `None` when recording.
    fn wait_for(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        timeout: Duration,
    ) -> io::Result<Option<Value>> {
        self.wait_until(kubeconfig, object, None, timeout)
    }

    /// Waits until the object's condition `kind` is `True` (a Node's `Ready`), and returns
    /// the object; `None` when recording.
    fn wait_condition(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        kind: &str,
        timeout: Duration,
    ) -> io::Result<Option<Value>> {
        self.wait_until(kubeconfig, object, Some(kind), timeout)
    }

    /// Polls the object until it exists and, with `condition`, has that condition `True`.
    fn wait_until(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        condition: Option<&str>,
        timeout: Duration,
    ) -> io::Result<Option<Value>> {
        if self.is_recording() {
            return self.get(kubeconfig, object);
        }
        let start = Instant::now();
        loop {
            let why = match self.get(kubeconfig, object) {
                Ok(Some(found)) if condition.is_none_or(|c| condition_true(&found, c)) => {
                    return Ok(Some(found));
                }
                Ok(Some(_)) => format!("its {} condition is not True", condition.unwrap_or_default()),
                Ok(None) => "it does not exist".to_string(),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= timeout {
                let state = condition.map_or_else(|| "there".to_string(), str::to_string);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{object} is not {state} after {}: {why}", seconds(timeout)),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Whether an object's `status.conditions` has `kind` with status `True`.
pub fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|list| list.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// How long one call may take, and its connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
const QUERY_DEADLINE: Duration = Duration::from_secs(30);

/// What to check when the API server cannot be reached.
const HINT: &str = "is kube-apiserver running? `crictl ps --name kube-apiserver`";

/// An API call that failed in a way that asking again may mend: the server is not up yet, or
/// not ready to answer (its RBAC or the object not in place yet, a 5xx while it starts). It
/// travels inside the `io::Error` the calls return; [`retry_reason`] finds it.
#[derive(Debug)]
struct Retryable {
    /// Why, in a few words, for a wait's progress ("API server not answering: connection refused").
    reason: String,
    /// The whole explanation, the error's text.
    message: String,
    /// The status the API server answered with, when it answered.
    code: Option<u16>,
}

impl fmt::Display for Retryable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Retryable {}

/// `error`, marked as worth retrying for `reason` when there is one.
fn retryable(error: io::Error, reason: Option<String>) -> io::Error {
    match reason {
        Some(reason) => {
            io::Error::new(error.kind(), Retryable { reason, message: error.to_string(), code: None })
        }
        None => error,
    }
}

/// [`retryable`] for an answer of the API server with the status `code`.
fn retryable_answer(error: io::Error, reason: Option<String>, code: Option<u16>) -> io::Error {
    match reason {
        Some(reason) => io::Error::new(error.kind(), Retryable { reason, message: error.to_string(), code }),
        None => error,
    }
}

/// The status the API server answered a failed call with, when it is one that may mend
/// (401, 403, 404, 408, 429, 5xx: see [`retry_reason`]); `kscript status` tells a read its
/// kubeconfig may not make (403) from credentials refused (401) by it.
pub fn answered_status(error: &io::Error) -> Option<u16> {
    error.get_ref()?.downcast_ref::<Retryable>().and_then(|r| r.code)
}

/// Why asking again may succeed, in a few words, when `error` came from an API call that
/// failed in a way time may mend (see [`Retryable`]); `None` when it will not get better by
/// itself (a refused certificate, a bad request, a kubeconfig that cannot be read).
pub fn retry_reason(error: &io::Error) -> Option<&str> {
    error.get_ref()?.downcast_ref::<Retryable>().map(|r| r.reason.as_str())
}

/// A connection failure in a few words: `connection refused`, `connection reset`, else its cause.
fn short_cause(kind: Option<io::ErrorKind>, cause: &str) -> String {
    match kind {
        Some(k)
            if !matches!(
                k,
                io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
            ) =>
        {
            k.to_string()
        }
        _ => cause.to_string(),
    }
}

/// Why an answer with an error status may get better: the server or what it needs is still
/// coming up. `None` for the statuses that say the request itself is wrong.
fn status_reason(code: u16) -> Option<String> {
    match code {
        401 => Some("the API server does not accept these credentials yet (401)".into()),
        403 => Some("forbidden for now (403): the RBAC rules may not be in place yet".into()),
        404 => Some("not there yet (404)".into()),
        408 | 429 => Some(format!("the API server is busy ({code})")),
        500..=599 => Some(format!("the API server answered {code}")),
        _ => None,
    }
}

/// A client made from one kubeconfig.
#[derive(Clone)]
struct Connection {
    client: kube::Client,
    /// The server URL, for messages.
    server: String,
    kubeconfig: PathBuf,
}

/// Why one request failed.
enum Failure {
    /// The server answered with an error status.
    Api(Box<kube::core::Status>),
    /// No connection, or it broke.
    Transport {
        kind: Option<io::ErrorKind>,
        cause: String,
    },
    Timeout(Duration),
}

impl Failure {
    fn code(&self) -> Option<u16> {
        match self {
            Failure::Api(s) => Some(s.code),
            _ => None,
        }
    }

    /// Why asking again may succeed; `None` when it will not by itself. A 404 is an answer
    /// (the object is not there) and never reaches here as a failure of a get.
    fn retry_reason(&self) -> Option<String> {
        match self {
            Failure::Timeout(d) => {
                Some(format!("API server not answering: no answer within {}", seconds(*d)))
            }
            Failure::Transport { kind, cause } => {
                Some(format!("API server not answering: {}", short_cause(*kind, cause)))
            }
            Failure::Api(s) if s.code == 404 => None,
            Failure::Api(s) => status_reason(s.code),
        }
    }
}

/// The API servers named by kubeconfigs on this host.
pub struct RealCluster {
    // The clients are dropped before the runtime they were made in.
    clients: RefCell<HashMap<PathBuf, Connection>>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl fmt::Debug for RealCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealCluster")
            .field("kubeconfigs", &self.clients.borrow().keys())
            .finish_non_exhaustive()
    }
}

impl Default for RealCluster {
    fn default() -> Self {
        Self::new()
    }
}

impl RealCluster {
    pub fn new() -> Self {
        Self { clients: RefCell::default(), runtime: OnceCell::new() }
    }

    fn runtime(&self) -> io::Result<&tokio::runtime::Runtime> {
        super::lazy_runtime(&self.runtime)
    }

    /// The client for `kubeconfig`, made on first use.
    fn connect(&self, kubeconfig: &Path) -> io::Result<Connection> {
        if let Some(c) = self.clients.borrow().get(kubeconfig) {
            return Ok(c.clone());
        }
        let shown = kubeconfig.display();
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| {
            let kind = io_kind_of(&e).unwrap_or(io::ErrorKind::InvalidData);
            let text = if kind == io::ErrorKind::NotFound {
                format!("there is no kubeconfig {shown}")
            } else {
                format!("cannot read the kubeconfig {shown}: {}", root_cause(&e))
            };
            io::Error::new(kind, text)
        })?;
        let rt = self.runtime()?;
        let options = kube::config::KubeConfigOptions::default();
        let mut config = rt.block_on(kube::Config::from_custom_kubeconfig(kc, &options)).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the kubeconfig {shown}: {}", root_cause(&e)))
        })?;
        config.connect_timeout = Some(CONNECT_DEADLINE);
        config.read_timeout = Some(QUERY_DEADLINE);
        config.write_timeout = Some(QUERY_DEADLINE);
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        // The client starts a task of its own: it needs the runtime as context.
        let client = {
            let _context = rt.enter();
            kube::Client::try_from(config).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the kubeconfig {shown}: {}", root_cause(&e)),
                )
            })?
        };
        let conn = Connection { client, server, kubeconfig: kubeconfig.to_path_buf() };
        self.clients.borrow_mut().insert(kubeconfig.to_path_buf(), conn.clone());
        Ok(conn)
    }

    /// Sends one request, within `deadline`; the body of a 2xx answer.
    fn send(
        &self,
        conn: &Connection,
        request: http::Request<Vec<u8>>,
        deadline: Duration,
    ) -> io::Result<Result<String, Failure>> {
        let rt = self.runtime()?;
        let answer =
            rt.block_on(async { tokio::time::timeout(deadline, conn.client.request_text(request)).await });
        Ok(match answer {
            Err(_) => Err(Failure::Timeout(deadline)),
            Ok(Ok(text)) => Ok(text),
            Ok(Err(kube::Error::Api(status))) => Err(Failure::Api(status)),
            Ok(Err(e)) => Err(Failure::Transport { kind: io_kind_of(&e), cause: root_cause(&e) }),
        })
    }

    /// A failed request as an error: what, which server, why, and what to check; marked
    /// retryable when time may mend it (see [`retry_reason`]).
    fn explain(conn: &Connection, what: &str, failure: &Failure) -> io::Error {
        retryable_answer(Self::explain_plain(conn, what, failure), failure.retry_reason(), failure.code())
    }

    fn explain_plain(conn: &Connection, what: &str, failure: &Failure) -> io::Error {
        let server = &conn.server;
        match failure {
            Failure::Timeout(d) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: no answer from the API server at {server} within {}; {HINT}", seconds(*d)),
            ),
            Failure::Transport { kind, cause } => io::Error::new(
                kind.unwrap_or(io::ErrorKind::Other),
                format!("{what}: cannot reach the API server at {server}: {cause}; {HINT}"),
            ),
            Failure::Api(s) if s.code == 401 => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{what}: the API server at {server} does not accept the credentials of {} ({}): is the kubeconfig's certificate signed by the cluster CA, and still valid?",
                    conn.kubeconfig.display(),
                    s.message
                ),
            ),
            Failure::Api(s) if s.code == 403 => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{what}: forbidden by the API server at {server}: {}", s.message),
            ),
            Failure::Api(s) => io::Error::other(format!(
                "{what}: the API server at {server} answered {} {}: {}",
                s.code, s.reason, s.message
            )),
        }
    }

    fn get_on(&self, conn: &Connection, object: &ObjectRef, deadline: Duration) -> io::Result<Option<Value>> {
        let request = Request::new(object.collection_path())
            .get(&object.name, &GetParams::default())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        match self.send(conn, request, deadline)? {
            Ok(text) => parse(&text).map(Some),
            Err(f) if f.code() == Some(404) => Ok(None),
            Err(f) => Err(Self::explain(conn, &format!("get {object}"), &f)),
        }
    }
}

fn parse(text: &str) -> io::Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidData, format!("the API server's answer is not JSON: {e}"))
    })
}

impl Cluster for RealCluster {
    fn wait_ready(
        &self,
        kubeconfig: &Path,
        timeout: Duration,
        between: &mut dyn FnMut() -> ControlFlow<()>,
    ) -> io::Result<Readiness> {
        let start = Instant::now();
        let conn = self.connect(kubeconfig)?;
        for probe in ["/livez", "/readyz"] {
            loop {
                let left = timeout.saturating_sub(start.elapsed());
                let request = http::Request::get(probe).body(Vec::new()).map_err(io::Error::other)?;
                let why = match self.send(
                    &conn,
                    request,
                    left.clamp(Duration::from_millis(100), QUERY_DEADLINE),
                )? {
                    Ok(_) => break,
                    Err(Failure::Api(s)) => {
                        let text =
                            s.message.lines().filter(|l| l.contains("failed")).collect::<Vec<_>>().join("; ");
                        format!(
                            "{probe} answered {}{}",
                            s.code,
                            if text.is_empty() { String::new() } else { format!(": {text}") }
                        )
                    }
                    Err(Failure::Transport { cause, .. }) => format!("{probe}: {cause}"),
                    Err(Failure::Timeout(_)) => format!("{probe}: no answer"),
                };
                if start.elapsed() >= timeout {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the API server at {} is not ready after {} ({why}); {HINT}",
                            conn.server,
                            seconds(timeout)
                        ),
                    ));
                }
                if between().is_break() {
                    return Ok(Readiness::Stopped);
                }
                std::thread::sleep(POLL.min(timeout.saturating_sub(start.elapsed())));
            }
        }
        Ok(Readiness::Ready)
    }

    fn apply(&self, kubeconfig: &Path, object: &Value) -> io::Result<Applied> {
        let r = ObjectRef::of(object).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = self.connect(kubeconfig)?;
        let before = self.get_on(&conn, &r, QUERY_DEADLINE)?;
        // Strict: a field the server does not know is an error, not silently dropped (a typo in a
        // forked script fails loudly).
        let params = PatchParams::apply(FIELD_MANAGER).force().validation_strict();
        let request = Request::new(r.collection_path())
            .patch(&r.name, &params, &Patch::Apply(object))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let after = match self.send(&conn, request, QUERY_DEADLINE)? {
            Ok(text) => parse(&text)?,
            Err(f) => return Err(Self::explain(&conn, &format!("apply {r}"), &f)),
        };
        Ok(match before {
            None => Applied::Created,
            Some(b)
                if resource_version(&b) == resource_version(&after) || same_but_for_others(&b, &after) =>
            {
                Applied::Unchanged
            }
            Some(_) => Applied::Configured,
        })
    }

    fn get_within(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        deadline: Duration,
    ) -> io::Result<Option<Value>> {
        let conn = self.connect(kubeconfig)?;
        self.get_on(&conn, object, deadline)
    }

    fn delete(&self, kubeconfig: &Path, object: &ObjectRef) -> io::Result<Removed> {
        let conn = self.connect(kubeconfig)?;
        let request = Request::new(object.collection_path())
            .delete(&object.name, &DeleteParams::default())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        match self.send(&conn, request, QUERY_DEADLINE)? {
            Ok(_) => Ok(Removed::Deleted),
            Err(f) if f.code() == Some(404) => Ok(Removed::Absent),
            Err(f) => Err(Self::explain(&conn, &format!("delete {object}"), &f)),
        }
    }

    fn list_within(
        &self,
        kubeconfig: &Path,
        collection: &ObjectRef,
        selector: &str,
        deadline: Duration,
    ) -> io::Result<Vec<Value>> {
        let conn = self.connect(kubeconfig)?;
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        let request = Request::new(collection.collection_path())
            .list(&params)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let what = format!("list {}", collection.collection_path());
        let list = match self.send(&conn, request, deadline)? {
            Ok(text) => parse(&text)?,
            Err(f) => return Err(Self::explain(&conn, &what, &f)),
        };
        let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(items
            .into_iter()
            .map(|mut item| {
                item["apiVersion"] = Value::String(collection.api_version.clone());
                item["kind"] = Value::String(collection.kind.clone());
                item
            })
            .collect())
    }

    fn etcd(&self, endpoint: &str, tls: &EtcdTls, path: &str, body: &Value) -> io::Result<Option<Value>> {
        let rt = self.runtime()?;
        match rt.block_on(async {
            tokio::time::timeout(etcd::DEADLINE, etcd::post(endpoint, tls, path, body)).await
        }) {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from etcd at {endpoint} within {}", seconds(etcd::DEADLINE)),
            )),
            Ok(answer) => answer.map(Some),
        }
    }

    fn cluster_info(&self, server: &str, trust: Trust<'_>, timeout: Duration) -> io::Result<Option<Value>> {
        let endpoint = Endpoint::parse(server, 6443, API_SERVER_EXAMPLE)?;
        let config = tls_config(trust)?;
        let rt = self.runtime()?;
        let answer =
            rt.block_on(async { tokio::time::timeout(timeout, fetch_cluster_info(&endpoint, config)).await });
        match answer {
            Err(_) => Err(retryable(
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer from the API server at {} within {}", endpoint.url, seconds(timeout)),
                ),
                Some(format!("API server not answering: no answer within {}", seconds(timeout))),
            )),
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(e)) => Err(retryable(e.explain(&endpoint, trust), e.retry_reason(trust))),
        }
    }

    fn is_recording(&self) -> bool {
        false
    }
}

/// What a server address looks like, for errors.
const API_SERVER_EXAMPLE: &str =
    "an API server address such as 192.168.56.10:6443 or https://cp.example:6443";

/// Why a `cluster-info` fetch failed.
enum FetchError {
    Connect(io::Error),
    BadName,
    Tls(io::Error),
    Http(io::Error),
    Status(http::StatusCode, String),
    NotJson(String),
}

impl From<https::Failure> for FetchError {
    fn from(f: https::Failure) -> Self {
        match f {
            https::Failure::Connect(e) => Self::Connect(e),
            https::Failure::BadName => Self::BadName,
            https::Failure::Tls(e) => Self::Tls(e),
            https::Failure::Http(e) => Self::Http(e),
        }
    }
}

impl FetchError {
    /// Why fetching again may succeed, as kubeadm's discovery retries every failed fetch;
    /// `None` for what will not mend: an address TLS cannot check, and a server certificate
    /// refused by the CA the pins verified (the server is not that cluster's).
    fn retry_reason(&self, trust: Trust<'_>) -> Option<String> {
        match self {
            FetchError::Connect(e) => {
                Some(format!("API server not answering: {}", short_cause(Some(e.kind()), &e.to_string())))
            }
            FetchError::BadName => None,
            FetchError::Tls(e) => {
                let refused_certificate = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                match trust {
                    Trust::Ca(_) if refused_certificate => None,
                    _ => Some(format!(
                        "TLS with the API server failed: {}",
                        short_cause(Some(e.kind()), &e.to_string())
                    )),
                }
            }
            FetchError::Http(e) => Some(format!("the connection to the API server broke: {e}")),
            FetchError::Status(code, _) => match code.as_u16() {
                401 | 403 => Some(format!("cluster-info not readable anonymously yet ({code})")),
                404 => Some("no cluster-info yet (404)".into()),
                other => {
                    Some(status_reason(other).unwrap_or_else(|| format!("the API server answered {code}")))
                }
            },
            FetchError::NotJson(_) => Some("the API server's answer is not a ConfigMap".into()),
        }
    }

    fn explain(&self, endpoint: &Endpoint, trust: Trust<'_>) -> io::Error {
        let url = &endpoint.url;
        match self {
            FetchError::Connect(e) => io::Error::new(
                e.kind(),
                format!(
                    "cannot connect to the API server at {url}: {e}; is the control plane up, and is that its API server's address, open to this node?"
                ),
            ),
            FetchError::BadName => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a host name TLS can check", endpoint.host),
            ),
            FetchError::Tls(e) => match trust {
                Trust::Nothing => {
                    io::Error::new(e.kind(), format!("TLS with the API server at {url} failed: {e}"))
                }
                Trust::Ca(_) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the API server at {url} does not prove itself with the CA that cluster-info holds (its certificate is not signed by that CA, or not for `{}`): {e}",
                        endpoint.host
                    ),
                ),
            },
            FetchError::Http(e) => {
                io::Error::new(e.kind(), format!("HTTP with the API server at {url} failed: {e}"))
            }
            FetchError::Status(code, text) => {
                let kind = match code.as_u16() {
                    401 | 403 => io::ErrorKind::PermissionDenied,
                    404 => io::ErrorKind::NotFound,
                    _ => io::ErrorKind::Other,
                };
                let why = match code.as_u16() {
                    401 | 403 => {
                        "anonymous clients may not read it: the Role and RoleBinding kubeadm:bootstrap-signer-clusterinfo for system:anonymous are missing, or anonymous authentication is off"
                    }
                    404 => {
                        "there is none: was this control plane made by `kubeadm init` or kscript's control-plane.rhai (its bootstrap-token step)?"
                    }
                    _ => "the server could not answer",
                };
                let text: String = text.chars().take(300).collect();
                io::Error::new(
                    kind,
                    format!(
                        "the API server at {url} answered {code} for kube-public/cluster-info: {why} ({})",
                        text.trim()
                    ),
                )
            }
            FetchError::NotJson(e) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the API server at {url} answered something that is not a ConfigMap: {e}"),
            ),
        }
    }
}

/// The rustls configuration of a `cluster-info` fetch.
fn tls_config(trust: Trust<'_>) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let config = match trust {
        Trust::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
            .with_no_client_auth(),
        Trust::Ca(pem) => builder.with_root_certificates(https::roots(pem, "CA")?).with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// GET `cluster-info` over one TLS connection, anonymously.
async fn fetch_cluster_info(
    endpoint: &Endpoint,
    config: Arc<rustls::ClientConfig>,
) -> Result<Value, FetchError> {
    let request = http::Request::get(CLUSTER_INFO_PATH)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| FetchError::Http(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let (status, body) = https::exchange(endpoint, config, request).await?;
    if !status.is_success() {
        return Err(FetchError::Status(status, String::from_utf8_lossy(&body).into_owned()));
    }
    serde_json::from_slice(&body).map_err(|e| FetchError::NotJson(e.to_string()))
}

/// Accepts any server certificate: used only for discovery's first fetch, whose answer is
/// trusted for its token signature and CA pins, not for the connection it came over. The
/// handshake signature is still checked, against the certificate presented.
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Records API calls without a server (rendering, dry runs). It keeps the objects applied, in
/// order, and answers `get` from them, so a flow that reads back what it applied runs the
/// same way.
#[derive(Debug, Default)]
pub struct RecordingCluster {
    objects: RefCell<Vec<(ObjectRef, Value)>>,
    /// Whether an apply or a delete was recorded (preloaded objects are not).
    touched: std::cell::Cell<bool>,
    /// Whether it started from an earlier render's objects.
    preloaded: std::cell::Cell<bool>,
}

impl Cluster for RecordingCluster {
    fn wait_ready(
        &self,
        _kubeconfig: &Path,
        _timeout: Duration,
        _between: &mut dyn FnMut() -> ControlFlow<()>,
    ) -> io::Result<Readiness> {
        Ok(Readiness::Recorded)
    }

    fn apply(&self, _kubeconfig: &Path, object: &Value) -> io::Result<Applied> {
        let r = ObjectRef::of(object).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.touched.set(true);
        let mut objects = self.objects.borrow_mut();
        match objects.iter_mut().find(|(k, _)| *k == r) {
            Some(slot) => slot.1 = object.clone(),
            None => objects.push((r, object.clone())),
        }
        Ok(Applied::Recorded)
    }

    fn get_within(
        &self,
        _kubeconfig: &Path,
        object: &ObjectRef,
        _deadline: Duration,
    ) -> io::Result<Option<Value>> {
        Ok(self.objects.borrow().iter().find(|(k, _)| k == object).map(|(_, v)| v.clone()))
    }

    fn delete(&self, _kubeconfig: &Path, object: &ObjectRef) -> io::Result<Removed> {
        self.touched.set(true);
        self.objects.borrow_mut().retain(|(k, _)| k != object);
        Ok(Removed::Recorded)
    }

    fn cluster_info(
        &self,
        _server: &str,
        _trust: Trust<'_>,
        _timeout: Duration,
    ) -> io::Result<Option<Value>> {
        Ok(None)
    }

    fn list_within(
        &self,
        _kubeconfig: &Path,
        collection: &ObjectRef,
        selector: &str,
        _deadline: Duration,
    ) -> io::Result<Vec<Value>> {
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        Ok(self
            .objects
            .borrow()
            .iter()
            .filter(|(r, _)| {
                r.api_version == collection.api_version
                    && r.kind == collection.kind
                    && r.namespace == collection.namespace
            })
            .filter(|(_, o)| {
                wanted.iter().all(|(k, v)| o["metadata"]["labels"][*k] == Value::String((*v).into()))
            })
            .map(|(_, o)| o.clone())
            .collect())
    }

    fn etcd(&self, _endpoint: &str, _tls: &EtcdTls, _path: &str, _body: &Value) -> io::Result<Option<Value>> {
        Ok(None)
    }

    fn is_recording(&self) -> bool {
        true
    }

    fn recorded(&self) -> Vec<Value> {
        self.objects.borrow().iter().map(|(_, v)| v.clone()).collect()
    }

    fn recorded_any(&self) -> bool {
        self.touched.get()
    }

    fn preloaded(&self) -> bool {
        self.preloaded.get()
    }

    fn preload(&self, objects: Vec<Value>) {
        self.preloaded.set(true);
        let mut held = self.objects.borrow_mut();
        for object in objects {
            if let Ok(r) = ObjectRef::of(&object)
                && !held.iter().any(|(k, _)| *k == r)
            {
                held.push((r, object));
            }
        }
    }
}

/// A dry run's cluster on this host: reads go to the real API server (through the node's
/// kubeconfigs) when it answers, over what the run has applied or deleted so far, which is only
/// recorded; nothing is waited for and etcd is not asked. Where there is no cluster yet (before
/// init: no kubeconfig, or nothing listening at its server) it is as a recording cluster's:
/// nothing there but what the run recorded, and that kubeconfig is not asked again. Any other
/// failure to read (forbidden, a TLS error, no answer in time) is passed on: a plan made from
/// an unread cluster would be wrong.
#[derive(Debug, Default)]
pub struct ReadingCluster {
    real: RealCluster,
    plan: RecordingCluster,
    deleted: RefCell<Vec<ObjectRef>>,
    /// Kubeconfigs found to name no cluster (missing, or their server refusing connections).
    no_cluster: RefCell<Vec<PathBuf>>,
}

impl ReadingCluster {
    /// What a failed read of the real cluster with `kubeconfig` means: no cluster (`Ok`, and the
    /// kubeconfig is not asked again) when there is no kubeconfig or its server refuses the
    /// connection; else the error, saying that the dry run needs to read it.
    fn no_cluster_or(&self, kubeconfig: &Path, e: &io::Error) -> io::Result<()> {
        match e.kind() {
            // NotFound from the kubeconfig, not a 404 of the server's (an answer).
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused if answered_status(e).is_none() => {
                self.no_cluster.borrow_mut().push(kubeconfig.to_path_buf());
                Ok(())
            }
            kind => Err(io::Error::new(
                kind,
                format!("a dry run reads the cluster it would change, and could not: {e}"),
            )),
        }
    }

    fn asks(&self, kubeconfig: &Path) -> bool {
        !self.no_cluster.borrow().iter().any(|k| k == kubeconfig)
    }
}

impl Cluster for ReadingCluster {
    fn wait_ready(
        &self,
        _kubeconfig: &Path,
        _timeout: Duration,
        _between: &mut dyn FnMut() -> ControlFlow<()>,
    ) -> io::Result<Readiness> {
        Ok(Readiness::Recorded)
    }

    fn apply(&self, kubeconfig: &Path, object: &Value) -> io::Result<Applied> {
        if let Ok(r) = ObjectRef::of(object) {
            self.deleted.borrow_mut().retain(|d| *d != r);
        }
        self.plan.apply(kubeconfig, object)
    }

    fn get_within(
        &self,
        kubeconfig: &Path,
        object: &ObjectRef,
        deadline: Duration,
    ) -> io::Result<Option<Value>> {
        if let Some(planned) = self.plan.get_within(kubeconfig, object, deadline)? {
            return Ok(Some(planned));
        }
        if self.deleted.borrow().contains(object) {
            return Ok(None);
        }
        if !self.asks(kubeconfig) {
            return Ok(None);
        }
        match self.real.get_within(kubeconfig, object, deadline) {
            Ok(found) => Ok(found),
            Err(e) => self.no_cluster_or(kubeconfig, &e).map(|()| None),
        }
    }

    fn delete(&self, kubeconfig: &Path, object: &ObjectRef) -> io::Result<Removed> {
        self.deleted.borrow_mut().push(object.clone());
        self.plan.delete(kubeconfig, object)
    }

    fn cluster_info(
        &self,
        _server: &str,
        _trust: Trust<'_>,
        _timeout: Duration,
    ) -> io::Result<Option<Value>> {
        Ok(None)
    }

    fn list_within(
        &self,
        kubeconfig: &Path,
        collection: &ObjectRef,
        selector: &str,
        deadline: Duration,
    ) -> io::Result<Vec<Value>> {
        let planned = self.plan.list_within(kubeconfig, collection, selector, deadline)?;
        let planned_refs: Vec<ObjectRef> = planned.iter().filter_map(|o| ObjectRef::of(o).ok()).collect();
        let deleted = self.deleted.borrow();
        let real = if self.asks(kubeconfig) {
            match self.real.list_within(kubeconfig, collection, selector, deadline) {
                Ok(found) => found,
                Err(e) => self.no_cluster_or(kubeconfig, &e).map(|()| Vec::new())?,
            }
        } else {
            Vec::new()
        };
        let mut out: Vec<Value> = real
            .into_iter()
            .filter(|o| ObjectRef::of(o).is_ok_and(|r| !planned_refs.contains(&r) && !deleted.contains(&r)))
            .collect();
        out.extend(planned);
        Ok(out)
    }

    fn etcd(&self, _endpoint: &str, _tls: &EtcdTls, _path: &str, _body: &Value) -> io::Result<Option<Value>> {
        Ok(None)
    }

    fn is_recording(&self) -> bool {
        true
    }

    fn recorded(&self) -> Vec<Value> {
        self.plan.recorded()
    }

    fn recorded_any(&self) -> bool {
        self.plan.recorded_any()
    }
}

/// The objects an earlier render of the node at `root` (a host path) recorded in its
/// [`RENDERED_OBJECTS`], for a render or dry run of the same node to start from. Secrets are
/// left out: the file holds them redacted, and a flow reading one needs its values (it applies
/// it again instead; [`rendered_secrets`] keeps them in the file). Empty when there is no such file.
pub fn rendered_objects(root: &Path) -> io::Result<Vec<Value>> {
    Ok(read_rendered(root)?.into_iter().filter(|o| !is_secret(o)).collect())
}

/// The Secrets (redacted) an earlier render of the node at `root` recorded, to be written back
/// unchanged by a render that started from that file and did not apply them again.
pub fn rendered_secrets(root: &Path) -> io::Result<Vec<Value>> {
    Ok(read_rendered(root)?.into_iter().filter(is_secret).collect())
}

fn is_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
}

fn read_rendered(root: &Path) -> io::Result<Vec<Value>> {
    let path = root.join(RENDERED_OBJECTS.trim_start_matches('/'));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut objects = Vec::new();
    // Documents start at a line `--- # NAME` (a value may hold that text inside a line).
    for doc in format!("\n{text}").split("\n--- # ").filter(|d| !d.trim().is_empty()) {
        let (name, body) = doc.split_once('\n').unwrap_or((doc, ""));
        let object: Value = serde_saphyr::from_str(body).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {name}: {e}", path.display()))
        })?;
        objects.push(object);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rest_paths() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"}});
        assert_eq!(
            ObjectRef::of(&cm).unwrap().path(),
            "/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
        );
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:get-nodes"}});
        let r = ObjectRef::of(&crb).unwrap();
        assert_eq!(r.path(), "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:get-nodes");
        assert_eq!(r.to_string(), "ClusterRoleBinding kubeadm:get-nodes");
        let ds = ObjectRef::new("apps/v1", "DaemonSet", "kube-system", "kube-proxy").unwrap();
        assert_eq!(ds.collection_path(), "/apis/apps/v1/namespaces/kube-system/daemonsets");
        assert_eq!(ds.to_string(), "DaemonSet kube-system/kube-proxy");
        assert_eq!(plural("Endpoints"), "endpoints");
        assert_eq!(plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural("Lease"), "leases");
        assert_eq!(plural("CustomThing"), "customthings");
    }

    #[test]
    fn refs_refuse_what_is_not_an_object() {
        for (bad, why) in [
            (json!("x"), "a map"),
            (json!({"kind": "ConfigMap", "metadata": {"name": "x"}}), "no apiVersion"),
            (json!({"apiVersion": "v1", "metadata": {"name": "x"}}), "no kind"),
            (json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}), "no metadata.name"),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "../x"}}),
                "not an object name",
            ),
            (json!({"apiVersion": "v1", "kind": "Config Map", "metadata": {"name": "x"}}), "not a kind"),
            (json!({"apiVersion": "a/b/c", "kind": "X", "metadata": {"name": "x"}}), "not an apiVersion"),
            (
                json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "x", "namespace": 3}}),
                "namespace",
            ),
        ] {
            let e = ObjectRef::of(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_are_redacted_to_print() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "x",
                       "data": {"token-secret": "c2VjcmV0"}, "stringData": {"a": "b"}});
        let r = redacted(&s);
        assert_eq!(r["data"]["token-secret"], REDACTED);
        assert_eq!(r["stringData"]["a"], REDACTED);
        assert_eq!(r["type"], "x");
        let cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": {"a": "b"}});
        assert_eq!(redacted(&cm), cm);
    }

    #[test]
    fn recording_answers_from_what_it_recorded() {
        let rec = RecordingCluster::default();
        let k = Path::new("/etc/kubernetes/admin.conf");
        let cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"}});
        let r = ObjectRef::of(&cm).unwrap();
        assert_eq!(rec.get(k, &r).unwrap(), None);
        assert_eq!(rec.apply(k, &cm).unwrap(), Applied::Recorded);
        assert_eq!(rec.get(k, &r).unwrap(), Some(cm.clone()));
        assert_eq!(rec.wait_for(k, &r, Duration::from_secs(100)).unwrap(), Some(cm));
        assert_eq!(rec.delete(k, &r).unwrap(), Removed::Recorded);
        assert!(rec.recorded().is_empty());
        assert_eq!(
            rec.wait_ready(k, Duration::from_secs(100), &mut || ControlFlow::Break(())).unwrap(),
            Readiness::Recorded
        );
        assert_eq!(rec.cluster_info("x:6443", Trust::Nothing, Duration::from_secs(1)).unwrap(), None);
    }

    /// Which failed cluster-info fetches discovery tries again, as kubeadm does: all but an
    /// address TLS cannot check and a server certificate the pinned CA refuses.
    #[test]
    fn discovery_fetch_failures_that_time_may_mend() {
        let ca = Trust::Ca("-----BEGIN CERTIFICATE-----");
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            FetchError::Connect(refused()).retry_reason(Trust::Nothing).as_deref(),
            Some("API server not answering: connection refused")
        );
        assert!(FetchError::Connect(refused()).retry_reason(ca).is_some());
        let status = |code: u16| FetchError::Status(http::StatusCode::from_u16(code).unwrap(), String::new());
        for (code, reason) in [
            (404, "no cluster-info yet (404)"),
            (403, "cluster-info not readable anonymously yet (403 Forbidden)"),
            (401, "cluster-info not readable anonymously yet (401 Unauthorized)"),
            (503, "the API server answered 503"),
            (429, "the API server is busy (429)"),
        ] {
            assert_eq!(status(code).retry_reason(Trust::Nothing).as_deref(), Some(reason), "{code}");
        }
        assert!(FetchError::NotJson("x".into()).retry_reason(Trust::Nothing).is_some());
        assert!(
            FetchError::Http(io::Error::other("connection closed")).retry_reason(Trust::Nothing).is_some()
        );
        assert_eq!(FetchError::BadName.retry_reason(Trust::Nothing), None);
        // TLS: a handshake broken off may mend; a certificate the pinned CA refuses does not.
        let reset = || FetchError::Tls(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(reset().retry_reason(Trust::Nothing).is_some());
        assert!(reset().retry_reason(ca).is_some());
        let bad_cert = || {
            FetchError::Tls(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ))
        };
        assert_eq!(bad_cert().retry_reason(ca), None);
        assert!(bad_cert().retry_reason(Trust::Nothing).is_some());
    }

    /// Which failed API calls a retried read asks again: no answer, 401/403 while RBAC comes
    /// up, 429 and 5xx; not a request the server refuses as wrong.
    #[test]
    fn api_failures_that_time_may_mend() {
        let api = |code: u16| Failure::Api(Box::new(kube::core::Status { code, ..Default::default() }));
        for code in [401, 403, 429, 500, 503] {
            assert!(api(code).retry_reason().is_some(), "{code}");
        }
        for code in [400, 404, 405, 409, 422] {
            assert_eq!(api(code).retry_reason(), None, "{code}");
        }
        let transport =
            Failure::Transport { kind: Some(io::ErrorKind::ConnectionRefused), cause: "os error 111".into() };
        assert_eq!(transport.retry_reason().as_deref(), Some("API server not answering: connection refused"));
        let odd = Failure::Transport { kind: None, cause: "tcp connect error".into() };
        assert_eq!(odd.retry_reason().as_deref(), Some("API server not answering: tcp connect error"));
        assert!(Failure::Timeout(Duration::from_secs(30)).retry_reason().is_some());
        // The mark travels inside the io::Error; an unmarked error has none.
        let marked = retryable(io::Error::other("get x: forbidden"), Some("forbidden for now".into()));
        assert_eq!(
            (retry_reason(&marked), marked.to_string().as_str()),
            (Some("forbidden for now"), "get x: forbidden")
        );
        assert_eq!(retry_reason(&io::Error::other("plain")), None);
    }

    #[test]
    fn an_unreachable_server_is_named_with_its_timeout() {
        // A port nothing listens on, for as long as the test runs: a socket bound to it and
        // never listening refuses every connection, and holds the port (no SO_REUSEADDR) so no
        // other test takes it. (A listener bound and closed again is not that: a child forked
        // meanwhile by another thread holds a copy until it execs, and a connection made then
        // is queued and reset, not refused; and the port is free for anyone to take.)
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
        use std::os::fd::AsRawFd;
        let closed = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(closed.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        let port = getsockname::<SockaddrIn>(closed.as_raw_fd()).unwrap().port();
        let cluster = RealCluster::new();
        let err = cluster
            .cluster_info(&format!("127.0.0.1:{port}"), Trust::Nothing, Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert!(err.to_string().contains(&format!("https://127.0.0.1:{port}")), "{err}");
        // A listener that never answers the TLS hello: the timeout is named.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
        let err = cluster.cluster_info(&server, Trust::Nothing, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(&format!("https://{server} within 0.3s")), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = cluster
            .wait_ready(&dir.path().join("admin.conf"), Duration::from_secs(1), &mut || {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("there is no kubeconfig"), "{err}");
        // Where nothing answers, the look between tries is asked after each one, and ends the
        // wait when it says so.
        let kubeconfig = dir.path().join("admin.conf");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: x}}\n"
            ),
        )
        .unwrap();
        let mut looks = 0;
        let mut between = || {
            looks += 1;
            if looks == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        };
        let ended = cluster.wait_ready(&kubeconfig, Duration::from_mins(10), &mut between).unwrap();
        assert_eq!((ended, looks), (Readiness::Stopped, 3));
    }

    /// A status update by a controller between apply's read and its patch is not a change of
    /// the apply's; a changed label or spec is.
    #[test]
    fn only_changes_beyond_status_and_bookkeeping_count() {
        let before = serde_json::json!({
            "metadata": { "name": "kube-proxy", "resourceVersion": "10", "generation": 1,
                          "managedFields": [{ "manager": "kscript" }], "labels": { "k8s-app": "kube-proxy" } },
            "spec": { "template": { "spec": { "hostNetwork": true } } },
            "status": { "numberUnavailable": 1 },
        });
        let mut status_only = before.clone();
        status_only["metadata"]["resourceVersion"] = "11".into();
        status_only["metadata"]["managedFields"] =
            serde_json::json!([{ "manager": "kscript" }, { "manager": "kube-controller-manager" }]);
        status_only["status"]["numberUnavailable"] = 0.into();
        assert!(same_but_for_others(&before, &status_only));
        let mut relabelled = status_only.clone();
        relabelled["metadata"]["labels"]["k8s-app"] = "other".into();
        assert!(!same_but_for_others(&before, &relabelled));
        let mut respecced = status_only;
        respecced["metadata"]["generation"] = 2.into();
        respecced["spec"]["template"]["spec"]["hostNetwork"] = false.into();
        assert!(!same_but_for_others(&before, &respecced));
    }
}
