//! `kscript check`: finds mistakes in a script or a fork without running it.
//!
//! Every script and module is compiled (nothing runs, no effect happens) and its syntax tree
//! is read for what Rhai itself reports only once a node runs into it: calls to functions that
//! do not exist or with a number of arguments no overload takes, calls into a module that has
//! no such function, imports that find no module, stage and step names declared twice, and
//! `cfg.` keys the defaults do not have (unless the file tests for the key first). Then each
//! script whose files show none of these has its top level evaluated as `kscript stages` does
//! (a dry run; no step runs), for what only the declared model shows (step names made from a
//! table declared twice). `--only`/`--skip` names are checked against that model.
//!
//! For `kscript test` suites: [`model`] builds a script's model with a case's configuration,
//! [`selection_names`] lists what `--only`/`--skip` may name, [`unmatched_selection`] says why
//! a name selects nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use rhai::{AST, ASTNode, Engine, Expr, FnAccess, OptimizationLevel, Position, Scope, Stmt};

use crate::api::Ctx;
use crate::config::{self, Node, Value};
use crate::error::Error;
use crate::host::{Host, Mode};
use crate::report::Reporter;
use crate::root::NodeRoot;
use crate::runner::{Loaded, Script};
use crate::stages::Model;

/// One mistake, at a place in a file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct Finding {
    pub message: String,
    #[source_code]
    pub src: Option<NamedSource<String>>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    /// The file's source name (a path, or `builtin:stdlib/NAME.rhai`); empty for the command line.
    #[diagnostic(skip)]
    pub file: String,
    #[diagnostic(skip)]
    pub line: usize,
    #[diagnostic(skip)]
    pub column: usize,
}

/// What `kscript check` was asked to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A script (a path or a stock script's name) or a fork's folder; default: `.`.
    pub target: Option<String>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    /// Configuration files and settings the scripts' top level is evaluated with.
    pub config: Vec<PathBuf>,
    pub set: Vec<String>,
}

/// Checks, prints each finding then a count; returns the exit code (0 clean, 1 findings).
pub fn run(opts: &Options, color: bool, out: &mut dyn Write) -> Result<u8, Error> {
    let report = check(opts)?;
    for f in &report.findings {
        let _ = writeln!(out, "{}", crate::error::render(f, color));
    }
    let files = report.files;
    let _ = match report.findings.len() {
        0 => writeln!(out, "kscript check: {files} file(s) checked, no problems found"),
        n => writeln!(out, "kscript check: {n} problem(s) found in {files} file(s) checked"),
    };
    Ok(u8::from(!report.findings.is_empty()))
}

/// What a check found.
#[derive(Debug)]
pub struct Report {
    /// Sorted by file, line and column.
    pub findings: Vec<Finding>,
    /// How many scripts, modules and defaults files were read.
    pub files: usize,
}

/// Checks a script or a fork's folder. A path that is neither a file, a folder nor a stock
/// script's name is a usage error, as are `--only`/`--skip` with a folder.
pub fn check(opts: &Options) -> Result<Report, Error> {
    let target = opts.target.clone().unwrap_or_else(|| ".".to_string());
    let path = Path::new(&target);
    let mut checker;
    let mut script = None;
    if path.is_dir() {
        if !opts.only.is_empty() || !opts.skip.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "--only/--skip name the stages of one script: give a script (`kscript check {}/SCRIPT.rhai --only NAME`)",
                    target.trim_end_matches('/')
                ),
            });
        }
        let scripts = rhai_files(path)?;
        let modules = rhai_files(&path.join("stdlib"))?;
        if scripts.is_empty() && modules.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "{target} holds no scripts (*.rhai) and no stdlib/*.rhai modules: give a script, or a folder made by `kscript eject`"
                ),
            });
        }
        checker = Checker::new(Some(path.to_path_buf()))?;
        checker.config = (opts.config.clone(), opts.set.clone());
        checker.defaults(&Script {
            name: target.clone(),
            text: String::new(),
            dir: Some(path.to_path_buf()),
        })?;
        for file in scripts {
            let text = read(&file)?;
            checker.queue.push((file.display().to_string(), text, true));
        }
        for file in modules {
            let text = read(&file)?;
            checker.queue.push((file.display().to_string(), text, false));
        }
        if path.join(crate::suite::SUITE_FILE).is_file() {
            checker.files += 1;
            checker.findings.extend(suite_findings(path));
        }
    } else {
        let s = Script::load(&target)?;
        checker = Checker::new(s.dir.clone())?;
        checker.config = (opts.config.clone(), opts.set.clone());
        checker.defaults(&s)?;
        checker.queue.push((s.name.clone(), s.text.clone(), true));
        script = Some(s);
    }
    checker.compile_all();
    checker.check_all();
    checker.evaluate_scripts();
    if let Some(s) = script.filter(|_| !opts.only.is_empty() || !opts.skip.is_empty()) {
        checker.selection(s, opts);
    }
    let mut findings = checker.findings;
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(Report { findings, files: checker.files })
}

/// Every name `--only` and `--skip` accept for this model: each stage, each `stage/step`, and
/// each `stage/group` of steps named `group/...` (see [`crate::stages::Selection`]).
pub fn selection_names(model: &Model) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for stage in &model.stages {
        names.insert(stage.name.clone());
        for step in &stage.steps {
            let mut prefix = stage.name.clone();
            for part in step.name.split('/') {
                prefix = format!("{prefix}/{part}");
                names.insert(prefix.clone());
            }
        }
    }
    names
}

/// Why `name` (given to `flag`, such as `--only`) selects nothing, with the closest name that
/// would; `None` when it selects something.
pub fn unmatched_selection(names: &BTreeSet<String>, flag: &str, name: &str) -> Option<(String, String)> {
    if names.contains(name) {
        return None;
    }
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    let help = match config::suggestion(name, &known) {
        Some(s) => format!("did you mean `{s}`? (`kscript stages SCRIPT` lists the stages and steps)"),
        None => "`kscript stages SCRIPT` lists the stages and steps".to_string(),
    };
    Some((format!("{flag} {name}: no stage or step has that name"), help))
}

/// The stage model of a script, as `kscript stages` builds it: its top level evaluated against
/// a dry-run host, no step run.
pub fn model(script: Script, files: &[PathBuf], sets: &[String]) -> Result<Model, Error> {
    let (cfg, _) = script.config(files, sets)?;
    let root = NodeRoot::new(Path::new("/")).map_err(|e| Error::io("cannot open /", e))?;
    let loaded = Loaded::new(script, &cfg, root, Host::for_mode(Mode::DryRun), Reporter::silent())?;
    Ok(loaded.model())
}

fn read(file: &Path) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))
}

/// The `*.rhai` files of a folder (none if it does not exist), sorted.
fn rhai_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "rhai") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Rhai's language functions, which no package lists: any number of arguments is let through.
const KEYWORDS: &[&str] =
    &["Fn", "call", "curry", "is_def_fn", "is_def_var", "is_shared", "eval", "print", "debug", "type_of"];

/// A compiled script or module.
struct Unit {
    name: String,
    text: String,
    ast: AST,
    /// Import alias -> the module's source name (`None`: not found, reported).
    imports: HashMap<String, Option<String>>,
    /// A script (with `cfg` in scope), not a module.
    is_script: bool,
}

struct Checker {
    engine: Engine,
    /// The configuration files and settings of `--config`/`--set`, for the evaluation pass.
    config: (Vec<PathBuf>, Vec<String>),
    fork_dir: Option<PathBuf>,
    /// Native functions the engine knows (kscript's and Rhai's packages): name -> arities.
    natives: HashMap<String, BTreeSet<usize>>,
    /// The defaults (the schema of `cfg`) and their source name.
    defaults: Option<(Node, String)>,
    /// To compile: (source name, text, is a script).
    queue: Vec<(String, String, bool)>,
    units: Vec<Unit>,
    /// Source names seen (compiled or failed), so each is read once.
    seen: HashSet<String>,
    /// Modules that did not compile: calls into them are not checked.
    broken: HashSet<String>,
    /// The stage models of the scripts evaluated, by source name.
    models: HashMap<String, Model>,
    findings: Vec<Finding>,
    files: usize,
}

impl Checker {
    fn new(fork_dir: Option<PathBuf>) -> Result<Self, Error> {
        let root = NodeRoot::new(Path::new("/")).map_err(|e| Error::io("cannot open /", e))?;
        let ctx = Rc::new(Ctx::new(root, Host::for_mode(Mode::DryRun), Reporter::silent()));
        let mut engine =
            crate::engine::build(&ctx, fork_dir.clone(), &Rc::default(), crate::engine::Limits::default());
        // The tree as written: no constant folded away, `cfg` not inlined.
        engine.set_optimization_level(OptimizationLevel::None);
        let mut natives: HashMap<String, BTreeSet<usize>> = HashMap::new();
        let json = engine.gen_fn_metadata_to_json(true).unwrap_or_default();
        let meta: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        for f in meta["functions"].as_array().into_iter().flatten() {
            let (Some(name), Some(n)) = (f["name"].as_str(), f["numParams"].as_u64()) else { continue };
            natives.entry(name.to_string()).or_default().insert(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Ok(Self {
            engine,
            config: (Vec::new(), Vec::new()),
            fork_dir,
            natives,
            defaults: None,
            queue: Vec::new(),
            units: Vec::new(),
            seen: HashSet::new(),
            broken: HashSet::new(),
            models: HashMap::new(),
            findings: Vec::new(),
            files: 0,
        })
    }

    /// Reads the defaults the scripts' `cfg` is made from; a defaults file that does not parse
    /// is a finding.
    fn defaults(&mut self, script: &Script) -> Result<(), Error> {
        let src = script.defaults()?;
        self.files += 1;
        match config::Config::from_defaults(&src) {
            Ok(_) => {
                let node = config::parse(&src)?;
                self.defaults = Some((node, src.name));
            }
            Err(Error::Config(e)) => {
                let (line, column) = line_col(&src.text, e.span.offset());
                self.findings.push(Finding {
                    message: e.message.clone(),
                    src: Some(NamedSource::new(&src.name, src.text.clone())),
                    span: Some(e.span),
                    label: format!("{}:{line}:{column}", src.name),
                    help: e.help.clone(),
                    file: src.name,
                    line,
                    column,
                });
            }
            Err(other) => return Err(other),
        }
        Ok(())
    }

    /// A finding at `pos` in `file` (whose text is `text`).
    #[allow(clippy::needless_pass_by_value)] // callers build the message for it
    fn at(file: &str, text: &str, pos: Position, message: String, help: Option<String>) -> Finding {
        let line = pos.line().unwrap_or(0);
        let column = pos.position().unwrap_or(1);
        Finding {
            message: format!("{file}:{line}:{column}: {message}"),
            src: Some(NamedSource::new(file, text.to_string())),
            span: span_at(text, pos),
            label: "here".to_string(),
            help,
            file: file.to_string(),
            line,
            column,
        }
    }

    /// Compiles everything queued, and every module they import (found the way `run` finds it).
    fn compile_all(&mut self) {
        while let Some((name, text, is_script)) = self.queue.pop() {
            if !self.seen.insert(name.clone()) {
                continue;
            }
            self.files += 1;
            let mut scope = Scope::new();
            if is_script {
                scope.push_constant("cfg", rhai::Map::new());
            }
            let ast = match self.engine.compile_with_scope(&scope, &text) {
                Ok(ast) => ast,
                Err(e) => {
                    let help = match &*e.0 {
                        rhai::ParseErrorType::ModuleUndefined(m) => {
                            Some(format!("add `import \"{m}\" as {m};` at the top of this file"))
                        }
                        rhai::ParseErrorType::VariableUndefined(_) if !is_script => Some(
                            "a module sees no `cfg` of its own: its functions take `cfg` as a parameter"
                                .into(),
                        ),
                        _ => None,
                    };
                    self.findings.push(Self::at(&name, &text, e.1, e.0.to_string(), help));
                    self.broken.insert(name);
                    continue;
                }
            };
            let mut imports = HashMap::new();
            ast.walk(&mut |path: &[ASTNode]| {
                if let Some(ASTNode::Stmt(Stmt::Import(x, _))) = path.last() {
                    let (Expr::StringConstant(module, pos), alias) = (&x.0, &x.1) else { return true };
                    if let Some((found, module_text)) =
                        crate::engine::find_module(self.fork_dir.as_deref(), module)
                    {
                        imports.insert(alias.name.to_string(), Some(found.clone()));
                        self.queue.push((found, module_text, false));
                        return true;
                    }
                    let looked = match &self.fork_dir {
                        Some(d) if !module.contains('/') => format!(
                            "looked for {} and the built-in stdlib/{module}.rhai (`kscript scripts`)",
                            d.join("stdlib").join(format!("{module}.rhai")).display()
                        ),
                        _ => format!("looked for the built-in stdlib/{module}.rhai"),
                    };
                    self.findings.push(Self::at(
                        &name,
                        &text,
                        *pos,
                        format!("module `{module}` not found"),
                        Some(looked),
                    ));
                    imports.insert(alias.name.to_string(), None);
                }
                true
            });
            self.units.push(Unit { name, text, ast, imports, is_script });
        }
    }

    fn check_all(&mut self) {
        // Each module's public functions: name -> arities; and its private ones.
        let mut exports: HashMap<String, Exports> = HashMap::new();
        for u in &self.units {
            let mut e = Exports::default();
            for f in u.ast.iter_fn_def() {
                let set = if f.access == FnAccess::Private { &mut e.private } else { &mut e.public };
                set.entry(f.name.to_string()).or_default().insert(f.params.len());
            }
            exports.insert(u.name.clone(), e);
        }
        let mut findings = Vec::new();
        for u in &self.units {
            let mut file = FileCheck {
                unit: u,
                natives: &self.natives,
                exports: &exports,
                broken: &self.broken,
                defaults: self.defaults.as_ref(),
                findings: &mut findings,
            };
            file.run();
        }
        self.findings.extend(findings);
    }

    /// The source names of a file and of every module it imports, directly or not.
    fn reachable(&self, name: &str) -> HashSet<String> {
        let mut seen = HashSet::from([name.to_string()]);
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            let Some(u) = self.units.iter().find(|u| u.name == n) else { continue };
            for m in u.imports.values().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    }

    /// Each script whose files gave no finding: its top level evaluated as `kscript stages`
    /// evaluates it (against a dry-run host; no step runs), which finds what only the declared
    /// model shows: step names made from tables declared twice, an error at the top level.
    fn evaluate_scripts(&mut self) {
        if self.defaults.is_none() {
            return;
        }
        let scripts: Vec<(String, String)> =
            self.units.iter().filter(|u| u.is_script).map(|u| (u.name.clone(), u.text.clone())).collect();
        for (name, text) in scripts {
            let reach = self.reachable(&name);
            if self.findings.iter().any(|f| reach.contains(&f.file))
                || reach.iter().any(|r| self.broken.contains(r))
            {
                continue;
            }
            let script = Script { name: name.clone(), text, dir: self.fork_dir.clone() };
            match model(script, &self.config.0, &self.config.1) {
                Ok(m) => {
                    self.models.insert(name, m);
                }
                Err(e) => self.findings.push(evaluation_finding(&name, &e)),
            }
        }
    }

    /// `--only`/`--skip` names that select nothing in the script's stage model.
    fn selection(&mut self, script: Script, opts: &Options) {
        let name = script.name.clone();
        let built = match self.models.remove(&name) {
            Some(m) => Ok(m),
            None => model(script, &self.config.0, &self.config.1),
        };
        let model = match built {
            Ok(m) => m,
            Err(e) => {
                self.findings.push(Finding {
                    message: format!("cannot list the stages of {name} to check --only/--skip: {e}"),
                    src: None,
                    span: None,
                    label: String::new(),
                    help: Some("`kscript stages SCRIPT` shows the error with its place".into()),
                    file: String::new(),
                    line: 0,
                    column: 0,
                });
                return;
            }
        };
        let names = selection_names(&model);
        let given = opts.only.iter().map(|n| ("--only", n)).chain(opts.skip.iter().map(|n| ("--skip", n)));
        for (flag, n) in given {
            if let Some((message, help)) = unmatched_selection(&names, flag, n) {
                self.findings.push(Finding {
                    message: format!("command line: {message} in {name}"),
                    src: None,
                    span: None,
                    label: String::new(),
                    help: Some(help),
                    file: String::new(),
                    line: 0,
                    column: 0,
                });
            }
        }
    }
}

#[derive(Default)]
struct Exports {
    public: HashMap<String, BTreeSet<usize>>,
    private: HashMap<String, BTreeSet<usize>>,
}

/// The checks of one compiled file.
struct FileCheck<'a> {
    unit: &'a Unit,
    natives: &'a HashMap<String, BTreeSet<usize>>,
    exports: &'a HashMap<String, Exports>,
    broken: &'a HashSet<String>,
    defaults: Option<&'a (Node, String)>,
    findings: &'a mut Vec<Finding>,
}

/// How a function is called: `f(a)` (or `m::f(a)`), or as a method, `x.f(a)`.
#[derive(Clone, Copy, PartialEq)]
enum CallForm {
    Plain,
    Method,
}

impl FileCheck<'_> {
    fn finding(&mut self, pos: Position, message: String, help: Option<String>) {
        self.findings.push(Checker::at(&self.unit.name, &self.unit.text, pos, message, help));
    }

    fn run(&mut self) {
        let unit = self.unit;
        let ast = &unit.ast;
        // This file's functions (also private ones and closures); the names of its variables
        // (one called as `f(x)` gets its own message); and the names of map properties (a
        // method call `obj.f(x)` may reach a function pointer held in one).
        let mut own: HashMap<String, BTreeSet<usize>> = HashMap::new();
        let mut bound: HashSet<String> = HashSet::new();
        let mut props: HashSet<String> = HashSet::new();
        for f in ast.iter_fn_def() {
            own.entry(f.name.to_string()).or_default().insert(f.params.len());
            bound.extend(f.params.iter().map(ToString::to_string));
        }
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                    bound.insert(x.0.name.to_string());
                }
                Some(ASTNode::Expr(Expr::Map(m, _))) => {
                    props.extend(m.0.iter().map(|(k, _)| k.name.to_string()));
                }
                Some(ASTNode::Expr(Expr::Property(p, _))) => {
                    props.insert(p.2.to_string());
                }
                Some(ASTNode::Stmt(Stmt::For(x, _))) => {
                    bound.insert(x.0.name.to_string());
                    if let Some(i) = &x.1 {
                        bound.insert(i.name.to_string());
                    }
                }
                _ => {}
            }
            true
        });
        let mut stages = Stages::default();
        let mut calls = Vec::new();
        let mut chains = Vec::new();
        let mut guarded = HashSet::new();
        ast.walk(&mut |path: &[ASTNode]| {
            let parent = path.len().checked_sub(2).map(|i| &path[i]);
            if let Some(ASTNode::Expr(e)) = path.last()
                && let Some(g) = cfg_guard(e)
            {
                guarded.insert(g);
            }
            match path.last() {
                Some(ASTNode::Expr(Expr::FnCall(f, pos)) | ASTNode::Stmt(Stmt::FnCall(f, pos))) => {
                    calls.push((f.as_ref().clone(), *pos, CallForm::Plain));
                    // Not inside a branch or a loop: declared whatever the configuration.
                    let unconditional = !path[..path.len() - 1].iter().any(|n| {
                        matches!(
                            n,
                            ASTNode::Stmt(
                                Stmt::If(..)
                                    | Stmt::Switch(..)
                                    | Stmt::While(..)
                                    | Stmt::Do(..)
                                    | Stmt::For(..)
                                    | Stmt::TryCatch(..)
                            )
                        )
                    });
                    stages.call(f, unconditional, &mut *self.findings, self.unit);
                }
                Some(ASTNode::Expr(Expr::MethodCall(f, pos))) => {
                    calls.push((f.as_ref().clone(), *pos, CallForm::Method));
                    stages.method(path, f);
                }
                Some(ASTNode::Stmt(Stmt::Var(x, ..))) => stages.assign(&x.0.name, &x.1, false),
                Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                    if let Expr::Variable(v, ..) = &x.1.lhs {
                        stages.assign(&v.1, &x.1.rhs, x.0.is_op_assignment());
                    }
                }
                Some(ASTNode::Expr(e @ (Expr::Dot(b, ..) | Expr::Index(b, ..)))) => {
                    if matches!(&b.lhs, Expr::Variable(v, ..) if v.1 == "cfg" && v.2.is_empty()) {
                        let written = matches!(parent, Some(ASTNode::Stmt(Stmt::Assignment(a)))
                            if std::ptr::eq(&raw const a.1.lhs, *e));
                        chains.push((cfg_path(e), written));
                    }
                }
                _ => {}
            }
            true
        });
        for (f, pos, form) in calls {
            self.call(&f, pos, form, &own, if form == CallForm::Method { &props } else { &bound });
        }
        for (segments, written) in chains {
            let keep = segments.len() - usize::from(written && !segments.is_empty());
            self.cfg_keys(&segments[..keep], &guarded);
        }
    }

    /// A call: the function exists (here, in the engine, or in the module it names) and takes
    /// that many arguments. `bound`: for a method call, the map properties that may hold the
    /// function pointer it calls (let be); for a call, the variables (a function pointer in
    /// one is called with `.call(...)`, never as `f(...)`).
    fn call(
        &mut self,
        f: &rhai::FnCallExpr,
        pos: Position,
        form: CallForm,
        own: &HashMap<String, BTreeSet<usize>>,
        bound: &HashSet<String>,
    ) {
        let name = f.name.as_str();
        if f.op_token.is_some() || !name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            return;
        }
        let args = f.args.len();
        if !f.namespace.is_empty() {
            self.module_call(f, pos);
            return;
        }
        if KEYWORDS.contains(&name) {
            if name == "Fn"
                && let Some(Expr::StringConstant(target, tpos)) = f.args.first()
                && !self.natives.contains_key(target.as_str())
                && !own.contains_key(target.as_str())
            {
                if KEYWORDS.contains(&target.as_str()) {
                    let message = format!("`Fn(\"{target}\")`: `{target}` is a keyword, not a function");
                    self.finding(*tpos, message, Some("wrap it in a closure: `|x| {target}(x)`".into()));
                } else {
                    let help = self.suggest_fn(target, own);
                    self.finding(*tpos, format!("`Fn(\"{target}\")` names no function"), Some(help));
                }
            }
            return;
        }
        // Arities accepted: a native `f(x, a)` is also `x.f(a)`; a script function called as a
        // method binds `this` (its parameters are the arguments), or takes the object first.
        let mut accepted = BTreeSet::new();
        if let Some(n) = self.natives.get(name) {
            accepted.extend(n.iter().map(|&k| if form == CallForm::Method { k.wrapping_sub(1) } else { k }));
        }
        if let Some(n) = own.get(name) {
            accepted.extend(n.iter().copied());
            if form == CallForm::Method {
                accepted.extend(n.iter().map(|&k| k.wrapping_sub(1)));
            }
        }
        if accepted.is_empty() {
            if form == CallForm::Method && (bound.contains(name) || name == "call") {
                return;
            }
            if bound.contains(name) {
                self.finding(
                    pos,
                    format!("`{name}` is a variable, not a function: Rhai does not call it as `{name}(...)`"),
                    Some(format!("call the function pointer it holds with `{name}.call(...)`")),
                );
                return;
            }
            let help = self.suggest_fn(name, own);
            let what = if form == CallForm::Method { "method" } else { "function" };
            self.finding(pos, format!("unknown {what} `{name}`"), Some(help));
        } else if !accepted.contains(&args) {
            let takes = arities(&accepted);
            let object = if form == CallForm::Method { " after the object it is called on" } else { "" };
            let help = if self.natives.contains_key(name) {
                "`kscript api` lists each function with its parameters".to_string()
            } else {
                format!("see `fn {name}` in {}", self.unit.name)
            };
            self.finding(pos, format!("`{name}` takes {takes}{object}, not {args}"), Some(help));
        }
    }

    /// `alias::f(...)`: the module imported as `alias` has a public `f` taking that many arguments.
    fn module_call(&mut self, f: &rhai::FnCallExpr, pos: Position) {
        if f.namespace.path.len() != 1 {
            return;
        }
        let alias = f.namespace.root();
        let Some(Some(module)) = self.unit.imports.get(alias) else { return };
        if self.broken.contains(module) {
            return;
        }
        let Some(e) = self.exports.get(module) else { return };
        let name = f.name.as_str();
        match e.public.get(name) {
            Some(n) if n.contains(&f.args.len()) => {}
            Some(n) => self.finding(
                pos,
                format!("`{alias}::{name}` takes {}, not {}", arities(n), f.args.len()),
                Some(format!("see `fn {name}` in {module}")),
            ),
            None if e.private.contains_key(name) => self.finding(
                pos,
                format!("`{name}` is private in module `{alias}` ({module})"),
                Some("a `private fn` is called only inside its module".into()),
            ),
            None => {
                let known: Vec<&str> = e.public.keys().map(String::as_str).collect();
                let help = config::suggestion(name, &known).map_or_else(
                    || format!("{module} defines no such function"),
                    |s| format!("did you mean `{alias}::{s}`?"),
                );
                self.finding(
                    pos,
                    format!("module `{alias}` ({module}) has no function `{name}`"),
                    Some(help),
                );
            }
        }
    }

    /// "did you mean" among the functions a call here may reach.
    fn suggest_fn(&self, name: &str, own: &HashMap<String, BTreeSet<usize>>) -> String {
        let known: Vec<&str> = self
            .natives
            .keys()
            .chain(own.keys())
            .map(String::as_str)
            .chain(KEYWORDS.iter().copied())
            .filter(|n| n.starts_with(|c: char| c.is_alphabetic() || c == '_') && !n.contains('$'))
            .collect();
        match config::suggestion(name, &known) {
            Some(s) => format!("did you mean `{s}`? (`kscript api` lists the functions scripts can call)"),
            None => "`kscript api` lists the functions scripts can call".to_string(),
        }
    }

    /// A `cfg.a.b` path: each key is in the defaults (down to a free-form map, a `null`
    /// default or a value that is not a map), or its presence is tested in this file.
    fn cfg_keys(&mut self, segments: &[(String, Position)], guarded: &HashSet<String>) {
        let Some((root, defaults_name)) = self.defaults else { return };
        let mut node = root;
        let mut walked = vec!["cfg".to_string()];
        for (key, pos) in segments {
            let Value::Map(entries) = &node.value else { return };
            if entries.is_empty() {
                return;
            }
            let Some((_, child)) =
                entries.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))
            else {
                if guarded.contains(&format!("{}.{key}", walked.join("."))) {
                    return;
                }
                let known: Vec<&str> = entries
                    .iter()
                    .filter_map(|(k, _)| if let Value::Str(s) = &k.value { Some(s.as_str()) } else { None })
                    .collect();
                let help = match config::suggestion(key, &known) {
                    Some(s) => format!(
                        "did you mean `{}.{s}`? (keys are those of {defaults_name})",
                        walked.join(".")
                    ),
                    None => format!("keys under `{}`: {}", walked.join("."), known.join(", ")),
                };
                walked.push(key.clone());
                self.finding(*pos, format!("unknown configuration key `{}`", walked.join(".")), Some(help));
                return;
            };
            node = child;
            walked.push(key.clone());
        }
    }
}

/// `0 or 2 arguments`, `1 argument`.
fn arities(n: &BTreeSet<usize>) -> String {
    let list: Vec<String> = n.iter().map(ToString::to_string).collect();
    let last = n.iter().next_back().copied().unwrap_or(0);
    let joined = match list.len() {
        0 | 1 => list.concat(),
        k => format!("{} or {}", list[..k - 1].join(", "), list[k - 1]),
    };
    format!("{joined} argument{}", if list.len() == 1 && last == 1 { "" } else { "s" })
}

/// The literal keys of a `cfg.a["b"].c` chain (the part before anything computed), each with
/// its position.
fn cfg_path(e: &Expr) -> Vec<(String, Position)> {
    cfg_chain(e).0
}

/// The literal keys of a chain, and the first part that is not one (an index computed, a
/// method called), if any.
fn cfg_chain(e: &Expr) -> (Vec<(String, Position)>, Option<&Expr>) {
    let mut out = Vec::new();
    let (Expr::Dot(b, ..) | Expr::Index(b, ..)) = e else { return (out, None) };
    let mut current = &b.rhs;
    loop {
        let (segment, next) = match current {
            Expr::Dot(b, ..) | Expr::Index(b, ..) => (&b.lhs, Some(&b.rhs)),
            other => (other, None),
        };
        match segment {
            Expr::Property(p, pos) => out.push((p.2.to_string(), *pos)),
            Expr::StringConstant(s, pos) => out.push((s.to_string(), *pos)),
            other => return (out, Some(other)),
        }
        match next {
            Some(n) => current = n,
            None => return (out, None),
        }
    }
}

/// Whether `e` is `cfg` or a chain of literal keys from it: the dotted path (`cfg.a.b`).
fn cfg_root(e: &Expr) -> Option<String> {
    let is_cfg = |e: &Expr| matches!(e, Expr::Variable(v, ..) if v.1 == "cfg" && v.2.is_empty());
    if is_cfg(e) {
        return Some("cfg".into());
    }
    let (Expr::Dot(b, ..) | Expr::Index(b, ..)) = e else { return None };
    if !is_cfg(&b.lhs) {
        return None;
    }
    let (keys, rest) = cfg_chain(e);
    rest.is_none()
        .then(|| std::iter::once("cfg".to_string()).chain(keys.into_iter().map(|(k, _)| k)).join_dots())
}

/// A key whose presence is tested (`"key" in cfg.a`, `cfg.a.contains("key")`): `cfg.a.key`,
/// which the file may then read though the defaults lack it.
fn cfg_guard(e: &Expr) -> Option<String> {
    match e {
        Expr::FnCall(f, _) if f.name == "contains" && f.namespace.is_empty() && f.args.len() == 2 => {
            let ((Expr::StringConstant(key, _), map) | (map, Expr::StringConstant(key, _))) =
                (&f.args[0], &f.args[1])
            else {
                return None;
            };
            cfg_root(map).map(|p| format!("{p}.{key}"))
        }
        Expr::Dot(b, ..) if matches!(&b.lhs, Expr::Variable(v, ..) if v.1 == "cfg") => {
            let (keys, Some(Expr::MethodCall(f, _))) = cfg_chain(e) else { return None };
            let (true, Some(Expr::StringConstant(k, _))) = (f.name == "contains", f.args.first()) else {
                return None;
            };
            let path = std::iter::once("cfg".to_string()).chain(keys.into_iter().map(|(k, _)| k)).join_dots();
            Some(format!("{path}.{k}"))
        }
        _ => None,
    }
}

trait JoinDots {
    fn join_dots(self) -> String;
}

impl<I: Iterator<Item = String>> JoinDots for I {
    fn join_dots(self) -> String {
        self.collect::<Vec<_>>().join(".")
    }
}

/// Stage and step names declared with literals, to find the ones declared twice.
#[derive(Default)]
struct Stages {
    /// Stage name -> where first declared.
    stages: HashMap<String, Position>,
    /// Arrays of steps held in variables (`let steps = [step(...)]; steps.push(step(...))`).
    lists: HashMap<String, Vec<(String, Position)>>,
}

/// `step("name", ...)`: its literal name and the name's position.
fn step_name(e: &Expr) -> Option<(String, Position)> {
    let Expr::FnCall(f, _) = e else { return None };
    if f.name != "step" || !f.namespace.is_empty() {
        return None;
    }
    match f.args.first() {
        Some(Expr::StringConstant(s, pos)) => Some((s.to_string(), *pos)),
        _ => None,
    }
}

fn step_names(e: &Expr) -> Vec<(String, Position)> {
    match e {
        Expr::Array(items, _) => items.iter().filter_map(step_name).collect(),
        _ => Vec::new(),
    }
}

impl Stages {
    /// `let v = [...]`, `v = [...]` or `v += [...]`.
    fn assign(&mut self, var: &str, value: &Expr, append: bool) {
        let names = step_names(value);
        if !append {
            self.lists.remove(var);
        }
        if !names.is_empty() {
            self.lists.entry(var.to_string()).or_default().extend(names);
        }
    }

    /// `v.push(step(...))`.
    fn method(&mut self, path: &[ASTNode], f: &rhai::FnCallExpr) {
        if f.name != "push" {
            return;
        }
        let Some(ASTNode::Expr(Expr::Dot(b, ..))) = path.len().checked_sub(2).map(|i| &path[i]) else {
            return;
        };
        let Expr::Variable(v, ..) = &b.lhs else { return };
        if let Some(step) = f.args.first().and_then(step_name) {
            self.lists.entry(v.1.to_string()).or_default().push(step);
        }
    }

    /// `stage("name", "description", steps)`: its step names differ, and, for a declaration
    /// outside any branch or loop, the stage name is new (one inside an `if` may be an
    /// alternative to another: the evaluation pass judges what is really declared).
    fn call(&mut self, f: &rhai::FnCallExpr, top_level: bool, findings: &mut Vec<Finding>, unit: &Unit) {
        if f.name != "stage" || !f.namespace.is_empty() {
            return;
        }
        let mut at = |pos, message: String, help: Option<String>| {
            findings.push(Checker::at(&unit.name, &unit.text, pos, message, help));
        };
        let Some(Expr::StringConstant(name, pos)) = f.args.first() else { return };
        if let Err(e) = crate::stages::check_name(name, false) {
            at(*pos, e, None);
        }
        match self.stages.get(name.as_str()) {
            _ if !top_level => {}
            Some(first) => at(
                *pos,
                format!("stage `{name}` is declared twice"),
                Some(format!(
                    "first declared at line {}; stage names select stages in --only and --skip",
                    first.line().unwrap_or(0)
                )),
            ),
            None => {
                self.stages.insert(name.to_string(), *pos);
            }
        }
        let steps = match f.args.get(2) {
            Some(Expr::Variable(v, ..)) => self.lists.get(v.1.as_str()).cloned().unwrap_or_default(),
            Some(e) => step_names(e),
            None => Vec::new(),
        };
        let mut seen: BTreeMap<&str, Position> = BTreeMap::new();
        for (step, spos) in &steps {
            if let Err(e) = crate::stages::check_name(step, true) {
                at(*spos, e, None);
            }
            match seen.get(step.as_str()) {
                Some(first) => at(
                    *spos,
                    format!("stage `{name}` has two steps named `{step}`"),
                    Some(format!("the first is at line {}", first.line().unwrap_or(0))),
                ),
                None => {
                    seen.insert(step, *spos);
                }
            }
        }
    }
}

/// The span of the word at `pos`, or of the whole string literal that starts there.
fn span_at(text: &str, pos: Position) -> Option<SourceSpan> {
    let span = crate::script_error::span_at(text, pos)?;
    let rest = &text[span.offset()..];
    if let Some(body) = rest.strip_prefix('"')
        && let Some(end) = body.find(['"', '\n'])
    {
        return Some(SourceSpan::new(span.offset().into(), end + 2));
    }
    Some(span)
}

/// The snapshot suite of a fork (`kscript-tests.yaml`): a suite `kscript test` would refuse,
/// and `only`/`skip` names that select nothing in their case's script (built with the case's
/// configuration), each at its place in the suite file.
fn suite_findings(dir: &Path) -> Vec<Finding> {
    let file = dir.join(crate::suite::SUITE_FILE);
    let name = file.display().to_string();
    let plain = |message: String| Finding {
        message,
        src: None,
        span: None,
        label: String::new(),
        help: None,
        file: name.clone(),
        line: 0,
        column: 0,
    };
    let (text, loaded) = match (read(&file), crate::suite::Loaded::read(&file)) {
        (Ok(text), Ok(loaded)) => (text, loaded),
        (Err(e), _) | (_, Err(e)) => return vec![plain(e.to_string())],
    };
    let mut out = Vec::new();
    for case in loaded.suite.cases.iter().filter(|c| !c.only.is_empty() || !c.skip.is_empty()) {
        let configs: Vec<PathBuf> = case.config.iter().map(|c| loaded.dir.join(c)).collect();
        let sets: Vec<String> = loaded.suite.set.iter().chain(&case.set).cloned().collect();
        let built = loaded
            .script(case)
            .map_err(|e| Error::Usage { message: e })
            .and_then(|s| Script::load(&s))
            .and_then(|s| model(s, &configs, &sets));
        let names = match built {
            Ok(m) => selection_names(&m),
            Err(e) => {
                out.push(plain(format!("{name}: case `{}`: {e}", case.name)));
                continue;
            }
        };
        // Where the case's entry starts: names are looked for after it.
        let case_at = text
            .match_indices(&format!("name: {}", case.name))
            .find(|(i, m)| {
                text[i + m.len()..].starts_with(['\n', '\r', ' ', '#']) || i + m.len() == text.len()
            })
            .map_or(0, |(i, _)| i);
        for (flag, list) in [("only:", &case.only), ("skip:", &case.skip)] {
            for selected in list {
                let Some((message, help)) = unmatched_selection(&names, flag, selected) else { continue };
                let offset = text[case_at..].find(selected.as_str()).map_or(case_at, |o| case_at + o);
                let (line, column) = line_col(&text, offset);
                out.push(Finding {
                    message: format!("{name}:{line}:{column}: case `{}`: {message}", case.name),
                    src: Some(NamedSource::new(&name, text.clone())),
                    span: Some(SourceSpan::from((offset, selected.len()))),
                    label: "here".into(),
                    help: Some(help),
                    file: name.clone(),
                    line,
                    column,
                });
            }
        }
    }
    out
}

/// An error evaluating a script's top level, as a finding at its place.
fn evaluation_finding(file: &str, e: &Error) -> Finding {
    let note = "found by evaluating the script's top level, as `kscript stages` does (no step runs)";
    if let Error::Script(d) = e
        && let (Some(src), Some(span)) = (&d.src, d.span)
    {
        let (line, column) = line_col(src.inner(), span.offset());
        let name = src.name().to_string();
        return Finding {
            message: format!("{name}:{line}:{column}: {}", d.message),
            src: Some(NamedSource::new(&name, src.inner().clone())),
            span: Some(span),
            label: "here".into(),
            help: Some(note.to_string()),
            file: name,
            line,
            column,
        };
    }
    Finding {
        message: format!("{file}: {e}"),
        src: None,
        span: None,
        label: String::new(),
        help: Some(note.to_string()),
        file: file.to_string(),
        line: 0,
        column: 0,
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use rhai::FnPtr;

    use super::*;
    use crate::stages::{Stage, Step};

    #[test]
    fn selection_names_hold_stages_steps_and_groups() {
        let f = FnPtr::new("f").unwrap();
        let step = |n: &str| Step { name: n.into(), description: String::new(), body: f.clone() };
        let mut m = Model::default();
        m.add_stage(Stage {
            name: "init".into(),
            description: String::new(),
            steps: vec![step("preflight"), step("certs/ca"), step("certs/apiserver")],
            explicit: false,
        })
        .unwrap();
        m.add_stage(Stage {
            name: "empty".into(),
            description: String::new(),
            steps: vec![],
            explicit: false,
        })
        .unwrap();
        let names = selection_names(&m);
        let expected =
            ["empty", "init", "init/certs", "init/certs/apiserver", "init/certs/ca", "init/preflight"];
        assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), expected);
        // The same rule as `Selection::validate`: what it accepts is in the set, and only that.
        for name in ["init/certs", "init/cert", "init/certs/c", "empty", "init/preflight/x", "nosuch"] {
            let sel = crate::stages::Selection { only: vec![name.into()], ..Default::default() };
            assert_eq!(sel.validate(&m).is_ok(), names.contains(name), "{name}");
        }
        let (message, help) = unmatched_selection(&names, "--only", "init/cert").unwrap();
        assert_eq!(message, "--only init/cert: no stage or step has that name");
        assert!(help.starts_with("did you mean `init/certs`?"), "{help}");
        assert!(unmatched_selection(&names, "--skip", "init/certs").is_none());
    }

    #[test]
    fn arities_read_as_english() {
        assert_eq!(arities(&BTreeSet::from([1])), "1 argument");
        assert_eq!(arities(&BTreeSet::from([0])), "0 arguments");
        assert_eq!(arities(&BTreeSet::from([2, 3])), "2 or 3 arguments");
        assert_eq!(arities(&BTreeSet::from([0, 1, 3])), "0, 1 or 3 arguments");
    }

    #[test]
    fn cfg_paths_stop_at_what_is_computed() {
        let mut engine = Engine::new();
        engine.set_optimization_level(OptimizationLevel::None);
        let ast = engine
            .compile(r#"let k = "x"; cfg.a["b"].c.len(); cfg["d"].e; cfg.f[k].g; cfg.h.i[0].j;"#)
            .unwrap();
        let mut paths = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(e @ (Expr::Dot(b, ..) | Expr::Index(b, ..)))) = path.last()
                && matches!(&b.lhs, Expr::Variable(v, ..) if v.1 == "cfg")
            {
                paths.push(cfg_path(e).into_iter().map(|(k, _)| k).collect::<Vec<_>>().join("."));
            }
            true
        });
        assert_eq!(paths, ["a.b.c", "d.e", "f", "h.i"]);
    }

    #[test]
    fn places_and_spans() {
        let text = "line one\nstage(\"name\", x)\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 15), (2, 7));
        let span = span_at(text, Position::new(2, 7)).unwrap();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "\"name\"");
        let span = span_at(text, Position::new(2, 1)).unwrap();
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "stage");
    }
}
