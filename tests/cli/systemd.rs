//! The systemd family and stages 1 and 2 on a real systemd: kscript runs inside a booted
//! Debian 12 container (see `systemd_host`) and changes it for real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kscript::journal::{self, Outcome};

use super::Run;
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
/// The value of `name` in the environment of the unit's main process: asked again (its PID read
/// anew each time) until the process answers, for up to a minute; on a busy machine the shell
/// into the node or the read of /proc can come back empty once.
fn environ_value(node: &Node, unit: &str, name: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let pid = node.show(unit, &["MainPID"])[0].1.clone();
        let value = node.sh(&format!("tr '\\0' '\\n' < /proc/{pid}/environ | sed -n 's/^{name}=//p'"));
        if !value.is_empty() || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
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
    assert_eq!(environ_value(&node, unit, "DEMO_VALUE"), "one");
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
    assert_eq!(environ_value(&node, unit, "DEMO_VALUE"), "two");
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
pub(super) fn squeeze(text: &str) -> String {
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

/// Stage 1 with Debian's containerd 1.6, its version left to kscript (`auto`, the default).
pub(super) const STAGE_1: &[&str] = &["run", "control-plane.rhai", "--only", "containerd"];

/// The warning of a chosen containerd version that is not the installed one.
const VERSION_WARNING: &str = "kscript.containerd.version says";

/// Stage 2 from the local bundle the test puts in the work folder.
pub(super) const STAGE_2: &[&str] = &[
    "run",
    "control-plane.rhai",
    "--only",
    "kubelet",
    "--set",
    "kscript.kubernetes.source=bundle",
    "--set",
    "kscript.kubernetes.bundleDir=/mnt/work/bundle",
];

/// What a container cannot do, so that stage 1 skips it here: load kernel modules (the root
/// file system has no /lib/modules, and a container may not load modules anyway) and write
/// sysctls (nspawn mounts /proc/sys read-only).
pub(super) const CONTAINER_LIMITS: &[&str] = &["--skip", "containerd/modules", "--skip", "containerd/sysctl"];

/// Asks containerd's CRI socket, through kscript's CRI functions.
const CRI: &str = r#"
const EP = "unix:///run/containerd/containerd.sock";
stage("cri", "The runtime answers on its CRI socket", [
    step("ask", "Ready, version, the bundle's image", || {
        let s = cri_wait_ready(EP, 30);
        let v = cri_version(EP);
        info(`runtime_ready=${s.runtime_ready} runtime_name=${v.runtime_name} runtime_version=${v.runtime_version} api=${v.runtime_api_version}`);
        info(`pause present=${cri_image_status(EP, "@IMAGE@").present}`);
    }),
]);
"#;

/// A stand-in for the kubelet binary: none can be had on these machines (no reachable
/// registry serves one). Stage 2 is about the unit, kubeadm's drop-in and the crash loop
/// until init, and a kubelet without the files init writes exits 1 just as this does; it
/// answers `--version` as the real one does, which stage 2 checks.
const KUBELET_STUB: &str = r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "Kubernetes v1.37.0"; exit 0; fi
echo "kubelet stand-in: no configuration yet, exiting; arguments: $*" >&2
exit 1
"#;

/// Makes stage 2's bundle in `dir` as the bundle layout asks: kubelet, kubeadm and kubectl
/// (stand-ins), one cni-plugins-linux-*.tgz (stand-in plugins) and images/*.tar (the CRI
/// tests' pause image, a real one).
pub(super) fn make_bundle(dir: &Path) {
    let executable = |path: &Path, text: &str| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    };
    executable(&dir.join("kubelet"), KUBELET_STUB);
    for tool in ["kubeadm", "kubectl"] {
        executable(&dir.join(tool), &format!("#!/bin/sh\necho \"{tool} stand-in\"\n"));
    }
    let plugins = dir.join("cni");
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        executable(&plugins.join(p), &format!("#!/bin/sh\necho \"{p} stand-in\" >&2\nexit 1\n"));
    }
    let out = Command::new("tar")
        .arg("-C")
        .arg(&plugins)
        .arg("-czf")
        .arg(dir.join("cni-plugins-linux-amd64-v1.6.2.tgz"))
        .args(["bridge", "host-local", "loopback", "portmap"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    fs::remove_dir_all(&plugins).unwrap();
    fs::create_dir_all(dir.join("images")).unwrap();
    let build = tempfile::tempdir().unwrap();
    fs::copy(super::cri::build_pause_image(build.path()), dir.join("images/pause.tar")).unwrap();
}

/// `kscript ARGS` in the node, its time printed (`--nocapture` shows it).
fn timed(node: &Node, what: &str, args: &[&str]) -> Run {
    let start = Instant::now();
    let run = node.kscript(args);
    eprintln!("{what}: {:.1}s", start.elapsed().as_secs_f64());
    run
}

/// Stages 1 and 2 of the control-plane flow on a real systemd: containerd from Debian's
/// package (apt inside the container), configured, started, answering on its CRI socket;
/// then kubelet from a local bundle, enabled and crash-looping: the spec's state after
/// stage 2. `kscript status` after each says so. Both stages run again without a change.
#[test]
fn stages_1_and_2_on_a_real_systemd() {
    let node = Node::boot();
    what_a_container_cannot_do(&node);
    stage_1_installs_and_starts_containerd(&node);
    super::status::on_a_real_systemd_after_stage_1(&node);
    stage_2_leaves_kubelet_enabled_and_crash_looping(&node);
    super::status::on_a_real_systemd_after_stage_2(&node);
    a_rerun_reads_nothing_of_an_unchanged_bundle(&node);
}

/// Stage 1 as it is fails in a container, at its first step: no kernel module can be loaded
/// (the root file system has no /lib/modules for the host's kernel, and a container may not
/// load modules). Its sysctls cannot be applied either: nspawn mounts /proc/sys read-only.
fn what_a_container_cannot_do(node: &Node) {
    let run = timed(node, "stage 1 as is", STAGE_1).code(1);
    assert!(run.stdout.contains("failed   containerd/modules"), "{}", run.stdout);
    let modprobe = squeeze("modprobe: FATAL: Module overlay not found in directory /lib/modules/");
    assert!(squeeze(&run.stderr).contains(&modprobe), "{}", run.stderr);
    let run =
        timed(node, "stage 1 sysctl", &["run", "control-plane.rhai", "--only", "containerd/sysctl"]).code(1);
    assert!(
        squeeze(&run.stderr).contains(&squeeze("handlers/reload-sysctl failed: `sysctl --system`")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("sysctl: permission denied on key \"net.ipv4.ip_forward\""),
        "{}",
        run.stderr
    );
}

/// Stage 1 without those two steps: containerd installed by apt, its config written and in
/// force, the service enabled and active, the CRI socket answering through kscript.
fn stage_1_installs_and_starts_containerd(node: &Node) {
    let stage_1 = [STAGE_1, CONTAINER_LIMITS].concat();
    let run = timed(node, "stage 1", &stage_1).ok();
    assert!(run.stdout.contains("changed  containerd/package"), "{}", run.stdout);
    // The user chose no version: the installed 1.6 is configured without a word.
    assert!(!run.stderr.contains(VERSION_WARNING), "{}", run.stderr);
    assert!(run.stdout.contains("containerd/handlers/restart-containerd"), "{}", run.stdout);
    let version = node.sh("containerd --version");
    assert!(version.contains(" 1.6."), "Debian 12's containerd is 1.6: {version}");
    assert_eq!(
        node.show("containerd.service", &["ActiveState", "SubState", "UnitFileState"]),
        [
            ("ActiveState".into(), "active".into()),
            ("SubState".into(), "running".into()),
            ("UnitFileState".into(), "enabled".into())
        ]
    );
    let config = fs::read_to_string(node.path("/etc/containerd/config.toml")).unwrap();
    assert!(
        config.contains("SystemdCgroup = true") && config.contains("\"registry.k8s.io/pause:3.10.2\""),
        "{config}"
    );
    let dumped = node.sh("containerd config dump");
    assert!(dumped.contains("SystemdCgroup = true"), "{dumped}");

    // The CRI socket answers through kscript; the bundle's image is not there yet.
    node.write("cri.rhai", &CRI.replace("@IMAGE@", super::cri::IMAGE));
    let run = timed(node, "cri", &["run", "cri.rhai"]).ok();
    let answer = "runtime_ready=true runtime_name=containerd runtime_version=1.6.";
    assert!(run.stdout.contains(answer) && run.stdout.contains("api=v1"), "{}", run.stdout);
    assert!(run.stdout.contains("pause present=false"), "{}", run.stdout);

    let again = timed(node, "stage 1 again", &[&stage_1[..], &["--detailed-exitcode"]].concat()).ok();
    assert!(again.stdout.contains("changed=0"), "{}", again.stdout);
    assert!(!again.stderr.contains(VERSION_WARNING), "{}", again.stderr);

    // A version the user chose that is not the installed one: said, and the installed one
    // configured all the same (nothing changes).
    let chosen = [&stage_1[..], &["--set", "kscript.containerd.version=1.7", "--detailed-exitcode"]].concat();
    let run = timed(node, "stage 1 with 1.7 chosen", &chosen).ok();
    assert!(run.stdout.contains("changed=0"), "{}", run.stdout);
    assert!(
        squeeze(&run.stderr).contains(&squeeze(
            "containerd 1.6 is installed, kscript.containerd.version says 1.7: configuring it for 1.6"
        )),
        "{}",
        run.stderr
    );
}

/// Stage 2 from the bundle: the binaries, the unit and kubeadm's drop-in, the CNI plugins,
/// the bundle's image in containerd, and kubelet enabled and started: it fails, and systemd
/// starts it again every `RestartSec`, run by the drop-in's command line.
fn stage_2_leaves_kubelet_enabled_and_crash_looping(node: &Node) {
    make_bundle(&node.work().join("bundle"));
    let run = timed(node, "stage 2", STAGE_2).ok();
    assert!(!run.stderr.contains("the bundle's kubelet says"), "{}", run.stderr);
    assert_eq!(fs::read_to_string(node.path("/usr/bin/kubelet")).unwrap(), KUBELET_STUB);
    assert_eq!(fs::read_to_string(node.path("/etc/default/kubelet")).unwrap(), "KUBELET_EXTRA_ARGS=\n");
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(node.path(&format!("/opt/cni/bin/{p}")).is_file(), "no CNI plugin {p}");
    }
    assert_eq!(node.property("kubelet.service", "UnitFileState"), "enabled");
    // Debian 12's systemd names /usr/lib/systemd/system by its /lib alias (merged /usr).
    let fragment = node.property("kubelet.service", "FragmentPath");
    assert!(fragment.ends_with("/lib/systemd/system/kubelet.service"), "{fragment}");
    assert_eq!(
        node.property("kubelet.service", "DropInPaths"),
        "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"
    );
    // Crashed with exit 1, waiting to be started again (its few milliseconds of running
    // may not be over yet when kscript returns).
    let start = Instant::now();
    while node.property("kubelet.service", "SubState") != "auto-restart" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            node.show("kubelet.service", &["ActiveState", "SubState"])
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        node.show("kubelet.service", &["ActiveState", "Result", "ExecMainStatus"]),
        [
            ("ActiveState".into(), "activating".into()),
            ("Result".into(), "exit-code".into()),
            ("ExecMainStatus".into(), "1".into())
        ]
    );
    // The image from the bundle is in containerd's k8s.io namespace.
    let run = timed(node, "cri after stage 2", &["run", "cri.rhai"]).ok();
    assert!(run.stdout.contains("pause present=true"), "{}", run.stdout);

    // Again: nothing changes, and kscript does not start the restarting kubelet itself.
    let again = timed(node, "stage 2 again", &[STAGE_2, &["--detailed-exitcode"]].concat()).ok();
    assert!(again.stdout.contains("changed=0"), "{}", again.stdout);

    // The loop goes on: systemd starts it again after RestartSec=10 and it fails again, run
    // by kubeadm's drop-in (its arguments; the files init writes are still missing).
    let start = Instant::now();
    while node.property("kubelet.service", "NRestarts") == "0" {
        assert!(start.elapsed() < Duration::from_secs(40), "kubelet was not restarted in 40 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("kubelet restarted after {:.1}s", start.elapsed().as_secs_f64());
    let journal = node.sh("journalctl -u kubelet.service --no-pager");
    let arguments = "kubelet stand-in: no configuration yet, exiting; arguments: \
                     --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
                     --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml";
    assert!(journal.contains(arguments), "{journal}");
    // The spec's state after stage 2: containerd running, kubelet enabled in a crash loop.
    assert_eq!(node.property("containerd.service", "ActiveState"), "active");
    assert_eq!(node.property("kubelet.service", "UnitFileState"), "enabled");
}

/// The host commands the journal records from entry `from` on, as `(step, command line)`,
/// and how many entries it holds now.
fn commands_since(node: &Node, from: usize) -> (Vec<(String, String)>, usize) {
    let entries = journal::read(&node.path("/var/lib/kscript/journal.jsonl")).unwrap();
    let commands = entries[from..]
        .iter()
        .filter(|e| e.action == "run")
        .map(|e| (e.step.clone(), e.target.clone()))
        .collect();
    (commands, entries.len())
}

/// The entry of bundle file `path` (a path inside the container) in kscript's bundle record.
fn bundle_record(node: &Node, path: &str) -> serde_json::Value {
    let text = fs::read_to_string(node.path("/var/lib/kscript/bundle.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["files"][path].clone()
}

/// Stage 2 after a first run, with the bundle unchanged: it reads nothing of the bundle and
/// runs no command (the record and the runtime's image status answer). Then only what changed
/// is installed again: a bundle binary with new content, a binary changed on the node, an
/// image removed from containerd, a CNI plugin removed; a binary that was only touched has
/// its new stamp recorded, and is not installed.
fn a_rerun_reads_nothing_of_an_unchanged_bundle(node: &Node) {
    let bundle = "/mnt/work/bundle";
    let (_, mut seen) = commands_since(node, 0);
    let kubelet = bundle_record(node, &format!("{bundle}/kubelet"));
    assert_eq!(kubelet["written"]["/usr/bin/kubelet"]["mode"], 0o755, "{kubelet}");
    assert!(kubelet["digest"].as_str().is_some_and(|d| d.starts_with("sha256:")), "{kubelet}");
    assert_eq!(kubelet["version"], "Kubernetes v1.37.0", "{kubelet}");
    let archive = bundle_record(node, &format!("{bundle}/images/pause.tar"));
    assert_eq!(archive["images"], serde_json::json!([super::cri::IMAGE]), "{archive}");
    let cni = bundle_record(node, &format!("{bundle}/cni-plugins-linux-amd64-v1.6.2.tgz"));
    let plugins: Vec<&String> = cni["written"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(
        plugins,
        ["/opt/cni/bin/bridge", "/opt/cni/bin/host-local", "/opt/cni/bin/loopback", "/opt/cni/bin/portmap"],
        "{cni}"
    );

    // Unchanged: no command at all, nothing changed.
    let again = timed(node, "stage 2, bundle unchanged", &[STAGE_2, &["--detailed-exitcode"]].concat()).ok();
    assert!(again.stdout.contains("changed=0"), "{}", again.stdout);
    let (commands, now) = commands_since(node, seen);
    assert!(commands.is_empty(), "an unchanged bundle ran {commands:?}");
    seen = now;

    // New content for kubeadm in the bundle, kubectl only touched, /usr/bin/kubelet changed on
    // the node: kubeadm and kubelet are installed again, kubectl is not.
    node.sh(&format!(
        "printf '#!/bin/sh\\necho kubeadm stand-in, second build\\n' > {bundle}/kubeadm; \
         touch -d '2030-01-01 00:00:01' {bundle}/kubectl; echo changed >> /usr/bin/kubelet"
    ));
    let run = timed(node, "stage 2, two binaries to install", STAGE_2).ok();
    assert!(run.stdout.contains("changed  kubelet/packages"), "{}", run.stdout);
    let (commands, now) = commands_since(node, seen);
    seen = now;
    let installs: Vec<&str> =
        commands.iter().filter(|(_, c)| c.starts_with("install ")).map(|(_, c)| c.as_str()).collect();
    assert_eq!(
        installs,
        [
            "install -m 0755 /mnt/work/bundle/kubelet /usr/bin/kubelet",
            "install -m 0755 /mnt/work/bundle/kubeadm /usr/bin/kubeadm"
        ],
        "{commands:?}"
    );
    assert!(commands.iter().all(|(step, _)| step == "packages"), "other steps ran commands: {commands:?}");
    assert_eq!(fs::read_to_string(node.path("/usr/bin/kubelet")).unwrap(), KUBELET_STUB);
    assert!(node.sh("/usr/bin/kubeadm").contains("second build"));
    let kubectl = bundle_record(node, &format!("{bundle}/kubectl"));
    let touched = node.sh(&format!("stat -c %Y {bundle}/kubectl")).parse::<i64>().unwrap();
    assert_eq!(kubectl["mtime"].as_i64().map(|ns| ns / 1_000_000_000), Some(touched), "{kubectl}");

    // An image removed from containerd and a CNI plugin removed: the archive is imported and
    // the tarball unpacked again, and nothing else runs.
    node.sh(&format!("ctr -n k8s.io images rm {} && rm /opt/cni/bin/portmap", super::cri::IMAGE));
    let run = timed(node, "stage 2, an image and a plugin missing", STAGE_2).ok();
    assert!(
        run.stdout.contains("changed  kubelet/images") && run.stdout.contains("changed  kubelet/cni"),
        "{}",
        run.stdout
    );
    let (commands, now) = commands_since(node, seen);
    seen = now;
    let changing: Vec<&str> =
        commands.iter().filter(|(_, c)| !c.starts_with("tar -xOf")).map(|(_, c)| c.as_str()).collect();
    assert_eq!(
        changing,
        [
            "ctr -n k8s.io images import /mnt/work/bundle/images/pause.tar",
            "tar -C /opt/cni/bin -xzvf /mnt/work/bundle/cni-plugins-linux-amd64-v1.6.2.tgz"
        ],
        "{commands:?}"
    );
    assert!(node.path("/opt/cni/bin/portmap").is_file());
    let run = timed(node, "cri after the import", &["run", "cri.rhai"]).ok();
    assert!(run.stdout.contains("pause present=true"), "{}", run.stdout);

    // And settled again: stages 1 and 2 with nothing to do.
    let stage_1 = [STAGE_1, CONTAINER_LIMITS].concat();
    let run =
        timed(node, "stage 1, nothing to change", &[&stage_1[..], &["--detailed-exitcode"]].concat()).ok();
    assert!(run.stdout.contains("changed=0"), "{}", run.stdout);
    let run = timed(node, "stage 2, nothing to change", &[STAGE_2, &["--detailed-exitcode"]].concat()).ok();
    assert!(run.stdout.contains("changed=0"), "{}", run.stdout);
    let (commands, _) = commands_since(node, seen);
    let stage_2: Vec<_> =
        commands.iter().filter(|(step, _)| ["packages", "images", "cni"].contains(&step.as_str())).collect();
    assert!(stage_2.is_empty(), "an unchanged bundle ran {stage_2:?}");
}

/// Stages 1 and 2 from a bundle of real size, with nothing to change after the first run.
fn stages_1_2_from(bundle: &str, version: &str) -> Vec<String> {
    let mut args: Vec<String> = ["run", "control-plane.rhai", "--only", "containerd", "--only", "kubelet"]
        .iter()
        .chain(CONTAINER_LIMITS)
        .map(ToString::to_string)
        .collect();
    for set in [
        "kscript.containerd.version=1.6".to_string(),
        "kscript.kubernetes.source=bundle".to_string(),
        format!("kscript.kubernetes.bundleDir={bundle}"),
        format!("kubernetesVersion={version}"),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    args
}

/// A bundle as build-image.sh makes one for the VMs, in `dir`: kubelet, kubeadm and kubectl
/// from `bin`, a CNI tarball of four 10 MB stand-in plugins, and image archives of the
/// control plane binaries (one layer each) and pause.
fn make_real_bundle(bin: &Path, dir: &Path) {
    fs::create_dir_all(dir.join("images")).unwrap();
    for b in ["kubelet", "kubeadm", "kubectl"] {
        fs::copy(bin.join(b), dir.join(b)).unwrap();
    }
    let plugins = tempfile::tempdir().unwrap();
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        let mut noise = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(fs::File::open("/dev/urandom").unwrap(), 10 << 20),
            &mut noise,
        )
        .unwrap();
        fs::write(plugins.path().join(p), &noise).unwrap();
    }
    let out = Command::new("tar")
        .arg("-C")
        .arg(plugins.path())
        .arg("-czf")
        .arg(dir.join("cni-plugins-linux-amd64-v1.6.2.tgz"))
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    let version = k8s_version_of(bin);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/cri/oci-image.py");
    for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"] {
        let out = Command::new("python3")
            .arg(&script)
            .arg(dir.join(format!("images/{c}.tar")))
            .arg(format!("registry.k8s.io/{c}:{version}"))
            .arg(format!("[\"/usr/local/bin/{c}\"]"))
            .arg(format!("{}=/usr/local/bin/{c}", bin.join(c).display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "oci-image.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    let build = tempfile::tempdir().unwrap();
    fs::copy(super::cri::build_pause_image(build.path()), dir.join("images/pause.tar")).unwrap();
}

/// The Kubernetes version of the binaries in `bin` (`v1.32.13`), as kube-apiserver says.
fn k8s_version_of(bin: &Path) -> String {
    let out = Command::new(bin.join("kube-apiserver")).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no version in `kube-apiserver --version`: {text}"))
        .to_string()
}

/// The RECAP lines of a run's output.
fn recap(run: &Run) -> String {
    run.stdout.lines().skip_while(|l| !l.starts_with("RECAP")).collect::<Vec<_>>().join("\n")
}

/// Figures, not a check: stages 1 and 2 on a real systemd from a bundle of real Kubernetes
/// binaries (`KSCRIPT_K8S_BIN`, as for the VMs) and image archives built from them: the first
/// run, then runs with nothing to change. Run with
/// `KSCRIPT_K8S_BIN=DIR cargo test --test cli bundle_rerun_figures -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures; needs KSCRIPT_K8S_BIN, a folder of Kubernetes binaries"]
fn bundle_rerun_figures() {
    let bin = PathBuf::from(
        std::env::var("KSCRIPT_K8S_BIN").expect("KSCRIPT_K8S_BIN names a folder of Kubernetes binaries"),
    );
    let node = Node::boot();
    let start = Instant::now();
    make_real_bundle(&bin, &node.work().join("bundle"));
    eprintln!("bundle made in {:.1}s: {}", start.elapsed().as_secs_f64(), node.sh("du -sh /mnt/work/bundle"));
    let version = k8s_version_of(&bin);
    let args = stages_1_2_from("/mnt/work/bundle", &version);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = timed(&node, "stages 1-2, first run", &args).ok();
    eprintln!("{}", recap(&first));
    // For a comparison: the same reruns with a forked flow (`control-plane.rhai` with its
    // `stdlib/` beside it, such as an earlier commit's), then the built-in one again.
    if let Some(fork) = std::env::var_os("KSCRIPT_FIGURES_FORK") {
        let out = Command::new("cp").arg("-a").arg(&fork).arg(node.work().join("fork")).output().unwrap();
        assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
        let mut forked = args.clone();
        forked[1] = "fork/control-plane.rhai";
        for i in 1..=2 {
            let again =
                timed(&node, &format!("stages 1-2 with the fork, nothing to change ({i})"), &forked).ok();
            eprintln!("{}", recap(&again));
        }
    }
    for i in 1..=3 {
        let again = timed(
            &node,
            &format!("stages 1-2, nothing to change ({i})"),
            &[&args[..], &["--detailed-exitcode"]].concat(),
        )
        .ok();
        eprintln!("{}", recap(&again));
    }
}
