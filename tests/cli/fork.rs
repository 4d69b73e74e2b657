//! A fork's life: `kscript eject`, and `kscript eject --upgrade` bringing it up to a newer
//! kscript's stock scripts.

use std::fs;
use std::path::Path;

use super::{Sandbox, fingerprint};

/// `sha256:HEX` of `text`, computed by coreutils' sha256sum, not by kscript.
fn sha256(text: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

/// Makes the fork in `dir` look ejected by an older kscript whose stock `rel` read `older`:
/// the recorded base copy and its hash say so, and the fork's own copy is `fork`.
fn ejected_from_older(dir: &Path, rel: &str, older: Option<&str>, fork: Option<&str>) {
    let manifest_path = dir.join(".kscript/eject.yaml");
    let manifest = fs::read_to_string(&manifest_path).unwrap();
    let current = fs::read_to_string(dir.join(".kscript/stock").join(rel)).unwrap();
    let line = format!("  {rel}: {}\n", sha256(&current));
    assert!(manifest.contains(&line), "{rel} is not recorded in:\n{manifest}");
    let manifest = if let Some(text) = older {
        fs::write(dir.join(".kscript/stock").join(rel), text).unwrap();
        manifest.replace(&line, &format!("  {rel}: {}\n", sha256(text)))
    } else {
        fs::remove_file(dir.join(".kscript/stock").join(rel)).unwrap();
        manifest.replace(&line, "")
    };
    fs::write(
        &manifest_path,
        manifest.replace(&format!("kscript: \"{}\"", env!("CARGO_PKG_VERSION")), "kscript: \"0.0.9\""),
    )
    .unwrap();
    match fork {
        Some(text) => fs::write(dir.join(rel), text).unwrap(),
        None => fs::remove_file(dir.join(rel)).unwrap(),
    }
}

/// Replaces the one line holding `needle` with `with`.
fn change_line(text: &str, needle: &str, with: &str) -> String {
    assert_eq!(text.matches(needle).count(), 1, "`{needle}` must occur once");
    text.lines().map(|l| if l.contains(needle) { with } else { l }).collect::<Vec<_>>().join("\n") + "\n"
}

/// How many stock files kscript has: the repository's scripts/ and stdlib/.
fn stock_count() -> usize {
    ["scripts", "stdlib"]
        .iter()
        .map(|d| fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(d)).unwrap().count())
        .sum()
}

#[test]
fn eject_records_what_an_upgrade_merges_from() {
    let sb = Sandbox::new();
    let run = sb.kscript(&["eject", "fork"]).ok();
    assert!(run.stdout.contains("fork/.kscript/eject.yaml"), "{}", run.stdout);
    let fork = sb.path().join("fork");
    let manifest = fs::read_to_string(fork.join(".kscript/eject.yaml")).unwrap();
    assert!(manifest.contains(&format!("kscript: \"{}\"\n", env!("CARGO_PKG_VERSION"))), "{manifest}");
    // Text for people and CI to read: 0644 like any file, not a temporary file's 0600.
    for rel in [
        "control-plane.rhai",
        ".kscript/eject.yaml",
        ".kscript/stock/worker.rhai",
        "kscript-tests.yaml",
        "snapshots/worker.snap",
    ] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(fork.join(rel)).unwrap().permissions())
                & 0o777;
        assert_eq!(mode, 0o644, "{rel}");
    }
    // Every stock file, its base copy identical to it, its hash recorded.
    for rel in ["control-plane.rhai", "worker.rhai", "stdlib/defaults.yaml", "stdlib/node.rhai"] {
        let text = fs::read_to_string(fork.join(rel)).unwrap();
        assert_eq!(fs::read_to_string(fork.join(".kscript/stock").join(rel)).unwrap(), text);
        assert!(manifest.contains(&format!("  {rel}: {}\n", sha256(&text))), "{rel}: {manifest}");
    }
    // Ejecting again refuses, naming the way forward.
    let again = sb.kscript(&["eject", "fork"]).code(2);
    assert!(again.message().contains("--upgrade"), "{}", again.stderr);
    // Upgrading a fork of this very kscript: nothing to do, nothing written.
    let before = fingerprint(&fork);
    let run = sb.kscript(&["eject", "fork", "--upgrade"]).ok();
    assert!(
        run.stdout.contains(&format!("{} stock files unchanged on both sides", stock_count())),
        "{}",
        run.stdout
    );
    super::assert_same(&before, &fingerprint(&fork), "an upgrade with nothing to do");
}

#[test]
fn upgrade_takes_keeps_merges_and_marks_conflicts() {
    let sb = Sandbox::new();
    sb.kscript(&["eject", "fork"]).ok();
    let fork = sb.path().join("fork");
    let stock = |rel: &str| fs::read_to_string(fork.join(rel)).unwrap();

    // Changed upstream only: the older stock text is the fork's text too.
    let node = stock("stdlib/node.rhai");
    let node_older = node.replacen("fn ", "fn  ", 1);
    ejected_from_older(&fork, "stdlib/node.rhai", Some(&node_older), Some(&node_older));
    // Changed in the fork only.
    let worker = stock("worker.rhai");
    let worker_fork = format!("{worker}// site: rack 7\n");
    ejected_from_older(&fork, "worker.rhai", Some(&worker), Some(&worker_fork));
    // Changed in both, far apart: the older stock lacked the first line, the fork adds a last one.
    let containerd = stock("stdlib/containerd.rhai");
    let (first, rest) = containerd.split_once('\n').unwrap();
    let containerd_fork = format!("{rest}// site: mirror\n");
    ejected_from_older(&fork, "stdlib/containerd.rhai", Some(rest), Some(&containerd_fork));
    // Changed in both, the same line: the default pod subnet.
    let defaults = stock("stdlib/defaults.yaml");
    let subnet = defaults.lines().find(|l| l.contains("podSubnet:")).unwrap().to_string();
    let defaults_older = change_line(&defaults, &subnet, "  podSubnet: 10.200.0.0/16");
    let defaults_fork = change_line(&defaults, &subnet, "  podSubnet: 10.77.0.0/16");
    ejected_from_older(&fork, "stdlib/defaults.yaml", Some(&defaults_older), Some(&defaults_fork));
    // New upstream: the older kscript had no such file.
    ejected_from_older(&fork, "stdlib/status.rhai", None, None);
    // The fork's own file.
    fs::write(fork.join("site.rhai"), "// mine\n").unwrap();

    // A dry run lists all of it and changes nothing.
    let before = fingerprint(&fork);
    let dry = sb.kscript(&["eject", "fork", "--upgrade", "--dry-run"]).code(1);
    super::assert_same(&before, &fingerprint(&fork), "a dry-run upgrade");
    let line = |out: &str, rel: &str| {
        out.lines().find(|l| l.split_whitespace().nth(1) == Some(rel)).map(str::to_string)
    };
    for (rel, word) in [
        ("stdlib/node.rhai", "take"),
        ("worker.rhai", "keep"),
        ("stdlib/containerd.rhai", "merge"),
        ("stdlib/defaults.yaml", "CONFLICT"),
        ("stdlib/status.rhai", "add"),
    ] {
        let l = line(&dry.stdout, rel).unwrap_or_else(|| panic!("{rel} not listed:\n{}", dry.stdout));
        assert!(l.trim_start().starts_with(word), "{rel}: {l}");
    }
    assert!(line(&dry.stdout, "site.rhai").is_none(), "{}", dry.stdout);
    assert!(dry.stdout.starts_with("Would upgrade the fork from kscript 0.0.9 to "), "{}", dry.stdout);

    // For real: exit 1, for the conflict left to resolve.
    let run = sb.kscript(&["eject", "fork", "--upgrade"]).code(1);
    assert!(run.stdout.contains("1 conflict to resolve"), "{}", run.stdout);
    assert_eq!(stock("stdlib/node.rhai"), node);
    assert_eq!(stock("worker.rhai"), worker_fork);
    assert_eq!(stock("stdlib/containerd.rhai"), format!("{first}\n{containerd_fork}"));
    let marked = stock("stdlib/defaults.yaml");
    let conflict = format!(
        "<<<<<<< fork\n  podSubnet: 10.77.0.0/16\n||||||| stock kscript 0.0.9\n  podSubnet: 10.200.0.0/16\n\
         =======\n{subnet}\n>>>>>>> stock kscript {}\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(marked.contains(&conflict), "{marked}");
    assert_eq!(marked.replace(&conflict, "  podSubnet: 10.77.0.0/16\n"), defaults_fork);
    assert!(fork.join("stdlib/status.rhai").exists());
    assert_eq!(fs::read_to_string(fork.join("site.rhai")).unwrap(), "// mine\n");
    // The record now says this kscript, its stock files the new base.
    let manifest = fs::read_to_string(fork.join(".kscript/eject.yaml")).unwrap();
    assert!(manifest.contains(&format!("kscript: \"{}\"\n", env!("CARGO_PKG_VERSION"))), "{manifest}");
    assert!(manifest.contains(&format!("  stdlib/defaults.yaml: {}\n", sha256(&defaults))), "{manifest}");

    // Unresolved markers stop the next upgrade, naming the file.
    let stopped = sb.kscript(&["eject", "fork", "--upgrade"]).code(2);
    assert!(
        stopped.message().contains("stdlib/defaults.yaml still holds conflict markers"),
        "{}",
        stopped.stderr
    );
    // Resolved: the fork's subnet kept, the fork is current, nothing left to do.
    fs::write(fork.join("stdlib/defaults.yaml"), &defaults_fork).unwrap();
    let done = sb.kscript(&["eject", "fork", "--upgrade", "--dry-run"]).ok();
    let kept: Vec<&str> = done.stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(kept.len(), 3, "{}", done.stdout);
    assert!(kept.iter().all(|l| l.trim_start().starts_with("keep")), "{}", done.stdout);
}

#[test]
fn upgrade_removes_unchanged_files_stock_dropped_and_keeps_deleted_ones_deleted() {
    let sb = Sandbox::new();
    sb.kscript(&["eject", "fork"]).ok();
    let fork = sb.path().join("fork");
    // An older stock file this kscript no longer has, unchanged in the fork; and another the
    // fork changed.
    let manifest_path = fork.join(".kscript/eject.yaml");
    for (rel, fork_text) in
        [("stdlib/gone.rhai", "// old stock\n"), ("stdlib/kept.rhai", "// old stock, forked\n")]
    {
        fs::write(fork.join(".kscript/stock").join(rel), "// old stock\n").unwrap();
        fs::write(fork.join(rel), fork_text).unwrap();
        let manifest = fs::read_to_string(&manifest_path).unwrap();
        fs::write(
            &manifest_path,
            manifest.replace("files:\n", &format!("files:\n  {rel}: {}\n", sha256("// old stock\n"))),
        )
        .unwrap();
    }
    // A stock file the fork deleted.
    fs::remove_file(fork.join("token.rhai")).unwrap();
    // A new stock file whose name the fork's own file has.
    let status = fs::read_to_string(fork.join("stdlib/status.rhai")).unwrap();
    ejected_from_older(&fork, "stdlib/status.rhai", None, Some("// the site's own status module\n"));
    let run = sb.kscript(&["eject", "fork", "--upgrade"]).ok();
    assert!(run.stdout.contains("CLASH     stdlib/status.rhai"), "{}", run.stdout);
    assert_eq!(
        fs::read_to_string(fork.join("stdlib/status.rhai")).unwrap(),
        "// the site's own status module\n"
    );
    assert_eq!(fs::read_to_string(fork.join(".kscript/incoming/stdlib/status.rhai")).unwrap(), status);
    assert!(!fork.join("stdlib/gone.rhai").exists(), "{}", run.stdout);
    assert_eq!(fs::read_to_string(fork.join("stdlib/kept.rhai")).unwrap(), "// old stock, forked\n");
    assert!(!fork.join("token.rhai").exists());
    assert!(run.stdout.contains("stays deleted"), "{}", run.stdout);
    let manifest = fs::read_to_string(&manifest_path).unwrap();
    assert!(!manifest.contains("gone.rhai") && !manifest.contains("kept.rhai"), "{manifest}");
    assert!(!fork.join(".kscript/stock/stdlib/gone.rhai").exists());
}

#[test]
fn upgrade_refuses_what_it_cannot_merge_from() {
    let sb = Sandbox::new();
    // Not a fork: no record.
    fs::create_dir(sb.path().join("plain")).unwrap();
    let run = sb.kscript(&["eject", "plain", "--upgrade"]).code(2);
    assert!(run.message().contains("eject.yaml is missing"), "{}", run.stderr);
    // A base copy altered by hand: the merge base is no longer known.
    sb.kscript(&["eject", "fork"]).ok();
    fs::write(sb.path().join("fork/.kscript/stock/stdlib/node.rhai"), "// edited\n").unwrap();
    let run = sb.kscript(&["eject", "fork", "--upgrade"]).code(2);
    assert!(
        run.message().contains("node.rhai is missing or was changed since kscript wrote it"),
        "{}",
        run.stderr
    );
    // --dry-run and --force belong to --upgrade and to eject respectively.
    sb.kscript(&["eject", "fork", "--dry-run"]).code(2);
    sb.kscript(&["eject", "fork", "--force", "--upgrade"]).code(2);
}

/// Ejects a fork into `sb/fork` (its starter suite and snapshots with it); its path.
fn ejected(sb: &Sandbox) -> std::path::PathBuf {
    let run = sb.kscript(&["eject", "fork"]).ok();
    assert!(run.stdout.contains("fork/kscript-tests.yaml and its snapshots"), "{}", run.stdout);
    sb.path().join("fork")
}

#[test]
fn an_ejected_fork_passes_its_suite_and_a_changed_default_fails_it_until_accepted() {
    let sb = Sandbox::new();
    let fork = ejected(&sb);
    for case in ["control-plane", "worker", "control-plane-endpoint", "dual-stack", "runtime-and-kubelet"] {
        assert!(fork.join(format!("snapshots/{case}.snap")).is_file(), "no snapshot of {case}");
    }
    let run = sb.kscript(&["test", "fork"]).ok();
    assert!(run.stdout.ends_with("5 cases: 5 unchanged, 0 changed, 0 new, 0 failed\n"), "{}", run.stdout);

    // One default changed in the fork's stdlib: every case that renders it fails, with a diff
    // naming the file and the line.
    let defaults = fs::read_to_string(fork.join("stdlib/defaults.yaml")).unwrap();
    fs::write(
        fork.join("stdlib/defaults.yaml"),
        defaults.replace("podSubnet: 10.244.0.0/16", "podSubnet: 10.32.0.0/16"),
    )
    .unwrap();
    let run = sb.kscript(&["test", "fork"]).code(1);
    assert!(run.stdout.contains("CHANGED   control-plane\n"), "{}", run.stdout);
    let manifest = "/etc/kubernetes/manifests/kube-controller-manager.yaml:";
    let at = run.stdout.find(manifest).unwrap_or_else(|| panic!("{manifest} not named:\n{}", run.stdout));
    let hunk = &run.stdout[at..];
    // Up to the next file named in the report: the hunk is this manifest's.
    let hunk = &hunk[..hunk[1..].find("\n  /").map_or(hunk.len(), |i| i + 1)];
    assert!(
        hunk.contains("-    - --cluster-cidr=10.244.0.0/16\n  +    - --cluster-cidr=10.32.0.0/16\n"),
        "{hunk}"
    );
    // The hunk header gives the line of the manifest itself.
    let manifest_text = fs::read_to_string(fork.join("snapshots/control-plane.snap")).unwrap();
    let section = manifest_text
        .split("=== /etc/kubernetes/manifests/kube-controller-manager.yaml (0600)\n")
        .nth(1)
        .unwrap();
    let line = section.lines().position(|l| l.contains("--cluster-cidr=")).unwrap() + 1;
    assert!(hunk.contains(&format!("@@ -{},", line.saturating_sub(3))), "line {line} not in:\n{hunk}");
    // The cases that do not render the default subnet are unchanged: stages 1-2, the worker,
    // and dual-stack, which sets its own.
    for case in ["worker", "dual-stack", "runtime-and-kubelet"] {
        assert!(run.stdout.contains(&format!("ok        {case}\n")), "{}", run.stdout);
    }
    assert!(run.stdout.contains(" 3 unchanged, 2 changed, 0 new, 0 failed"), "{}", run.stdout);

    // Accepted: the suite passes again, and the snapshots hold the change.
    sb.kscript(&["test", "fork", "--accept"]).ok();
    sb.kscript(&["test", "fork"]).ok();
    assert!(
        fs::read_to_string(fork.join("snapshots/control-plane.snap"))
            .unwrap()
            .contains("--cluster-cidr=10.32.0.0/16")
    );
}

#[test]
fn a_changed_corefile_shows_in_the_objects_and_cases_can_be_picked() {
    let sb = Sandbox::new();
    let fork = ejected(&sb);
    let cluster = fs::read_to_string(fork.join("stdlib/cluster.rhai")).unwrap();
    fs::write(
        fork.join("stdlib/cluster.rhai"),
        cluster.replace("forward . /etc/resolv.conf {", "forward . 10.0.0.53 {"),
    )
    .unwrap();
    // Only the worker, which discovers from the control plane (rendered, not judged): the
    // worker's node has no CoreDNS, so it is unchanged.
    let run = sb.kscript(&["test", "fork", "--case", "worker"]).ok();
    assert!(run.stdout.ends_with("1 case: 1 unchanged, 0 changed, 0 new, 0 failed\n"), "{}", run.stdout);
    let run = sb.kscript(&["test", "fork", "--case", "control-plane"]).code(1);
    assert!(run.stdout.contains("object ConfigMap kube-system/coredns:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("-        forward . /etc/resolv.conf {\n  +        forward . 10.0.0.53 {\n"),
        "{}",
        run.stdout
    );
    // An unknown case is a usage error naming the cases there are.
    let run = sb.kscript(&["test", "fork", "--case", "nope"]).code(2);
    assert!(
        run.message().contains("no case `nope`") && run.message().contains("control-plane, worker"),
        "{}",
        run.stderr
    );
}

#[test]
fn new_and_orphaned_snapshots_fail_until_accepted() {
    let sb = Sandbox::new();
    sb.write(
        "suite/kscript-tests.yaml",
        "cases:\n  - name: modules\n    script: control-plane.rhai\n    only: [containerd/modules]\n    snapshot: [/etc/modules-load.d]\n",
    );
    let run = sb.kscript(&["test", "suite"]).code(1);
    assert!(run.stdout.contains("NEW       modules: no snapshot yet"), "{}", run.stdout);
    let run = sb.kscript(&["test", "suite", "--accept"]).ok();
    assert!(run.stdout.contains("written   modules (new snapshot)"), "{}", run.stdout);
    let snap = fs::read_to_string(sb.path().join("suite/snapshots/modules.snap")).unwrap();
    assert_eq!(
        snap,
        "# kscript test: case `modules` (control-plane.rhai); `kscript test --accept` rewrites this file.\n\
         === /etc/modules-load.d/k8s.conf (0644)\noverlay\nbr_netfilter\n"
    );
    // A snapshot of no case is reported, then removed by --accept.
    sb.write("suite/snapshots/old.snap", "x\n");
    let run = sb.kscript(&["test", "suite"]).code(1);
    assert!(run.stdout.contains("old.snap: a snapshot of no case"), "{}", run.stdout);
    sb.kscript(&["test", "suite", "--accept"]).ok();
    assert!(!sb.path().join("suite/snapshots/old.snap").exists());
    sb.kscript(&["test", "suite"]).ok();
    // A case whose render fails is named with kscript's error, and fails the suite.
    sb.write(
        "suite/kscript-tests.yaml",
        "cases:\n  - name: modules\n    script: control-plane.rhai\n    only: [containerd/modules]\n    snapshot: [/etc/modules-load.d]\n\
         \x20 - name: broken\n    script: control-plane.rhai\n    set: [networking.podSubnet=not-a-subnet]\n",
    );
    let run = sb.kscript(&["test", "suite"]).code(1);
    assert!(
        run.stdout.contains("FAILED    broken\n") && run.stdout.contains("`kscript run` ended with 2"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_suites_are_usage_errors_that_say_what_is_wrong() {
    let sb = Sandbox::new();
    let cases: &[(&str, &str)] = &[
        ("cases:\n  - name: a\n    script: control-plane.rhai\n    sett: [x=1]\n", "unknown field `sett`"),
        ("cases:\n  - name: a\n    script: no-such.rhai\n", "script `no-such.rhai` is neither a file in"),
        (
            "cases:\n  - name: a\n    script: worker.rhai\n    discovery: b\n",
            "discovery names `b`, which is not a case",
        ),
        (
            "cases:\n  - name: a\n    script: worker.rhai\n    discovery: b\n  - name: b\n    script: worker.rhai\n    discovery: a\n",
            "discovery goes round in a circle: a -> b -> a",
        ),
        ("cases:\n  - name: a/b\n    script: worker.rhai\n", "a name is letters, digits"),
        (
            "cases:\n  - name: a\n    script: worker.rhai\n  - name: a\n    script: worker.rhai\n",
            "a second case of that name",
        ),
        ("cases:\n  - name: a\n    script: worker.rhai\n    snapshot: [etc]\n", "is not a node path"),
        (
            "cases:\n  - name: a\n    script: worker.rhai\n    config: [site.yaml]\n",
            "site.yaml does not exist",
        ),
        ("cases: []\n", "no cases"),
    ];
    for (i, (suite, expected)) in cases.iter().enumerate() {
        sb.write(&format!("s{i}/kscript-tests.yaml"), suite);
        let run = sb.kscript(&["test", &format!("s{i}")]).code(2);
        assert!(run.message().contains(expected), "suite {i}: expected `{expected}` in:\n{}", run.stderr);
    }
    // In a fork, a script that is not the fork's file is an error, never the stock one silently.
    sb.write("fork/stdlib/node.rhai", "");
    sb.write("fork/kscript-tests.yaml", "cases:\n  - name: a\n    script: worker.rhai\n");
    let run = sb.kscript(&["test", "fork"]).code(2);
    assert!(
        run.message().contains("is not a file of this fork") && run.message().contains("builtin:worker.rhai"),
        "{}",
        run.stderr
    );
    // A snapshot path that selects nothing fails its case: it could never fail otherwise.
    sb.write("p/kscript-tests.yaml", "cases:\n  - name: a\n    script: control-plane.rhai\n    only: [containerd/modules]\n    snapshot: [/etc/modules-load.dd]\n");
    let run = sb.kscript(&["test", "p"]).code(1);
    assert!(run.stdout.contains("snapshot path /etc/modules-load.dd is not in the render"), "{}", run.stdout);
    // A snapshot folder that is a file.
    sb.write("f/kscript-tests.yaml", "cases:\n  - name: a\n    script: worker.rhai\n");
    sb.write("f/snapshots", "not a folder\n");
    let run = sb.kscript(&["test", "f"]).code(2);
    assert!(run.message().contains("snapshots is not a folder"), "{}", run.stderr);
    // No suite at all.
    let run = sb.kscript(&["test", "nowhere"]).code(2);
    assert!(
        run.message().contains("no suite at") && run.message().contains("kscript eject"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_finds_suite_selections_that_match_nothing() {
    let sb = Sandbox::new();
    let fork = ejected(&sb);
    sb.kscript(&["check", "fork"]).ok();
    let suite = fs::read_to_string(fork.join("kscript-tests.yaml")).unwrap();
    let changed = suite.replace("only: [containerd, kubelet]", "only: [containerd, kubelt]");
    assert_ne!(suite, changed);
    fs::write(fork.join("kscript-tests.yaml"), &changed).unwrap();
    let run = sb.kscript(&["check", "fork"]).code(1);
    let line = changed.lines().position(|l| l.contains("kubelt")).unwrap() + 1;
    let column = changed.lines().nth(line - 1).unwrap().find("kubelt").unwrap() + 1;
    let at = format!("kscript-tests.yaml:{line}:{column}: case `runtime-and-kubelet`: only: kubelt:");
    assert!(run.stdout.contains(&at), "no `{at}` in:\n{}", run.stdout);
    assert!(run.stdout.contains("did you mean `kubelet`?"), "{}", run.stdout);
}
