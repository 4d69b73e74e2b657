//! Which stage a node has reached: each stage judged by its files (the stage map, and what the
//! journal says kscript wrote or expected in it) and, on a live node, by its components.

use std::collections::{BTreeMap, BTreeSet};

use super::probe::{Measures, NodeState, State};
use super::spec::Spec;
use crate::journal::{Entry, Outcome};

/// Something a stage must still produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// A file of the stage map, or one the journal says the stage wrote or expected.
    File { path: String, role: String, by: Option<String> },
    /// A render whose journal shows none of the stage's steps ran.
    NotRun,
    /// A component not in the state the stage requires (`installed` or `running`).
    Component { name: String, state: String, wants: &'static str },
    /// The Node not Ready.
    Node { state: String },
}

/// One stage, judged.
#[derive(Debug, Clone)]
pub struct StageVerdict {
    pub number: usize,
    pub name: String,
    pub complete: bool,
    pub missing: Vec<Missing>,
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub stages: Vec<StageVerdict>,
    /// The highest stage with every stage up to it complete (0: none).
    pub reached: usize,
}

impl Verdict {
    /// Whether the node has reached the script's last stage.
    pub fn done(&self) -> bool {
        self.reached == self.stages.len()
    }

    /// The stage after the one reached.
    pub fn next(&self) -> Option<&StageVerdict> {
        self.stages.get(self.reached)
    }
}

/// What the journal says is on the node now: for each target, its last entry that writes,
/// expects or removes it (a file written, then removed by a later step, is not missing).
fn journal_files(entries: &[Entry]) -> BTreeMap<String, &Entry> {
    let mut last: BTreeMap<String, &Entry> = BTreeMap::new();
    for e in entries {
        let counts = match e.action.as_str() {
            "file" | "dir" | "symlink" => matches!(e.outcome, Outcome::Ok | Outcome::Changed),
            "remove" => matches!(e.outcome, Outcome::Ok | Outcome::Changed),
            "expect" => e.outcome == Outcome::Expected,
            _ => false,
        };
        if counts {
            last.insert(e.target.clone(), e);
        }
    }
    last.retain(|_, e| e.action != "remove");
    last
}

/// Judges each stage of `stages` (the script's, in order). On a live node a stage is complete
/// when its files exist (also those other actors make) and every component is in the state
/// the stage requires; in a render, when the files kscript writes exist and the journal shows
/// the stage ran (nothing runs in a folder: components and other actors' files are not judged).
pub fn judge(
    spec: &Spec,
    stages: &[String],
    entries: &[Entry],
    measures: &Measures,
    live: bool,
    exists: &dyn Fn(&str) -> bool,
) -> Verdict {
    let journal = journal_files(entries);
    // A stage is known by its place and its name: the journal also holds other scripts' runs
    // (reset.rhai's stages are numbered from 1 too).
    let ran: BTreeSet<(usize, &str)> = entries.iter().map(|e| (e.stage_index, e.stage.as_str())).collect();
    let mut out = Vec::new();
    for (i, name) in stages.iter().enumerate() {
        let number = i + 1;
        let mut missing = Vec::new();
        let mut listed = BTreeSet::new();
        for f in spec.files.iter().filter(|f| f.stage == number) {
            listed.insert(f.path.as_str());
            if (live || f.by.is_none()) && !exists(&f.path) {
                missing.push(Missing::File { path: f.path.clone(), role: f.role.clone(), by: f.by.clone() });
            }
        }
        for (path, e) in journal.iter().filter(|(_, e)| e.stage_index == number && e.stage == *name) {
            let expected = e.action == "expect";
            if listed.contains(path.as_str()) || (expected && !live) || exists(path) {
                continue;
            }
            let (role, by) = if expected {
                (format!("expected by step {}/{}", e.stage, e.step), e.detail.clone())
            } else {
                (format!("written by step {}/{}", e.stage, e.step), None)
            };
            missing.push(Missing::File { path: path.clone(), role, by });
        }
        if live {
            for (c, m) in spec.components.iter().zip(&measures.components) {
                let wants = if c.running <= number && !m.state.running() {
                    "running"
                } else if c.installed <= number && !m.state.installed() && m.state != State::Unreadable {
                    "installed"
                } else {
                    continue;
                };
                let mut state = m.state.text().to_string();
                for more in [&m.reason, &m.detail] {
                    if !more.is_empty() {
                        state.push_str(&format!(" ({more})"));
                    }
                }
                missing.push(Missing::Component { name: c.name.clone(), state, wants });
            }
            if spec.node_ready.is_some_and(|n| n <= number) {
                let state = match &measures.node {
                    NodeState::Ready | NodeState::Rendered => None,
                    NodeState::Unknown(e) => Some(format!("unknown ({e})")),
                    NodeState::NotRegistered => Some("not registered".to_string()),
                    NodeState::NotReady { reason, message } => {
                        Some(super::render::not_ready(reason, message))
                    }
                };
                if let Some(state) = state {
                    missing.push(Missing::Node { state });
                }
            }
        } else if !ran.contains(&(number, name.as_str())) {
            missing.push(Missing::NotRun);
        }
        out.push(StageVerdict { number, name: name.clone(), complete: missing.is_empty(), missing });
    }
    let reached = out.iter().take_while(|s| s.complete).count();
    Verdict { stages: out, reached }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stage_index: usize, action: &str, target: &str, outcome: Outcome) -> Entry {
        Entry {
            stage: "s".into(),
            stage_index,
            step: "x".into(),
            action: action.into(),
            target: target.into(),
            outcome,
            detail: None,
            unsynced: None,
            created: false,
        }
    }

    #[test]
    fn the_last_entry_of_a_target_wins() {
        let entries = [
            entry(3, "file", "/etc/kubernetes/bootstrap-kubelet.conf", Outcome::Changed),
            entry(3, "expect", "/etc/kubernetes/kubelet.conf", Outcome::Expected),
            entry(3, "remove", "/etc/kubernetes/bootstrap-kubelet.conf", Outcome::Changed),
            entry(3, "file", "/etc/a", Outcome::Failed),
            entry(3, "run", "apt-get install", Outcome::Changed),
            entry(2, "dir", "/var/lib/kubelet", Outcome::Ok),
        ];
        let view = journal_files(&entries);
        let paths: Vec<&str> = view.keys().map(String::as_str).collect();
        assert_eq!(paths, ["/etc/kubernetes/kubelet.conf", "/var/lib/kubelet"]);
    }
}
