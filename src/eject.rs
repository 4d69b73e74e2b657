//! `kscript eject`: a fork of the stock scripts; and `kscript eject --upgrade`: that fork brought
//! up to this kscript's stock scripts, file by file, with a three-way merge where both sides
//! changed a file.
//!
//! Eject writes, beside the scripts and `stdlib/`, a `.kscript/` folder: `eject.yaml` (the
//! kscript version and the SHA-256 of each stock file written) and `stock/`, the stock files as
//! they were ejected. Those copies are the common ancestor an upgrade needs: without them a
//! change in the fork cannot be told from a change upstream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::pki::hex;
use crate::stock::{SCRIPTS, STDLIB};

/// kscript's own folder inside a fork.
pub const STATE_DIR: &str = ".kscript";
/// The record of what was ejected, relative to the fork.
pub const MANIFEST: &str = ".kscript/eject.yaml";
/// The stock files as ejected (the merge base), relative to the fork.
pub const BASE_DIR: &str = ".kscript/stock";

/// Where an upgrade puts a new stock file whose name a fork's own file has, relative to the fork.
pub const INCOMING_DIR: &str = ".kscript/incoming";

/// The marker that opens a conflict an upgrade could not resolve.
const CONFLICT_OPEN: &str = "<<<<<<< ";

/// What `eject` recorded: which kscript wrote the fork, and the hash of each stock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The kscript version whose stock files the fork is based on.
    pub kscript: String,
    /// Each stock file, relative to the fork (`control-plane.rhai`, `stdlib/node.rhai`), and
    /// `sha256:HEX` of its text as ejected.
    pub files: BTreeMap<String, String>,
}

/// The stock files a fork holds, by their path relative to the fork.
pub fn stock_files() -> BTreeMap<String, &'static str> {
    SCRIPTS
        .iter()
        .map(|e| (e.name.to_string(), e.text))
        .chain(STDLIB.iter().map(|e| (format!("stdlib/{}", e.name), e.text)))
        .collect()
}

fn sha256(text: &str) -> String {
    format!("sha256:{}", hex(digest::digest(&digest::SHA256, text.as_bytes()).as_ref()))
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then renamed.
/// A file that holds `text` already is left as it is; one that is replaced keeps its mode, and
/// a new one is 0644 (a fork is text for people and CI to read).
pub(crate) fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt as _;
    if read_optional(path)?.as_deref() == Some(text) {
        return Ok(());
    }
    let parent = path.parent().expect("a file inside a folder");
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| Error::io(format!("cannot write in {}", parent.display()), e))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .and_then(|()| tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    tmp.persist(path).map_err(|e| Error::io(format!("cannot write {}", path.display()), e.error))?;
    Ok(())
}

fn remove_file(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("cannot remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Reads a fork file; `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), Error> {
    let yaml = serde_saphyr::to_string(manifest)
        .map_err(|e| Error::Usage { message: format!("cannot write {MANIFEST}: {e}") })?;
    let text = format!(
        "# Written by `kscript eject`, read by `kscript eject --upgrade`: the kscript version this\n\
         # fork's stock files come from, and the hash of each as ejected (their text: stock/).\n{yaml}"
    );
    write_file(&dir.join(MANIFEST), &text)
}

/// Reads a fork's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
    let path = dir.join(MANIFEST);
    let text = read_optional(&path)?.ok_or_else(|| Error::Usage {
        message: format!(
            "{} is not a fork kscript can upgrade: {} is missing (it is written by `kscript eject`). \
             Eject into a new folder and compare it with yours instead",
            dir.display(),
            path.display()
        ),
    })?;
    serde_saphyr::from_str(&text).map_err(|e| Error::Usage { message: format!("{}: {e}", path.display()) })
}

/// Writes the stock scripts into `dir` and the stdlib into `dir/stdlib`, for forking, with the
/// record an upgrade needs in `dir/.kscript`. Refuses to overwrite a file unless `force`;
/// writes nothing if any file is in the way.
pub fn eject(dir: &Path, force: bool) -> Result<Vec<PathBuf>, Error> {
    let files = stock_files();
    if !force {
        let existing: Vec<String> = files
            .keys()
            .map(|rel| dir.join(rel))
            .chain([dir.join(MANIFEST)])
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "not ejecting: these files exist already (use --force to overwrite them, or \
                     --upgrade to bring a fork up to this kscript): {}",
                    existing.join(", ")
                ),
            });
        }
    }
    let mut written = Vec::new();
    for (rel, text) in &files {
        let path = dir.join(rel);
        write_file(&path, text)?;
        write_file(&dir.join(BASE_DIR).join(rel), text)?;
        written.push(path);
    }
    let manifest = Manifest {
        kscript: env!("CARGO_PKG_VERSION").to_string(),
        files: files.iter().map(|(rel, text)| (rel.clone(), sha256(text))).collect(),
    };
    write_manifest(dir, &manifest)?;
    written.push(dir.join(MANIFEST));
    Ok(written)
}

/// The snapshot suite `eject` starts a fork with.
pub const STARTER_SUITE: &str = include_str!("starter-suite.yaml");

/// Writes the starter suite into a fresh fork and its snapshots (rendered by this binary);
/// a fork that has a suite keeps it. Returns the suite's path when one was written.
pub fn starter_suite(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let path = dir.join(crate::suite::SUITE_FILE);
    if path.exists() {
        return Ok(None);
    }
    write_file(&path, STARTER_SUITE)?;
    let jobs = std::thread::available_parallelism().map_or(2, usize::from);
    let outcome = crate::suite::run(&crate::suite::Options {
        path: path.clone(),
        accept: true,
        cases: Vec::new(),
        jobs,
    })?;
    if outcome.exit_code() != 0 {
        return Err(Error::Usage {
            message: format!("the starter suite did not render: {}", outcome.describe()),
        });
    }
    Ok(Some(path))
}

/// What an upgrade does with one stock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Changed upstream only: the new stock text is taken as it is.
    Take,
    /// Changed in the fork only: the fork's text is kept.
    Keep,
    /// Changed in both, merged without conflict.
    Merge,
    /// Changed in both with overlapping changes: written with this many conflicts marked.
    Conflict(usize),
    /// New upstream: added to the fork.
    Add,
    /// Removed upstream and unchanged in the fork: removed.
    Remove,
    /// Removed upstream but changed in the fork: kept (the stock scripts no longer use it).
    KeepRemoved,
    /// Deleted in the fork: stays deleted (whether or not upstream changed it).
    StayDeleted { changed_upstream: bool },
    /// New upstream, but the fork has a file of its own by that name: the fork's stays, the
    /// stock text is put in `.kscript/incoming/` for the fork's owner to compare.
    Clash,
}

/// One stock file's verdict, and its text after the upgrade (`None`: no file).
#[derive(Debug, Clone)]
pub struct FileUpgrade {
    pub rel: String,
    pub action: Action,
    pub text: Option<String>,
}

/// An upgrade worked out, before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub from: String,
    pub to: String,
    /// The files that change or need saying, in path order.
    pub files: Vec<FileUpgrade>,
    /// How many stock files need nothing.
    pub unchanged: usize,
    /// The upgraded stock files' texts (the new merge base), by path.
    stock: BTreeMap<String, &'static str>,
}

impl Plan {
    /// How many conflicts the upgrade leaves marked in the fork.
    pub fn conflicts(&self) -> usize {
        self.files.iter().map(|f| if let Action::Conflict(n) = f.action { n } else { 0 }).sum()
    }
}

/// Merges `ours` and `theirs` from `base`: `Ok` when clean, `Err((text, conflicts))` with the
/// conflicts marked (the fork's side first, then the common base, then the stock side).
pub fn merge3(base: &str, ours: &str, theirs: &str, from: &str, to: &str) -> Result<String, (String, usize)> {
    let mut options = diffy::MergeOptions::new();
    options.set_conflict_style(diffy::ConflictStyle::Diff3);
    match options.merge(base, ours, theirs) {
        Ok(text) => Ok(text),
        Err(marked) => {
            let mut conflicts = 0;
            let text: String = marked
                .split_inclusive('\n')
                .map(|line| match line.trim_end_matches('\n') {
                    "<<<<<<< ours" => {
                        conflicts += 1;
                        format!("{CONFLICT_OPEN}fork\n")
                    }
                    "||||||| original" => format!("||||||| stock kscript {from}\n"),
                    ">>>>>>> theirs" => format!(">>>>>>> stock kscript {to}\n"),
                    _ => line.to_string(),
                })
                .collect();
            Err((text, conflicts))
        }
    }
}

/// Works out what upgrading the fork in `dir` to this kscript's stock files does, writing
/// nothing. Fails when the fork has no manifest, when a recorded base copy was altered, or
/// when a stock file still holds the conflicts of an earlier upgrade.
pub fn plan(dir: &Path) -> Result<Plan, Error> {
    let manifest = read_manifest(dir)?;
    let to = env!("CARGO_PKG_VERSION").to_string();
    let stock = stock_files();
    let mut names: Vec<&String> = manifest.files.keys().chain(stock.keys()).collect();
    names.sort();
    names.dedup();
    let mut files = Vec::new();
    let mut unchanged = 0;
    for rel in names {
        let base = match manifest.files.get(rel) {
            None => None,
            Some(hash) => {
                let path = dir.join(BASE_DIR).join(rel);
                let text =
                    read_optional(&path)?.filter(|t| sha256(t) == *hash).ok_or_else(|| Error::Usage {
                        message: format!(
                            "{} is missing or was changed since kscript wrote it: it is the stock text \
                         {rel} was ejected from, which an upgrade merges from. Restore it (from \
                         version control) and run the upgrade again",
                            path.display()
                        ),
                    })?;
                Some(text)
            }
        };
        let ours = read_optional(&dir.join(rel))?;
        if ours.as_deref().is_some_and(|o| o.lines().any(|l| l.starts_with(CONFLICT_OPEN))) {
            return Err(Error::Usage {
                message: format!(
                    "{} still holds conflict markers ({CONFLICT_OPEN}…): resolve them, then upgrade",
                    dir.join(rel).display()
                ),
            });
        }
        let theirs = stock.get(rel).copied();
        let decided = decide(base.as_deref(), ours.as_deref(), theirs, &manifest.kscript, &to);
        match decided {
            None => unchanged += 1,
            Some((action, text)) => files.push(FileUpgrade { rel: rel.clone(), action, text }),
        }
    }
    Ok(Plan { from: manifest.kscript, to, files, unchanged, stock })
}

/// One file's verdict from its three versions; `None` when nothing is to be done or said.
fn decide(
    base: Option<&str>,
    ours: Option<&str>,
    theirs: Option<&str>,
    from: &str,
    to: &str,
) -> Option<(Action, Option<String>)> {
    let owned = |t: &str| Some(t.to_string());
    match (base, ours, theirs) {
        (_, None, None) | (None, Some(_), None) => None,
        (Some(b), None, t) => Some((Action::StayDeleted { changed_upstream: t != Some(b) }, None)),
        (None, None, Some(t)) => Some((Action::Add, owned(t))),
        (None, Some(o), Some(t)) if o != t => Some((Action::Clash, owned(t))),
        (Some(b), Some(o), None) if o == b => Some((Action::Remove, None)),
        (Some(_), Some(o), None) => Some((Action::KeepRemoved, owned(o))),
        (b, Some(o), Some(t)) => {
            let b = b.unwrap_or("");
            if o == t || t == b {
                if o == b || o == t { None } else { Some((Action::Keep, owned(o))) }
            } else if o == b {
                Some((Action::Take, owned(t)))
            } else {
                match merge3(b, o, t, from, to) {
                    Ok(merged) => Some((Action::Merge, Some(merged))),
                    Err((marked, n)) => Some((Action::Conflict(n), Some(marked))),
                }
            }
        }
    }
}

/// Carries out a plan: writes or removes each fork file, and moves the recorded base to the
/// new stock files. The record is written after each file, so an interrupted upgrade, run
/// again, finds each file either done or as it was.
pub fn apply(dir: &Path, plan: &Plan) -> Result<(), Error> {
    let mut manifest = read_manifest(dir)?;
    for f in &plan.files {
        let path = dir.join(&f.rel);
        match (&f.action, &f.text) {
            (Action::Keep | Action::KeepRemoved | Action::StayDeleted { .. }, _) => {}
            (Action::Clash, Some(text)) => write_file(&dir.join(INCOMING_DIR).join(&f.rel), text)?,
            (_, Some(text)) => write_file(&path, text)?,
            (_, None) => remove_file(&path)?,
        }
        record_base(dir, &mut manifest, &f.rel, plan.stock.get(&f.rel).copied())?;
    }
    // Files nobody changed still move their base to this version (same text, same hash).
    for (rel, text) in &plan.stock {
        if !plan.files.iter().any(|f| &f.rel == rel) {
            record_base(dir, &mut manifest, rel, Some(text))?;
        }
    }
    manifest.kscript.clone_from(&plan.to);
    write_manifest(dir, &manifest)
}

fn record_base(dir: &Path, manifest: &mut Manifest, rel: &str, stock: Option<&str>) -> Result<(), Error> {
    let path = dir.join(BASE_DIR).join(rel);
    if let Some(text) = stock {
        if manifest.files.get(rel) == Some(&sha256(text)) {
            return Ok(());
        }
        write_file(&path, text)?;
        manifest.files.insert(rel.to_string(), sha256(text));
    } else {
        remove_file(&path)?;
        manifest.files.remove(rel);
    }
    write_manifest(dir, manifest)
}

/// The plan as lines for people: one per file that changes or needs saying, then the count of
/// files that need nothing.
pub fn describe(plan: &Plan, dry_run: bool) -> String {
    let mut out = format!(
        "{} the fork from kscript {} to {}:\n",
        if dry_run { "Would upgrade" } else { "Upgraded" },
        plan.from,
        plan.to
    );
    for f in &plan.files {
        let (word, why) = match &f.action {
            Action::Take => ("take", "changed upstream only: the new stock text, as it is".to_string()),
            Action::Keep => ("keep", "changed in the fork only: kept".to_string()),
            Action::Merge => ("merge", "changed in both: merged without conflict".to_string()),
            Action::Conflict(n) => (
                "CONFLICT",
                format!(
                    "changed in both: {n} conflict{} marked between `{CONFLICT_OPEN}fork` and \
                     `>>>>>>> stock kscript {}`; resolve by hand",
                    if *n == 1 { "" } else { "s" },
                    plan.to
                ),
            ),
            Action::Add => ("add", "new upstream: added".to_string()),
            Action::Clash => (
                "CLASH",
                format!(
                    "new upstream, and the fork has its own file of that name: kept; the stock text is \
                     in {INCOMING_DIR}/{} (your file shadows the stock one)",
                    f.rel
                ),
            ),
            Action::Remove => ("remove", "removed upstream, unchanged in the fork: removed".to_string()),
            Action::KeepRemoved => (
                "keep",
                "removed upstream, changed in the fork: kept, though stock scripts no longer use it".into(),
            ),
            Action::StayDeleted { changed_upstream: true } => {
                ("deleted", "deleted in the fork, changed upstream: stays deleted".to_string())
            }
            Action::StayDeleted { changed_upstream: false } => {
                ("deleted", "deleted in the fork: stays deleted".to_string())
            }
        };
        out.push_str(&format!("  {word:<9} {:<28} {why}\n", f.rel));
    }
    out.push_str(&format!(
        "{} stock file{} unchanged on both sides.\n",
        plan.unchanged,
        if plan.unchanged == 1 { "" } else { "s" }
    ));
    if plan.conflicts() > 0 {
        out.push_str(&format!(
            "{} conflict{} to resolve; then `kscript check` and `kscript test` the fork.\n",
            plan.conflicts(),
            if plan.conflicts() == 1 { "" } else { "s" }
        ));
    } else if !plan.files.is_empty() && !dry_run {
        out.push_str(
            "Then `kscript check` and `kscript test` the fork: its own scripts may use what changed.\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "a\nb\nc\nd\ne\n";

    fn decided(
        base: Option<&str>,
        ours: Option<&str>,
        theirs: Option<&str>,
    ) -> Option<(Action, Option<String>)> {
        decide(base, ours, theirs, "0.1.0", "0.2.0")
    }

    #[test]
    fn the_four_cases_of_a_file_both_sides_have() {
        // Unchanged on both sides: nothing.
        assert_eq!(decided(Some(BASE), Some(BASE), Some(BASE)), None);
        // Changed upstream only: taken as is.
        let theirs = "a\nB\nc\nd\ne\n";
        assert_eq!(decided(Some(BASE), Some(BASE), Some(theirs)), Some((Action::Take, Some(theirs.into()))));
        // Changed in the fork only: kept.
        let ours = "a\nb\nc\nD\ne\n";
        assert_eq!(decided(Some(BASE), Some(ours), Some(BASE)), Some((Action::Keep, Some(ours.into()))));
        // Changed in both, apart: merged.
        assert_eq!(
            decided(Some(BASE), Some(ours), Some(theirs)),
            Some((Action::Merge, Some("a\nB\nc\nD\ne\n".into())))
        );
        // Changed in both, the same line: conflict markers, never a silent overwrite.
        let (action, text) = decided(Some(BASE), Some("a\nb\nX\nd\ne\n"), Some("a\nb\nY\nd\ne\n")).unwrap();
        assert_eq!(action, Action::Conflict(1));
        assert_eq!(
            text.unwrap(),
            "a\nb\n<<<<<<< fork\nX\n||||||| stock kscript 0.1.0\nc\n=======\nY\n>>>>>>> stock kscript 0.2.0\nd\ne\n"
        );
        // The same change on both sides: nothing to do.
        assert_eq!(decided(Some(BASE), Some(theirs), Some(theirs)), None);
    }

    #[test]
    fn added_removed_and_deleted_files() {
        assert_eq!(decided(None, None, Some("new\n")), Some((Action::Add, Some("new\n".into()))));
        assert_eq!(decided(Some(BASE), Some(BASE), None), Some((Action::Remove, None)));
        assert_eq!(
            decided(Some(BASE), Some("mine\n"), None),
            Some((Action::KeepRemoved, Some("mine\n".into())))
        );
        assert_eq!(
            decided(Some(BASE), None, Some(BASE)),
            Some((Action::StayDeleted { changed_upstream: false }, None))
        );
        assert_eq!(
            decided(Some(BASE), None, Some("a\n")),
            Some((Action::StayDeleted { changed_upstream: true }, None))
        );
        // A fork's own file that a new stock file now names: never merged with it, kept.
        assert_eq!(
            decided(None, Some("mine\n"), Some("theirs\n")),
            Some((Action::Clash, Some("theirs\n".into())))
        );
        assert_eq!(decided(None, Some("same\n"), Some("same\n")), None);
        // A fork's own file that stock never had is not ours to judge.
        assert_eq!(decided(None, Some("mine\n"), None), None);
    }
}
