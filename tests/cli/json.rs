//! `--output json` of run, stages and tree: real output checked against the JSON Schemas in
//! schemas/, line by line, and the v1 fields kept.
//!
//! The schemas are checked with Python's `jsonschema` (from `PyPI`, draft 2020-12) through
//! schemas/check.py rather than a Rust crate: it is the reference implementation of the draft,
//! it is on CI's machines already (kubernetes-validate depends on it; .ci/run installs it), and
//! it adds no crate to kscript's build. The tests need `python3 -c 'import jsonschema'`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Run, Sandbox};

/// Validates `text` (JSON lines with `lines`, else one document) against `schemas/NAME`.
#[track_caller]
pub fn check(name: &str, text: &str, lines: bool) {
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut args = vec![format!("{dir}/schemas/check.py"), format!("{dir}/schemas/{name}")];
    if lines {
        args.push("--lines".into());
    }
    let mut child = Command::new("python3")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid against schemas/{name} (python3 with jsonschema from PyPI: .ci/run installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each line of a run's stdout as JSON; every one must parse.
#[track_caller]
fn objects(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", run.stdout))
        })
        .collect()
}

fn of_type<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["type"] == kind).collect()
}

/// The base64 lines of every private key under `dir`.
fn key_bodies(dir: &Path) -> Vec<String> {
    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bodies.extend(key_bodies(&path));
        } else if path.extension().is_some_and(|e| e == "key") {
            let text = std::fs::read_to_string(&path).unwrap();
            bodies.extend(text.lines().filter(|l| !l.starts_with("-----") && l.len() > 16).map(String::from));
        }
    }
    bodies
}

/// The stock control plane rendered with --output json: only JSON on stdout, nothing on stderr
/// (the missing /etc/os-release warning is an object), valid against the schema, the same
/// steps as the text output, the result last; no key material anywhere in it. Rendered again
/// with --detailed-exitcode: nothing changed, exit 0.
#[test]
fn a_render_streams_json_lines_valid_against_the_schema() {
    let sb = Sandbox::new();
    let run = sb.render("control-plane.rhai", &["--output", "json", "--detailed-exitcode"]).code(2);
    assert_eq!(run.stderr, "", "stderr stays empty in JSON mode");
    check("run.v1.json", &run.stdout, true);
    let all = objects(&run);
    assert!(all.iter().all(|o| o["schema"] == "kscript.run/v1"), "{}", run.stdout);

    let start = &all[0];
    assert_eq!(start["type"], "start");
    assert_eq!(start["script"], "control-plane.rhai");
    assert_eq!(start["builtin"], true);
    assert_eq!(start["mode"], "render");
    assert_eq!(start["kubernetes_version"], "v1.37.0");
    assert_eq!(Path::new(start["root"].as_str().unwrap()), std::fs::canonicalize(sb.root()).unwrap());
    let warnings = of_type(&all, "warning");
    assert!(warnings.iter().any(|w| w["text"].as_str().unwrap().contains("/etc/os-release")), "{warnings:?}");

    let stages: Vec<(u64, &str)> = of_type(&all, "stage")
        .iter()
        .map(|s| (s["number"].as_u64().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(stages, [(1, "containerd"), (2, "kubelet"), (3, "init"), (4, "network")]);

    // The same steps, in the same order, with the same outcomes as the text output says.
    let text = Sandbox::new();
    let shown = text.render("control-plane.rhai", &[]).ok();
    let text_steps: Vec<(String, String)> = shown
        .stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let outcome = words.next()?;
            let name = words.next()?;
            (l.starts_with("  ") && name.contains('/')).then(|| (outcome.to_string(), name.to_string()))
        })
        .collect();
    let json_steps: Vec<(String, String)> = of_type(&all, "step")
        .iter()
        .map(|s| (s["outcome"].as_str().unwrap().to_string(), s["name"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(json_steps, text_steps);

    let recap = of_type(&all, "recap");
    assert_eq!(recap.len(), 1);
    assert_eq!(recap[0]["stages"].as_array().unwrap().len(), 4);
    assert_eq!(recap[0]["changed"], true);
    let result = all.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!((result["ok"].as_bool(), result["changed"].as_bool()), (Some(true), Some(true)));
    assert_eq!(result["exit_code"], 2, "--detailed-exitcode: something changed");
    assert!(result["changes"].as_u64().unwrap() > 50, "{result}");
    assert!(result["failed_step"].is_null());

    assert!(!run.stdout.contains("PRIVATE KEY"));
    let bodies = key_bodies(&sb.root().join("etc/kubernetes/pki"));
    assert!(bodies.len() > 50, "the render has keys: {}", bodies.len());
    for line in &bodies {
        assert!(!run.stdout.contains(line.as_str()), "a key's body in the stream: {line}");
    }

    let again = sb.render("control-plane.rhai", &["--output", "json", "--detailed-exitcode"]).ok();
    check("run.v1.json", &again.stdout, true);
    let result = objects(&again).pop().unwrap();
    assert_eq!(
        (result["changed"].as_bool(), result["exit_code"].as_u64()),
        (Some(false), Some(0)),
        "{result}"
    );
}

/// A step that fails: the stream still has the recap, then the error (the failing step, what
/// kind of failure, the message, where, the calls that led there), then the result with the
/// failing step and the exit code. An effect that fails says so as its kind.
#[test]
fn a_failing_step_ends_with_its_error_and_the_result() {
    let sb = Sandbox::new();
    sb.write(
        "fail.rhai",
        r#"fn check_disk() { throw "the disk is full: free some space and run again"; }
stage("one", "first", [
    step("write", "writes a file", || { file("/etc/a.conf", "a"); }),
    step("check", "checks", || { check_disk(); }),
    step("never", "does not run", || { file("/etc/b.conf", "b"); }),
]);
"#,
    );
    let run = sb.render("fail.rhai", &["--output", "json"]).code(1);
    assert_eq!(run.stderr, "");
    check("run.v1.json", &run.stdout, true);
    let all = objects(&run);
    let kinds: Vec<&str> = all.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["start", "stage", "step", "step", "recap", "error", "result"]);
    assert_eq!(all[3]["outcome"], "failed");
    let error = &all[5];
    assert_eq!(error["step"], "one/check");
    assert_eq!(error["kind"], "thrown");
    assert_eq!(error["message"], "step one/check failed: the disk is full: free some space and run again");
    assert_eq!(error["location"], "fail.rhai:1:19");
    assert_eq!(error["frames"], serde_json::json!(["in call to `check_disk`, at fail.rhai:4"]));
    assert_eq!(error["exit_code"], 1);
    let result = &all[6];
    assert_eq!(result["ok"], false);
    assert_eq!(result["failed_step"], "one/check");
    assert_eq!(result["changed"], true, "one/write changed a file before");
    assert_eq!(result["exit_code"], 1);

    sb.write(
        "effect.rhai",
        r#"stage("one", "first", [step("onto-a-folder", "fails", || { file("/etc", "x"); })]);"#,
    );
    std::fs::create_dir_all(sb.root().join("etc")).unwrap();
    let run = sb.render("effect.rhai", &["--output", "json"]).code(1);
    check("run.v1.json", &run.stdout, true);
    let all = objects(&run);
    let error = of_type(&all, "error")[0];
    assert_eq!(error["kind"], "effect");
    assert_eq!(error["step"], "one/onto-a-folder");
    assert!(error["message"].as_str().unwrap().contains("cannot write /etc: it is a folder"), "{error}");
    assert_eq!(all.last().unwrap()["failed_step"], "one/onto-a-folder");
}

/// Failures before any stage runs are objects too, and nothing reaches stderr: no script of
/// that name, a --set of a key that does not exist, a script that does not compile (a bug:
/// where it is).
#[test]
fn failures_before_the_run_are_objects_too() {
    let sb = Sandbox::new();
    sb.write("broken.rhai", "stage(\"one\", \"first\", [\n  step(\"a\", \"b\", || { let x = ; })\n]);\n");
    sb.write("bad.yaml", "networking:\n  podSubnet: 10.244.0.0/16\n  noSuchKey: 1\n");
    for (args, kind, says, code) in [
        (vec!["no-such.rhai"], "usage", "no stock script of that name", 2),
        (vec!["control-plane.rhai", "--set", "no.such.key=1"], "usage", "unknown key", 2),
        (vec!["broken.rhai"], "bug", "", 2),
        (vec!["control-plane.rhai", "--config", "bad.yaml"], "config", "noSuchKey", 2),
        (vec!["control-plane.rhai", "--patches", "no-such-folder"], "usage", "no such folder", 2),
    ] {
        let mut all = vec!["run"];
        all.extend(&args);
        all.extend(["--root", "root", "--output", "json"]);
        let run = sb.kscript(&all).code(code);
        assert_eq!(run.stderr, "", "{args:?}");
        check("run.v1.json", &run.stdout, true);
        let objects = objects(&run);
        let kinds: Vec<&str> = objects.iter().map(|o| o["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["error", "result"], "{args:?}");
        assert_eq!(objects[0]["kind"], kind, "{args:?}: {}", objects[0]);
        assert!(objects[0]["message"].as_str().unwrap().contains(says), "{args:?}: {}", objects[0]);
        assert_eq!(objects[1]["exit_code"], code);
        let location = objects[0]["location"].as_str().unwrap_or_default();
        match kind {
            "bug" => assert!(location.starts_with("broken.rhai:2:"), "{}", objects[0]),
            "config" => assert_eq!(location, "bad.yaml:3:3", "{}", objects[0]),
            _ => {}
        }
    }
    // A command line that does not parse is clap's, on stderr, as before.
    let run = sb.kscript(&["run", "x.rhai", "--output", "yaml"]).code(2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("invalid value 'yaml'"), "{}", run.stderr);
}

/// A dry run with --diff over a render, with a setting changed: the step that would change the
/// controller manager's manifest carries the diff in its effect; without --diff no effect has
/// one.
#[test]
fn a_dry_run_with_diff_carries_the_diff_in_the_effect() {
    let sb = Sandbox::new();
    sb.render("control-plane.rhai", &[]).ok();
    let changed = ["--dry-run", "--set", "networking.podSubnet=10.245.0.0/16", "--output", "json"];
    let run = sb.render("control-plane.rhai", &[&changed[..], &["--diff"]].concat()).ok();
    check("run.v1.json", &run.stdout, true);
    let all = objects(&run);
    assert_eq!(all[0]["mode"], "dry-run");
    let effects: Vec<&Value> = of_type(&all, "step")
        .iter()
        .flat_map(|s| s["effects"].as_array().unwrap())
        .filter(|e| e["change"] == "change")
        .collect();
    assert_eq!(effects.len(), 1, "{effects:?}");
    let effect = effects[0];
    assert_eq!(effect["target"], "/etc/kubernetes/manifests/kube-controller-manager.yaml");
    assert_eq!(effect["sign"], "~");
    let diff = effect["diff"].as_str().unwrap();
    assert!(diff.contains("\n-    - --cluster-cidr=10.244.0.0/16\n"), "{diff}");
    assert!(diff.contains("\n+    - --cluster-cidr=10.245.0.0/16\n"), "{diff}");
    let result = all.last().unwrap();
    assert_eq!((result["changes"].as_u64(), result["exit_code"].as_u64()), (Some(1), Some(0)), "{result}");
    // A dry run shows the objects it would apply, --diff or not.
    assert!(run.stdout.contains(r#""body":"#), "{}", run.stdout);

    let plain = sb.render("control-plane.rhai", &changed).ok();
    check("run.v1.json", &plain.stdout, true);
    assert!(!plain.stdout.contains(r#""diff":"#), "{}", plain.stdout);
}

/// `stages` and `tree` as JSON: valid against their schemas, and the same facts as the text.
#[test]
fn stages_and_tree_as_json_match_their_schemas_and_the_text() {
    let sb = Sandbox::new();
    let json = sb.kscript(&["stages", "control-plane.rhai", "--output", "json"]).ok();
    check("stages.v1.json", &json.stdout, false);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["schema"], "kscript.stages/v1");
    assert_eq!(doc["script"], "control-plane.rhai");
    let text = sb.kscript(&["stages", "control-plane.rhai"]).ok();
    for stage in doc["stages"].as_array().unwrap() {
        let heading = format!("{}. {}", stage["number"], stage["name"].as_str().unwrap());
        assert!(text.stdout.lines().any(|l| l.starts_with(&heading)), "{heading}\n{}", text.stdout);
        for step in stage["steps"].as_array().unwrap() {
            let (name, description) = (step["name"].as_str().unwrap(), step["description"].as_str().unwrap());
            assert!(
                text.stdout.lines().any(|l| l.trim_start().starts_with(name) && l.ends_with(description)),
                "{name}: {description}"
            );
        }
    }
    let steps: usize =
        doc["stages"].as_array().unwrap().iter().map(|s| s["steps"].as_array().unwrap().len()).sum();
    assert!(steps > 30, "{steps}");

    sb.render("control-plane.rhai", &[]).ok();
    let root = sb.root();
    let json = sb.kscript(&["tree", root.to_str().unwrap(), "--output", "json"]).ok();
    check("tree.v1.json", &json.stdout, false);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    let files = doc["files"].as_array().unwrap();
    let text = sb.kscript(&["tree", root.to_str().unwrap()]).ok();
    assert_eq!(files.len(), text.stdout.lines().count());
    let by_path = |p: &str| files.iter().find(|f| f["path"] == p).unwrap_or_else(|| panic!("{p}"));
    assert_eq!(
        by_path("/etc/kubernetes/pki/ca.crt"),
        &serde_json::json!({"path": "/etc/kubernetes/pki/ca.crt", "kind": "file", "mode": "0644", "link": null,
            "stage": {"number": 3, "name": "init"}, "expected_by": null})
    );
    assert_eq!(by_path("/etc/kubernetes/pki/ca.key")["mode"], "0600");
    let expected = by_path("/etc/cni/net.d/10-flannel.conflist");
    assert_eq!(expected["kind"], "expected");
    assert_eq!(expected["expected_by"], "created by the Flannel DaemonSet");
    assert!(
        files.iter().any(|f| f["kind"] == "symlink" && f["link"].is_string()),
        "a symlink with its target"
    );
}

/// The v1 fields of each object, frozen: a field may be added to a schema (and to the output),
/// none of these may go or be renamed while the schema string says v1. A rename in the code
/// alone fails the validation above (every object is closed: `additionalProperties: false`,
/// every field `required`); a rename in code and schema together fails here. Adding a field:
/// add it to the schema; it need not be added here. Removing or renaming one: a new schema
/// version (kscript.run/v2, schemas/run.v2.json), never an edit of this list.
const FROZEN_V1: &[(&str, &str, &[&str])] = &[
    ("run.v1.json", "start", &["type", "schema", "script", "builtin", "mode", "root", "kubernetes_version"]),
    ("run.v1.json", "stage", &["type", "schema", "number", "total", "name", "description"]),
    ("run.v1.json", "step", &["type", "schema", "name", "stage", "handler", "outcome", "note", "effects"]),
    ("run.v1.json", "effect", &["sign", "change", "target", "detail", "diff", "body"]),
    ("run.v1.json", "message", &["type", "schema", "text"]),
    ("run.v1.json", "warning", &["type", "schema", "text"]),
    ("run.v1.json", "wait", &["type", "schema", "label", "state", "reason", "elapsed_s"]),
    ("run.v1.json", "recap", &["type", "schema", "stages", "elapsed_s", "changed"]),
    ("run.v1.json", "recap.stages", &["name", "ok", "changed", "skipped", "failed", "elapsed_s"]),
    (
        "run.v1.json",
        "error",
        &["type", "schema", "step", "kind", "message", "location", "help", "causes", "frames", "exit_code"],
    ),
    ("run.v1.json", "result", &["type", "schema", "ok", "changed", "changes", "failed_step", "exit_code"]),
    ("stages.v1.json", "", &["schema", "script", "builtin", "stages", "handlers", "warnings"]),
    ("stages.v1.json", "stages", &["number", "name", "description", "explicit", "steps"]),
    ("stages.v1.json", "stages.steps", &["name", "description"]),
    ("tree.v1.json", "", &["schema", "root", "files"]),
    ("tree.v1.json", "files", &["path", "kind", "mode", "link", "stage", "expected_by"]),
    ("tree.v1.json", "files.stage", &["number", "name"]),
];

/// The object schema at `at` in `schema`: a `$defs` name, then dotted properties whose arrays'
/// items (or a nullable `oneOf`'s object) are followed.
fn object_at<'a>(schema: &'a Value, at: &str) -> &'a Value {
    let mut parts = at.split('.').filter(|p| !p.is_empty());
    let mut node = match schema.get("$defs") {
        Some(defs) => &defs[parts.next().unwrap()],
        None => schema,
    };
    for part in parts {
        node = &node["properties"][part];
        if node.get("items").is_some() {
            node = &node["items"];
        }
        if let Some(branches) = node.get("oneOf") {
            node = branches.as_array().unwrap().iter().find(|b| b["type"] == "object").unwrap();
        }
    }
    node
}

#[test]
fn the_v1_fields_are_all_still_there() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (file, at, fields) in FROZEN_V1 {
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let object = object_at(&schema, at);
        assert_eq!(object["additionalProperties"], false, "{file} {at}: a closed object");
        let props: BTreeSet<&str> = object["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{file} {at}"))
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> =
            object["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for field in *fields {
            assert!(props.contains(field), "{file} {at}: v1 field `{field}` is gone or renamed");
            let optional = *at == "effect" && matches!(*field, "diff" | "body");
            assert!(
                required.contains(field) || optional,
                "{file} {at}: v1 field `{field}` no longer required"
            );
        }
        for field in &required {
            assert!(props.contains(field), "{file} {at}: `{field}` required but not described");
        }
    }
    // Each schema string is the one the code writes.
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.v1.json")).unwrap()).unwrap();
    assert_eq!(run["$defs"]["result"]["properties"]["schema"]["const"], kscript::report::SCHEMA);
    let stages: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stages.v1.json")).unwrap()).unwrap();
    assert_eq!(stages["properties"]["schema"]["const"], kscript::stages::SCHEMA);
    let tree: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tree.v1.json")).unwrap()).unwrap();
    assert_eq!(tree["properties"]["schema"]["const"], kscript::tree::SCHEMA);
}

/// Each command's --help names its schema and the file that describes it.
#[test]
fn help_names_the_schemas() {
    let sb = Sandbox::new();
    for (command, schema) in [("run", "run.v1.json"), ("stages", "stages.v1.json"), ("tree", "tree.v1.json")]
    {
        let help = sb.kscript(&[command, "--help"]).ok();
        assert!(help.stdout.contains(&format!("schemas/{schema}")), "{command} --help:\n{}", help.stdout);
        assert!(help.stdout.contains("--output <FORMAT>"), "{command} --help:\n{}", help.stdout);
    }
}
