//! A rendered node as stable text, for snapshot tests. kscript's own tests and a fork's
//! (`kscript test`) use this one normaliser, so the two cannot drift apart.
//!
//! The text is a run of sections, each under a `=== ` header: a file (`=== /path (0644)`), a
//! symlink (`=== /path -> target`), an empty folder (`=== /path/ (dir 0755)`), or an API
//! object the render recorded (`=== object Kind namespace/name`). What changes from render to
//! render is shown by what it is, not by its bytes: certificates as summaries (subject,
//! issuer, SANs, usages, key type, validity length), keys as `[PRIVATE KEY ALGORITHM]`,
//! kubeconfigs with their credentials replaced, Secrets' values as `[REDACTED]`, bootstrap
//! tokens as `[TOKEN]` and their ids as `[TOKEN ID]`, certificate keys as
//! `[CERTIFICATE KEY]`. kscript's own state (`/var/lib/kscript`) is left out of the files.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use crate::host::cluster::{RENDERED_OBJECTS, redacted};
use crate::pki::PrivateKey;

/// kscript's own state under a node root: the journal, kept tokens, the rendered objects.
pub const STATE_DIR: &str = "/var/lib/kscript";
/// Where kscript keeps the bootstrap token it generated (`stdlib/kube.rhai`).
const TOKEN_FILE: &str = "/var/lib/kscript/bootstrap-token";
/// Where kscript keeps the certificate key it generated (`stdlib/ha.rhai`).
const CERTIFICATE_KEY_FILE: &str = "/var/lib/kscript/certificate-key";

/// How the files' contents are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Byte for byte (as text).
    AsIs,
    /// Certificates, keys and kubeconfigs as what they are (see the module's documentation).
    Described,
}

/// The files under `root` as text, each under its header, in path order. `paths` (node paths:
/// `/etc/kubernetes`, `/etc/containerd/config.toml`) narrows the walk to those files and
/// folders; empty means the whole tree.
pub fn files(root: &Path, contents: Contents, paths: &[String]) -> io::Result<String> {
    let mut out = String::new();
    walk(root, root, contents, paths, &mut out)?;
    Ok(out)
}

fn selected(rel: &str, paths: &[String]) -> bool {
    paths.is_empty()
        || paths.iter().any(|p| {
            let p = p.trim_end_matches('/');
            rel == p || rel.starts_with(&format!("{p}/")) || p.starts_with(&format!("{rel}/"))
        })
}

fn walk(dir: &Path, root: &Path, contents: Contents, paths: &[String], out: &mut String) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    let rel_of = |p: &Path| format!("/{}", p.strip_prefix(root).expect("walked under root").display());
    if entries.is_empty() && dir != root && selected(&rel_of(dir), paths) {
        let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
        let _ = writeln!(out, "=== {}/ (dir {mode:04o})", rel_of(dir));
    }
    for p in entries {
        let rel = rel_of(&p);
        if rel == STATE_DIR || !selected(&rel, paths) {
            continue;
        }
        let meta = fs::symlink_metadata(&p)?;
        if meta.file_type().is_symlink() {
            let _ = writeln!(out, "=== {rel} -> {}", fs::read_link(&p)?.display());
        } else if meta.is_dir() {
            walk(&p, root, contents, paths, out)?;
        } else {
            let _ = writeln!(out, "=== {rel} ({:04o})", meta.mode() & 0o7777);
            let text = String::from_utf8_lossy(&fs::read(&p)?).into_owned();
            let shown = match contents {
                Contents::AsIs => text,
                Contents::Described => describe(&text),
            };
            out.push_str(&shown);
            if !shown.ends_with('\n') {
                out.push_str("\n[no final newline]\n");
            }
        }
    }
    Ok(())
}

/// A file's text as a snapshot shows it: a certificate as its summary, a key as a placeholder
/// naming its algorithm, a kubeconfig with its credentials replaced (and its client
/// certificate summarised); anything else as it is.
pub fn describe(text: &str) -> String {
    if text.starts_with("-----BEGIN CERTIFICATE-----") {
        return crate::pki::summary(text).unwrap_or_else(|e| format!("[BAD CERTIFICATE: {e}]\n"));
    }
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        return "[PUBLIC KEY]\n".into();
    }
    if text.contains("PRIVATE KEY-----") {
        return PrivateKey::from_pem(text)
            .map_or_else(|e| format!("[BAD KEY: {e}]\n"), |k| format!("{}\n", k.placeholder()));
    }
    if text.contains("kind: Config")
        && let Some(shown) = kubeconfig(text)
    {
        return shown;
    }
    // What a script marks secret or what looks like one (see `files::looks_secret`: a token,
    // a password) is shown by its size alone, as the run's own output shows it.
    if crate::api::files::looks_secret(text.as_bytes()) {
        return format!("[SECRET: {} bytes]\n", text.len());
    }
    embedded_pem_replaced(text)
}

/// A kubeconfig with its credentials replaced in place (everything else kept as written: a
/// fork's `insecure-skip-tls-verify` or `proxy-url` shows), then each user's client
/// certificate summarised; `None` when `text` is not a kubeconfig.
fn kubeconfig(text: &str) -> Option<String> {
    const CREDENTIALS: &[(&str, &str)] = &[
        ("certificate-authority-data", "[CERTIFICATE DATA]"),
        ("client-certificate-data", "[CERTIFICATE DATA]"),
        ("client-key-data", "[PRIVATE KEY DATA]"),
        ("token", "[TOKEN]"),
        ("password", "[PASSWORD]"),
    ];
    let mut doc: Value = serde_saphyr::from_str(text).ok()?;
    if doc.get("kind").and_then(Value::as_str) != Some("Config") {
        return None;
    }
    let mut certificates = Vec::new();
    for (list, field) in [("clusters", "cluster"), ("users", "user")] {
        let Some(items) = doc.get_mut(list).and_then(Value::as_array_mut) else { continue };
        for item in items {
            let name = item.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(entry) = item.get_mut(field).and_then(Value::as_object_mut) else { continue };
            if let Some(data) = entry.get("client-certificate-data").and_then(Value::as_str) {
                let pem = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                let summary = crate::pki::summary(&String::from_utf8_lossy(&pem))
                    .unwrap_or_else(|e| format!("[BAD CERTIFICATE: {e}]\n"));
                certificates.push((name, summary));
            }
            for (key, placeholder) in CREDENTIALS {
                if let Some(v) = entry.get_mut(*key) {
                    *v = Value::String((*placeholder).to_string());
                }
            }
        }
    }
    let mut out = crate::yaml::to_string(&doc);
    let several = certificates.len() > 1;
    for (name, summary) in certificates {
        let of = if several { format!(" of {name}") } else { String::new() };
        let _ = write!(out, "--- client certificate{of}\n{summary}\n");
    }
    Some(out)
}

/// `text` with each PEM block written in base64 inside it (a kubeconfig a config map holds, a
/// CA bundle in a field) replaced by `[CERTIFICATE DATA]` or `[PRIVATE KEY DATA]`.
fn embedded_pem_replaced(text: &str) -> String {
    const BASE64_PEM: &str = "LS0tLS1CRUdJTi"; // "-----BEGIN"
    if !text.contains(BASE64_PEM) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(BASE64_PEM) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let len =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))).unwrap_or(tail.len());
        let decoded = base64::engine::general_purpose::STANDARD.decode(&tail[..len]).unwrap_or_default();
        out.push_str(if String::from_utf8_lossy(&decoded).contains("PRIVATE KEY-----") {
            "[PRIVATE KEY DATA]"
        } else {
            "[CERTIFICATE DATA]"
        });
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// The API objects a render recorded (its [`RENDERED_OBJECTS`]), each under a header, Secrets'
/// values redacted and the texts inside objects described like files; empty when the render
/// recorded none.
pub fn objects(root: &Path) -> io::Result<String> {
    let path = root.join(RENDERED_OBJECTS.trim_start_matches('/'));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let mut out = String::new();
    // Documents start at a line `--- # NAME` (a value may hold that text inside a line).
    for doc in format!("\n{text}").split("\n--- # ").filter(|d| !d.trim().is_empty()) {
        let (name, body) = doc.split_once('\n').unwrap_or((doc, ""));
        let object: Value = serde_saphyr::from_str(body).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {name}: {e}", path.display()))
        })?;
        let _ = writeln!(out, "=== object {name}");
        out.push_str(&crate::yaml::to_string(&described(&redacted(&object))));
    }
    Ok(out)
}

/// Every string in `value` described as a file's text would be (a kubeconfig in a config map,
/// a certificate in base64).
fn described(value: &Value) -> Value {
    match value {
        Value::String(s) => {
            let pem = (s.starts_with("LS0tLS1CRUdJTi"))
                .then(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let shown = describe(pem.as_deref().unwrap_or(s));
            if shown == *s { value.clone() } else { Value::String(shown) }
        }
        Value::Array(a) => Value::Array(a.iter().map(described).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), described(v))).collect()),
        other => other.clone(),
    }
}

/// A rendered node as snapshot text: its files (narrowed to `paths`, if any) described, then
/// the API objects it recorded, with the secrets kscript keeps for the node (the bootstrap
/// token, the certificate key) and any other bootstrap token replaced by placeholders.
pub fn node(root: &Path, paths: &[String]) -> io::Result<String> {
    let mut text = files(root, Contents::Described, paths)?;
    text.push_str(&objects(root)?);
    let kept = |rel: &str| {
        fs::read_to_string(root.join(rel.trim_start_matches('/'))).ok().map(|s| s.trim().to_string())
    };
    if let Some(key) = kept(CERTIFICATE_KEY_FILE).filter(|k| !k.is_empty()) {
        text = text.replace(&key, "[CERTIFICATE KEY]");
    }
    let mut tokens = bootstrap_tokens(&text);
    tokens.extend(kept(TOKEN_FILE).filter(|t| is_token(t)));
    for token in tokens {
        let (id, _) = token.split_once('.').expect("a token has a dot");
        text = text
            .replace(&token, "[TOKEN]")
            .replace(&format!("bootstrap-token-{id}"), "bootstrap-token-[TOKEN ID]");
    }
    Ok(text)
}

/// Whether `s` has a bootstrap token's shape: `[a-z0-9]{6}.[a-z0-9]{16}`.
fn is_token(s: &str) -> bool {
    let ok = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split_once('.').is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// The bootstrap tokens in `text`: words of a token's shape.
fn bootstrap_tokens(text: &str) -> Vec<String> {
    let mut found: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|w| is_token(w))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The sections of a snapshot text, by header (a file header without its mode), in order.
pub fn sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(header) = line.strip_prefix("=== ") {
            let header = header.trim_end();
            let name = match header.rsplit_once(" (") {
                Some((name, _)) if header.ends_with(')') && name.starts_with('/') => name,
                _ => header.split(" -> ").next().unwrap_or(header),
            };
            out.push((name.to_string(), line.to_string()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
        } else {
            out.push((String::new(), line.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pem_inside_text_is_replaced() {
        use base64::Engine as _;
        let cert = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\nMII\n");
        let key = base64::engine::general_purpose::STANDARD.encode("-----BEGIN PRIVATE KEY-----\nMII\n");
        assert_eq!(
            describe(&format!("ca: {cert}\nkey: {key}\n")),
            "ca: [CERTIFICATE DATA]\nkey: [PRIVATE KEY DATA]\n"
        );
    }

    #[test]
    fn kept_secrets_and_tokens_become_placeholders() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("var/lib/kscript");
        fs::create_dir_all(&state).unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        fs::write(state.join("bootstrap-token"), "kept01.0123456789abcdef\n").unwrap();
        fs::write(state.join("certificate-key"), format!("{key}\n")).unwrap();
        fs::write(
            root.path().join("etc/join.sh"),
            format!("kubeadm join --token kept01.0123456789abcdef --certificate-key {key}\n# other: zz9999.aaaaaaaaaaaaaaaa\n"),
        )
        .unwrap();
        fs::set_permissions(root.path().join("etc/join.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(
            state.join("objects.yaml"),
            "--- # Secret kube-system/bootstrap-token-kept01\napiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-kept01\n  namespace: kube-system\ndata:\n  token-secret: MDEyMw==\n",
        )
        .unwrap();
        let text = node(root.path(), &[]).unwrap();
        assert_eq!(
            text,
            "=== /etc/join.sh (0644)\nkubeadm join --token [TOKEN] --certificate-key [CERTIFICATE KEY]\n# other: [TOKEN]\n\
             === object Secret kube-system/bootstrap-token-[TOKEN ID]\napiVersion: v1\ndata:\n  token-secret: '[REDACTED]'\n\
             kind: Secret\nmetadata:\n  name: bootstrap-token-[TOKEN ID]\n  namespace: kube-system\n"
        );
    }

    #[test]
    fn tokens_are_found_by_shape() {
        assert!(is_token("abcdef.0123456789abcdef"));
        assert!(!is_token("abcdef.0123456789abcde"));
        assert!(!is_token("ABCDEF.0123456789abcdef"));
        assert_eq!(
            bootstrap_tokens("token: abcdef.0123456789abcdef\n--token=abcdef.0123456789abcdef x.y"),
            ["abcdef.0123456789abcdef"]
        );
    }

    #[test]
    fn sections_split_at_headers_and_name_files_without_their_mode() {
        let text = "=== /etc/a (0644)\nA\n=== /etc/l -> /x\n=== /var/empty/ (dir 0755)\n=== object ConfigMap kube-system/x\ndata: 1\n";
        let names: Vec<String> = sections(text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["/etc/a", "/etc/l", "/var/empty/", "object ConfigMap kube-system/x"]);
        assert_eq!(sections(text)[0].1, "=== /etc/a (0644)\nA\n");
    }

    #[test]
    fn paths_narrow_the_walk_to_files_and_folders_and_what_leads_to_them() {
        let paths = vec!["/etc/kubernetes".to_string()];
        assert!(selected("/etc/kubernetes/admin.conf", &paths));
        assert!(selected("/etc", &paths));
        assert!(!selected("/etc/kubernetes-other", &paths));
        assert!(!selected("/usr/bin", &paths));
        assert!(selected("/anything", &[]));
    }
}
