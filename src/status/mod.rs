//! `kscript status`: which stage a node has reached, what runs on it, and what the next stage
//! must still produce.
//!
//! The script declares the node's table as data (`node_status(...)`, built by
//! stdlib/status.rhai): its components and the files each stage leaves. Here that table is
//! measured (`probe`: systemd, the container runtime, the API server) and judged stage by stage
//! (`verdict`), then shown as a table or as a JSON document (`render`).

pub mod probe;
pub mod render;
pub mod spec;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::host::{Files, Host, Mode, RealFiles};
use crate::journal::{self, Entry, JOURNAL_PATH};
use crate::report::Reporter;
use crate::root::NodeRoot;
use crate::runner::{Loaded, Script};

/// What `kscript status` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The script; `None`: detected from the node.
    pub script: Option<String>,
    /// A rendered folder; `None`: this host.
    pub root: Option<PathBuf>,
    pub config: Vec<PathBuf>,
    pub set: Vec<String>,
    pub json: bool,
    /// How long each request to the runtime or the API server may take.
    pub timeout: std::time::Duration,
}

/// Everything a status says, before it is shown.
#[derive(Debug, Clone)]
pub struct Status {
    pub script: String,
    /// How the script was chosen, when it was not given.
    pub detected: Option<String>,
    pub root: PathBuf,
    pub live: bool,
    pub spec: spec::Spec,
    pub stages: Vec<String>,
    pub measures: probe::Measures,
    pub verdict: verdict::Verdict,
}

/// Runs `kscript status`; prints the table (or JSON) and returns the exit code: 0 when the
/// node has reached the script's last stage, 1 otherwise.
pub fn run(opts: &Options) -> Result<u8, Error> {
    let status = collect(opts)?;
    if let Some(why) = &status.detected {
        eprintln!("status: {why}");
    }
    let text = if opts.json { render::json(&status) } else { render::text(&status) };
    print!("{text}");
    Ok(u8::from(!status.verdict.done()))
}

/// Measures and judges the node.
pub fn collect(opts: &Options) -> Result<Status, Error> {
    let root_dir = opts.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !root_dir.is_dir() {
        return Err(Error::Usage { message: format!("--root {}: no such folder", root_dir.display()) });
    }
    let root = NodeRoot::new(&root_dir)
        .map_err(|e| Error::Usage { message: format!("--root {}: {e}", root_dir.display()) })?;
    let live = root.is_host_root();
    // Through the root, as every node path: a link in a folder may not lead out of it.
    let journal_host = root
        .resolve(JOURNAL_PATH)
        .map_err(|e| Error::Usage { message: format!("the journal {JOURNAL_PATH}: {e}") })?
        .host;
    let entries = journal::read(&journal_host).map_err(|e| Error::Usage {
        message: format!("cannot read the journal {}: {e}", journal_host.display()),
    })?;

    let (script_name, detected) = if let Some(s) = &opts.script {
        (s.clone(), None)
    } else {
        let (name, why) = detect(&root, &entries);
        (name.to_string(), Some(why))
    };
    let script = Script::load(&script_name)?;
    let (cfg, warnings) = script.config(&opts.config, &opts.set)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    // Loaded as `kscript stages` loads a script: its top level runs, no step does; its reads
    // (`exists`, the distribution) see this node root.
    let loaded = Loaded::new(
        script,
        &cfg,
        root.clone(),
        Host::for_mode(Mode::DryRun).probing_host(false),
        Reporter::silent(),
    )
    .map_err(|e| match e.for_operator() {
        // A script that cannot be loaded is bad input to status, not a failed run.
        Error::Script(mut d) => {
            d.exit_code = crate::error::EXIT_USAGE;
            Error::Script(d)
        }
        other => other,
    })?;
    let model = loaded.model();
    let name = loaded.script.name.trim_start_matches("builtin:").to_string();
    let Some(spec) = model.node_status.clone() else {
        return Err(Error::Usage {
            message: format!(
                "{name} declares no status table: add `node_status(status::control_plane(cfg));` (or your own table, see stdlib/status.rhai) at its top level"
            ),
        });
    };
    let stages: Vec<String> = model.stages.iter().map(|s| s.name.clone()).collect();
    spec.check_stages(stages.len())
        .map_err(|e| Error::Usage { message: format!("{name}: node_status(): {e}") })?;

    let files = RealFiles::new();
    let exists = |path: &str| -> bool {
        root.resolve_nofollow(path).is_ok_and(|r| files.state(&r.host).is_ok_and(|s| s.is_some()))
    };
    if !live && entries.is_empty() && !spec.files.iter().any(|f| exists(&f.path)) {
        return Err(Error::Usage {
            message: format!(
                "{} is not a node: it has no journal ({JOURNAL_PATH}) and none of the files of {name}'s stage map; render one with `kscript run {name} --root {}`",
                root_dir.display(),
                root_dir.display()
            ),
        });
    }
    let inputs = inputs(&root, &files, &spec, &exists, opts.timeout);
    let mode = if live { Mode::Apply } else { Mode::Render };
    let mut measures = probe::measure(mode, &spec, &inputs);
    for (c, m) in spec.components.iter().zip(&mut measures.components) {
        if m.state == probe::State::Rendered {
            m.detail = what_files_say(&c.runs, &entries, &exists);
        }
    }
    let verdict = verdict::judge(&spec, &stages, &entries, &measures, live, &exists);
    Ok(Status {
        script: name,
        detected,
        root: root.host().to_path_buf(),
        live,
        spec,
        stages,
        measures,
        verdict,
    })
}

/// Which stock script built the node at `root`: the journal's stage names first (`join` is
/// worker.rhai's, `init` control-plane.rhai's: a joined control plane has an API server Pod
/// too), then its files; with neither, control-plane.rhai. Returns it and why.
pub fn detect(root: &NodeRoot, entries: &[Entry]) -> (&'static str, String) {
    let ran = |stage: &str| entries.iter().any(|e| e.stage == stage);
    if ran("join") {
        return ("worker.rhai", "no SCRIPT given: worker.rhai (the journal shows its stage `join`)".into());
    }
    if ran("init") {
        return (
            "control-plane.rhai",
            "no SCRIPT given: control-plane.rhai (the journal shows its stage `init`)".into(),
        );
    }
    let has = |p: &str| root.resolve_nofollow(p).is_ok_and(|r| r.host.symlink_metadata().is_ok());
    for p in ["/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/admin.conf"] {
        if has(p) {
            return ("control-plane.rhai", format!("no SCRIPT given: control-plane.rhai (the node has {p})"));
        }
    }
    for p in [
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/bootstrap-kubelet.conf",
        "/etc/kubernetes/pki/ca.crt",
    ] {
        if has(p) {
            return (
                "worker.rhai",
                format!("no SCRIPT given: worker.rhai (the node has {p} and no control-plane files)"),
            );
        }
    }
    (
        "control-plane.rhai",
        "no SCRIPT given, and nothing on the node tells: control-plane.rhai (name the script to choose)"
            .into(),
    )
}

/// What a render's files and journal say of a component that is not measured: its unit file,
/// its manifest, whether the script applied its object (recorded, not sent).
fn what_files_say(runs: &spec::Runs, entries: &[Entry], exists: &dyn Fn(&str) -> bool) -> String {
    match runs {
        spec::Runs::Service { unit, .. } => {
            ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"]
                .iter()
                .map(|d| format!("{d}/{unit}"))
                .find(|p| exists(p))
                .map_or_else(|| "no unit file".to_string(), |p| format!("unit file {p}"))
        }
        spec::Runs::StaticPod { manifest, .. } => {
            if exists(manifest) {
                format!("manifest {manifest}")
            } else {
                "no manifest".to_string()
            }
        }
        spec::Runs::Deployment { namespace, object } | spec::Runs::DaemonSet { namespace, object } => {
            let target = format!("apply {} {namespace}/{object}", runs.label());
            entries.iter().rev().find(|e| e.action == "api" && e.target == target).map_or_else(
                || "not applied by this node".to_string(),
                |e| format!("applied in stage {} ({})", e.stage_index, e.outcome),
            )
        }
    }
}

/// What the probes need from the node's files: the socket and kubeconfig as host paths, each
/// static Pod's name and image, the first missing file of each service's `needs`.
fn inputs(
    root: &NodeRoot,
    files: &RealFiles,
    spec: &spec::Spec,
    exists: &dyn Fn(&str) -> bool,
    deadline: std::time::Duration,
) -> probe::Inputs {
    let host_path = |p: &str| root.resolve(p).ok().map(|r| r.host);
    let socket = spec
        .cri_socket
        .strip_prefix("unix://")
        .or(Some(spec.cri_socket.as_str()))
        .filter(|p| p.starts_with('/'))
        .and_then(host_path);
    let mut manifests = BTreeMap::new();
    let mut first_missing = BTreeMap::new();
    for c in &spec.components {
        match &c.runs {
            spec::Runs::StaticPod { manifest, container } => {
                let pod = host_path(manifest)
                    .and_then(|h| files.read(&h).ok().flatten())
                    .and_then(|bytes| serde_saphyr::from_slice::<serde_json::Value>(&bytes).ok())
                    .map(|pod| {
                        let name = pod["metadata"]["name"].as_str().unwrap_or(&c.name).to_string();
                        let image = pod["spec"]["containers"]
                            .as_array()
                            .and_then(|l| l.iter().find(|k| k["name"] == container.as_str()))
                            .and_then(|k| k["image"].as_str())
                            .unwrap_or_default()
                            .to_string();
                        (name, image)
                    });
                manifests.insert(c.name.clone(), pod);
            }
            spec::Runs::Service { needs, .. } => {
                if let Some(alternatives) = needs.iter().find(|alts| !alts.iter().any(|p| exists(p))) {
                    let name = |p: &String| {
                        Path::new(p)
                            .file_name()
                            .map_or_else(|| p.clone(), |n| n.to_string_lossy().into_owned())
                    };
                    first_missing.insert(
                        c.name.clone(),
                        alternatives.iter().map(name).collect::<Vec<_>>().join(" or "),
                    );
                }
            }
            _ => {}
        }
    }
    probe::Inputs { socket, kubeconfig: host_path(&spec.kubeconfig), manifests, first_missing, deadline }
}
