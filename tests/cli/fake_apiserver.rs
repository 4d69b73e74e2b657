//! A FAKE Kubernetes API server, for tests only: there is no kube-apiserver package here. It
//! is just enough of one for kscript's cluster steps and token discovery, and it records every
//! request it gets.
//!
//! In-process HTTPS on 127.0.0.1 (tokio, rustls on aws-lc-rs) with the node's apiserver.crt.
//! A client certificate is optional at the TLS layer and checked per request, as the real
//! server's authenticators and RBAC do in spirit:
//! - anonymous clients may GET `/livez`, `/readyz`, and kube-public/cluster-info once the
//!   `RoleBinding` `kubeadm:bootstrap-signer-clusterinfo` names `system:anonymous`;
//! - certificates signed by ca.crt authenticate as user CN, groups O;
//! - a bearer bootstrap token (`id.secret`) authenticates as `system:bootstrap:<id>`, groups
//!   `system:bootstrappers` and the Secret's `auth-extra-groups`, while its Secret
//!   kube-system/bootstrap-token-<id> allows authentication and has not expired; any other
//!   bearer token is answered 401;
//! - `system:masters` may do anything; others what a `ClusterRoleBinding` to `cluster-admin`
//!   grants their user or groups, or a `RoleBinding` to a `Role` of the namespace whose rules
//!   name the verb, the resource and (when it lists names) the object.
//!
//! It serves server-side apply (PATCH `application/apply-patch+yaml` with a `fieldManager`):
//! the applied fields are merged over the stored object (maps key by key, lists replaced, what
//! others set is kept) and the `resourceVersion` moves only when the content changes; GET and
//! DELETE of stored objects; lists of a collection, with a `labelSelector` of `key=value`
//! pairs; and, on `cluster-info`, the `jws-kubeconfig-<id>` keys the
//! controller manager's bootstrap signer adds for each signing token Secret that has not
//! expired.
//!
//! It can also show the mirror Pods a kubelet would post for the static Pods of a node's
//! manifest folder (`mirror_static_pods`): before each request, one Pod per manifest,
//! kube-system/<name>-<node>, with the manifest's labels, annotations and spec, the
//! `kubernetes.io/config.hash` annotation (here a digest of the file's bytes: it changes when
//! the file does, as the kubelet's hash of the Pod does) and a `Ready` condition. A test can
//! make one component's kubelet never restart it (its mirror Pod keeps the old hash) or its
//! new Pod never become ready (`stuck`).
//!
//! A test can make it a server still coming up: `/readyz` failing for a number of calls,
//! every request answered 503 for a number of requests, cluster-info served unsigned for a
//! number of GETs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use kscript::pki::CertInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// One request, as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The client certificate's CN, or `anonymous`.
    pub user: String,
    /// The body, parsed; `None` when empty.
    pub body: Option<Value>,
    pub status: u16,
}

impl Seen {
    /// `PATCH /api/v1/...?fieldManager=kscript&force=true [application/apply-patch+yaml] kubernetes-admin -> 200`
    pub fn line(&self) -> String {
        let query = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        let ct =
            if self.content_type.is_empty() { String::new() } else { format!(" [{}]", self.content_type) };
        format!("{} {}{query}{ct} as {} -> {}", self.method, self.path, self.user, self.status)
    }
}

#[derive(Default)]
struct State {
    /// Stored objects by their REST path.
    objects: BTreeMap<String, Value>,
    seen: Vec<Seen>,
    version: u64,
    /// How many more `/readyz` calls answer 500 (a server still starting).
    not_ready_for: usize,
    /// Serve cluster-info altered after signing, as a machine in the middle would.
    tamper: bool,
    /// How many more requests, of any path, answer 503 (a server whose storage is not ready,
    /// or a load balancer with no healthy backend yet).
    unavailable_for: usize,
    /// How many more GETs of cluster-info are served without signatures, as before the
    /// controller manager's bootstrap signer has run.
    unsigned_for: usize,
    /// The static Pods whose mirror Pods are shown (see `mirror_static_pods`).
    mirrors: Option<Mirrors>,
}

/// A node's manifest folder and what its kubelet does with each component.
struct Mirrors {
    dir: std::path::PathBuf,
    node: String,
    stuck: BTreeMap<String, Stuck>,
    /// How long after a manifest changes its mirror Pod shows it (a kubelet restarting it).
    delay: std::time::Duration,
    /// Each manifest's hash when the folder began to be mirrored: the Pods of those manifests
    /// run well whatever `stuck` says (a rollback to them recovers).
    first: BTreeMap<String, String>,
}

/// The config hash a kubelet gives a static Pod, here the first 8 bytes of the manifest's
/// SHA-256, in hex.
fn manifest_hash(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8].iter().fold(String::new(), |mut h, b| {
        use std::fmt::Write as _;
        let _ = write!(h, "{b:02x}");
        h
    })
}

/// The name and hash of each manifest in `dir`.
fn manifest_hashes(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Ok(manifest) = serde_saphyr::from_str::<Value>(&String::from_utf8_lossy(&bytes)) else {
            continue;
        };
        if let Some(name) = manifest["metadata"]["name"].as_str() {
            out.insert(name.to_string(), manifest_hash(&bytes));
        }
    }
    out
}

/// How the kubelet of `mirror_static_pods` fails a component.
#[derive(Debug, Clone)]
pub enum Stuck {
    /// It never restarts the Pod: its mirror Pod keeps the hash it had.
    NotRestarted,
    /// It restarts the Pod of a new manifest, whose container then never becomes ready
    /// (waiting, with this reason and message); the manifest it had first runs well.
    NotReady { reason: String, message: String },
}

/// The fake, serving until dropped.
pub struct FakeApiServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
struct Identity {
    user: String,
    groups: Vec<String>,
}

/// The resource of a kind, as the real API server names it (the fake's own table: a path
/// kscript computes wrongly is answered 404, as the real server would).
fn resource_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "Service" => "services",
        "ServiceAccount" => "serviceaccounts",
        "Node" => "nodes",
        "Namespace" => "namespaces",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        "Pod" => "pods",
        _ => return None,
    })
}

/// The parts of an object path: `(apiVersion, namespace, resource, name)`.
fn parse_path(path: &str) -> Option<(String, Option<String>, String, String)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource, name] => {
            Some((api_version, Some((*ns).to_string()), (*resource).to_string(), (*name).to_string()))
        }
        [resource, name] => Some((api_version, None, (*resource).to_string(), (*name).to_string())),
        _ => None,
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// Seconds since 1970 of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_seconds(rfc3339: &str) -> Option<i64> {
    let bytes = rfc3339.as_bytes();
    if bytes.len() != 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' || bytes[19] != b'Z' {
        return None;
    }
    let field = |r: std::ops::Range<usize>| rfc3339[r].parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    // Days from civil (Howard Hinnant's algorithm).
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86400 + field(11..13)? * 3600 + field(14..16)? * 60 + field(17..19)?)
}

fn decoded(secret: &Value, key: &str) -> Option<String> {
    let data = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    String::from_utf8(STANDARD.decode(data).ok()?).ok()
}

/// `over` merged into `base`: maps key by key, anything else replaced.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl State {
    /// Whether `who` may do `verb` on `path`.
    fn allowed(&self, who: Option<&Identity>, verb: &str, path: &str) -> bool {
        // system:public-info-viewer: health for everyone.
        let public = path == "/livez" || path == "/readyz" || path == "/version";
        if public {
            return true;
        }
        let Some(who) = who else {
            let cluster_info = verb == "GET"
                && path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
                && self
                    .objects
                    .get("/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/rolebindings/kubeadm:bootstrap-signer-clusterinfo")
                    .and_then(|rb| rb.get("subjects"))
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.iter().any(|s| s["kind"] == "User" && s["name"] == "system:anonymous"));
            return cluster_info;
        };
        if who.groups.iter().any(|g| g == "system:masters") || self.role_allows(who, verb, path) {
            return true;
        }
        self.objects.iter().filter(|(p, _)| p.contains("/clusterrolebindings/")).any(|(_, crb)| {
            crb.pointer("/roleRef/name") == Some(&json!("cluster-admin"))
                && crb["subjects"].as_array().is_some_and(|subjects| {
                    subjects.iter().any(|s| {
                        (s["kind"] == "Group" && who.groups.iter().any(|g| s["name"] == json!(g)))
                            || (s["kind"] == "User" && s["name"] == json!(who.user))
                    })
                })
        })
    }

    /// A GET: a stored object (cluster-info as the bootstrap signer leaves it), or the list
    /// of a collection.
    fn get(&self, path: &str, query: &str) -> (StatusCode, Value) {
        match self.objects.get(path).cloned() {
            Some(o) if path.ends_with("/kube-public/configmaps/cluster-info") && self.unsigned_for > 0 => {
                (StatusCode::OK, o)
            }
            Some(o) if path.ends_with("/kube-public/configmaps/cluster-info") => {
                let mut served = self.signed(o);
                if self.tamper
                    && let Some(k) = served.pointer("/data/kubeconfig").and_then(Value::as_str)
                {
                    served["data"]["kubeconfig"] =
                        Value::String(k.replace("server: https://", "server: https://evil."));
                }
                (StatusCode::OK, served)
            }
            Some(o) => (StatusCode::OK, o),
            None if parse_path(&format!("{path}/x")).is_some() => (StatusCode::OK, self.list(path, query)),
            None => status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found")),
        }
    }

    /// The list of the collection at `path`, filtered by the query's `labelSelector`
    /// (`key=value` pairs joined by commas).
    fn list(&self, path: &str, query: &str) -> Value {
        let selector = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .unwrap_or_default()
            .replace("%3D", "=")
            .replace("%2C", ",");
        let wanted: Vec<(&str, &str)> =
            selector.split(',').filter(|p| !p.is_empty()).filter_map(|p| p.split_once('=')).collect();
        let prefix = format!("{path}/");
        // A namespaced resource listed across namespaces: `/apis/apps/v1/deployments` holds
        // `/apis/apps/v1/namespaces/NS/deployments/NAME`.
        let (base, resource) = path.rsplit_once('/').unwrap_or_default();
        let in_all_namespaces = |p: &str| {
            p.strip_prefix(&format!("{base}/namespaces/")).is_some_and(|rest| {
                let parts: Vec<&str> = rest.split('/').collect();
                parts.len() == 3 && parts[1] == resource
            })
        };
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|(p, _)| {
                p.strip_prefix(&prefix).is_some_and(|name| !name.contains('/')) || in_all_namespaces(p)
            })
            .filter(|(_, o)| wanted.iter().all(|(k, v)| o["metadata"]["labels"][*k] == json!(v)))
            .map(|(_, o)| o.clone())
            .collect();
        json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": self.version.to_string()}, "items": items})
    }

    /// Who a bearer `token` is: a bootstrap token whose Secret allows authentication and has
    /// not expired, as the real server's bootstrap-token authenticator decides.
    fn bootstrap_identity(&self, token: &str) -> Option<Identity> {
        let (id, secret) = token.split_once('.')?;
        let s = self.objects.get(&format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}"))?;
        if decoded(s, "token-secret").as_deref() != Some(secret)
            || decoded(s, "usage-bootstrap-authentication").as_deref() != Some("true")
        {
            return None;
        }
        if let Some(exp) = decoded(s, "expiration") {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            if unix_seconds(&exp).is_none_or(|e| e <= i64::try_from(now).unwrap()) {
                return None;
            }
        }
        let mut groups = vec!["system:bootstrappers".to_string()];
        if let Some(extra) = decoded(s, "auth-extra-groups") {
            groups.extend(extra.split(',').map(str::to_string));
        }
        Some(Identity { user: format!("system:bootstrap:{id}"), groups })
    }

    /// Whether a `RoleBinding` of the object's namespace grants `who` `verb` on `path` through a
    /// `Role` there.
    fn role_allows(&self, who: &Identity, verb: &str, path: &str) -> bool {
        let Some((namespace, resource_and_name)) =
            path.strip_prefix("/api/v1/namespaces/").and_then(|rest| rest.split_once('/'))
        else {
            return false;
        };
        let (resource, name) = resource_and_name.split_once('/').unwrap_or((resource_and_name, ""));
        let verb = match verb {
            "GET" => "get",
            "PATCH" => "patch",
            "DELETE" => "delete",
            other => other,
        };
        let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}");
        self.objects.iter().filter(|(p, _)| p.starts_with(&format!("{rbac}/rolebindings/"))).any(|(_, rb)| {
            let bound = rb["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    (s["kind"] == "Group" && who.groups.iter().any(|g| s["name"] == json!(g)))
                        || (s["kind"] == "User" && s["name"] == json!(who.user))
                })
            });
            let role = rb.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default();
            bound
                && rb.pointer("/roleRef/kind") == Some(&json!("Role"))
                && self.objects.get(&format!("{rbac}/roles/{role}")).is_some_and(|r| {
                    r["rules"].as_array().is_some_and(|rules| {
                        rules.iter().any(|rule| {
                            let has = |key: &str, want: &str| {
                                rule[key].as_array().is_some_and(|v| v.iter().any(|x| x == want || x == "*"))
                            };
                            let names = rule["resourceNames"].as_array();
                            has("verbs", verb)
                                && has("resources", resource)
                                && names.is_none_or(|n| n.is_empty() || n.iter().any(|x| x == name))
                        })
                    })
                })
        })
    }

    /// cluster-info as the bootstrap signer leaves it: a `jws-kubeconfig-<id>` key for each
    /// token Secret with `usage-bootstrap-signing: true` that has not expired.
    fn signed(&self, mut cluster_info: Value) -> Value {
        let Some(kubeconfig) =
            cluster_info.pointer("/data/kubeconfig").and_then(Value::as_str).map(String::from)
        else {
            return cluster_info;
        };
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
        for (path, secret) in &self.objects {
            if !path.starts_with("/api/v1/namespaces/kube-system/secrets/bootstrap-token-")
                || secret["type"] != "bootstrap.kubernetes.io/token"
                || decoded(secret, "usage-bootstrap-signing").as_deref() != Some("true")
                || decoded(secret, "expiration").is_some_and(|e| unix_seconds(&e).is_none_or(|t| t <= now))
            {
                continue;
            }
            let (Some(id), Some(secret_part)) =
                (decoded(secret, "token-id"), decoded(secret, "token-secret"))
            else {
                continue;
            };
            let Ok(token) = kscript::bootstrap::Token::parse(&format!("{id}.{secret_part}")) else {
                continue;
            };
            cluster_info["data"][format!("jws-kubeconfig-{id}")] =
                Value::String(kscript::bootstrap::sign_detached(&kubeconfig, &token));
        }
        cluster_info
    }

    /// The mirror Pods of the manifests in the mirrored folder, brought up to date.
    fn refresh_mirrors(&mut self) {
        let Some(m) = &self.mirrors else { return };
        let Ok(entries) = std::fs::read_dir(&m.dir) else { return };
        let mut pods = Vec::new();
        for e in entries.flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else { continue };
            let young = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            let restarting = young.is_some_and(|age| age < m.delay);
            let Ok(manifest) = serde_saphyr::from_str::<Value>(&String::from_utf8_lossy(&bytes)) else {
                continue;
            };
            let Some(name) = manifest["metadata"]["name"].as_str() else { continue };
            let hash = manifest_hash(&bytes);
            let first = m.first.get(name) == Some(&hash);
            let path = format!("/api/v1/namespaces/kube-system/pods/{name}-{}", m.node);
            let stuck = m.stuck.get(name).cloned();
            if (restarting || matches!(stuck, Some(Stuck::NotRestarted))) && self.objects.contains_key(&path)
            {
                continue;
            }
            let mut pod = manifest.clone();
            pod["metadata"]["name"] = json!(format!("{name}-{}", m.node));
            pod["metadata"]["namespace"] = json!("kube-system");
            pod["metadata"]["annotations"]["kubernetes.io/config.hash"] = json!(hash);
            pod["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!(hash);
            pod["metadata"]["annotations"]["kubernetes.io/config.source"] = json!("file");
            pod["spec"]["nodeName"] = json!(m.node);
            let image = manifest["spec"]["containers"][0]["image"].clone();
            let container = manifest["spec"]["containers"][0]["name"].clone();
            let (ready, state) = match &stuck {
                Some(Stuck::NotReady { reason, message }) if !first => {
                    ("False", json!({"waiting": {"reason": reason, "message": message}}))
                }
                _ => ("True", json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})),
            };
            pod["status"] = json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [{"name": container, "image": image, "ready": ready == "True",
                                       "restartCount": 0, "state": state}],
            });
            pods.push((path, pod));
        }
        for (path, pod) in pods {
            let same = self.objects.get(&path).is_some_and(|old| {
                let mut old = old.clone();
                old["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
                old == pod
            });
            if !same {
                let mut pod = pod;
                pod["metadata"]["resourceVersion"] = json!(self.bump());
                self.objects.insert(path, pod);
            }
        }
    }

    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// Server-side apply of `body` at `path`.
    fn apply(&mut self, path: &str, query: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let Some((api_version, namespace, resource, name)) = parse_path(path) else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the server could not find the requested resource ({path})"),
            );
        };
        let Some(body) = body else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "no body");
        };
        if !query.split('&').any(|kv| kv.starts_with("fieldManager=") && kv.len() > "fieldManager=".len()) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "PATCH apply requires a fieldManager",
            );
        }
        let kind = body["kind"].as_str().unwrap_or_default();
        if resource_of(kind) != Some(resource.as_str()) {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no resource {resource} for kind {kind}"),
            );
        }
        if body["apiVersion"] != json!(api_version)
            || body.pointer("/metadata/name") != Some(&json!(name))
            || body.pointer("/metadata/namespace").and_then(Value::as_str).map(String::from) != namespace
        {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the apiVersion, name or namespace of the body does not match the path",
            );
        }
        match self.objects.get(path).cloned() {
            None => {
                let mut stored = body.clone();
                stored["metadata"]["resourceVersion"] = json!(self.bump());
                stored["metadata"]["uid"] = json!(format!("uid-{}", self.version));
                stored["metadata"]["creationTimestamp"] = json!("2000-01-01T00:00:00Z");
                self.objects.insert(path.to_string(), stored.clone());
                (StatusCode::CREATED, stored)
            }
            Some(existing) => {
                let mut merged = existing.clone();
                merge(&mut merged, body);
                // The client may not move the server's fields.
                for key in ["resourceVersion", "uid", "creationTimestamp"] {
                    merged["metadata"][key] = existing["metadata"][key].clone();
                }
                if merged != existing {
                    merged["metadata"]["resourceVersion"] = json!(self.bump());
                    self.objects.insert(path.to_string(), merged.clone());
                }
                (StatusCode::OK, merged)
            }
        }
    }
}

impl FakeApiServer {
    /// A free port of 127.0.0.1 to serve on, taken now: a node's kubeconfigs name the port
    /// before its certificates exist.
    pub fn reserve() -> std::net::TcpListener {
        Self::reserve_on("127.0.0.1")
    }

    /// The same on another loopback address (127.0.0.0/8), for a node of its own.
    pub fn reserve_on(ip: &str) -> std::net::TcpListener {
        std::net::TcpListener::bind((ip, 0)).unwrap()
    }

    /// Serves on `listener` with the server certificate and key (PEM), trusting client
    /// certificates signed by `ca_pem`.
    pub fn start(listener: std::net::TcpListener, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .unwrap();
        let certs: Vec<CertificateDer> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, state) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let who =
                        tls.get_ref().1.peer_certificates().and_then(|c| c.first().cloned()).map(|der| {
                            let pem = format!(
                                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                                STANDARD.encode(der.as_ref())
                            );
                            let info = CertInfo::from_pem(&pem).unwrap();
                            Identity { user: info.subject_cn, groups: info.organizations }
                        });
                    let service = hyper::service::service_fn(move |req| {
                        let (state, who) = (state.clone(), who.clone());
                        async move { Ok::<_, std::convert::Infallible>(handle(req, who, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { port, state, runtime: Some(runtime) }
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn forget_requests(&self) {
        self.state.lock().unwrap().seen.clear();
    }

    /// The stored object at `path`.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Every stored object, by path.
    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().objects.clone()
    }

    /// Stores `object` at `path`, as another client (the kubelet registering its Node) would.
    pub fn put(&self, path: &str, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        object["metadata"]["resourceVersion"] = json!(state.bump());
        state.objects.insert(path.to_string(), object);
    }

    /// Shows the mirror Pods the kubelet of node `node` would post for the static Pods in the
    /// host folder `dir`, each component failing as `stuck` says (the others restart and turn
    /// ready at once, as soon as their manifest changes).
    pub fn mirror_static_pods(&self, dir: &std::path::Path, node: &str, stuck: &[(&str, Stuck)]) {
        let mut state = self.state.lock().unwrap();
        state.mirrors = Some(Mirrors {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            stuck: stuck.iter().map(|(n, s)| ((*n).to_string(), s.clone())).collect(),
            delay: std::time::Duration::ZERO,
            first: manifest_hashes(dir),
        });
        state.refresh_mirrors();
    }

    /// Makes the mirror Pods show a changed manifest only `delay` after it changed, as a
    /// kubelet takes a while to restart a static Pod.
    pub fn mirror_delay(&self, delay: std::time::Duration) {
        if let Some(m) = self.state.lock().unwrap().mirrors.as_mut() {
            m.delay = delay;
        }
    }

    /// The next `n` calls of `/readyz` answer 500, as a server still starting does.
    pub fn not_ready_for(&self, n: usize) {
        self.state.lock().unwrap().not_ready_for = n;
    }

    /// The next `n` requests, whatever they ask, answer 503.
    pub fn unavailable_for(&self, n: usize) {
        self.state.lock().unwrap().unavailable_for = n;
    }

    /// The next `n` GETs of cluster-info that would be answered are answered unsigned.
    pub fn unsigned_for(&self, n: usize) {
        self.state.lock().unwrap().unsigned_for = n;
    }

    /// Serves cluster-info with its kubeconfig altered after signing (or not).
    pub fn tamper_with_cluster_info(&self, on: bool) {
        self.state.lock().unwrap().tamper = on;
    }
}

/// The request's `Authorization: Bearer` token.
fn bearer_token(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::to_string)
}

/// The state, with the mirror Pods brought up to date (as a kubelet keeps posting them).
fn locked(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    let mut s = state.lock().unwrap();
    s.refresh_mirrors();
    s
}

async fn handle(
    req: Request<Incoming>,
    who: Option<Identity>,
    state: &Mutex<State>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bearer = bearer_token(&req);
    let bytes = req.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes)
            .ok()
            .or_else(|| serde_saphyr::from_str(&String::from_utf8_lossy(&bytes)).ok())
    };
    let mut state = locked(state);
    let by_token = bearer.as_deref().and_then(|t| state.bootstrap_identity(t));
    // A bearer token that authenticates no one is refused (401), as the real server does; an
    // anonymous request is not, and meets the authorizer (403).
    let unauthenticated = who.is_none() && bearer.is_some() && by_token.is_none();
    let who = who.or(by_token);
    let (code, answer) = if state.unavailable_for > 0 {
        state.unavailable_for -= 1;
        status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "the server is starting")
    } else if unauthenticated {
        status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    } else if !state.allowed(who.as_ref(), &method, &path) {
        let user = who.as_ref().map_or("system:anonymous", |w| w.user.as_str());
        status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("User \"{user}\" cannot {} {path}", method.to_lowercase()),
        )
    } else if path == "/livez" {
        (StatusCode::OK, Value::String("ok".into()))
    } else if path == "/version" {
        let info = json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake", "gitCommit": "", "gitTreeState": "",
                          "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"});
        (StatusCode::OK, info)
    } else if path == "/readyz" {
        if state.not_ready_for > 0 {
            state.not_ready_for -= 1;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Value::String(
                    "[-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed".into(),
                ),
            )
        } else {
            (StatusCode::OK, Value::String("ok".into()))
        }
    } else {
        match method.as_str() {
            "PATCH" if content_type == "application/apply-patch+yaml" => {
                state.apply(&path, &query, body.as_ref())
            }
            "PATCH" => status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "only server-side apply here",
            ),
            "GET" => {
                let answer = state.get(&path, &query);
                if path.ends_with("/kube-public/configmaps/cluster-info") && answer.0 == StatusCode::OK {
                    state.unsigned_for = state.unsigned_for.saturating_sub(1);
                }
                answer
            }
            "DELETE" => match state.objects.remove(&path) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                ),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found")),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not served by the fake"),
        }
    };
    state.seen.push(Seen {
        method,
        path,
        query,
        content_type,
        user: who.map_or_else(|| "anonymous".to_string(), |w| w.user),
        body,
        status: code.as_u16(),
    });
    let text = match &answer {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mime = if answer.is_string() { "text/plain" } else { "application/json" };
    Response::builder()
        .status(code)
        .header(hyper::header::CONTENT_TYPE, mime)
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

#[test]
fn the_fakes_expiration_times_are_unix_seconds() {
    assert_eq!(unix_seconds("2000-01-01T00:00:00Z"), Some(946_684_800));
    assert_eq!(unix_seconds("2024-02-29T12:34:56Z"), Some(1_709_210_096));
    assert_eq!(unix_seconds("2024-02-29 12:34:56"), None);
}
