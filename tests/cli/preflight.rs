//! kubeadm's preflight checks: each one passing and failing on made-up observations, the
//! real host observed, errors ignored by name or all, and a render that skips them.

use std::net::TcpListener;

use super::Sandbox;

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
        if c.name.starts_with("Port-") { good.ports[`${c.subject}`] = true; }
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
                if c.name.starts_with("Port-") { bad.ports[`${c.subject}`] = false; }
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
        ("Port-6443 pass=true fail=port 6443 is in use", "a busy port"),
        ("Swap pass=true fail=swap is on", "swap"),
    ] {
        assert!(run.stdout.contains(want), "{what}: {}", run.stdout);
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
    assert!(run.message().contains(&format!("[ERROR Port-{port}]: port {port} is in use")), "{}", run.stderr);
    assert!(run.message().contains("to go on anyway: --ignore-preflight-errors="), "{}", run.stderr);
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
