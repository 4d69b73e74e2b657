//! The one integration test binary: runs the real `kscript` binary in temporary folders.

mod ansible;
mod check;
mod cluster;
mod crash;
mod cri;
mod e2e;
mod fake_apiserver;
mod flows;
mod fork;
mod ha;
mod images;
mod json;
mod nodes;
mod pki;
mod portable;
mod preflight;
mod reset;
mod status;
mod systemd;
mod systemd_host;
mod upgrade;
mod waits;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The kscript binary a [`Sandbox`] runs: this build's, or the one `KSCRIPT_TEST_BIN` names
/// (`.ci/run` runs the real-containerd and fake-API-server tests again with the portable
/// release binary, whose CRI and Kubernetes clients are built by another toolchain).
fn kscript_bin() -> PathBuf {
    std::env::var_os("KSCRIPT_TEST_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kscript")), PathBuf::from)
}

/// A scratch folder with scripts in it, and a builder for `kscript` invocations.
struct Sandbox {
    dir: tempfile::TempDir,
}

/// What one invocation printed and returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: &Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stderr with miette's wrapped message lines joined again.
    fn message(&self) -> String {
        self.stderr.replace("\n  │ ", " ")
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Sandbox {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (a script, a config) into the sandbox; returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    /// The node root folder used by `render`.
    fn root(&self) -> PathBuf {
        self.path().join("root")
    }

    /// Runs kscript with `args`, in the sandbox folder.
    fn kscript(&self, args: &[&str]) -> Run {
        self.kscript_env(&[], args)
    }

    /// Runs kscript with `args` and extra environment variables.
    fn kscript_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let out = Command::new(kscript_bin())
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        Run::from(&out)
    }

    /// `kscript run SCRIPT --root ROOT ARGS...`
    fn render(&self, script: &str, args: &[&str]) -> Run {
        let root = self.root();
        let mut all = vec!["run", script, "--root", root.to_str().unwrap()];
        all.extend_from_slice(args);
        self.kscript(&all)
    }

    /// Output with the sandbox path and timings replaced by stable placeholders.
    fn stable(&self, text: &str) -> String {
        let real = fs::canonicalize(self.path()).unwrap();
        let mut t = text
            .replace(real.to_str().unwrap(), "[SANDBOX]")
            .replace(self.path().to_str().unwrap(), "[SANDBOX]");
        // Timings: "0.012s"
        let mut out = String::new();
        let mut rest = t.as_str();
        while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let num_len = tail.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(tail.len());
            let num = &tail[..num_len];
            if num.contains('.')
                && tail[num_len..].starts_with('s')
                && num.split('.').nth(1).is_some_and(|f| f.len() == 3)
            {
                out.push_str("[TIME]");
                rest = &tail[num_len + 1..];
            } else {
                out.push_str(num);
                rest = &tail[num_len..];
            }
        }
        out.push_str(rest);
        t = out;
        t
    }
}

/// The whole tree under `root` as text: each file under a header with its mode and its
/// content as it is, each symlink with its target, each empty folder; kscript's own state
/// folder left out.
fn tree_snapshot(root: &Path) -> String {
    kscript::snapshot::files(root, kscript::snapshot::Contents::AsIs, &[]).unwrap()
}

/// A node as `kscript test` snapshots it (the same normaliser): its files with certificates
/// summarised, keys and credentials replaced, then the API objects the render recorded.
fn node_snapshot(root: &Path) -> String {
    kscript::snapshot::node(root, &[]).unwrap()
}

/// Fails naming the paths whose content, mode or inode differ between two fingerprints.
#[track_caller]
fn assert_same(before: &[(PathBuf, Vec<u8>, u32, u64)], after: &[(PathBuf, Vec<u8>, u32, u64)], what: &str) {
    let differ: Vec<String> = before
        .iter()
        .filter(|b| !after.contains(b))
        .chain(after.iter().filter(|a| !before.contains(a)))
        .map(|e| e.0.display().to_string())
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:?}");
}

/// Every file's content, mode and inode: equal before and after means nothing was rewritten.
fn fingerprint(root: &Path) -> Vec<(PathBuf, Vec<u8>, u32, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if p.ends_with("var/lib/kscript") {
                continue;
            }
            if meta.is_dir() {
                stack.push(p.clone());
            }
            let content = if meta.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            out.push((p, content, meta.mode(), meta.ino()));
        }
    }
    out.sort();
    out
}

const SMALL: &str = r#"
// A small script: one file of each kind.
stage("base", "Lay out the node", [
    step("dirs", "Make the folders", || {
        dir("/etc/demo", #{ mode: 0o750 });
        dir("/var/lib/demo/data", #{ mode: 0o700 });
    }),
    step("config", "Write configuration", || {
        file("/etc/demo/app.yaml", to_yaml(#{ name: "demo", replicas: 2, labels: #{ tier: "node" }, ports: [80, 443] }));
        file("/etc/demo/app.env", to_env(#{ ARGS: "--a=1 --b=2", EMPTY: () }), #{ mode: "0600" });
        file("/etc/demo/app.toml", to_toml(#{ version: 2, plugins: #{ cri: #{ systemd: true } } }));
        symlink("/etc/demo/app.yaml", "/etc/demo/current.yaml");
    }),
]);
stage("extra", "A second stage", [
    step("motd", "Greet", || { file("/etc/motd", "hello\n"); }),
]);
"#;

#[test]
fn renders_a_small_script_into_a_tree() {
    let sb = Sandbox::new();
    sb.write("small.rhai", SMALL);
    let run = sb.render("small.rhai", &[]).ok();
    insta::assert_snapshot!("small_tree", tree_snapshot(&sb.root()));
    insta::assert_snapshot!("small_run_output", sb.stable(&run.stdout));
}

#[test]
fn second_run_changes_nothing_and_rewrites_nothing() {
    let sb = Sandbox::new();
    sb.write("small.rhai", SMALL);
    sb.render("small.rhai", &["--detailed-exitcode"]).code(2);
    let before = fingerprint(&sb.root());
    let run = sb.render("small.rhai", &["--detailed-exitcode"]).ok();
    assert!(!run.stdout.contains("changed "), "second run changed something:\n{}", run.stdout);
    assert!(run.stdout.contains("changed=0"));
    assert_same(&before, &fingerprint(&sb.root()), "files were rewritten");
}

#[test]
fn example_stock_script_is_idempotent() {
    let sb = Sandbox::new();
    sb.render("example.rhai", &[]).ok();
    let before = fingerprint(&sb.root());
    sb.render("example.rhai", &["--detailed-exitcode"]).ok();
    assert_same(&before, &fingerprint(&sb.root()), "files were rewritten");
}

#[test]
fn dry_run_changes_nothing_and_shows_the_plan() {
    let sb = Sandbox::new();
    sb.write("small.rhai", SMALL);
    fs::create_dir_all(sb.root()).unwrap();
    let run = sb.render("small.rhai", &["--dry-run", "--detailed-exitcode"]).code(2);
    assert_eq!(fs::read_dir(sb.root()).unwrap().count(), 0, "a dry run wrote into the root");
    insta::assert_snapshot!("small_dry_run", sb.stable(&run.stdout));
    // After a real render, a changed configuration shows as `~` with a diff.
    sb.render("small.rhai", &[]).ok();
    sb.write("small.rhai", &SMALL.replace("replicas: 2", "replicas: 3"));
    let run = sb.render("small.rhai", &["--dry-run", "--diff"]).ok();
    assert!(run.stdout.contains("~ /etc/demo/app.yaml (content)"), "{}", run.stdout);
    assert!(run.stdout.contains("-replicas: 2") && run.stdout.contains("+replicas: 3"), "{}", run.stdout);
    assert!(run.stdout.contains("= /etc/demo/app.env (0600)"), "{}", run.stdout);
    assert!(fs::read_to_string(sb.root().join("etc/demo/app.yaml")).unwrap().contains("replicas: 2"));
    // A folder that exists with another mode: planned as changed, and left as it is.
    fs::create_dir_all(sb.root().join("srv/data")).unwrap();
    sb.write(
        "mode.rhai",
        r#"stage("s", "x", [ step("d", "d", || { dir("/srv/data", #{ mode: 0o700 }); }) ]);"#,
    );
    let run = sb.render("mode.rhai", &["--dry-run"]).ok();
    assert!(run.stdout.contains("/srv/data/ (mode 0755 -> 0700)"), "{}", run.stdout);
    let mode = fs::metadata(sb.root().join("srv/data")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
}

#[test]
fn key_material_is_never_printed() {
    let sb = Sandbox::new();
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretbytes\n-----END RSA PRIVATE KEY-----\n";
    sb.write(
        "keys.rhai",
        &format!(
            r#"stage("pki", "keys", [ step("key", "a key", || {{
                file("/etc/k/a.key", "{}", #{{ mode: 0o600 }});
                file("/etc/k/token.conf", "user: x\ntoken: abcdef.0123456789abcdef\n");
                file("/etc/k/hidden.txt", "plain but marked\n", #{{ secret: true }});
            }}) ]);"#,
            key.replace('\n', "\\n")
        ),
    );
    for args in [&["--dry-run", "--diff"][..], &["--diff", "-v"][..]] {
        let run = sb.render("keys.rhai", args).ok();
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("MIIEsecretbytes"), "{all}");
        assert!(!all.contains("0123456789abcdef"), "{all}");
        assert!(!all.contains("plain but marked"), "{all}");
        assert!(all.contains("(secret: content not shown)"), "{all}");
    }
    let journal = fs::read_to_string(sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    assert!(!journal.contains("MIIE") && !journal.contains("0123456789abcdef"));
}

/// Ten and more ways to try to leave the root; each is refused and nothing is written.
#[test]
fn root_escapes_are_refused_and_write_nothing() {
    let sb = Sandbox::new();
    let root = sb.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    let outside = sb.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let canary = outside.join("canary");
    fs::write(&canary, "untouched").unwrap();
    // Symlinks planted in the root, as a hostile or careless tree could hold them.
    let link = |target: &str, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
    link(outside.to_str().unwrap(), "abs-out");
    link("../outside", "rel-out");
    link("etc/../../outside", "rel-out-2");
    link("chain-2", "chain-1");
    link("chain-3", "chain-2");
    link(outside.to_str().unwrap(), "chain-3");
    link("/", "slash");
    link(canary.to_str().unwrap(), "etc/canary-link");
    link(&format!("{}/../outside", root.display()), "abs-dotdot");
    link("self-loop", "self-loop");
    fs::create_dir_all(root.join("etc/deep")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("etc/deep/up")).unwrap();
    let attempts = [
        r#"file("/../outside/x", "x")"#,
        r#"file("/etc/../../outside/x", "x")"#,
        r#"file("/abs-out/x", "x")"#,
        r#"file("/rel-out/x", "x")"#,
        r#"file("/rel-out-2/x", "x")"#,
        r#"file("/chain-1/x", "x")"#,
        r#"file("/slash/tmp/x", "x")"#,
        r#"file("/etc/canary-link", "overwritten")"#,
        r#"file("/abs-dotdot/x", "x")"#,
        r#"file("/self-loop/x", "x")"#,
        r#"file("/etc/deep/up/outside/x", "x")"#,
        r#"dir("/abs-out/newdir")"#,
        r#"symlink("/x", "/rel-out/link")"#,
        r#"remove("/abs-out/canary")"#,
        r#"read_file("/etc/canary-link")"#,
        r#"file("etc/relative", "x")"#,
    ];
    for (i, attempt) in attempts.iter().enumerate() {
        let script =
            format!("stage(\"s\", \"escape\", [ step(\"try\", \"attempt {i}\", || {{ {attempt}; }}) ]);");
        sb.write("escape.rhai", &script);
        let before = fingerprint(&root);
        let run = sb.render("escape.rhai", &[]);
        assert_eq!(run.code, 1, "attempt {attempt} was not refused:\n{}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("escapes the node root")
                || run.stderr.contains("more than 40 symlinks")
                || run.stderr.contains("not an absolute node path"),
            "attempt {attempt}: {}",
            run.stderr
        );
        assert_same(&before, &fingerprint(&root), &format!("attempt {attempt} changed the root"));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "attempt {attempt} wrote outside");
        assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched");
    }
}

#[test]
fn selection_only_skip_from() {
    let sb = Sandbox::new();
    sb.write("small.rhai", SMALL);
    let run = sb.render("small.rhai", &["--only", "base/config"]).ok();
    assert!(run.stdout.contains("skipped  base/dirs  (not selected)"), "{}", run.stdout);
    assert!(run.stdout.contains("changed  base/config"));
    assert!(!run.stdout.contains("extra"));
    assert!(sb.root().join("etc/demo/app.yaml").exists());
    assert!(!sb.root().join("etc/motd").exists());

    let run = sb.render("small.rhai", &["--from", "extra"]).ok();
    assert!(!run.stdout.contains("base/"), "{}", run.stdout);
    assert!(sb.root().join("etc/motd").exists());

    let run = sb.render("small.rhai", &["--skip", "base"]).ok();
    assert!(!run.stdout.contains("[1/2]"));

    let run = sb.render("small.rhai", &["--only", "base/nope"]).code(2);
    assert!(run.stderr.contains("--only base/nope: no stage or step has that name"), "{}", run.stderr);
}

#[test]
fn handlers_run_once_at_stage_end_only_after_a_change() {
    let sb = Sandbox::new();
    sb.write(
        "h.rhai",
        r#"
        handler("count", || { file("/count", (if exists("/count") { parse_int(read_file("/count")) } else { 0 } + 1).to_string()); });
        stage("s", "notify twice", [
            step("a", "a", || { if file("/a", "1") { notify("count"); } notify("count"); }),
            step("b", "b", || { file("/b", "1"); notify("count"); }),
        ]);
        "#,
    );
    let run = sb.render("h.rhai", &[]).ok();
    assert_eq!(run.stdout.matches("s/handlers/count").count(), 1, "{}", run.stdout);
    assert_eq!(fs::read_to_string(sb.root().join("count")).unwrap(), "1");
    // Nothing changed: the handler does not run.
    let run = sb.render("h.rhai", &[]).ok();
    assert!(!run.stdout.contains("handlers/count"), "{}", run.stdout);
    assert_eq!(fs::read_to_string(sb.root().join("count")).unwrap(), "1");
}

#[test]
fn commands_are_recorded_when_rendering_and_run_for_real() {
    let sb = Sandbox::new();
    let marker = sb.path().join("ran");
    let script = format!(
        r#"stage("s", "cmd", [ step("c", "run one", || {{
            let r = run(["sh", "-c", "echo out; touch {m}"]);
            info(`executed=${{r.executed}} stdout=${{r.stdout}}`);
            let again = run(["sh", "-c", "exit 9"], #{{ creates: "{m}" }});
            info(`second executed=${{again.executed}}`);
        }}) ]);"#,
        m = marker.display()
    );
    sb.write("cmd.rhai", &script);
    let run = sb.render("cmd.rhai", &["-v"]).ok();
    assert!(run.stdout.contains("executed=false stdout="), "{}", run.stdout);
    assert!(run.stdout.contains("recorded, not run"));
    assert!(!marker.exists(), "rendering ran a host command");
    // A real run (no --root): the node root is /, and the command runs.
    let journal = sb.path().join("journal.jsonl");
    let run = sb.kscript(&["run", "cmd.rhai", "-v", "--journal", journal.to_str().unwrap()]).ok();
    assert!(fs::read_to_string(&journal).unwrap().contains("\"action\":\"run\""));
    assert!(run.stdout.contains("executed=true stdout=out\n"), "{}", run.stdout);
    assert!(marker.exists());
    // A failing command fails its step with exit 1 and its stderr.
    sb.write(
        "fail.rhai",
        r#"stage("s", "x", [ step("c", "fails", || { run(["sh", "-c", "echo broken >&2; exit 3"]); }) ]);"#,
    );
    let run = sb.kscript(&["run", "fail.rhai", "--journal", journal.to_str().unwrap()]).code(1);
    assert!(run.stderr.contains("exited with code 3") && run.stderr.contains("broken"), "{}", run.stderr);
    // A failed effect is a message for the operator: the script's frame only with -v.
    assert!(!run.stderr.contains("╭─"), "{}", run.stderr);
    let run = sb.kscript(&["run", "fail.rhai", "-v", "--journal", journal.to_str().unwrap()]).code(1);
    assert!(run.stderr.contains("╭─[fail.rhai:1:"), "{}", run.stderr);
}

/// A module that refuses to go on, as preflight does: it throws its findings and the way
/// out.
const THROWING_MODULE: &str = "fn run_checks() {
    let text = \"preflight checks failed:\\n  [ERROR Port-6443]: port 6443 is in use\";
    throw text + \"\\nto go on anyway: --ignore-preflight-errors=Port-6443\";
}
";

/// Errors a script throws on purpose are messages for the operator: the message and its
/// advice, without the script's source frame or a help line about throwing; `-v` adds the
/// frame. Script bugs (a function that does not exist, a wrong argument to a function) keep
/// their frame without `-v`. Exit codes: 1 for a failed step, 2 for a script that cannot run.
#[test]
fn thrown_errors_are_messages_and_script_bugs_keep_their_frame() {
    let sb = Sandbox::new();
    sb.write("stdlib/checks.rhai", THROWING_MODULE);
    sb.write(
        "pre.rhai",
        "import \"checks\" as checks;\nstage(\"init\", \"d\", [\n    step(\"preflight\", \"checks\", || {\n        checks::run_checks();\n    }),\n]);\n",
    );
    let run = sb.kscript(&["run", "pre.rhai", "--root", "root"]).code(1);
    insta::assert_snapshot!("error_thrown", sb.stable(&run.stderr));
    for part in [
        "step init/preflight failed: preflight checks failed:",
        "[ERROR Port-6443]: port 6443 is in use",
        "to go on anyway: --ignore-preflight-errors=Port-6443",
    ] {
        assert!(run.stderr.contains(part), "no `{part}` in:\n{}", run.stderr);
    }
    for frame in ["╭─", "checks.rhai", "throw text", "the script threw"] {
        assert!(!run.stderr.contains(frame), "`{frame}` in:\n{}", run.stderr);
    }

    let run = sb.kscript(&["run", "pre.rhai", "--root", "root", "-v"]).code(1);
    insta::assert_snapshot!("error_thrown_verbose", sb.stable(&run.stderr));
    for part in [
        "to go on anyway: --ignore-preflight-errors=Port-6443",
        "╭─[./stdlib/checks.rhai:3:",
        "throw text",
        "help: the script threw this error",
        "in call to `run_checks`, at pre.rhai:4",
    ] {
        assert!(run.stderr.contains(part), "no `{part}` in:\n{}", run.stderr);
    }

    // Bugs: a function that does not exist; a function given an option it does not know.
    sb.write(
        "bug.rhai",
        "stage(\"s\", \"d\", [\n    step(\"a\", \"calls nothing\", || {\n        no_such_function(1);\n    }),\n]);\n",
    );
    let run = sb.kscript(&["run", "bug.rhai", "--root", "root"]).code(2);
    for part in ["Function not found: no_such_function", "╭─[bug.rhai:3:9]", "help: `kscript api` lists"]
    {
        assert!(run.stderr.contains(part), "no `{part}` in:\n{}", run.stderr);
    }
    sb.write(
        "misuse.rhai",
        "stage(\"s\", \"d\", [\n    step(\"a\", \"a wrong option\", || {\n        run([\"true\"], #{ bogus: 1 });\n    }),\n]);\n",
    );
    let run = sb.kscript(&["run", "misuse.rhai", "--root", "root"]).code(1);
    for part in ["╭─[misuse.rhai:3:9]", "bogus", "help: `kscript api` describes"] {
        assert!(run.stderr.contains(part), "no `{part}` in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("the script threw"), "{}", run.stderr);
}

#[test]
fn errors_point_at_the_source() {
    let sb = Sandbox::new();
    sb.write("stdlib/helper.rhai", "fn broken(x) {\n    x.no_such_method()\n}\n");
    sb.write(
        "caller.rhai",
        "import \"helper\" as helper;\nstage(\"s\", \"d\", [\n    step(\"a\", \"calls into a module\", || {\n        helper::broken(1);\n    }),\n]);\n",
    );
    let run = sb.kscript(&["run", "caller.rhai", "--root", "root"]).code(2);
    insta::assert_snapshot!("error_in_module", sb.stable(&run.stderr));

    sb.write("syntax.rhai", "stage(\"s\", \"d\", [\n    step(\"a\", \"b\", || { let x = ; }),\n]);\n");
    let run = sb.kscript(&["run", "syntax.rhai", "--root", "root"]).code(2);
    insta::assert_snapshot!("error_syntax", sb.stable(&run.stderr));

    sb.write("loop.rhai", "stage(\"s\", \"d\", [ step(\"a\", \"spins\", || { loop { } }) ]);\n");
    let run = sb.kscript(&["run", "loop.rhai", "--root", "root"]).code(2);
    assert!(run.stderr.contains("operations"), "{}", run.stderr);

    sb.write("top.rhai", "file(\"/x\", \"y\");\n");
    let run = sb.kscript(&["run", "top.rhai", "--root", "root"]).code(1);
    assert!(run.stderr.contains("outside a step"), "{}", run.stderr);

    let run = sb.kscript(&["run", "missing.rhai"]).code(2);
    assert!(run.stderr.contains("no script at `missing.rhai`"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn configuration_errors_point_at_the_key() {
    let sb = Sandbox::new();
    sb.write("bad.yaml", "node:\n  kernelModules: [overlay]\n  disableSwapp: true\n");
    let run = sb.kscript(&["run", "example.rhai", "--root", "root", "--config", "bad.yaml"]).code(2);
    insta::assert_snapshot!("error_config_key", sb.stable(&run.stderr));
    sb.write("typed.yaml", "node:\n  disableSwap: \"yes\"\n");
    let run = sb.kscript(&["run", "example.rhai", "--root", "root", "--config", "typed.yaml"]).code(2);
    assert!(run.stderr.contains("`node.disableSwap` must be a boolean, not a string"), "{}", run.stderr);
    let run =
        sb.kscript(&["run", "example.rhai", "--root", "root", "--set", "node.disableSwap=maybe"]).code(2);
    assert!(run.stderr.contains("expected a boolean"), "{}", run.stderr);
    // Good values flow into the script.
    sb.write("good.yaml", "example:\n  greeting: from the file\n");
    sb.kscript(&["run", "example.rhai", "--root", "root", "--config", "good.yaml"]).ok();
    assert_eq!(fs::read_to_string(sb.path().join("root/etc/motd")).unwrap(), "from the file\n");
    sb.kscript(&[
        "run",
        "example.rhai",
        "--root",
        "root",
        "--config",
        "good.yaml",
        "--set",
        "example.greeting=from set",
    ])
    .ok();
    assert_eq!(fs::read_to_string(sb.path().join("root/etc/motd")).unwrap(), "from set\n");
    sb.kscript(&["run", "example.rhai", "--root", "root", "--set", "node.extraSysctls.vm.swappiness=10"])
        .ok();
    assert!(
        fs::read_to_string(sb.path().join("root/etc/sysctl.d/k8s.conf"))
            .unwrap()
            .contains("vm.swappiness = 10")
    );
}

#[test]
fn eject_then_fork_a_stdlib_module() {
    let sb = Sandbox::new();
    let run = sb.kscript(&["eject", "flows"]).ok();
    assert!(run.stdout.contains("flows/example.rhai") && run.stdout.contains("flows/stdlib/node.rhai"));
    // Ejecting again refuses to overwrite.
    sb.kscript(&["eject", "flows"]).code(2);
    // The forked module wins over the built-in one.
    let node = fs::read_to_string(sb.path().join("flows/stdlib/node.rhai")).unwrap();
    fs::write(
        sb.path().join("flows/stdlib/node.rhai"),
        node.replace("text += `${m}` + \"\\n\";", "text += `${m} # forked` + \"\\n\";"),
    )
    .unwrap();
    sb.kscript(&["run", "flows/example.rhai", "--root", "root"]).ok();
    let modules = fs::read_to_string(sb.path().join("root/etc/modules-load.d/k8s.conf")).unwrap();
    assert_eq!(modules, "overlay # forked\nbr_netfilter # forked\n");
    // So does the forked defaults file.
    let defaults = fs::read_to_string(sb.path().join("flows/stdlib/defaults.yaml")).unwrap();
    fs::write(
        sb.path().join("flows/stdlib/defaults.yaml"),
        defaults.replace("This node was prepared by kscript.", "Forked."),
    )
    .unwrap();
    sb.kscript(&["run", "flows/example.rhai", "--root", "root"]).ok();
    assert_eq!(fs::read_to_string(sb.path().join("root/etc/motd")).unwrap(), "Forked.\n");
}

#[test]
fn tree_annotates_files_with_their_stage() {
    let sb = Sandbox::new();
    sb.write(
        "t.rhai",
        r#"
        stage("runtime", "r", [ step("config", "c", || {
            file("/etc/containerd/config.toml", "version = 2\n");
            expect("/run/containerd/containerd.sock", "containerd");
        }) ]);
        stage("kubelet", "k", [ step("unit", "u", || {
            file("/usr/lib/systemd/system/kubelet.service", "[Unit]\n");
            symlink("/usr/lib/systemd/system/kubelet.service", "/etc/systemd/system/multi-user.target.wants/kubelet.service");
            dir("/opt/cni/bin");
        }) ]);
        "#,
    );
    sb.render("t.rhai", &[]).ok();
    fs::write(sb.root().join("etc/stray"), "not from a script").unwrap();
    let run = sb.kscript(&["tree", "root"]).ok();
    insta::assert_snapshot!("tree_annotated", run.stdout);
}

#[test]
fn stages_scripts_api_completions_man() {
    let sb = Sandbox::new();
    let run = sb.kscript(&["stages", "example.rhai"]).ok();
    insta::assert_snapshot!("stages_example", run.stdout);
    let run = sb.kscript(&["scripts"]).ok();
    assert!(
        run.stdout.contains("control-plane.rhai")
            && run.stdout.contains("certs.rhai")
            && run.stdout.contains("example.rhai")
    );
    let run = sb.kscript(&["api"]).ok();
    for f in [
        "file(path: &str, content: &str, options: Map) -> bool",
        "run(argv: Array, options: Map) -> Map",
        "stage(",
        "step(",
        "notify(",
        "to_yaml(",
    ] {
        assert!(run.stdout.contains(f), "api reference lacks {f}");
    }
    sb.kscript(&["api", "--definitions", "defs"]).ok();
    assert!(fs::read_dir(sb.path().join("defs")).unwrap().count() > 0);
    let run = sb.kscript(&["completions", "bash"]).ok();
    assert!(run.stdout.contains("--dry-run"));
    let run = sb.kscript(&["man"]).ok();
    assert!(run.stdout.contains(".TH kscript"));
    let run = sb.kscript(&["run", "--help"]).ok();
    assert!(run.stdout.contains("--detailed-exitcode"));
    sb.kscript(&["run"]).code(2);
    sb.kscript(&["frobnicate"]).code(2);
}

#[test]
fn skip_step_reports_skipped() {
    let sb = Sandbox::new();
    let run = sb.kscript(&["run", "example.rhai", "--root", "root", "--set", "node.disableSwap=false"]).ok();
    assert!(run.stdout.contains("skipped  prerequisites/swap  node.disableSwap is false"), "{}", run.stdout);
}

#[test]
fn readme_commands_work() {
    // The two commands at the top of the README: render the main job, and run the tests.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let render = readme
        .lines()
        .find(|l| l.trim_start().starts_with("cargo run") && l.contains("--root"))
        .expect("README shows the render command");
    let args: Vec<&str> =
        render.split(" -- ").nth(1).map(|rest| rest.split_whitespace().collect()).expect("cargo run -- ARGS");
    let sb = Sandbox::new();
    let run = sb.kscript(&args).ok();
    assert!(run.stdout.contains("RECAP"));
    assert!(sb.path().join("node-root").is_dir());
    assert!(readme.contains("cargo test"), "README names the test command");
    let ci = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.contains("cargo test"), ".ci/run runs the README's test command");
}

/// Every snapshot file belongs to a test here: a renamed or deleted test leaves none behind.
#[test]
fn no_unreferenced_snapshots() {
    // Every test module of this binary: a snapshot `cli__MODULE__NAME.snap` (or `cli__NAME.snap`
    // for main.rs) must be named by a test's source.
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli");
    let mut modules = Vec::new();
    let mut source = String::new();
    for entry in fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            modules.push(path.file_stem().unwrap().to_string_lossy().into_owned());
            source.push_str(&fs::read_to_string(&path).unwrap());
        }
    }
    for entry in fs::read_dir(tests.join("snapshots")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(snap) = name
            .strip_prefix("cli__")
            .map(|n| modules.iter().find_map(|m| n.strip_prefix(&format!("{m}__"))).unwrap_or(n))
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            panic!("unexpected file in tests/cli/snapshots: {name}");
        };
        assert!(source.contains(&format!("\"{snap}\"")), "snapshot {name} is not used by any test");
    }
}

#[test]
fn long_waits_say_so_when_not_in_a_terminal() {
    let sb = Sandbox::new();
    sb.write(
        "wait.rhai",
        r#"stage("s", "w", [ step("nap", "waits", || { run(["sleep", "2.5"], #{ label: "napping" }); }) ]);"#,
    );
    let journal = sb.path().join("journal.jsonl");
    let run = sb.kscript(&["run", "wait.rhai", "--journal", journal.to_str().unwrap()]).ok();
    assert!(run.stderr.contains("... waiting: napping"), "{}", run.stderr);
    // No spinner control characters outside a terminal.
    assert!(!run.stderr.contains('\r') && !run.stdout.contains('\r'));
}

#[test]
fn enabling_a_unit_renders_its_wants_symlinks() {
    let sb = Sandbox::new();
    sb.write(
        "unit.rhai",
        r#"
        handler("restart demo", || { unit_restart("demo.service"); });
        stage("svc", "a service", [
            step("unit", "install the unit", || {
                if file("/usr/lib/systemd/system/demo.service", "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlias=demo-alias.service\n") {
                    notify("restart demo");
                }
                daemon_reload();
            }),
            step("enable", "enable it", || {
                unit_enable("demo.service");
                unit_start("demo.service");
                info(`unknown=${unit_state("demo.service") == ()}`);
                unit_wait_active("demo.service", 5);
            }),
        ]);
        "#,
    );
    let run = sb.render("unit.rhai", &["-v"]).ok();
    assert!(run.stdout.contains("! systemctl enable demo.service (recorded, not run)"), "{}", run.stdout);
    assert!(run.stdout.contains("unknown=true"), "{}", run.stdout);
    assert!(run.stdout.contains("ok       svc/handlers/restart-demo"), "{}", run.stdout);
    assert!(run.stdout.contains("! systemctl restart demo.service"), "{}", run.stdout);
    let link = sb.root().join("etc/systemd/system/multi-user.target.wants/demo.service");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/usr/lib/systemd/system/demo.service"));
    assert_eq!(
        fs::read_link(sb.root().join("etc/systemd/system/demo-alias.service")).unwrap(),
        Path::new("/usr/lib/systemd/system/demo.service")
    );
    // Enabled already: nothing changes the second time.
    let run = sb.render("unit.rhai", &["--detailed-exitcode"]).ok();
    assert!(!run.stdout.contains("handlers"), "{}", run.stdout);
    // A unit that is not on the node is an error that says where kscript looked.
    sb.write(
        "missing.rhai",
        r#"stage("s", "x", [ step("e", "enable", || { unit_enable("nope.service"); }) ]);"#,
    );
    let run = sb.render("missing.rhai", &[]).code(1);
    assert!(run.message().contains("no unit file nope.service on the node"), "{}", run.stderr);
}

#[test]
fn patches_folder_applies_kubeadm_style_patches() {
    let sb = Sandbox::new();
    sb.write("patches/kube-apiserver0.yaml", "spec:\n  containers:\n  - name: kube-apiserver\n    resources:\n      requests:\n        cpu: 500m\n");
    sb.write(
        "patches/kube-apiserver1+json.json",
        r#"[{"op": "add", "path": "/spec/containers/0/command/-", "value": "--v=4"}]"#,
    );
    sb.write("patches/etcd+merge.yaml", "metadata:\n  labels:\n    extra: yes\n");
    sb.write(
        "p.rhai",
        r#"stage("s", "patch", [ step("pod", "write a patched pod", || {
            let pod = #{ apiVersion: "v1", kind: "Pod", metadata: #{ name: "kube-apiserver" },
                         spec: #{ containers: [#{ name: "kube-apiserver", command: ["kube-apiserver", "--a=1"] }] } };
            file("/pod.yaml", to_yaml(apply_patches(cfg.patches.directory, "kube-apiserver", pod)));
            file("/unpatched.yaml", to_yaml(apply_patches("", "kube-apiserver", pod)));
        }) ]);"#,
    );
    sb.kscript(&["run", "p.rhai", "--root", "root", "--patches", "patches"]).ok();
    let pod = fs::read_to_string(sb.root().join("pod.yaml")).unwrap();
    assert!(pod.contains("cpu: 500m") && pod.contains("- --v=4") && pod.contains("- --a=1"), "{pod}");
    assert!(!fs::read_to_string(sb.root().join("unpatched.yaml")).unwrap().contains("500m"));
    let run = sb.kscript(&["run", "p.rhai", "--root", "root", "--patches", "nope"]).code(2);
    assert!(run.stderr.contains("--patches nope: no such folder"), "{}", run.stderr);
    sb.write("patches/kube-proxy.yaml", "a: 1\n");
    let run = sb.kscript(&["run", "p.rhai", "--root", "root", "--patches", "patches"]).code(1);
    assert!(run.message().contains("kube-proxy.yaml: unknown patch target"), "{}", run.stderr);
}

#[test]
fn invalid_kubeadm_values_name_their_field() {
    let sb = Sandbox::new();
    for (yaml, field, what) in [
        (
            "localAPIEndpoint:\n  advertiseAddress: 10.0.0.300\n",
            "localAPIEndpoint.advertiseAddress",
            "not an IP address",
        ),
        ("localAPIEndpoint:\n  bindPort: 70000\n", "localAPIEndpoint.bindPort", "not a port"),
        ("nodeRegistration:\n  name: Bad_Name\n", "nodeRegistration.name", "not a valid node name"),
        ("networking:\n  podSubnet: 10.96.0.0/16\n", "networking.podSubnet", "overlaps the service subnet"),
        ("networking:\n  serviceSubnet: 10.96.0.0/33\n", "networking.serviceSubnet", "is not a CIDR"),
        ("controlPlaneEndpoint: \"api:port\"\n", "controlPlaneEndpoint", "is not HOST or HOST:PORT"),
        ("kubernetesVersion: v1.27.3\n", "kubernetesVersion", "not a supported version"),
        ("encryptionAlgorithm: DSA\n", "encryptionAlgorithm", "not a key algorithm"),
    ] {
        sb.write("bad.yaml", yaml);
        let run =
            sb.kscript(&["run", "control-plane.rhai", "--root", "root", "--config", "bad.yaml"]).code(2);
        let msg = run.message();
        assert!(msg.contains(&format!("`{field}`")) && msg.contains(what), "{yaml}: {}", run.stderr);
        // It points at the value in the file.
        assert!(run.stderr.contains("bad.yaml:"), "{}", run.stderr);
    }
    // A --set value is named, without a file.
    let run = sb
        .kscript(&[
            "run",
            "control-plane.rhai",
            "--root",
            "root",
            "--set",
            "networking.podSubnet=10.96.1.0/24",
        ])
        .code(2);
    assert!(run.stderr.contains("configuration `networking.podSubnet`"), "{}", run.stderr);
}

/// Runs `probe` (an `etcdctl endpoint health`) until it succeeds, for up to 30 s; else fails
/// the test with its last error and etcd's log.
fn wait_until_etcd_healthy(what: &str, log: &Path, probe: impl Fn() -> Output) {
    let start = std::time::Instant::now();
    loop {
        let out = probe();
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{what} never became healthy: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A process a test started, killed and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `etcdctl ARGS` against `endpoint`, as the node's (under `root`) etcd healthcheck client.
fn etcdctl_as_healthcheck(root: &Path, endpoint: &str, args: &[&str]) -> Output {
    let pki = root.join("etc/kubernetes/pki");
    let file = |f: &str| pki.join(f);
    etcdctl_with(
        endpoint,
        [&file("etcd/ca.crt"), &file("etcd/healthcheck-client.crt"), &file("etcd/healthcheck-client.key")],
        args,
    )
}

/// `etcdctl ARGS` against `endpoint`, trusting the CA and presenting the certificate and key
/// of `[ca, cert, key]`.
fn etcdctl_with(endpoint: &str, [ca, cert, key]: [&Path; 3], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "2s", "--command-timeout", "5s"])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(args)
        .output()
        .expect("etcdctl is installed (Debian's etcd-client)")
}

/// Every wait refuses a timeout too long for a Duration with a message, instead of panicking
/// (found for `run` by the property tests, then for the other waits by review).
#[test]
fn huge_timeouts_are_refused_by_every_wait() {
    let sb = Sandbox::new();
    for (call, name) in [
        (r#"cri_wait_ready("unix:///run/none.sock", 1.0e300)"#, "cri_wait_ready(): the timeout"),
        (r#"unit_wait_active("x.service", 1.0e300)"#, "unit_wait_active(): the timeout"),
        (r#"api_wait_ready("/etc/kubernetes/admin.conf", 1.0e300)"#, "api_wait_ready(): the timeout"),
        (r#"wait_for_file("/etc/x", -5)"#, "wait_for_file(): the timeout"),
        (r#"wait_until("x", 1.0e300, || true)"#, "wait_until(): the timeout"),
        (r#"wait_until("x", 0, || true)"#, "wait_until(): the timeout"),
    ] {
        sb.write("wait.rhai", &format!(r#"stage("s", "x", [ step("w", "w", || {{ {call}; }}) ]);"#));
        let run = sb.render("wait.rhai", &[]);
        assert!(run.code == 1 || run.code == 2, "{call}: {}", run.stderr);
        let message = run.message();
        assert!(
            message.contains(&format!("{name} is too long"))
                || message.contains(&format!("{name} must be a positive")),
            "{call}: {}",
            run.stderr
        );
    }
}

/// A node's static Pod (`file` under /etc/kubernetes/manifests of `root`), parsed.
fn static_pod(root: &Path, file: &str) -> serde_json::Value {
    let text = fs::read_to_string(root.join("etc/kubernetes/manifests").join(file)).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

/// The arguments of a node's static Pod (its command without the program), paths under
/// /etc/kubernetes mapped into `root`.
fn pod_args(root: &Path, file: &str) -> Vec<String> {
    let host = root.join("etc/kubernetes").display().to_string();
    static_pod(root, file)["spec"]["containers"][0]["command"].as_array().unwrap()[1..]
        .iter()
        .map(|a| a.as_str().unwrap().replace("/etc/kubernetes", &host))
        .collect()
}

/// `args` with the value of `--name` replaced.
fn set_arg(args: &mut [String], name: &str, value: &str) {
    let prefix = format!("--{name}=");
    let slot = args.iter_mut().find(|a| a.starts_with(&prefix)).unwrap_or_else(|| panic!("no --{name}"));
    *slot = format!("{prefix}{value}");
}

/// Starts the etcd member of the node rendered in `sb` as its Pod's command says, with the
/// node's files, its data folder in the sandbox, and serving at `ip` only: the Pod's listeners
/// on 127.0.0.1 (clients, metrics) are left out, as several members and other tests share this
/// host. Waits until it is healthy; returns the process and its log.
fn start_etcd_member(sb: &Sandbox, ip: &str) -> (KillOnDrop, PathBuf) {
    start_etcd_member_in(sb, ip, &sb.path().join("etcd-data"))
}

/// [`start_etcd_member`] with its data in the host folder `data`.
fn start_etcd_member_in(sb: &Sandbox, ip: &str, data: &Path) -> (KillOnDrop, PathBuf) {
    let root = sb.root();
    assert_eq!(static_pod(&root, "etcd.yaml")["spec"]["containers"][0]["command"][0], "etcd");
    let mut args = pod_args(&root, "etcd.yaml");
    set_arg(&mut args, "data-dir", &data.display().to_string());
    set_arg(&mut args, "listen-client-urls", &format!("https://{ip}:2379"));
    set_arg(&mut args, "listen-metrics-urls", &format!("http://{ip}:2381"));
    let log = sb.path().join("etcd.log");
    let child = Command::new("etcd")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("etcd is installed (Debian's etcd-server)");
    let member = KillOnDrop(child);
    wait_until_etcd_healthy(&format!("etcd on {ip}"), &log, || {
        etcdctl_as_healthcheck(&root, &format!("https://{ip}:2379"), &["endpoint", "health"])
    });
    (member, log)
}

/// `kscript_wrote` answers from this run's writes and from the journal of earlier runs; a
/// file the run expected another actor to write (`expect`) counts as kscript's.
#[test]
fn kscript_wrote_knows_this_run_and_earlier_ones() {
    let sb = Sandbox::new();
    sb.write(
        "wrote.rhai",
        r#"stage("s", "x", [
    step("ask", "before", || { info(`before: ${kscript_wrote("/etc/a.conf")} ${kscript_wrote("/etc/b.conf")} ${kscript_wrote("/etc/c.conf")}`); }),
    step("write", "write", || { file("/etc/a.conf", "a\n"); expect("/etc/c.conf", "another actor"); }),
    step("again", "after", || { info(`after: ${kscript_wrote("/etc/a.conf")} ${kscript_wrote("/etc/b.conf")} ${kscript_wrote("/etc/c.conf")}`); }),
]);"#,
    );
    fs::create_dir_all(sb.root().join("etc")).unwrap();
    fs::write(sb.root().join("etc/b.conf"), "not ours\n").unwrap();
    let run = sb.render("wrote.rhai", &[]).ok();
    assert!(
        run.stdout.contains("before: false false false") && run.stdout.contains("after: true false true"),
        "{}",
        run.stdout
    );
    let run = sb.render("wrote.rhai", &[]).ok();
    assert!(run.stdout.contains("before: true false true"), "the journal of the first run: {}", run.stdout);
    // A journal kept elsewhere (--journal) is the one earlier runs are read from.
    let journal = sb.path().join("elsewhere.jsonl");
    let root = sb.path().join("root2");
    let args =
        ["run", "wrote.rhai", "--root", root.to_str().unwrap(), "--journal", journal.to_str().unwrap()];
    let run = sb.kscript(&args).ok();
    assert!(run.stdout.contains("before: false false false"), "{}", run.stdout);
    let run = sb.kscript(&args).ok();
    assert!(run.stdout.contains("before: true false true"), "the --journal of the first run: {}", run.stdout);
}

/// Asks `stat`, `file_digest` and `list_dir` about a file made before the run, one the run
/// writes and one it removes, and about paths with nothing there.
const STAT: &str = r#"stage("s", "x", [ step("q", "query", || {
    file("/srv/b/new", "hello\n", #{ mode: 0o600 });
    remove("/srv/b/gone");
    let old = stat("/srv/b/old");
    info(`old: kind=${old.kind} size=${old.size} mode=${old.mode.to_string()} mtime=${old.mtime}`);
    info(`old digest: ${file_digest("/srv/b/old")}`);
    let made = stat("/srv/b/new");
    info(`new: kind=${made.kind} size=${made.size} mode=${made.mode} recent=${made.mtime > old.mtime}`);
    info(`new digest: ${file_digest("/srv/b/new")}`);
    info(`folder: kind=${stat("/srv/b").kind} list=${list_dir("/srv/b")}`);
    info(`absent: ${stat("/srv/none") == ()} ${file_digest("/srv/none") == ()} ${list_dir("/srv/none") == ()} ${stat("/srv/b/gone") == ()}`);
}) ]);"#;

/// The stamp and digest primitives read the node root: the disk under `--root`, the plan over
/// the disk in a dry run (a file the run writes or removes is seen as planned). They record
/// nothing: queries are not effects.
#[test]
fn stat_digest_and_list_see_what_the_run_sees() {
    let sb = Sandbox::new();
    sb.write("stat.rhai", STAT);
    let make_root = || {
        let _ = fs::remove_dir_all(sb.root());
        fs::create_dir_all(sb.root().join("srv/b")).unwrap();
        for name in ["old", "gone"] {
            let p = sb.root().join("srv/b").join(name);
            fs::write(&p, "bundle file\n").unwrap();
            let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
            fs::File::options().write(true).open(&p).unwrap().set_modified(at).unwrap();
        }
    };
    // 0o600 is 384, 0o644 420; sha256("bundle file\n") and sha256("hello\n").
    let expected = [
        "old: kind=file size=12 mode=420 mtime=1700000000123456789",
        "old digest: sha256:fe54b38e55763b49208a1913ca0522cfb2d13b0d6cadfe511dd90ee87355aa12",
        "new: kind=file size=6 mode=384 recent=true",
        "new digest: sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
        "folder: kind=dir list=[\"new\", \"old\"]",
        "absent: true true true true",
    ];
    for args in [&["--dry-run"][..], &[][..]] {
        make_root();
        fs::set_permissions(sb.root().join("srv/b/old"), fs::Permissions::from_mode(0o644)).unwrap();
        let run = sb.render("stat.rhai", args).ok();
        for line in expected {
            assert!(run.stdout.contains(line), "{args:?}: no `{line}` in\n{}", run.stdout);
        }
        let dry = args.contains(&"--dry-run");
        assert_eq!(sb.root().join("srv/b/new").exists(), !dry, "{args:?}");
        assert_eq!(sb.root().join("srv/b/gone").exists(), dry, "{args:?}");
    }
    // Only the file and the removal are in the journal.
    let entries = kscript::journal::read(&sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["file", "remove"], "{entries:?}");

    sb.write("folder.rhai", r#"stage("s", "x", [ step("q", "q", || { file_digest("/srv/b"); }) ]);"#);
    let run = sb.render("folder.rhai", &[]).code(1);
    assert!(run.stderr.contains("cannot digest /srv/b: it is not a regular file"), "{}", run.stderr);
}

/// Fails the test, saying what to install, unless every program of `tools` (each with its
/// Debian package) is on PATH or in /usr/sbin, and we are root. `what` says what the tests do,
/// `why_root` why that needs root.
#[track_caller]
fn require_tools(tools: &[(&str, &str)], what: &str, why_root: &str) {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    let missing: Vec<String> = tools
        .iter()
        .filter(|(p, _)| !on_path(p) && !Path::new("/usr/sbin").join(p).is_file())
        .map(|(p, pkg)| format!("{p} (Debian package {pkg})"))
        .collect();
    assert!(missing.is_empty(), "{what} and need: {}; `.ci/run` installs them", missing.join(", "));
    assert!(nix::unistd::geteuid().is_root(), "{why_root}");
}
