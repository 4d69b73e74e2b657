//! Crash safety: a render killed at any step boundary, then run again, ends with the same
//! node as a render that was never interrupted (key material aside).

use std::fs;

use super::{Sandbox, node_snapshot};

// ECDSA keeps the many runs quick; what is checked does not depend on the algorithm.
const NODE: &[&str] = &[
    "--set",
    "nodeRegistration.name=k8s-ctr",
    "--set",
    "localAPIEndpoint.advertiseAddress=192.168.56.10",
    "--set",
    "encryptionAlgorithm=ECDSA-P256",
];

#[test]
fn killed_at_every_step_boundary_then_rerun_gives_the_same_node() {
    let whole = Sandbox::new();
    let run = whole.render("control-plane.rhai", NODE).ok();
    let steps = run.stdout.lines().filter(|l| l.starts_with("  changed ") || l.starts_with("  ok ")).count();
    assert!(steps > 10, "the control-plane render has {steps} steps");
    let expected = node_snapshot(&whole.root());
    for kill_after in 1..steps {
        let sb = Sandbox::new();
        let n = kill_after.to_string();
        let mut args = vec!["run", "control-plane.rhai", "--root", "root"];
        args.extend_from_slice(NODE);
        let killed = sb.kscript_env(&[("KSCRIPT_TEST_KILL_AFTER_STEPS", &n)], &args);
        assert_eq!(killed.code, -1, "the run was not killed after {kill_after} steps: {}", killed.stdout);
        // No temporary file is left where a write was cut short.
        let leftovers: Vec<_> = walk(&sb.root()).into_iter().filter(|p| p.contains(".kscript-")).collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        sb.kscript(&args).ok();
        assert_eq!(node_snapshot(&sb.root()), expected, "killed after {kill_after} steps, then rerun");
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.display().to_string());
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
    }
    out
}
