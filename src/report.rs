//! What a run prints: a line per step, the planned effects and diffs, a recap per stage, and
//! a spinner while waiting on something slow (in a terminal only) — or, with `--output json`,
//! the same events as JSON objects, one per line (schema [`SCHEMA`]).
//!
//! The [`Reporter`] turns what the runner and the API tell it into [`Event`]s and hands each to
//! its sink: [`TextSink`] for people, [`JsonSink`] for tools. Both see the same data: what is
//! redacted (key material, Secrets' values) is redacted before it reaches the reporter.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::host::Mode;
use crate::journal::Outcome;

/// The `schema` of every object `kscript run --output json` prints; it changes only when a
/// field changes meaning or goes (fields may be added).
pub const SCHEMA: &str = "kscript.run/v1";

/// One effect of a step, as shown in a plan: `+` create, `~` change, `=` unchanged, `-` remove,
/// `!` a command recorded or run.
#[derive(Debug, Clone)]
pub struct EffectLine {
    pub sign: char,
    pub target: String,
    pub detail: String,
    /// A unified diff, already rendered (never of secret content).
    pub diff: Option<String>,
    /// What the effect would send, as text (an API object, Secrets' values redacted), shown
    /// when objects are shown: dry runs and `--diff`.
    pub body: Option<String>,
}

impl EffectLine {
    /// `sign target detail`, with no diff and no body.
    pub fn new(sign: char, target: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { sign, target: target.into(), detail: detail.into(), diff: None, body: None }
    }

    /// With a rendered diff (`None`: none).
    #[must_use]
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }

    /// With what the effect would send (`None`: nothing to show).
    #[must_use]
    pub fn with_body(mut self, body: Option<String>) -> Self {
        self.body = body;
        self
    }

    /// The sign as a word: `create`, `change`, `unchanged`, `remove`, `command`.
    pub fn change(&self) -> &'static str {
        match self.sign {
            '+' => "create",
            '~' => "change",
            '-' => "remove",
            '!' => "command",
            _ => "unchanged",
        }
    }
}

/// Counts for one stage in the recap.
#[derive(Debug, Clone, Default)]
pub struct StageRecap {
    pub name: String,
    pub ok: usize,
    pub changed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

impl StageRecap {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok | Outcome::Recorded | Outcome::Expected => self.ok += 1,
            Outcome::Changed => self.changed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
        }
    }
}

/// The failure that ended a run, as data: what the text output shows through miette, and the
/// JSON output as an `error` object.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step that failed (`stage/step`), when a step did.
    pub step: Option<String>,
    /// `usage`, `config`, `io`, or for a script: `bug` (a mistake in the script), `thrown` (the
    /// script threw it on purpose), `effect` (an effect failed).
    pub kind: &'static str,
    /// The whole message, as the text output's first line says it.
    pub message: String,
    /// Where in a script or configuration file (`file:line:column`), when known.
    pub location: Option<String>,
    /// What to do next, when kscript knows.
    pub help: Option<String>,
    /// The errors that led to it, outermost first (an I/O error under its context).
    pub causes: Vec<String>,
    /// The script calls that led there, innermost caller first (`in call to `f`, at file:line`).
    pub frames: Vec<String>,
    pub exit_code: u8,
}

impl Failure {
    /// `err` as data; `step` the step that failed, if one did.
    pub fn of(err: &crate::error::Error, step: Option<String>) -> Self {
        use crate::error::{Cause, Error};
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let (kind, location, help, frames) = match err {
            Error::Usage { .. } => ("usage", None, None, Vec::new()),
            Error::Io { .. } => ("io", None, None, Vec::new()),
            Error::Config(c) => {
                use miette::SourceCode as _;
                let at = c.src.read_span(&c.span, 0, 0).ok().map_or_else(
                    || c.src.name().to_string(),
                    |s| format!("{}:{}:{}", c.src.name(), s.line() + 1, s.column() + 1),
                );
                ("config", Some(at), c.help.clone(), Vec::new())
            }
            Error::Script(d) => {
                let kind = match d.cause {
                    Cause::Bug => "bug",
                    Cause::Thrown => "thrown",
                    Cause::Effect => "effect",
                };
                let location = (!d.label.is_empty()).then(|| d.label.clone());
                (kind, location, d.help.clone(), d.chain.iter().map(|f| f.message.clone()).collect())
            }
        };
        // A transparent variant's source is the inner error itself: not a cause of its own.
        let message = err.to_string();
        causes.retain(|c| *c != message);
        Self { step, kind, message, location, help, causes, frames, exit_code: err.exit_code() }
    }
}

/// What a run tells whoever watches it, in order. Each is one JSON object in `--output json`
/// (its `type` is [`Event::kind`]); `schemas/run.v1.json` describes them.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Event<'a> {
    /// The run begins: which script, how, where.
    Start {
        script: &'a str,
        /// A stock script built into kscript, not a file.
        builtin: bool,
        #[serde(serialize_with = "mode_token")]
        mode: Mode,
        /// The node root on this host (`/` when applying).
        root: String,
        /// `kubernetesVersion` from the configuration, when the script's has one.
        kubernetes_version: Option<&'a str>,
    },
    /// A stage begins: the `number`th of the script's `total` (1-based, as `kscript stages`
    /// numbers them).
    Stage { number: usize, total: usize, name: &'a str, description: &'a str },
    /// A step (or a handler, as `stage/handlers/name`) ended.
    Step {
        /// `stage/step`, as `--only` takes it.
        name: &'a str,
        stage: &'a str,
        handler: bool,
        outcome: Outcome,
        /// What the text output shows after the name: the target changed, the reason skipped,
        /// the target a failed step was working on.
        note: &'a str,
        effects: Vec<EffectJson<'a>>,
    },
    /// A line a script printed (`info`, `print`, `debug`).
    Message { text: &'a str },
    /// A warning; the run goes on.
    Warning { text: &'a str },
    /// A wait that lasted past its grace period, then each new reason, a heartbeat, its end.
    Wait {
        label: &'a str,
        /// `waiting` (past the grace period), `reason` (a new reason), `still-waiting` (a
        /// heartbeat with nothing new), `done` (the wait ended).
        state: &'static str,
        reason: Option<&'a str>,
        elapsed_s: f64,
    },
    /// Each stage's counts, when the run ends (also after a failure).
    Recap { stages: Vec<RecapJson<'a>>, elapsed_s: f64, changed: bool },
    /// Why the run failed.
    Error(&'a Failure),
    /// The last object of every stream: what a tool needs to know at once.
    Result {
        ok: bool,
        /// Whether anything changed (or, in a dry run, would change).
        changed: bool,
        /// How many effects changed something.
        changes: usize,
        /// The step that failed, when one did.
        failed_step: Option<&'a str>,
        exit_code: u8,
    },
}

impl Event<'_> {
    /// The object's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::Stage { .. } => "stage",
            Event::Step { .. } => "step",
            Event::Message { .. } => "message",
            Event::Warning { .. } => "warning",
            Event::Wait { .. } => "wait",
            Event::Recap { .. } => "recap",
            Event::Error(_) => "error",
            Event::Result { .. } => "result",
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn mode_token<S: serde::Serializer>(mode: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match mode {
        Mode::Apply => "apply",
        Mode::Render => "render",
        Mode::DryRun => "dry-run",
    })
}

/// One effect in a `step` object.
#[derive(Debug, Serialize)]
pub struct EffectJson<'a> {
    pub sign: String,
    /// The sign as a word: create, change, unchanged, remove, command.
    pub change: &'static str,
    pub target: &'a str,
    pub detail: &'a str,
    /// The unified diff, with `--diff` (never of key material: `(secret: content not shown)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<&'a str>,
    /// The object the effect would send (Secrets' values redacted), in dry runs and with `--diff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a str>,
}

/// One stage in the `recap` object.
#[derive(Debug, Serialize)]
pub struct RecapJson<'a> {
    pub name: &'a str,
    pub ok: usize,
    pub changed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub elapsed_s: f64,
}

/// Where a run's events go.
pub trait Sink {
    /// Shows one event.
    fn emit(&mut self, event: &Event<'_>);
    /// How waits are watched.
    fn watch(&self) -> Watch;
}

/// How a slow wait is shown.
#[derive(Clone)]
pub enum Watch {
    /// A spinner on stderr, a terminal.
    Terminal,
    /// A line on stderr after a second, one per new reason, one every 30 seconds.
    Plain,
    /// `wait` objects in the JSON stream.
    Json(JsonOut),
}

/// What effects show.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    /// Each effect under its step (dry runs and `--verbose`); JSON always has them.
    pub effects: bool,
    /// Unified diffs of changed text files (`--diff`).
    pub diff: bool,
    /// The API objects a run would apply (dry runs, `--diff`).
    pub objects: bool,
}

/// Prints a run's progress through its sink.
pub struct Reporter {
    sink: Box<dyn Sink>,
    /// Print unified diffs of changed text files (the file API computes them only then).
    pub show_diff: bool,
    /// Prints nothing at all, warnings included.
    silent: bool,
    /// Warnings printed so far: each is printed once a run, however many steps give it.
    warned: std::collections::HashSet<String>,
}

impl Reporter {
    /// A reporter on stdout, with colour when stdout is a terminal and `NO_COLOR` is unset.
    pub fn stdout(shown: Shown) -> Self {
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let sink = TextSink {
            out: Box::new(io::stdout()),
            err: Box::new(io::stderr()),
            shown,
            color,
            tty: io::stderr().is_terminal(),
        };
        Self::new(Box::new(sink), shown.diff)
    }

    /// A reporter writing JSON lines to `out` (stdout: [`JsonOut::stdout`]).
    pub fn json(out: JsonOut, shown: Shown) -> Self {
        Self::new(Box::new(JsonSink { out, shown }), shown.diff)
    }

    /// A reporter on any sink.
    pub fn new(sink: Box<dyn Sink>, show_diff: bool) -> Self {
        Self { sink, show_diff, silent: false, warned: std::collections::HashSet::new() }
    }

    /// A reporter that prints nothing (listing stages, generating the API reference).
    pub fn silent() -> Self {
        let sink = TextSink {
            out: Box::new(io::sink()),
            err: Box::new(io::sink()),
            shown: Shown::default(),
            color: false,
            tty: false,
        };
        Self { silent: true, ..Self::new(Box::new(sink), false) }
    }

    /// How waits are shown.
    pub fn watch(&self) -> Watch {
        self.sink.watch()
    }

    /// The run begins.
    pub fn start(
        &mut self,
        script: &str,
        builtin: bool,
        mode: Mode,
        root: &std::path::Path,
        version: Option<&str>,
    ) {
        let root = root.display().to_string();
        self.sink.emit(&Event::Start { script, builtin, mode, root, kubernetes_version: version });
    }

    pub fn stage(&mut self, index: usize, total: usize, name: &str, description: &str) {
        self.sink.emit(&Event::Stage { number: index, total, name, description });
    }

    /// A step (`stage/step`) or a handler (`stage/handlers/name`, `handler` true) ended.
    pub fn step(&mut self, outcome: Outcome, name: &str, handler: bool, note: &str, effects: &[EffectLine]) {
        let stage = name.split_once('/').map_or(name, |(stage, _)| stage);
        let effects = effects
            .iter()
            .map(|e| EffectJson {
                sign: e.sign.to_string(),
                change: e.change(),
                target: &e.target,
                detail: &e.detail,
                diff: e.diff.as_deref(),
                body: e.body.as_deref(),
            })
            .collect();
        self.sink.emit(&Event::Step { name, stage, handler, outcome, note, effects });
    }

    pub fn message(&mut self, text: &str) {
        self.sink.emit(&Event::Message { text });
    }

    /// Prints a warning (stderr in text, a `warning` object in JSON), unless the same warning
    /// was printed already in this run (a fact several steps check, such as a guessed
    /// distribution, is said once).
    pub fn warn(&mut self, text: &str) {
        if self.silent || !self.warned.insert(text.to_string()) {
            return;
        }
        self.sink.emit(&Event::Warning { text });
    }

    pub fn recap(&mut self, rows: &[StageRecap], total: Duration) {
        let stages = rows
            .iter()
            .map(|r| RecapJson {
                name: &r.name,
                ok: r.ok,
                changed: r.changed,
                skipped: r.skipped,
                failed: r.failed,
                elapsed_s: seconds(r.elapsed),
            })
            .collect();
        let changed = rows.iter().any(|r| r.changed > 0);
        self.sink.emit(&Event::Recap { stages, elapsed_s: seconds(total), changed });
    }

    /// Why the run failed (JSON only: the text output leaves errors to miette, on stderr).
    pub fn error(&mut self, failure: &Failure) {
        self.sink.emit(&Event::Error(failure));
    }

    /// The run's end (JSON only).
    pub fn result(&mut self, changes: usize, failed_step: Option<&str>, exit_code: u8, ok: bool) {
        self.sink.emit(&Event::Result { ok, changed: changes > 0, changes, failed_step, exit_code });
    }
}

/// Seconds, to the millisecond.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Text for people: a line per step on stdout, warnings on stderr.
pub struct TextSink {
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    shown: Shown,
    color: bool,
    /// Whether stderr is a terminal (spinners).
    tty: bool,
}

impl TextSink {
    fn paint(&self, style: &str, text: &str) -> String {
        if self.color { format!("{style}{text}{RESET}") } else { text.to_string() }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`kscript run ... | head`) must not abort the run half-way.
        let _ = writeln!(self.out, "{text}");
    }

    fn step(&mut self, outcome: Outcome, name: &str, note: &str, effects: &[EffectJson<'_>]) {
        let style = match outcome {
            Outcome::Ok | Outcome::Recorded | Outcome::Expected => GREEN,
            Outcome::Changed => YELLOW,
            Outcome::Skipped => CYAN,
            Outcome::Failed => RED,
        };
        let word = self.paint(style, &format!("{:<8}", outcome.to_string()));
        let text =
            if note.is_empty() { format!("  {word} {name}") } else { format!("  {word} {name}  {note}") };
        self.line(text.trim_end());
        if !self.shown.effects {
            return;
        }
        for e in effects {
            let sign = match e.sign.as_str() {
                "+" => self.paint(GREEN, "+"),
                s @ ("~" | "-") => self.paint(YELLOW, s),
                other => other.to_string(),
            };
            let text = if e.detail.is_empty() {
                format!("      {sign} {}", e.target)
            } else {
                format!("      {sign} {} ({})", e.target, e.detail)
            };
            self.line(&text);
            if self.shown.diff
                && let Some(d) = e.diff
            {
                for l in d.lines() {
                    let painted = match l.as_bytes().first() {
                        Some(b'+') if !l.starts_with("+++") => self.paint(GREEN, l),
                        Some(b'-') if !l.starts_with("---") => self.paint(RED, l),
                        _ => l.to_string(),
                    };
                    self.line(&format!("        {painted}"));
                }
            }
            if self.shown.objects
                && let Some(b) = e.body
            {
                for l in b.lines() {
                    self.line(&format!("        {l}"));
                }
            }
        }
    }

    fn recap(&mut self, rows: &[RecapJson<'_>], total: f64) {
        self.line("");
        let t = self.paint(BOLD, "RECAP");
        self.line(&t);
        let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in rows {
            let changed = format!("changed={}", r.changed);
            let changed = if r.changed > 0 { self.paint(YELLOW, &changed) } else { changed };
            let failed = format!("failed={}", r.failed);
            let failed = if r.failed > 0 { self.paint(RED, &failed) } else { failed };
            self.line(&format!(
                "  {:<width$}  ok={:<3} {changed:<9} skipped={:<3} {failed:<8}  {:.3}s",
                r.name, r.ok, r.skipped, r.elapsed_s
            ));
        }
        self.line(&format!("  total {total:.3}s"));
    }
}

impl Sink for TextSink {
    fn emit(&mut self, event: &Event<'_>) {
        match event {
            Event::Start { script, builtin, mode, root, .. } => {
                let origin = if *builtin { " (built-in)" } else { "" };
                let target = match mode {
                    Mode::Apply => "on this host".to_string(),
                    Mode::Render => format!("into {root}"),
                    Mode::DryRun => format!("against {root} (dry run: nothing will change)"),
                };
                let t = self.paint(BOLD, &format!("kscript {} {script}{origin} {target}", mode.name()));
                self.line(&t);
            }
            Event::Stage { number, total, name, description } => {
                let t = self.paint(BOLD, &format!("\n[{number}/{total}] {name}: {description}"));
                self.line(&t);
            }
            Event::Step { outcome, name, note, effects, .. } => self.step(*outcome, name, note, effects),
            Event::Message { text } => self.line(&format!("  {text}")),
            Event::Warning { text } => {
                let w = self.paint(YELLOW, "warning:");
                let _ = writeln!(self.err, "{w} {text}");
            }
            Event::Recap { stages, elapsed_s, .. } => self.recap(stages, *elapsed_s),
            // Waits draw themselves (see `wait_with`); errors are miette's, on stderr.
            Event::Wait { .. } | Event::Error(_) | Event::Result { .. } => {}
        }
    }

    fn watch(&self) -> Watch {
        if self.tty { Watch::Terminal } else { Watch::Plain }
    }
}

/// JSON lines for tools, shared by the run and the threads that watch its waits; each line is
/// written whole and flushed.
#[derive(Clone)]
pub struct JsonOut(Arc<Mutex<Box<dyn Write + Send>>>);

impl JsonOut {
    /// On stdout.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }

    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(out))))
    }

    /// Writes `event` as one line: `{"type": ..., "schema": ..., its fields}`.
    pub fn emit(&self, event: &Event<'_>) {
        #[derive(Serialize)]
        struct Line<'e, 'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            schema: &'static str,
            #[serde(flatten)]
            event: &'e Event<'a>,
        }
        let line = Line { kind: event.kind(), schema: SCHEMA, event };
        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A closed stdout must not abort the run half-way (as in text).
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// `kscript run --output json`: every event as a JSON object.
pub struct JsonSink {
    out: JsonOut,
    shown: Shown,
}

impl Sink for JsonSink {
    fn emit(&mut self, event: &Event<'_>) {
        // Diffs and objects only when asked for, as in text; effects always.
        if let Event::Step { name, stage, handler, outcome, note, effects } = event
            && (!self.shown.diff || !self.shown.objects)
        {
            let effects = effects
                .iter()
                .map(|e| EffectJson {
                    sign: e.sign.clone(),
                    change: e.change,
                    target: e.target,
                    detail: e.detail,
                    diff: e.diff.filter(|_| self.shown.diff),
                    body: e.body.filter(|_| self.shown.objects),
                })
                .collect();
            let event = Event::Step { name, stage, handler: *handler, outcome: *outcome, note, effects };
            self.out.emit(&event);
            return;
        }
        self.out.emit(event);
    }

    fn watch(&self) -> Watch {
        Watch::Json(self.out.clone())
    }
}

/// A unified diff of two texts; `None` when either is not UTF-8 text.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> Option<String> {
    let old = std::str::from_utf8(old.unwrap_or_default()).ok()?;
    let new = std::str::from_utf8(new).ok()?;
    let diff = similar::TextDiff::from_lines(old, new);
    let text =
        diff.unified_diff().context_radius(3).header(&format!("a{path}"), &format!("b{path}")).to_string();
    Some(text)
}

/// Runs `work`, showing a spinner labelled `label` on stderr if it takes longer than a second
/// and stderr is a terminal; elsewhere a plain line after a second, and one every 30 seconds;
/// in JSON, `wait` objects at the same moments, and one when the wait ends.
pub fn wait<T>(label: &str, watch: Watch, work: impl FnOnce() -> T) -> T {
    wait_with(label, watch, |_| work())
}

/// How long a wait stays quiet: what ends sooner is not worth a line.
const GRACE: Duration = Duration::from_secs(1);
/// How often a plain (not a terminal) wait says it is still waiting.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// What a wait tells its watcher: why it is still waiting.
pub struct Progress {
    /// `None` for a wait inside another wait, which shows nothing of its own.
    tx: Option<mpsc::Sender<String>>,
    last: std::cell::RefCell<String>,
}

impl Progress {
    /// Says why the wait goes on ("API server not answering: connection refused", "etcd:
    /// running, kube-apiserver exited ..."). Shown once each time it changes, not each time it
    /// is said.
    pub fn reason(&self, why: &str) {
        if *self.last.borrow() != why {
            why.clone_into(&mut self.last.borrow_mut());
            if let Some(tx) = &self.tx {
                let _ = tx.send(why.to_string());
            }
        }
    }
}

thread_local! {
    /// Whether a wait is showing progress on this thread: one inside it (a pull while the
    /// control plane is waited for) shows nothing of its own.
    static WAITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`wait`] for work that says why it waits: `work` gets a [`Progress`] to tell the reason,
/// and each new reason is shown once (a line on stderr; in a terminal, a line above the
/// spinner). Nothing is shown when the work ends within a second.
pub fn wait_with<T>(label: &str, watch: Watch, work: impl FnOnce(&Progress) -> T) -> T {
    if WAITING.with(std::cell::Cell::get) {
        return work(&Progress { tx: None, last: std::cell::RefCell::default() });
    }
    let (tx, rx) = mpsc::channel::<String>();
    let label = label.to_string();
    let watcher = thread::spawn(move || match watch {
        Watch::Terminal => watch_terminal(&label, &rx),
        Watch::Plain => watch_plain(&label, &rx, GRACE, HEARTBEAT, &mut io::stderr()),
        Watch::Json(out) => watch_json(&label, &rx, GRACE, HEARTBEAT, &out),
    });
    let progress = Progress { tx: Some(tx), last: std::cell::RefCell::default() };
    WAITING.with(|w| w.set(true));
    let result = work(&progress);
    WAITING.with(|w| w.set(false));
    drop(progress);
    let _ = watcher.join();
    result
}

/// How a wait's grace period ended.
enum Grace {
    /// The work ended within it: nothing to show.
    WorkEnded,
    /// The wait goes on, with the latest reason given (if any).
    Lasted(Option<String>),
}

/// Waits out the grace period, keeping the latest reason.
fn after_grace(rx: &mpsc::Receiver<String>, grace: Duration) -> Grace {
    let start = Instant::now();
    let mut reason = None;
    loop {
        let left = grace.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Grace::Lasted(reason);
        }
        match rx.recv_timeout(left) {
            Ok(r) => reason = Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => return Grace::Lasted(reason),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Grace::WorkEnded,
        }
    }
}

/// The label, and the reason when there is one (an empty reason says there is nothing to add).
fn waiting_line(label: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) if !r.is_empty() => format!("{label}; {r}"),
        _ => label.to_string(),
    }
}

/// Where stderr is not a terminal: a line when the wait has lasted `grace`, one per new
/// reason, and one after each `heartbeat` with nothing new.
fn watch_plain(
    label: &str,
    rx: &mpsc::Receiver<String>,
    grace: Duration,
    heartbeat: Duration,
    out: &mut dyn Write,
) {
    let start = Instant::now();
    let Grace::Lasted(mut reason) = after_grace(rx, grace) else { return };
    let _ = writeln!(out, "  ... waiting: {}", waiting_line(label, reason.as_deref()));
    loop {
        match rx.recv_timeout(heartbeat) {
            Ok(r) if reason.as_deref() != Some(r.as_str()) => {
                let _ = writeln!(out, "  ... waiting: {}", waiting_line(label, Some(&r)));
                reason = Some(r);
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = writeln!(
                    out,
                    "  ... still waiting ({}s): {}",
                    start.elapsed().as_secs(),
                    waiting_line(label, reason.as_deref())
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// In JSON: a `wait` object when the wait has lasted `grace` (`waiting`), one per new reason
/// (`reason`), one after each `heartbeat` with nothing new (`still-waiting`), and one when it
/// ends (`done`, with the time it took); nothing for a wait that ends within `grace`.
fn watch_json(label: &str, rx: &mpsc::Receiver<String>, grace: Duration, heartbeat: Duration, out: &JsonOut) {
    let start = Instant::now();
    let Grace::Lasted(mut reason) = after_grace(rx, grace) else { return };
    let emit = |state: &'static str, reason: Option<&str>| {
        let reason = reason.filter(|r| !r.is_empty());
        out.emit(&Event::Wait { label, state, reason, elapsed_s: seconds(start.elapsed()) });
    };
    emit("waiting", reason.as_deref());
    loop {
        match rx.recv_timeout(heartbeat) {
            Ok(r) if reason.as_deref() != Some(r.as_str()) => {
                emit("reason", Some(&r));
                reason = Some(r);
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => emit("still-waiting", reason.as_deref()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                emit("done", reason.as_deref());
                return;
            }
        }
    }
}

/// In a terminal: a spinner with the label and the current reason, and each new reason kept
/// as a line above it.
fn watch_terminal(label: &str, rx: &mpsc::Receiver<String>) {
    let Grace::Lasted(reason) = after_grace(rx, GRACE) else { return };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(waiting_line(label, reason.as_deref()));
    bar.enable_steady_tick(Duration::from_millis(100));
    if let Some(r) = reason.as_deref().filter(|r| !r.is_empty()) {
        bar.println(format!("  ... {label}; {r}"));
    }
    let mut shown = reason;
    while let Ok(r) = rx.recv() {
        if shown.as_deref() != Some(r.as_str()) {
            if !r.is_empty() {
                bar.println(format!("  ... {label}; {r}"));
            }
            bar.set_message(waiting_line(label, Some(&r)));
            shown = Some(r);
        }
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(reasons: &[&str], grace: Duration) -> String {
        let (tx, rx) = mpsc::channel();
        for r in reasons {
            tx.send((*r).to_string()).unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        watch_plain("discovery from cp:6443", &rx, grace, Duration::from_hours(1), &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Past the grace period: the label, then one line per reason that differs from the last
    /// shown; a reason said again adds nothing.
    #[test]
    fn a_plain_wait_prints_a_line_per_new_reason() {
        let out = watched(
            &[
                "API server not answering: connection refused",
                "API server not answering: connection refused",
                "cluster-info not signed for token abcdef yet",
                "cluster-info not signed for token abcdef yet",
            ],
            Duration::ZERO,
        );
        assert_eq!(
            out,
            "  ... waiting: discovery from cp:6443\n\
             \x20 ... waiting: discovery from cp:6443; API server not answering: connection refused\n\
             \x20 ... waiting: discovery from cp:6443; cluster-info not signed for token abcdef yet\n"
        );
    }

    /// Work that ends within the grace period prints nothing, whatever reasons it gave.
    #[test]
    fn a_short_wait_prints_nothing() {
        assert_eq!(watched(&["API server not answering: connection refused"], Duration::from_hours(1)), "");
    }

    /// A check with nothing to say (an empty reason) leaves the plain label.
    #[test]
    fn an_empty_reason_shows_the_label_alone() {
        assert_eq!(waiting_line("waiting for the API server", Some("")), "waiting for the API server");
        assert_eq!(waiting_line("discovery", Some("403")), "discovery; 403");
    }

    /// A `Write` into a buffer the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    /// The objects a wait watched in JSON gives: `waiting` past the grace period, one `reason`
    /// per new reason, `done` at its end; a wait that ends within the grace period, none.
    #[test]
    fn a_json_wait_gives_an_object_per_new_reason_and_one_at_its_end() {
        let watched = |reasons: &[&str], grace: Duration| {
            let (tx, rx) = mpsc::channel();
            for r in reasons {
                tx.send((*r).to_string()).unwrap();
            }
            drop(tx);
            let buf = Shared::default();
            watch_json("discovery", &rx, grace, Duration::from_hours(1), &JsonOut::new(buf.clone()));
            buf.lines()
        };
        let lines = watched(&["refused", "refused", "not signed yet"], Duration::ZERO);
        let states: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["state"].as_str().unwrap(), l["reason"].as_str().unwrap_or("-")))
            .collect();
        assert_eq!(
            states,
            [
                ("waiting", "-"),
                ("reason", "refused"),
                ("reason", "not signed yet"),
                ("done", "not signed yet")
            ]
        );
        assert!(
            lines.iter().all(|l| l["type"] == "wait" && l["label"] == "discovery" && l["schema"] == SCHEMA)
        );
        assert!(watched(&["refused"], Duration::from_hours(1)).is_empty());
    }

    /// One object of every type, as the JSON sink writes them, is valid against
    /// schemas/run.v1.json (checked by schemas/check.py with Python's jsonschema), and every
    /// type the schema names is among them.
    #[test]
    fn every_kind_of_object_matches_the_schema() {
        let buf = Shared::default();
        let out = JsonOut::new(buf.clone());
        let mut r = Reporter::json(out.clone(), Shown { effects: true, diff: true, objects: true });
        r.start("control-plane.rhai", true, Mode::DryRun, std::path::Path::new("/"), Some("v1.37.0"));
        r.stage(1, 2, "init", "kubeadm init");
        let effects = [
            EffectLine::new('+', "/etc/a.conf", "0644, 1 bytes").with_diff(Some("+a\n".into())),
            EffectLine::new('!', "api apply ConfigMap x", "recorded")
                .with_body(Some("kind: ConfigMap\n".into())),
            EffectLine::new('=', "/etc/b.conf", "0644"),
        ];
        r.step(Outcome::Changed, "init/certs", false, "/etc/a.conf", &effects);
        r.step(Outcome::Ok, "init/handlers/restart-kubelet", true, "", &[]);
        r.message("Join worker nodes with: ...");
        r.warn("the node root has no /etc/os-release");
        out.emit(&Event::Wait { label: "pulling", state: "still-waiting", reason: None, elapsed_s: 30.0 });
        let (tx, rx) = mpsc::channel();
        tx.send("refused".to_string()).unwrap();
        drop(tx);
        watch_json("waiting for the API server", &rx, Duration::ZERO, Duration::from_hours(1), &out);
        r.recap(
            &[StageRecap { name: "init".into(), changed: 1, ok: 1, ..StageRecap::default() }],
            Duration::ZERO,
        );
        let io = crate::error::Error::io("cannot append to the journal /j", io::Error::other("disk full"));
        r.error(&Failure::of(&io, Some("init/certs".into())));
        r.result(3, Some("init/certs"), 1, false);
        let lines = buf.lines();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();

        let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/run.v1.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
        let kinds: std::collections::BTreeSet<&str> =
            lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
        let named: std::collections::BTreeSet<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["$ref"].as_str().unwrap().trim_start_matches("#/$defs/"))
            .collect();
        assert_eq!(kinds, named, "one object of each type the schema names");
        let error = lines.iter().find(|l| l["type"] == "error").unwrap();
        assert_eq!(error["causes"], serde_json::json!(["disk full"]), "{error}");

        let mut child = std::process::Command::new("python3")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/check.py"), schema_path, "--lines"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (with jsonschema from PyPI: .ci/run installs it)");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "{}\n{}{text}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
    }

    #[test]
    fn progress_sends_a_reason_once_per_change() {
        let (tx, rx) = mpsc::channel();
        let p = Progress { tx: Some(tx), last: std::cell::RefCell::default() };
        for r in ["a", "a", "b", "b", "a"] {
            p.reason(r);
        }
        drop(p);
        assert_eq!(rx.iter().collect::<Vec<_>>(), ["a", "b", "a"]);
    }
}
