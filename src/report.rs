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
pub fn wait_with<T>(label: &str, tty: bool, work: impl FnOnce(&Progress) -> T) -> T {
    if WAITING.with(std::cell::Cell::get) {
        return work(&Progress { tx: None, last: std::cell::RefCell::default() });
    }
    let (tx, rx) = mpsc::channel::<String>();
    let label = label.to_string();
    let watcher = thread::spawn(move || {
        if tty {
            watch_terminal(&label, &rx);
        } else {
            watch_plain(&label, &rx, GRACE, HEARTBEAT, &mut io::stderr());
        }
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
