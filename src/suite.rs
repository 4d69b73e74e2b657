//! `kscript test`: a fork's snapshot suite, without Rust.
//!
//! A suite file (`kscript-tests.yaml`) names cases: a script, its configuration files,
//! `--set` values, patches, `--only`/`--skip`, and for a joining node the case whose control
//! plane it discovers. Each case is rendered by this same kscript binary into a temporary
//! folder, with a fixed clock, and normalised by [`crate::snapshot::node`] (the normaliser
//! kscript's own tests use). The text is compared with `snapshots/CASE.snap` beside the suite;
//! a difference is shown as a unified diff per file, and `--accept` writes the new text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::{EXIT_FAILURE, Error};

/// The suite file's name in a fork.
pub const SUITE_FILE: &str = "kscript-tests.yaml";
/// The folder of snapshots, beside the suite file.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Every case's clock (Unix seconds: 2026-01-01T00:00:00Z); serials are numbered from 1.
pub const CLOCK: u64 = 1_767_225_600;
/// The folder, among the renders, of the keys the cases share (see [`crate::api::pki::REUSE_KEYS`]).
const KEYS_DIR: &str = ".keys";
/// Environment variables that would make a render talk to real components: a case never
/// inherits them.
const REAL_COMPONENTS: &[&str] =
    &["KSCRIPT_TEST_CLUSTER_API", "KSCRIPT_TEST_CRI", "KSCRIPT_TEST_KILL_AFTER_STEPS"];

/// A suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// `--set` values given to every case, before the case's own.
    #[serde(default)]
    pub set: Vec<String>,
    pub cases: Vec<Case>,
}

/// One case of a suite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Names the snapshot file: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// A script beside the suite file; a stock script as `builtin:NAME` (or, outside a fork,
    /// by its name alone).
    pub script: String,
    /// Configuration files (relative to the suite file), in order.
    #[serde(default)]
    pub config: Vec<String>,
    /// `--set KEY=VALUE` values, after the suite's.
    #[serde(default)]
    pub set: Vec<String>,
    /// A folder of kubeadm-style patches (relative to the suite file).
    #[serde(default)]
    pub patches: Option<String>,
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub skip: Vec<String>,
    /// A case rendering a control plane this node discovers: its `admin.conf` becomes
    /// `discovery.file.kubeConfigPath`, its CA's pin `discovery.bootstrapToken.caCertHashes`.
    #[serde(default)]
    pub discovery: Option<String>,
    /// Node paths to snapshot (files or folders); the whole tree when empty.
    #[serde(default)]
    pub snapshot: Vec<String>,
}

/// A suite read and checked: every script, file and case it names exists.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The suite file.
    pub file: PathBuf,
    /// The folder it is in: what its paths are relative to.
    pub dir: PathBuf,
    pub suite: Suite,
}

fn usage(message: String) -> Error {
    Error::Usage { message }
}

impl Loaded {
    /// Reads the suite at `path`: a suite file, or a folder holding `kscript-tests.yaml`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let file = if path.is_dir() { path.join(SUITE_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                usage(format!(
                    "no suite at {}: write one (`kscript eject` writes a starter suite; README: \
                     \"Testing a fork\")",
                    file.display()
                ))
            } else {
                Error::io(format!("cannot read {}", file.display()), e)
            }
        })?;
        let suite: Suite =
            serde_saphyr::from_str(&text).map_err(|e| usage(format!("{}: {e}", file.display())))?;
        let dir = file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let loaded = Loaded { file, dir, suite };
        loaded.check()?;
        Ok(loaded)
    }

    fn check(&self) -> Result<(), Error> {
        let at = |case: &Case, what: String| {
            usage(format!("{}: case `{}`: {what}", self.file.display(), case.name))
        };
        if self.suite.cases.is_empty() {
            return Err(usage(format!("{}: no cases", self.file.display())));
        }
        let mut names = BTreeSet::new();
        for case in &self.suite.cases {
            let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if case.name.is_empty() || !case.name.chars().all(valid) || case.name.starts_with('.') {
                return Err(at(
                    case,
                    "a name is letters, digits, `-`, `_` and `.` (it names the snapshot file)".into(),
                ));
            }
            if !names.insert(case.name.as_str()) {
                return Err(at(case, "a second case of that name".into()));
            }
        }
        for case in &self.suite.cases {
            self.script(case).map_err(|e| at(case, e))?;
            for f in &case.config {
                if !self.dir.join(f).is_file() {
                    return Err(at(
                        case,
                        format!("config file {} does not exist", self.dir.join(f).display()),
                    ));
                }
            }
            if let Some(p) = &case.patches
                && !self.dir.join(p).is_dir()
            {
                return Err(at(
                    case,
                    format!("patches folder {} does not exist", self.dir.join(p).display()),
                ));
            }
            if let Some(p) = case.snapshot.iter().find(|p| !p.starts_with('/')) {
                return Err(at(case, format!("snapshot path `{p}` is not a node path (start it with /)")));
            }
            if let Some(d) = &case.discovery {
                if !names.contains(d.as_str()) {
                    return Err(at(
                        case,
                        format!("discovery names `{d}`, which is not a case of this suite"),
                    ));
                }
                // A chain of discoveries must end.
                let mut seen = vec![case.name.as_str()];
                let mut next = Some(d.as_str());
                while let Some(n) = next {
                    if seen.contains(&n) {
                        return Err(at(
                            case,
                            format!("discovery goes round in a circle: {} -> {n}", seen.join(" -> ")),
                        ));
                    }
                    seen.push(n);
                    next = self.case(n).and_then(|c| c.discovery.as_deref());
                }
            }
        }
        let snapshots = self.dir.join(SNAPSHOT_DIR);
        if snapshots.exists() && !snapshots.is_dir() {
            return Err(usage(format!(
                "{} is not a folder: the snapshots of {} go there",
                snapshots.display(),
                self.file.display()
            )));
        }
        Ok(())
    }

    fn case(&self, name: &str) -> Option<&Case> {
        self.suite.cases.iter().find(|c| c.name == name)
    }

    /// The script argument of `kscript run` for a case: a file beside the suite, or a stock
    /// script. In a fork (a folder with `stdlib/` or `.kscript/`) a stock script must be named
    /// `builtin:NAME`, so that a fork's script renamed or deleted is an error, never silently
    /// replaced by the stock one (which would not load the fork's stdlib either).
    pub fn script(&self, case: &Case) -> Result<String, String> {
        let path = self.dir.join(&case.script);
        if path.is_file() {
            return Ok(path.display().to_string());
        }
        let fork = self.dir.join("stdlib").is_dir() || self.dir.join(crate::eject::STATE_DIR).is_dir();
        let builtin = case.script.starts_with("builtin:");
        let stock = crate::stock::script(&case.script).is_some();
        if stock && (builtin || !fork) {
            return Ok(if builtin { case.script.clone() } else { format!("builtin:{}", case.script) });
        }
        if stock {
            return Err(format!(
                "script `{0}` is not a file of this fork ({1}); for the stock script, write `builtin:{0}`",
                case.script,
                self.dir.display()
            ));
        }
        Err(format!(
            "script `{}` is neither a file in {} nor a stock script (`kscript scripts`)",
            case.script,
            self.dir.display()
        ))
    }

    /// Where a case's snapshot is kept.
    pub fn snapshot_path(&self, name: &str) -> PathBuf {
        self.dir.join(SNAPSHOT_DIR).join(format!("{name}.snap"))
    }
}

/// What `kscript test` is asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The suite file, or the folder holding it.
    pub path: PathBuf,
    /// Write the snapshots that differ or are missing, remove those of no case.
    pub accept: bool,
    /// Only these cases (and the cases they discover from); all when empty.
    pub cases: Vec<String>,
    /// How many cases render at once.
    pub jobs: usize,
}

/// How one case compared with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// Differs: the diff, per file.
    Changed(String),
    /// No snapshot yet.
    New,
    /// The render failed, or a case it depends on did.
    Failed(String),
}

/// The result of a suite run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Each case run, in the suite's order.
    pub cases: Vec<(String, Verdict)>,
    /// Snapshot files of no case (not judged when only some cases ran).
    pub orphans: Vec<PathBuf>,
    pub accepted: bool,
}

impl Outcome {
    /// 0 when every case matched (or was accepted) and no case failed; else 1.
    pub fn exit_code(&self) -> u8 {
        let failed = self.cases.iter().any(|(_, v)| matches!(v, Verdict::Failed(_)));
        let differs = self.cases.iter().any(|(_, v)| matches!(v, Verdict::Changed(_) | Verdict::New))
            || !self.orphans.is_empty();
        if failed || (differs && !self.accepted) { EXIT_FAILURE } else { 0 }
    }

    /// The report for people: each case that is not unchanged with its diff or error, then
    /// the summary line.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let count = |f: &dyn Fn(&Verdict) -> bool| self.cases.iter().filter(|(_, v)| f(v)).count();
        for (name, verdict) in &self.cases {
            match verdict {
                Verdict::Unchanged => {
                    let _ = writeln!(out, "ok        {name}");
                }
                Verdict::New if self.accepted => {
                    let _ = writeln!(out, "written   {name} (new snapshot)");
                }
                Verdict::New => {
                    let _ = writeln!(
                        out,
                        "NEW       {name}: no snapshot yet (`kscript test --accept` writes it)"
                    );
                }
                Verdict::Changed(diff) => {
                    let word = if self.accepted { "accepted " } else { "CHANGED  " };
                    let _ = writeln!(out, "{word} {name}");
                    for line in diff.lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                Verdict::Failed(why) => {
                    let _ = writeln!(out, "FAILED    {name}");
                    for line in why.lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
            }
        }
        for p in &self.orphans {
            let word = if self.accepted { "removed  " } else { "ORPHAN   " };
            let _ = writeln!(out, "{word} {}: a snapshot of no case", p.display());
        }
        let _ = write!(
            out,
            "\n{} case{}: {} unchanged, {} changed, {} new, {} failed",
            self.cases.len(),
            if self.cases.len() == 1 { "" } else { "s" },
            count(&|v| *v == Verdict::Unchanged),
            count(&|v| matches!(v, Verdict::Changed(_))),
            count(&|v| *v == Verdict::New),
            count(&|v| matches!(v, Verdict::Failed(_))),
        );
        if !self.orphans.is_empty() {
            let _ = write!(
                out,
                "; {} snapshot{} of no case",
                self.orphans.len(),
                if self.orphans.len() == 1 { "" } else { "s" }
            );
        }
        out.push_str(if self.accepted { " (snapshots written)\n" } else { "\n" });
        out
    }
}

/// Runs a suite: renders its cases (those asked, and the cases they discover from) in
/// parallel, compares each with its snapshot, and with `accept` writes the differing ones.
pub fn run(opts: &Options) -> Result<Outcome, Error> {
    let loaded = Loaded::read(&opts.path)?;
    for name in &opts.cases {
        if loaded.case(name).is_none() {
            let known: Vec<&str> = loaded.suite.cases.iter().map(|c| c.name.as_str()).collect();
            return Err(usage(format!(
                "no case `{name}` in {} (cases: {})",
                loaded.file.display(),
                known.join(", ")
            )));
        }
    }
    let asked: BTreeSet<&str> = if opts.cases.is_empty() {
        loaded.suite.cases.iter().map(|c| c.name.as_str()).collect()
    } else {
        opts.cases.iter().map(String::as_str).collect()
    };
    // What must render: the cases asked and those they discover from.
    let mut needed = asked.clone();
    for name in &asked {
        let mut next = loaded.case(name).and_then(|c| c.discovery.as_deref());
        while let Some(n) = next {
            needed.insert(n);
            next = loaded.case(n).and_then(|c| c.discovery.as_deref());
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("kscript-test-")
        .tempdir()
        .map_err(|e| Error::io("cannot make a temporary folder for the renders", e))?;
    std::fs::create_dir(scratch.path().join(KEYS_DIR))
        .map_err(|e| Error::io("cannot make a folder for the cases' keys", e))?;
    let rendered = render_all(&loaded, &needed, scratch.path(), opts.jobs.max(1));

    let mut cases = Vec::new();
    for case in loaded.suite.cases.iter().filter(|c| asked.contains(c.name.as_str())) {
        let verdict = match &rendered[&case.name] {
            Err(why) => Verdict::Failed(why.clone()),
            Ok(text) => {
                let path = loaded.snapshot_path(&case.name);
                let verdict = match std::fs::read_to_string(&path) {
                    Ok(old) if old == *text => Verdict::Unchanged,
                    Ok(old) => Verdict::Changed(diff(&old, text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Verdict::New,
                    Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
                };
                if opts.accept && verdict != Verdict::Unchanged {
                    write_snapshot(&path, text)?;
                }
                verdict
            }
        };
        cases.push((case.name.clone(), verdict));
    }
    let orphans = if opts.cases.is_empty() { orphans(&loaded)? } else { Vec::new() };
    if opts.accept {
        for p in &orphans {
            std::fs::remove_file(p).map_err(|e| Error::io(format!("cannot remove {}", p.display()), e))?;
        }
    }
    Ok(Outcome { cases, orphans, accepted: opts.accept })
}

/// Snapshot files that belong to no case of the suite.
fn orphans(loaded: &Loaded) -> Result<Vec<PathBuf>, Error> {
    let dir = loaded.dir.join(SNAPSHOT_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(case) = name.strip_suffix(".snap")
            && loaded.case(case).is_none()
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn write_snapshot(path: &Path, text: &str) -> Result<(), Error> {
    crate::eject::write_file(path, text)
}

/// Renders the `needed` cases, each once the case it discovers from is rendered, `jobs` at a
/// time; each case's snapshot text, or why it has none.
fn render_all(
    loaded: &Loaded,
    needed: &BTreeSet<&str>,
    scratch: &Path,
    jobs: usize,
) -> BTreeMap<String, Result<String, String>> {
    let mut done: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    let mut pending: Vec<&Case> =
        loaded.suite.cases.iter().filter(|c| needed.contains(c.name.as_str())).collect();
    // The first case renders alone: the keys it makes (in parallel) are then shared by the
    // others rather than made again by each of those running beside it.
    let mut first = true;
    while !pending.is_empty() {
        let (ready, waiting): (Vec<&Case>, Vec<&Case>) =
            pending.into_iter().partition(|c| c.discovery.as_ref().is_none_or(|d| done.contains_key(d)));
        pending = waiting;
        let width = if std::mem::take(&mut first) { 1 } else { jobs };
        let ready_now: Vec<&Case> = ready.iter().take(width).copied().collect();
        pending.extend(ready.iter().skip(width).copied());
        let results: Vec<(String, Result<String, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ready_now
                .iter()
                .map(|case| {
                    let dep = case.discovery.as_ref().map(|d| (d.clone(), done[d].is_ok()));
                    s.spawn(move || {
                        let result = match dep {
                            Some((d, false)) => Err(format!("the case it discovers from, `{d}`, failed")),
                            _ => render(loaded, case, scratch),
                        };
                        (case.name.clone(), result)
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(&ready_now)
                .map(|(h, case)| {
                    h.join().unwrap_or_else(|_| {
                        (case.name.clone(), Err("kscript test itself failed here (a panic)".into()))
                    })
                })
                .collect()
        });
        done.extend(results);
    }
    done
}

/// Renders one case into `scratch/NAME` and returns its snapshot text.
fn render(loaded: &Loaded, case: &Case, scratch: &Path) -> Result<String, String> {
    let root = scratch.join(&case.name);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the kscript binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg(loaded.script(case)?).arg("--root").arg(&root);
    for f in &case.config {
        cmd.arg("--config").arg(loaded.dir.join(f));
    }
    for s in loaded.suite.set.iter().chain(&case.set) {
        cmd.arg("--set").arg(s);
    }
    if let Some(d) = &case.discovery {
        let admin = scratch.join(d).join("etc/kubernetes/admin.conf");
        let pin = discovered_pin(&admin).map_err(|e| format!("the case it discovers from, `{d}`: {e}"))?;
        cmd.arg("--set").arg(format!("discovery.file.kubeConfigPath={}", admin.display()));
        cmd.arg("--set").arg(format!("discovery.bootstrapToken.caCertHashes=[{pin}]"));
    }
    if let Some(p) = &case.patches {
        cmd.arg("--patches").arg(loaded.dir.join(p));
    }
    for o in &case.only {
        cmd.arg("--only").arg(o);
    }
    for s in &case.skip {
        cmd.arg("--skip").arg(s);
    }
    cmd.env("KSCRIPT_TEST_NOW", CLOCK.to_string())
        .env(crate::api::pki::REUSE_KEYS, scratch.join(KEYS_DIR))
        .env("NO_COLOR", "1");
    for v in REAL_COMPONENTS {
        cmd.env_remove(v);
    }
    let out = cmd.output().map_err(|e| format!("cannot run kscript: {e}"))?;
    if !out.status.success() {
        let code = out.status.code().map_or_else(|| "a signal".to_string(), |c| c.to_string());
        return Err(format!(
            "`kscript run` ended with {code}:\n{}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    if let Some(p) = case
        .snapshot
        .iter()
        .find(|p| std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_err())
    {
        return Err(format!(
            "snapshot path {p} is not in the render: a path that selects nothing would never fail"
        ));
    }
    let text =
        crate::snapshot::node(&root, &case.snapshot).map_err(|e| format!("cannot read the render: {e}"))?;
    Ok(format!(
        "# kscript test: case `{}` ({}); `kscript test --accept` rewrites this file.\n{text}",
        case.name, case.script
    ))
}

/// The pin of the CA a control plane's `admin.conf` trusts (what file discovery trusts too).
fn discovered_pin(admin: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(admin).map_err(|e| format!("no {}: {e}", admin.display()))?;
    let (ca, _) = crate::bootstrap::kubeconfig_ca(&text).map_err(|e| format!("{}: {e}", admin.display()))?;
    crate::pki::ca_pin(&ca).map_err(|e| format!("{}: {e}", admin.display()))
}

/// The difference of two snapshot texts, file by file: for each file (or object) that
/// differs, its name and a unified diff of its content with line numbers of the file itself;
/// files only on one side are named as added or gone.
pub fn diff(old: &str, new: &str) -> String {
    let old_sections = crate::snapshot::sections(old);
    let new_sections = crate::snapshot::sections(new);
    let find =
        |list: &[(String, String)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
    let mut names: Vec<&String> = new_sections.iter().map(|(n, _)| n).collect();
    for (n, _) in &old_sections {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = String::new();
    let order = |list: &[(String, String)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    for name in names {
        let shown = if name.is_empty() { "(header)" } else { name.as_str() };
        match (find(&old_sections, name), find(&new_sections, name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                let (a_head, a_body) = a.split_once('\n').unwrap_or((&a, ""));
                let (b_head, b_body) = b.split_once('\n').unwrap_or((&b, ""));
                let _ = writeln!(out, "{shown}:");
                if a_head != b_head {
                    let _ = writeln!(out, "-{a_head}\n+{b_head}");
                }
                if a_body != b_body {
                    let text = similar::TextDiff::from_lines(a_body, b_body)
                        .unified_diff()
                        .context_radius(3)
                        .header(&format!("snapshot {shown}"), &format!("rendered {shown}"))
                        .to_string();
                    out.push_str(&text);
                }
            }
            (Some(_), None) => {
                let _ = writeln!(out, "{shown}: in the snapshot, not rendered any more");
            }
            (None, Some(b)) => {
                let _ = writeln!(out, "{shown}: new, not in the snapshot");
                for line in b.lines().skip(1) {
                    let _ = writeln!(out, "+{line}");
                }
            }
            (None, None) => {}
        }
    }
    if out.is_empty() && order(&old_sections) != order(&new_sections) {
        out.push_str("the same files and objects, in another order\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_each_file_and_its_lines() {
        let old = "# h\n=== /etc/a (0644)\none\ntwo\nthree\n=== /etc/b (0644)\nb\n=== /etc/gone (0644)\nx\n";
        let new = "# h\n=== /etc/a (0600)\none\nTWO\nthree\n=== /etc/b (0644)\nb\n=== /etc/new (0644)\nn\n";
        let d = diff(old, new);
        assert!(d.contains("/etc/a:\n-=== /etc/a (0644)\n+=== /etc/a (0600)\n"), "{d}");
        assert!(d.contains("@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"), "{d}");
        assert!(!d.contains("/etc/b"), "{d}");
        assert!(d.contains("/etc/gone: in the snapshot, not rendered any more"), "{d}");
        assert!(d.contains("/etc/new: new, not in the snapshot\n+n\n"), "{d}");
    }
}
