//! Records what `kscript --version` says besides the version: the git commit the binary was
//! built from and the target it was built for.
//!
//! - `KSCRIPT_COMMIT`: `git rev-parse --short HEAD`, with `-dirty` when tracked files differ
//!   from it; in a crate tarball (no repository), the commit `cargo package` recorded in
//!   `.cargo_vcs_info.json`; else `unknown`. Never fails the build.
//! - `KSCRIPT_TARGET`: cargo's target triple, then `, glibc X.Y` when the build was made
//!   against that glibc (`KSCRIPT_GLIBC`, set by `dist/build.sh` from the same value it gives
//!   cargo-zigbuild; the portable test checks the binary's ELF against it).
//!
//! The script reruns only when HEAD, the branch it points to, the packed refs or the index
//! change (not on every source edit, so tests do not rebuild the crate every time); `-dirty`
//! is therefore as of the last of those changes, which is what a release build from a clean
//! checkout needs.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    // GIT_OPTIONAL_LOCKS=0: `git status` must not rewrite the index it is watched through.
    let out = Command::new("git").args(args).env("GIT_OPTIONAL_LOCKS", "0").output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `cargo package` recorded in `.cargo_vcs_info.json` (a crate tarball has no .git).
fn packaged_commit() -> Option<String> {
    let text = std::fs::read_to_string(".cargo_vcs_info.json").ok()?;
    let start = text.find("\"sha1\": \"")? + "\"sha1\": \"".len();
    let sha: String = text[start..].chars().take_while(char::is_ascii_hexdigit).take(7).collect();
    if sha.len() < 7 {
        return None;
    }
    Some(if text.contains("\"dirty\": true") { format!("{sha}-dirty") } else { sha })
}

fn main() {
    println!("cargo:rerun-if-env-changed=KSCRIPT_GLIBC");
    // The repository must be this crate's own, not one it happens to be unpacked in.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let ours = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| {
        Path::new(&top).canonicalize().ok() == Path::new(&manifest_dir).canonicalize().ok()
    });
    let commit = match git(&["rev-parse", "--short", "HEAD"]).filter(|_| ours) {
        Some(hash) if !hash.is_empty() => {
            // Only files that exist: cargo reruns a script every time for a missing one.
            let mut watched = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watched.push(branch);
            }
            for name in watched {
                if let Some(path) = git(&["rev-parse", "--git-path", &name])
                    && Path::new(&path).is_file()
                {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        }
        _ => {
            println!("cargo:rerun-if-changed=build.rs");
            packaged_commit().unwrap_or_else(|| "unknown".to_string())
        }
    };
    let mut target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    if let Ok(glibc) = std::env::var("KSCRIPT_GLIBC")
        && !glibc.is_empty()
    {
        target.push_str(&format!(", glibc {glibc}"));
    }
    println!("cargo:rustc-env=KSCRIPT_COMMIT={commit}");
    println!("cargo:rustc-env=KSCRIPT_TARGET={target}");
}
