//! The journal: every effect of a run recorded as data.
//!
//! Each entry says which stage and step did what to which target, and how it came out. The
//! runner appends the entries of each finished step to `/var/lib/kscript/journal.jsonl` under
//! the node root (never in a dry run), one JSON object a line, so `kscript tree` can tell which
//! stage wrote each file, also after a run that was interrupted.
//!
//! Durability: a step's entries are appended when it ends, but its files are synced to disk
//! once per stage (one `syncfs` instead of one per step, which is most of a fresh render's
//! time on a disk). Until then its entries carry the boot they were written in (`unsynced`);
//! the stage's sync is followed by a `{"synced": BOOT}` line. A reader trusts an unsynced
//! entry only if a `synced` line follows it, or if the machine has not restarted since (the
//! page cache, which holds what a killed run wrote, survives anything but a restart). So an
//! entry a reader trusts never names an effect a crash could have undone.

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
    /// For a write that changed something (`file`, `dir`, `parent`, `symlink`): whether
    /// nothing was at the target before, so kscript created it (`false`: it changed what was
    /// there). Reset removes what kscript created and keeps what it found (see [`paths`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
    /// The boot (`/proc/sys/kernel/random/boot_id`) in which the entry was appended before
    /// its effects were synced to disk; `None` once synced, or when appended after the sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsynced: Option<String>,
}

/// The line that follows a sync: every entry above it is on disk.
#[derive(Serialize, Deserialize)]
struct Synced {
    synced: String,
}

/// This machine's boot id: it changes with every restart, and only then.
pub fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
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

/// What the journal says kscript did to one node path: see [`paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRecord {
    pub path: String,
    /// `file`, `dir`, `symlink`, or `expected` (made by another actor).
    pub kind: &'static str,
    pub state: PathState,
    /// The stage and step of the first entry that names it (since its last removal).
    pub stage: String,
    pub stage_index: usize,
    pub step: String,
    /// For an expected path, who makes it (`the kubelet (TLS bootstrap)`).
    pub by: Option<String>,
}

/// How a node path came to be what it is, by the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing was there: kscript made it.
    Created,
    /// Something was there and kscript changed it (content, mode or owner).
    Changed,
    /// It was there as kscript wanted it, and kscript left it alone (a CA the user put in
    /// place before init).
    Found,
    /// Another actor makes it as part of kscript's run (the kubelet's certificates).
    Expected,
}

impl PathState {
    pub fn name(self) -> &'static str {
        match self {
            PathState::Created => "created",
            PathState::Changed => "changed",
            PathState::Found => "found",
            PathState::Expected => "expected",
        }
    }
}

/// Every node path the journal says kscript wrote, found as wanted, or expected another actor
/// to make, in the order first named, as it stands after the last entry: a `remove` of a path
/// (or of a folder above it) forgets what came before, so a node that was reset and built
/// again is described by its second build alone. A path first found as wanted and later
/// changed is `Changed`; one made again after something else removed it is `Created`.
pub fn paths(entries: &[Entry]) -> Vec<PathRecord> {
    let mut out: Vec<PathRecord> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in entries {
        let kind = match e.action.as_str() {
            "file" => "file",
            "dir" | "parent" => "dir",
            "symlink" => "symlink",
            "expect" if e.outcome == Outcome::Expected => "expected",
            "remove" if matches!(e.outcome, Outcome::Changed | Outcome::Ok) => {
                let below = format!("{}/", e.target.trim_end_matches('/'));
                out.retain(|r| r.path != e.target && !r.path.starts_with(&below));
                index = out.iter().enumerate().map(|(i, r)| (r.path.clone(), i)).collect();
                continue;
            }
            _ => continue,
        };
        if kind != "expected" && !matches!(e.outcome, Outcome::Ok | Outcome::Changed) {
            continue;
        }
        let state = match (kind, e.outcome, e.created) {
            ("expected", _, _) => PathState::Expected,
            (_, Outcome::Changed, true) => PathState::Created,
            (_, Outcome::Changed, false) => PathState::Changed,
            _ => PathState::Found,
        };
        if let Some(&i) = index.get(&e.target) {
            let r = &mut out[i];
            r.state = match (r.state, state) {
                (_, PathState::Created) => PathState::Created,
                (PathState::Found | PathState::Expected, PathState::Changed) => PathState::Changed,
                (now, _) => now,
            };
            if kind != "expected" {
                r.kind = kind;
            }
            continue;
        }
        index.insert(e.target.clone(), out.len());
        out.push(PathRecord {
            path: e.target.clone(),
            kind,
            state,
            stage: e.stage.clone(),
            stage_index: e.stage_index,
            step: e.step.clone(),
            by: (kind == "expected")
                .then(|| e.detail.as_deref().unwrap_or("").trim_start_matches("created by ").to_string()),
        });
    }
    out
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

    /// The entries so far, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether this run wrote node path `path`, or expected another actor to make it.
    pub fn made(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.target == path && e.makes_target())
    }

    /// Appends the entries not yet written to the journal file at `host_path`; with
    /// `unsynced` (this boot's id), they are marked as written before their effects were
    /// synced. Returns whether it appended any.
    pub fn flush_to(&mut self, host_path: &Path, unsynced: Option<&str>) -> io::Result<bool> {
        if self.flushed == self.entries.len() {
            return Ok(false);
        }
        let mut out = String::new();
        for e in &mut self.entries[self.flushed..] {
            e.unsynced = unsynced.map(String::from);
            out.push_str(&serde_json::to_string(e).map_err(io::Error::other)?);
            out.push('\n');
        }
        append(host_path, &out)?;
        self.flushed = self.entries.len();
        Ok(true)
    }

    /// Appends the line saying that the effects of every entry above it, written in boot
    /// `boot`, are on disk (the runner writes it after the stage's sync).
    pub fn mark_synced(host_path: &Path, boot: &str) -> io::Result<()> {
        let line = serde_json::to_string(&Synced { synced: boot.to_string() }).map_err(io::Error::other)?;
        append(host_path, &(line + "\n"))
    }
}

fn append(host_path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = host_path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut f = OpenOptions::new().create(true).append(true).open(host_path)?;
    f.write_all(text.as_bytes())
}

/// Reads a journal file: the entries it can trust (see the module's comment), in order;
/// lines that do not parse (a torn last line) are passed over.
pub fn read(host_path: &Path) -> io::Result<Vec<Entry>> {
    read_in_boot(host_path, boot_id().as_deref())
}

/// [`read`], as a reader in boot `boot` sees the file.
fn read_in_boot(host_path: &Path, boot: Option<&str>) -> io::Result<Vec<Entry>> {
    let f = match fs::File::open(host_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    // Unsynced entries wait here for the `synced` line that vouches for them.
    let mut pending: Vec<Entry> = Vec::new();
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            if e.unsynced.is_some() { pending.push(e) } else { entries.push(e) }
        } else if let Ok(s) = serde_json::from_str::<Synced>(&line) {
            let (done, other): (Vec<Entry>, Vec<Entry>) =
                pending.into_iter().partition(|e| e.unsynced.as_deref() == Some(s.synced.as_str()));
            entries.extend(done.into_iter().map(|mut e| {
                e.unsynced = None;
                e
            }));
            pending = other;
        }
    }
    // What no sync vouches for is trusted only while the machine has not restarted since.
    entries.extend(pending.into_iter().filter(|e| boot.is_some() && e.unsynced.as_deref() == boot).map(
        |mut e| {
            e.unsynced = None;
            e
        },
    ));
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
            created: false,
            unsynced: None,
        };
        j.push(e("/a"));
        assert!(j.flush_to(&path, None).unwrap());
        j.push(e("/b"));
        assert!(j.flush_to(&path, None).unwrap());
        assert!(!j.flush_to(&path, None).unwrap(), "nothing new to append");
        let back = read(&path).unwrap();
        assert_eq!(back.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
        fs::write(&path, format!("{}\n{{torn", fs::read_to_string(&path).unwrap())).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
    }

    fn entry(target: &str) -> Entry {
        Entry {
            stage: "s".into(),
            stage_index: 1,
            step: "x".into(),
            action: "file".into(),
            target: target.into(),
            outcome: Outcome::Changed,
            detail: None,
            created: false,
            unsynced: None,
        }
    }

    fn targets(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.target.as_str()).collect()
    }

    /// Entries appended before their stage's sync are trusted once a `synced` line follows
    /// them, or in the boot that wrote them (a killed run: the page cache still holds its
    /// files); after a restart without that line they name what a power loss may have undone,
    /// and are left out.
    #[test]
    fn unsynced_entries_are_trusted_after_their_sync_or_within_their_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::default();
        j.push(entry("/synced-at-once"));
        j.flush_to(&path, None).unwrap();
        j.push(entry("/stage-1/a"));
        j.flush_to(&path, Some("boot-1")).unwrap();
        j.push(entry("/stage-1/b"));
        j.flush_to(&path, Some("boot-1")).unwrap();
        Journal::mark_synced(&path, "boot-1").unwrap();
        j.push(entry("/stage-2/a"));
        j.flush_to(&path, Some("boot-1")).unwrap();
        // The run was killed here, before stage 2's sync.
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""unsynced":"boot-1""#), "{text}");
        assert!(text.lines().any(|l| l == r#"{"synced":"boot-1"}"#), "{text}");

        let all = ["/synced-at-once", "/stage-1/a", "/stage-1/b", "/stage-2/a"];
        // The same boot: nothing was lost.
        assert_eq!(targets(&read_in_boot(&path, Some("boot-1")).unwrap()), all);
        // After a restart: stage 2's entry has no sync behind it.
        assert_eq!(targets(&read_in_boot(&path, Some("boot-2")).unwrap()), &all[..3]);
        assert_eq!(targets(&read_in_boot(&path, None).unwrap()), &all[..3]);
        // What is read back carries no mark.
        assert!(read_in_boot(&path, Some("boot-1")).unwrap().iter().all(|e| e.unsynced.is_none()));

        // A later run in boot 2 syncs its own stage; boot 1's unsynced entry stays out.
        j.push(entry("/boot-2/a"));
        j.flush_to(&path, Some("boot-2")).unwrap();
        Journal::mark_synced(&path, "boot-2").unwrap();
        assert_eq!(
            targets(&read_in_boot(&path, Some("boot-3")).unwrap()),
            ["/synced-at-once", "/stage-1/a", "/stage-1/b", "/boot-2/a"]
        );
    }

    fn write(target: &str, action: &str, outcome: Outcome, created: bool) -> Entry {
        Entry { action: action.into(), outcome, created, ..entry(target) }
    }

    /// The states of the paths a build, a reset and a second build leave in the journal.
    #[test]
    fn paths_tell_created_changed_found_and_expected_and_forget_what_was_removed() {
        let mut expected = write("/var/lib/kubelet/pki/kubelet.crt", "expect", Outcome::Expected, false);
        expected.detail = Some("created by the kubelet".into());
        let entries = vec![
            write("/etc/kubernetes", "parent", Outcome::Changed, true),
            write("/etc/kubernetes/pki/ca.crt", "file", Outcome::Ok, false),
            write("/etc/kubernetes/admin.conf", "file", Outcome::Changed, true),
            write("/etc/fstab", "file", Outcome::Changed, false),
            write("/etc/kubernetes/admin.conf", "file", Outcome::Ok, false),
            expected,
            write("/etc/default/kubelet", "file", Outcome::Ok, false),
            write("/etc/default/kubelet", "file", Outcome::Changed, false),
            write("/usr/bin/x", "run", Outcome::Changed, false),
            write("/etc/kubernetes/failed", "file", Outcome::Failed, false),
        ];
        let states = |rs: &[PathRecord]| -> Vec<(String, &'static str, &'static str)> {
            rs.iter().map(|r| (r.path.clone(), r.kind, r.state.name())).collect()
        };
        let rs = paths(&entries);
        assert_eq!(
            states(&rs),
            [
                ("/etc/kubernetes".to_string(), "dir", "created"),
                ("/etc/kubernetes/pki/ca.crt".to_string(), "file", "found"),
                ("/etc/kubernetes/admin.conf".to_string(), "file", "created"),
                ("/etc/fstab".to_string(), "file", "changed"),
                ("/var/lib/kubelet/pki/kubelet.crt".to_string(), "expected", "expected"),
                ("/etc/default/kubelet".to_string(), "file", "changed"),
            ]
        );
        assert_eq!(rs[4].by.as_deref(), Some("the kubelet"));
        // A reset removes admin.conf and the kubelet's folder; a second build finds the
        // folder gone and makes admin.conf again.
        let mut after = entries.clone();
        after.push(write("/etc/kubernetes/admin.conf", "remove", Outcome::Changed, false));
        after.push(write("/var/lib/kubelet", "remove", Outcome::Changed, false));
        let rs = paths(&after);
        assert!(
            rs.iter()
                .all(|r| r.path != "/etc/kubernetes/admin.conf" && !r.path.starts_with("/var/lib/kubelet"))
        );
        after.push(Entry {
            stage: "init".into(),
            ..write("/etc/kubernetes/admin.conf", "file", Outcome::Changed, true)
        });
        let rs = paths(&after);
        let admin = rs.iter().find(|r| r.path == "/etc/kubernetes/admin.conf").unwrap();
        assert_eq!((admin.state, admin.stage.as_str()), (PathState::Created, "init"));
        // The `created` mark is written only when true, and read back.
        let line = serde_json::to_string(&entries[2]).unwrap();
        assert!(line.contains(r#""created":true"#), "{line}");
        assert!(!serde_json::to_string(&entries[1]).unwrap().contains("created"));
        assert!(serde_json::from_str::<Entry>(&line).unwrap().created);
    }
}
