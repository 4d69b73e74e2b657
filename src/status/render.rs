//! A status as a table for people, or as a JSON document for tools.

use serde_json::{Value, json};

use super::Status;
use super::probe::{Measured, NodeState};
use super::verdict::Missing;

/// The `schema` of the JSON document; it changes only when a field changes meaning or goes.
pub const SCHEMA: &str = "kscript.status/v1";

/// A Node not Ready, as shown: its Ready condition's reason and message.
pub fn not_ready(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => "NotReady".into(),
        (false, true) => format!("NotReady ({reason})"),
        (true, false) => format!("NotReady ({message})"),
        (false, false) => format!("NotReady ({reason}: {message})"),
    }
}

/// The state cell: the state, and its reason in brackets.
fn state_cell(m: &Measured) -> String {
    if m.reason.is_empty() {
        m.state.text().to_string()
    } else {
        format!("{} ({})", m.state.text(), m.reason)
    }
}

/// The Node's state and detail cells: the word in the state column, its why (an error, the
/// Ready condition's reason and message) in the detail column, so one long message does not
/// widen every row.
fn node_cells(node: &NodeState) -> (String, String) {
    match node {
        NodeState::Rendered => ("n/a (rendered)".into(), String::new()),
        NodeState::Unknown(e) => ("unknown".into(), e.clone()),
        NodeState::NotRegistered => ("not registered".into(), String::new()),
        NodeState::Ready => ("Ready".into(), String::new()),
        NodeState::NotReady { reason, message } => {
            let why = match (reason.is_empty(), message.is_empty()) {
                (_, true) => reason.clone(),
                (true, false) => message.clone(),
                (false, false) => format!("{reason}: {message}"),
            };
            ("NotReady".into(), why)
        }
    }
}

/// The table: a header, one row per component, the Node, then the verdict and what the next
/// stage must still produce.
pub fn text(s: &Status) -> String {
    let where_ = if s.live {
        "on this host".to_string()
    } else {
        format!("rendered in {} (live states are not measured)", s.root.display())
    };
    let mut out = format!("{}: {} {}, {where_}\n\n", s.script, s.spec.role, s.spec.node);
    let mut rows: Vec<[String; 4]> =
        vec![["COMPONENT".into(), "RUNS".into(), "STATE".into(), "DETAIL".into()]];
    for (c, m) in s.spec.components.iter().zip(&s.measures.components) {
        rows.push([c.name.clone(), c.runs.label().into(), state_cell(m), m.detail.clone()]);
    }
    let (state, detail) = node_cells(&s.measures.node);
    rows.push([format!("node {}", s.spec.node), "Node".into(), state, detail]);
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for r in &rows {
        let line = format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let v = &s.verdict;
    let total = v.stages.len();
    let done: Vec<&str> = v.stages[..v.reached].iter().map(|st| st.name.as_str()).collect();
    out.push_str(&format!("\nstage {} of {total} complete", v.reached));
    if !done.is_empty() {
        out.push_str(&format!(" ({})", done.join(", ")));
    }
    out.push('\n');
    if let Some(next) = v.next() {
        out.push_str(&format!("stage {} ({}) must still produce:\n", next.number, next.name));
        let width = next
            .missing
            .iter()
            .filter_map(|m| match m {
                Missing::File { path, .. } => Some(path.chars().count()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for m in &next.missing {
            let line = match m {
                Missing::File { path, role, by } => {
                    let by = by.as_ref().map(|b| format!(" (made by {b})")).unwrap_or_default();
                    format!("  {path:<width$}  {role}{by}")
                }
                Missing::NotRun => format!(
                    "  its steps: the journal shows none of stage {} ran (kscript run {} --only {})",
                    next.number, s.script, next.name
                ),
                Missing::Component { name, state, wants } => format!("  {name}: {state}; must be {wants}"),
                Missing::Node { state } => format!("  node {}: {state}; must be Ready", s.spec.node),
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The JSON document (`SCHEMA`), pretty-printed.
pub fn json(s: &Status) -> String {
    let components: Vec<Value> = s
        .spec
        .components
        .iter()
        .zip(&s.measures.components)
        .map(|(c, m)| {
            json!({
                "name": c.name,
                "runs": c.runs.label(),
                "installed_from_stage": c.installed,
                "running_from_stage": c.running,
                "state": m.state.token(),
                "reason": m.reason,
                "detail": m.detail,
                "restarts": m.restarts,
                "ready": m.replicas.map(|r| r.0),
                "desired": m.replicas.map(|r| r.1),
            })
        })
        .collect();
    let node = match &s.measures.node {
        NodeState::Rendered => json!({"state": "not-measured"}),
        NodeState::Unknown(e) => json!({"state": "unknown", "message": e}),
        NodeState::NotRegistered => json!({"state": "not-registered"}),
        NodeState::Ready => json!({"state": "ready"}),
        NodeState::NotReady { reason, message } => {
            json!({"state": "not-ready", "reason": reason, "message": message})
        }
    };
    let mut node = node;
    node["name"] = json!(s.spec.node);
    node["ready_from_stage"] = json!(s.spec.node_ready);
    let stages: Vec<Value> = s
        .verdict
        .stages
        .iter()
        .map(|st| {
            let missing: Vec<Value> = st
                .missing
                .iter()
                .map(|m| match m {
                    Missing::File { path, role, by } => {
                        json!({"kind": "file", "path": path, "role": role, "by": by})
                    }
                    Missing::NotRun => json!({"kind": "not-run"}),
                    Missing::Component { name, state, wants } => {
                        json!({"kind": "component", "name": name, "state": state, "wants": wants})
                    }
                    Missing::Node { state } => json!({"kind": "node", "state": state}),
                })
                .collect();
            json!({"number": st.number, "name": st.name, "complete": st.complete, "missing": missing})
        })
        .collect();
    let doc = json!({
        "schema": SCHEMA,
        "script": s.script,
        "role": s.spec.role,
        "root": s.root.display().to_string(),
        "live": s.live,
        "node": node,
        "components": components,
        "stages": stages,
        "reached": s.verdict.reached,
        "total": s.verdict.stages.len(),
        "done": s.verdict.done(),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}
