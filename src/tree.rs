//! `kscript tree DIR`: a node's files, each annotated with the stage that wrote it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::Error;
use crate::journal::{self, Entry, JOURNAL_PATH, Outcome};
use crate::root::NodeRoot;

/// Node paths kscript keeps its own state under; not part of the node's tree.
pub const STATE_DIR: &str = "/var/lib/kscript";

#[derive(Debug, Default)]
struct Row {
    kind: char,
    mode: Option<u32>,
    link: Option<String>,
    stage: Option<(usize, String)>,
    expected: Option<String>,
}

/// The `schema` of `kscript tree --output json`; it changes only when a field changes meaning
/// or goes (fields may be added).
pub const SCHEMA: &str = "kscript.tree/v1";

/// The rows of the node at `dir`, by node path. A rendered folder is walked whole; the host's
/// own `/` is not, and shows what the journal names.
fn rows(dir: &Path) -> Result<BTreeMap<String, Row>, Error> {
    let root = NodeRoot::new(dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), e))?;
    // Through the root, as every node path: a link in a folder may not lead out of it.
    let journal_host = root
        .resolve(JOURNAL_PATH)
        .map_err(|e| Error::Usage { message: format!("the journal {JOURNAL_PATH}: {e}") })?
        .host;
    let entries = journal::read(&journal_host)
        .map_err(|e| Error::io(format!("cannot read {}", journal_host.display()), e))?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    if !root.is_host_root() {
        walk(root.host(), &root, &mut rows)?;
    }
    annotate(&root, &entries, &mut rows);
    Ok(rows)
}

/// The annotated tree of the node at `dir`, as text.
pub fn render(dir: &Path) -> Result<String, Error> {
    let rows = rows(dir)?;
    let width = rows.keys().map(|k| k.len() + 2).max().unwrap_or(0).min(72);
    let mut out = String::new();
    for (path, row) in &rows {
        let shown = match (row.kind, &row.link) {
            ('d', _) => format!("{path}/"),
            ('l', Some(t)) => format!("{path} -> {t}"),
            _ => path.clone(),
        };
        let mode = row.mode.map_or_else(|| "    ".to_string(), |m| format!("{m:04o}"));
        let stage = row.stage.as_ref().map_or_else(|| "[-]".to_string(), |(i, s)| format!("[{i} {s}]"));
        let mut line = format!("{mode} {shown:<width$} {stage}");
        if let Some(by) = &row.expected {
            let _ = write!(line, " {}", if row.kind == '?' { format!("expected, {by}") } else { by.clone() });
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(nothing: no files, and no journal at ");
        out.push_str(JOURNAL_PATH);
        out.push_str(")\n");
    }
    Ok(out)
}

/// `kscript tree --output json`: the same rows as one JSON document (`schemas/tree.v1.json`).
pub fn json(dir: &Path) -> Result<String, Error> {
    use serde_json::json;
    let files: Vec<serde_json::Value> = rows(dir)?
        .into_iter()
        .map(|(path, row)| {
            let kind = match row.kind {
                'd' => "dir",
                'l' => "symlink",
                '?' => "expected",
                _ => "file",
            };
            json!({
                "path": path,
                "kind": kind,
                "mode": row.mode.map(|m| format!("{m:04o}")),
                "link": row.link,
                "stage": row.stage.map(|(number, name)| json!({"number": number, "name": name})),
                "expected_by": row.expected,
            })
        })
        .collect();
    let doc = json!({"schema": SCHEMA, "root": dir.display().to_string(), "files": files});
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// What a row shows of the file at `path`: its kind (`d`, `l`, `f`) and, for a link, its
/// target.
fn kind_and_link(meta: &std::fs::Metadata, path: &Path) -> (char, Option<String>) {
    let ft = meta.file_type();
    if ft.is_dir() {
        ('d', None)
    } else if ft.is_symlink() {
        ('l', std::fs::read_link(path).ok().map(|t| t.display().to_string()))
    } else {
        ('f', None)
    }
}

fn walk(dir: &Path, root: &NodeRoot, rows: &mut BTreeMap<String, Row>) -> Result<(), Error> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
    let mut children: Vec<_> = read.filter_map(Result::ok).collect();
    children.sort_by_key(std::fs::DirEntry::file_name);
    for child in children {
        let path = child.path();
        let Some(node) = root.node_path_of(&path) else {
            continue;
        };
        if node == STATE_DIR || node.starts_with(&format!("{STATE_DIR}/")) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let (kind, link) = kind_and_link(&meta, &path);
        if kind == 'd' {
            let is_empty = std::fs::read_dir(&path).is_ok_and(|mut r| r.next().is_none());
            walk(&path, root, rows)?;
            if !is_empty {
                // Folders with content show through their files, unless the journal names them.
                rows.entry(node.clone()).or_default();
                rows.get_mut(&node).expect("just inserted").kind = 'D';
            }
        }
        let row = rows.entry(node).or_default();
        if row.kind != 'D' {
            row.kind = kind;
        }
        row.mode = Some(meta.mode() & 0o7777);
        row.link = link;
    }
    Ok(())
}

fn annotate(root: &NodeRoot, entries: &[Entry], rows: &mut BTreeMap<String, Row>) {
    for e in entries {
        match (e.action.as_str(), e.outcome) {
            ("file" | "dir" | "symlink", Outcome::Ok | Outcome::Changed) => {
                if let Some(row) = rows.get_mut(&e.target) {
                    if row.kind == 'D' {
                        row.kind = 'd';
                    }
                    row.stage = Some((e.stage_index, e.stage.clone()));
                } else if root.is_host_root() {
                    let host = root.host().join(e.target.trim_start_matches('/'));
                    if let Ok(meta) = std::fs::symlink_metadata(&host) {
                        let (kind, link) = kind_and_link(&meta, &host);
                        rows.insert(
                            e.target.clone(),
                            Row {
                                kind,
                                mode: Some(meta.mode() & 0o7777),
                                link,
                                stage: Some((e.stage_index, e.stage.clone())),
                                expected: None,
                            },
                        );
                    }
                }
            }
            ("parent", _) => {
                if let Some(row) = rows.get_mut(&e.target) {
                    row.stage.get_or_insert((e.stage_index, e.stage.clone()));
                }
            }
            ("remove", Outcome::Changed) => {
                if let Some(row) = rows.get_mut(&e.target) {
                    row.stage = None;
                }
            }
            ("expect", _) => {
                let by = e.detail.clone().unwrap_or_default();
                let row = rows.entry(e.target.clone()).or_insert_with(|| Row { kind: '?', ..Row::default() });
                if row.kind == 'D' {
                    row.kind = 'd';
                }
                row.stage = Some((e.stage_index, e.stage.clone()));
                row.expected = Some(by);
            }
            _ => {}
        }
    }
    // Folders that only hold other rows are implied by them.
    rows.retain(|_, r| r.kind != 'D');
}
