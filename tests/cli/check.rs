//! `kscript check`: clean on what kscript ships, each seeded mistake found at its place.

use std::fs;

use super::Sandbox;

/// The 1-based line and column where `needle` first occurs in `text`.
#[track_caller]
fn place(text: &str, needle: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i + 1, line[..col].chars().count() + 1);
        }
    }
    panic!("`{needle}` is not in the text");
}

/// Every stock script, and a fork just ejected (checked as a folder, as the current folder and
/// script by script): nothing to report. This is the guard against false positives.
#[test]
fn check_is_clean_on_the_stock_scripts_and_an_ejected_fork() {
    let sb = Sandbox::new();
    for e in kscript::stock::SCRIPTS {
        let run = sb.kscript(&["check", e.name]).ok();
        assert!(run.stdout.contains("no problems found"), "{}: {}", e.name, run.stdout);
    }
    sb.kscript(&["eject", "fork"]).ok();
    let run = sb.kscript(&["check", "fork"]).ok();
    // The scripts, the modules, defaults.yaml and the starter suite.
    let files = kscript::stock::SCRIPTS.len() + kscript::stock::STDLIB.len() + 1;
    assert!(
        run.stdout.contains(&format!("kscript check: {files} file(s) checked, no problems found")),
        "{}",
        run.stdout
    );
    for e in kscript::stock::SCRIPTS {
        sb.kscript(&["check", &format!("fork/{}", e.name)]).ok();
    }
    let here = Sandbox::new();
    here.kscript(&["eject", "."]).ok();
    here.kscript(&["check"]).ok();
    // --only and --skip names that select something, steps generated from tables included.
    sb.kscript(&[
        "check",
        "control-plane.rhai",
        "--only",
        "init/certs",
        "--only",
        "init/certs/apiserver",
        "--skip",
        "network",
    ])
    .ok();
}

const MISTAKES: &str = r#"// mistakes.rhai: one of each mistake kscript check finds
import "node" as node;
import "site" as site;
import "nosuch" as gone;

stage("first", "Stage one", [
    step("a", "x", || { read_fil("/etc/hosts"); }),
    step("a", "y", || { file("/etc/motd"); }),
    step("b", "z", || { node::load_modulez(cfg); site::helper(cfg, 1); site::hidden(); }),
    step("c", "w", || { let s = cfg.networking.podSubnett; let d = cfg["site"].dnsServr; }),
    step("d", "v", || { let ok = cfg.site.dnsServer; "text".contains("a", "b"); let f = Fn("no_such_fn"); }),
    step("f", "s", || { let h = Fn("read_file"); h("/etc/hostname"); }),
    step("g", "r", || { let o = if "extra" in cfg.site { cfg.site.extra } else { "" }; }),
]);
let more = [step("e", "u", || {})];
more.push(step("e", "t", || {}));
stage("second", "Stage two", more);
stage("first", "Declared again", []);
stage("Third", "Not a stage name", []);
"#;

const SITE: &str = r#"// site.rhai: the site's own helpers
/// Reads a key the defaults do not have.
fn helper(cfg) {
    cfg.nodeRegistration.nmae
}

private fn hidden() {
    unit_restrat("site.service")
}
"#;

const GENERATED: &str = r#"// gen.rhai: step names made from a table, one of them twice
let steps = [];
for n in ["one", "two", "one"] {
    steps.push(step(n, "Made from a row", || {}));
}
stage("generated", "Steps from a table", steps);
"#;

const BROKEN: &str = r#"// broken.rhai: does not parse
stage("x", "y", [
    step("a", "b", || { let x = ; }),
]);
"#;

/// Seeded mistakes of every kind in one fork: each reported with its file, line and column,
/// all of them (sorted by file and line), then the count; exit 1.
#[test]
fn check_reports_every_seeded_mistake_at_its_place() {
    let sb = Sandbox::new();
    sb.kscript(&["eject", "fork"]).ok();
    sb.write("fork/mistakes.rhai", MISTAKES);
    sb.write("fork/stdlib/site.rhai", SITE);
    sb.write("fork/broken.rhai", BROKEN);
    sb.write("fork/gen.rhai", GENERATED);
    let defaults = sb.path().join("fork/stdlib/defaults.yaml");
    let mut text = fs::read_to_string(&defaults).unwrap();
    text.push_str("# The site's own settings.\nsite:\n  dnsServer: 10.0.0.53\n");
    fs::write(&defaults, text).unwrap();

    let run = sb.kscript(&["check", "fork"]).code(1);
    let out = run.stdout.replace("\n  │ ", " ");
    let expect = |file: &str, text: &str, needle: &str, message: &str| {
        let (line, col) = place(text, needle);
        let head = format!("fork/{file}:{line}:{col}: {message}");
        assert!(out.contains(&head), "expected `{head}` in:\n{out}");
        // miette's frame shows the same place and the source line.
        assert!(out.contains(&format!("[fork/{file}:{line}:{col}]")), "no frame for {head}:\n{out}");
    };
    let m = MISTAKES;
    expect("broken.rhai", BROKEN, "; })", "");
    // Found by evaluating the top level, as `kscript stages` does: the names are computed.
    expect("gen.rhai", GENERATED, "stage(\"generated\"", "stage `generated` has two steps named `one`");
    expect("mistakes.rhai", m, "\"nosuch\"", "module `nosuch` not found");
    expect("mistakes.rhai", m, "read_fil(", "unknown function `read_fil`");
    assert!(out.contains("did you mean `read_file`?"), "{out}");
    expect("mistakes.rhai", m, "file(\"/etc/motd\")", "`file` takes 2 or 3 arguments, not 1");
    expect("mistakes.rhai", m, "\"a\", \"y\"", "stage `first` has two steps named `a`");
    expect(
        "mistakes.rhai",
        m,
        "load_modulez",
        "module `node` (fork/stdlib/node.rhai) has no function `load_modulez`",
    );
    assert!(out.contains("did you mean `node::load_modules`?"), "{out}");
    expect("mistakes.rhai", m, "helper(cfg, 1)", "`site::helper` takes 1 argument, not 2");
    expect("mistakes.rhai", m, "hidden()", "`hidden` is private in module `site` (fork/stdlib/site.rhai)");
    expect("mistakes.rhai", m, "podSubnett", "unknown configuration key `cfg.networking.podSubnett`");
    assert!(out.contains("did you mean `cfg.networking.podSubnet`?"), "{out}");
    // The fork's own defaults are the schema: `site.dnsServer` is known, a typo of it is not.
    expect("mistakes.rhai", m, "dnsServr", "unknown configuration key `cfg.site.dnsServr`");
    assert!(out.contains("did you mean `cfg.site.dnsServer`?"), "{out}");
    assert!(!out.contains("key `cfg.site.dnsServer`"), "{out}");
    // A key whose presence the script tests first is no mistake.
    assert!(!out.contains("key `cfg.site.extra`"), "{out}");
    expect(
        "mistakes.rhai",
        m,
        "contains(",
        "`contains` takes 1 argument after the object it is called on, not 2",
    );
    expect("mistakes.rhai", m, "\"no_such_fn\"", "`Fn(\"no_such_fn\")` names no function");
    expect(
        "mistakes.rhai",
        m,
        "h(\"/etc/hostname\")",
        "`h` is a variable, not a function: Rhai does not call it as `h(...)`",
    );
    expect("mistakes.rhai", m, "\"e\", \"t\"", "stage `second` has two steps named `e`");
    expect("mistakes.rhai", m, "\"first\", \"Declared", "stage `first` is declared twice");
    expect("mistakes.rhai", m, "\"Third\"", "`Third` is not a valid stage name");
    expect("stdlib/site.rhai", SITE, "nmae", "unknown configuration key `cfg.nodeRegistration.nmae`");
    assert!(out.contains("did you mean `cfg.nodeRegistration.name`?"), "{out}");
    expect("stdlib/site.rhai", SITE, "unit_restrat(", "unknown function `unit_restrat`");
    assert!(out.contains("did you mean `unit_restart`?"), "{out}");

    // All of them, sorted by file, then line; then the count.
    let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("  × fork/")).collect();
    assert_eq!(heads.len(), 19, "{out}");
    let keys: Vec<(String, usize, usize)> = heads
        .iter()
        .map(|h| {
            let mut parts = h.trim_start_matches("  × ").splitn(4, ':');
            let file = parts.next().unwrap().to_string();
            (file, parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{out}");
    assert!(out.trim_end().ends_with("kscript check: 19 problem(s) found in 32 file(s) checked"), "{out}");

    // One script and the modules it imports: the findings in those files only.
    let run = sb.kscript(&["check", "fork/mistakes.rhai"]).code(1);
    assert!(run.stdout.contains("fork/stdlib/site.rhai:"), "{}", run.stdout);
    assert!(!run.stdout.contains("broken.rhai"), "{}", run.stdout);
}

/// `--only`/`--skip` names that select nothing in the script, with the closest that would.
#[test]
fn check_finds_only_and_skip_names_that_select_nothing() {
    let sb = Sandbox::new();
    let run = sb
        .kscript(&[
            "check",
            "control-plane.rhai",
            "--only",
            "init/cert",
            "--skip",
            "network",
            "--skip",
            "kubelt",
        ])
        .code(1);
    let out = run.stdout.replace("\n  │ ", " ");
    assert!(
        out.contains(
            "command line: --only init/cert: no stage or step has that name in builtin:control-plane.rhai"
        ),
        "{out}"
    );
    assert!(out.contains("did you mean `init/certs`?"), "{out}");
    assert!(out.contains("--skip kubelt: no stage or step has that name"), "{out}");
    assert!(out.contains("did you mean `kubelet`?"), "{out}");
    assert!(!out.contains("--skip network"), "{out}");
    assert!(out.contains("kscript check: 2 problem(s) found"), "{out}");
}

/// A path that is neither a script, a stock script's name nor a fork: exit 2, and why.
#[test]
fn check_refuses_what_it_cannot_check() {
    let sb = Sandbox::new();
    let run = sb.kscript(&["check", "no-such.rhai"]).code(2);
    assert!(
        run.message().contains("no script at `no-such.rhai`, and no stock script of that name"),
        "{}",
        run.stderr
    );
    fs::create_dir(sb.path().join("empty")).unwrap();
    let run = sb.kscript(&["check", "empty"]).code(2);
    assert!(run.message().contains("empty holds no scripts (*.rhai)"), "{}", run.stderr);
    sb.kscript(&["eject", "fork"]).ok();
    let run = sb.kscript(&["check", "fork", "--only", "init"]).code(2);
    assert!(run.message().contains("--only/--skip name the stages of one script"), "{}", run.stderr);
}

/// What a fork may do that is not a mistake: the same stage declared in two branches (one of
/// them runs), and a top level that needs a site setting, given with --set.
#[test]
fn alternatives_and_site_settings_are_not_mistakes() {
    let sb = Sandbox::new();
    sb.write(
        "alt.rhai",
        "if cfg.networking.podSubnet == \"10.0.0.0/8\" {\n    stage(\"network\", \"a\", [step(\"a\", \"b\", || {})]);\n} else {\n    stage(\"network\", \"c\", [step(\"a\", \"b\", || {})]);\n}\n",
    );
    let run = sb.kscript(&["check", "alt.rhai"]).ok();
    assert!(run.stdout.contains("no problems found"), "{}", run.stdout);
    sb.write(
        "site.rhai",
        "if cfg.clusterName == \"kubernetes\" { throw \"set clusterName for this site\"; }\nstage(\"one\", \"d\", [step(\"a\", \"b\", || {})]);\n",
    );
    let run = sb.kscript(&["check", "site.rhai"]).code(1);
    assert!(run.stdout.contains("set clusterName for this site"), "{}", run.stdout);
    let run = sb.kscript(&["check", "site.rhai", "--set", "clusterName=prod"]).ok();
    assert!(run.stdout.contains("no problems found"), "{}", run.stdout);
}
