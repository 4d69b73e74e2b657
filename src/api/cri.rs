//! The container runtime over CRI v1: version, status, pods, containers, images; pull, run,
//! create, start, stop, remove; wait until ready, wait until a container runs.
//!
//! Every function takes the runtime's endpoint as kubelet's `--container-runtime-endpoint`
//! names it (`unix:///run/containerd/containerd.sock`). On a real run it is a socket on this
//! host; when rendering or in a dry run the effects are recorded and queries know nothing.

use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map};

use super::{Ctx, check_opts, effect_error, opt, script_error};
use crate::host::cri::{
    Container, ContainerFilter, ContainerSpec, ContainerState, ContainerStatus, Cri, CriChange, ImageLookup,
    LogLine, Made, Mount, Pod, PodFilter, PodSpec, PodState, RuntimeStatus, RuntimeVersion, WaitFailure,
};
use crate::journal::Outcome;
use crate::report::EffectLine;

type R<T> = Result<T, Box<EvalAltResult>>;

/// The runtime behind `endpoint`: `unix:///path` (or a bare `/path`), resolved in the node root.
fn runtime(ctx: &Ctx, function: &str, endpoint: &str) -> R<Rc<dyn Cri>> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(script_error(format!(
            "{function}(): `{endpoint}` is not a CRI endpoint kscript can use: give the runtime's unix socket, such as `unix:///run/containerd/containerd.sock`"
        )));
    }
    let resolved = ctx.root.resolve(path).map_err(|e| effect_error(format!("{function}(): {e}")))?;
    Ok(ctx.host.cri.at(&resolved.host))
}

/// A pod or container id argument: a string, or `()` (what `cri_run_pod` returns when
/// recording), passed on as an empty id.
fn id_arg(function: &str, id: &Dynamic) -> R<String> {
    if id.is_unit() {
        return Ok(String::new());
    }
    id.clone().into_immutable_string().map(|s| s.to_string()).map_err(|t| {
        script_error(format!(
            "{function}(): the id must be a string (from cri_pods, cri_run_pod ...), not {t}"
        ))
    })
}

fn shown_id(id: &str) -> &str {
    if id.is_empty() { "(id not known)" } else { id }
}

/// Records one runtime operation and turns its result into `changed`.
fn record(ctx: &Ctx, endpoint: &str, target: &str, result: io::Result<CriChange>) -> R<bool> {
    ctx.attempt(target);
    let change = result.map_err(|e| effect_error(format!("CRI {target} ({endpoint}): {e}")))?;
    let (outcome, word) = match change {
        CriChange::Unchanged => (Outcome::Ok, "already so"),
        CriChange::Changed => (Outcome::Changed, "done"),
        CriChange::Recorded => (Outcome::Recorded, "recorded, not run"),
    };
    let line = EffectLine::new('!', format!("cri {target}"), word);
    ctx.record("cri", target, outcome, Some(format!("{word} ({endpoint})")), Some(line));
    Ok(change == CriChange::Changed)
}

/// Records a pod or container made, and returns its id (`()` when only recorded).
fn record_made(ctx: &Ctx, endpoint: &str, target: &str, result: io::Result<Made>) -> R<Dynamic> {
    let mut id = None;
    let change = result.map(|m| {
        id = m.id;
        m.change
    });
    record(ctx, endpoint, target, change)?;
    Ok(id.map_or(Dynamic::UNIT, Dynamic::from))
}

fn string_map(m: &BTreeMap<String, String>) -> Map {
    m.iter().map(|(k, v)| (k.into(), v.clone().into())).collect()
}

fn strings(v: &[String]) -> Array {
    v.iter().map(|s| s.clone().into()).collect()
}

fn version_map(v: RuntimeVersion) -> Map {
    let mut m = Map::new();
    m.insert("version".into(), v.version.into());
    m.insert("runtime_name".into(), v.runtime_name.into());
    m.insert("runtime_version".into(), v.runtime_version.into());
    m.insert("runtime_api_version".into(), v.runtime_api_version.into());
    m
}

fn status_map(s: &RuntimeStatus) -> Map {
    let mut m = Map::new();
    m.insert("runtime_ready".into(), s.holds("RuntimeReady").into());
    m.insert("network_ready".into(), s.holds("NetworkReady").into());
    let conditions: Array = s
        .conditions
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("type".into(), c.kind.clone().into());
            m.insert("status".into(), c.status.into());
            m.insert("reason".into(), c.reason.clone().into());
            m.insert("message".into(), c.message.clone().into());
            Dynamic::from_map(m)
        })
        .collect();
    m.insert("conditions".into(), conditions.into());
    m
}

fn pod_map(p: Pod) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), p.id.into());
    m.insert("name".into(), p.name.into());
    m.insert("namespace".into(), p.namespace.into());
    m.insert("uid".into(), p.uid.into());
    m.insert("attempt".into(), rhai::INT::from(p.attempt).into());
    m.insert("state".into(), p.state.as_str().into());
    m.insert("created_at".into(), p.created_at.into());
    m.insert("labels".into(), string_map(&p.labels).into());
    m.insert("annotations".into(), string_map(&p.annotations).into());
    m
}

fn container_map(c: Container) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), c.id.into());
    m.insert("pod_id".into(), c.pod_id.into());
    m.insert("name".into(), c.name.into());
    m.insert("attempt".into(), rhai::INT::from(c.attempt).into());
    m.insert("image".into(), c.image.into());
    m.insert("image_ref".into(), c.image_ref.into());
    m.insert("state".into(), c.state.as_str().into());
    m.insert("created_at".into(), c.created_at.into());
    m.insert("labels".into(), string_map(&c.labels).into());
    m.insert("annotations".into(), string_map(&c.annotations).into());
    m
}

fn container_status_map(s: ContainerStatus) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), s.id.into());
    m.insert("name".into(), s.name.into());
    m.insert("attempt".into(), rhai::INT::from(s.attempt).into());
    m.insert("state".into(), s.state.as_str().into());
    m.insert("image".into(), s.image.into());
    m.insert("started_at".into(), s.started_at.into());
    m.insert("finished_at".into(), s.finished_at.into());
    m.insert("exit_code".into(), rhai::INT::from(s.exit_code).into());
    m.insert("reason".into(), s.reason.into());
    m.insert("message".into(), s.message.into());
    m.insert("log_path".into(), s.log_path.into());
    m
}

fn log_line_map(l: LogLine) -> Map {
    let mut m = Map::new();
    m.insert("time".into(), l.time.into());
    m.insert("stream".into(), l.stream.into());
    m.insert("text".into(), l.text.into());
    m
}

/// A map of strings from a script (labels, annotations, env): values may be strings, numbers
/// or booleans.
fn string_map_arg(m: &Map, key: &str, function: &str) -> R<BTreeMap<String, String>> {
    let Some(inner) = opt::<Map>(m, key, function)? else { return Ok(BTreeMap::new()) };
    inner
        .into_iter()
        .map(|(k, v)| {
            if v.is_string() || v.is_int() || v.is_float() || v.is_bool() {
                Ok((k.to_string(), v.to_string()))
            } else {
                Err(script_error(format!(
                    "{function}(): `{key}.{k}` must be a string, a number or a boolean, not {}",
                    v.type_name()
                )))
            }
        })
        .collect()
}

fn string_list_arg(m: &Map, key: &str, function: &str) -> R<Vec<String>> {
    let Some(items) = opt::<Array>(m, key, function)? else { return Ok(Vec::new()) };
    items
        .into_iter()
        .map(|v| {
            v.into_immutable_string().map(|s| s.to_string()).map_err(|t| {
                script_error(format!("{function}(): every item of `{key}` must be a string, not {t}"))
            })
        })
        .collect()
}

fn string_arg(m: &Map, key: &str, function: &str) -> R<Option<String>> {
    Ok(opt::<ImmutableString>(m, key, function)?.map(|s| s.to_string()))
}

fn attempt_arg(m: &Map, function: &str) -> R<u32> {
    let attempt = opt::<rhai::INT>(m, "attempt", function)?.unwrap_or(0);
    u32::try_from(attempt)
        .map_err(|_| script_error(format!("{function}(): `attempt` must be 0 or more, not {attempt}")))
}

/// A node path from a script, as the host path the runtime opens.
fn host_path(ctx: &Ctx, path: &str, function: &str) -> R<String> {
    let r = ctx.root.resolve(path).map_err(|e| effect_error(format!("{function}(): {e}")))?;
    Ok(r.host.to_string_lossy().into_owned())
}

fn pod_spec(ctx: &Ctx, m: &Map, function: &str) -> R<PodSpec> {
    const KEYS: &[&str] = &[
        "name",
        "namespace",
        "uid",
        "attempt",
        "hostname",
        "log_directory",
        "host_network",
        "cgroup_parent",
        "labels",
        "annotations",
    ];
    check_opts(m, KEYS, function)?;
    let name = string_arg(m, "name", function)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| script_error(format!("{function}(): the pod needs a `name`")))?;
    let namespace = string_arg(m, "namespace", function)?.unwrap_or_else(|| "default".into());
    let uid = string_arg(m, "uid", function)?.unwrap_or_else(|| format!("{namespace}.{name}"));
    let log_directory = match string_arg(m, "log_directory", function)? {
        Some(d) if !d.is_empty() => host_path(ctx, &d, function)?,
        _ => String::new(),
    };
    Ok(PodSpec {
        attempt: attempt_arg(m, function)?,
        hostname: string_arg(m, "hostname", function)?.unwrap_or_default(),
        log_directory,
        host_network: opt::<bool>(m, "host_network", function)?.unwrap_or(false),
        cgroup_parent: string_arg(m, "cgroup_parent", function)?.unwrap_or_default(),
        labels: string_map_arg(m, "labels", function)?,
        annotations: string_map_arg(m, "annotations", function)?,
        name,
        namespace,
        uid,
    })
}

fn container_spec(ctx: &Ctx, m: &Map, function: &str) -> R<ContainerSpec> {
    const KEYS: &[&str] = &[
        "name",
        "image",
        "attempt",
        "command",
        "args",
        "working_dir",
        "env",
        "mounts",
        "labels",
        "annotations",
        "log_path",
    ];
    check_opts(m, KEYS, function)?;
    let required = |key: &str| -> R<String> {
        string_arg(m, key, function)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| script_error(format!("{function}(): the container needs `{key}`")))
    };
    let mut mounts = Vec::new();
    for (i, item) in opt::<Array>(m, "mounts", function)?.unwrap_or_default().into_iter().enumerate() {
        let shape = "#{ container_path, host_path, readonly }";
        let mount = item
            .try_cast::<Map>()
            .ok_or_else(|| script_error(format!("{function}(): mounts[{i}] must be a map {shape}")))?;
        if let Some(k) =
            mount.keys().find(|k| !["container_path", "host_path", "readonly"].contains(&k.as_str()))
        {
            return Err(script_error(format!("{function}(): mounts[{i}] has an unknown key `{k}`: {shape}")));
        }
        let path = |key: &str| -> R<String> {
            string_arg(&mount, key, function)?.filter(|p| p.starts_with('/')).ok_or_else(|| {
                script_error(format!("{function}(): mounts[{i}] needs `{key}`, an absolute path"))
            })
        };
        mounts.push(Mount {
            container_path: path("container_path")?,
            host_path: host_path(ctx, &path("host_path")?, function)?,
            readonly: opt::<bool>(&mount, "readonly", function)?.unwrap_or(false),
        });
    }
    Ok(ContainerSpec {
        name: required("name")?,
        image: required("image")?,
        attempt: attempt_arg(m, function)?,
        command: string_list_arg(m, "command", function)?,
        args: string_list_arg(m, "args", function)?,
        working_dir: string_arg(m, "working_dir", function)?.unwrap_or_default(),
        env: string_map_arg(m, "env", function)?,
        mounts,
        labels: string_map_arg(m, "labels", function)?,
        annotations: string_map_arg(m, "annotations", function)?,
        log_path: string_arg(m, "log_path", function)?.unwrap_or_default(),
    })
}

fn state_arg<T>(m: &Map, function: &str, parse: fn(&str) -> Option<T>, names: &[&str]) -> R<Option<T>> {
    match string_arg(m, "state", function)? {
        None => Ok(None),
        Some(s) => parse(&s).map(Some).ok_or_else(|| {
            script_error(format!("{function}(): unknown state `{s}`; states: {}", names.join(", ")))
        }),
    }
}

fn pod_filter(m: &Map) -> R<PodFilter> {
    const F: &str = "cri_pods";
    check_opts(m, &["id", "name", "state", "labels"], F)?;
    Ok(PodFilter {
        id: string_arg(m, "id", F)?,
        name: string_arg(m, "name", F)?,
        state: state_arg(m, F, PodState::parse, PodState::NAMES)?,
        labels: string_map_arg(m, "labels", F)?,
    })
}

fn container_filter(m: &Map) -> R<ContainerFilter> {
    const F: &str = "cri_containers";
    check_opts(m, &["id", "pod_id", "name", "state", "labels"], F)?;
    Ok(ContainerFilter {
        id: string_arg(m, "id", F)?,
        pod_id: string_arg(m, "pod_id", F)?,
        name: string_arg(m, "name", F)?,
        state: state_arg(m, F, ContainerState::parse, ContainerState::NAMES)?,
        labels: string_map_arg(m, "labels", F)?,
    })
}

fn query_error(what: &str, endpoint: &str, e: &io::Error) -> String {
    format!("CRI {what} ({endpoint}): {e}")
}

fn pods(ctx: &Ctx, endpoint: &str, filter: &Map) -> R<Array> {
    let filter = pod_filter(filter)?;
    let found = runtime(ctx, "cri_pods", endpoint)?
        .pods(&filter)
        .map_err(|e| effect_error(query_error("pods", endpoint, &e)))?;
    Ok(found.into_iter().map(|p| Dynamic::from_map(pod_map(p))).collect())
}

fn containers(ctx: &Ctx, endpoint: &str, filter: &Map) -> R<Array> {
    let filter = container_filter(filter)?;
    let found = runtime(ctx, "cri_containers", endpoint)?
        .containers(&filter)
        .map_err(|e| effect_error(query_error("containers", endpoint, &e)))?;
    Ok(found.into_iter().map(|c| Dynamic::from_map(container_map(c))).collect())
}

fn wait_ready(ctx: &Ctx, endpoint: &str, timeout: f64) -> R<Dynamic> {
    const F: &str = "cri_wait_ready";
    ctx.require_step(F)?;
    let timeout = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let cri = runtime(ctx, F, endpoint)?;
    let target = "wait-ready";
    ctx.attempt(target);
    let label = format!("waiting for the container runtime at {endpoint}");
    match ctx.wait(&label, || cri.wait_ready(timeout)) {
        Ok(Some(status)) => {
            record(ctx, endpoint, target, Ok(CriChange::Unchanged))?;
            Ok(Dynamic::from_map(status_map(&status)))
        }
        Ok(None) => {
            record(ctx, endpoint, target, Ok(CriChange::Recorded))?;
            Ok(Dynamic::UNIT)
        }
        Err(e) => {
            ctx.record("cri", target, Outcome::Failed, Some(format!("not ready ({endpoint})")), None);
            Err(effect_error(format!("the container runtime at {endpoint} is {e}")))
        }
    }
}

/// The containers seen, one a line, for a failed wait.
fn describe_seen(failure: &WaitFailure) -> String {
    const MAX: usize = 30;
    let mut text = String::new();
    if failure.seen.is_empty() {
        text.push_str("the runtime lists no containers");
    } else {
        text.push_str("containers seen:");
        let width = failure.seen.iter().map(|c| c.name.len()).max().unwrap_or(0).min(40);
        for c in failure.seen.iter().take(MAX) {
            text.push_str(&format!(
                "\n  {:<width$}  {:<8} attempt {}  id {:.13}  pod {:.13}  image {}",
                c.name, c.state, c.attempt, c.id, c.pod_id, c.image
            ));
        }
        if failure.seen.len() > MAX {
            text.push_str(&format!("\n  ... and {} more", failure.seen.len() - MAX));
        }
    }
    if let Some(e) = &failure.last_error {
        text.push_str(&format!("\nthe last look failed: {e}"));
    }
    text
}

fn wait_running(ctx: &Ctx, endpoint: &str, name: &str, timeout: f64) -> R<Dynamic> {
    const F: &str = "cri_wait_running";
    ctx.require_step(F)?;
    if name.is_empty() {
        return Err(script_error(format!("{F}(): give the container's name (`kube-apiserver`)")));
    }
    let duration = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let cri = runtime(ctx, F, endpoint)?;
    let target = format!("wait-running {name}");
    ctx.attempt(&target);
    let label = format!("waiting for container {name} to run");
    match ctx.wait(&label, || cri.wait_running(name, duration)) {
        Ok(Some(c)) => {
            record(ctx, endpoint, &target, Ok(CriChange::Unchanged))?;
            Ok(Dynamic::from_map(container_map(c)))
        }
        Ok(None) => {
            record(ctx, endpoint, &target, Ok(CriChange::Recorded))?;
            Ok(Dynamic::UNIT)
        }
        Err(failure) => {
            ctx.record("cri", &target, Outcome::Failed, Some(format!("not running ({endpoint})")), None);
            Err(effect_error(format!(
                "no container named `{name}` is running at {endpoint} after {:.0}s; {}",
                duration.as_secs_f64(),
                describe_seen(&failure)
            )))
        }
    }
}

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("cri_version")
        .with_comments([
            "/// The container runtime's `Version` answer, `#{ version, runtime_name, runtime_version,",
            "/// runtime_api_version }` (`containerd`, `1.6.20~ds1`, `v1`); `()` when rendering or in a",
            "/// dry run, where there is no runtime to ask. `endpoint` is the runtime's socket as",
            "/// kubelet names it: `unix:///run/containerd/containerd.sock`. If nothing answers there,",
            "/// the error names the socket.",
        ])
        .with_params_info(["endpoint: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str| -> R<Dynamic> {
            let v = runtime(&c, "cri_version", endpoint)?
                .version()
                .map_err(|e| effect_error(query_error("version", endpoint, &e)))?;
            Ok(v.map_or(Dynamic::UNIT, |v| Dynamic::from_map(version_map(v))))
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_status")
        .with_comments([
            "/// The runtime's `Status`: `#{ runtime_ready, network_ready, conditions }`, each condition",
            "/// `#{ type, status, reason, message }` (`network_ready` stays false until a CNI network",
            "/// is configured); `()` when rendering or in a dry run.",
        ])
        .with_params_info(["endpoint: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str| -> R<Dynamic> {
            let s = runtime(&c, "cri_status", endpoint)?
                .status()
                .map_err(|e| effect_error(query_error("status", endpoint, &e)))?;
            Ok(s.map_or(Dynamic::UNIT, |s| Dynamic::from_map(status_map(&s))))
        });

    const PODS_DOC: &[&str] = &[
        "/// The pod sandboxes the runtime holds, oldest first, as maps `#{ id, name, namespace, uid,",
        "/// attempt, state, created_at, labels, annotations }` (`state` is `ready` or `notready`,",
        "/// `created_at` nanoseconds since 1970). `filter` keeps those that match all of `id`,",
        "/// `name`, `state`, and `labels` (a map: each label must have that value). Empty when",
        "/// rendering or in a dry run.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("cri_pods")
        .with_comments(PODS_DOC)
        .with_params_info(["endpoint: &str", "filter: Map", "Array"])
        .register_into_engine(engine, move |endpoint: &str, filter: Map| pods(&c, endpoint, &filter));
    let c = ctx.clone();
    FuncRegistration::new("cri_pods")
        .with_comments(PODS_DOC)
        .with_params_info(["endpoint: &str", "Array"])
        .register_into_engine(engine, move |endpoint: &str| pods(&c, endpoint, &Map::new()));

    const CONTAINERS_DOC: &[&str] = &[
        "/// The containers the runtime holds, oldest first, as maps `#{ id, pod_id, name, attempt,",
        "/// image, image_ref, state, created_at, labels, annotations }` (`state` is `created`,",
        "/// `running`, `exited` or `unknown`). `filter` keeps those that match all of `id`,",
        "/// `pod_id`, `name`, `state`, and `labels` (a map). Empty when rendering or in a dry run.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("cri_containers")
        .with_comments(CONTAINERS_DOC)
        .with_params_info(["endpoint: &str", "filter: Map", "Array"])
        .register_into_engine(engine, move |endpoint: &str, filter: Map| containers(&c, endpoint, &filter));
    let c = ctx.clone();
    FuncRegistration::new("cri_containers")
        .with_comments(CONTAINERS_DOC)
        .with_params_info(["endpoint: &str", "Array"])
        .register_into_engine(engine, move |endpoint: &str| containers(&c, endpoint, &Map::new()));

    let c = ctx.clone();
    FuncRegistration::new("cri_container_status")
        .with_comments([
            "/// The runtime's `ContainerStatus` of the container `id`: `#{ id, name, attempt, state,",
            "/// image, started_at, finished_at, exit_code, reason, message, log_path }` (`exit_code`",
            "/// once it has exited; `reason` a word such as `Error`, `Completed`, `OOMKilled`,",
            "/// `StartError`, with `message` the runtime's words; `log_path` its log file on the host,",
            "/// in the CRI log format). `()` when there is no such container (the kubelet removes",
            "/// old ones), or when rendering or in a dry run.",
        ])
        .with_params_info(["endpoint: &str", "id: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, id: &str| -> R<Dynamic> {
            const F: &str = "cri_container_status";
            let status = runtime(&c, F, endpoint)?
                .container_status(id)
                .map_err(|e| effect_error(query_error(&format!("container status {id}"), endpoint, &e)))?;
            Ok(status.map_or(Dynamic::UNIT, |s| Dynamic::from_map(container_status_map(s))))
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_container_log")
        .with_comments([
            "/// The last `lines` lines the container `id` wrote (stdout and stderr, as `crictl logs",
            "/// --tail` shows them), oldest first, each `#{ time, stream, text }`; read from the log",
            "/// file its status names, in kubelet's CRI log format (`TIMESTAMP STREAM TAG MESSAGE`,",
            "/// partial lines joined). Empty when it wrote nothing (or keeps no log); `()` when there",
            "/// is no such container, or when rendering or in a dry run.",
        ])
        .with_params_info(["endpoint: &str", "id: &str", "lines: i64", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, id: &str, lines: rhai::INT| -> R<Dynamic> {
            const F: &str = "cri_container_log";
            let count = usize::try_from(lines)
                .map_err(|_| script_error(format!("{F}(): `lines` must be 0 or more, not {lines}")))?;
            let found = runtime(&c, F, endpoint)?
                .container_log(id, count)
                .map_err(|e| effect_error(query_error(&format!("container log {id}"), endpoint, &e)))?;
            Ok(found.map_or(Dynamic::UNIT, |lines| {
                Dynamic::from_array(lines.into_iter().map(|l| Dynamic::from_map(log_line_map(l))).collect())
            }))
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_image_status")
        .with_comments([
            "/// Whether the runtime has `image` (`registry.k8s.io/pause:3.10`): `#{ present: true, id,",
            "/// repo_tags, repo_digests, size }`, or `#{ present: false }`; `()` when rendering or in",
            "/// a dry run.",
        ])
        .with_params_info(["endpoint: &str", "image: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, image: &str| -> R<Dynamic> {
            let lookup = runtime(&c, "cri_image_status", endpoint)?
                .image_status(image)
                .map_err(|e| effect_error(query_error(&format!("image status {image}"), endpoint, &e)))?;
            let mut m = Map::new();
            match lookup {
                ImageLookup::Unknown => return Ok(Dynamic::UNIT),
                ImageLookup::Absent => {
                    m.insert("present".into(), false.into());
                }
                ImageLookup::Present(i) => {
                    m.insert("present".into(), true.into());
                    m.insert("id".into(), i.id.into());
                    m.insert("repo_tags".into(), strings(&i.repo_tags).into());
                    m.insert("repo_digests".into(), strings(&i.repo_digests).into());
                    m.insert("size".into(), rhai::INT::try_from(i.size).unwrap_or(rhai::INT::MAX).into());
                }
            }
            Ok(Dynamic::from_map(m))
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_pull")
        .with_comments([
            "/// Pulls `image` unless the runtime has it already (kubelet's `IfNotPresent`); recorded",
            "/// when rendering. Returns `true` if it was pulled.",
        ])
        .with_params_info(["endpoint: &str", "image: &str", "bool"])
        .register_into_engine(engine, move |endpoint: &str, image: &str| -> R<bool> {
            c.require_step("cri_pull")?;
            if image.is_empty() {
                return Err(script_error("cri_pull(): give an image such as registry.k8s.io/pause:3.10"));
            }
            let cri = runtime(&c, "cri_pull", endpoint)?;
            let target = format!("pull {image}");
            let result = c.wait(&format!("pulling {image}"), || cri.pull_image(image));
            record(&c, endpoint, &target, result)
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_run_pod")
        .with_comments([
            "/// Runs a pod sandbox unless a ready one with the same name, namespace, uid and attempt",
            "/// is there, and returns its id (`()` when rendering). `pod` is a map: `name` (required),",
            "/// `namespace` (default `default`), `uid` (default `<namespace>.<name>`), `attempt`,",
            "/// `hostname`, `log_directory` (a node path), `host_network` (default `false`; static pods",
            "/// use `true`), `cgroup_parent`, `labels`, `annotations`. Give the same map to",
            "/// `cri_create_container`.",
        ])
        .with_params_info(["endpoint: &str", "pod: Map", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, pod: Map| -> R<Dynamic> {
            const F: &str = "cri_run_pod";
            c.require_step(F)?;
            let spec = pod_spec(&c, &pod, F)?;
            let cri = runtime(&c, F, endpoint)?;
            let target = format!("run-pod {}/{}", spec.namespace, spec.name);
            record_made(&c, endpoint, &target, cri.run_pod(&spec))
        });

    let c = ctx.clone();
    FuncRegistration::new("cri_create_container")
        .with_comments([
            "/// Creates a container in the pod `pod_id` unless one of that name and attempt is there,",
            "/// and returns its id (`()` when rendering). `pod` is the map the pod was run from (the",
            "/// runtime wants it again); `container` is a map: `name` and `image` (required),",
            "/// `attempt`, `command`, `args` (arrays of strings), `working_dir`, `env` (a map),",
            "/// `mounts` (an array of `#{ container_path, host_path, readonly }`, host paths being node",
            "/// paths), `labels`, `annotations`, `log_path` (under the pod's `log_directory`).",
        ])
        .with_params_info(["endpoint: &str", "pod_id: Dynamic", "pod: Map", "container: Map", "Dynamic"])
        .register_into_engine(
            engine,
            move |endpoint: &str, pod_id: Dynamic, pod: Map, container: Map| -> R<Dynamic> {
                const F: &str = "cri_create_container";
                c.require_step(F)?;
                let pod_id = id_arg(F, &pod_id)?;
                let pod = pod_spec(&c, &pod, F)?;
                let spec = container_spec(&c, &container, F)?;
                let cri = runtime(&c, F, endpoint)?;
                let target = format!("create-container {} in pod {}", spec.name, shown_id(&pod_id));
                record_made(&c, endpoint, &target, cri.create_container(&pod_id, &pod, &spec))
            },
        );

    // Each function with the operation it performs (no catch-all: a row names its own).
    type Operation = fn(&dyn Cri, &str) -> io::Result<CriChange>;
    let ids: [(&'static str, &'static str, Operation, &[&str]); 3] = [
        (
            "cri_start_container",
            "start-container",
            |cri, id| cri.start_container(id),
            &[
                "/// Starts the container `id` unless it is running (recorded when rendering). Returns `true` if it started.",
            ],
        ),
        (
            "cri_stop_pod",
            "stop-pod",
            |cri, id| cri.stop_pod(id),
            &[
                "/// Stops the pod sandbox `id` and its containers, unless it is stopped or gone (recorded",
                "/// when rendering). Returns `true` if it stopped.",
            ],
        ),
        (
            "cri_remove_pod",
            "remove-pod",
            |cri, id| cri.remove_pod(id),
            &[
                "/// Removes the pod sandbox `id` and its containers (stopping them first), unless it is",
                "/// gone (recorded when rendering). Returns `true` if it was removed.",
            ],
        ),
    ];
    for (name, what, operation, doc) in ids {
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_comments(doc)
            .with_params_info(["endpoint: &str", "id: Dynamic", "bool"])
            .register_into_engine(engine, move |endpoint: &str, id: Dynamic| -> R<bool> {
                c.require_step(name)?;
                let id = id_arg(name, &id)?;
                let cri = runtime(&c, name, endpoint)?;
                let target = format!("{what} {}", shown_id(&id));
                record(&c, endpoint, &target, operation(cri.as_ref(), &id))
            });
    }

    const READY_DOC: &[&str] = &[
        "/// Waits up to `timeout` seconds, with progress, until the runtime at `endpoint` answers",
        "/// and reports `RuntimeReady`, and returns its status as `cri_status` does (`()` when",
        "/// rendering). If the time runs out, the step fails with the reason, naming the socket.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("cri_wait_ready")
        .with_comments(READY_DOC)
        .with_params_info(["endpoint: &str", "timeout: f64", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, timeout: rhai::FLOAT| {
            wait_ready(&c, endpoint, timeout)
        });
    let c = ctx.clone();
    FuncRegistration::new("cri_wait_ready")
        .with_comments(READY_DOC)
        .with_params_info(["endpoint: &str", "timeout: i64", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, timeout: rhai::INT| {
            wait_ready(&c, endpoint, super::int_seconds(timeout))
        });

    const RUNNING_DOC: &[&str] = &[
        "/// Waits up to `timeout` seconds, with progress, until a container named `name` (as in",
        "/// the pod manifest: `kube-apiserver`) is running, and returns it as `cri_containers`",
        "/// does (`()` when rendering). If the time runs out, the step fails with the containers",
        "/// seen and their states.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("cri_wait_running")
        .with_comments(RUNNING_DOC)
        .with_params_info(["endpoint: &str", "name: &str", "timeout: f64", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, name: &str, timeout: rhai::FLOAT| {
            wait_running(&c, endpoint, name, timeout)
        });
    let c = ctx.clone();
    FuncRegistration::new("cri_wait_running")
        .with_comments(RUNNING_DOC)
        .with_params_info(["endpoint: &str", "name: &str", "timeout: i64", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, name: &str, timeout: rhai::INT| {
            wait_running(&c, endpoint, name, super::int_seconds(timeout))
        });
}
