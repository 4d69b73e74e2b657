//! kubeadm's `--patches DIR`: files named `target[suffix][+patchtype].{yaml,json}`, applied in
//! the alphabetical order of their names to the object of their target.
//!
//! Patch types: `strategic` (the default; lists of containers, volumes, mounts, env and ports
//! merge by their key, as Kubernetes' strategic merge patch does for Pods, and `$patch:
//! delete`/`replace` directives work), `merge` (RFC 7386) and `json` (RFC 6902).

use std::path::Path;

use serde_json::{Map, Value};

/// The targets kubeadm knows.
pub const TARGETS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubeletconfiguration",
    "corednsdeployment",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Strategic,
    Merge,
    Json,
}

/// One patch file.
#[derive(Debug, Clone)]
pub struct PatchFile {
    pub name: String,
    pub target: String,
    pub kind: PatchType,
    pub patch: Value,
}

/// Splits a file name into target and patch type; `None` for names kubeadm ignores.
fn parse_name(name: &str) -> Result<Option<(String, PatchType)>, String> {
    let Some(stem) = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .or_else(|| name.strip_suffix(".json"))
    else {
        return Ok(None);
    };
    let (base, kind) = match stem.split_once('+') {
        None => (stem, PatchType::Strategic),
        Some((base, "strategic")) => (base, PatchType::Strategic),
        Some((base, "merge")) => (base, PatchType::Merge),
        Some((base, "json")) => (base, PatchType::Json),
        Some((_, other)) => {
            return Err(format!("{name}: unknown patch type `{other}` (use strategic, merge or json)"));
        }
    };
    // The target is the longest known target the name starts with; the rest is the suffix.
    let target = TARGETS.iter().filter(|t| base.starts_with(**t)).max_by_key(|t| t.len());
    match target {
        Some(t) => Ok(Some(((*t).to_string(), kind))),
        None => Err(format!("{name}: unknown patch target; targets: {}", TARGETS.join(", "))),
    }
}

/// Reads every patch file of `dir`, sorted by name.
pub fn load(dir: &Path) -> Result<Vec<PatchFile>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the patches folder {}: {e}", dir.display()))?;
    let mut names: Vec<String> =
        entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Some((target, kind)) = parse_name(&name)? else { continue };
        let path = dir.join(&name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let patch: Value = if name.ends_with(".json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        out.push(PatchFile { name, target, kind, patch });
    }
    Ok(out)
}

/// Applies the patches of `target`, in order.
pub fn apply(target: &str, mut doc: Value, patches: &[PatchFile]) -> Result<Value, String> {
    for p in patches.iter().filter(|p| p.target == target) {
        doc = match p.kind {
            PatchType::Merge => merge_patch(doc, &p.patch),
            PatchType::Strategic => strategic(doc, &p.patch),
            PatchType::Json => json_patch(doc, &p.patch).map_err(|e| format!("{}: {e}", p.name))?,
        };
    }
    Ok(doc)
}

/// RFC 7386: maps merge, `null` deletes, anything else replaces.
pub fn merge_patch(doc: Value, patch: &Value) -> Value {
    merge(doc, patch, false)
}

/// The key a list of objects merges by, in a Pod (Kubernetes' patchMergeKey).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => {
            Some("name")
        }
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// Strategic merge: as the merge patch, but lists with a merge key merge item by item, and
/// `$patch: replace` / `$patch: delete` directives apply.
pub fn strategic(doc: Value, patch: &Value) -> Value {
    merge(doc, patch, true)
}

/// The merge patch, and with `strategic` the strategic merge's lists and directives.
fn merge(doc: Value, patch: &Value, strategic: bool) -> Value {
    let Value::Object(patch) = patch else { return patch.clone() };
    if strategic && patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.remove("$patch");
        return Value::Object(p);
    }
    let mut base = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in patch {
        if strategic && k == "$patch" {
            continue;
        }
        if v.is_null() {
            base.remove(k);
            continue;
        }
        let cur = base.remove(k).unwrap_or(Value::Null);
        let merged = match (merge_key(k).filter(|_| strategic), cur, v) {
            (Some(key), Value::Array(items), Value::Array(changes)) => {
                Value::Array(merge_list(items, changes, key))
            }
            (_, cur, v) => merge(cur, v, strategic),
        };
        base.insert(k.clone(), merged);
    }
    Value::Object(base)
}

fn merge_list(mut items: Vec<Value>, changes: &[Value], key: &str) -> Vec<Value> {
    for change in changes {
        let id = change.get(key).cloned();
        let pos = id.as_ref().and_then(|id| items.iter().position(|i| i.get(key) == Some(id)));
        let delete = change.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                items.remove(i);
            }
            (Some(i), false) => {
                let cur = std::mem::take(&mut items[i]);
                items[i] = strategic(cur, change);
            }
            (None, true) => {}
            (None, false) => items.push(change.clone()),
        }
    }
    items
}

/// RFC 6901: the parts of a JSON pointer.
fn pointer_parts(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("`{pointer}` is not a JSON pointer"))?;
    Ok(rest.split('/').map(|p| p.replace("~1", "/").replace("~0", "~")).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p).ok_or_else(|| format!("no `{p}` in the document"))?,
            Value::Array(a) => {
                let i: usize = p.parse().map_err(|_| format!("`{p}` is not an index"))?;
                a.get_mut(i).ok_or_else(|| format!("index {i} is past the end"))?
            }
            _ => return Err(format!("`{p}`: not a map or list")),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, parts: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse().map_err(|_| format!("`{last}` is not an index"))?
            };
            if i > a.len() {
                return Err(format!("index {i} is past the end"));
            }
            a.insert(i, value);
        }
        _ => return Err(format!("cannot add `{last}`: not a map or list")),
    }
    Ok(())
}

fn take(doc: &mut Value, parts: &[String]) -> Result<Value, String> {
    let (last, parents) = parts.split_last().ok_or("cannot remove the whole document")?;
    match parent_mut(doc, parents)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| format!("no `{last}` to remove")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("`{last}` is not an index"))?;
            if i >= a.len() {
                return Err(format!("index {i} is past the end"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("cannot remove `{last}`: not a map or list")),
    }
}

/// RFC 6902 operations: add, remove, replace, move, copy, test.
pub fn json_patch(mut doc: Value, patch: &Value) -> Result<Value, String> {
    let ops = patch.as_array().ok_or("a json patch is a list of operations")?;
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).ok_or("an operation without `op`")?;
        let path =
            pointer_parts(op.get("path").and_then(Value::as_str).ok_or("an operation without `path`")?)?;
        let value = || op.get("value").cloned().ok_or(format!("`{name}` needs a `value`"));
        let from = || pointer_parts(op.get("from").and_then(Value::as_str).unwrap_or_default());
        match name {
            "add" => add(&mut doc, &path, value()?)?,
            "remove" => {
                take(&mut doc, &path)?;
            }
            // RFC 6902 lets `replace` take the whole document (an empty path).
            "replace" if path.is_empty() => doc = value()?,
            "replace" => {
                take(&mut doc, &path)?;
                add(&mut doc, &path, value()?)?;
            }
            "move" => {
                let v = take(&mut doc, &from()?)?;
                add(&mut doc, &path, v)?;
            }
            "copy" => {
                let v = parent_mut(&mut doc, &from()?)?.clone();
                add(&mut doc, &path, v)?;
            }
            "test" => {
                if *parent_mut(&mut doc, &path)? != value()? {
                    return Err(format!("test failed at {}", path.join("/")));
                }
            }
            other => return Err(format!("unknown operation `{other}`")),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({"spec": {"containers": [{"name": "etcd", "command": ["etcd"], "volumeMounts": [{"mountPath": "/a", "name": "a"}]}],
                        "volumes": [{"name": "a", "hostPath": {"path": "/a"}}]}})
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("etcd.yaml").unwrap(), Some(("etcd".into(), PatchType::Strategic)));
        assert_eq!(
            parse_name("kube-apiserver0+merge.yaml").unwrap(),
            Some(("kube-apiserver".into(), PatchType::Merge))
        );
        assert_eq!(
            parse_name("kubeletconfiguration+json.json").unwrap(),
            Some(("kubeletconfiguration".into(), PatchType::Json))
        );
        assert_eq!(parse_name("README.md").unwrap(), None);
        assert!(parse_name("kube-proxy.yaml").is_err());
        assert!(parse_name("etcd+weird.yaml").is_err());
    }

    #[test]
    fn strategic_merges_lists_by_key() {
        let patch = json!({"spec": {"containers": [{"name": "etcd", "resources": {"requests": {"cpu": "200m"}},
                                                      "volumeMounts": [{"mountPath": "/b", "name": "b"}]}],
                                    "volumes": [{"name": "a", "$patch": "delete"}, {"name": "b", "hostPath": {"path": "/b"}}]}});
        let out = strategic(pod(), &patch);
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["etcd"]));
        assert_eq!(out["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
        assert_eq!(out["spec"]["containers"][0]["volumeMounts"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["volumes"], json!([{"name": "b", "hostPath": {"path": "/b"}}]));
    }

    #[test]
    fn merge_and_json_patches() {
        let out = merge_patch(pod(), &json!({"spec": {"volumes": null, "hostNetwork": true}}));
        assert!(out["spec"].get("volumes").is_none());
        assert_eq!(out["spec"]["hostNetwork"], true);
        let ops = json!([
            {"op": "add", "path": "/spec/containers/0/command/-", "value": "--debug"},
            {"op": "replace", "path": "/spec/volumes/0/hostPath/path", "value": "/z"},
            {"op": "test", "path": "/spec/containers/0/name", "value": "etcd"},
            {"op": "copy", "from": "/spec/volumes", "path": "/spec/saved"},
            {"op": "remove", "path": "/spec/saved"},
        ]);
        let out = json_patch(pod(), &ops).unwrap();
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["etcd", "--debug"]));
        assert_eq!(out["spec"]["volumes"][0]["hostPath"]["path"], "/z");
        assert!(
            json_patch(pod(), &json!([{"op": "test", "path": "/spec/containers/0/name", "value": "x"}]))
                .is_err()
        );
        assert!(json_patch(pod(), &json!([{"op": "remove", "path": "/nope"}])).is_err());
        // The whole document may be replaced (RFC 6902), not removed.
        let out =
            json_patch(pod(), &json!([{"op": "replace", "path": "", "value": {"kind": "Pod"}}])).unwrap();
        assert_eq!(out, json!({"kind": "Pod"}));
        assert!(json_patch(pod(), &json!([{"op": "remove", "path": ""}])).is_err());
        // A merge patch does not merge lists by key, as a strategic one does.
        let change = json!({"spec": {"volumes": [{"name": "b"}]}});
        assert_eq!(merge_patch(pod(), &change)["spec"]["volumes"], json!([{"name": "b"}]));
        assert_eq!(strategic(pod(), &change)["spec"]["volumes"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn files_apply_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd1+merge.yaml"), "spec:\n  hostNetwork: false\n").unwrap();
        std::fs::write(dir.path().join("etcd0.yaml"), "spec:\n  hostNetwork: true\n  priority: 1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let patches = load(dir.path()).unwrap();
        assert_eq!(
            patches.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["etcd0.yaml", "etcd1+merge.yaml"]
        );
        let out = apply("etcd", pod(), &patches).unwrap();
        assert_eq!(
            (out["spec"]["hostNetwork"].clone(), out["spec"]["priority"].clone()),
            (json!(false), json!(1))
        );
        assert_eq!(apply("kube-scheduler", pod(), &patches).unwrap(), pod());
    }
}
