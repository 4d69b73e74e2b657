//! The status table a script declares with `node_status(map)` (stdlib/status.rhai builds it),
//! read from Rhai data into plain Rust data and checked row by row.

use rhai::{Dynamic, Map};

/// What `kscript status` measures on a node, as the script declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `control plane`, `worker`, ...: shown, not interpreted.
    pub role: String,
    /// The node path of the kubeconfig the API server is read with.
    pub kubeconfig: String,
    /// The CRI endpoint (`unix:///run/containerd/containerd.sock`).
    pub cri_socket: String,
    /// The node's name in the cluster.
    pub node: String,
    /// The stage from which the Node must be Ready; `None`: its readiness is shown, not judged.
    pub node_ready: Option<usize>,
    pub components: Vec<Component>,
    pub files: Vec<FileRow>,
}

/// One row of the stage table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub runs: Runs,
    /// The stage from which it must be installed (a unit loaded, a manifest written, an
    /// object present).
    pub installed: usize,
    /// The stage from which it must be running (a unit active, a container running, every
    /// replica ready).
    pub running: usize,
}

/// How a component runs, and where to look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runs {
    /// A systemd service; `needs` the files it exits without, each a path or alternatives.
    Service {
        unit: String,
        needs: Vec<Vec<String>>,
    },
    /// A static Pod: its manifest (a node path) and its container's name.
    StaticPod {
        manifest: String,
        container: String,
    },
    Deployment {
        namespace: String,
        object: String,
    },
    DaemonSet {
        namespace: String,
        object: String,
    },
}

impl Runs {
    /// How the table shows it: `systemd service`, `static Pod`, `Deployment`, `DaemonSet`.
    pub fn label(&self) -> &'static str {
        match self {
            Runs::Service { .. } => "systemd service",
            Runs::StaticPod { .. } => "static Pod",
            Runs::Deployment { .. } => "Deployment",
            Runs::DaemonSet { .. } => "DaemonSet",
        }
    }
}

/// A file of the stage map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub stage: usize,
    pub path: String,
    pub role: String,
    /// Another actor that makes it (containerd, the kubelet, a `DaemonSet`); `None` when the
    /// script writes it.
    pub by: Option<String>,
}

/// The `runs` values a component row may have.
const RUNS: &[&str] = &["systemd service", "static Pod", "Deployment", "DaemonSet"];

/// Reads one field of a row.
struct Row<'a> {
    map: &'a Map,
    /// `components[3] (etcd)`: how errors name the row.
    what: String,
}

impl Row<'_> {
    fn get(&self, key: &str) -> Result<&Dynamic, String> {
        self.map.get(key).filter(|v| !v.is_unit()).ok_or_else(|| format!("{} has no `{key}`", self.what))
    }

    fn string(&self, key: &str) -> Result<String, String> {
        let v = self.get(key)?;
        match v.clone().into_immutable_string() {
            Ok(s) if !s.trim().is_empty() => Ok(s.to_string()),
            Ok(_) => Err(format!("{}: `{key}` is empty", self.what)),
            Err(t) => Err(format!("{}: `{key}` must be a string, not {t}", self.what)),
        }
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>, String> {
        if self.map.get(key).is_none_or(Dynamic::is_unit) {
            return Ok(None);
        }
        self.string(key).map(Some)
    }

    fn node_path(&self, key: &str) -> Result<String, String> {
        let p = self.string(key)?;
        if p.starts_with('/') {
            Ok(p)
        } else {
            Err(format!("{}: `{key}` must be a node path starting with `/`, not `{p}`", self.what))
        }
    }

    fn stage(&self, key: &str) -> Result<usize, String> {
        let v = self.get(key)?;
        let n = v.as_int().map_err(|t| format!("{}: `{key}` must be a stage number, not {t}", self.what))?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{}: `{key}` must be a stage number from 1, not {n}", self.what))
    }

    /// Refuses keys the row does not know (a typo would otherwise be ignored).
    fn known(&self, keys: &[&str]) -> Result<(), String> {
        for k in self.map.keys() {
            if !keys.contains(&k.as_str()) {
                return Err(format!("{}: unknown key `{k}`; known keys: {}", self.what, keys.join(", ")));
            }
        }
        Ok(())
    }
}

fn array(map: &Map, key: &str, what: &str) -> Result<Vec<Dynamic>, String> {
    let v = map.get(key).ok_or_else(|| format!("{what} has no `{key}`"))?;
    v.clone().into_array().map_err(|t| format!("{what}: `{key}` must be an array, not {t}"))
}

impl Spec {
    /// Reads and checks the map of `node_status(map)`.
    pub fn from_map(map: &Map) -> Result<Self, String> {
        let top = Row { map, what: "the status map".into() };
        top.known(&["role", "kubeconfig", "cri_socket", "node", "node_ready", "components", "files"])?;
        let mut components = Vec::new();
        for (i, c) in array(map, "components", "the status map")?.iter().enumerate() {
            components.push(component(c, i)?);
        }
        let mut seen = std::collections::HashSet::new();
        for c in &components {
            if !seen.insert(c.name.as_str()) {
                return Err(format!("the status map has two components named `{}`", c.name));
            }
        }
        let mut files = Vec::new();
        for (i, f) in array(map, "files", "the status map")?.iter().enumerate() {
            let Some(m) = f.read_lock::<Map>() else {
                return Err(format!("files[{i}] must be a map (status::file_row), not {}", f.type_name()));
            };
            let what = m
                .get("path")
                .and_then(|p| p.clone().into_string().ok())
                .map_or_else(|| format!("files[{i}]"), |p| format!("files[{i}] ({p})"));
            let row = Row { map: &m, what };
            row.known(&["stage", "path", "role", "by"])?;
            files.push(FileRow {
                stage: row.stage("stage")?,
                path: row.node_path("path")?,
                role: row.optional_string("role")?.unwrap_or_default(),
                by: row.optional_string("by")?,
            });
        }
        Ok(Self {
            role: top.string("role")?,
            kubeconfig: top.node_path("kubeconfig")?,
            cri_socket: top.string("cri_socket")?,
            node: top.string("node")?,
            node_ready: if map.get("node_ready").is_none_or(Dynamic::is_unit) {
                None
            } else {
                Some(top.stage("node_ready")?)
            },
            components,
            files,
        })
    }

    /// Checks that every stage a row names is one of the script's `stages`.
    pub fn check_stages(&self, stages: usize) -> Result<(), String> {
        let bad = |what: String, n: usize| {
            format!("{what} names stage {n}, but the script declares {stages} stage(s)")
        };
        for c in &self.components {
            for n in [c.installed, c.running] {
                if n > stages {
                    return Err(bad(format!("component `{}`", c.name), n));
                }
            }
        }
        if let Some(n) = self.node_ready.filter(|n| *n > stages) {
            return Err(bad("`node_ready`".into(), n));
        }
        for f in &self.files {
            if f.stage > stages {
                return Err(bad(format!("file {}", f.path), f.stage));
            }
        }
        Ok(())
    }
}

fn component(c: &Dynamic, i: usize) -> Result<Component, String> {
    let Some(m) = c.read_lock::<Map>() else {
        return Err(format!(
            "components[{i}] must be a map (status::service, static_pod, deployment, daemonset), not {}",
            c.type_name()
        ));
    };
    let what = m
        .get("name")
        .and_then(|p| p.clone().into_string().ok())
        .map_or_else(|| format!("components[{i}]"), |n| format!("components[{i}] ({n})"));
    let row = Row { map: &m, what };
    let name = row.string("name")?;
    let runs_name = row.string("runs")?;
    let runs = match runs_name.as_str() {
        "systemd service" => {
            row.known(&["name", "runs", "unit", "installed", "running", "needs"])?;
            let mut needs = Vec::new();
            if m.get("needs").is_some_and(|v| !v.is_unit()) {
                for (j, n) in array(&m, "needs", &row.what)?.into_iter().enumerate() {
                    let alternatives: Vec<Dynamic> = if n.is_array() {
                        n.clone().into_array().expect("checked: an array")
                    } else {
                        vec![n.clone()]
                    };
                    let mut paths = Vec::new();
                    for a in alternatives {
                        match a.into_string() {
                            Ok(p) if p.starts_with('/') => paths.push(p),
                            _ => {
                                return Err(format!(
                                    "{}: needs[{j}] must be a node path or an array of node paths",
                                    row.what
                                ));
                            }
                        }
                    }
                    if paths.is_empty() {
                        return Err(format!("{}: needs[{j}] is an empty array", row.what));
                    }
                    needs.push(paths);
                }
            }
            Runs::Service { unit: row.string("unit")?, needs }
        }
        "static Pod" => {
            row.known(&["name", "runs", "manifest", "container", "installed", "running"])?;
            Runs::StaticPod { manifest: row.node_path("manifest")?, container: row.string("container")? }
        }
        "Deployment" | "DaemonSet" => {
            row.known(&["name", "runs", "namespace", "object", "installed", "running"])?;
            let (namespace, object) = (row.string("namespace")?, row.string("object")?);
            if runs_name == "Deployment" {
                Runs::Deployment { namespace, object }
            } else {
                Runs::DaemonSet { namespace, object }
            }
        }
        other => {
            return Err(format!("{}: `runs` is `{other}`; it must be one of: {}", row.what, RUNS.join(", ")));
        }
    };
    let (installed, running) = (row.stage("installed")?, row.stage("running")?);
    if running < installed {
        return Err(format!(
            "{}: `running` (stage {running}) comes before `installed` (stage {installed})",
            row.what
        ));
    }
    Ok(Component { name, runs, installed, running })
}
