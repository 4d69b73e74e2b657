//! Files under the node root: write, folder, symlink, remove, read, exists, expect.
//!
//! Every path is a node path resolved through [`crate::root::NodeRoot`]; one that would escape
//! the root is refused before anything is written. Writes are atomic and are no-ops (`ok`)
//! when content, mode and owner already match.

use std::path::Path;
use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map};

use super::{Ctx, check_opts, effect_error, opt, script_error};
use crate::host::{FileKind, FileState, Owner};
use crate::journal::Outcome;
use crate::report::{EffectLine, unified_diff};
use crate::root::Resolved;

type R<T> = Result<T, Box<EvalAltResult>>;

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    const FILE_DOC: &[&str] = &[
        "/// Writes `content` to the file at node path `path`, atomically (a temporary file in the",
        "/// same folder, synced, then renamed), creating missing parent folders (0755).",
        "///",
        "/// Options: `mode` (integer such as `0o600`, or a string such as `\"0600\"`; default",
        "/// `0o644`), `owner` (`\"user\"`, `\"user:group\"` or `\"uid:gid\"`; applied when kscript",
        "/// runs as root), `secret` (never show the content in diffs; files holding a private",
        "/// key or credentials are detected as secret anyway).",
        "///",
        "/// Returns `true` if something changed (or would change, in a dry run); when content,",
        "/// mode and owner already match, nothing is written and the effect is `ok`.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("file")
        .with_comments(FILE_DOC)
        .with_params_info(["path: &str", "content: &str", "options: Map", "bool"])
        .register_into_engine(engine, move |path: &str, content: ImmutableString, opts: Map| {
            write_file(&c, path, content.as_bytes(), &opts)
        });
    let c = ctx.clone();
    FuncRegistration::new("file")
        .with_comments(FILE_DOC)
        .with_params_info(["path: &str", "content: &str", "bool"])
        .register_into_engine(engine, move |path: &str, content: ImmutableString| {
            write_file(&c, path, content.as_bytes(), &Map::new())
        });

    const DIR_DOC: &[&str] = &[
        "/// Makes sure a folder exists at node path `path`, with its parents.",
        "/// Options: `mode` (default `0o755`), `owner`. Returns `true` if something changed.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("dir")
        .with_comments(DIR_DOC)
        .with_params_info(["path: &str", "options: Map", "bool"])
        .register_into_engine(engine, move |path: &str, opts: Map| ensure_dir(&c, path, &opts));
    let c = ctx.clone();
    FuncRegistration::new("dir")
        .with_comments(DIR_DOC)
        .with_params_info(["path: &str", "bool"])
        .register_into_engine(engine, move |path: &str| ensure_dir(&c, path, &Map::new()));

    let c = ctx.clone();
    FuncRegistration::new("symlink")
        .with_comments([
            "/// Makes node path `link` a symlink pointing to `target` (stored as given: an absolute",
            "/// target is read by the node from its own `/`). Replaces a file or another link that",
            "/// is there; refuses to replace a folder. Returns `true` if something changed.",
        ])
        .with_params_info(["target: &str", "link: &str", "bool"])
        .register_into_engine(engine, move |target: &str, link: &str| make_symlink(&c, target, link));

    let c = ctx.clone();
    FuncRegistration::new("remove")
        .with_comments([
            "/// Removes what is at node path `path` (a folder with everything in it; a symlink",
            "/// itself, not its target). Returns `true` if something was there.",
        ])
        .with_params_info(["path: &str", "bool"])
        .register_into_engine(engine, move |path: &str| remove(&c, path));

    let c = ctx.clone();
    FuncRegistration::new("copy_dir")
        .with_comments([
            "/// Copies the folder at node path `from`, with everything in it, to node path `to`,",
            "/// where nothing may be yet (its parents are made, 0755): files and folders keep",
            "/// their modes (and owners, as root), symlinks are copied as links. For backups, such",
            "/// as kubeadm's of etcd's data before an upgrade; binary files are copied as they are.",
            "/// Refused, nothing copied, when `to`'s file system has not room for it (plus 5%, at",
            "/// least 16 MiB); a copy that fails halfway (no room after all, a fifo or socket in",
            "/// `from`) is removed, then the step fails. Not copied: extended attributes (SELinux",
            "/// labels, ACLs: the copy is labelled as new files there are), hard links (separate",
            "/// files). Returns `#{ files, bytes }`, what was copied. In a dry run the copy is planned",
            "/// entry by entry without the files' content: `exists` and `stat` see it, `read_file` does not.",
        ])
        .with_params_info(["from: &str", "to: &str", "Map"])
        .register_into_engine(engine, move |from: &str, to: &str| copy_dir(&c, from, to));

    let c = ctx.clone();
    FuncRegistration::new("rename")
        .with_comments([
            "/// Moves what is at node path `from` (a file, a folder with everything in it, a",
            "/// symlink itself) to node path `to`, where nothing may be yet, by one rename: both",
            "/// must be on the same file system (a folder inside the one it goes to is). Returns",
            "/// `true`. For swaps that must not leave half a folder, such as putting etcd's data back.",
        ])
        .with_params_info(["from: &str", "to: &str", "bool"])
        .register_into_engine(engine, move |from: &str, to: &str| rename(&c, from, to));

    let c = ctx.clone();
    FuncRegistration::new("sync_files")
        .with_comments([
            "/// Makes every file change of the run so far durable now (syncfs of each file system",
            "/// changed), not only when the stage ends: before a step that destroys what a backup",
            "/// just saved. Returns `true`; recorded (nothing to sync) in a dry run.",
        ])
        .with_params_info(["bool"])
        .register_into_engine(engine, move || sync(&c));

    let c = ctx.clone();
    FuncRegistration::new("read_file")
        .with_comments([
            "/// The text of the file at node path `path` (following symlinks inside the root).",
            "/// Fails if there is no such file; check with `exists(path)` first when it is optional.",
            "/// In a dry run, files planned by earlier steps are read as planned.",
        ])
        .with_params_info(["path: &str", "String"])
        .register_into_engine(engine, move |path: &str| read_file(&c, path));

    let c = ctx.clone();
    FuncRegistration::new("wait_for_file")
        .with_comments([
            "/// Waits up to `timeout` seconds, with progress, until something exists at node path",
            "/// `path` that another actor makes (the kubelet's kubeconfig after TLS bootstrap).",
            "/// Returns `true` once it is there. Only a real run waits: when rendering or in a dry",
            "/// run, nothing else runs on the node, so the wait is recorded and `false` returned.",
        ])
        .with_params_info(["path: &str", "timeout: i64", "bool"])
        .register_into_engine(engine, move |path: &str, timeout: i64| wait_for_file(&c, path, timeout));

    FuncRegistration::new("read_input")
        .with_comments([
            "/// The text of a file on the machine running kscript that configures this run (a",
            "/// discovery kubeconfig, a CA bundle): a host path, NOT a node path. It is read the same",
            "/// way when rendering, since configuration comes from the operator's machine.",
        ])
        .with_params_info(["path: &str", "String"])
        .register_into_engine(engine, |path: &str| -> R<String> {
            std::fs::read_to_string(path)
                .map_err(|e| effect_error(format!("cannot read the input file {path}: {e}")))
        });

    let c = ctx.clone();
    FuncRegistration::new("exists")
        .with_comments([
            "/// Whether something exists at node path `path` (following symlinks inside the root).",
        ])
        .with_params_info(["path: &str", "bool"])
        .register_into_engine(engine, move |path: &str| -> R<bool> { exists(&c, path) });

    let c = ctx.clone();
    FuncRegistration::new("stat")
        .with_comments([
            "/// What is at node path `path` (following symlinks inside the root): `#{ kind, size,",
            "/// mtime, mode }`, where `kind` is `\"file\"`, `\"dir\"`, `\"symlink\"` or `\"other\"`,",
            "/// `mtime` the last modification in nanoseconds since the Unix epoch and `mode` the",
            "/// permission bits; `()` when nothing is there. Size and mtime together are a cheap",
            "/// stamp of a file: compare them to tell whether it may have changed since.",
        ])
        .with_params_info(["path: &str", "Dynamic"])
        .register_into_engine(engine, move |path: &str| -> R<Dynamic> { stat(&c, path) });

    let c = ctx.clone();
    FuncRegistration::new("file_digest")
        .with_comments([
            "/// The SHA-256 of the file at node path `path` as `\"sha256:<hex>\"`, read in chunks;",
            "/// `()` when there is no file. It reads the whole file: use `stat` first to tell",
            "/// whether it is worth reading.",
        ])
        .with_params_info(["path: &str", "Dynamic"])
        .register_into_engine(engine, move |path: &str| -> R<Dynamic> { file_digest(&c, path) });

    let c = ctx.clone();
    FuncRegistration::new("list_dir")
        .with_comments([
            "/// The names of the entries of the folder at node path `path`, sorted (names only, not",
            "/// paths); `()` when there is no such folder.",
        ])
        .with_params_info(["path: &str", "Dynamic"])
        .register_into_engine(engine, move |path: &str| -> R<Dynamic> { list_dir(&c, path) });

    let c = ctx.clone();
    FuncRegistration::new("expect")
        .with_comments([
            "/// Records that node path `path` is created by another actor (`by`: containerd, the",
            "/// kubelet, a DaemonSet), so `kscript tree` shows it, marked as expected, under this",
            "/// step's stage. Changes nothing.",
        ])
        .with_params_info(["path: &str", "by: &str", "()"])
        .register_into_engine(engine, move |path: &str, by: &str| -> R<()> {
            c.require_step("expect")?;
            let r = resolve(&c, path, false)?;
            c.record("expect", &r.node, Outcome::Expected, Some(format!("created by {by}")), None);
            Ok(())
        });
}

fn resolve(ctx: &Ctx, path: &str, follow: bool) -> R<Resolved> {
    ctx.attempt(path);
    let r = if follow { ctx.root.resolve(path) } else { ctx.root.resolve_nofollow(path) };
    r.map_err(|e| effect_error(e.to_string()))
}

fn state(ctx: &Ctx, r: &Resolved) -> R<Option<FileState>> {
    // The root's walk looked already: on disk, what it saw is the answer.
    if ctx.host.files.reads_disk()
        && let Some(seen) = &r.seen
    {
        return seen
            .as_ref()
            .map(|m| crate::host::files::state_of(m, &r.host))
            .transpose()
            .map_err(|e| effect_error(format!("cannot inspect {}: {e}", r.node)));
    }
    ctx.host.files.state(&r.host).map_err(|e| effect_error(format!("cannot inspect {}: {e}", r.node)))
}

/// Parses a mode: an integer (`0o644`) or an octal string (`"0644"`, `"644"`).
fn mode_of(opts: &Map, default: u32, function: &str) -> R<u32> {
    let Some(v) = opts.get("mode").filter(|v| !v.is_unit()) else {
        return Ok(default);
    };
    let mode = if let Ok(i) = v.as_int() {
        u32::try_from(i).ok()
    } else if let Some(s) = v.clone().try_cast::<ImmutableString>() {
        u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()
    } else {
        None
    };
    match mode {
        Some(m) if m <= 0o7777 => Ok(m),
        _ => Err(script_error(format!(
            "{function}(): option `mode` must be a file mode such as 0o644 or \"0644\", not `{v}`"
        ))),
    }
}

/// Parses an owner: `user`, `user:group`, `uid:gid`, names looked up on this host.
fn owner_of(ctx: &Ctx, opts: &Map, function: &str) -> R<Option<Owner>> {
    let Some(spec) = opt::<ImmutableString>(opts, "owner", function)? else {
        return Ok(None);
    };
    let (u, g) = spec.split_once(':').map_or((spec.as_str(), None), |(u, g)| (u, Some(g)));
    let user = if let Ok(uid) = u.parse::<u32>() {
        (uid, None)
    } else {
        let pw = nix::unistd::User::from_name(u)
            .ok()
            .flatten()
            .ok_or_else(|| effect_error(format!("{function}(): no user named `{u}` on this host")))?;
        (pw.uid.as_raw(), Some(pw.gid.as_raw()))
    };
    let gid = match g {
        None => user.1.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .map(|gr| gr.gid.as_raw())
                .ok_or_else(|| effect_error(format!("{function}(): no group named `{g}` on this host")))?,
        },
    };
    // Ownership can only be applied as root; otherwise it is checked for syntax only.
    Ok(ctx.can_chown.then_some(Owner { uid: user.0, gid }))
}

/// Whether content holds key material or credentials, which are never shown.
pub fn looks_secret(content: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[b"PRIVATE KEY", b"client-key-data:", b"token:", b"password"];
    MARKERS.iter().any(|m| content.windows(m.len()).any(|w| w == *m))
}

/// Creates the missing folders above `r` (mode 0755), recording each.
fn ensure_parents(ctx: &Ctx, r: &Resolved) -> R<()> {
    if ctx.host.files.reads_disk() && r.parent_is_dir {
        return Ok(());
    }
    let Some(parent) = r.host.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    for dir in parent.ancestors() {
        if !dir.starts_with(ctx.root.host()) || dir == ctx.root.host() {
            break;
        }
        match ctx
            .host
            .files
            .state(dir)
            .map_err(|e| effect_error(format!("cannot inspect {}: {e}", dir.display())))?
        {
            None => missing.push(dir.to_path_buf()),
            Some(s) if s.kind == FileKind::Dir => break,
            Some(_) => {
                let node = ctx.root.node_path_of(dir).unwrap_or_default();
                return Err(effect_error(format!("cannot create {}: {node} is not a folder", r.node)));
            }
        }
    }
    for dir in missing.iter().rev() {
        let node = ctx.root.node_path_of(dir).unwrap_or_default();
        ctx.host
            .files
            .mkdir(dir, 0o755, None)
            .map_err(|e| effect_error(format!("cannot create folder {node}: {e}")))?;
        let line = EffectLine::new('+', format!("{node}/"), "0755");
        ctx.record("parent", &node, Outcome::Changed, Some("0755".into()), Some(line));
    }
    Ok(())
}

fn write_file(ctx: &Ctx, path: &str, content: &[u8], opts: &Map) -> R<bool> {
    ctx.require_step("file")?;
    check_opts(opts, &["mode", "owner", "secret"], "file")?;
    let mode = mode_of(opts, 0o644, "file")?;
    let owner = owner_of(ctx, opts, "file")?;
    let secret = opt::<bool>(opts, "secret", "file")?.unwrap_or(false);
    put(ctx, path, content, mode, owner, secret)
}

/// Writes a file the way `file()` does, for other script functions (certificates, keys).
/// `secret` hides the content from diffs (content with key material is hidden anyway).
pub(crate) fn put(
    ctx: &Ctx,
    path: &str,
    content: &[u8],
    mode: u32,
    owner: Option<Owner>,
    secret: bool,
) -> R<bool> {
    let secret = secret || looks_secret(content);
    let r = resolve(ctx, path, true)?;
    ensure_parents(ctx, &r)?;
    let files = &ctx.host.files;
    let current = state(ctx, &r)?;
    let want_diff = ctx.report.borrow().show_diff && !secret;
    let old = match &current {
        None => None,
        Some(s) if s.kind == FileKind::File => {
            // Equal sizes are compared byte by byte; a diff needs the old text anyway.
            let bytes = if s.size == content.len() as u64 || want_diff {
                files.read(&r.host).map_err(|e| effect_error(format!("cannot read {}: {e}", r.node)))?
            } else {
                None
            };
            Some((s, bytes))
        }
        Some(s) => {
            let what = if s.kind == FileKind::Dir { "a folder" } else { "not a regular file" };
            return Err(effect_error(format!("cannot write {}: it is {what}", r.node)));
        }
    };
    let detail_mode = format!("{mode:04o}");
    let (outcome, sign, detail) = match &old {
        None => (Outcome::Changed, '+', format!("{detail_mode}, {} bytes", content.len())),
        Some((s, bytes)) => {
            let same_content = bytes.as_deref() == Some(content);
            let mut what = Vec::new();
            if !same_content {
                what.push("content".to_string());
            }
            if s.mode != mode {
                what.push(format!("mode {:04o} -> {detail_mode}", s.mode));
            }
            if owner.is_some_and(|o| o != s.owner) {
                what.push("owner".to_string());
            }
            if what.is_empty() {
                (Outcome::Ok, '=', detail_mode.clone())
            } else {
                (Outcome::Changed, '~', what.join(", "))
            }
        }
    };
    if outcome == Outcome::Changed {
        let content_differs = old.as_ref().is_none_or(|(_, b)| b.as_deref() != Some(content));
        let result = if content_differs {
            files.write(&r.host, content, mode, owner)
        } else {
            files.set_attrs(&r.host, mode, owner)
        };
        result.map_err(|e| effect_error(format!("cannot write {}: {e}", r.node)))?;
    }
    let diff = if outcome == Outcome::Changed && ctx.report.borrow().show_diff {
        if secret {
            Some("(secret: content not shown)".to_string())
        } else {
            let before = old.as_ref().and_then(|(_, b)| b.as_deref());
            unified_diff(&r.node, before, content)
        }
    } else {
        None
    };
    let line = EffectLine::new(sign, r.node.clone(), detail.clone()).with_diff(diff);
    ctx.record("file", &r.node, outcome, Some(detail), Some(line));
    Ok(outcome == Outcome::Changed)
}

fn ensure_dir(ctx: &Ctx, path: &str, opts: &Map) -> R<bool> {
    ctx.require_step("dir")?;
    check_opts(opts, &["mode", "owner"], "dir")?;
    let mode = mode_of(opts, 0o755, "dir")?;
    let owner = owner_of(ctx, opts, "dir")?;
    let r = resolve(ctx, path, true)?;
    ensure_parents(ctx, &r)?;
    let detail = format!("{mode:04o}");
    let (outcome, sign, what) = match state(ctx, &r)? {
        None => {
            ctx.host
                .files
                .mkdir(&r.host, mode, owner)
                .map_err(|e| effect_error(format!("cannot create folder {}: {e}", r.node)))?;
            (Outcome::Changed, '+', detail)
        }
        Some(s) if s.kind == FileKind::Dir => {
            if s.mode == mode && owner.is_none_or(|o| o == s.owner) {
                (Outcome::Ok, '=', detail)
            } else {
                ctx.host
                    .files
                    .set_attrs(&r.host, mode, owner)
                    .map_err(|e| effect_error(format!("cannot set mode of {}: {e}", r.node)))?;
                (Outcome::Changed, '~', format!("mode {:04o} -> {detail}", s.mode))
            }
        }
        Some(_) => {
            return Err(effect_error(format!("cannot create folder {}: something else is there", r.node)));
        }
    };
    let line = EffectLine::new(sign, format!("{}/", r.node.trim_end_matches('/')), what.clone());
    ctx.record("dir", &r.node, outcome, Some(what), Some(line));
    Ok(outcome == Outcome::Changed)
}

pub(crate) fn make_symlink(ctx: &Ctx, target: &str, link: &str) -> R<bool> {
    ctx.require_step("symlink")?;
    if target.is_empty() || target.contains('\0') {
        return Err(script_error("symlink(): the target must be a non-empty path"));
    }
    let r = resolve(ctx, link, false)?;
    ensure_parents(ctx, &r)?;
    let detail = format!("-> {target}");
    let (outcome, sign) = match state(ctx, &r)? {
        Some(s) if s.kind == FileKind::Symlink && s.link_target.as_deref() == Some(Path::new(target)) => {
            (Outcome::Ok, '=')
        }
        Some(s) if s.kind == FileKind::Dir => {
            return Err(effect_error(format!("cannot make {} a symlink: a folder is there", r.node)));
        }
        existing => {
            ctx.host
                .files
                .symlink(Path::new(target), &r.host)
                .map_err(|e| effect_error(format!("cannot create symlink {}: {e}", r.node)))?;
            (Outcome::Changed, if existing.is_some() { '~' } else { '+' })
        }
    };
    let line = EffectLine::new(sign, r.node.clone(), detail.clone());
    ctx.record("symlink", &r.node, outcome, Some(detail), Some(line));
    Ok(outcome == Outcome::Changed)
}

pub(crate) fn remove(ctx: &Ctx, path: &str) -> R<bool> {
    ctx.require_step("remove")?;
    let r = resolve(ctx, path, false)?;
    if r.node == "/" {
        return Err(effect_error("remove(\"/\") is refused: it would remove the whole node root"));
    }
    let (outcome, sign) = if state(ctx, &r)?.is_none() {
        (Outcome::Ok, '=')
    } else {
        ctx.host.files.remove(&r.host).map_err(|e| effect_error(format!("cannot remove {}: {e}", r.node)))?;
        (Outcome::Changed, '-')
    };
    let detail = if outcome == Outcome::Changed { "removed" } else { "absent" };
    let line = EffectLine::new(sign, r.node.clone(), detail);
    ctx.record("remove", &r.node, outcome, Some(detail.into()), Some(line));
    Ok(outcome == Outcome::Changed)
}

fn rename(ctx: &Ctx, from: &str, to: &str) -> R<bool> {
    ctx.require_step("rename")?;
    let src = resolve(ctx, from, false)?;
    let dst = resolve(ctx, to, false)?;
    if src.node == "/"
        || dst.node == "/"
        || dst.node.starts_with(&format!("{}/", src.node.trim_end_matches('/')))
    {
        return Err(script_error(format!(
            "rename(\"{from}\", \"{to}\"): cannot move a folder into itself or the root"
        )));
    }
    if state(ctx, &src)?.is_none() {
        return Err(effect_error(format!("cannot move {}: there is nothing there", src.node)));
    }
    if state(ctx, &dst)?.is_some() {
        return Err(effect_error(format!(
            "cannot move {} to {}: something is there already (choose a new name, or remove it first)",
            src.node, dst.node
        )));
    }
    ctx.host.files.rename(&src.host, &dst.host).map_err(|e| {
        ctx.record("rename", &dst.node, Outcome::Failed, Some(format!("from {}", src.node)), None);
        effect_error(format!("cannot move {} to {}: {e}", src.node, dst.node))
    })?;
    let detail = format!("moved from {}", src.node);
    let line = EffectLine::new('~', dst.node.clone(), detail.clone());
    ctx.record("rename", &dst.node, Outcome::Changed, Some(detail), Some(line));
    Ok(true)
}

fn sync(ctx: &Ctx) -> R<bool> {
    ctx.require_step("sync_files")?;
    ctx.host
        .files
        .sync()
        .map_err(|e| effect_error(format!("cannot make the files written so far durable (syncfs): {e}")))?;
    let outcome = if ctx.host.mode == crate::host::Mode::DryRun { Outcome::Recorded } else { Outcome::Ok };
    ctx.record("sync", "/", outcome, Some("file changes made durable".into()), None);
    Ok(true)
}

fn copy_dir(ctx: &Ctx, from: &str, to: &str) -> R<Map> {
    ctx.require_step("copy_dir")?;
    let src = resolve(ctx, from, true)?;
    let dst = resolve(ctx, to, false)?;
    if dst.node == "/" || dst.node.starts_with(&format!("{}/", src.node.trim_end_matches('/'))) {
        return Err(script_error(format!(
            "copy_dir(\"{from}\", \"{to}\"): the copy cannot be inside what it copies"
        )));
    }
    match state(ctx, &src)? {
        Some(s) if s.kind == FileKind::Dir => {}
        Some(_) => return Err(effect_error(format!("cannot copy {}: it is not a folder", src.node))),
        None => return Err(effect_error(format!("cannot copy {}: there is no such folder", src.node))),
    }
    if state(ctx, &dst)?.is_some() {
        return Err(effect_error(format!(
            "cannot copy {} to {}: something is there already (choose a new name, or remove it first)",
            src.node, dst.node
        )));
    }
    ensure_parents(ctx, &dst)?;
    let copied = ctx.host.files.copy_tree(&src.host, &dst.host).map_err(|e| {
        ctx.record("copy", &dst.node, Outcome::Failed, Some(format!("from {}", src.node)), None);
        effect_error(format!("cannot copy {} to {}: {e}", src.node, dst.node))
    })?;
    let detail = format!("copy of {} ({} files, {} bytes)", src.node, copied.files, copied.bytes);
    let line = EffectLine::new('+', format!("{}/", dst.node.trim_end_matches('/')), detail.clone());
    ctx.record("copy", &dst.node, Outcome::Changed, Some(detail), Some(line));
    let mut m = Map::new();
    m.insert("files".into(), Dynamic::from(i64::try_from(copied.files).unwrap_or(i64::MAX)));
    m.insert("bytes".into(), Dynamic::from(i64::try_from(copied.bytes).unwrap_or(i64::MAX)));
    Ok(m)
}

fn wait_for_file(ctx: &Ctx, path: &str, timeout: i64) -> R<bool> {
    ctx.require_step("wait_for_file")?;
    let limit = super::timeout("wait_for_file(): the timeout", super::int_seconds(timeout))?;
    let r = resolve(ctx, path, true)?;
    if ctx.host.mode != crate::host::Mode::Apply {
        let line = EffectLine::new('!', r.node.clone(), "wait recorded, not done");
        ctx.record("wait", &r.node, Outcome::Recorded, None, Some(line));
        return Ok(false);
    }
    let start = std::time::Instant::now();
    let found = ctx.wait(&format!("waiting for {}", r.node), || {
        loop {
            if r.host.exists() {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    if !found {
        ctx.record("wait", &r.node, Outcome::Failed, None, None);
        return Err(effect_error(format!("{} did not appear within {timeout}s", r.node)));
    }
    ctx.record("wait", &r.node, Outcome::Ok, Some("there".into()), None);
    Ok(true)
}

/// The bytes of the file at node path `path`, or `None` when there is none.
pub(crate) fn read_bytes(ctx: &Ctx, path: &str) -> R<Option<Vec<u8>>> {
    let r = resolve(ctx, path, true)?;
    ctx.host.files.read(&r.host).map_err(|e| effect_error(format!("cannot read {}: {e}", r.node)))
}

/// Whether something exists at node path `path` (following symlinks inside the root).
pub(crate) fn exists(ctx: &Ctx, path: &str) -> R<bool> {
    let r = resolve(ctx, path, true)?;
    Ok(state(ctx, &r)?.is_some())
}

/// The text of the file at node path `path`, or `None` when there is none.
pub(crate) fn read_text(ctx: &Ctx, path: &str) -> R<Option<String>> {
    let r = resolve(ctx, path, true)?;
    let bytes =
        ctx.host.files.read(&r.host).map_err(|e| effect_error(format!("cannot read {}: {e}", r.node)))?;
    bytes
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| effect_error(format!("cannot read {}: it is not UTF-8 text", r.node)))
        })
        .transpose()
}

/// The text of the file at node path `path`; an error when there is none.
pub(crate) fn read_file(ctx: &Ctx, path: &str) -> R<String> {
    read_text(ctx, path)?.ok_or_else(|| effect_error(format!("cannot read {path}: no such file")))
}

/// `stat(path)`: the stamp of what is at a node path, or `()`.
fn stat(ctx: &Ctx, path: &str) -> R<Dynamic> {
    let r = resolve(ctx, path, true)?;
    let Some(s) = state(ctx, &r)? else { return Ok(Dynamic::UNIT) };
    let kind = match s.kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Other => "other",
    };
    let mut m = Map::new();
    m.insert("kind".into(), kind.into());
    m.insert("size".into(), rhai::INT::try_from(s.size).unwrap_or(rhai::INT::MAX).into());
    m.insert("mtime".into(), s.mtime_ns.into());
    m.insert("mode".into(), rhai::INT::from(s.mode).into());
    Ok(Dynamic::from_map(m))
}

/// `file_digest(path)`: `sha256:<hex>` of a node file, or `()`.
fn file_digest(ctx: &Ctx, path: &str) -> R<Dynamic> {
    let r = resolve(ctx, path, true)?;
    if let Some(s) = state(ctx, &r)?
        && s.kind != FileKind::File
    {
        return Err(effect_error(format!("cannot digest {}: it is not a regular file", r.node)));
    }
    let digest = ctx
        .wait(&format!("reading {}", r.node), || ctx.host.files.digest(&r.host))
        .map_err(|e| effect_error(format!("cannot read {}: {e}", r.node)))?;
    Ok(digest.map_or(Dynamic::UNIT, |d| format!("sha256:{}", crate::pki::hex(&d)).into()))
}

/// `list_dir(path)`: the sorted entry names of a node folder, or `()`.
fn list_dir(ctx: &Ctx, path: &str) -> R<Dynamic> {
    let r = resolve(ctx, path, true)?;
    match state(ctx, &r)? {
        None => return Ok(Dynamic::UNIT),
        Some(s) if s.kind != FileKind::Dir => {
            return Err(effect_error(format!("cannot list {}: it is not a folder", r.node)));
        }
        Some(_) => {}
    }
    let names =
        ctx.host.files.list(&r.host).map_err(|e| effect_error(format!("cannot list {}: {e}", r.node)))?;
    Ok(names.map_or(Dynamic::UNIT, |n| n.into_iter().map(Dynamic::from).collect::<rhai::Array>().into()))
}
