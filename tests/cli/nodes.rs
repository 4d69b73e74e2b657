//! The stock flows, rendered whole: every file of the control plane and of a worker, checked
//! against the spec's list, snapshotted, validated against Kubernetes' `OpenAPI` schema, and
//! rerun with one setting changed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Run, Sandbox, node_snapshot};

pub(super) const CP: &[&str] =
    &["--set", "nodeRegistration.name=k8s-ctr", "--set", "localAPIEndpoint.advertiseAddress=192.168.56.10"];

/// The files of stages.md for a control-plane node (pki.md's 22 PKI files, the five
/// kubeconfigs, four static Pods, kubelet's files), plus what the stock scripts own besides
/// (see `EXTRAS`). Folders are listed when they are empty or asked for by the spec.
const SPEC_CONTROL_PLANE: &[&str] = &[
    "/etc/containerd/config.toml",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/scheduler.conf",
    "/etc/kubernetes/super-admin.conf",
    "/etc/kubernetes/manifests/etcd.yaml",
    "/etc/kubernetes/manifests/kube-apiserver.yaml",
    "/etc/kubernetes/manifests/kube-controller-manager.yaml",
    "/etc/kubernetes/manifests/kube-scheduler.yaml",
    "/etc/default/kubelet",
    "/opt/cni/bin/",
    "/usr/lib/systemd/system/kubelet.service",
    "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/var/lib/etcd/",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/kubeadm-flags.env",
];

const SPEC_WORKER: &[&str] = &[
    "/etc/containerd/config.toml",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/manifests/",
    "/etc/default/kubelet",
    "/opt/cni/bin/",
    "/usr/lib/systemd/system/kubelet.service",
    "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/kubeadm-flags.env",
];

/// What both roles' stock scripts write besides the spec's tables, each for a reason:
/// stage 1's prerequisites (stages.md: "the stock script also owns" them), the package
/// repository file (issue: "repository file and signing key"; the key itself is fetched by a
/// recorded command), containerd's unit (the package ships it; a render writes it, since the
/// install is only recorded), the `systemctl enable` symlinks, kubelet's instance-config.yaml
/// (kubeadm 1.34+ moves the CRI socket there), and the empty folders the keyring and the CNI
/// configuration go into.
const EXTRAS: &[&str] = &[
    "/etc/modules-load.d/k8s.conf",
    "/etc/sysctl.d/k8s.conf",
    "/etc/apt/sources.list.d/kubernetes.list",
    "/etc/apt/keyrings/",
    "/etc/cni/net.d/",
    "/usr/lib/systemd/system/containerd.service",
    "/etc/systemd/system/multi-user.target.wants/containerd.service",
    "/etc/systemd/system/multi-user.target.wants/kubelet.service",
    "/var/lib/kubelet/instance-config.yaml",
];

/// Files, symlinks and empty folders (with a trailing `/`) under `root`, kscript's state aside.
fn listing(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        if entries.is_empty() && dir != root {
            out.insert(format!("/{}/", dir.strip_prefix(root).unwrap().display()));
        }
        for p in entries {
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            if rel == "/var/lib/kscript" {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                walk(&p, root, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

pub(super) fn render_worker(sb: &Sandbox, cp: &Sandbox, extra: &[&str]) -> Run {
    let discovery =
        format!("discovery.file.kubeConfigPath={}", cp.root().join("etc/kubernetes/admin.conf").display());
    let ca = fs::read_to_string(cp.root().join("etc/kubernetes/pki/ca.crt")).unwrap();
    let pin = format!("discovery.bootstrapToken.caCertHashes=[{}]", kscript::pki::ca_pin(&ca).unwrap());
    let mut args = vec![
        "--set",
        "nodeRegistration.name=worker-1",
        "--set",
        "discovery.bootstrapToken.token=abcdef.0123456789abcdef",
        "--set",
        &discovery,
        "--set",
        &pin,
        "--set",
        "nodeRegistration.kubeletExtraArgs=[{name: node-ip, value: 192.168.56.11}]",
    ];
    args.extend_from_slice(extra);
    sb.render("worker.rhai", &args)
}

#[test]
fn rendered_file_lists_equal_the_spec() {
    let cp = Sandbox::new();
    cp.render("control-plane.rhai", CP).ok();
    let mut want: BTreeSet<String> =
        SPEC_CONTROL_PLANE.iter().chain(EXTRAS).map(ToString::to_string).collect();
    want.extend(super::pki::PKI_FILES.iter().map(|f| format!("/etc/kubernetes/pki/{f}")));
    assert_eq!(listing(&cp.root()), want, "control plane: missing or extra files");

    let worker = Sandbox::new();
    render_worker(&worker, &cp, &[]).ok();
    let want: BTreeSet<String> = SPEC_WORKER.iter().chain(EXTRAS).map(ToString::to_string).collect();
    assert_eq!(listing(&worker.root()), want, "worker: missing or extra files");
    // Never the control plane's kubeconfigs on a worker.
    for k in ["admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"] {
        assert!(!worker.root().join("etc/kubernetes").join(k).exists());
    }
    // What other actors create is in the tree, marked as expected.
    let tree = worker.kscript(&["tree", "root"]).ok();
    assert!(
        tree.stdout.contains("/etc/kubernetes/kubelet.conf")
            && tree.stdout.contains("expected, created by the kubelet (TLS bootstrap)")
    );
}

#[test]
fn control_plane_and_worker_trees() {
    let cp = Sandbox::new();
    cp.render("control-plane.rhai", CP).ok();
    insta::assert_snapshot!("control_plane_tree", node_snapshot(&cp.root()));
    let worker = Sandbox::new();
    render_worker(&worker, &cp, &[]).ok();
    insta::assert_snapshot!("worker_tree", node_snapshot(&worker.root()));
    // A pin that does not match the cluster's CA is refused.
    let other = Sandbox::new();
    let bad = "discovery.bootstrapToken.caCertHashes=[sha256:0000000000000000000000000000000000000000000000000000000000000000]";
    let run = render_worker(&other, &cp, &["--set", bad]).code(1);
    assert!(run.message().contains("does not match any pin"), "{}", run.stderr);
}

/// The non-default renders of the issue, each snapshotted whole.
#[test]
fn non_default_configurations() {
    let cases: &[(&str, &[&str])] = &[
        (
            "control_plane_dual_stack",
            &[
                "--set",
                "networking.serviceSubnet=10.96.0.0/12,fd00:10:96::/112",
                "--set",
                "networking.podSubnet=10.244.0.0/16,fd00:10:244::/56",
            ],
        ),
        (
            "control_plane_control_plane_endpoint",
            &["--set", "controlPlaneEndpoint=k8s-api.example.internal:6443"],
        ),
        ("control_plane_image_repository", &["--set", "imageRepository=registry.example.internal/k8s"]),
        ("control_plane_ecdsa", &["--set", "encryptionAlgorithm=ECDSA-P256"]),
        ("control_plane_patches", &["--patches", "patches"]),
    ];
    for (name, args) in cases {
        let sb = Sandbox::new();
        sb.write("patches/kube-apiserver0.yaml", "spec:\n  containers:\n  - name: kube-apiserver\n    resources:\n      requests:\n        cpu: 500m\n");
        sb.write(
            "patches/etcd+json.json",
            r#"[{"op": "add", "path": "/metadata/labels/site", "value": "lab"}]"#,
        );
        sb.write("patches/kubeletconfiguration+merge.yaml", "maxPods: 50\n");
        let all = [CP, args].concat();
        sb.render("control-plane.rhai", &all).ok();
        insta::assert_snapshot!(*name, node_snapshot(&sb.root()));
    }
}

#[test]
fn manifests_validate_against_the_kubernetes_openapi_schema() {
    for version in ["1.37.0", "1.33.0", "1.28.0"] {
        let sb = Sandbox::new();
        let set = format!("kubernetesVersion=v{version}");
        sb.render(
            "control-plane.rhai",
            &[CP, &["--set", &set, "--only", "init/etcd", "--only", "init/control-plane"][..]].concat(),
        )
        .ok();
        let dir = sb.root().join("etc/kubernetes/manifests");
        let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        assert_eq!(files.len(), 4);
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .expect("kubernetes-validate is installed (pip install kubernetes-validate; .ci/run does it)");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "v{version}: {text}");
        assert_eq!(text.matches("INFO").count(), 4, "v{version}: every manifest is reported valid: {text}");
    }
}

/// Change one setting: exactly the files that depend on it change, and only the handlers of
/// those files run.
#[test]
fn one_setting_changes_only_what_depends_on_it() {
    let sb = Sandbox::new();
    sb.render("control-plane.rhai", CP).ok();
    let run = sb.render("control-plane.rhai", &[CP, &["--detailed-exitcode"][..]].concat()).ok();
    assert!(!run.stdout.contains("changed "), "a rerun changed something:\n{}", run.stdout);

    let changed = |run: &Run| -> Vec<String> {
        run.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with('~') || l.trim_start().starts_with('+'))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let audit = "apiServer.extraArgs=[{name: audit-log-maxage, value: '30'}]";
    let run = sb.render("control-plane.rhai", &[CP, &["-v", "--set", audit][..]].concat()).ok();
    assert_eq!(
        changed(&run),
        ["~ /etc/kubernetes/manifests/kube-apiserver.yaml (content)"],
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("handlers/"), "{}", run.stdout);
    assert!(!run.stdout.contains("systemctl restart kubelet.service"), "{}", run.stdout);

    let run = sb
        .render(
            "control-plane.rhai",
            &[CP, &["-v", "--set", audit, "--set", "kubelet.maxPods=50"][..]].concat(),
        )
        .ok();
    assert_eq!(changed(&run), ["~ /var/lib/kubelet/config.yaml (content)"], "{}", run.stdout);
    assert!(run.stdout.contains("! systemctl restart kubelet.service"), "{}", run.stdout);
    assert!(!run.stdout.contains("restart-containerd"), "{}", run.stdout);
}

/// kubelet-finalize: once the kubelet has written its rotating client certificate, kubelet.conf
/// references it instead of embedding a certificate; before that the step skips itself.
#[test]
fn kubelet_finalize_switches_kubelet_conf_to_the_rotating_certificate() {
    let sb = Sandbox::new();
    let run = sb.render("control-plane.rhai", CP).ok();
    assert!(
        run.stdout.contains("skipped  init/kubelet-finalize  the kubelet has not written"),
        "{}",
        run.stdout
    );
    let pki = sb.root().join("etc/kubernetes/pki");
    let pem = [
        fs::read_to_string(pki.join("apiserver-kubelet-client.crt")).unwrap(),
        fs::read_to_string(pki.join("apiserver-kubelet-client.key")).unwrap(),
    ]
    .concat();
    fs::create_dir_all(sb.root().join("var/lib/kubelet/pki")).unwrap();
    fs::write(sb.root().join("var/lib/kubelet/pki/kubelet-client-current.pem"), pem).unwrap();
    sb.render("control-plane.rhai", &[CP, &["--only", "init/kubelet-finalize"][..]].concat()).ok();
    let conf = fs::read_to_string(sb.root().join("etc/kubernetes/kubelet.conf")).unwrap();
    assert!(conf.contains("client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem"), "{conf}");
    assert!(
        conf.contains("client-key: /var/lib/kubelet/pki/kubelet-client-current.pem")
            && !conf.contains("client-key-data"),
        "{conf}"
    );
    // The whole flow again: nothing changes, kubelet.conf is kept as finalized.
    sb.render("control-plane.rhai", &[CP, &["--detailed-exitcode"][..]].concat()).ok();
}

/// A worker render records the wait for TLS bootstrap and keeps the bootstrap kubeconfig; a
/// real run waits for kubelet.conf, then removes it.
#[test]
fn tls_bootstrap_is_waited_for_on_a_real_run_only() {
    let cp = Sandbox::new();
    cp.render("control-plane.rhai", CP).ok();
    let worker = Sandbox::new();
    let run = render_worker(&worker, &cp, &["-v"]).ok();
    assert!(
        run.stdout.contains("! /etc/kubernetes/kubelet.conf (wait recorded, not done)"),
        "{}",
        run.stdout
    );
    assert!(worker.root().join("etc/kubernetes/bootstrap-kubelet.conf").exists());
    // A real run (node paths are host paths: a folder of the sandbox): the file appears while
    // the step waits, and the bootstrap kubeconfig goes.
    let dir = worker.path().join("real");
    fs::create_dir_all(&dir).unwrap();
    let boot = dir.join("bootstrap.conf");
    fs::write(&boot, "x").unwrap();
    let kubelet_conf = dir.join("kubelet.conf");
    let script = format!(
        r#"stage("s", "tls", [ step("wait", "wait", || {{ if wait_for_file("{k}", 20) {{ remove("{b}"); }} }}) ]);"#,
        k = kubelet_conf.display(),
        b = boot.display()
    );
    worker.write("wait.rhai", &script);
    let writer = {
        let kubelet_conf = kubelet_conf.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(600));
            fs::write(kubelet_conf, "from the kubelet").unwrap();
        })
    };
    let journal = worker.path().join("journal.jsonl");
    worker.kscript(&["run", "wait.rhai", "--journal", journal.to_str().unwrap()]).ok();
    writer.join().unwrap();
    assert!(!boot.exists(), "the bootstrap kubeconfig was not removed");
    // Nothing appears: the wait fails, naming the file.
    let script = format!(
        r#"stage("s", "tls", [ step("wait", "wait", || {{ wait_for_file("{}", 1); }}) ]);"#,
        dir.join("never").display()
    );
    worker.write("never.rhai", &script);
    let run = worker.kscript(&["run", "never.rhai", "--journal", journal.to_str().unwrap()]).code(1);
    assert!(run.message().contains("did not appear within 1s"), "{}", run.stderr);
}

/// `manifests::pod(name, cfg, distro)` mounts the CA folders a stock install of that
/// distribution has, whatever the node root holds (for forks that render for another host).
#[test]
fn static_pods_for_a_named_distribution() {
    let sb = Sandbox::new();
    sb.write(
        "distro.rhai",
        r#"import "manifests" as manifests;
stage("s", "x", [ step("p", "p", || {
    for d in ["rhel", "debian", "none"] {
        let names = manifests::pod("kube-apiserver", cfg, d).spec.volumes.map(|v| v.name);
        info(`${d}: ${names}`);
    }
    manifests::pod("kube-apiserver", cfg, "plan9");
}) ]);"#,
    );
    let run = sb.render("distro.rhai", &["--set", "localAPIEndpoint.advertiseAddress=10.0.0.1"]).code(1);
    for (d, has, lacks) in [
        ("rhel", "etc-pki-ca-trust", "usr-share-ca-certificates"),
        ("debian", "usr-share-ca-certificates", "etc-pki-ca-trust"),
    ] {
        let line = run.stdout.lines().find(|l| l.trim().starts_with(&format!("{d}:"))).unwrap();
        assert!(line.contains(has) && !line.contains(lacks), "{line}");
    }
    let none = run.stdout.lines().find(|l| l.trim().starts_with("none:")).unwrap();
    assert!(!none.contains("etc-pki") && !none.contains("ca-certificates"), "{none}");
    assert!(run.message().contains(r#"unknown distro "plan9""#), "{}", run.stderr);
}
