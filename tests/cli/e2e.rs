//! End to end against real Kubernetes components. Opt-in: set `KSCRIPT_K8S_BIN` to a folder
//! holding kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl of one
//! release (1.28 or later); etcd is Debian's. Without it the test prints that it is skipped
//! and passes (`.ci/run` says so too). Build them from a Kubernetes release tree, whose Go
//! dependencies are vendored, with a Go toolchain of the matching version.
//!
//! A control-plane node is rendered for that release. Its etcd, API server, controller
//! manager and scheduler run as processes, each with the command its static Pod declares,
//! paths under /etc/kubernetes mapped into the node's folder, on a loopback address of its own
//! (127.0.20.1): etcd serves there only (not also on 127.0.0.1, which another etcd may hold),
//! so the API server's `--etcd-servers` is pointed there too, and it binds that address only
//! (`--bind-address`; a Pod's API server binds all, which two on one host cannot). Then init's API steps and
//! Flannel run against it, and every object they applied is read back. A worker then joins:
//! token discovery (cluster-info signed by the real bootstrap signer), the kubelet
//! configuration read with the bootstrap token under the real RBAC, and the TLS bootstrap of a
//! real kubelet, whose client certificate the real controller manager approves and signs.
//! Then upgrade.rhai plans and applies an upgrade to the release the cluster runs (one release
//! of binaries: nothing restarts, nothing is backed up or renewed; the objects meet the real
//! server's strict server-side apply).
//! Last, a second control plane joins with the certificate key (127.0.20.2): its etcd member
//! and API server, started from the Pods it wrote, serve the same cluster.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cri::Containerd;
use super::ha::CONTROL_PLANE_JOIN_STEPS;
use super::{
    KillOnDrop, Run, Sandbox, etcdctl_as_healthcheck, pod_args, set_arg, start_etcd_member, static_pod,
};

const IP: &str = "127.0.20.1";
/// The second control-plane node's address.
const IP2: &str = "127.0.20.2";
const BINARIES: &[&str] =
    &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"];

/// The folder of real binaries, or `None` (the suite is skipped) when `KSCRIPT_K8S_BIN` is
/// unset. A folder that lacks one fails the test, naming it.
fn k8s_bin() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KSCRIPT_K8S_BIN")?);
    for b in BINARIES {
        assert!(dir.join(b).is_file(), "KSCRIPT_K8S_BIN={} has no {b}", dir.display());
    }
    Some(dir)
}

/// A process the test started, killed when dropped, and its log.
struct Proc {
    _process: KillOnDrop,
    log: PathBuf,
}

impl Proc {
    fn start(program: &Path, args: &[String], log: PathBuf) -> Self {
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Self { _process: KillOnDrop(child), log }
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Polls `check` every 300 ms for up to `secs` seconds; fails with `why()` when it never holds.
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool, why: impl Fn() -> String) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what} within {secs}s: {}", why());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `etcdctl ARGS` against the member at `ip`, as the node's healthcheck client.
fn etcdctl(root: &Path, ip: &str, args: &[&str]) -> Output {
    etcdctl_as_healthcheck(root, &format!("https://{ip}:2379"), args)
}

struct ControlPlane {
    bin: PathBuf,
    sb: Sandbox,
    version: String,
    procs: Vec<Proc>,
}

impl ControlPlane {
    fn node_args(&self) -> Vec<String> {
        [
            "nodeRegistration.name=e2e-cp".to_string(),
            format!("localAPIEndpoint.advertiseAddress={IP}"),
            format!("controlPlaneEndpoint={IP}:6443"),
            format!("kubernetesVersion={}", self.version),
            "encryptionAlgorithm=ECDSA-P256".into(),
            "networking.podSubnet=10.244.0.0/16".into(),
            "kscript.uploadCerts=true".into(),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
    }

    /// `kscript run control-plane.rhai` on the node's folder, API calls sent for real.
    fn kscript(&self, extra: &[&str]) -> Run {
        let root = self.sb.root();
        let mut args: Vec<String> =
            ["run", "control-plane.rhai", "--root", root.to_str().unwrap(), "-v"].map(String::from).to_vec();
        args.extend(self.node_args());
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(self.sb.root().join("etc/kubernetes/admin.conf"))
            .args(args)
            .output()
            .unwrap()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            out += &format!("--- {}\n{}\n", p.log.display(), p.log());
        }
        out
    }

    /// Renders the node and starts etcd, then the API server, controller manager and scheduler.
    fn up(bin: PathBuf) -> Self {
        let out =
            Command::new(bin.join("kubectl")).args(["version", "--client", "-o", "json"]).output().unwrap();
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let version = info["clientVersion"]["gitVersion"].as_str().unwrap().to_string();
        let mut cp = Self { bin, sb: Sandbox::new(), version, procs: Vec::new() };
        let mut render: Vec<String> = cp.node_args();
        render.extend(
            [
                "--only",
                "init/certs",
                "--only",
                "init/kubeconfig",
                "--only",
                "init/etcd",
                "--only",
                "init/control-plane",
            ]
            .map(String::from),
        );
        let render: Vec<&str> = render.iter().map(String::as_str).collect();
        cp.sb.render("control-plane.rhai", &render).ok();
        let root = cp.sb.root();

        let (etcd, log) = start_etcd_member(&cp.sb, IP);
        cp.procs.push(Proc { _process: etcd, log });

        let mut apiserver = pod_args(&root, "kube-apiserver.yaml");
        set_arg(&mut apiserver, "etcd-servers", &format!("https://{IP}:2379"));
        apiserver.push(format!("--bind-address={IP}"));
        for (name, manifest) in [
            ("kube-apiserver", apiserver),
            ("kube-controller-manager", pod_args(&root, "kube-controller-manager.yaml")),
            ("kube-scheduler", pod_args(&root, "kube-scheduler.yaml")),
        ] {
            let log = cp.sb.path().join(format!("{name}.log"));
            cp.procs.push(Proc::start(&cp.bin.join(name), &manifest, log));
        }
        cp
    }
}

/// The objects a run applied, from its `-v` lines: `(kind, namespace, name)`.
fn applied(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest =
                l.trim().strip_prefix("+ api apply ").or_else(|| l.trim().strip_prefix("= api apply "))?;
            let mut words = rest.split_whitespace();
            let kind = words.next()?.to_string();
            let target = words.next()?;
            let (ns, name) = target.split_once('/').unwrap_or(("", target));
            Some((kind, ns.to_string(), name.to_string()))
        })
        .collect()
}

#[test]
fn real_control_plane_a_worker_and_a_second_control_plane() {
    let Some(bin) = k8s_bin() else {
        eprintln!(
            "skipped: KSCRIPT_K8S_BIN is not set (a folder with kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl)"
        );
        return;
    };
    let cp = ControlPlane::up(bin);
    init_against_the_real_api_server(&cp);
    let root = cp.sb.root();
    // The real bootstrap signer signs cluster-info for the token.
    let token = fs::read_to_string(root.join("var/lib/kscript/bootstrap-token")).unwrap().trim().to_string();
    let id = token.split_once('.').unwrap().0.to_string();
    eventually(
        "the bootstrap signer signs cluster-info",
        60,
        || {
            let out = cp.kubectl(&["get", "configmap", "cluster-info", "-n", "kube-public", "-o", "json"]);
            let cm: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            cm["data"].get(format!("jws-kubeconfig-{id}")).is_some()
        },
        || cp.logs(),
    );

    // token.rhai lists the tokens the real API server holds: init's and upload-certs' owner.
    let list: Vec<String> = ["run", "token.rhai", "--root", root.to_str().unwrap(), "--only", "list"]
        .map(String::from)
        .into_iter()
        .chain(cp.node_args())
        .collect();
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let run = cp.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &list).ok();
    assert!(
        run.stdout.lines().any(|l| l.trim().starts_with(&token) && l.contains("authentication,signing")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Proxy for managing TTL for the kubeadm-certs secret"), "{}", run.stdout);

    let pin =
        kscript::pki::ca_pin(&fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap()).unwrap();
    a_worker_bootstraps_its_kubelet(&cp, &token, &id, &pin);
    upgrade_apply_at_the_release_it_runs(&cp);
    a_second_control_plane_serves(&cp, &token, &pin);
}

/// upgrade.rhai against the real API server, to the release the cluster runs (this test has
/// the binaries of one release): plan reads the real cluster (kubeadm-config, the Nodes, etcd's
/// version from the real member); apply finds every manifest already at the release (nothing
/// restarts, so no backup is taken and admin.conf is not renewed), and makes the RBAC,
/// configuration and add-on objects of the release, which the real server takes by strict
/// server-side apply.
fn upgrade_apply_at_the_release_it_runs(cp: &ControlPlane) {
    let root = cp.sb.root();
    let run_upgrade = |extra: &[&str]| {
        let mut args: Vec<String> =
            ["run", "upgrade.rhai", "--root", root.to_str().unwrap(), "-v"].map(String::from).to_vec();
        args.extend(cp.node_args());
        args.extend(extra.iter().map(|s| (*s).to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cp.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args)
    };
    let run = run_upgrade(&[]);
    assert_eq!(run.code, 0, "stderr:\n{}\nstdout:\n{}\n{}", run.stderr, run.stdout, cp.logs());
    let rows: Vec<String> =
        run.stdout.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    let v = &cp.version;
    // The Node e2e-cp is the one init's mark-control-plane made (no kubelet runs there).
    for row in [format!("kubelet e2e-cp - {v}"), format!("kube-apiserver e2e-cp {v} {v}")] {
        assert!(rows.contains(&row), "no `{row}` in:\n{}", run.stdout);
    }

    let admin = fs::read(root.join("etc/kubernetes/admin.conf")).unwrap();
    let run = run_upgrade(&["--only", "apply"]);
    assert_eq!(run.code, 0, "stderr:\n{}\nstdout:\n{}\n{}", run.stderr, run.stdout, cp.logs());
    // Nothing to upgrade: no backup is taken, admin.conf is not renewed.
    assert!(run.stdout.contains("nothing to back up"), "{}", run.stdout);
    assert!(run.stdout.contains("admin.conf is not renewed"), "{}", run.stdout);
    assert!(fs::read(root.join("etc/kubernetes/admin.conf")).unwrap() == admin, "admin.conf renewed");
    for c in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        assert!(run.stdout.contains(&format!("{c}.yaml is already that of {v}")), "{c}:\n{}", run.stdout);
    }
    for line in [
        "api apply ConfigMap kube-system/kubeadm-config",
        "api apply ConfigMap kube-system/kubelet-config",
        "api apply Deployment kube-system/coredns",
        "api apply DaemonSet kube-system/kube-proxy",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
    // admin.conf still acts as an administrator.
    let out = cp.kubectl(&["get", "configmap", "kubeadm-config", "-n", "kube-system", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        cm["data"]["ClusterConfiguration"].as_str().unwrap().contains(&format!("kubernetesVersion: {v}"))
    );
    assert!(!root.join("etc/kubernetes/tmp").exists(), "backups taken with nothing to upgrade");
}

/// init's API steps and Flannel: every object applied is there; a rerun converges;
/// mark-control-plane labels and taints the Node.
fn init_against_the_real_api_server(cp: &ControlPlane) {
    // init's API steps, against the real API server.
    let steps = [
        "init/wait-control-plane",
        "init/cluster-admins",
        "init/upload-config",
        "init/upload-certs",
        "init/bootstrap-token",
        "init/addon/coredns",
        "init/addon/kube-proxy",
        "init/show-join",
        "network/flannel",
    ];
    let mut args = Vec::new();
    for s in steps {
        args.extend(["--only", s]);
    }
    let run = cp.kscript(&args);
    assert_eq!(run.code, 0, "stderr:\n{}\nstdout:\n{}\n{}", run.stderr, run.stdout, cp.logs());
    let objects = applied(&run.stdout);
    assert!(objects.len() > 30, "{}", run.stdout);
    for (kind, ns, name) in &objects {
        let mut get = vec!["get", kind.as_str(), name.as_str(), "-o", "name"];
        if !ns.is_empty() {
            get.extend(["-n", ns.as_str()]);
        }
        let out = cp.kubectl(&get);
        assert!(out.status.success(), "{kind} {ns}/{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // A rerun converges: every apply answers unchanged.
    let again = cp.kscript(&args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stdout.contains("+ api apply") && !again.stdout.contains("~ api apply"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("= api apply ConfigMap kube-system/coredns"), "{}", again.stdout);

    // Applies are strict: a field the API does not have is refused, not dropped.
    let root = cp.sb.root();
    cp.sb.write(
        "typo.rhai",
        r#"stage("s", "x", [ step("a", "a", || {
    api_apply("/etc/kubernetes/admin.conf", #{ apiVersion: "v1", kind: "ConfigMap",
        metadata: #{ name: "typo", namespace: "default" }, dataa: #{ k: "v" } });
}) ]);"#,
    );
    let run = cp
        .sb
        .kscript_env(
            &[("KSCRIPT_TEST_CLUSTER_API", "real")],
            &["run", "typo.rhai", "--root", root.to_str().unwrap()],
        )
        .code(1);
    assert!(run.message().contains("dataa"), "{}", run.stderr);
    assert!(!cp.kubectl(&["get", "configmap", "typo", "-n", "default"]).status.success());

    // Server-side apply: a field someone else set survives a rerun; a field kscript manages
    // is put back.
    let out = cp.kubectl(&["label", "configmap", "coredns", "-n", "kube-system", "site=ours"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cp.kubectl(&[
        "patch",
        "configmap",
        "coredns",
        "-n",
        "kube-system",
        "-p",
        r#"{"data":{"Corefile":"edited"}}"#,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cp.kscript(&["--only", "init/addon/coredns"]).ok();
    let out = cp.kubectl(&["get", "configmap", "coredns", "-n", "kube-system", "-o", "json"]);
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cm["metadata"]["labels"]["site"], "ours");
    assert!(cm["data"]["Corefile"].as_str().unwrap().contains("kubernetes cluster.local"), "{cm}");

    // mark-control-plane, once the Node is there (posted here as its kubelet would).
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"e2e-cp"}}"#;
    fs::write(cp.sb.path().join("node.json"), node).unwrap();
    let out = cp.kubectl(&["create", "-f", cp.sb.path().join("node.json").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cp.kscript(&["--only", "init/mark-control-plane"]).ok();
    let out = cp.kubectl(&["get", "node", "e2e-cp", "-o", "json"]);
    let n: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "");
    let taints = n["spec"]["taints"].as_array().unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "node-role.kubernetes.io/control-plane" && t["effect"] == "NoSchedule"),
        "{taints:?}"
    );

    // kscript status reads the real API server with admin.conf (one list per kind, across
    // namespaces): CoreDNS there but not ready (no pod network, no kubelet here to run it),
    // kube-proxy and Flannel there, the Node not Ready (no kubelet posts its conditions).
    let mut args: Vec<String> =
        ["status", "control-plane.rhai", "--root", root.to_str().unwrap()].map(String::from).to_vec();
    args.extend(cp.node_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cp.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args);
    let row = |name: &str| super::status::row(&run.stdout, name);
    assert_eq!(row("CoreDNS"), "CoreDNS Deployment not ready 0/2 ready", "{}", run.stdout);
    for name in ["kube-proxy", "Flannel"] {
        assert!(row(name).starts_with(&format!("{name} DaemonSet not ready ")), "{}", run.stdout);
    }
    assert!(row("node").starts_with("node e2e-cp Node NotReady"), "{}", run.stdout);
}

/// A worker joins: discovery, the bootstrap kubeconfig, kubelet's files from the cluster,
/// then a real kubelet's TLS bootstrap.
fn a_worker_bootstraps_its_kubelet(cp: &ControlPlane, token: &str, id: &str, pin: &str) {
    let root = cp.sb.root();
    // A worker joins: discovery, the bootstrap kubeconfig, kubelet's files from the cluster.
    let worker = Sandbox::new();
    let wroot = worker.root();
    let wargs: Vec<String> = [
        "run".to_string(),
        "worker.rhai".into(),
        "--root".into(),
        wroot.display().to_string(),
        "--set".into(),
        "nodeRegistration.name=e2e-worker".into(),
        "--set".into(),
        format!("discovery.bootstrapToken.apiServerEndpoint={IP}:6443"),
        "--set".into(),
        format!("discovery.bootstrapToken.token={token}"),
        "--set".into(),
        format!("discovery.bootstrapToken.caCertHashes=[{pin}]"),
        "--only".into(),
        "join/discovery".into(),
        "--only".into(),
        "join/kubeconfig".into(),
        "--only".into(),
        "join/manifests".into(),
        "--only".into(),
        "join/kubelet-start".into(),
    ]
    .to_vec();
    let wargs: Vec<&str> = wargs.iter().map(String::as_str).collect();
    let run = worker.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &wargs);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = cp.kubectl(&["get", "configmap", "kubelet-config", "-n", "kube-system", "-o", "json"]);
    let cm: Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = fs::read_to_string(wroot.join("var/lib/kubelet/config.yaml")).unwrap();
    let ours: Value = serde_saphyr::from_str(&config).unwrap();
    let theirs: Value = serde_saphyr::from_str(cm["data"]["kubelet"].as_str().unwrap()).unwrap();
    // The cluster's, as it stands (before 1.34 the CRI socket is a flag, not per-node config).
    assert_eq!(ours, theirs);
    assert_eq!(config, cm["data"]["kubelet"].as_str().unwrap());

    // The real kubelet's TLS bootstrap, with the files the join wrote (paths mapped). It is
    // stopped once it has its client certificate.
    // The kubelet checks its container runtime before it goes on: a private containerd.
    let containerd = Containerd::start(&worker);
    let kubelet_config = wroot.join("kubelet-e2e.yaml");
    let host = wroot.join("etc/kubernetes").display().to_string();
    // As this machine runs (no systemd, containerd with cgroupfs), with no QoS cgroups.
    let mut mapped: Value = serde_saphyr::from_str(&config.replace("/etc/kubernetes", &host)).unwrap();
    mapped["cgroupDriver"] = "cgroupfs".into();
    mapped["cgroupsPerQOS"] = false.into();
    mapped["enforceNodeAllocatable"] = Value::Array(Vec::new());
    mapped["failSwapOn"] = false.into();
    fs::write(&kubelet_config, serde_json::to_string(&mapped).unwrap()).unwrap();
    let kubelet_args: Vec<String> = vec![
        format!("--bootstrap-kubeconfig={}", wroot.join("etc/kubernetes/bootstrap-kubelet.conf").display()),
        format!("--kubeconfig={}", wroot.join("etc/kubernetes/kubelet.conf").display()),
        format!("--config={}", kubelet_config.display()),
        format!("--cert-dir={}", wroot.join("var/lib/kubelet/pki").display()),
        format!("--root-dir={}", worker.path().join("kubelet-root").display()),
        "--hostname-override=e2e-worker".into(),
        format!("--container-runtime-endpoint=unix://{}", containerd.socket.display()),
    ];
    let kubelet = Proc::start(&cp.bin.join("kubelet"), &kubelet_args, worker.path().join("kubelet.log"));
    let current = wroot.join("var/lib/kubelet/pki/kubelet-client-current.pem");
    eventually(
        "the kubelet's TLS bootstrap",
        90,
        || current.exists() && wroot.join("etc/kubernetes/kubelet.conf").exists(),
        || format!("{}\n{}", kubelet.log(), cp.logs()),
    );
    drop(kubelet);
    drop(containerd);
    let pem = fs::read_to_string(&current).unwrap();
    let cert = kscript::pki::CertInfo::from_pem(&pem).unwrap();
    assert_eq!(cert.subject_cn, "system:node:e2e-worker");
    assert_eq!(cert.organizations, ["system:nodes"]);
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(root.join("etc/kubernetes/pki/ca.crt"))
        .arg(&current)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cp.kubectl(&["get", "csr", "-o", "json"]);
    let csrs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let approved = csrs["items"].as_array().unwrap().iter().any(|c| {
        c["spec"]["username"] == format!("system:bootstrap:{id}")
            && c["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|x| x["type"] == "Approved"))
    });
    assert!(approved, "{csrs}");
}

/// A second control plane joins with the certificate key.
fn a_second_control_plane_serves(cp: &ControlPlane, token: &str, pin: &str) {
    let root = cp.sb.root();
    // A second control plane joins at 127.0.20.2 with the certificate key: the shared
    // certificates come from the real kubeadm-certs Secret (read with the bootstrap token),
    // the member add goes to the real etcd, and its own etcd and API server then serve.
    let mut mirror = static_pod(&root, "etcd.yaml");
    mirror["metadata"]["name"] = "etcd-e2e-cp".into();
    mirror["spec"]["nodeName"] = "e2e-cp".into();
    fs::write(cp.sb.path().join("mirror.json"), mirror.to_string()).unwrap();
    let out = cp.kubectl(&["create", "-f", cp.sb.path().join("mirror.json").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the etcd mirror Pod, as the kubelet would post it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = fs::read_to_string(root.join("var/lib/kscript/certificate-key")).unwrap().trim().to_string();
    let second = Sandbox::new();
    let sroot = second.root();
    let control_plane =
        format!("controlPlane={{localAPIEndpoint: {{advertiseAddress: {IP2}}}, certificateKey: \"{key}\"}}");
    let mut cargs: Vec<String> = [
        "run",
        "worker.rhai",
        "--root",
        sroot.to_str().unwrap(),
        "--set",
        "nodeRegistration.name=e2e-cp-2",
        "--set",
        &format!("discovery.bootstrapToken.apiServerEndpoint={IP}:6443"),
        "--set",
        &format!("discovery.bootstrapToken.token={token}"),
        "--set",
        &format!("discovery.bootstrapToken.caCertHashes=[{pin}]"),
        "--set",
        &control_plane,
    ]
    .map(String::from)
    .to_vec();
    for step in CONTROL_PLANE_JOIN_STEPS {
        cargs.extend(["--only".to_string(), (*step).to_string()]);
    }
    let cargs: Vec<&str> = cargs.iter().map(String::as_str).collect();
    let run = second.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &cargs);
    assert_eq!(run.code, 0, "stderr:\n{}\nstdout:\n{}\n{}", run.stderr, run.stdout, cp.logs());
    let _etcd2 = start_etcd_member(&second, IP2);
    let out = etcdctl(&sroot, IP2, &["member", "list"]);
    let members = String::from_utf8_lossy(&out.stdout);
    assert_eq!(members.lines().filter(|l| l.contains(", started, ")).count(), 2, "{members}");
    let mut apiserver2 = pod_args(&sroot, "kube-apiserver.yaml");
    set_arg(&mut apiserver2, "etcd-servers", &format!("https://{IP2}:2379"));
    apiserver2.push(format!("--bind-address={IP2}"));
    let apiserver2 =
        Proc::start(&cp.bin.join("kube-apiserver"), &apiserver2, second.path().join("kube-apiserver.log"));
    let admin2 = sroot.join("etc/kubernetes/admin.conf");
    eventually(
        "the second API server serves the cluster",
        60,
        || {
            let out = Command::new(cp.bin.join("kubectl"))
                .arg("--kubeconfig")
                .arg(&admin2)
                .args(["--server", &format!("https://{IP2}:6443"), "get", "node", "e2e-cp", "-o", "name"])
                .output()
                .unwrap();
            out.status.success()
        },
        || apiserver2.log(),
    );
}
