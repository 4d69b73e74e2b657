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
use crate::host::cluster::{RENDERED_OBJECTS, objects_yaml, rendered_secrets};
use crate::host::{Host, Mode};
use crate::journal::{JOURNAL_PATH, Outcome};
use crate::kubeadm;
use crate::report::{self, JsonOut, Reporter, Shown, StageRecap};
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
    pub fn defaults(&self) -> Result<Source, Error> {
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
        crate::script_error::from_rhai(err, &self.script.name, &sources, &self.limits, context)
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
    /// `--output json`: JSON lines on stdout instead of text.
    pub json: bool,
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

/// What a run's JSON stream needs to say at its end, gathered as it runs.
#[derive(Debug, Default)]
struct Ended {
    /// Effects that changed something.
    changed: usize,
    /// The step that failed (`stage/step`).
    failed_step: Option<String>,
}

/// Runs a script; returns the exit code. In JSON mode every failure is reported in the stream
/// (an `error` object, then the `result`), and the exit code returned; only a failure to
/// write is left to the caller.
pub fn run(opts: &RunOptions) -> Result<u8, Error> {
    // With no server to diff against, a dry run shows the API objects themselves.
    let shown =
        Shown { effects: opts.dry_run || opts.verbose, diff: opts.diff, objects: opts.dry_run || opts.diff };
    let mut ended = Ended::default();
    if !opts.json {
        // Without -v, an error thrown on purpose or a failed effect is its message alone.
        return execute(opts, Reporter::stdout(shown), &mut ended)
            .map_err(|e| if opts.verbose { e } else { e.for_operator() });
    }
    let out = JsonOut::stdout();
    let result = execute(opts, Reporter::json(out.clone(), shown), &mut ended);
    let mut end = Reporter::json(out, shown);
    Ok(match result {
        Ok(code) => {
            end.result(ended.changed, None, code, true);
            code
        }
        Err(e) => {
            let failure = report::Failure::of(&e, ended.failed_step);
            end.error(&failure);
            end.result(ended.changed, failure.step.as_deref(), failure.exit_code, false);
            failure.exit_code
        }
    })
}

/// A run that failed before it started (its command line's settings are wrong), in JSON
/// mode: the `error` object and the `result`, as for any other failure; returns the exit code.
pub fn json_failure(e: &Error) -> u8 {
    let shown = Shown { effects: false, diff: false, objects: false };
    let mut end = Reporter::json(JsonOut::stdout(), shown);
    let failure = report::Failure::of(e, None);
    end.error(&failure);
    end.result(0, None, failure.exit_code, false);
    failure.exit_code
}

/// Runs a script, reporting to `report`; returns the exit code.
fn execute(opts: &RunOptions, report: Reporter, ended: &mut Ended) -> Result<u8, Error> {
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
    let probing = mode == Mode::Apply || (mode == Mode::DryRun && root.is_host_root());
    let version = match cfg.get("kubernetesVersion").map(|n| &n.value) {
        Some(crate::config::Value::Str(v)) => Some(v.clone()),
        _ => None,
    };
    let host = Host::for_mode(mode).probing_host(probing).reading_cluster(root.is_host_root());
    let loaded = Loaded::new(script, &cfg, root, host, report)?;
    let model = loaded.model();
    if let Err(e) = opts.selection.validate(&model) {
        for w in &warnings {
            loaded.ctx.report.borrow_mut().warn(w);
        }
        return Err(e);
    }
    let plan = opts.selection.plan(&model);
    {
        let mut report = loaded.ctx.report.borrow_mut();
        report.start(
            loaded.script.name.trim_start_matches("builtin:"),
            loaded.script.dir.is_none(),
            mode,
            loaded.ctx.root.host(),
            version.as_deref(),
        );
        for w in &warnings {
            report.warn(w);
        }
    }

    let journal_host = match &opts.journal {
        Some(p) => {
            // Earlier runs' entries, which tell kscript's files from others', are there too.
            *loaded.ctx.journal_file.borrow_mut() = Some(p.clone());
            p.clone()
        }
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
        boot: crate::journal::boot_id(),
        unsynced: false,
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
        let staged = run.stage(si, model.stages.len(), stage, &plan[si]);
        ended.changed = run.changed;
        let (recap, failed) = staged?;
        recaps.push(recap);
        if failed.is_some() {
            failure = failed;
            break;
        }
    }
    let changed = run.changed;
    if mode == Mode::Render
        && let Err(e) = keep_rendered_objects(&loaded)
    {
        // The run's own outcome stands; the review copy of its objects is what failed.
        loaded.ctx.report.borrow_mut().warn(&format!("the rendered API objects were not kept: {e}"));
    }
    loaded.ctx.report.borrow_mut().recap(&recaps, started.elapsed());
    if let Some((full, err)) = failure {
        let e = loaded.error(&err, Some(&format!("step {full} failed")));
        ended.failed_step = Some(full);
        return Err(e);
    }
    Ok(if opts.detailed_exitcode && changed > 0 { 2 } else { 0 })
}

/// A render keeps the API objects it recorded in [`RENDERED_OBJECTS`] under the node root, for
/// review and snapshots; a render that recorded none leaves an earlier render's file as it is
/// (a script that starts from that file's objects calls `api_use_recorded`; the file's
/// Secrets, which it does not load, are written back unchanged unless it applied them again).
fn keep_rendered_objects(loaded: &Loaded) -> Result<(), Error> {
    let mut objects = loaded.ctx.host.cluster.recorded();
    if objects.is_empty() || !loaded.ctx.host.cluster.recorded_any() {
        return Ok(());
    }
    let path = loaded
        .ctx
        .root
        .resolve(RENDERED_OBJECTS)
        .map_err(|e| Error::Usage { message: format!("the rendered objects' path: {e}") })?
        .host;
    if loaded.ctx.host.cluster.preloaded() {
        let secrets = rendered_secrets(loaded.ctx.root.host())
            .map_err(|e| Error::io(format!("cannot read the Secrets of {}", path.display()), e))?;
        let refs = |o: &serde_json::Value| crate::host::cluster::ObjectRef::of(o).ok();
        for secret in secrets {
            if !objects.iter().any(|o| refs(o).is_some() && refs(o) == refs(&secret)) {
                objects.push(secret);
            }
        }
    }
    let text = objects_yaml(&objects);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let parent = path.parent().expect("a file under the node root");
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| Error::io(format!("cannot write in {}", parent.display()), e))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .and_then(|()| tmp.persist(&path).map(drop).map_err(|e| e.error))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Runs the stages of a loaded script, counting changes and keeping the journal.
struct StageRunner<'a> {
    loaded: &'a Loaded,
    /// Where the journal is appended after each step; `None` in a dry run.
    journal: Option<PathBuf>,
    /// This boot's id, which marks entries appended before their stage's sync; `None` when it
    /// cannot be read (then each step is synced before its entries are appended).
    boot: Option<String>,
    /// Whether entries were appended since the last sync.
    unsynced: bool,
    changed: usize,
    steps_done: usize,
    /// `KSCRIPT_TEST_KILL_AFTER_STEPS`: the crash-safety tests kill the run at a step boundary.
    kill_after: Option<usize>,
}

type Failure = Option<(String, Box<EvalAltResult>)>;

#[cfg(test)]
impl<'a> StageRunner<'a> {
    /// A runner that keeps no journal, for the tests that run stages of a loaded script.
    fn without_journal(loaded: &'a Loaded) -> Self {
        StageRunner {
            loaded,
            journal: None,
            boot: None,
            unsynced: false,
            changed: 0,
            steps_done: 0,
            kill_after: None,
        }
    }
}

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
                self.loaded.ctx.report.borrow_mut().step(
                    Outcome::Skipped,
                    &full,
                    false,
                    "(not selected)",
                    &[],
                );
                continue;
            }
            let (failed, state) = self.one(&mut recap, stage, si, &step.name, false, &step.body)?;
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
                let (failed, _) = self.one(&mut recap, stage, si, &step_name, true, &handler.body)?;
                if failed.is_some() {
                    failure = failed;
                    break;
                }
            }
        }
        self.stage_synced(&stage.name)?;
        recap.elapsed = start.elapsed();
        Ok((recap, failure))
    }

    /// Makes every change made through the file backend since the last sync durable.
    fn sync(&self, what: &str) -> Result<(), Error> {
        self.loaded
            .ctx
            .host
            .files
            .sync()
            .map_err(|e| Error::io(format!("cannot sync the files {what} wrote to disk"), e))
    }

    /// At the end of a stage (also one that failed): its files synced once, then the journal
    /// line that vouches for the entries its steps appended (see `journal`'s durability note).
    fn stage_synced(&mut self, stage: &str) -> Result<(), Error> {
        let (Some(path), Some(boot)) = (&self.journal, &self.boot) else { return Ok(()) };
        if !self.unsynced {
            return Ok(());
        }
        self.sync(&format!("stage {stage}"))?;
        crate::journal::Journal::mark_synced(path, boot)
            .map_err(|e| Error::io(format!("cannot append to the journal {}", path.display()), e))?;
        self.unsynced = false;
        Ok(())
    }

    /// Runs one step or handler body, prints its line, and appends its journal entries.
    fn one(
        &mut self,
        recap: &mut StageRecap,
        stage: &Stage,
        si: usize,
        step: &str,
        handler: bool,
        body: &rhai::FnPtr,
    ) -> Result<(Failure, StepState), Error> {
        let full = format!("{}/{step}", stage.name);
        let (end, state) = run_body(self.loaded, stage, si, step, body);
        self.changed += state.changed;
        let failed = finish_step(self.loaded, recap, &full, handler, end, &state);
        if let Some(path) = &self.journal {
            // Without a boot id to mark them with, a step's entries wait for its sync.
            if self.boot.is_none() {
                self.sync(&full)?;
            }
            let appended = self
                .loaded
                .ctx
                .journal
                .borrow_mut()
                .flush_to(path, self.boot.as_deref())
                .map_err(|e| Error::io(format!("cannot append to the journal {}", path.display()), e))?;
            self.unsynced |= appended && self.boot.is_some();
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
    handler: bool,
    end: StepEnd,
    state: &StepState,
) -> Option<Box<EvalAltResult>> {
    let mut report = loaded.ctx.report.borrow_mut();
    match end {
        StepEnd::Done(outcome, note) => {
            recap.count(outcome);
            report.step(outcome, full, handler, &note, &state.effects);
            None
        }
        StepEnd::Failed(err) => {
            recap.count(Outcome::Failed);
            let target = state.last_target.as_deref().unwrap_or("");
            report.step(Outcome::Failed, full, handler, target, &state.effects);
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

/// No script text makes loading or running a script panic: arbitrary text, token soup and
/// small programs built from the API's own functions with random arguments are compiled and
/// run in a dry run against an empty root, and every error is rendered as the CLI shows it.
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use proptest::strategy::Union;

    use super::*;
    use crate::config::props::cases;

    /// Loads `text`, runs every stage the way `kscript run --dry-run` does (handlers included),
    /// and renders each error, which it returns; only a panic fails.
    fn load_and_run(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let script = Script { name: "props.rhai".into(), text: text.into(), dir: None };
        let (cfg, _) = script.config(&[], &[]).unwrap();
        let root = NodeRoot::new(dir.path()).unwrap();
        let host = Host::for_mode(Mode::DryRun);
        let loaded = match Loaded::new(script, &cfg, root, host, Reporter::silent()) {
            Ok(loaded) => loaded,
            Err(e) => return vec![crate::error::render(&e, false)],
        };
        let model = loaded.model();
        let mut run = StageRunner::without_journal(&loaded);
        let mut errors = Vec::new();
        for (si, stage) in model.stages.iter().enumerate() {
            let all = vec![true; stage.steps.len()];
            let (_, failure) = run.stage(si, model.stages.len(), stage, &all).unwrap();
            if let Some((full, err)) = failure {
                let e = loaded.error(&err, Some(&format!("step {full} failed")));
                errors.push(crate::error::render(&e, false));
            }
        }
        errors
    }

    /// Every function the API registers, with its parameter types, read from the engine the
    /// way `kscript api` reads it; a function added later is driven without a change here.
    fn api() -> Vec<(String, Vec<String>)> {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Rc::new(Ctx::new(
            NodeRoot::new(dir.path()).unwrap(),
            Host::for_mode(Mode::DryRun),
            Reporter::silent(),
        ));
        let engine = engine::build(&ctx, None, &Sources::default(), Limits::default());
        crate::apiref::functions(&engine)
            .into_iter()
            // `warn` writes to the process's stderr even with a silent reporter: the test
            // output would fill with it.
            .filter(|f| f.name != "warn")
            .map(|f| {
                let params = f
                    .signature
                    .split_once('(')
                    .and_then(|(_, rest)| rest.rsplit_once(')'))
                    .map(|(p, _)| p)
                    .unwrap_or_default();
                let types = params
                    .split(", ")
                    .filter(|p| !p.is_empty())
                    .map(|p| p.rsplit(": ").next().unwrap_or(p).to_string())
                    .collect();
                (f.name, types)
            })
            .collect()
    }

    /// A Rhai string literal holding `s`.
    fn lit(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// Node paths: ordinary, escaping, odd, and arbitrary.
    fn path() -> BoxedStrategy<String> {
        prop_oneof![
            2 => prop::sample::select(vec![
                "/",
                "/etc/motd",
                "/etc/kubernetes/pki/ca.key",
                "/etc/kubernetes/pki/",
                "",
                "relative/x",
                "/..",
                "/a/../../b",
                "/etc/./x/../y",
                "//double//slash",
                "/var/lib/kscript/journal.jsonl",
                "/a\0b",
            ])
            .prop_map(String::from),
            3 => "(/[a-z]{1,5}){1,3}",
            1 => "/[a-z./]{0,12}",
            1 => "\\PC{0,8}",
        ]
        .prop_map(|s| lit(&s))
        .boxed()
    }

    /// Literals of every type the API takes or returns, at their edges.
    fn leaf() -> BoxedStrategy<String> {
        prop_oneof![
            path(),
            any::<i64>().prop_map(|i| i.to_string()),
            prop::sample::select(vec![
                "0o644",
                "0o7777",
                "0o10000",
                "-1",
                "0",
                "1.0e300",
                "1.0e20",
                "-0.5",
                "0.001",
                "true",
                "false",
                "()",
                "\"0644\"",
                "\"0o600\"",
                "\"99999\"",
                "\"root\"",
                "\"0:0\"",
                "\"nobody:nogroup\"",
                "\"no-such-user\"",
                "\"1:x\"",
                "\":\"",
                "cfg",
                "cfg.node",
                "cfg.node.kernelModules",
                "cfg.nope",
                "cfg.example.greeting",
                "[\"sh\", \"-c\", \"exit 3\"]",
                "[]",
                "[\"\"]",
                "[1, 2]",
                "#{}",
                "\"a: [1, {b: c}]\"",
                "\"{\\\"k\\\": [1, 2.5, null]}\"",
                "\"[[[[\"",
            ])
            .prop_map(String::from),
        ]
        .boxed()
    }

    /// The options the API reads (and one it does not know), each with values of the type it
    /// wants, at its edges.
    fn option() -> BoxedStrategy<(&'static str, String)> {
        let pick = |key: &'static str, values: &[&'static str]| {
            prop::sample::select(values.to_vec()).prop_map(move |v| (key, v.to_string())).boxed()
        };
        let boolean = ["true", "false", "1"];
        prop_oneof![
            pick("mode", &["0o644", "0o600", "0o7777", "0o10000", "-1", "\"0644\"", "\"bad\"", "1.0e300"]),
            pick(
                "owner",
                &[
                    "\"root\"",
                    "\"0:0\"",
                    "\"nobody:nogroup\"",
                    "\"no-such-user\"",
                    "\"1:x\"",
                    "\":\"",
                    "\"root:\"",
                    "\"4294967296:0\"",
                    "0"
                ]
            ),
            pick("secret", &boolean),
            pick("check", &boolean),
            pick("changes", &boolean),
            pick("quote", &boolean),
            pick("env", &["#{A: \"1\", B: 2}", "#{}", "[]", "#{\"\": ()}"]),
            pick("timeout", &["1", "0.5", "0", "-1", "1.0e300", "1.0e20", "()", "\"x\""]),
            path().prop_map(|p| ("stdin", p)),
            path().prop_map(|p| ("cwd", p)),
            path().prop_map(|p| ("label", p)),
            path().prop_map(|p| ("creates", p)),
            leaf().prop_map(|v| ("bogus", v)),
        ]
        .boxed()
    }

    /// An options map: no key twice (that would not compile), values mostly of the right type.
    fn options(inner: BoxedStrategy<String>) -> BoxedStrategy<String> {
        let entry = prop_oneof![
            4 => option(),
            1 => (option(), inner).prop_map(|((k, _), v)| (k, v)),
        ];
        prop::collection::vec(entry, 0..4)
            .prop_map(|entries| {
                let mut seen = Vec::new();
                let mut text = Vec::new();
                for (k, v) in entries {
                    if !seen.contains(&k) {
                        seen.push(k);
                        text.push(format!("{k}: {v}"));
                    }
                }
                format!("#{{{}}}", text.join(", "))
            })
            .boxed()
    }

    /// The API's functions and their parameter types.
    type Api = Rc<Vec<(String, Vec<String>)>>;

    /// A call of one of the API's functions, its arguments mostly of the types it declares
    /// (built from `inner`), now and then one argument too few or too many.
    fn call(api: &Api, inner: &BoxedStrategy<String>) -> BoxedStrategy<String> {
        let array =
            prop_oneof![prop::collection::vec(inner.clone(), 0..4), prop::collection::vec(path(), 1..3),]
                .prop_map(|items| format!("[{}]", items.join(", ")))
                .boxed();
        let closure = statements(inner.clone()).prop_map(|body| format!("|| {{ {body} }}")).boxed();
        let calls: Vec<BoxedStrategy<String>> = api
            .iter()
            .map(|(name, types)| {
                let args: Vec<BoxedStrategy<String>> = types
                    .iter()
                    .map(|t| {
                        let typed = match t.as_str() {
                            "&str" => path(),
                            "Map" => options(inner.clone()),
                            "Array" => array.clone(),
                            "FnPtr" => closure.clone(),
                            _ => inner.clone(),
                        };
                        prop_oneof![6 => typed, 1 => inner.clone()].boxed()
                    })
                    .collect();
                let name = name.clone();
                (args, 0..20u8, inner.clone())
                    .prop_map(move |(mut args, arity, extra)| {
                        match arity {
                            0 => {
                                args.pop();
                            }
                            1 => args.push(extra),
                            _ => {}
                        }
                        format!("{name}({})", args.join(", "))
                    })
                    .boxed()
            })
            .collect();
        Union::new(calls).boxed()
    }

    /// Expressions: literals, arrays, option maps, and calls whose arguments may be closures,
    /// nested a few deep.
    fn expr(api: &Api) -> BoxedStrategy<String> {
        let api = api.clone();
        leaf()
            .prop_recursive(2, 16, 4, move |inner| {
                let array = prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", ")));
                prop_oneof![
                    1 => array,
                    1 => options(inner.clone()),
                    4 => call(&api, &inner),
                ]
            })
            .boxed()
    }

    /// Statements: each expression alone, bound to a name, or inside `try`, so that a body
    /// goes on after an error now and then.
    fn statements(expr: BoxedStrategy<String>) -> BoxedStrategy<String> {
        prop::collection::vec((expr, 0..3u8), 0..4)
            .prop_map(|statements| {
                statements
                    .iter()
                    .enumerate()
                    .map(|(i, (e, how))| match how {
                        0 => format!("{e};"),
                        1 => format!("let v{i} = {e};"),
                        _ => format!("try {{ {e}; }} catch (err) {{ info(`${{err}}`); }}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .boxed()
    }

    /// A step or handler body: statements, most of them calls of the API.
    fn body(api: &Api) -> BoxedStrategy<String> {
        let expr = expr(api);
        statements(prop_oneof![1 => expr.clone(), 2 => call(api, &expr)].boxed())
    }

    /// A name: mostly `base-N` (valid and unique), now and then one the API refuses.
    fn name(base: &'static str, i: usize, bad: Option<&'static str>) -> String {
        bad.map_or_else(|| format!("{base}-{i}"), String::from)
    }

    fn bad_name() -> impl Strategy<Value = Option<&'static str>> {
        prop_oneof![
            12 => Just(None),
            1 => prop::sample::select(vec!["", "Bad", "a//b", "x/y", "-a", "dup-0"]).prop_map(Some),
        ]
    }

    /// A program shaped like a real script: handlers, stages of steps whose bodies call the
    /// API and notify handlers, and now and then a call at the top level (where effects are
    /// refused).
    fn program() -> impl Strategy<Value = String> {
        let body = body(&Rc::new(api()));
        let handlers = prop::collection::vec((bad_name(), body.clone()), 0..3).prop_map(|hs| {
            hs.into_iter()
                .enumerate()
                .map(|(i, (bad, body))| {
                    let n = name("handler", i, bad);
                    format!("handler({}, || {{ {body} }});", lit(&n))
                })
                .collect::<Vec<_>>()
        });
        let step = (bad_name(), body.clone(), prop::option::of(0..4usize));
        let stage = (bad_name(), prop::collection::vec(step, 0..4));
        let top = prop_oneof![3 => Just(String::new()), 1 => body];
        (handlers, prop::collection::vec(stage, 0..3), top).prop_map(|(handlers, stages, top)| {
            let stages: Vec<String> = stages
                .into_iter()
                .enumerate()
                .map(|(si, (bad, steps))| {
                    let steps: Vec<String> = steps
                        .into_iter()
                        .enumerate()
                        .map(|(i, (bad, body, notify))| {
                            let notify = notify.map_or_else(String::new, |h| {
                                format!("notify({});", lit(&format!("handler-{h}")))
                            });
                            format!(
                                "step({}, \"a step\", || {{ {body} {notify} }})",
                                lit(&name("step", i, bad))
                            )
                        })
                        .collect();
                    format!("stage({}, \"a stage\", [{}]);", lit(&name("stage", si, bad)), steps.join(", "))
                })
                .collect();
            format!("{}\n{}\n{top}\n", handlers.join("\n"), stages.join("\n"))
        })
    }

    /// Rhai tokens in random order: the API's names, keywords (no loops, which would only
    /// run into the operations limit slowly), punctuation and literals.
    fn token_soup() -> impl Strategy<Value = String> {
        let mut vocabulary: Vec<String> = api().into_iter().map(|(name, _)| name).collect();
        vocabulary.extend(
            [
                "let", "const", "fn", "if", "else", "return", "throw", "try", "catch", "import", "as",
                "export", "this", "switch", "in", "private", "global", "cfg", "x", "(", ")", "{", "}", "[",
                "]", "#{", ",", ";", ".", "::", "=", "==", "+", "-", "*", "/", "%", "!", "&&", "||", "|",
                "?.", "??", "=>", "`", "${", "\"", "'", ":", "\n",
            ]
            .map(String::from),
        );
        prop::collection::vec(prop_oneof![3 => prop::sample::select(vocabulary), 1 => leaf()], 0..40)
            .prop_map(|tokens| tokens.join(" "))
    }

    /// A `Write` into a buffer the test reads afterwards (the JSON sink needs `Send`).
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A key generated once for every case, PEM-encoded.
    fn key_pem() -> &'static str {
        static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        KEY.get_or_init(|| crate::pki::generate_key(crate::pki::KeyAlgorithm::EcdsaP256).unwrap().to_pem())
    }

    /// How a script carries key material: in a file (as it is, inside a kubeconfig's
    /// `client-key-data`, or its bare base64 body in a file marked secret), or in a Secret
    /// applied through the API (`data` or `stringData`).
    #[derive(Debug, Clone, Copy)]
    enum Carrier {
        File,
        Kubeconfig,
        SecretFile,
        SecretData,
        SecretStringData,
    }

    /// Runs one stage whose two steps write or apply `key` by `carrier`, wrapped in `before` and
    /// `after`, first as `v1` then changed to `v2` (so that a diff is due); returns the JSON
    /// stream, with diffs and objects shown.
    fn stream(carrier: Carrier, before: &str, after: &str, mode: Mode, diff: bool) -> String {
        use base64::Engine as _;
        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
        let key = key_pem();
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let (content, secret) = match carrier {
            Carrier::File | Carrier::SecretData | Carrier::SecretStringData => (key.to_string(), false),
            Carrier::Kubeconfig => (format!("users:\n- user:\n    client-key-data: {}\n", b64(key)), false),
            Carrier::SecretFile => (body, true),
        };
        let text = |v: &str| lit(&format!("{before}{v}{content}{after}"));
        let write = |v: &str| match carrier {
            Carrier::File | Carrier::Kubeconfig | Carrier::SecretFile => {
                format!("file(\"/etc/kscript-test/k.conf\", {}, #{{ secret: {secret} }});", text(v))
            }
            Carrier::SecretData | Carrier::SecretStringData => {
                // The key whole in one value (base64 of it alone, for `data`), the rest in another.
                let note = format!("{before}{v}{after}");
                let (field, key, note) = match carrier {
                    Carrier::SecretData => ("data", lit(&b64(&content)), lit(&b64(&note))),
                    _ => ("stringData", lit(&content), lit(&note)),
                };
                format!(
                    "api_apply(\"/etc/kubernetes/admin.conf\", #{{ apiVersion: \"v1\", kind: \"Secret\", \
                     metadata: #{{ name: \"k\", namespace: \"kube-system\" }}, {field}: #{{ key: {key}, note: {note} }} }});"
                )
            }
        };
        let script = format!(
            "stage(\"s\", \"keys\", [step(\"one\", \"first\", || {{ {} }}), step(\"two\", \"changed\", || {{ {} }})]);",
            write("v1"),
            write("v2")
        );
        let dir = tempfile::tempdir().unwrap();
        let script = Script { name: "keys.rhai".into(), text: script, dir: None };
        let (cfg, _) = script.config(&[], &[]).unwrap();
        let root = NodeRoot::new(dir.path()).unwrap();
        let out = Shared::default();
        let shown = Shown { effects: true, diff, objects: true };
        let report = Reporter::json(JsonOut::new(out.clone()), shown);
        let loaded = Loaded::new(script, &cfg, root, Host::for_mode(mode), report).unwrap();
        let model = loaded.model();
        let mut run = StageRunner::without_journal(&loaded);
        let (_, failure) = run.stage(0, 1, &model.stages[0], &[true, true]).unwrap();
        if let Some((full, err)) = failure {
            let e = loaded.error(&err, Some(&format!("step {full} failed")));
            panic!("{}", crate::error::render(&e, false));
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    /// Text that surrounds key material in a file or a Secret: any printable text and newlines.
    fn wrapper() -> impl Strategy<Value = String> {
        "[ -~\n]{0,40}"
    }

    proptest! {
        #![proptest_config(cases(24))]

        /// Whatever surrounds it and however it is carried, key material never reaches the JSON
        /// stream: no PEM header, no line of the key's base64 body, no base64 of the PEM text.
        #[test]
        fn no_json_stream_contains_key_material(
            carrier in prop_oneof![
                Just(Carrier::File),
                Just(Carrier::Kubeconfig),
                Just(Carrier::SecretFile),
                Just(Carrier::SecretData),
                Just(Carrier::SecretStringData),
            ],
            before in wrapper(),
            after in wrapper(),
            render in any::<bool>(),
            diff in any::<bool>(),
        ) {
            let mode = if render { Mode::Render } else { Mode::DryRun };
            let out = stream(carrier, &before, &after, mode, diff);
            prop_assert!(out.lines().count() >= 2, "{out}");
            prop_assert!(!out.contains("PRIVATE KEY"), "{out}");
            for line in key_pem().lines().filter(|l| !l.starts_with("-----")) {
                prop_assert!(!out.contains(line), "a line of the key's body: {line}\n{out}");
            }
            use base64::Engine as _;
            let whole = base64::engine::general_purpose::STANDARD.encode(key_pem());
            prop_assert!(!out.contains(&whole[..40]), "the key's PEM as base64\n{out}");
        }
    }

    #[test]
    fn a_timeout_too_long_fails_the_step() {
        // The minimized input of the first panic these properties found.
        let errors = load_and_run(
            r#"stage("stage-0", "a stage", [step("step-0", "a step", || { run(["/"], #{timeout: 1.0e300}); })]);"#,
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("option `timeout` is too long"), "{}", errors[0]);
    }

    proptest! {
        #![proptest_config(cases(64))]

        #[test]
        fn arbitrary_text_is_run_or_refused(text in any::<String>()) {
            let _ = load_and_run(&text);
        }

        #[test]
        fn token_soup_is_run_or_refused(text in token_soup()) {
            let _ = load_and_run(&text);
        }

        #[test]
        fn generated_programs_are_run_or_refused(text in program()) {
            let _ = load_and_run(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;

    use super::*;
    use crate::host::{FileState, Files, Owner, RealFiles};

    /// The real file system, with each change and sync noted in order, together with how many
    /// journal lines were on disk at that moment.
    struct Observed {
        real: RealFiles,
        journal: PathBuf,
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Observed {
        fn note(&self, what: &str) {
            let lines = std::fs::read_to_string(&self.journal).map_or(0, |t| t.lines().count());
            self.log.borrow_mut().push(format!("{what} @{lines}"));
        }
    }

    impl Files for Observed {
        fn state(&self, path: &Path) -> io::Result<Option<FileState>> {
            self.real.state(path)
        }
        fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
            self.real.read(path)
        }
        fn write(&self, path: &Path, content: &[u8], mode: u32, owner: Option<Owner>) -> io::Result<()> {
            self.real.write(path, content, mode, owner)?;
            self.note(&format!("write {}", path.file_name().unwrap().to_string_lossy()));
            Ok(())
        }
        fn mkdir(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
            self.real.mkdir(path, mode, owner)?;
            self.note(&format!("mkdir {}", path.file_name().unwrap().to_string_lossy()));
            Ok(())
        }
        fn set_attrs(&self, path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<()> {
            self.real.set_attrs(path, mode, owner)?;
            self.note(&format!("attrs {}", path.file_name().unwrap().to_string_lossy()));
            Ok(())
        }
        fn symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
            self.real.symlink(target, path)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            self.real.remove(path)
        }
        fn copy_tree(&self, from: &Path, to: &Path) -> io::Result<crate::host::Copied> {
            self.real.copy_tree(from, to)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.real.rename(from, to)
        }
        fn digest(&self, path: &Path) -> io::Result<Option<[u8; 32]>> {
            self.real.digest(path)
        }
        fn list(&self, path: &Path) -> io::Result<Option<Vec<String>>> {
            self.real.list(path)
        }
        fn sync(&self) -> io::Result<()> {
            self.real.sync()?;
            self.note("sync");
            Ok(())
        }
    }

    /// Runs a stage of three steps (two files; nothing to change; one file and one mode) with
    /// the file backend observed, as in boot `boot`: what the backend did, each with the number
    /// of journal lines on disk at that moment, and the journal's lines.
    fn observed_stage(boot: Option<&str>) -> (Vec<String>, Vec<crate::journal::Entry>, String) {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let log = Rc::new(RefCell::new(Vec::new()));
        let text = r#"
stage("s", "writes", [
    step("a", "two files", || { file("/etc/a.conf", "a"); file("/etc/b.conf", "b"); }),
    step("same", "nothing to change", || { file("/etc/a.conf", "a"); }),
    step("c", "one more, one mode", || { file("/etc/c.conf", "c"); file("/etc/a.conf", "a", #{ mode: 0o600 }); }),
]);
"#;
        let script = Script { name: "sync.rhai".into(), text: text.into(), dir: None };
        let (cfg, _) = script.config(&[], &[]).unwrap();
        let mut host = Host::for_mode(Mode::Render);
        host.files =
            Box::new(Observed { real: RealFiles::new(), journal: journal.clone(), log: log.clone() });
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let root = NodeRoot::new(&dir.path().join("root")).unwrap();
        let loaded = Loaded::new(script, &cfg, root, host, Reporter::silent()).unwrap();
        let model = loaded.model();
        let mut run = StageRunner {
            loaded: &loaded,
            journal: Some(journal.clone()),
            boot: boot.map(String::from),
            unsynced: false,
            changed: 0,
            steps_done: 0,
            kill_after: None,
        };
        let (_, failure) = run.stage(0, 1, &model.stages[0], &[true, true, true]).unwrap();
        assert!(failure.is_none());
        let entries = crate::journal::read(&journal).unwrap();
        let text = std::fs::read_to_string(&journal).unwrap();
        let log = log.borrow().clone();
        (log, entries, text)
    }

    /// With a boot id, each step's entries are appended when it ends, marked unsynced, and the
    /// stage's changes are synced once at its end, before the line that vouches for them.
    #[test]
    fn a_stage_is_synced_once_before_the_line_that_vouches_for_its_entries() {
        let (log, entries, text) = observed_stage(Some("boot-test"));
        let lines = |step: &str| entries.iter().filter(|e| e.step == step).count();
        let (la, ls, lc) = (lines("a"), lines("same"), lines("c"));
        assert!(la > 0 && ls > 0 && lc > 0, "{entries:?}");
        assert_eq!(
            log,
            [
                "mkdir etc @0".to_string(),
                "write a.conf @0".into(),
                "write b.conf @0".into(),
                format!("write c.conf @{}", la + ls),
                format!("attrs a.conf @{}", la + ls),
                format!("sync @{}", la + ls + lc),
            ]
        );
        let last: Vec<&str> = text.lines().collect();
        assert_eq!(last.len(), la + ls + lc + 1, "{text}");
        assert_eq!(last[last.len() - 1], r#"{"synced":"boot-test"}"#);
        assert!(last[..last.len() - 1].iter().all(|l| l.contains(r#""unsynced":"boot-test""#)), "{text}");
    }

    /// Without a boot id to mark entries with, each step's changes are synced before its
    /// entries are appended.
    #[test]
    fn without_a_boot_id_each_step_is_synced_before_its_journal_entries() {
        let (log, entries, text) = observed_stage(None);
        let lines = |step: &str| entries.iter().filter(|e| e.step == step).count();
        let (la, ls) = (lines("a"), lines("same"));
        assert_eq!(
            log,
            [
                "mkdir etc @0".to_string(),
                "write a.conf @0".into(),
                "write b.conf @0".into(),
                "sync @0".into(),
                format!("sync @{la}"),
                format!("write c.conf @{}", la + ls),
                format!("attrs a.conf @{}", la + ls),
                format!("sync @{}", la + ls),
            ]
        );
        assert!(entries.len() > la + ls, "step c is journaled after its sync");
        assert!(!text.contains("synced"), "{text}");
    }
}
