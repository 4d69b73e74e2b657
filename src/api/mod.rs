//! WHAT scripts see: the functions a Rhai script can call, one file per family.
//!
//! Each function is a thin adapter: it checks its arguments, resolves paths through the node
//! root, calls a host trait, and records the effect in the journal. This file is the one list
//! of families, and holds the run context they share.

pub mod cluster;
pub mod commands;
pub mod cri;
pub mod encode;
pub mod etcd;
pub mod facts;
pub mod files;
pub mod log;
pub mod mounts;
pub mod pki;
pub mod stages;
pub mod systemd;
pub mod wait;

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, Position};

use crate::host::Host;
use crate::journal::{Entry, Journal, Outcome};
use crate::report::{EffectLine, Reporter};
use crate::root::NodeRoot;
use crate::stages::Model;

/// Registers every family of script functions into `engine`.
pub fn register_all(engine: &mut Engine, ctx: &Rc<Ctx>) {
    stages::register(engine, ctx);
    files::register(engine, ctx);
    commands::register(engine, ctx);
    encode::register(engine);
    log::register(engine, ctx);
    facts::register(engine, ctx);
    pki::register(engine, ctx);
    systemd::register(engine, ctx);
    cri::register(engine, ctx);
    cluster::register(engine, ctx);
    etcd::register(engine, ctx);
    mounts::register(engine, ctx);
    wait::register(engine, ctx);
    engine.register_type_with_name::<EffectFailure>("EffectFailure");
    rhai::FuncRegistration::new("to_string")
        .with_comments(["/// The message of a failed effect caught with `try { ... } catch (e) { ... }`."])
        .with_params_info(["failure: EffectFailure", "String"])
        .register_into_engine(engine, |f: &mut EffectFailure| f.message.clone());
    rhai::FuncRegistration::new("to_debug")
        .with_comments(["/// The message of a failed effect, for `debug()`."])
        .with_params_info(["failure: EffectFailure", "String"])
        .register_into_engine(engine, |f: &mut EffectFailure| f.message.clone());
    rhai::FuncRegistration::new("get$message")
        .with_comments(["/// `e.message`: what failed, for a failed effect caught with `try`/`catch`."])
        .with_params_info(["failure: EffectFailure", "String"])
        .register_into_engine(engine, |f: &mut EffectFailure| f.message.clone());
}

/// The step being run, and what it has done so far.
#[derive(Debug, Clone, Default)]
pub struct StepState {
    pub stage: String,
    pub stage_index: usize,
    pub step: String,
    pub changed: usize,
    /// Targets changed (or that would change), in order.
    pub changed_targets: Vec<String>,
    /// The target of the last effect tried: named in a failure line.
    pub last_target: Option<String>,
    pub effects: Vec<EffectLine>,
    pub notified: Vec<String>,
}

/// What every script function of a run shares.
pub struct Ctx {
    pub root: NodeRoot,
    pub host: Host,
    pub journal: RefCell<Journal>,
    pub report: RefCell<Reporter>,
    pub model: RefCell<Model>,
    pub current: RefCell<Option<StepState>>,
    /// Whether ownership can be applied (kscript runs as root).
    pub can_chown: bool,
    /// Keys made ahead, and the clock certificates are dated by.
    pub pki: pki::PkiState,
    /// What token discovery verified in this run, by server, token, pins and trust: a later
    /// step asking the same is answered without fetching cluster-info again.
    pub discovered: RefCell<std::collections::HashMap<String, rhai::Map>>,
    /// The node paths earlier runs' journal records kscript writing (or expecting another
    /// actor to write), read on first use.
    pub earlier_made: std::cell::OnceCell<std::collections::HashSet<String>>,
    /// The journal file of this node (a host path) when `--journal` names another than the
    /// one under the node root: where earlier runs' entries are read from.
    pub journal_file: RefCell<Option<std::path::PathBuf>>,
}

impl Ctx {
    pub fn new(root: NodeRoot, host: Host, report: Reporter) -> Self {
        let pki = pki::PkiState::from_env(host.mode);
        Self {
            root,
            host,
            journal: RefCell::default(),
            report: RefCell::new(report),
            model: RefCell::default(),
            current: RefCell::default(),
            can_chown: nix::unistd::geteuid().is_root(),
            pki,
            discovered: RefCell::default(),
            earlier_made: std::cell::OnceCell::new(),
            journal_file: RefCell::default(),
        }
    }

    /// Fails unless a step is running: effects belong to steps, so that `--only` and
    /// `--skip` mean what they say.
    pub fn require_step(&self, function: &str) -> Result<(), Box<EvalAltResult>> {
        if self.current.borrow().is_some() {
            Ok(())
        } else {
            Err(script_error(format!(
                "{function}() was called outside a step: effects belong in a step body, `step(\"name\", \"description\", || {{ ... }})`"
            )))
        }
    }

    /// Runs `work`, showing `label` as progress when it takes long (see `report::wait`). The
    /// report is not borrowed while `work` runs.
    pub fn wait<T>(&self, label: &str, work: impl FnOnce() -> T) -> T {
        let watch = self.report.borrow().watch();
        crate::report::wait(label, watch, work)
    }

    /// [`Ctx::wait`] for work that says why it is still waiting: each new reason it gives its
    /// [`Progress`](crate::report::Progress) is shown once (see `report::wait_with`).
    pub fn wait_with<T>(&self, label: &str, work: impl FnOnce(&crate::report::Progress) -> T) -> T {
        let watch = self.report.borrow().watch();
        crate::report::wait_with(label, watch, work)
    }

    /// Notes the target an effect is about to work on.
    pub fn attempt(&self, target: &str) {
        if let Some(s) = self.current.borrow_mut().as_mut() {
            s.last_target = Some(target.to_string());
        }
    }

    /// Records one effect in the journal and in the step's tally.
    pub fn record(
        &self,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: Option<String>,
        line: Option<EffectLine>,
    ) {
        let mut cur = self.current.borrow_mut();
        let Some(state) = cur.as_mut() else { return };
        if outcome == Outcome::Changed {
            state.changed += 1;
            // Parent folders made on the way are counted, but the step line names what the
            // script asked for.
            if action != "parent" {
                state.changed_targets.push(target.to_string());
            }
        }
        // A write shown as `+` made something where nothing was.
        let created = outcome == Outcome::Changed
            && matches!(action, "file" | "dir" | "parent" | "symlink")
            && line.as_ref().is_some_and(|l| l.sign == '+');
        if let Some(l) = line {
            state.effects.push(l);
        }
        self.journal.borrow_mut().push(Entry {
            stage: state.stage.clone(),
            stage_index: state.stage_index,
            step: state.step.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            detail,
            created,
            unsynced: None,
        });
    }
}

/// An effect that failed: thrown into the script, where `try`/`catch` can handle it; if it is
/// not caught, the step fails and the run exits 1.
#[derive(Debug, Clone)]
pub struct EffectFailure {
    pub message: String,
}

impl fmt::Display for EffectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Thrown by `skip_step()`: the step ends as skipped, with a reason.
#[derive(Debug, Clone)]
pub struct SkipSignal {
    pub reason: String,
}

/// An effect failure, as a script error.
pub fn effect_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(EffectFailure { message: message.into() }),
        Position::NONE,
    ))
}

/// The tag of a [`script_error`]'s message: a script sees a plain string (to match, print or
/// rethrow), and the error report tells the script's misuse of a function, a bug shown with
/// its source frame, from a `throw` of its own, a message for the operator.
pub const MISUSE_TAG: i16 = 0x6b73;

/// A mistake in the script's use of a function (bad argument), as a script error.
pub fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    let mut value = Dynamic::from(message.into());
    value.set_tag(MISUSE_TAG.into());
    Box::new(EvalAltResult::ErrorRuntime(value, Position::NONE))
}

/// Whether a thrown value is a [`script_error`]'s, not a script's own `throw`.
pub fn is_misuse(thrown: &Dynamic) -> bool {
    thrown.is_string() && i64::from(thrown.tag()) == i64::from(MISUSE_TAG)
}

/// Reads an option from an options map, checking its type.
pub fn opt<T: Clone + 'static>(
    opts: &rhai::Map,
    key: &str,
    function: &str,
) -> Result<Option<T>, Box<EvalAltResult>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v.clone().try_cast::<T>().map(Some).ok_or_else(|| {
            script_error(format!(
                "{function}(): option `{key}` must be {}, not {}",
                short_type::<T>(),
                v.type_name()
            ))
        }),
    }
}

/// Refuses keys an options map does not know.
/// A timeout a script gives in seconds, as a `Duration`: positive, and small enough for one.
/// `what` names it in errors (`"api_wait_ready(): the timeout"`, ``"run(): option `timeout`"``).
pub fn timeout(what: &str, secs: f64) -> Result<std::time::Duration, Box<EvalAltResult>> {
    if secs.is_nan() || secs <= 0.0 {
        return Err(script_error(format!("{what} must be a positive number of seconds")));
    }
    // Past about 585 billion years (or infinite) a float does not fit a Duration.
    std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| script_error(format!("{what} is too long: {secs} seconds")))
}

/// Whole seconds as [`timeout`] takes them: past `i32::MAX` (68 years) they are that.
pub fn int_seconds(secs: rhai::INT) -> f64 {
    f64::from(i32::try_from(secs).unwrap_or(if secs < 0 { -1 } else { i32::MAX }))
}

/// A timeout option (a whole number or a decimal of seconds) as [`timeout`] reads it.
pub fn timeout_option(what: &str, value: &Dynamic) -> Result<std::time::Duration, Box<EvalAltResult>> {
    let secs = value
        .as_float()
        .or_else(|_| value.as_int().map(int_seconds))
        .map_err(|t| script_error(format!("{what} must be a positive number of seconds, not {t}")))?;
    timeout(what, secs)
}

pub fn check_opts(opts: &rhai::Map, known: &[&str], function: &str) -> Result<(), Box<EvalAltResult>> {
    for k in opts.keys() {
        if !known.contains(&k.as_str()) {
            return Err(script_error(format!(
                "{function}(): unknown option `{k}`; known options: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn short_type<T: 'static>() -> &'static str {
    let t = std::any::type_name::<T>();
    match t {
        "i64" => "an integer",
        "bool" => "a boolean",
        "f64" => "a number",
        _ if t.ends_with("ImmutableString") || t.ends_with("String") => "a string",
        _ if t.contains("Vec<rhai::types::dynamic::Dynamic") || t.ends_with("Array") => "an array",
        _ if t.contains("BTreeMap") || t.ends_with("Map") => "a map",
        _ => t,
    }
}
