//! What a run prints: a line per step, the planned effects and diffs, a recap per stage, and
//! a spinner while waiting on something slow (in a terminal only).

use std::io::{self, IsTerminal, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::journal::Outcome;

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

/// Prints a run's progress.
pub struct Reporter {
    out: Box<dyn Write>,
    /// Print each effect under its step (dry runs and `--verbose`).
    pub show_effects: bool,
    /// Print unified diffs of changed text files.
    pub show_diff: bool,
    /// Print the API objects a run would apply (dry runs, `--diff`).
    pub show_objects: bool,
    color: bool,
    /// Whether stderr is a terminal (spinners).
    pub tty: bool,
    /// Prints nothing at all, warnings included.
    silent: bool,
    /// Warnings printed so far: each is printed once a run, however many steps give it.
    warned: std::collections::HashSet<String>,
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Reporter {
    /// A reporter on stdout, with colour when stdout is a terminal and `NO_COLOR` is unset.
    pub fn stdout(show_effects: bool, show_diff: bool, show_objects: bool) -> Self {
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self {
            out: Box::new(io::stdout()),
            show_effects,
            show_diff,
            show_objects,
            color,
            tty: io::stderr().is_terminal(),
            silent: false,
            warned: std::collections::HashSet::new(),
        }
    }

    /// A reporter that prints nothing (listing stages, generating the API reference).
    pub fn silent() -> Self {
        Self {
            out: Box::new(io::sink()),
            show_effects: false,
            show_diff: false,
            show_objects: false,
            color: false,
            tty: false,
            silent: true,
            warned: std::collections::HashSet::new(),
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color { format!("{style}{text}{RESET}") } else { text.to_string() }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`kscript run ... | head`) must not abort the run half-way.
        let _ = writeln!(self.out, "{text}");
    }

    pub fn header(&mut self, text: &str) {
        let t = self.paint(BOLD, text);
        self.line(&t);
    }

    pub fn stage(&mut self, index: usize, total: usize, name: &str, description: &str) {
        let t = self.paint(BOLD, &format!("\n[{index}/{total}] {name}: {description}"));
        self.line(&t);
    }

    pub fn step(&mut self, outcome: Outcome, name: &str, note: &str, effects: &[EffectLine]) {
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
        if !self.show_effects {
            return;
        }
        for e in effects {
            let sign = match e.sign {
                '+' => self.paint(GREEN, "+"),
                '~' | '-' => self.paint(YELLOW, &e.sign.to_string()),
                other => other.to_string(),
            };
            let text = if e.detail.is_empty() {
                format!("      {sign} {}", e.target)
            } else {
                format!("      {sign} {} ({})", e.target, e.detail)
            };
            self.line(&text);
            if self.show_diff
                && let Some(d) = &e.diff
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
            if self.show_objects
                && let Some(b) = &e.body
            {
                for l in b.lines() {
                    self.line(&format!("        {l}"));
                }
            }
        }
    }

    pub fn message(&mut self, text: &str) {
        self.line(&format!("  {text}"));
    }

    /// Prints a warning on stderr, unless the same warning was printed already in this run
    /// (a fact several steps check, such as a guessed distribution, is said once).
    pub fn warn(&mut self, text: &str) {
        if self.silent || !self.warned.insert(text.to_string()) {
            return;
        }
        let w = self.paint(YELLOW, "warning:");
        let _ = writeln!(io::stderr(), "{w} {text}");
    }

    pub fn recap(&mut self, rows: &[StageRecap], total: Duration) {
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
                r.name,
                r.ok,
                r.skipped,
                r.elapsed.as_secs_f64()
            ));
        }
        self.line(&format!("  total {:.3}s", total.as_secs_f64()));
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
/// and stderr is a terminal; elsewhere a plain line after a second, and one every 30 seconds.
pub fn wait<T>(label: &str, tty: bool, work: impl FnOnce() -> T) -> T {
    wait_with(label, tty, |_| work())
}

/// What a wait in progress has seen (see [`wait_with`]).
pub struct Progress {
    /// `None` for a wait inside another wait, which shows nothing of its own.
    seen: Option<mpsc::Sender<String>>,
}

impl Progress {
    /// Shows `text` as what is seen now: at once, when it differs from what was shown last
    /// (in a terminal, as the spinner's message; elsewhere as a line `  ... seen: text`).
    pub fn show(&self, text: &str) {
        if let Some(tx) = &self.seen {
            let _ = tx.send(text.to_string());
        }
    }
}

thread_local! {
    /// Whether a wait is showing progress on this thread: one inside it (a pull while the
    /// control plane is waited for) shows nothing of its own.
    static WAITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`wait`], with a [`Progress`] through which `work` shows what it sees as it goes: one line
/// per change of what is seen, not one per look.
pub fn wait_with<T>(label: &str, tty: bool, work: impl FnOnce(&Progress) -> T) -> T {
    if WAITING.with(std::cell::Cell::get) {
        return work(&Progress { seen: None });
    }
    let (tx, rx) = mpsc::channel::<String>();
    let label = label.to_string();
    let watcher = thread::spawn(move || watch(&label, tty, &rx));
    WAITING.with(|w| w.set(true));
    let result = work(&Progress { seen: Some(tx) });
    WAITING.with(|w| w.set(false));
    // `work` dropped the only sender: the watcher ends.
    let _ = watcher.join();
    result
}

/// The watcher of a wait: silent for a second, then a spinner (in a terminal) or lines; it
/// ends when the wait's sender is dropped.
fn watch(label: &str, tty: bool, seen: &mpsc::Receiver<String>) {
    use mpsc::RecvTimeoutError::{Disconnected, Timeout};
    let start = Instant::now();
    let mut shown = String::new();
    // Nothing for a quick wait: what it saw in its first second is shown only after it.
    loop {
        match seen.recv_timeout((start + Duration::from_secs(1)).saturating_duration_since(Instant::now())) {
            Err(Disconnected) => return,
            Err(Timeout) => break,
            Ok(text) => shown = text,
        }
    }
    let with_seen =
        |shown: &str| if shown.is_empty() { label.to_string() } else { format!("{label}: {shown}") };
    if tty {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(with_seen(&shown));
        bar.enable_steady_tick(Duration::from_millis(100));
        while let Ok(text) = seen.recv() {
            if text != shown {
                shown = text;
                bar.set_message(with_seen(&shown));
            }
        }
        bar.finish_and_clear();
        return;
    }
    let _ = writeln!(io::stderr(), "  ... waiting: {label}");
    if !shown.is_empty() {
        let _ = writeln!(io::stderr(), "  ... seen: {shown}");
    }
    let mut next = start + Duration::from_secs(30);
    loop {
        match seen.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(Disconnected) => return,
            Ok(text) => {
                if text != shown {
                    shown = text;
                    if !shown.is_empty() {
                        let _ = writeln!(io::stderr(), "  ... seen: {shown}");
                    }
                }
            }
            Err(Timeout) => {
                let _ =
                    writeln!(io::stderr(), "  ... still waiting ({}s): {label}", start.elapsed().as_secs());
                next += Duration::from_secs(30);
            }
        }
    }
}
