//! The systemd family and stages 1 and 2 on a real systemd: kscript runs inside a booted
//! Debian 12 container (see `systemd_host`) and changes it for real.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use kscript::journal::{self, Outcome};

use super::systemd_host::Node;

/// A small service read from an environment file; a change to the file restarts it.
const LIFECYCLE: &str = r#"
const UNIT = "kscript-demo.service";

handler("restart demo", || {
    unit_restart(UNIT);
    unit_wait_active(UNIT, 30);
});

stage("demo", "A service installed, enabled, started, and restarted when its file changes", [
    step("unit", "The unit file", || {
        let unit = "[Unit]\nDescription=kscript test service\n\n" +
            "[Service]\nEnvironmentFile=/etc/kscript-demo.env\nExecStart=/bin/sleep infinity\n\n" +
            "[Install]\nWantedBy=multi-user.target\n";
        if file("/etc/systemd/system/kscript-demo.service", unit, #{ mode: 0o644 }) {
            daemon_reload();
        }
    }),
    step("config", "Its environment file", || {
        if file("/etc/kscript-demo.env", "DEMO_VALUE=@VALUE@\n") {
            notify("restart demo");
        }
    }),
    step("service", "Enabled, started, active", || {
        unit_enable(UNIT);
        unit_start(UNIT);
        unit_wait_active(UNIT, 30);
        info(`state=${unit_state(UNIT)}`);
    }),
]);
"#;

/// The value of `name` in the environment of process `pid` of the container.
fn environ_value(node: &Node, pid: &str, name: &str) -> String {
    node.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ | sed -n 's/^{name}=//p'"))
}

/// Installs, enables, starts a unit, restarts it when its configuration changes (and only
/// then), all through kscript's systemd functions against systemd as PID 1; checked from
/// outside with systemctl.
#[test]
fn a_unit_is_installed_enabled_started_and_restarted_on_notify() {
    let node = Node::boot();
    let unit = "kscript-demo.service";
    node.write("demo.rhai", &LIFECYCLE.replace("@VALUE@", "one"));
    let run = node.kscript(&["run", "demo.rhai"]).ok();
    assert!(run.stdout.contains("state=active"), "{}", run.stdout);
    assert!(run.stdout.contains("demo/handlers/restart-demo"), "{}", run.stdout);
    let props = ["ActiveState", "SubState", "UnitFileState", "InvocationID", "MainPID"];
    let first = node.show(unit, &props);
    assert_eq!(
        &first[..3],
        &[
            ("ActiveState".into(), "active".into()),
            ("SubState".into(), "running".into()),
            ("UnitFileState".into(), "enabled".into())
        ]
    );
    assert_eq!(
        node.sh("readlink /etc/systemd/system/multi-user.target.wants/kscript-demo.service"),
        "/etc/systemd/system/kscript-demo.service"
    );
    assert_eq!(environ_value(&node, &first[4].1, "DEMO_VALUE"), "one");
    // Every systemd effect ran (none was only recorded).
    let entries = journal::read(&node.path("/var/lib/kscript/journal.jsonl")).unwrap();
    let systemd: Vec<(String, Outcome)> =
        entries.iter().filter(|e| e.action == "systemd").map(|e| (e.target.clone(), e.outcome)).collect();
    assert!(systemd.iter().all(|(_, o)| *o != Outcome::Recorded), "{systemd:?}");
    for (target, outcome) in [
        ("daemon-reload", Outcome::Changed),
        // kscript made the [Install] symlink first: systemctl finds the unit enabled.
        ("enable kscript-demo.service", Outcome::Ok),
        ("start kscript-demo.service", Outcome::Changed),
        ("wait-active kscript-demo.service", Outcome::Ok),
        ("restart kscript-demo.service", Outcome::Changed),
    ] {
        assert!(systemd.contains(&(target.to_string(), outcome)), "no {target} {outcome:?} in {systemd:?}");
    }

    // The same again: nothing changes, no restart.
    let again = node.kscript(&["run", "demo.rhai", "--detailed-exitcode"]).ok();
    assert!(again.stdout.contains("changed=0") && !again.stdout.contains("handlers/"), "{}", again.stdout);
    assert_eq!(node.show(unit, &props), first, "a run without a change restarted the unit");

    // A changed file: the handler restarts the unit, which reads the new value.
    node.write("demo.rhai", &LIFECYCLE.replace("@VALUE@", "two"));
    let changed = node.kscript(&["run", "demo.rhai"]).ok();
    assert!(changed.stdout.contains("demo/handlers/restart-demo"), "{}", changed.stdout);
    let after = node.show(unit, &props);
    assert_eq!(after[..3], first[..3]);
    assert_ne!(after[3].1, first[3].1, "the InvocationID did not change: no restart");
    assert_ne!(after[4].1, first[4].1, "the MainPID did not change: no restart");
    assert_eq!(environ_value(&node, &after[4].1, "DEMO_VALUE"), "two");
    // Those were kscript's restarts: systemd never restarted it by itself.
    assert_eq!(node.property(unit, "NRestarts"), "0");
}

/// A test that panics with a container running (and a service in it) leaves no process, no
/// cgroup, no mount and no folder behind.
#[test]
fn a_failed_test_leaves_no_container_behind() {
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let node = Node::boot();
        node.sh("systemd-run --unit=kscript-left.service /bin/sleep infinity");
        let footprint = node.footprint();
        assert!(footprint.processes.len() >= 2, "{footprint:?}");
        assert!(!footprint.cgroups.is_empty() && footprint.left().len() > 3, "{footprint:?}");
        seen = Some(footprint);
        panic!("failing with the container up, as a test can");
    }));
    assert!(result.is_err());
    let footprint = seen.expect("the test got as far as the panic");
    assert!(footprint.left().is_empty(), "left behind: {:?}", footprint.left());
}

/// `text` without whitespace or miette's frame characters: miette wraps long lines anywhere.
fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// A `Type=notify` service that fails before it is ready, as containerd does with a broken
/// configuration; its error goes to the journal.
const BROKEN: &str = r#"
const UNIT = "kscript-broken.service";
stage("broken", "A service that fails at start", [
    step("unit", "The unit file", || {
        let unit = "[Unit]\nDescription=kscript failing test service\n\n" +
            "[Service]\nType=notify\n" +
            "ExecStart=/bin/sh -c 'echo \"kscript-marker: the configuration is broken\" >&2; exit 1'\n\n" +
            "[Install]\nWantedBy=multi-user.target\n";
        if file("/etc/systemd/system/kscript-broken.service", unit, #{ mode: 0o644 }) {
            daemon_reload();
        }
    }),
    step("service", "Enable and start it", || {
        unit_enable(UNIT);
        unit_start(UNIT);
    }),
    step("wait", "Wait until it is active", || {
        unit_wait_active(UNIT, 20);
    }),
]);
"#;

/// A failing unit fails the step that starts it and the step that waits for it, and both
/// errors carry `systemctl status` and the unit's journal lines.
#[test]
fn a_failing_unit_is_reported_with_its_status_and_journal_lines() {
    let node = Node::boot();
    node.write("broken.rhai", BROKEN);
    // `systemctl start` waits for a notify unit's start job, so the start itself fails.
    let run = node.kscript(&["run", "broken.rhai"]).code(1);
    let err = squeeze(&run.stderr);
    for part in [
        "systemd start kscript-broken.service",
        "Job for kscript-broken.service failed",
        "Active: failed",
        "last journal lines (journalctl -u kscript-broken.service)",
        "kscript-marker: the configuration is broken",
    ] {
        assert!(err.contains(&squeeze(part)), "no `{part}` in:\n{}", run.stderr);
    }
    assert!(!run.stdout.contains("broken/wait"), "{}", run.stdout);

    // Waiting for it later: it has failed, so the wait ends at once with the same report.
    let start = Instant::now();
    let run = node.kscript(&["run", "broken.rhai", "--only", "broken/wait"]).code(1);
    assert!(start.elapsed() < Duration::from_secs(15), "the wait did not stop at the failed state");
    let err = squeeze(&run.stderr);
    for part in [
        "kscript-broken.service has failed (state: failed)",
        "Loaded: loaded (/etc/systemd/system/kscript-broken.service; enabled",
        "Active: failed",
        "kscript-marker: the configuration is broken",
        "look further with: systemctl status kscript-broken.service; journalctl -u kscript-broken.service",
    ] {
        assert!(err.contains(&squeeze(part)), "no `{part}` in:\n{}", run.stderr);
    }
    assert_eq!(node.property("kscript-broken.service", "ActiveState"), "failed");
}
