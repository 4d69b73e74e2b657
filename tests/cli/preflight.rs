//! kubeadm's preflight checks: each one passing and failing on made-up observations, the
//! real host observed, errors ignored by name or all, and a render that skips them; on a real
//! systemd node (the nspawn harness, a network namespace of its own), a rerun on the node
//! kscript built passes while a foreign process on a port is refused and named as `ss` names
//! it.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use super::Sandbox;
use super::systemd::squeeze;
use super::systemd_host::Node;

/// For every check of both roles: judged on good observations it passes; on observations
/// spoiled for it alone it fails, saying what is wrong.
const EVERY_CHECK: &str = r#"
import "preflight" as preflight;
stage("t", "preflight checks", [ step("all", "each check both ways", || {
    let good = #{
        probe: #{ cpus: 2, mem_mib: 3900, swap_active: false, kernel: "6.1.0-18-amd64", cgroup_v2: true,
                  cgroup_controllers: ["cpu", "cpuset", "io", "memory", "pids"], is_root: true },
        ports: #{}, files: #{}, proc: #{},
        cri: #{ status: #{ runtime_ready: true }, version: #{ runtime_name: "containerd", runtime_version: "1.7.24" } },
        cri_error: (), kubelet: "Kubernetes v1.37.0",
    };
    let rows = preflight::checks(cfg, "control-plane") + preflight::checks(cfg, "worker");
    for c in rows {
        if c.name.starts_with("Port-") { good.ports[`${c.subject}`] = (); }
        if c.name.starts_with("FileAvailable--") || c.name.starts_with("DirAvailable--") { good.files[c.subject] = #{ exists: true, ours: true }; }
        if c.name.starts_with("FileContent--") { good.proc[c.subject] = "1"; }
    }
    for c in rows {
        let pass = preflight::evaluate(c, cfg, good);
        let bad = good;
        switch c.name {
            "IsPrivilegedUser" => bad.probe.is_root = false,
            "NumCPU" => bad.probe.cpus = 1,
            "Mem" => bad.probe.mem_mib = 1024,
            "Swap" => bad.probe.swap_active = true,
            "CRI" => bad.cri_error = "no socket at /run/containerd/containerd.sock",
            "ContainerRuntimeVersion" => bad.cri.version.runtime_version = "1.5.13",
            "KubeletVersion" => bad.kubelet = "Kubernetes v1.33.4",
            "SystemVerification" => bad.probe.kernel = "4.14.0",
            _ => {
                if c.name.starts_with("Port-") {
                    bad.ports[`${c.subject}`] = #{ port: c.subject, users: "users:((\"nc\",pid=1234,fd=3))",
                        holders: [#{ pid: 1234, fd: 3, name: "nc", command: "nc" }] };
                }
                if c.name.starts_with("FileAvailable--") || c.name.starts_with("DirAvailable--") { bad.files[c.subject] = #{ exists: true, ours: false }; }
                if c.name.starts_with("FileContent--") { bad.proc[c.subject] = "0"; }
            }
        }
        let fail = preflight::evaluate(c, cfg, bad);
        info(`${c.name} pass=${pass == ()} fail=${fail}`);
    }
    // A few more ways to fail.
    let more = good;
    more.cri.status.runtime_ready = false;
    info(`CRI-not-ready ${preflight::evaluate(#{ name: "CRI" }, cfg, more)}`);
    more = good;
    more.kubelet = "Kubernetes v1.38.0";
    info(`kubelet-newer ${preflight::evaluate(#{ name: "KubeletVersion" }, cfg, more)}`);
    more.kubelet = ();
    info(`kubelet-absent ${preflight::evaluate(#{ name: "KubeletVersion" }, cfg, more)}`);
    more = good;
    more.probe.cgroup_controllers = ["cpu", "memory"];
    info(`cgroups ${preflight::evaluate(#{ name: "SystemVerification" }, cfg, more)}`);
    more = good;
    more.proc["/proc/sys/net/bridge/bridge-nf-call-iptables"] = ();
    info(`no-bridge ${preflight::evaluate(#{ name: "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables", subject: "/proc/sys/net/bridge/bridge-nf-call-iptables" }, cfg, more)}`);
}) ]);
"#;

#[test]
fn every_check_passes_and_fails() {
    let sb = Sandbox::new();
    sb.write("checks.rhai", EVERY_CHECK);
    let run = sb.render("checks.rhai", &[]).ok();
    let names = [
        "IsPrivilegedUser",
        "NumCPU",
        "Mem",
        "Port-6443",
        "Port-10257",
        "Port-10259",
        "Port-2379",
        "Port-2380",
        "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
        "FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
        "FileAvailable--etc-kubernetes-manifests-etcd.yaml",
        "DirAvailable--var-lib-etcd",
        "FileAvailable--etc-kubernetes-kubelet.conf",
        "Port-10250",
        "Swap",
        "FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
        "FileContent--proc-sys-net-ipv4-ip_forward",
        "CRI",
        "ContainerRuntimeVersion",
        "KubeletVersion",
        "SystemVerification",
    ];
    for name in names {
        let line = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} pass=")))
            .unwrap_or_else(|| panic!("{name} not judged:\n{}", run.stdout));
        assert!(line.contains("pass=true"), "{name} does not pass on good observations: {line}");
        assert!(
            !line.contains("fail=\n") && !line.ends_with("fail="),
            "{name} does not fail on bad observations: {line}"
        );
    }
    for (want, what) in [
        ("CRI-not-ready the container runtime at", "RuntimeReady false"),
        ("kubelet-newer the kubelet Kubernetes v1.38.0 is newer", "a newer kubelet"),
        ("kubelet-absent no kubelet answers", "no kubelet"),
        ("cgroups the cgroup controllers", "missing controllers"),
        (
            "no-bridge /proc/sys/net/bridge/bridge-nf-call-iptables does not exist: load the br_netfilter module",
            "no br_netfilter",
        ),
        (
            r#"Port-6443 pass=true fail=port 6443 is in use by users:(("nc",pid=1234,fd=3)), not by kube-apiserver"#,
            "a busy port",
        ),
        ("Swap pass=true fail=swap is on", "swap"),
    ] {
        assert!(run.stdout.contains(want), "{what}: {}", run.stdout);
    }
}

/// The port checks on made-up observations: each port held by its own component, with the
/// file that makes it kscript's written by kscript (a rerun on kscript's node), against the
/// same component not kscript's, a foreign process, a mix, and a holder kscript cannot see.
const PORT_CHECKS: &str = r#"
import "preflight" as preflight;
/// `pass`, or the problem.
fn verdict(r) { if r == () { "pass" } else { r } }
stage("t", "port checks", [ step("ports", "who holds each port", || {
    let base = #{ probe: (), ports: #{}, files: #{}, proc: #{}, cri: (), cri_error: (), kubelet: () };
    let rows = preflight::checks(cfg, "control-plane").filter(|c| c.name.starts_with("Port-"));
    // kscript's node: every port held by its component (comm cut at 15 bytes, as the kernel
    // keeps it), every manifest and the kubelet's configuration kscript's.
    let own = base;
    let pid = 100;
    for c in rows {
        pid += 1;
        let comm = if c.process.len() > 15 { c.process.sub_string(0, 15) } else { c.process };
        own.ports[`${c.subject}`] = #{ port: c.subject, users: `users:(("${comm}",pid=${pid},fd=7))`,
            holders: [#{ pid: pid, fd: 7, name: comm, command: c.process }] };
        own.files[c.made_by] = #{ exists: true, ours: true };
    }
    for c in rows {
        info(`own ${c.name} ${c.process} ${c.made_by} -> ${verdict(preflight::evaluate(c, cfg, own))}`);
    }
    let api = rows.filter(|c| c.subject == 6443)[0];
    let cm = rows.filter(|c| c.subject == 10257)[0];
    // A command line that cannot be read: the comm decides.
    let o = own;
    o.ports["10257"].holders[0].command = ();
    info(`comm-only -> ${verdict(preflight::evaluate(cm, cfg, o))}`);
    // A name that only begins like the component's.
    o = own;
    o.ports["10257"].holders[0].command = "kube-controller-evil";
    info(`alike -> ${verdict(preflight::evaluate(cm, cfg, o))}`);
    // The component, but its manifest is another tool's, or gone.
    o = own;
    o.files[api.made_by].ours = false;
    info(`not-ours -> ${verdict(preflight::evaluate(api, cfg, o))}`);
    o.files[api.made_by] = #{ exists: false, ours: true };
    info(`gone -> ${verdict(preflight::evaluate(api, cfg, o))}`);
    // A foreign process, alone or beside the component.
    o = own;
    o.ports["6443"] = #{ port: 6443, users: `users:(("python3",pid=4242,fd=3))`,
        holders: [#{ pid: 4242, fd: 3, name: "python3", command: "python3" }] };
    info(`foreign -> ${verdict(preflight::evaluate(api, cfg, o))}`);
    o.ports["6443"].holders += own.ports["6443"].holders;
    o.ports["6443"].users = `users:(("python3",pid=4242,fd=3),("kube-apiserver",pid=101,fd=7))`;
    info(`mixed -> ${verdict(preflight::evaluate(api, cfg, o))}`);
    // In use, but nobody this run can see holds it.
    o.ports["6443"] = #{ port: 6443, users: (), holders: [] };
    info(`unseen -> ${verdict(preflight::evaluate(api, cfg, o))}`);
    // A worker's kubelet.conf, made by the kubelet as kscript's join expected: kscript's.
    let kc = preflight::checks(cfg, "worker").filter(|c| c.name == "FileAvailable--etc-kubernetes-kubelet.conf")[0];
    o.files[kc.subject] = #{ exists: true, ours: true };
    info(`kubelet.conf ours -> ${verdict(preflight::evaluate(kc, cfg, o))}`);
}) ]);
"#;

#[test]
fn ports_held_by_kscripts_own_components_pass_and_others_name_the_holder() {
    let sb = Sandbox::new();
    sb.write("ports.rhai", PORT_CHECKS);
    let run = sb.render("ports.rhai", &[]).ok();
    let out = run.stdout;
    let m = "/etc/kubernetes/manifests";
    for (port, process, made_by) in [
        (6443, "kube-apiserver", format!("{m}/kube-apiserver.yaml")),
        (10257, "kube-controller-manager", format!("{m}/kube-controller-manager.yaml")),
        (10259, "kube-scheduler", format!("{m}/kube-scheduler.yaml")),
        (2379, "etcd", format!("{m}/etcd.yaml")),
        (2380, "etcd", format!("{m}/etcd.yaml")),
        (10250, "kubelet", "/var/lib/kubelet/config.yaml".into()),
    ] {
        let want = format!("own Port-{port} {process} {made_by} -> pass");
        assert!(out.contains(&want), "Port-{port} on kscript's node: {out}");
    }
    for (case, want) in [
        ("comm-only", "comm-only -> pass".to_string()),
        (
            "alike",
            r#"alike -> port 10257 is in use by users:(("kube-controller",pid=102,fd=7)), not by kube-controller-manager: stop that process or free the port, then run again (see it with: ss -ltnp 'sport = :10257')"#.into(),
        ),
        (
            "not-ours",
            format!(
                r#"not-ours -> port 6443 is in use by users:(("kube-apiserver",pid=101,fd=7)): this kube-apiserver is not kscript's (kscript did not write {m}/kube-apiserver.yaml); the node runs what another tool set up: reset it (kubeadm reset) before building it with kscript"#
            ),
        ),
        ("gone", format!("({m}/kube-apiserver.yaml does not exist)")),
        (
            "foreign",
            r#"foreign -> port 6443 is in use by users:(("python3",pid=4242,fd=3)), not by kube-apiserver"#.into(),
        ),
        (
            "mixed",
            r#"mixed -> port 6443 is in use by users:(("python3",pid=4242,fd=3),("kube-apiserver",pid=101,fd=7)), not by kube-apiserver"#.into(),
        ),
        ("unseen", "unseen -> port 6443 is in use by a process kscript cannot see".into()),
        ("kubelet.conf", "kubelet.conf ours -> pass".into()),
    ] {
        assert!(out.contains(&want), "{case}: no `{want}` in\n{out}");
    }
}

#[test]
fn the_real_host_is_observed_and_errors_can_be_ignored() {
    let sb = Sandbox::new();
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let journal = sb.path().join("journal.jsonl");
    let port_set = format!("localAPIEndpoint.bindPort={port}");
    // No runtime behind this socket: the test never asks (or pulls through) the host's own.
    let socket_set = format!("nodeRegistration.criSocket=unix://{}/no-runtime.sock", sb.path().display());
    let args = [
        "run",
        "control-plane.rhai",
        "--only",
        "init/preflight",
        "--journal",
        journal.to_str().unwrap(),
        "--set",
        "nodeRegistration.name=k8s-ctr",
        "--set",
        "localAPIEndpoint.advertiseAddress=192.0.2.2",
        "--set",
        &port_set,
        "--set",
        &socket_set,
    ];
    // A real run on this host: the port this test holds is in use.
    let run = sb.kscript(&args);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // Named as `ss -ltnp` names it: this test process, by its kernel name, PID and descriptor
    // (a child another test forks at that moment may hold a copy until it execs).
    let comm = fs::read_to_string("/proc/self/comm").unwrap();
    let me = format!(
        "(\"{}\",pid={},fd={})",
        comm.trim_end(),
        std::process::id(),
        std::os::fd::AsRawFd::as_raw_fd(&busy)
    );
    let message = run.message();
    assert!(
        message.contains(&format!("[ERROR Port-{port}]: port {port} is in use by users:((")),
        "{}",
        run.stderr
    );
    assert!(message.contains(&me) && message.contains("not by kube-apiserver"), "no {me}: {}", run.stderr);
    assert!(run.message().contains("to go on anyway: --ignore-preflight-errors="), "{}", run.stderr);
    // A dry run plans on: the same error as a warning, and what a real run would do here (on a
    // bare node the stages planned before preflight, not done, leave checks failing).
    let dry = sb.kscript(&[&args[..], &["--dry-run"]].concat()).ok();
    assert!(
        dry.stderr.contains(&format!(
            "warning: [preflight] [ERROR Port-{port}]: port {port} is in use by users:(("
        )),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains("check(s) fail on the host as it is now; a real run stops here unless"),
        "{}",
        dry.stderr
    );
    // Ignored by name, it warns; every error ignored, the step passes. ImagePull comes once
    // the other checks pass (here: are ignored), and says once that the runtime cannot be asked.
    let run = sb.kscript(&[&args[..], &["--ignore-preflight-errors", "all"]].concat()).ok();
    assert!(
        run.stderr.contains(&format!("warning: [preflight] Port-{port}: port {port} is in use")),
        "{}",
        run.stderr
    );
    let message = run.message();
    assert_eq!(
        message
            .matches("warning: [preflight] ImagePull: cannot ask the container runtime which images it has: ")
            .count(),
        1,
        "{}",
        run.stderr
    );
    drop(busy);
}

#[test]
fn rendering_skips_preflight() {
    let sb = Sandbox::new();
    let run = sb
        .render(
            "control-plane.rhai",
            &["--only", "init/preflight", "--set", "localAPIEndpoint.advertiseAddress=192.0.2.2"],
        )
        .ok();
    assert!(run.stdout.contains("skipped  init/preflight  rendering into a folder"), "{}", run.stdout);
}

/// A stand-in for the Kubernetes components, in the node tests below: no kube-apiserver, etcd
/// or kubelet can be had on these machines, and what preflight judges of them is only who
/// holds their ports. Installed under a component's name, it names itself so (argv[0], and the
/// kernel's comm, cut at 15 bytes as the real process's is) and listens on that component's
/// ports until it is stopped. As the kubelet it answers `--version`, and exits 1 while its
/// configuration is missing, as the kubelet does before init.
const STAND_IN: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
use Socket qw(PF_INET SOCK_STREAM SOL_SOCKET SO_REUSEADDR INADDR_ANY pack_sockaddr_in);
my %ports = (
    "kube-apiserver" => [6443],
    "kube-controller-manager" => [10257],
    "kube-scheduler" => [10259],
    "etcd" => [2379, 2380],
    "kubelet" => [10250],
);
(my $name = $0) =~ s{.*/}{};
if (@ARGV && $ARGV[0] eq "--version") { print "Kubernetes v1.37.0\n"; exit 0; }
if ($name eq "kubelet" && !-e "/var/lib/kubelet/config.yaml") {
    print STDERR "kubelet stand-in: no /var/lib/kubelet/config.yaml yet, exiting\n";
    exit 1;
}
my $wanted = $ports{$name} or die "stand-in: no ports for $name\n";
my @held;
for my $port (@$wanted) {
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!\n";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "setsockopt: $!\n";
    bind($s, pack_sockaddr_in($port, INADDR_ANY)) or die "$name stand-in: bind $port: $!\n";
    listen($s, 16) or die "listen $port: $!\n";
    push @held, $s;
}
$0 = $name;
sleep while 1;
"#;

/// A foreign listener on 6443: perl, not kscript's kube-apiserver.
const FOREIGN: &str = "use Socket; socket(S, PF_INET, SOCK_STREAM, 0) or die; \
    setsockopt(S, SOL_SOCKET, SO_REUSEADDR, 1); bind(S, pack_sockaddr_in(6443, INADDR_ANY)) or die \"bind: $!\"; \
    listen(S, 16) or die; sleep while 1;";

/// The static Pods' components; the kubelet comes from the bundle.
const COMPONENTS: &[&str] = &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"];

/// Every port preflight checks on a control plane, with who holds it on kscript's node.
const NODE_PORTS: &[(u16, &str)] = &[
    (6443, "kube-apiserver"),
    (10257, "kube-controller-manager"),
    (10259, "kube-scheduler"),
    (2379, "etcd"),
    (2380, "etcd"),
    (10250, "kubelet"),
];

/// What the configuration of these runs needs in a container with no network but loopback.
const SETS: &[&str] = &[
    "--set",
    "nodeRegistration.name=k8s-ctr",
    "--set",
    "localAPIEndpoint.advertiseAddress=192.0.2.2",
    "--set",
    "kscript.kubernetes.source=bundle",
    "--set",
    "kscript.kubernetes.bundleDir=/mnt/work/bundle",
];

/// The checks a container cannot pass and that have nothing to do with whose ports, files and
/// folders these are: no container runtime runs in it (`CRI`, `ImagePull`), its network namespace
/// forwards nothing, its cgroups, CPUs, memory and swap are the test machine's. The `Port-`,
/// `FileAvailable--` and `DirAvailable--` checks are never among them.
const UNRELATED: &str = "NumCPU,Mem,Swap,FileContent--proc-sys-net-bridge-bridge-nf-call-iptables,\
    FileContent--proc-sys-net-ipv4-ip_forward,CRI,ImagePull,SystemVerification";

/// The bundle of stage 2: the stand-in as kubelet, kubeadm and kubectl stand-ins.
fn make_bundle(node: &Node) {
    let dir = node.work().join("bundle");
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("kubelet", STAND_IN.to_string()),
        ("kubeadm", "#!/bin/sh\necho kubeadm stand-in\n".into()),
        ("kubectl", "#!/bin/sh\necho kubectl stand-in\n".into()),
    ] {
        fs::write(dir.join(name), text).unwrap();
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The listening sockets of the node on `port`, as the test machine's `ss -Hltnp` prints them
/// (its PIDs are the machine's numbers).
fn ss(node: &Node, port: u16) -> String {
    let out = node.in_network(&["ss", "-Hltnp", &format!("sport = :{port}")]);
    assert!(out.status.success(), "ss: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 60 s) until `port` in the node is held by a process named `name` (ss's name),
/// or is free when `name` is `None`.
#[track_caller]
fn wait_port(node: &Node, port: u16, name: Option<&str>) {
    let start = Instant::now();
    loop {
        let seen = ss(node, port);
        let done = match name {
            Some(n) => seen.contains(&format!("((\"{n}\",")),
            None => seen.trim().is_empty(),
        };
        if done {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "port {port} in {} is not {name:?} after 60 s: ss shows {seen:?}\n{}",
            node.name,
            node.sh("systemctl --no-pager list-units --all 'standin-*' 'foreign*' kubelet.service; journalctl --no-pager -n 30")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ss's `users:((...))` for `port`, with the machine's PIDs turned into the node's (the last
/// number of each process's `NSpid`), as kscript inside the node sees them.
fn ss_users_in_node(node: &Node, port: u16) -> String {
    let line = ss(node, port);
    let users = &line[line.find("users:((").unwrap_or_else(|| panic!("no users in {line:?}"))..];
    let users = users.trim_end();
    let mut out = String::new();
    let mut rest = users;
    while let Some(i) = rest.find("pid=") {
        out.push_str(&rest[..i + 4]);
        let tail = &rest[i + 4..];
        let end = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
        let status = fs::read_to_string(format!("/proc/{}/status", &tail[..end])).unwrap();
        let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap();
        out.push_str(nspid.split_whitespace().last().unwrap());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A control plane kscript built, run again: stage 2 from a bundle and init's node files
/// written by kscript in the node, the kubelet (a stand-in, from the bundle) started by
/// kscript and serving once init wrote its configuration, the static Pods' components
/// (stand-ins, started as the kubelet would) holding their ports, etcd's data in the folder
/// kscript made. `init/preflight` passes: no `Port-`, `FileAvailable--` or `DirAvailable--` error. Then
/// a foreign process on 6443 is refused, named as `ss` names it; and with kscript's journal
/// gone, the same node is another tool's: every port and file is an error.
#[test]
fn a_rerun_on_the_node_kscript_built_passes_preflight_and_a_foreign_port_holder_is_named() {
    let node = Node::boot_private_network();
    make_bundle(&node);
    let standin = node.write("standin", STAND_IN);
    for c in COMPONENTS {
        node.sh(&format!("install -m 0755 {standin} /usr/local/bin/{c}"));
    }
    let build: Vec<&str> = [
        &["run", "control-plane.rhai"][..],
        &["--only", "kubelet/packages", "--only", "kubelet/unit", "--only", "kubelet/enable"],
        &["--only", "init/certs", "--only", "init/kubeconfig", "--only", "init/etcd"],
        &["--only", "init/control-plane", "--only", "init/kubelet-start"],
        SETS,
    ]
    .concat();
    let run = node.kscript(&build).ok();
    assert!(run.stdout.contains("changed  init/kubelet-start"), "{}", run.stdout);
    // kscript restarted the kubelet with its configuration: it serves.
    wait_port(&node, 10250, Some("kubelet"));
    for c in COMPONENTS {
        node.sh(&format!("systemd-run --quiet --collect --unit=standin-{c} /usr/local/bin/{c}"));
    }
    for (port, process) in NODE_PORTS {
        wait_port(&node, *port, Some(&process[..process.len().min(15)]));
    }
    // etcd's data, written by etcd inside the folder kscript made.
    node.sh("mkdir -p /var/lib/etcd/member/snap && echo data > /var/lib/etcd/member/snap/db");

    let preflight: Vec<&str> = [
        &["run", "control-plane.rhai", "--only", "init/preflight"][..],
        SETS,
        &["--ignore-preflight-errors", UNRELATED],
    ]
    .concat();
    let run = node.kscript(&preflight);
    assert_eq!(run.code, 0, "preflight on kscript's own node:\n{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("init/preflight"), "{}", run.stdout);
    for check in ["Port-", "FileAvailable", "DirAvailable", "KubeletVersion", "IsPrivilegedUser"] {
        assert!(!run.stderr.contains(check), "{check} on kscript's own node:\n{}", run.stderr);
    }

    // A foreign process holds 6443: refused, named as ss names it; the other ports are still
    // kscript's.
    node.sh("systemctl stop standin-kube-apiserver");
    wait_port(&node, 6443, None);
    node.sh(&format!("systemd-run --quiet --collect --unit=foreign perl -e '{FOREIGN}'"));
    wait_port(&node, 6443, Some("perl"));
    let users = ss_users_in_node(&node, 6443);
    assert!(users.starts_with("users:((\"perl\",pid="), "{users}");
    let run = node.kscript(&preflight).code(1);
    // miette wraps long lines anywhere, also inside a name: compared without whitespace.
    let message = squeeze(&run.stderr);
    let want = format!(
        "[ERROR Port-6443]: port 6443 is in use by {users}, not by kube-apiserver: stop that process or free the port"
    );
    assert!(message.contains(&squeeze(&want)), "no `{want}` in:\n{}", run.stderr);
    for other in
        ["Port-10257", "Port-10259", "Port-2379", "Port-2380", "Port-10250", "FileAvailable", "DirAvailable"]
    {
        assert!(!message.contains(other), "{other} with only 6443 foreign:\n{}", run.stderr);
    }

    // Without kscript's journal, this node is another tool's: its components and files too.
    node.sh("systemctl stop foreign && systemd-run --quiet --collect --unit=standin-kube-apiserver /usr/local/bin/kube-apiserver");
    wait_port(&node, 6443, Some("kube-apiserver"));
    node.sh("mv /var/lib/kscript/journal.jsonl /root/journal.jsonl");
    let run = node.kscript(&preflight).code(1);
    let message = squeeze(&run.stderr);
    for (port, process) in NODE_PORTS {
        let not_ours = format!(
            "[ERROR Port-{port}]: port {port} is in use by users:((\"{}\",",
            &process[..process.len().min(15)]
        );
        assert!(message.contains(&squeeze(&not_ours)), "no `{not_ours}` in:\n{}", run.stderr);
    }
    for part in [
        "this kube-apiserver is not kscript's (kscript did not write /etc/kubernetes/manifests/kube-apiserver.yaml)",
        "this kubelet is not kscript's (kscript did not write /var/lib/kubelet/config.yaml)",
        "[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]",
        "[ERROR DirAvailable--var-lib-etcd]",
    ] {
        assert!(message.contains(&squeeze(part)), "no `{part}` in:\n{}", run.stderr);
    }
}

/// A worker kscript joined: join's kubelet-start expected the kubelet to write kubelet.conf
/// (TLS bootstrap), and it did. That file is kscript's node's own: `join/preflight` passes
/// its `FileAvailable--` check; with the journal gone it is another tool's file.
#[test]
fn a_workers_kubelet_conf_made_by_the_kubelet_kscript_expected_is_its_own() {
    let node = Node::boot_private_network();
    node.write(
        "expect.rhai",
        r#"stage("join", "what join's kubelet-start records", [ step("kubelet-start", "kubelet.conf by TLS bootstrap", || {
    expect("/etc/kubernetes/kubelet.conf", "the kubelet (TLS bootstrap)");
}) ]);"#,
    );
    node.kscript(&["run", "expect.rhai"]).ok();
    // What the kubelet writes after its TLS bootstrap.
    node.sh("mkdir -p /etc/kubernetes && echo 'apiVersion: v1' > /etc/kubernetes/kubelet.conf");
    let preflight: Vec<&str> = [
        &["run", "worker.rhai", "--only", "join/preflight"][..],
        SETS,
        &["--set", "discovery.bootstrapToken.apiServerEndpoint=192.0.2.2:6443"],
        &["--set", "discovery.bootstrapToken.token=abcdef.0123456789abcdef"],
        &["--set", "discovery.bootstrapToken.unsafeSkipCAVerification=true"],
        &["--ignore-preflight-errors", UNRELATED],
        &["--ignore-preflight-errors", "KubeletVersion"],
    ]
    .concat();
    let run = node.kscript(&preflight);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("FileAvailable"), "{}", run.stderr);
    node.sh("mv /var/lib/kscript/journal.jsonl /root/journal.jsonl");
    let run = node.kscript(&preflight).code(1);
    let want = "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists and kscript did not write it";
    assert!(squeeze(&run.stderr).contains(&squeeze(want)), "{}", run.stderr);
}
