//! The journal: every effect of a run recorded as data.
//!
//! Each entry says which stage and step did what to which target, and how it came out. The
//! runner appends the entries of each finished step to `/var/lib/kscript/journal.jsonl` under
//! the node root (never in a dry run), one JSON object a line, so `kscript tree` can tell which
//! stage wrote each file, also after a run that was interrupted.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the journal lives, as a node path.
pub const JOURNAL_PATH: &str = "/var/lib/kscript/journal.jsonl";

/// How an effect or a step came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Already as wanted: nothing done.
    Ok,
    /// Something was changed (or, in a dry run, would be).
    Changed,
    /// Not run: deselected, or the step skipped itself.
    Skipped,
    /// Tried and failed.
    Failed,
    /// Recorded, not carried out (a host command while rendering or in a dry run).
    Recorded,
    /// Expected to be created by another actor (containerd's socket, kubelet's certificates).
    Expected,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Recorded => "recorded",
            Outcome::Expected => "expected",
        })
    }
}

/// One recorded effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub stage: String,
    /// 1-based position of the stage in its script.
    pub stage_index: usize,
    pub step: String,
    /// What was done: `file`, `dir`, `symlink`, `remove`, `run`, `expect`, `handler`, ...
    pub action: String,
    /// A node path, a command line, a unit name: what the action was done to.
    pub target: String,
    pub outcome: Outcome,
    /// A short, credential-free note (`mode 0644 -> 0600`, `created by containerd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Entry {
    /// Whether it records kscript writing its target (a file, a folder, a parent folder).
    pub fn is_write(&self) -> bool {
        matches!(self.action.as_str(), "file" | "dir" | "parent")
            && matches!(self.outcome, Outcome::Ok | Outcome::Changed)
    }

    /// Whether its target is kscript's: kscript wrote it, or expected another actor to make
    /// it as part of the run (`expect`: kubelet.conf, which the kubelet writes after TLS
    /// bootstrap on a worker). Preflight tells kscript's own node from a foreign one by this.
    pub fn makes_target(&self) -> bool {
        self.is_write() || (self.action == "expect" && self.outcome == Outcome::Expected)
    }
}

/// The entries of one run, in order.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Vec<Entry>,
    /// How many entries were already appended to the file.
    flushed: usize,
}

impl Journal {
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Whether this run wrote node path `path`, or expected another actor to make it.
    pub fn made(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.target == path && e.makes_target())
    }

    /// Appends the entries not yet written to the journal file at `host_path`.
    pub fn flush_to(&mut self, host_path: &Path) -> io::Result<()> {
        if self.flushed == self.entries.len() {
            return Ok(());
        }
        if let Some(dir) = host_path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut out = String::new();
        for e in &self.entries[self.flushed..] {
            out.push_str(&serde_json::to_string(e).map_err(io::Error::other)?);
            out.push('\n');
        }
        let mut f = OpenOptions::new().create(true).append(true).open(host_path)?;
        f.write_all(out.as_bytes())?;
        self.flushed = self.entries.len();
        Ok(())
    }
}

/// Reads a journal file; lines that do not parse (a torn last line) are passed over.
pub fn read(host_path: &Path) -> io::Result<Vec<Entry>> {
    let f = match fs::File::open(host_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for line in io::BufReader::new(f).lines() {
        if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
            entries.push(e);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_incrementally_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j/journal.jsonl");
        let mut j = Journal::default();
        let e = |t: &str| Entry {
            stage: "s".into(),
            stage_index: 1,
            step: "x".into(),
            action: "file".into(),
            target: t.into(),
            outcome: Outcome::Changed,
            detail: None,
        };
        j.push(e("/a"));
        j.flush_to(&path).unwrap();
        j.push(e("/b"));
        j.flush_to(&path).unwrap();
        j.flush_to(&path).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
        fs::write(&path, format!("{}\n{{torn", fs::read_to_string(&path).unwrap())).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
    }
}
