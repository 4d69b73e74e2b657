//! Loads a script, builds its engine, and runs its stages in order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};

use crate::api::{Ctx, SkipSignal, StepState};
use crate::config::{Config, Source};
use crate::engine::{self, Limits, Sources};
use crate::error::Error;
use crate::host::{Host, Mode};
use crate::journal::{JOURNAL_PATH, Outcome};
use crate::kubeadm;
use crate::report::{Reporter, StageRecap};
use crate::root::NodeRoot;
use crate::stages::{Model, Selection, Stage};
use crate::stock;

/// A script's text and where it came from.
#[derive(Debug, Clone)]
pub struct Script {
    /// The name errors use: a path, or `builtin:NAME` for a stock script.
    pub name: String,
    pub text: String,
    /// The folder of a script on disk, searched for `stdlib/` modules and `defaults.yaml`.
    pub dir: Option<PathBuf>,
}

impl Script {
    /// `arg` is a path to a script, or the name of a stock script (`control-plane.rhai`). A
    /// file that exists wins over a stock script of the same name.
    pub fn load(arg: &str) -> Result<Self, Error> {
        let path = Path::new(arg);
        if path.is_file() {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read {arg}"), e))?;
            let dir = path
                .parent()
                .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
            return Ok(Self { name: arg.to_string(), text, dir });
        }
        if let Some(e) = stock::script(arg) {
            return Ok(Self { name: format!("builtin:{}", e.name), text: e.text.to_string(), dir: None });
        }
        let names: Vec<&str> = stock::SCRIPTS.iter().map(|e| e.name).collect();
        Err(Error::Usage {
            message: format!(
                "no script at `{arg}`, and no stock script of that name; stock scripts: {}",
                names.join(", ")
            ),
        })
    }

    /// The defaults document: `stdlib/defaults.yaml` beside a forked script, else the built-in one.
    fn defaults(&self) -> Result<Source, Error> {
        if let Some(dir) = &self.dir {
            let file = dir.join("stdlib/defaults.yaml");
            if file.is_file() {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
                return Ok(Source { name: file.display().to_string(), text });
            }
        }
        let e = stock::stdlib("defaults.yaml").expect("the built-in stdlib has defaults.yaml");
        Ok(Source { name: "builtin:stdlib/defaults.yaml".into(), text: e.text.to_string() })
    }

    /// The configuration: defaults, then each `--config` file, then each `--set`; with the
    /// warnings about kubeadm fields passed over.
    pub fn config(&self, files: &[PathBuf], sets: &[String]) -> Result<(Config, Vec<String>), Error> {
        let mut cfg = Config::from_defaults(&self.defaults()?)?;
        let mut warnings = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("cannot read configuration {}", f.display()), e))?;
            let src = Source { name: f.display().to_string(), text };
            for doc in crate::config::parse_documents(&src)? {
                if kubeadm::is_typed(&doc) {
                    let t = kubeadm::translate(doc, &src)?;
                    warnings.extend(t.warnings);
                    let passed_over = cfg.merge_node(t.overlay, &src, &kubeadm::known_unused)?;
                    warnings
                        .extend(passed_over.into_iter().map(|w| format!("{}: {}: {w}", src.name, t.what)));
                } else {
                    cfg.merge_node(doc, &src, &|_| None)?;
                }
            }
        }
        for s in sets {
            cfg.set(s)?;
        }
        crate::validate::check(&cfg)?;
        Ok((cfg, warnings))
    }
}

/// A script compiled and evaluated: its stages and handlers are declared.
pub struct Loaded {
    pub ctx: Rc<Ctx>,
    pub engine: Engine,
    pub ast: AST,
    pub sources: Sources,
    pub script: Script,
    pub limits: Limits,
}

impl Loaded {
    /// Builds the engine, compiles the script and runs its top level, which declares stages.
    pub fn new(
        script: Script,
        cfg: &Config,
        root: NodeRoot,
        host: Host,
        report: Reporter,
    ) -> Result<Self, Error> {
        let limits = Limits::default();
        let ctx = Rc::new(Ctx::new(root, host, report));
        let sources: Sources = Rc::default();
        sources.borrow_mut().insert(script.name.clone(), script.text.clone());
        let engine = engine::build(&ctx, script.dir.clone(), &sources, limits);
        let mut scope = Scope::new();
        scope.push_constant("cfg", cfg.to_dynamic());
        let mut loaded = Self { ctx, engine, ast: AST::empty(), sources, script, limits };
        let mut ast = loaded
            .engine
            .compile_with_scope(&scope, &loaded.script.text)
            .map_err(|e| loaded.error(&e.into(), None))?;
        ast.set_source(loaded.script.name.as_str());
        loaded.hoist_imports(&ast)?;
        loaded.engine.run_ast_with_scope(&mut scope, &ast).map_err(|e| loaded.error(&e, None))?;
        loaded.ast = ast;
        Ok(loaded)
    }

    /// Makes the script's top-level `import "x" as y;` visible inside step bodies and
    /// functions, which Rhai runs later, outside the top level's scope.
    fn hoist_imports(&mut self, ast: &AST) -> Result<(), Error> {
        let mut modules = Vec::new();
        for stmt in ast.statements() {
            if let rhai::Stmt::Import(x, pos) = stmt {
                let (rhai::Expr::StringConstant(path, _), alias) = (&x.0, &x.1) else {
                    continue;
                };
                if alias.name.is_empty() {
                    continue;
                }
                let module = self
                    .engine
                    .module_resolver()
                    .resolve(&self.engine, Some(&self.script.name), path, *pos)
                    .map_err(|e| self.error(&e, None))?;
                modules.push((alias.name.to_string(), module));
            }
        }
        for (alias, module) in modules {
            self.engine.register_static_module(alias, module);
        }
        Ok(())
    }

    /// A Rhai error as a diagnostic with its sources.
    pub fn error(&self, err: &EvalAltResult, context: Option<&str>) -> Error {
        let sources: HashMap<String, String> = self.sources.borrow().clone();
        crate::error::from_rhai(err, &self.script.name, &sources, &self.limits, context)
    }

    pub fn model(&self) -> Model {
        self.ctx.model.borrow().clone()
    }
}

/// What `kscript run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub script: String,
    pub root: Option<PathBuf>,
    pub config: Vec<PathBuf>,
    pub set: Vec<String>,
    pub selection: Selection,
    pub dry_run: bool,
    pub diff: bool,
    pub verbose: bool,
    pub detailed_exitcode: bool,
    /// A host path for the journal, instead of the one under the node root.
    pub journal: Option<PathBuf>,
}

/// How a run ended, when it ran to its end.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub stages: Vec<StageRecap>,
    pub changed: usize,
}

/// The outcome of one step or handler.
enum StepEnd {
    Done(Outcome, String),
    Failed(Box<EvalAltResult>),
}

/// Runs a script; returns the exit code.
pub fn run(opts: &RunOptions) -> Result<u8, Error> {
    let script = Script::load(&opts.script)?;
    let (cfg, warnings) = script.config(&opts.config, &opts.set)?;
    let mode = match (opts.dry_run, &opts.root) {
        (true, _) => Mode::DryRun,
        (false, Some(_)) => Mode::Render,
        (false, None) => Mode::Apply,
    };
    let root_dir = opts.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    if mode == Mode::Render {
        std::fs::create_dir_all(&root_dir)
            .map_err(|e| Error::io(format!("cannot create the root folder {}", root_dir.display()), e))?;
    }
    let root = NodeRoot::new_lenient(&root_dir)
        .map_err(|e| Error::io(format!("cannot use {} as the node root", root_dir.display()), e))?;
    let report = Reporter::stdout(opts.dry_run || opts.verbose, opts.diff);
    let loaded = Loaded::new(script, &cfg, root, Host::for_mode(mode), report)?;
    for w in &warnings {
        loaded.ctx.report.borrow_mut().warn(w);
    }
    let model = loaded.model();
    opts.selection.validate(&model)?;
    let plan = opts.selection.plan(&model);

    let origin = if loaded.script.dir.is_none() { " (built-in)" } else { "" };
    let target = match mode {
        Mode::Apply => "on this host".to_string(),
        Mode::Render => format!("into {}", loaded.ctx.root.host().display()),
        Mode::DryRun => {
            format!("against {} (dry run: nothing will change)", loaded.ctx.root.host().display())
        }
    };
    let script_name = loaded.script.name.trim_start_matches("builtin:").to_string();
    loaded.ctx.report.borrow_mut().header(&format!("kscript {} {script_name}{origin} {target}", mode.name()));

    let journal_host = match &opts.journal {
        Some(p) => p.clone(),
        None => {
            loaded
                .ctx
                .root
                .resolve(JOURNAL_PATH)
                .map_err(|e| Error::Usage { message: format!("the journal path: {e}") })?
                .host
        }
    };
    let mut run = StageRunner {
        loaded: &loaded,
        journal: (mode != Mode::DryRun).then_some(journal_host),
        changed: 0,
        steps_done: 0,
        kill_after: std::env::var("KSCRIPT_TEST_KILL_AFTER_STEPS").ok().and_then(|v| v.parse().ok()),
    };
    let started = Instant::now();
    let mut recaps = Vec::new();
    let mut failure = None;
    for (si, stage) in model.stages.iter().enumerate() {
        if !plan[si].iter().any(|s| *s) {
            continue;
        }
        let (recap, failed) = run.stage(si, model.stages.len(), stage, &plan[si])?;
        recaps.push(recap);
        if failed.is_some() {
            failure = failed;
            break;
        }
    }
    let changed = run.changed;
    loaded.ctx.report.borrow_mut().recap(&recaps, started.elapsed());
    if let Some((full, err)) = failure {
        return Err(loaded.error(&err, Some(&format!("step {full} failed"))));
    }
    Ok(if opts.detailed_exitcode && changed > 0 { 2 } else { 0 })
}

/// Runs the stages of a loaded script, counting changes and keeping the journal.
struct StageRunner<'a> {
    loaded: &'a Loaded,
    /// Where the journal is appended after each step; `None` in a dry run.
    journal: Option<PathBuf>,
    changed: usize,
    steps_done: usize,
    /// `KSCRIPT_TEST_KILL_AFTER_STEPS`: the crash-safety tests kill the run at a step boundary.
    kill_after: Option<usize>,
}

type Failure = Option<(String, Box<EvalAltResult>)>;

impl StageRunner<'_> {
    /// Runs the selected steps of one stage, then the handlers its changing steps notified.
    /// Returns the stage's recap and, if a step failed, its name and error.
    fn stage(
        &mut self,
        si: usize,
        total: usize,
        stage: &Stage,
        selected: &[bool],
    ) -> Result<(StageRecap, Failure), Error> {
        let start = Instant::now();
        let mut recap = StageRecap { name: stage.name.clone(), ..StageRecap::default() };
        self.loaded.ctx.report.borrow_mut().stage(si + 1, total, &stage.name, &stage.description);
        let mut notified: Vec<String> = Vec::new();
        let mut failure = None;
        for (step, run_it) in stage.steps.iter().zip(selected) {
            let full = format!("{}/{}", stage.name, step.name);
            if !run_it {
                recap.count(Outcome::Skipped);
                self.loaded.ctx.report.borrow_mut().step(Outcome::Skipped, &full, "(not selected)", &[]);
                continue;
            }
            let (failed, state) = self.one(&mut recap, stage, si, &step.name, &step.body)?;
            if state.changed > 0 {
                for n in state.notified {
                    if !notified.contains(&n) {
                        notified.push(n);
                    }
                }
            }
            if failed.is_some() {
                failure = failed;
                break;
            }
        }
        if failure.is_none() {
            for name in &notified {
                let handler = self
                    .loaded
                    .ctx
                    .model
                    .borrow()
                    .handler(name)
                    .cloned()
                    .expect("notify() checks the handler exists");
                let step_name = format!("handlers/{}", slug(name));
                let (failed, _) = self.one(&mut recap, stage, si, &step_name, &handler.body)?;
                if failed.is_some() {
                    failure = failed;
                    break;
                }
            }
        }
        recap.elapsed = start.elapsed();
        Ok((recap, failure))
    }

    /// Runs one step or handler body, prints its line, and appends its journal entries.
    fn one(
        &mut self,
        recap: &mut StageRecap,
        stage: &Stage,
        si: usize,
        step: &str,
        body: &rhai::FnPtr,
    ) -> Result<(Failure, StepState), Error> {
        let full = format!("{}/{step}", stage.name);
        let (end, state) = run_body(self.loaded, stage, si, step, body);
        self.changed += state.changed;
        let failed = finish_step(self.loaded, recap, &full, end, &state);
        if let Some(path) = &self.journal {
            self.loaded
                .ctx
                .journal
                .borrow_mut()
                .flush_to(path)
                .map_err(|e| Error::io(format!("cannot append to the journal {}", path.display()), e))?;
        }
        self.steps_done += 1;
        if self.kill_after == Some(self.steps_done) {
            // Test hook (KSCRIPT_TEST_KILL_AFTER_STEPS): die here as a crash would, no cleanup.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        Ok((failed.map(|e| (full, e)), state))
    }
}

/// A handler name as a step name segment (`restart kubelet` -> `restart-kubelet`).
fn slug(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// Runs one step or handler body with the step context set.
fn run_body(
    loaded: &Loaded,
    stage: &Stage,
    si: usize,
    step: &str,
    body: &rhai::FnPtr,
) -> (StepEnd, StepState) {
    *loaded.ctx.current.borrow_mut() = Some(StepState {
        stage: stage.name.clone(),
        stage_index: si + 1,
        step: step.to_string(),
        ..StepState::default()
    });
    let result = body.call::<Dynamic>(&loaded.engine, &loaded.ast, ());
    let state = loaded.ctx.current.borrow_mut().take().unwrap_or_default();
    let end = match result {
        Ok(_) => {
            let outcome = if state.changed > 0 { Outcome::Changed } else { Outcome::Ok };
            let note = match state.changed_targets.as_slice() {
                [] => String::new(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
            };
            StepEnd::Done(outcome, note)
        }
        Err(err) => match skip_reason(&err) {
            Some(reason) => StepEnd::Done(Outcome::Skipped, reason),
            None => StepEnd::Failed(err),
        },
    };
    (end, state)
}

/// Prints a step's line and counts it; returns its error if it failed.
fn finish_step(
    loaded: &Loaded,
    recap: &mut StageRecap,
    full: &str,
    end: StepEnd,
    state: &StepState,
) -> Option<Box<EvalAltResult>> {
    let mut report = loaded.ctx.report.borrow_mut();
    match end {
        StepEnd::Done(outcome, note) => {
            recap.count(outcome);
            report.step(outcome, full, &note, &state.effects);
            None
        }
        StepEnd::Failed(err) => {
            recap.count(Outcome::Failed);
            report.step(Outcome::Failed, full, state.last_target.as_deref().unwrap_or(""), &state.effects);
            Some(err)
        }
    }
}

/// The reason given to `skip_step()`, if that is what ended the step.
fn skip_reason(err: &EvalAltResult) -> Option<String> {
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
            | EvalAltResult::ErrorInModule(_, inner, _) => e = inner,
            EvalAltResult::ErrorRuntime(v, _) => {
                return v.clone().try_cast::<SkipSignal>().map(|s| s.reason);
            }
            _ => return None,
        }
    }
}
