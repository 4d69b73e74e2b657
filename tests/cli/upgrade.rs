//! upgrade.rhai against the fake API server: plan's table and each refusal (the rule named),
//! apply's sequence of manifests and its backups, and the rollback of a component whose new
//! Pod never comes back healthy.
//!
//! A control plane is rendered at [`FROM`] and init's API steps are run against the fake (as
//! in cluster.rs), so the fake holds kubeadm-config, kubelet-config, the `CoreDNS` and kube-proxy objects of
//! that release. The fake then shows the mirror Pods the node's kubelet would post for its
//! manifest folder: a new manifest gets a new config hash at once, unless the test makes that
//! component's kubelet never restart it or its new Pod never turn ready. There is no kubelet
//! here: the fake stands in for what the API server would show of one.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::cluster::{API_STEPS, ControlPlane};
use super::fake_apiserver::Stuck;
use super::{Run, etcdctl_as_healthcheck, start_etcd_member_in};

/// The release the control plane is rendered at, and the one it is upgraded to.
const FROM: &str = "v1.36.2";
const TO: &str = "v1.37.0";

/// The static Pods, in the order kubeadm upgrades them.
const COMPONENTS: &[&str] = &["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// A control plane rendered at `from` with `extra` settings, init's API steps run against the
/// fake, its Node's kubelet at `kubelet`.
fn cluster_at(from: &str, kubelet: &str, extra: &[&str]) -> ControlPlane {
    cluster_on("127.0.0.1", from, kubelet, extra)
}

/// [`cluster_at`] with the node at `ip`, a loopback address.
fn cluster_on(ip: &str, from: &str, kubelet: &str, extra: &[&str]) -> ControlPlane {
    let version = format!("kubernetesVersion={from}");
    let mut args = vec!["--set", version.as_str()];
    args.extend_from_slice(extra);
    let cp = ControlPlane::up_on(ip, &args);
    cp.run_script("control-plane.rhai", API_STEPS, &args).ok();
    let mut node = cp.fake.object("/api/v1/nodes/k8s-ctr").unwrap();
    node["status"]["nodeInfo"]["kubeletVersion"] = json!(kubelet);
    node["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    cp.fake.put("/api/v1/nodes/k8s-ctr", node);
    cp
}

/// The node's manifest folder (a host path).
fn manifests(cp: &ControlPlane) -> PathBuf {
    cp.sb.root().join("etc/kubernetes/manifests")
}

/// The image of a manifest.
fn image(path: &Path) -> String {
    let pod: serde_json::Value = serde_saphyr::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    pod["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
}

/// `kscript run upgrade.rhai` on the node, `--only` each of `stages`, to `target`.
fn upgrade(cp: &ControlPlane, stages: &[&str], target: &str, extra: &[&str]) -> Run {
    let version = format!("kubernetesVersion={target}");
    let mut args = vec!["--set", version.as_str()];
    args.extend_from_slice(extra);
    cp.run_script("upgrade.rhai", stages, &args)
}

/// `kscript run upgrade.rhai` on the node with `args`, its API sent to the fake and its
/// container runtime asked for real (the test's containerd on the node's socket).
fn upgrade_asking_the_runtime(cp: &ControlPlane, args: &[&str]) -> Run {
    let root = cp.sb.root();
    let mut all = vec!["run", "upgrade.rhai", "--root", root.to_str().unwrap()];
    all.extend(cp.args.iter().map(String::as_str));
    all.extend_from_slice(args);
    cp.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real"), ("KSCRIPT_TEST_CRI", "real")], &all)
}

/// `kscript run upgrade.rhai --only node -v` on the rendered worker `worker-1`, its API sent
/// to the fake, with `extra`.
fn node_upgrade(worker: &super::Sandbox, extra: &[&str]) -> Run {
    let root = worker.root();
    let mut args = vec![
        "run",
        "upgrade.rhai",
        "--root",
        root.to_str().unwrap(),
        "--only",
        "node",
        "--set",
        "nodeRegistration.name=worker-1",
        "-v",
    ];
    args.extend_from_slice(extra);
    worker.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args)
}

/// The lines of `text` with runs of spaces made one (table columns compared by content).
fn squeezed(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// The one backup folder of `kind` (`manifests`, `etcd`) under the node's /etc/kubernetes/tmp.
fn backup(cp: &ControlPlane, kind: &str) -> PathBuf {
    let dir = cp.sb.root().join("etc/kubernetes/tmp");
    let prefix = format!("kubeadm-backup-{kind}-");
    let found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "backups of {kind} in {}: {found:?}", dir.display());
    found[0].clone()
}

#[test]
fn upgrade_plan_prints_each_component_current_and_target() {
    let cp = cluster_at(FROM, FROM, &[]);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    cp.fake.forget_requests();
    let run = upgrade(&cp, &[], TO, &[]).ok();
    let lines = squeezed(&run.stdout);
    for row in [
        "COMPONENT NODE CURRENT TARGET",
        "kubelet k8s-ctr v1.36.2 v1.37.0",
        "kube-apiserver k8s-ctr v1.36.2 v1.37.0",
        "kube-controller-manager k8s-ctr v1.36.2 v1.37.0",
        "kube-scheduler k8s-ctr v1.36.2 v1.37.0",
        "kube-proxy v1.36.2 v1.37.0",
        // kubeadm's pins of 1.36 and 1.37 (stdlib/versions.rhai).
        "CoreDNS v1.14.2 v1.14.6",
        "etcd k8s-ctr 3.6.8-0 3.7.0-0",
        "kscript run upgrade.rhai --only apply --set kubernetesVersion=v1.37.0",
    ] {
        assert!(lines.iter().any(|l| l == row), "no row `{row}` in:\n{}", run.stdout);
    }
    // The plan changes nothing: the manifests are still those of FROM, and nothing was applied.
    assert_eq!(image(&manifests(&cp).join("kube-apiserver.yaml")), "registry.k8s.io/kube-apiserver:v1.36.2");
    assert!(!cp.fake.seen().iter().any(|s| s.method == "PATCH"), "plan applied something");
}

/// Runs plan to `target` and checks it is refused with `rule` named and `detail` said.
#[track_caller]
fn assert_refused(cp: &ControlPlane, target: &str, rule: &str, detail: &str) {
    let run = upgrade(cp, &[], target, &[]).code(1);
    let message = run.message();
    assert!(message.contains("is refused"), "{message}");
    assert!(message.contains(&format!("rule \"{rule}\"")), "rule {rule} not named:\n{message}");
    assert!(message.contains(detail), "no `{detail}` in:\n{message}");
    assert!(run.stdout.contains("failed   plan/policy"), "{}", run.stdout);
}

#[test]
fn upgrade_plan_refuses_a_downgrade() {
    let cp = cluster_at(FROM, FROM, &[]);
    assert_refused(&cp, "v1.36.0", "no downgrade", "v1.36.0 is older than the cluster's v1.36.2");
}

#[test]
fn upgrade_plan_refuses_to_skip_a_minor() {
    let cp = cluster_at(FROM, FROM, &[]);
    assert_refused(&cp, "v1.38.1", "one minor at a time", "upgrade to a v1.37 release first");
}

/// A pre-release target is refused as kubeadm refuses it, unless allowed: a release candidate
/// by `upgrade.allowRCUpgrades` (or allowExperimentalUpgrades), an alpha or beta by
/// `upgrade.allowExperimentalUpgrades` only.
#[test]
fn upgrade_plan_refuses_a_pre_release_unless_allowed() {
    let cp = cluster_at(FROM, FROM, &[]);
    assert_refused(&cp, "v1.37.0-rc.0", "a stable release", "set upgrade.allowRCUpgrades");
    let run = upgrade(&cp, &[], "v1.37.0-rc.0", &["--set", "upgrade.allowRCUpgrades=true"]).ok();
    assert!(
        squeezed(&run.stdout).iter().any(|l| l == "kube-apiserver k8s-ctr v1.36.2 v1.37.0-rc.0"),
        "{}",
        run.stdout
    );
    let alpha = upgrade(&cp, &[], "v1.37.0-alpha.1", &["--set", "upgrade.allowRCUpgrades=true"]).code(1);
    let message = alpha.message();
    assert!(message.contains("set upgrade.allowExperimentalUpgrades"), "{message}");
    upgrade(&cp, &[], "v1.37.0-rc.0", &["--set", "upgrade.allowExperimentalUpgrades=true"]).ok();
}

#[test]
fn upgrade_plan_refuses_kubelets_too_old_for_the_target() {
    let cp = cluster_at(FROM, "v1.33.5", &[]);
    assert_refused(
        &cp,
        TO,
        "kubelet skew",
        "the kubelet of node k8s-ctr is v1.33.5, 4 minors older than v1.37.0",
    );
    // Three minors older is within the skew.
    let mut node = cp.fake.object("/api/v1/nodes/k8s-ctr").unwrap();
    node["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.34.0");
    cp.fake.put("/api/v1/nodes/k8s-ctr", node);
    upgrade(&cp, &["plan/policy"], TO, &[]).ok();
}

#[test]
fn upgrade_plan_refuses_while_a_control_plane_node_is_not_ready() {
    let cp = cluster_at(FROM, FROM, &[]);
    let mut node = cp.fake.object("/api/v1/nodes/k8s-ctr").unwrap();
    node["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    cp.fake.put("/api/v1/nodes/k8s-ctr", node);
    assert_refused(&cp, TO, "control-plane nodes ready", "k8s-ctr not Ready");
    // As kubeadm's check ControlPlaneNodesReady, it can be ignored by name (a cluster without
    // its pod network yet has no Ready Node): a warning then.
    let run = upgrade(&cp, &[], TO, &["--ignore-preflight-errors", "ControlPlaneNodesReady"]).ok();
    assert!(
        run.message().contains("ControlPlaneNodesReady (ignored): rule \"control-plane nodes ready\""),
        "{}",
        run.stderr
    );
}

/// The images of the target cannot be had: a real containerd, a registry under `.invalid`.
#[test]
fn upgrade_plan_refuses_a_target_whose_images_cannot_be_pulled() {
    let cp = cluster_at(FROM, FROM, &["--set", "imageRepository=registry.invalid/k8s"]);
    let socket = cp.sb.root().join("run/kscript-test/containerd.sock");
    let mut containerd = super::cri::Containerd::start_at(&cp.sb, &socket);
    let run = upgrade_asking_the_runtime(
        &cp,
        &[
            "--set",
            "kubernetesVersion=v1.37.0",
            "--set",
            "nodeRegistration.criSocket=unix:///run/kscript-test/containerd.sock",
            "--only",
            "plan/images",
        ],
    );
    let traces = containerd.shutdown();
    let run = run.code(1);
    let message = run.message();
    assert!(message.contains("rule \"images available\""), "{message}");
    // The cluster's imageRepository (from kubeadm-config), each image of the target named.
    for image in [
        "registry.invalid/k8s/kube-apiserver:v1.37.0",
        "registry.invalid/k8s/etcd:3.7.0-0",
        "registry.invalid/k8s/coredns:v1.14.6",
    ] {
        assert!(message.contains(image), "{image} not named in:\n{message}");
    }
    assert!(traces.is_empty(), "containerd left traces: {traces:?}");
}

#[test]
fn upgrade_apply_upgrades_each_component_in_order_after_backing_up() {
    let cp = cluster_at(FROM, FROM, &[]);
    let before: Vec<String> = COMPONENTS
        .iter()
        .map(|c| fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap())
        .collect();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    // Each Pod restarts a second after its manifest changes: the waits see the old one first.
    cp.fake.mirror_delay(std::time::Duration::from_secs(1));
    cp.fake.forget_requests();
    let run = upgrade(&cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=60s"]).ok();

    // Each component upgraded and waited for, in kubeadm's order.
    let steps: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| {
            l.trim().strip_prefix("changed  apply/").or_else(|| l.trim().strip_prefix("ok       apply/"))
        })
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "backup",
            "etcd",
            "control-plane/kube-apiserver",
            "control-plane/kube-controller-manager",
            "control-plane/kube-scheduler",
            "rbac",
            "upload-config",
            "addon/coredns",
            "addon/kube-proxy",
            "kubelet-config",
            "kubelet",
            "done"
        ],
        "{}",
        run.stdout
    );
    for c in COMPONENTS {
        assert!(run.stdout.contains(&format!("{c} restarted with ")), "{c} not waited for:\n{}", run.stdout);
    }
    // The backups are synced to disk before the first manifest is written.
    let journal = kscript::journal::read(&cp.sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    let apply: Vec<_> = journal.iter().filter(|e| e.stage == "apply").collect();
    let synced = apply.iter().position(|e| e.step == "backup" && e.action == "sync");
    let first_manifest =
        apply.iter().position(|e| e.action == "file" && e.target.starts_with("/etc/kubernetes/manifests/"));
    assert!(
        matches!((synced, first_manifest), (Some(s), Some(m)) if s < m),
        "sync at {synced:?}, first manifest at {first_manifest:?}"
    );
    // The mirror Pods were asked for in that order: each component's wait ended before the
    // next manifest was written.
    let asked: Vec<String> = cp
        .fake
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.starts_with("/api/v1/namespaces/kube-system/pods/"))
        .map(|s| s.path.rsplit('/').next().unwrap().trim_end_matches("-k8s-ctr").to_string())
        .fold(Vec::new(), |mut v, c| {
            if v.last() != Some(&c) {
                v.push(c);
            }
            v
        });
    assert_eq!(asked, COMPONENTS, "mirror Pods asked in this order");

    // The new manifests are the target's, the backups the old ones, byte for byte.
    let saved = backup(&cp, "manifests");
    for (c, old) in COMPONENTS.iter().zip(&before) {
        assert_eq!(&fs::read_to_string(saved.join(format!("{c}.yaml"))).unwrap(), old, "backup of {c}");
    }
    assert_eq!(image(&manifests(&cp).join("kube-apiserver.yaml")), "registry.k8s.io/kube-apiserver:v1.37.0");
    assert_eq!(image(&manifests(&cp).join("etcd.yaml")), "registry.k8s.io/etcd:3.7.0-0");
    assert!(backup(&cp, "etcd").join("etcd").is_dir());

    // The cluster's configuration, CoreDNS and kube-proxy are the target's.
    let cm = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kubeadm-config").unwrap();
    assert!(
        cm["data"]["ClusterConfiguration"].as_str().unwrap().contains("kubernetesVersion: v1.37.0"),
        "{cm}"
    );
    let ds = cp.fake.object("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-proxy:v1.37.0"
    );
    let dns = cp.fake.object("/apis/apps/v1/namespaces/kube-system/deployments/coredns").unwrap();
    assert_eq!(
        dns["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/coredns/coredns:v1.14.6"
    );
    // The drain and uncordon commands are printed, not run.
    assert!(run.stdout.contains("kubectl drain k8s-ctr --ignore-daemonsets"), "{}", run.stdout);
    assert!(run.stdout.contains("kubectl uncordon k8s-ctr"), "{}", run.stdout);

    // Planned again: everything is at the target.
    let run = upgrade(&cp, &[], TO, &[]).ok();
    assert!(
        squeezed(&run.stdout).iter().any(|l| l == "kube-apiserver k8s-ctr v1.37.0 v1.37.0"),
        "{}",
        run.stdout
    );
}

/// Runs apply with `component` stuck as `stuck`; returns the run (failed) and the manifests
/// before it.
fn apply_with_stuck(cp: &ControlPlane, component: &str, stuck: Stuck) -> (Run, Vec<String>) {
    let before: Vec<String> = COMPONENTS
        .iter()
        .map(|c| fs::read_to_string(manifests(cp).join(format!("{c}.yaml"))).unwrap())
        .collect();
    cp.fake.mirror_static_pods(&manifests(cp), "k8s-ctr", &[(component, stuck)]);
    let run = upgrade(cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=3s"]).code(1);
    (run, before)
}

#[test]
fn upgrade_apply_rolls_back_a_component_that_never_becomes_ready() {
    let cp = cluster_at(FROM, FROM, &[]);
    let stuck =
        Stuck::NotReady { reason: "CrashLoopBackOff".into(), message: "back-off 10s restarting".into() };
    let (run, before) = apply_with_stuck(&cp, "kube-scheduler", stuck);
    let message = run.message();
    assert!(
        message.contains("kube-scheduler did not come back healthy after its upgrade to v1.37.0"),
        "{message}"
    );
    assert!(
        message.contains("not ready: kube-scheduler waiting: CrashLoopBackOff (back-off 10s restarting)"),
        "{message}"
    );
    assert!(message.contains("Rolled back: /etc/kubernetes/manifests/kube-apiserver.yaml from"), "{message}");
    assert!(message.contains("; /etc/kubernetes/manifests/kube-scheduler.yaml from"), "{message}");
    assert!(run.stdout.contains("failed   apply/control-plane/kube-scheduler"), "{}", run.stdout);
    // As kubeadm rolls back: every control-plane manifest this upgrade wrote is back as it was
    // (etcd, which did not fail, stays upgraded), and each came back ready on its old image.
    for (i, c) in COMPONENTS.iter().enumerate().skip(1) {
        assert_eq!(fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap(), before[i], "{c}");
        assert!(
            message
                .contains(&format!("{c} runs its manifest from before the upgrade (v1.36.2) and is ready")),
            "{c}: {message}"
        );
    }
    assert_eq!(image(&manifests(&cp).join("etcd.yaml")), "registry.k8s.io/etcd:3.7.0-0");
    // The run stopped there: the cluster's configuration still says FROM.
    let cm = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kubeadm-config").unwrap();
    assert!(
        cm["data"]["ClusterConfiguration"].as_str().unwrap().contains("kubernetesVersion: v1.36.2"),
        "{cm}"
    );
}

/// A failed component's diagnosis says what the container runtime shows of it: here a real
/// containerd (Debian's) as the node's runtime, running a container named kube-scheduler (the
/// test's pause image) in a pod the test made.
#[test]
fn upgrade_apply_failure_says_what_the_container_runtime_shows() {
    let cp = cluster_at(FROM, FROM, &[]);
    let socket = cp.sb.root().join("var/run/containerd/containerd.sock");
    let containerd = super::cri::Containerd::start_at(&cp.sb, &socket);
    let pod = format!(
        r#"const EP = "{}";
const POD = #{{ name: "scheduler-stand-in", namespace: "kscript-test", uid: "uid-1", host_network: true,
               cgroup_parent: "{}", log_directory: "{}" }};
stage("pod", "A container named kube-scheduler", [
    step("run", "Run it", || {{
        let pod = cri_run_pod(EP, POD);
        let c = cri_create_container(EP, pod, POD, #{{ name: "kube-scheduler", image: "{}", log_path: "s.log" }});
        cri_start_container(EP, c);
        cri_wait_running(EP, "kube-scheduler", 20);
    }}),
]);
"#,
        containerd.endpoint(),
        containerd.cgroup_parent,
        cp.sb.path().join("pod-logs").display(),
        super::cri::IMAGE,
    );
    cp.sb.write("pod.rhai", &pod);
    cp.sb.kscript(&["run", "pod.rhai"]).ok();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[("kube-scheduler", Stuck::NotRestarted)]);
    upgrade(&cp, &["apply/backup"], TO, &[]).ok();
    let version = format!("kubernetesVersion={TO}");
    let run = upgrade_asking_the_runtime(
        &cp,
        &[
            "--only",
            "apply/control-plane/kube-scheduler",
            "--set",
            &version,
            "--set",
            "timeouts.upgradeManifests=3s",
        ],
    )
    .code(1);
    let message = run.message().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        message.contains("Through the container runtime: kube-scheduler: running (attempt 0)"),
        "{message}"
    );
}

/// From 1.32.13 to 1.33.13 etcd keeps its image (3.5.24-0): its new manifest differs from the
/// old only by `creationTimestamp: null`, which the kubelet decodes to the same Pod, so it
/// does not restart etcd (as the fake's kubelet here, like the real one on the VM). The
/// upgrade takes it for the same Pod and goes on, waiting only for those that change.
#[test]
fn upgrade_apply_does_not_wait_for_a_pod_the_kubelet_sees_unchanged() {
    let (from, to) = ("v1.32.13", "v1.33.13");
    let cp = cluster_at(from, from, &[]);
    let etcd = manifests(&cp).join("etcd.yaml");
    assert!(fs::read_to_string(&etcd).unwrap().contains("creationTimestamp: null"));
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[("etcd", Stuck::NotRestarted)]);
    let run = upgrade(&cp, &["apply"], to, &["--set", "timeouts.upgradeManifests=60s"]).ok();
    assert!(
        run.stdout.contains("etcd.yaml is already that of v1.33.13: etcd is not restarted, nothing renewed"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("kube-apiserver restarted with v1.33.13 and ready"), "{}", run.stdout);
    // Written in the target's form all the same, which the kubelet takes for the same Pod.
    assert!(!fs::read_to_string(&etcd).unwrap().contains("creationTimestamp"));
}

/// The backup note (/var/lib/kscript/upgrade.json) of the node, as JSON.
fn note(cp: &ControlPlane) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(cp.sb.root().join("var/lib/kscript/upgrade.json")).unwrap())
        .unwrap()
}

/// A run stopped halfway (the scheduler never ready), then run again: the rerun keeps the
/// first backup (the manifests from before the upgrade), not a copy of the half-upgraded
/// ones, and its note is marked done once apply has run through.
#[test]
fn upgrade_apply_run_again_after_a_failure_keeps_the_first_backup() {
    let cp = cluster_at(FROM, FROM, &[]);
    let stuck = Stuck::NotReady { reason: "CrashLoopBackOff".into(), message: "back-off".into() };
    let (_, before) = apply_with_stuck(&cp, "kube-scheduler", stuck);
    assert_eq!(note(&cp)["done"], false);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let run = upgrade(&cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=60s"]).ok();
    assert!(
        run.stdout.contains("keeping the backup of the unfinished upgrade from v1.36.2 to v1.37.0"),
        "{}",
        run.stdout
    );
    let saved = backup(&cp, "manifests");
    for (c, old) in COMPONENTS.iter().zip(&before) {
        assert_eq!(&fs::read_to_string(saved.join(format!("{c}.yaml"))).unwrap(), old, "backup of {c}");
    }
    assert_eq!(image(&manifests(&cp).join("kube-scheduler.yaml")), "registry.k8s.io/kube-scheduler:v1.37.0");
    let done = note(&cp);
    assert_eq!(
        (done["from"].as_str(), done["to"].as_str(), done["done"].as_bool()),
        (Some(FROM), Some(TO), Some(true))
    );
}

/// One step run alone (`--only apply/control-plane/kube-apiserver`) with the note of another
/// upgrade on the node (here from 1.35 to 1.36, or this one's, done) refuses before writing
/// anything: a rollback would put back that upgrade's manifests.
#[test]
fn upgrade_apply_one_step_refuses_the_backups_of_another_upgrade() {
    let cp = cluster_at(FROM, FROM, &[]);
    let root = cp.sb.root();
    let old = root.join("etc/kubernetes/tmp/kubeadm-backup-manifests-2026-01-01-00-00-00");
    fs::create_dir_all(&old).unwrap();
    let api = manifests(&cp).join("kube-apiserver.yaml");
    fs::write(old.join("kube-apiserver.yaml"), fs::read_to_string(&api).unwrap().replace(FROM, "v1.35.1"))
        .unwrap();
    fs::create_dir_all(root.join("var/lib/kscript")).unwrap();
    let stale = json!({"manifests": "/etc/kubernetes/tmp/kubeadm-backup-manifests-2026-01-01-00-00-00",
                       "etcd": null, "from": "v1.35.1", "to": FROM, "done": false});
    fs::write(root.join("var/lib/kscript/upgrade.json"), stale.to_string()).unwrap();
    let before = fs::read_to_string(&api).unwrap();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let run = upgrade(&cp, &["apply/control-plane/kube-apiserver"], TO, &[]).code(1);
    let message = run.message().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("are those of another upgrade (from v1.35.1 to v1.36.2), not of this one (from v1.36.2 to v1.37.0)"), "{message}");
    assert_eq!(fs::read_to_string(&api).unwrap(), before, "the manifest was written");

    // This upgrade's note, once done, is not trusted either.
    let mut done = stale;
    done["from"] = json!(FROM);
    done["to"] = json!(TO);
    done["done"] = json!(true);
    fs::write(root.join("var/lib/kscript/upgrade.json"), done.to_string()).unwrap();
    let run = upgrade(&cp, &["apply/control-plane/kube-apiserver"], TO, &[]).code(1);
    let message = run.message().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("(from v1.36.2 to v1.37.0, done)"), "{message}");
    assert_eq!(fs::read_to_string(&api).unwrap(), before, "the manifest was written");
}

/// etcd on the node is newer than the target's (kubeadm's "won't downgrade etcd"): its
/// manifest stays, the step is skipped with a warning, the rest of the control plane upgrades.
#[test]
fn upgrade_apply_never_downgrades_etcd() {
    let cp = cluster_at(FROM, FROM, &[]);
    let etcd = manifests(&cp).join("etcd.yaml");
    let newer = fs::read_to_string(&etcd)
        .unwrap()
        .replace("registry.k8s.io/etcd:3.6.8-0", "registry.k8s.io/etcd:3.8.1-0");
    assert!(newer.contains("etcd:3.8.1-0"), "{newer}");
    fs::write(&etcd, &newer).unwrap();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let run = upgrade(&cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=60s"]).ok();
    assert!(run.stdout.contains("skipped  apply/etcd"), "{}", run.stdout);
    assert!(run.stdout.contains("etcd runs 3.8.1-0, newer than 3.7.0-0"), "{}", run.stdout);
    assert_eq!(fs::read_to_string(&etcd).unwrap(), newer);
    assert_eq!(image(&manifests(&cp).join("kube-apiserver.yaml")), "registry.k8s.io/kube-apiserver:v1.37.0");
}

/// Releases whose etcd Pod Debian's etcd (3.4) runs: no --feature-gates before 1.34.
const ETCD_FROM: &str = "v1.33.4";
const ETCD_TO: &str = "v1.34.1";

/// A control plane at `ip` rendered at [`ETCD_FROM`] whose etcd is Debian's, run from its
/// manifest on the node's data folder (`data_link`: that folder a relative symlink to another
/// one, as a mount elsewhere would be); returns the node, the member and an etcdctl.
fn cluster_with_real_etcd(
    ip: &str,
    data_link: bool,
) -> (ControlPlane, super::KillOnDrop, impl Fn(&[&str]) -> String) {
    let cp = cluster_on(ip, ETCD_FROM, ETCD_FROM, &[]);
    let root = cp.sb.root();
    let data = root.join("var/lib/etcd");
    if data_link {
        let real = root.join("srv/etcd-data");
        fs::create_dir_all(root.join("srv")).unwrap();
        if data.exists() {
            fs::rename(&data, &real).unwrap();
        } else {
            fs::create_dir(&real).unwrap();
        }
        fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("../../srv/etcd-data", &data).unwrap();
    }
    let endpoint = format!("https://{ip}:2379");
    let etcdctl = move |args: &[&str]| {
        let out = etcdctl_as_healthcheck(&root, &endpoint, args);
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (etcd, _log) = start_etcd_member_in(&cp.sb, ip, &cp.sb.root().join("var/lib/etcd"));
    (cp, etcd, etcdctl)
}

/// The kubelet never restarts etcd from its new manifest while the old etcd goes on serving:
/// the rollback puts the manifest back, sees the previous etcd serve, and leaves its data
/// alone (kubeadm restores etcd's data only once it knows etcd is dead): a key written after
/// the backup is still there.
#[test]
fn upgrade_apply_keeps_etcds_data_when_the_previous_etcd_serves_again() {
    const IP: &str = "127.0.32.2";
    let (cp, _etcd, etcdctl) = cluster_with_real_etcd(IP, false);
    etcdctl(&["put", "/upgrade-test/before", "kept"]);
    upgrade(&cp, &["apply/preflight", "apply/backup"], ETCD_TO, &[]).ok();
    etcdctl(&["put", "/upgrade-test/after", "kept too"]);
    let before = fs::read_to_string(manifests(&cp).join("etcd.yaml")).unwrap();

    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[("etcd", Stuck::NotRestarted)]);
    let run = upgrade(&cp, &["apply/etcd"], ETCD_TO, &["--set", "timeouts.upgradeManifests=3s"]).code(1);
    let message = run.message();
    assert!(message.contains("etcd did not come back healthy after its upgrade to v1.34.1"), "{message}");
    assert!(message.contains("the kubelet still runs etcd from the old manifest"), "{message}");
    assert!(message.contains("the previous etcd serves again: its data is kept"), "{message}");
    assert_eq!(fs::read_to_string(manifests(&cp).join("etcd.yaml")).unwrap(), before);
    assert!(
        etcdctl(&["get", "/upgrade-test/after"]).contains("kept too"),
        "a key written after the backup is lost"
    );
    let left: Vec<_> =
        fs::read_dir(cp.sb.root().join("var/lib/etcd")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("member")], "the data folder was touched");
}

/// etcd's data is backed up and put back for real: Debian's etcd runs on the node's data
/// folder (a symlink to another folder); apply backs it up while it runs (as kubeadm copies
/// it), a key is written after, then etcd dies and the new etcd Pod never becomes ready: the
/// previous etcd does not serve either, so the rollback stops etcd (manifest out), swaps the
/// backup's content into the folder (the symlink stays a symlink), and writes the manifest
/// back: etcd started on it again has the key written before the backup and not the one after,
/// which is kept aside in the data folder.
#[test]
fn upgrade_apply_backs_up_etcds_data_and_puts_it_back_when_etcd_stays_dead() {
    const IP: &str = "127.0.32.1";
    let (cp, etcd, etcdctl) = cluster_with_real_etcd(IP, true);
    let root = cp.sb.root();
    let data = root.join("var/lib/etcd");
    etcdctl(&["put", "/upgrade-test/before", "kept"]);

    // plan asks the member its version.
    let version = std::process::Command::new("etcd").arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_string))
        .unwrap();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let run = upgrade(&cp, &["plan/versions"], ETCD_TO, &[]).ok();
    assert!(
        squeezed(&run.stdout).iter().any(|l| *l == format!("etcd k8s-ctr {version} 3.6.4-0")),
        "etcd {version} not shown:\n{}",
        run.stdout
    );

    // The backup, taken while etcd runs.
    upgrade(&cp, &["apply/preflight", "apply/backup"], ETCD_TO, &[]).ok();
    let saved = backup(&cp, "etcd").join("etcd");
    assert!(saved.join("member/snap/db").is_file(), "no etcd database in {}", saved.display());
    etcdctl(&["put", "/upgrade-test/after", "lost"]);
    drop(etcd);

    // The new etcd never turns ready, and nothing serves as etcd: its manifest and its data go back.
    let stuck = Stuck::NotReady { reason: "CrashLoopBackOff".into(), message: "etcd exited".into() };
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[("etcd", stuck)]);
    let run = upgrade(&cp, &["apply/etcd"], ETCD_TO, &["--set", "timeouts.upgradeManifests=3s"]).code(1);
    let message = run.message().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("etcd did not come back healthy"), "{message}");
    assert!(message.contains("with etcd stopped /var/lib/etcd was put back from"), "{message}");
    assert_eq!(image(&manifests(&cp).join("etcd.yaml")), "registry.k8s.io/etcd:3.5.21-0");
    assert!(
        fs::symlink_metadata(&data).unwrap().file_type().is_symlink(),
        "the data folder's symlink was replaced"
    );
    let entries: Vec<String> =
        fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(entries.iter().any(|n| n.starts_with(".kscript-replaced-")), "{entries:?}");
    assert!(!entries.iter().any(|n| n.starts_with(".kscript-restore-")), "{entries:?}");

    let (_etcd, _log) = start_etcd_member_in(&cp.sb, IP, &data);
    assert!(etcdctl(&["get", "/upgrade-test/before"]).contains("kept"));
    assert_eq!(etcdctl(&["get", "/upgrade-test/after"]), "", "a key written after the backup survived");
}

/// Nothing answers as etcd, and the manifest says etcd has another member: its data is not
/// put back (one member's old data would fork the cluster); the manifest is.
#[test]
fn upgrade_apply_never_puts_back_etcds_data_when_etcd_has_other_members() {
    let cp = cluster_at(FROM, FROM, &[]);
    let etcd = manifests(&cp).join("etcd.yaml");
    let joined = fs::read_to_string(&etcd)
        .unwrap()
        .replace(
            "--initial-cluster=k8s-ctr=https://127.0.0.1:2380",
            "--initial-cluster=cp-0=https://127.0.0.9:2380,k8s-ctr=https://127.0.0.1:2380",
        )
        .replace("- --key-file=", "- --initial-cluster-state=existing\n    - --key-file=");
    fs::write(&etcd, joined).unwrap();
    let (run, before) = apply_with_stuck(&cp, "etcd", Stuck::NotRestarted);
    let message = run.message().replace('\n', " ");
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("the previous etcd does not serve either;"), "{message}");
    assert!(message.contains("the manifest names other members (cp-0)"), "{message}");
    assert!(
        message.contains("/var/lib/etcd is NOT put back from /etc/kubernetes/tmp/kubeadm-backup-etcd-"),
        "{message}"
    );
    for (c, old) in COMPONENTS.iter().zip(&before) {
        assert_eq!(&fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap(), old, "{c}");
    }
    let left: Vec<_> =
        fs::read_dir(cp.sb.root().join("var/lib/etcd")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with(".kscript-")), "{left:?}");
}

/// `--dry-run` reads the cluster (kubeadm-config, the mirror Pods) and plans every step of
/// apply, changing nothing: no manifest, no backup, no object.
#[test]
fn upgrade_apply_dry_run_reads_the_cluster_and_changes_nothing() {
    let cp = cluster_at(FROM, FROM, &[]);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let before: Vec<String> = COMPONENTS
        .iter()
        .map(|c| fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap())
        .collect();
    cp.fake.forget_requests();
    let run = upgrade(&cp, &["apply"], TO, &["--dry-run", "-v"]).ok();
    assert!(run.stdout.contains("upgrading the cluster from v1.36.2 to v1.37.0"), "{}", run.stdout);
    assert!(run.stdout.contains("/etc/kubernetes/tmp/kubeadm-backup-manifests-"), "{}", run.stdout);
    assert!(run.stdout.contains("~ /etc/kubernetes/manifests/kube-apiserver.yaml"), "{}", run.stdout);
    for (c, old) in COMPONENTS.iter().zip(&before) {
        assert_eq!(&fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap(), old, "{c}");
    }
    assert!(!cp.sb.root().join("etc/kubernetes/tmp").exists(), "a dry run made backups");
    assert!(!cp.fake.seen().iter().any(|s| s.method != "GET"), "a dry run sent a change");
}

/// A dry run that cannot read the cluster (here admin.conf forbidden: its group's binding
/// no longer grants cluster-admin) says so, instead of planning against an empty cluster
/// ("no kubeadm-config", no Nodes to check the skew of).
#[test]
fn upgrade_dry_run_fails_when_the_cluster_forbids_reading() {
    let cp = cluster_at(FROM, FROM, &[]);
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins";
    let mut binding = cp.fake.object(path).unwrap();
    binding["roleRef"]["name"] = json!("view");
    cp.fake.put(path, binding);
    let run = upgrade(&cp, &["plan/policy"], TO, &["--dry-run"]).code(1);
    let message = run.message().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(message.contains("a dry run reads the cluster it would change, and could not"), "{message}");
    assert!(message.contains("forbidden by the API server"), "{message}");
    assert!(!message.contains("has no kube-system/kubeadm-config"), "{message}");
    assert!(cp.fake.seen().iter().any(|s| s.status == 403), "the fake forbade nothing");
}

/// On an HA cluster the addons wait for every API server (kubeadm from 1.28): apply on the
/// first control plane, with another's API server still at [`FROM`], leaves `CoreDNS` and kube-proxy
/// alone; once that one is at [`TO`], `node` on this (last) control plane upgrades them.
#[test]
fn upgrade_addons_wait_until_every_api_server_runs_the_target() {
    let cp = cluster_at(FROM, FROM, &[]);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let other = "/api/v1/namespaces/kube-system/pods/kube-apiserver-cp-2";
    let pod = |version: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "kube-apiserver-cp-2", "namespace": "kube-system",
                            "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
               "spec": {"nodeName": "cp-2",
                        "containers": [{"name": "kube-apiserver", "image": format!("registry.k8s.io/kube-apiserver:{version}")}]}})
    };
    cp.fake.put(other, pod(FROM));
    let proxy_image = |cp: &ControlPlane| {
        cp.fake.object("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy").unwrap()["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .clone()
    };
    let run = upgrade(&cp, &["apply"], TO, &[]).ok();
    let out = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(out.contains("skipped apply/addon/coredns"), "{}", run.stdout);
    assert!(out.contains("skipped apply/addon/kube-proxy"), "{}", run.stdout);
    assert!(out.contains("the API server of cp-2 (v1.36.2) is not at v1.37.0 yet"), "{}", run.stdout);
    assert_eq!(proxy_image(&cp), "registry.k8s.io/kube-proxy:v1.36.2");

    cp.fake.put(other, pod(TO));
    let run = upgrade(&cp, &["node"], TO, &[]).ok();
    assert!(!run.stdout.contains("skipped  node/addon/"), "{}", run.stdout);
    assert_eq!(proxy_image(&cp), "registry.k8s.io/kube-proxy:v1.37.0");
    let dns = cp.fake.object("/apis/apps/v1/namespaces/kube-system/deployments/coredns").unwrap();
    assert_eq!(
        dns["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/coredns/coredns:v1.14.6"
    );
}

/// `node` on a worker, after apply on the control plane: the cluster's new version, the
/// kubelet's configuration from the cluster, the kubelet of that version through the package
/// repository (recorded: a render); no static Pods, no backups.
#[test]
fn upgrade_node_on_a_worker_follows_the_clusters_version() {
    let cp = cluster_at(FROM, FROM, &[]);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], TO, &[]).ok();

    let worker = super::Sandbox::new();
    super::nodes::render_worker(&worker, &cp.sb, &["--set", &format!("kubernetesVersion={FROM}")]).ok();
    // The kubelet's kubeconfig, as its TLS bootstrap would leave it: here the control plane's
    // node credentials (group system:nodes, which may read kubeadm-config and kubelet-config).
    let wroot = worker.root();
    fs::copy(cp.sb.root().join("etc/kubernetes/kubelet.conf"), wroot.join("etc/kubernetes/kubelet.conf"))
        .unwrap();
    let run = node_upgrade(&worker, &[]).ok();
    assert!(run.stdout.contains("upgrading this node to the cluster's v1.37.0"), "{}", run.stdout);
    for line in [
        "skipped  node/backup",
        "skipped  node/etcd",
        "skipped  node/control-plane/kube-apiserver",
        "changed  node/kubelet-config",
        "kubectl drain worker-1 --ignore-daemonsets",
        "kubelet=1.37.0-1.1",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
    assert!(!wroot.join("etc/kubernetes/tmp").exists(), "a worker made backups");
    // The kubelet's configuration is the cluster's, with the fields of 1.37's kubelet.
    let config = fs::read_to_string(wroot.join("var/lib/kubelet/config.yaml")).unwrap();
    assert!(config.contains("draManagerReconcilePeriod: 0s"), "{config}");

    // From an air-gap bundle (source bundle, as stages 1-2 install it): the bundle's binaries
    // are installed (stand-ins, named so: scripts that print the target's version). The step
    // used to end at the package repository's skip, installing nothing.
    let bundle = worker.path().join("bundle-1.37");
    fs::create_dir_all(&bundle).unwrap();
    for name in ["kubelet", "kubectl", "kubeadm"] {
        fs::write(bundle.join(name), format!("#!/bin/sh\n# stand-in {name}\necho Kubernetes {TO}\n"))
            .unwrap();
    }
    let bundle_set = format!("kscript.kubernetes.bundleDir={}", bundle.display());
    let run =
        node_upgrade(&worker, &["--set", "kscript.kubernetes.source=bundle", "--set", &bundle_set]).ok();
    // (A render records the install command; a real run runs it.)
    assert!(!run.stdout.contains("skipped  node/kubelet"), "{}", run.stdout);
    for name in ["kubelet", "kubectl", "kubeadm"] {
        let install = format!("! install -m 0755 {}/{name} /usr/bin/{name}", bundle.display());
        assert!(run.stdout.contains(&install), "no `{install}` in:\n{}", run.stdout);
    }
}

/// A render previews the upgrade of a rendered node against the cluster its render recorded
/// (/var/lib/kscript/objects.yaml): the steps, the new manifests and the objects it would
/// apply, stable enough to snapshot.
#[test]
fn upgrade_apply_renders_against_the_recorded_cluster() {
    let sb = super::Sandbox::new();
    let node = [
        "--set",
        "nodeRegistration.name=k8s-ctr",
        "--set",
        "localAPIEndpoint.advertiseAddress=10.0.0.10",
        "--set",
        "encryptionAlgorithm=ECDSA-P256",
    ];
    let env = [("KSCRIPT_TEST_NOW", "1800000000")];
    let root = sb.root();
    let root = root.to_str().unwrap();
    let render = |script: &str, extra: &[&str]| {
        let mut args = vec!["run", script, "--root", root];
        args.extend_from_slice(&node);
        args.extend_from_slice(extra);
        sb.kscript_env(&env, &args)
    };
    render("control-plane.rhai", &["--set", &format!("kubernetesVersion={FROM}")]).ok();
    let objects_path = root_path(root).join("var/lib/kscript/objects.yaml");
    let secrets_before = secret_docs(&fs::read_to_string(&objects_path).unwrap());
    assert!(!secrets_before.is_empty(), "the control-plane render recorded no Secret");
    let run = render("upgrade.rhai", &["--only", "apply", "--set", &format!("kubernetesVersion={TO}")]).ok();
    insta::assert_snapshot!("upgrade_apply_render", sb.stable(&run.stdout));
    assert_eq!(
        image(&root_path(root).join("etc/kubernetes/manifests/kube-scheduler.yaml")),
        "registry.k8s.io/kube-scheduler:v1.37.0"
    );
    let objects = fs::read_to_string(root_path(root).join("var/lib/kscript/objects.yaml")).unwrap();
    assert!(objects.contains("kubernetesVersion: v1.37.0"), "{objects}");
    assert!(objects.contains("image: registry.k8s.io/kube-proxy:v1.37.0"), "{objects}");
    assert!(!objects.contains("kube-proxy:v1.36.2"), "{objects}");
    // The Secrets the control-plane render recorded are written back as they were.
    assert_eq!(secret_docs(&objects), secrets_before);
    // Planned again against what the render recorded: at the target.
    let run = render("upgrade.rhai", &["--set", &format!("kubernetesVersion={TO}")]).ok();
    assert!(
        squeezed(&run.stdout).iter().any(|l| l == "kube-apiserver k8s-ctr v1.37.0 v1.37.0"),
        "{}",
        run.stdout
    );
}

fn root_path(root: &str) -> PathBuf {
    PathBuf::from(root)
}

/// The Secret documents of an objects.yaml, each from its `--- # Secret ...` line.
fn secret_docs(objects: &str) -> Vec<String> {
    format!("\n{objects}")
        .split("\n--- # ")
        .filter(|d| d.starts_with("Secret"))
        .map(|d| d.trim_end().to_string())
        .collect()
}

/// Only upgrade.rhai starts from the objects an earlier render recorded: rendering
/// control-plane.rhai again into the same root with `CoreDNS` turned off records its own objects,
/// without the `CoreDNS` of the first render.
#[test]
fn a_render_again_replaces_the_recorded_objects() {
    let sb = super::Sandbox::new();
    let root = sb.root();
    let root = root.to_str().unwrap();
    let render = |extra: &[&str]| {
        let mut args =
            vec!["run", "control-plane.rhai", "--root", root, "--set", "nodeRegistration.name=k8s-ctr"];
        args.extend_from_slice(extra);
        sb.kscript(&args)
    };
    render(&[]).ok();
    let path = root_path(root).join("var/lib/kscript/objects.yaml");
    assert!(fs::read_to_string(&path).unwrap().contains("--- # Deployment kube-system/coredns"));
    render(&["--set", "dns.disabled=true"]).ok();
    let objects = fs::read_to_string(&path).unwrap();
    assert!(!objects.contains("coredns"), "{objects}");
}

/// A control plane that joined an etcd cluster keeps its member list through the upgrade
/// (`--initial-cluster` and `--initial-cluster-state=existing`, which etcd reads at its first
/// start only); and `node` on a control plane already at the cluster's version backs up, then
/// restarts nothing.
#[test]
fn upgrade_keeps_a_joined_etcd_members_list_and_node_restarts_nothing_at_the_version() {
    let cp = cluster_at(FROM, FROM, &[]);
    let etcd = manifests(&cp).join("etcd.yaml");
    let members = "cp-0=https://127.0.0.9:2380,k8s-ctr=https://127.0.0.1:2380";
    let joined = fs::read_to_string(&etcd)
        .unwrap()
        .replace("--initial-cluster=k8s-ctr=https://127.0.0.1:2380", &format!("--initial-cluster={members}"))
        .replace("- --key-file=", "- --initial-cluster-state=existing\n    - --key-file=");
    assert!(joined.contains(members) && joined.contains("existing"), "{joined}");
    fs::write(&etcd, joined).unwrap();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], TO, &[]).ok();
    let pod = super::static_pod(&cp.sb.root(), "etcd.yaml");
    let command: Vec<&str> = pod["spec"]["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(command.contains(&format!("--initial-cluster={members}").as_str()), "{command:?}");
    assert!(command.contains(&"--initial-cluster-state=existing"), "{command:?}");
    assert_eq!(pod["spec"]["containers"][0]["image"], "registry.k8s.io/etcd:3.7.0-0");

    let before: Vec<String> = COMPONENTS
        .iter()
        .map(|c| fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap())
        .collect();
    // What a restart would make the components read: unchanged, as nothing restarts.
    let renewable = [
        "etc/kubernetes/pki/apiserver.crt",
        "etc/kubernetes/pki/etcd/server.crt",
        "etc/kubernetes/controller-manager.conf",
        "etc/kubernetes/scheduler.conf",
    ];
    let read = |p: &str| fs::read(cp.sb.root().join(p)).unwrap();
    let creds: Vec<Vec<u8>> = renewable.iter().map(|p| read(p)).collect();
    let run = upgrade(&cp, &["node"], TO, &[]).ok();
    assert!(run.stdout.contains("upgrading this node to the cluster's v1.37.0"), "{}", run.stdout);
    for c in COMPONENTS {
        assert!(
            run.stdout.contains(&format!(
                "{c}.yaml is already that of v1.37.0: {c} is not restarted, nothing renewed"
            )),
            "{c}:\n{}",
            run.stdout
        );
    }
    for (p, old) in renewable.iter().zip(&creds) {
        assert!(read(p) == *old, "{p} renewed though nothing restarts");
    }
    for (c, old) in COMPONENTS.iter().zip(&before) {
        assert_eq!(&fs::read_to_string(manifests(&cp).join(format!("{c}.yaml"))).unwrap(), old, "{c}");
    }
}

/// From 1.28 to 1.29 admin.conf changes group (system:masters to kubeadm:cluster-admins): the
/// upgrade makes super-admin.conf, binds kubeadm:cluster-admins with it, then renews
/// admin.conf, which goes on working for the steps after (the fake authorizes by groups and
/// bindings as the real server does).
#[test]
fn upgrade_from_1_28_makes_super_admin_conf_and_binds_the_new_admin_group() {
    let cp = cluster_at("v1.28.15", "v1.28.15", &[]);
    let root = cp.sb.root();
    assert!(!root.join("etc/kubernetes/super-admin.conf").exists());
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    cp.fake.forget_requests();
    upgrade(&cp, &["apply"], "v1.29.15", &[]).ok();
    assert!(root.join("etc/kubernetes/super-admin.conf").exists(), "no super-admin.conf");
    let admin = fs::read_to_string(root.join("etc/kubernetes/admin.conf")).unwrap();
    let data = admin.lines().find_map(|l| l.trim().strip_prefix("client-certificate-data: ")).unwrap();
    let pem =
        String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap())
            .unwrap();
    let info = kscript::pki::CertInfo::from_pem(&pem).unwrap();
    assert_eq!(info.organizations, ["kubeadm:cluster-admins"]);
    assert!(
        cp.fake
            .object("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins")
            .is_some()
    );
    // admin.conf was allowed everything after its renewal.
    let refused: Vec<String> =
        cp.fake.seen().iter().filter(|s| s.status == 403).map(super::fake_apiserver::Seen::line).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
}

/// What init was given for kube-proxy (here `kubeProxy.mode: ipvs`) and a Corefile the operator
/// changed stay through the upgrade without being given again; the images move to the target.
#[test]
fn upgrade_keeps_the_clusters_kube_proxy_configuration_and_corefile() {
    let cp = cluster_at(FROM, FROM, &["--set", "kubeProxy={mode: ipvs}"]);
    let path = "/api/v1/namespaces/kube-system/configmaps/coredns";
    let mut corefile = cp.fake.object(path).unwrap();
    let site = ".:53 {\n    errors\n    forward . 10.0.0.53\n}\n";
    corefile["data"]["Corefile"] = json!(site);
    cp.fake.put(path, corefile);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], TO, &[]).ok();
    let proxy = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kube-proxy").unwrap();
    assert!(proxy["data"]["config.conf"].as_str().unwrap().contains("mode: ipvs"), "{proxy}");
    let ds = cp.fake.object("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-proxy:v1.37.0"
    );
    assert_eq!(cp.fake.object(path).unwrap()["data"]["Corefile"], site);
    let dns = cp.fake.object("/apis/apps/v1/namespaces/kube-system/deployments/coredns").unwrap();
    assert_eq!(
        dns["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.k8s.io/coredns/coredns:v1.14.6"
    );
}

/// `ConfigMap`s an operator edited after kubeadm made them (the hash annotation left, no longer
/// matching) are the operator's: the upgrade keeps the edit and no longer signs them as
/// kubeadm's; those still as generated stay signed.
#[test]
fn upgrade_leaves_configuration_an_operator_edited_unsigned() {
    let cp = cluster_at(FROM, FROM, &[]);
    const HASH: &str = "kubeadm.kubernetes.io/component-config.hash";
    let path = "/api/v1/namespaces/kube-system/configmaps/kube-proxy";
    let mut proxy = cp.fake.object(path).unwrap();
    let signed = proxy["metadata"]["annotations"][HASH].clone();
    assert!(signed.is_string(), "{proxy}");
    let conf = proxy["data"]["config.conf"].as_str().unwrap().replace("mode: \"\"", "mode: ipvs");
    proxy["data"]["config.conf"] = json!(conf);
    cp.fake.put(path, proxy);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], TO, &[]).ok();
    let proxy = cp.fake.object(path).unwrap();
    assert!(proxy["data"]["config.conf"].as_str().unwrap().contains("mode: ipvs"), "{proxy}");
    // Not signed anew: a real server drops the annotation kscript's own apply no longer
    // gives; the fake keeps what an apply omits, so the old hash, which the data no longer matches.
    let after = &proxy["metadata"]["annotations"][HASH];
    assert!(after.is_null() || *after == signed, "signed anew: {proxy}");
    let conf = proxy["data"]["config.conf"].as_str().unwrap();
    assert!(conf.contains("kube-proxy") || conf.contains("KubeProxyConfiguration"), "{conf}");
    let kubelet = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kubelet-config").unwrap();
    assert!(kubelet["metadata"]["annotations"][HASH].is_string(), "kubelet-config unsigned: {kubelet}");
}

/// What changes with the target version follows it, as init's rendering does: from 1.30 to
/// 1.31 the stored `ClusterConfiguration` moves from v1beta3 (argument maps) to v1beta4
/// (`{name, value}` lists), the settings kept.
#[test]
fn upgrade_to_1_31_stores_the_configuration_as_v1beta4() {
    let cp = cluster_at("v1.30.10", "v1.30.10", &["--set", "apiServer.extraArgs=[{name: v, value: \"2\"}]"]);
    let path = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config";
    let before = cp.fake.object(path).unwrap()["data"]["ClusterConfiguration"].as_str().unwrap().to_string();
    assert!(before.contains("apiVersion: kubeadm.k8s.io/v1beta3"), "{before}");
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], "v1.31.6", &[]).ok();
    let after = cp.fake.object(path).unwrap()["data"]["ClusterConfiguration"].as_str().unwrap().to_string();
    let stored: serde_json::Value = serde_saphyr::from_str(&after).unwrap();
    assert_eq!(stored["apiVersion"], "kubeadm.k8s.io/v1beta4", "{after}");
    assert_eq!(stored["kubernetesVersion"], "v1.31.6", "{after}");
    assert_eq!(stored["apiServer"]["extraArgs"], json!([{"name": "v", "value": "2"}]), "{after}");
    let api = super::static_pod(&cp.sb.root(), "kube-apiserver.yaml");
    assert!(api["spec"]["containers"][0]["command"].as_array().unwrap().contains(&json!("--v=2")), "{api}");
}

/// From 1.34 to 1.35 the kubelet's flags lose `--pod-infra-container-image` (kubelet 1.35
/// rejects it), as init at 1.35 writes them; the flags the node was given (at join, or by
/// hand: its node IP, labels, cloud provider, its own CRI socket) stay, as kubeadm edits the
/// file rather than making it anew.
#[test]
fn upgrade_to_1_35_drops_the_pause_flag_of_the_kubelet_and_keeps_the_nodes_flags() {
    let cp = cluster_at("v1.34.3", "v1.34.3", &[]);
    let flags = cp.sb.root().join("var/lib/kubelet/kubeadm-flags.env");
    let before = fs::read_to_string(&flags).unwrap();
    assert!(before.contains("--pod-infra-container-image="), "{before}");
    let socket = "--container-runtime-endpoint=unix:///run/crio/crio.sock";
    let node = "--node-ip=127.0.0.1 --node-labels=zone=a,tier=cp --cloud-provider=external";
    let line = before.lines().find(|l| l.starts_with("KUBELET_KUBEADM_ARGS=")).unwrap();
    let args = line.trim_start_matches("KUBELET_KUBEADM_ARGS=\"").trim_end_matches('"');
    let args: Vec<&str> =
        args.split(' ').filter(|a| !a.starts_with("--container-runtime-endpoint=")).collect();
    let edited = format!("KUBELET_KUBEADM_ARGS=\"{socket} {} {node}\"\n", args.join(" "));
    fs::write(&flags, edited).unwrap();
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    upgrade(&cp, &["apply"], "v1.35.1", &[]).ok();
    let text = fs::read_to_string(&flags).unwrap();
    assert!(!text.contains("--pod-infra-container-image"), "{text}");
    for kept in ["--node-ip=127.0.0.1", "--node-labels=zone=a,tier=cp", "--cloud-provider=external"] {
        assert!(text.contains(kept), "{kept} lost: {text}");
    }
    // 1.35 keeps the CRI socket in instance-config.yaml (NodeLocalCRISocket): the node's, moved there.
    assert!(!text.contains("--container-runtime-endpoint"), "{text}");
    let instance = fs::read_to_string(cp.sb.root().join("var/lib/kubelet/instance-config.yaml")).unwrap();
    assert_eq!(instance, "containerRuntimeEndpoint: \"unix:///run/crio/crio.sock\"\n");
}

/// Apply run again once it has run through changes nothing: no new backups, no component
/// restarted, no kubeconfig renewed, the addons' objects as they were (kube-proxy's stored
/// configuration prints unset fields as null: merged as they are they would remove those
/// fields, and every run would flip them), and the kubelet's files unchanged (its restart is
/// planned for its binary alone, which a render cannot see installed).
#[test]
fn upgrade_apply_run_again_changes_nothing() {
    let cp = cluster_at(FROM, FROM, &[]);
    cp.fake.mirror_static_pods(&manifests(&cp), "k8s-ctr", &[]);
    let first = upgrade(&cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=60s"]).ok();
    assert!(
        first.stdout.contains("restarting the kubelet: its configuration and its binary changed for v1.37.0"),
        "{}",
        first.stdout
    );
    let admin = fs::read(cp.sb.root().join("etc/kubernetes/admin.conf")).unwrap();
    let proxy = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kube-proxy").unwrap();
    let run = upgrade(&cp, &["apply"], TO, &["--set", "timeouts.upgradeManifests=60s"]).ok();
    // A render records the package install without running it, so it cannot tell the
    // kubelet's package is at the target: that step alone plans the install and a restart,
    // for the binary only (a real host runs `dpkg-query` and leaves it; the VM run shows it).
    let changed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.trim().starts_with("changed ") && !l.contains("apply/kubelet "))
        .collect();
    assert!(changed.is_empty(), "changed on the second run: {changed:?}\n{}", run.stdout);
    assert!(run.stdout.contains("restarting the kubelet: its binary changed for v1.37.0"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing to back up"), "{}", run.stdout);
    backup(&cp, "manifests");
    assert!(fs::read(cp.sb.root().join("etc/kubernetes/admin.conf")).unwrap() == admin, "admin.conf renewed");
    let again = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kube-proxy").unwrap();
    assert_eq!(again["data"], proxy["data"]);
}
