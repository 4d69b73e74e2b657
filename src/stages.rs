//! The script model: stages made of steps, handlers, and which of them a run selects.
//!
//! Stages and steps are plain data (a name, a description, a body), the way kubeadm's phases
//! are, so listing, running one alone and skipping one come from the same table.

use rhai::FnPtr;

use crate::error::Error;

/// One unit of work inside a stage, named like kubeadm's sub-phases (`certs/apiserver`).
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub description: String,
    pub body: FnPtr,
}

/// A named, ordered group of steps.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub description: String,
    pub steps: Vec<Step>,
    /// Runs only when `--only` or `--from` names it (destructive or on-demand work).
    pub explicit: bool,
}

/// Work that runs once at the end of a stage when a step that changed something notified it.
#[derive(Debug, Clone)]
pub struct Handler {
    pub name: String,
    pub body: FnPtr,
}

/// What a script declared.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub stages: Vec<Stage>,
    pub handlers: Vec<Handler>,
    /// The node's status table, declared with `node_status(...)` (see stdlib/status.rhai):
    /// what `kscript status` measures.
    pub node_status: Option<crate::status::spec::Spec>,
}

/// Checks a stage name (`name`) or step name (`group/name`): lower-case letters, digits and
/// dashes, segments separated by `/` for steps.
pub fn check_name(name: &str, allow_slash: bool) -> Result<(), String> {
    let ok_segment = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
    };
    let valid = if allow_slash { name.split('/').all(ok_segment) } else { ok_segment(name) };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid {} name: use lower-case letters, digits and dashes{}",
            if allow_slash { "step" } else { "stage" },
            if allow_slash { ", with `/` between groups (`certs/apiserver`)" } else { "" }
        ))
    }
}

impl Model {
    pub fn add_stage(&mut self, stage: Stage) -> Result<(), String> {
        check_name(&stage.name, false)?;
        if self.stages.iter().any(|s| s.name == stage.name) {
            return Err(format!("stage `{}` is declared twice", stage.name));
        }
        let mut seen = std::collections::HashSet::new();
        for step in &stage.steps {
            if !seen.insert(step.name.as_str()) {
                return Err(format!("stage `{}` has two steps named `{}`", stage.name, step.name));
            }
        }
        self.stages.push(stage);
        Ok(())
    }

    pub fn add_handler(&mut self, handler: Handler) -> Result<(), String> {
        if self.handlers.iter().any(|h| h.name == handler.name) {
            return Err(format!("handler `{}` is declared twice", handler.name));
        }
        self.handlers.push(handler);
        Ok(())
    }

    pub fn handler(&self, name: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.name == name)
    }
}

/// `--only`, `--skip` and `--from`, by stage or `stage/step` name.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub from: Option<String>,
}

/// Whether `pattern` (`stage`, `stage/step` or `stage/group`) names this step.
fn matches(pattern: &str, stage: &str, step: &str) -> bool {
    match pattern.split_once('/') {
        None => pattern == stage,
        Some((s, p)) => {
            s == stage && (step == p || step.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
        }
    }
}

impl Selection {
    /// Every name given must select at least one step.
    pub fn validate(&self, model: &Model) -> Result<(), Error> {
        let all = self
            .only
            .iter()
            .map(|p| ("--only", p))
            .chain(self.skip.iter().map(|p| ("--skip", p)))
            .chain(self.from.iter().map(|p| ("--from", p)));
        for (flag, pattern) in all {
            let found = model.stages.iter().any(|st| {
                st.steps.iter().any(|sp| matches(pattern, &st.name, &sp.name))
                    || (st.steps.is_empty() && pattern == &st.name)
            });
            if !found {
                let names: Vec<String> = model.stages.iter().map(|s| s.name.clone()).collect();
                return Err(Error::Usage {
                    message: format!(
                        "{flag} {pattern}: no stage or step has that name; stages: {} (see `kscript stages SCRIPT` for steps)",
                        names.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether `--only` or `--from` names this stage (or one of its steps).
    fn names_stage(&self, stage: &str) -> bool {
        self.only.iter().chain(&self.from).any(|p| p.split('/').next() == Some(stage))
    }

    /// For each stage and step, whether this run runs it.
    pub fn plan(&self, model: &Model) -> Vec<Vec<bool>> {
        let mut started = self.from.is_none();
        model
            .stages
            .iter()
            .map(|st| {
                let allowed = !st.explicit || self.names_stage(&st.name);
                st.steps
                    .iter()
                    .map(|sp| {
                        if let Some(f) = &self.from {
                            started |= matches(f, &st.name, &sp.name);
                        }
                        allowed
                            && started
                            && (self.only.is_empty()
                                || self.only.iter().any(|p| matches(p, &st.name, &sp.name)))
                            && !self.skip.iter().any(|p| matches(p, &st.name, &sp.name))
                    })
                    .collect()
            })
            .collect()
    }
}

/// The `schema` of `kscript stages --output json`; it changes only when a field changes
/// meaning or goes (fields may be added).
pub const SCHEMA: &str = "kscript.stages/v1";

/// `kscript stages --output json`: the script's stages, steps and handlers as one JSON
/// document (`schemas/stages.v1.json`), with the configuration's warnings.
pub fn json(model: &Model, script: &str, builtin: bool, warnings: &[String]) -> String {
    use serde_json::json;
    let stages: Vec<serde_json::Value> = model
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let steps: Vec<serde_json::Value> = stage
                .steps
                .iter()
                .map(|step| json!({"name": step.name, "description": step.description}))
                .collect();
            json!({
                "number": i + 1,
                "name": stage.name,
                "description": stage.description,
                "explicit": stage.explicit,
                "steps": steps,
            })
        })
        .collect();
    let handlers: Vec<&str> = model.handlers.iter().map(|h| h.name.as_str()).collect();
    let doc = json!({
        "schema": SCHEMA,
        "script": script,
        "builtin": builtin,
        "stages": stages,
        "handlers": handlers,
        "warnings": warnings,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let f = FnPtr::new("f").unwrap();
        let step = |n: &str| Step { name: n.into(), description: String::new(), body: f.clone() };
        let mut m = Model::default();
        m.add_stage(Stage {
            name: "a".into(),
            description: String::new(),
            steps: vec![step("x"), step("certs/ca"), step("certs/apiserver")],
            explicit: false,
        })
        .unwrap();
        m.add_stage(Stage {
            name: "b".into(),
            description: String::new(),
            steps: vec![step("y")],
            explicit: false,
        })
        .unwrap();
        m
    }

    #[test]
    fn selection_by_stage_step_and_group() {
        let m = model();
        let sel = |only: &[&str], skip: &[&str], from: Option<&str>| Selection {
            only: only.iter().map(std::string::ToString::to_string).collect(),
            skip: skip.iter().map(std::string::ToString::to_string).collect(),
            from: from.map(String::from),
        };
        assert_eq!(sel(&[], &[], None).plan(&m), vec![vec![true, true, true], vec![true]]);
        assert_eq!(sel(&["a/certs"], &[], None).plan(&m), vec![vec![false, true, true], vec![false]]);
        assert_eq!(sel(&["a"], &["a/certs/ca"], None).plan(&m), vec![vec![true, false, true], vec![false]]);
        assert_eq!(
            sel(&[], &[], Some("a/certs/apiserver")).plan(&m),
            vec![vec![false, false, true], vec![true]]
        );
        assert_eq!(sel(&[], &[], Some("b")).plan(&m), vec![vec![false, false, false], vec![true]]);
        assert!(sel(&["a/cert"], &[], None).validate(&m).is_err());
        let mut m2 = m.clone();
        m2.stages[1].explicit = true;
        assert_eq!(sel(&[], &[], None).plan(&m2), vec![vec![true, true, true], vec![false]]);
        assert_eq!(sel(&["b"], &[], None).plan(&m2), vec![vec![false, false, false], vec![true]]);
        assert_eq!(sel(&["b/y"], &[], None).plan(&m2), vec![vec![false, false, false], vec![true]]);
        assert!(sel(&[], &["c"], None).validate(&m).is_err());
        assert!(sel(&["a/certs"], &["b/y"], Some("a")).validate(&m).is_ok());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("certs/apiserver-etcd-client", true).is_ok());
        assert!(check_name("certs/apiserver", false).is_err());
        assert!(check_name("Certs", false).is_err());
        assert!(check_name("a//b", true).is_err());
        let mut m = model();
        let dup = m.stages[0].clone();
        assert!(m.add_stage(dup).is_err());
    }
}
