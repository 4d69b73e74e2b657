//! Turning maps into file content (YAML, TOML, JSON, env files) and back.
//!
//! Maps keep their keys sorted, which is also the order kubeadm writes its YAML in.

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use super::{check_opts, opt, script_error};

type R<T> = Result<T, Box<EvalAltResult>>;

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine) {
    FuncRegistration::new("to_yaml")
        .with_comments([
            "/// `value` as a YAML document, written the way kubeadm writes YAML (Go's yaml.v2: block",
            "/// style, keys sorted, strings quoted only when they must be), ending in a newline.",
        ])
        .with_params_info(["value: Dynamic", "String"])
        .register_into_engine(engine, |value: Dynamic| to_yaml(&value));

    FuncRegistration::new("to_json")
        .with_comments(["/// `value` as pretty-printed JSON, ending in a newline."])
        .with_params_info(["value: Dynamic", "String"])
        .register_into_engine(engine, |value: Dynamic| -> R<String> {
            let mut s =
                serde_json::to_string_pretty(&value).map_err(|e| script_error(format!("to_json(): {e}")))?;
            s.push('\n');
            Ok(s)
        });

    FuncRegistration::new("to_toml")
        .with_comments([
            "/// `map` as a TOML document. Nested maps become tables; `()` values cannot be written",
            "/// in TOML and are an error.",
        ])
        .with_params_info(["map: Map", "String"])
        .register_into_engine(engine, |map: Map| -> R<String> {
            toml::to_string(&Dynamic::from_map(map)).map_err(|e| script_error(format!("to_toml(): {e}")))
        });

    const ENV_DOC: &[&str] = &[
        "/// `map` as an environment file for systemd's `EnvironmentFile=` and shells: one",
        "/// `KEY=value` line per entry, keys sorted. A value with spaces, quotes or `$` is",
        "/// double-quoted and escaped; option `quote: true` quotes every value (kubeadm writes",
        "/// `KUBELET_KUBEADM_ARGS=\"...\"` that way).",
    ];
    FuncRegistration::new("to_env")
        .with_comments(ENV_DOC)
        .with_params_info(["map: Map", "String"])
        .register_into_engine(engine, |map: Map| to_env(&map, &Map::new()));
    FuncRegistration::new("to_env")
        .with_comments(ENV_DOC)
        .with_params_info(["map: Map", "options: Map", "String"])
        .register_into_engine(engine, |map: Map, opts: Map| to_env(&map, &opts));

    FuncRegistration::new("apply_patches")
        .with_comments([
            "/// `value` with kubeadm-style patches applied: every file of the folder `dir` (a path on",
            "/// the machine running kscript, as `--patches DIR` gives it) named",
            "/// `target[suffix][+patchtype].{yaml,json}` for `target` (`etcd`, `kube-apiserver`,",
            "/// `kube-controller-manager`, `kube-scheduler`, `kubeletconfiguration`), in the order of",
            "/// their names; patch types `strategic` (default), `merge`, `json`. An empty `dir` changes",
            "/// nothing.",
        ])
        .with_params_info(["dir: &str", "target: &str", "value: Dynamic", "Dynamic"])
        .register_into_engine(engine, |dir: &str, target: &str, value: Dynamic| -> R<Dynamic> {
            if dir.is_empty() {
                return Ok(value);
            }
            if !crate::patches::TARGETS.contains(&target) {
                return Err(script_error(format!(
                    "apply_patches(): unknown target `{target}`; targets: {}",
                    crate::patches::TARGETS.join(", ")
                )));
            }
            let patches = crate::patches::load(std::path::Path::new(dir)).map_err(super::effect_error)?;
            let json =
                serde_json::to_value(&value).map_err(|e| script_error(format!("apply_patches(): {e}")))?;
            let patched = crate::patches::apply(target, json, &patches).map_err(super::effect_error)?;
            serde_json::from_value::<Dynamic>(patched)
                .map_err(|e| script_error(format!("apply_patches(): {e}")))
        });

    FuncRegistration::new("base64_encode")
        .with_comments(["/// `text` in standard base64 (as kubeconfigs embed certificates)."])
        .with_params_info(["text: &str", "String"])
        .register_into_engine(engine, |text: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(text)
        });
    FuncRegistration::new("base64_decode")
        .with_comments([
            "/// The text standard base64 `data` holds; an error if it is not base64 of UTF-8 text.",
        ])
        .with_params_info(["data: &str", "String"])
        .register_into_engine(engine, |data: &str| -> R<String> {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| script_error(format!("base64_decode(): {e}")))?;
            String::from_utf8(bytes).map_err(|_| script_error("base64_decode(): the data is not UTF-8 text"))
        });

    FuncRegistration::new("from_yaml")
        .with_comments(["/// Parses one YAML document into maps, arrays and values."])
        .with_params_info(["text: &str", "Dynamic"])
        .register_into_engine(engine, |text: &str| -> R<Dynamic> {
            serde_saphyr::from_str::<Dynamic>(text).map_err(|e| script_error(format!("from_yaml(): {e}")))
        });

    FuncRegistration::new("from_toml")
        .with_comments([
            "/// Parses a TOML document into maps, arrays and values (tables become maps; a date or",
            "/// time becomes its TOML text).",
        ])
        .with_params_info(["text: &str", "Map"])
        .register_into_engine(engine, |text: &str| from_toml(text));

    FuncRegistration::new("from_json")
        .with_comments(["/// Parses JSON text into maps, arrays and values."])
        .with_params_info(["text: &str", "Dynamic"])
        .register_into_engine(engine, |text: &str| -> R<Dynamic> {
            serde_json::from_str::<Dynamic>(text).map_err(|e| script_error(format!("from_json(): {e}")))
        });
}

/// YAML text of a value, as `to_yaml` writes it.
pub fn to_yaml(value: &Dynamic) -> R<String> {
    let json = serde_json::to_value(value).map_err(|e| script_error(format!("to_yaml(): {e}")))?;
    Ok(crate::yaml::to_string(&json))
}

/// A TOML document as a map, as `from_toml` reads it.
pub fn from_toml(text: &str) -> R<Map> {
    let table: toml::Table = toml::from_str(text).map_err(|e| script_error(format!("from_toml(): {e}")))?;
    Ok(toml_table(table))
}

fn toml_table(table: toml::Table) -> Map {
    table.into_iter().map(|(k, v)| (k.into(), toml_value(v))).collect()
}

fn toml_value(value: toml::Value) -> Dynamic {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => Dynamic::from_array(a.into_iter().map(toml_value).collect()),
        toml::Value::Table(t) => Dynamic::from_map(toml_table(t)),
    }
}

fn to_env(map: &Map, opts: &Map) -> R<String> {
    check_opts(opts, &["quote"], "to_env")?;
    let always = opt::<bool>(opts, "quote", "to_env")?.unwrap_or(false);
    let mut out = String::new();
    for (k, v) in map {
        let valid_key = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(script_error(format!("to_env(): `{k}` is not a valid variable name")));
        }
        let value = if v.is_unit() { String::new() } else { v.to_string() };
        if value.contains('\n') {
            return Err(script_error(format!("to_env(): the value of `{k}` holds a line break")));
        }
        let needs = always || value.contains(|c: char| c.is_whitespace() || "\"'$`\\#;".contains(c));
        if needs {
            let escaped =
                value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$").replace('`', "\\`");
            out.push_str(&format!("{k}=\"{escaped}\"\n"));
        } else {
            out.push_str(&format!("{k}={value}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOML document survives `from_toml` then `to_toml` with its values, types and
    /// quoted dotted keys (containerd's plugin names) intact, empty tables included.
    #[test]
    fn toml_round_trips() {
        let text = r#"
version = 2
oom_score = 0
imports = []

[plugins]
  [plugins."io.containerd.gc.v1.scheduler"]
    pause_threshold = 0.02
    schedule_delay = "0s"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
"#;
        let map = from_toml(text).unwrap();
        assert_eq!(map["version"].as_int().unwrap(), 2);
        let plugins = map["plugins"].read_lock::<Map>().unwrap().clone();
        let gc = plugins["io.containerd.gc.v1.scheduler"].read_lock::<Map>().unwrap().clone();
        assert!((gc["pause_threshold"].as_float().unwrap() - 0.02).abs() < f64::EPSILON);
        assert_eq!(gc["schedule_delay"].clone().into_string().unwrap(), "0s");
        let back = toml::to_string(&Dynamic::from_map(map)).unwrap();
        let again: toml::Table = toml::from_str(&back).unwrap();
        let first: toml::Table = toml::from_str(text).unwrap();
        assert_eq!(first, again, "round trip changed the document:\n{back}");
        assert!(back.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]"), "{back}");
        assert!(from_toml("a = ").is_err());
        assert_eq!(from_toml("d = 1979-05-27").unwrap()["d"].clone().into_string().unwrap(), "1979-05-27");
    }

    #[test]
    fn env_files_quote_when_needed() {
        let mut m = Map::new();
        m.insert("B".into(), "--a=1 --b=2".into());
        m.insert("A".into(), "plain".into());
        m.insert("C".into(), Dynamic::UNIT);
        assert_eq!(to_env(&m, &Map::new()).unwrap(), "A=plain\nB=\"--a=1 --b=2\"\nC=\n");
        let mut o = Map::new();
        o.insert("quote".into(), true.into());
        assert!(to_env(&m, &o).unwrap().starts_with("A=\"plain\"\n"));
        let mut bad = Map::new();
        bad.insert("1X".into(), "v".into());
        assert!(to_env(&bad, &Map::new()).is_err());
    }
}
