//! The release of `dist/build.sh`: `--version`, the glibc versions the portable binary needs
//! (read from its ELF), a render of the stock control plane by it inside a Debian 11 root file
//! system, and the .deb and .rpm installed, run and removed.
//!
//! The artefacts are found through environment variables, which `.ci/run` sets after building
//! them: `KSCRIPT_PORTABLE_BIN` (the binary), `KSCRIPT_DEB`, `KSCRIPT_RPM`, `KSCRIPT_DIST` (the
//! folder with the tarball and SHA256SUMS). When one is unset a test says so and passes, except
//! when `CI` is set: CI must not skip them silently.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use object::read::elf::ElfFile64;

use super::{Run, Sandbox, node_snapshot};

/// The highest glibc a release may need: RHEL/Rocky 8's.
const CEILING: [u32; 2] = [2, 28];
/// The Debian release whose older userland the portable binary must run in, and its glibc.
const OLD_SUITE: &str = "bullseye";
const OLD_GLIBC: &str = "2.31";

/// The artefact named by `var`, or `None` (saying why the test does nothing) when it is unset
/// outside CI. In CI an unset variable fails the test.
fn artefact(var: &str, what: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.exists(), "{var}={} does not exist", path.display());
        Some(path)
    } else {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "{var} is not set, and CI is: CI must test {what}; `.ci/run` builds it with dist/build.sh \
             and sets {var}"
        );
        eprintln!("skipped: {var} is not set; run dist/build.sh and set it to test {what}");
        None
    }
}

/// The glibc symbol versions (`GLIBC_2.2.5` as `[2, 2, 5]`) an ELF program needs, sorted, read
/// from its version-needed section (`.gnu.version_r`), which the dynamic loader checks.
fn glibc_versions_needed(path: &Path) -> Result<Vec<Vec<u32>>, String> {
    let data = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data)
        .map_err(|e| format!("{} is not a 64-bit ELF file: {e}", path.display()))?;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let bad = |e: object::Error| format!("{}: bad version-needed section: {e}", path.display());
    let (mut needs, link) = sections.gnu_verneed(endian, &*data).map_err(bad)?.ok_or_else(|| {
        format!("{} has no version-needed section: not a dynamic glibc program", path.display())
    })?;
    let strings = sections.strings(endian, &*data, link).map_err(bad)?;
    let mut versions = Vec::new();
    while let Some((need, mut auxes)) = needs.next().map_err(bad)? {
        let file = String::from_utf8_lossy(need.file(endian, strings).map_err(bad)?).into_owned();
        while let Some(aux) = auxes.next().map_err(bad)? {
            let name = String::from_utf8_lossy(aux.name(endian, strings).map_err(bad)?).into_owned();
            let Some(number) = name.strip_prefix("GLIBC_") else { continue };
            // GLIBC_PRIVATE and the like: no release promises those.
            let parsed: Result<Vec<u32>, _> = number.split('.').map(str::parse).collect();
            versions.push(
                parsed.map_err(|_| format!("{}: {file} version {name} is not a release", path.display()))?,
            );
        }
    }
    versions.sort();
    versions.dedup();
    Ok(versions)
}

/// The versions of `versions` above the ceiling, as `GLIBC_X.Y` names.
fn above_ceiling(versions: &[Vec<u32>]) -> Vec<String> {
    versions
        .iter()
        .filter(|v| v.as_slice() > CEILING.as_slice())
        .map(|v| format!("GLIBC_{}", v.iter().map(ToString::to_string).collect::<Vec<_>>().join(".")))
        .collect()
}

/// `git ARGS` in the repository, trimmed.
fn git(args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// This machine's target triple, as rustc says it (the tests run the host's build).
fn host_target() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .to_string()
}

/// `--version` of `bin`, checked to be `kscript VERSION (commit HASH[-dirty], TARGET)`; returns
/// what follows the commit.
#[track_caller]
fn check_version(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    assert!(out.status.success(), "{} --version: {out:?}", bin.display());
    let line = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let head =
        format!("kscript {} (commit {}", env!("CARGO_PKG_VERSION"), git(&["rev-parse", "--short", "HEAD"]));
    let rest = line.strip_prefix(&head).unwrap_or_else(|| panic!("`{line}` does not start with `{head}`"));
    // A fresh clone (CI) is clean; a working tree may be dirty.
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let rest = match rest.strip_prefix("-dirty") {
        Some(r) if !in_ci => r,
        Some(_) => panic!("`{line}`: a build in CI's fresh clone is not dirty"),
        None => rest,
    };
    rest.strip_prefix(", ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{line}`"))
        .to_string()
}

#[test]
fn version_names_the_commit_and_the_target() {
    assert_eq!(check_version(Path::new(env!("CARGO_BIN_EXE_kscript"))), host_target());
}

/// The checker can fail: the build made on this machine (Debian 12, glibc 2.36) needs glibc
/// 2.34's `__libc_start_main` at least, above the ceiling.
#[test]
fn glibc_check_finds_this_machines_build_above_the_ceiling() {
    let versions = glibc_versions_needed(Path::new(env!("CARGO_BIN_EXE_kscript"))).unwrap();
    assert!(versions.contains(&vec![2, 2, 5]), "x86_64's first glibc version is needed too: {versions:?}");
    let above = above_ceiling(&versions);
    assert!(above.contains(&"GLIBC_2.34".to_string()), "{above:?} from {versions:?}");
    // Not a dynamic glibc program at all: said, not passed.
    let err = glibc_versions_needed(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").as_path())
        .unwrap_err();
    assert!(err.contains("is not a 64-bit ELF file"), "{err}");
}

#[test]
fn portable_binary_needs_glibc_2_28_at_most() {
    let Some(bin) = artefact("KSCRIPT_PORTABLE_BIN", "the portable binary") else { return };
    let versions = glibc_versions_needed(&bin).unwrap();
    assert!(versions.contains(&vec![2, 2, 5]), "{versions:?}");
    let above = above_ceiling(&versions);
    assert!(above.is_empty(), "{} needs {above:?}, above glibc 2.28", bin.display());
    assert_eq!(check_version(&bin), format!("{}, glibc 2.28", host_target()));
}

/// A writable view of a cached Debian root (an overlay whose writes go to a temporary
/// folder); unmounted when dropped, also when the test fails.
struct Overlay {
    merged: PathBuf,
    _dir: tempfile::TempDir,
}

impl Overlay {
    fn of_old_debian() -> Self {
        super::require_tools(
            &[("debootstrap", "debootstrap"), ("chroot", "coreutils"), ("mount", "mount")],
            "the portable tests run kscript in a Debian 11 root file system",
            "they build it with debootstrap and enter it with chroot, which needs root",
        );
        let lower = super::systemd_host::debootstrap_root(OLD_SUITE, &[], "usr/bin/ldd");
        let dir = tempfile::tempdir().unwrap();
        let (upper, work, merged) =
            (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let options =
            format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting the overlay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { merged, _dir: dir }
    }

    /// `chroot MERGED ARGS...`, with a plain environment.
    fn chroot(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.merged)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NO_COLOR", "1")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Every path in the tree (folders with a trailing slash), except `skip` prefixes.
    fn paths(&self, skip: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.merged.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(&self.merged).unwrap().display().to_string();
                if skip.iter().any(|s| rel.starts_with(s)) {
                    continue;
                }
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    stack.push(path);
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.merged).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("--lazy").arg(&self.merged).status();
        }
    }
}

/// The glibc of the old root, as its `ldd --version` says: a real older userland.
#[track_caller]
fn assert_old_glibc(root: &Overlay) {
    let ldd = Run::from(&root.chroot(&["ldd", "--version"])).ok();
    let first = ldd.stdout.lines().next().unwrap_or_default();
    assert!(first.ends_with(&format!(" {OLD_GLIBC}")), "ldd --version in {OLD_SUITE}: {first}");
}

/// A fixed node, so that the two renders can be compared.
const NODE: &[&str] =
    &["--set", "nodeRegistration.name=n1", "--set", "localAPIEndpoint.advertiseAddress=10.0.0.10"];

#[test]
fn portable_binary_renders_the_control_plane_in_debian_11() {
    let Some(bin) = artefact("KSCRIPT_PORTABLE_BIN", "the portable binary") else { return };
    let old = Overlay::of_old_debian();
    assert_old_glibc(&old);
    fs::copy(&bin, old.merged.join("usr/local/bin/kscript")).unwrap();
    let mut args = vec!["/usr/local/bin/kscript", "run", "control-plane.rhai", "--root", "/out"];
    args.extend_from_slice(NODE);
    Run::from(&old.chroot(&args)).ok();

    // The same render by this machine's build: the same files, the same contents (certificates
    // and keys, random by nature, as their summaries).
    let sb = Sandbox::new();
    sb.render("control-plane.rhai", NODE).ok();
    let (ours, theirs) = (node_snapshot(&sb.root()), node_snapshot(&old.merged.join("out")));
    assert!(ours.contains("=== /etc/kubernetes/manifests/kube-apiserver.yaml"), "{ours}");
    if ours != theirs {
        let diff = similar::TextDiff::from_lines(&ours, &theirs);
        panic!(
            "the render in {OLD_SUITE} differs from this machine's:\n{}",
            diff.unified_diff().context_radius(2)
        );
    }
}

/// The files each package must install, and nothing else.
const PACKAGED: &[&str] = &[
    "usr/bin/kscript",
    "usr/share/bash-completion/completions/kscript",
    "usr/share/fish/vendor_completions.d/kscript.fish",
    "usr/share/man/man1/kscript.1.gz",
    "usr/share/zsh/vendor-completions/_kscript",
];

/// Lines of `program ARGS` that name files, as relative paths: `./usr/bin/kscript` (dpkg-deb
/// -c, last column) and `/usr/bin/kscript` (rpm -qlp) alike; folders left out.
fn listed_files(program: &str, args: &[&str], pkg: &Path) -> Vec<String> {
    let out = Command::new(program).args(args).arg(pkg).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with('/') && !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').trim_start_matches('/').to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn deb_installs_runs_and_purges_cleanly_in_debian_11() {
    let Some(deb) = artefact("KSCRIPT_DEB", "the .deb package") else { return };
    assert_eq!(listed_files("dpkg-deb", &["-c"], &deb), PACKAGED);
    let old = Overlay::of_old_debian();
    // dpkg's own records and logs change with any install; the package is in /tmp.
    let skip = ["var/lib/dpkg", "var/log", "var/cache", "tmp"];
    let before = old.paths(&skip);
    fs::copy(&deb, old.merged.join("tmp/kscript.deb")).unwrap();
    Run::from(&old.chroot(&["dpkg", "-i", "/tmp/kscript.deb"])).ok();
    for file in PACKAGED {
        assert!(old.merged.join(file).is_file(), "{file} is not installed");
    }
    let installed = Run::from(&old.chroot(&["kscript", "--version"])).ok();
    assert!(
        installed.stdout.starts_with(&format!("kscript {} (", env!("CARGO_PKG_VERSION"))),
        "{}",
        installed.stdout
    );
    let man = Run::from(&old.chroot(&["gzip", "-dc", "/usr/share/man/man1/kscript.1.gz"])).ok();
    assert!(man.stdout.contains("\n.TH kscript 1 "), "{}", man.stdout);
    Run::from(&old.chroot(&["dpkg", "--purge", "kscript"])).ok();
    let after = old.paths(&skip);
    let left: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(left.is_empty(), "left after dpkg --purge: {left:?}");
    assert_eq!(before, after, "dpkg --purge removed what was there before");
}

#[test]
fn rpm_installs_runs_and_erases_cleanly_into_a_private_root() {
    let Some(rpm) = artefact("KSCRIPT_RPM", "the .rpm package") else { return };
    super::require_tools(&[("rpm", "rpm")], "the rpm test installs the package", "rpm --root needs root");
    assert_eq!(listed_files("rpm", &["-qlp"], &rpm), PACKAGED);
    // The requirements rpmbuild read from the binary: glibc's symbol versions, none above 2.28.
    let requires =
        Run::from(&Command::new("rpm").args(["-qp", "--requires"]).arg(&rpm).output().unwrap()).ok();
    let glibc: Vec<Vec<u32>> = requires
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("libc.so.6(GLIBC_")?.split(')').next())
        .map(|v| v.split('.').map(|n| n.parse().unwrap()).collect())
        .collect();
    assert!(!glibc.is_empty() && above_ceiling(&glibc).is_empty(), "{}", requires.stdout);

    let root = tempfile::tempdir().unwrap();
    let rpm_in = |args: &[&str]| -> Run {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(root.path())
            .args(["--dbpath", "/rpmdb"])
            .args(args)
            .output()
            .unwrap();
        Run::from(&out)
    };
    rpm_in(&["--initdb"]).ok();
    // --nodeps: the private database knows no glibc package to satisfy libc.so.6(GLIBC_2.x).
    rpm_in(&["-i", "--nodeps", rpm.to_str().unwrap()]).ok();
    for file in PACKAGED {
        assert!(root.path().join(file).is_file(), "{file} is not installed");
    }
    assert_eq!(
        rpm_in(&["-q", "kscript"]).ok().stdout.trim(),
        format!("kscript-{}-1.x86_64", env!("CARGO_PKG_VERSION"))
    );
    let installed =
        Run::from(&Command::new(root.path().join("usr/bin/kscript")).arg("--version").output().unwrap()).ok();
    assert!(
        installed.stdout.starts_with(&format!("kscript {} (", env!("CARGO_PKG_VERSION"))),
        "{}",
        installed.stdout
    );
    rpm_in(&["-e", "kscript"]).ok();
    // rpm leaves the folders it made for files it did not own a folder for (usr/, usr/share/...);
    // on a real system they belong to other packages. No file may be left.
    let mut left = Vec::new();
    let mut stack = vec![root.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.starts_with(root.path().join("rpmdb")) {
                continue;
            }
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else {
                left.push(path);
            }
        }
    }
    assert!(left.is_empty(), "left after rpm -e: {left:?}");
}

#[test]
fn tarball_holds_the_release_and_sums_match() {
    let Some(dist) = artefact("KSCRIPT_DIST", "the release folder") else { return };
    let name = format!("kscript-{}-x86_64-unknown-linux-gnu", env!("CARGO_PKG_VERSION"));
    let out = Command::new("tar").arg("-tzf").arg(dist.join(format!("{name}.tar.gz"))).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    listed.sort();
    let expected: Vec<String> = [
        "",
        "LICENSE",
        "README.md",
        "completions/",
        "completions/_kscript",
        "completions/kscript.bash",
        "completions/kscript.fish",
        "kscript",
        "kscript.1",
    ]
    .iter()
    .map(|f| format!("{name}/{f}"))
    .collect();
    assert_eq!(listed, expected);
    let sums = Run::from(
        &Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&dist)
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(sums.stdout.lines().filter(|l| l.ends_with(": OK")).count(), 3, "{}", sums.stdout);
}
