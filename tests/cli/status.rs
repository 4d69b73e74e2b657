//! `kscript status`: on rendered roots after each stage (the table, the verdict and what the
//! next stage must still produce, snapshotted), and bad input.

use std::fs;

use serde_json::{Value, json};

use kscript::host::cri::{ContainerFilter, ContainerSpec, ContainerState, Cri, PodSpec, RealCri};

use super::cluster::ControlPlane;
use super::cri::{Containerd, IMAGE};
use super::nodes::{CP, render_worker};
use super::systemd_host::Node;
use super::{Run, Sandbox};

/// `kscript status --root ROOT ARGS...` of the sandbox's node.
fn status(sb: &Sandbox, args: &[&str]) -> Run {
    let root = sb.root();
    let mut all = vec!["status", "--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    sb.kscript(&all)
}

/// A control plane rendered one stage at a time: after each, status names that stage as
/// reached and lists what the next one must still produce; exit 1 until the last stage.
#[test]
fn rendered_control_plane_after_each_stage() {
    let sb = Sandbox::new();
    let mut cp_args: Vec<&str> = CP.to_vec();
    cp_args.extend(["--set", "encryptionAlgorithm=ECDSA-P256"]);
    // Snapshot names written out: the check for unreferenced snapshots looks for them.
    let stages = [
        ("containerd", "status_rendered_control_plane_1"),
        ("kubelet", "status_rendered_control_plane_2"),
        ("init", "status_rendered_control_plane_3"),
        ("network", "status_rendered_control_plane_4"),
    ];
    for (n, (stage, snapshot)) in stages.into_iter().enumerate() {
        let mut args = vec!["--only", stage];
        args.extend_from_slice(&cp_args);
        sb.render("control-plane.rhai", &args).ok();
        let run = status(&sb, &[&["control-plane.rhai"][..], CP].concat());
        let expected = i32::from(n != 3);
        let run = run.code(expected);
        assert!(run.stdout.contains(&format!("stage {} of 4 complete", n + 1)), "{}", run.stdout);
        insta::assert_snapshot!(snapshot, sb.stable(&run.stdout));
    }
    // The same facts as JSON.
    let run = status(&sb, &[&["control-plane.rhai", "--output", "json"][..], CP].concat()).ok();
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["schema"], "kscript.status/v1");
    assert_eq!(doc["reached"], 4);
    assert_eq!(doc["total"], 4);
    assert_eq!(doc["done"], true);
    assert_eq!(doc["live"], false);
    assert_eq!(doc["node"]["name"], "k8s-ctr");
    assert_eq!(doc["node"]["state"], "not-measured");
    let names: Vec<&str> =
        doc["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "containerd",
            "kubelet",
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "CoreDNS",
            "kube-proxy",
            "Flannel"
        ]
    );
    let kubelet = &doc["components"][1];
    assert_eq!(kubelet["runs"], "systemd service");
    assert_eq!(kubelet["installed_from_stage"], 2);
    assert_eq!(kubelet["running_from_stage"], 3);
    assert_eq!(kubelet["state"], "not-measured");
    assert!(doc["stages"].as_array().unwrap().iter().all(|s| s["complete"] == true));

    // A file the script wrote, removed since: the stage is no longer complete, and the file
    // is named.
    fs::remove_file(sb.root().join("etc/kubernetes/pki/front-proxy-client.key")).unwrap();
    let run = status(&sb, &[&["control-plane.rhai", "--output", "json"][..], CP].concat()).code(1);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["reached"], 2);
    let missing = &doc["stages"][2]["missing"];
    assert_eq!(missing.as_array().unwrap().len(), 1, "{missing}");
    assert_eq!(missing[0]["kind"], "file");
    assert_eq!(missing[0]["path"], "/etc/kubernetes/pki/front-proxy-client.key");
}

/// A worker rendered stage by stage; without a SCRIPT, status finds worker.rhai from the
/// journal. The bootstrap kubeconfig, written then removed once the kubelet has its own, is
/// not missing; kubelet.conf and the kubelet's certificates, made by the kubelet, do not count
/// against a render.
#[test]
fn rendered_worker_after_each_stage() {
    let cp = Sandbox::new();
    cp.render(
        "control-plane.rhai",
        &[&["--only", "init/certs", "--only", "init/kubeconfig"][..], CP].concat(),
    )
    .ok();
    let sb = Sandbox::new();
    let stages = [
        ("containerd", "status_rendered_worker_1"),
        ("kubelet", "status_rendered_worker_2"),
        ("join", "status_rendered_worker_3"),
        ("network", "status_rendered_worker_4"),
    ];
    for (n, (stage, snapshot)) in stages.into_iter().enumerate() {
        render_worker(&sb, &cp, &["--only", stage]).ok();
        let run = status(&sb, &["worker.rhai", "--set", "nodeRegistration.name=worker-1"]);
        let run = run.code(i32::from(n != 3));
        assert!(run.stdout.contains(&format!("stage {} of 4 complete", n + 1)), "{}", run.stdout);
        insta::assert_snapshot!(snapshot, sb.stable(&run.stdout));
    }
    // Detected from the journal.
    let run = status(&sb, &["--set", "nodeRegistration.name=worker-1"]).ok();
    assert!(run.stderr.contains("worker.rhai (the journal shows its stage `join`)"), "{}", run.stderr);
    assert!(run.stdout.starts_with("worker.rhai: worker worker-1"), "{}", run.stdout);
    // A node whose files show an API server Pod has a joined control plane's table: the
    // static Pods, and its stage 3 files (no super-admin.conf, kubelet.conf the kubelet's).
    fs::write(sb.root().join("etc/kubernetes/manifests/kube-apiserver.yaml"), "kind: Pod\n").unwrap();
    let run = status(&sb, &["--set", "nodeRegistration.name=worker-1"]).code(1);
    assert!(run.stdout.starts_with("worker.rhai: control plane (joined) worker-1"), "{}", run.stdout);
    assert!(row(&run.stdout, "kube-apiserver").contains("n/a (rendered) manifest"), "{}", run.stdout);
    assert!(run.stdout.contains("stage 2 of 4 complete"), "{}", run.stdout);
    assert!(run.stdout.contains("\n  /etc/kubernetes/admin.conf "), "{}", run.stdout);
    assert!(
        !run.stdout.contains("super-admin.conf") && !run.stdout.contains("  /etc/kubernetes/kubelet.conf "),
        "{}",
        run.stdout
    );
}

/// Bad input: each a one-line error and exit 2.
#[test]
fn bad_input_is_a_usage_error() {
    let sb = Sandbox::new();
    // Not a folder.
    let run = sb.kscript(&["status", "--root", "nowhere"]).code(2);
    assert!(run.stderr.contains("--root nowhere: no such folder"), "{}", run.stderr);
    // A journal reached through a link that leads out of the folder is not read: the outside
    // journal's stage `join` would make it a worker.
    fs::create_dir_all(sb.path().join("outside")).unwrap();
    fs::write(
        sb.path().join("outside/journal.jsonl"),
        r#"{"stage":"join","stage_index":3,"step":"x","action":"file","target":"/etc/x","outcome":"changed"}"#,
    )
    .unwrap();
    fs::create_dir_all(sb.path().join("linked/var/lib")).unwrap();
    std::os::unix::fs::symlink("../../../outside", sb.path().join("linked/var/lib/kscript")).unwrap();
    let run = sb.kscript(&["status", "--root", "linked"]);
    assert!(!run.stderr.contains("worker.rhai"), "the outside journal was read: {}", run.stderr);
    // A timeout that is not a number of seconds.
    for t in ["0", "soon"] {
        let run = sb.kscript(&["status", "--timeout", t]).code(2);
        assert!(run.stderr.contains("is not a number of seconds"), "{}", run.stderr);
    }
    // A folder that is not a node.
    fs::create_dir_all(sb.path().join("empty/etc")).unwrap();
    let run = sb.kscript(&["status", "--root", "empty", "control-plane.rhai"]).code(2);
    assert!(run.message().contains("is not a node: it has no journal"), "{}", run.stderr);
    // An unknown script.
    sb.render("control-plane.rhai", &["--only", "containerd"]).ok();
    let run = status(&sb, &["nope.rhai"]).code(2);
    assert!(run.message().contains("no script at `nope.rhai`"), "{}", run.stderr);
    // A script without a status table.
    sb.write("plain.rhai", r#"stage("s", "x", [ step("a", "a", || { file("/etc/a", "a\n"); }) ]);"#);
    let run = status(&sb, &["plain.rhai"]).code(2);
    assert!(run.message().contains("plain.rhai declares no status table"), "{}", run.stderr);
    // A bad row is named.
    sb.write(
        "bad.rhai",
        r#"import "status" as status;
let s = status::control_plane(cfg);
s.components.push(#{ name: "ingress", runs: "Helm chart", installed: 4, running: 4 });
node_status(s);
stage("s", "x", [ step("a", "a", || { }) ]);"#,
    );
    let run = status(&sb, &["bad.rhai"]).code(2);
    assert!(
        run.message().contains("components[9] (ingress): `runs` is `Helm chart`; it must be one of"),
        "{}",
        run.stderr
    );
    // A stage past the script's.
    sb.write(
        "late.rhai",
        r#"import "status" as status;
node_status(status::control_plane(cfg));
stage("s", "x", [ step("a", "a", || { }) ]);"#,
    );
    let run = status(&sb, &["late.rhai"]).code(2);
    assert!(run.message().contains("names stage 2, but the script declares 1 stage(s)"), "{}", run.stderr);
    for run in [sb.kscript(&["status", "--root", "nowhere"]), status(&sb, &["nope.rhai"])] {
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// A fork adds a component with a row: its status shows it, no rebuild.
#[test]
fn a_forked_table_shows_its_own_component() {
    let sb = Sandbox::new();
    sb.write(
        "fork.rhai",
        r#"import "status" as status;
node_status(#{ role: "demo", kubeconfig: "/etc/kubernetes/admin.conf", node: "demo-1",
    cri_socket: "unix:///run/containerd/containerd.sock",
    components: [status::daemonset("Cilium", "kube-system", "cilium", 1, 1)],
    files: [status::file_row(1, "/etc/cilium.conf", "Cilium's configuration", ())] });
stage("containerd", "x", [ step("a", "a", || { file("/etc/other", "x\n"); }) ]);"#,
    );
    sb.render("fork.rhai", &[]).ok();
    let run = status(&sb, &["fork.rhai"]).code(1);
    assert!(
        run.stdout.contains("Cilium       DaemonSet  n/a (rendered)  not applied by this node"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("stage 0 of 1 complete"), "{}", run.stdout);
    assert!(run.stdout.contains("/etc/cilium.conf"), "{}", run.stdout);
}

/// A table row with its runs of spaces collapsed: `CoreDNS Deployment not ready 0/2 ready`.
pub(super) fn row(stdout: &str, first: &str) -> String {
    stdout.lines().find(|l| l.starts_with(&format!("{first} "))).map_or_else(
        || panic!("no row {first} in\n{stdout}"),
        |l| l.split_whitespace().collect::<Vec<_>>().join(" "),
    )
}

/// The API rows against the fake API server (the test hook `KSCRIPT_TEST_CLUSTER_API=real`
/// makes a rendered root's status ask it, with the root's admin.conf): ready counts, an
/// object that is not there, the Node not Ready with its reason; then with a kubeconfig that
/// may not read them (403), with credentials refused (401), with nothing listening and with no
/// kubeconfig, each named in its rows while the rest of the table is printed.
#[test]
fn api_rows_against_the_fake_api_server() {
    let cp = ControlPlane::up();
    cp.fake.put(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "kubeadm:cluster-admins"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}]}),
    );
    cp.fake.put(
        "/apis/apps/v1/namespaces/kube-system/deployments/coredns",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system"},
               "spec": {"replicas": 2}, "status": {"replicas": 2, "unavailableReplicas": 2}}),
    );
    cp.fake.put(
        "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
               "status": {"desiredNumberScheduled": 1, "numberReady": 1}}),
    );
    let cni = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";
    cp.fake.put(
        "/api/v1/nodes/k8s-ctr",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-ctr"},
               "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": cni}]}}),
    );
    let ControlPlane { sb, fake, args } = cp;
    let status_live = |extra: &[&str]| {
        let root = sb.root();
        let mut all: Vec<&str> = vec!["status", "control-plane.rhai", "--root", root.to_str().unwrap()];
        all.extend(args.iter().map(String::as_str));
        all.extend_from_slice(extra);
        sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &all)
    };
    let run = status_live(&[]);
    assert_eq!(row(&run.stdout, "CoreDNS"), "CoreDNS Deployment not ready 0/2 ready", "{}", run.stdout);
    assert_eq!(row(&run.stdout, "kube-proxy"), "kube-proxy DaemonSet ready 1/1 ready");
    assert_eq!(
        row(&run.stdout, "Flannel"),
        "Flannel DaemonSet not installed no DaemonSet kube-flannel/kube-flannel-ds"
    );
    assert_eq!(row(&run.stdout, "node"), format!("node k8s-ctr Node NotReady KubeletNotReady: {cni}"));
    assert_eq!(
        row(&run.stdout, "containerd"),
        "containerd systemd service n/a (rendered) unit file /usr/lib/systemd/system/containerd.service"
    );
    // One list per kind across namespaces, and the Node.
    let asked: Vec<String> = fake.seen().iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    for want in ["GET /apis/apps/v1/deployments", "GET /apis/apps/v1/daemonsets", "GET /api/v1/nodes/k8s-ctr"]
    {
        assert_eq!(asked.iter().filter(|a| *a == want).count(), 1, "{asked:?}");
    }
    let doc: Value = serde_json::from_str(&status_live(&["--output", "json"]).stdout).unwrap();
    assert_eq!(doc["node"]["state"], "not-ready");
    assert_eq!(doc["node"]["reason"], "KubeletNotReady");
    assert_eq!(doc["components"][6]["ready"], 0);
    assert_eq!(doc["components"][6]["desired"], 2);

    // The kubelet's kubeconfig (no admin.conf: a worker's view): it may not read Deployments
    // and DaemonSets (403); those rows say so, and do not count against the stage.
    let admin = sb.root().join("etc/kubernetes/admin.conf");
    let kept = sb.path().join("admin.conf");
    fs::rename(&admin, &kept).unwrap();
    let run = status_live(&[]);
    let r = row(&run.stdout, "CoreDNS");
    assert!(
        r.starts_with("CoreDNS Deployment not readable the kubeconfig may not read it: ")
            && r.contains("forbidden"),
        "{r}"
    );
    assert!(row(&run.stdout, "node").contains("forbidden"), "{}", run.stdout);
    // Credentials the server does not accept (401): named in the rows.
    let mut kubeconfig: Value = serde_saphyr::from_str(&fs::read_to_string(&kept).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] = json!({"token": "zzzzzz.0000000000000000"});
    fs::write(&admin, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    let run = status_live(&[]);
    let r = row(&run.stdout, "kube-proxy");
    assert!(
        r.starts_with("kube-proxy DaemonSet unknown ") && r.contains("does not accept the credentials of"),
        "{r}"
    );
    assert!(row(&run.stdout, "etcd").contains("n/a (rendered) manifest"), "{}", run.stdout);
    fs::rename(&kept, &admin).unwrap();

    // Nothing listening: named in each API row; the rest is printed.
    drop(fake);
    let run = status_live(&[]);
    for name in ["CoreDNS", "kube-proxy", "Flannel"] {
        let r = row(&run.stdout, name);
        assert!(r.contains("unknown API server not reachable: connection refused"), "{r}");
    }
    let r = row(&run.stdout, "node");
    assert!(r.contains("Node unknown API server not reachable: connection refused"), "{r}");
    assert!(row(&run.stdout, "etcd").contains("n/a (rendered) manifest"), "{}", run.stdout);
    assert!(run.stdout.contains("stage 4 of 4 complete"), "{}", run.stdout);

    // No kubeconfig at all.
    fs::remove_file(sb.root().join("etc/kubernetes/admin.conf")).unwrap();
    fs::remove_file(sb.root().join("etc/kubernetes/kubelet.conf")).unwrap();
    let run = status_live(&[]);
    let r = row(&run.stdout, "CoreDNS");
    assert!(
        r.contains("unknown API server not reachable: no kubeconfig /etc/kubernetes/kubelet.conf yet"),
        "{r}"
    );
    assert!(run.stdout.contains("stage 2 of 4 complete"), "{}", run.stdout);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// The kubelet's labels on a static Pod's sandbox (`pod`) and container (`container`).
fn kubelet_labels(pod: &str, container: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut l = std::collections::BTreeMap::new();
    l.insert("io.kubernetes.pod.namespace".to_string(), "kube-system".to_string());
    l.insert("io.kubernetes.pod.name".to_string(), pod.to_string());
    if let Some(c) = container {
        l.insert("io.kubernetes.container.name".to_string(), c.to_string());
    }
    l
}

/// Lays out, in a private containerd, what the kubelet would have made of a static Pod:
/// its sandbox and, with `command`, its container (started, with the kubelet's restart count);
/// waits until the container is `want`. Returns the container's id.
fn static_pod_in_runtime(
    containerd: &Containerd,
    logs: &std::path::Path,
    component: &str,
    command: Option<(&[&str], u32, ContainerState)>,
) -> Option<String> {
    let cri = RealCri::new(&containerd.socket);
    let pod_name = format!("{component}-k8s-ctr");
    let pod = PodSpec {
        name: pod_name.clone(),
        namespace: "kube-system".into(),
        uid: format!("uid-{component}"),
        host_network: true,
        cgroup_parent: containerd.cgroup_parent.clone(),
        log_directory: logs.display().to_string(),
        labels: kubelet_labels(&pod_name, None),
        ..PodSpec::default()
    };
    let pod_id = cri.run_pod(&pod).unwrap().id.unwrap();
    let (command, restarts, want) = command?;
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("io.kubernetes.container.restartCount".to_string(), restarts.to_string());
    let spec = ContainerSpec {
        name: component.into(),
        attempt: restarts,
        image: IMAGE.into(),
        command: command.iter().map(ToString::to_string).collect(),
        log_path: format!("{component}/{restarts}.log"),
        labels: kubelet_labels(&pod_name, Some(component)),
        annotations,
        ..ContainerSpec::default()
    };
    let id = cri.create_container(&pod_id, &pod, &spec).unwrap().id.unwrap();
    cri.start_container(&id).unwrap();
    let start = std::time::Instant::now();
    let filter = ContainerFilter { id: Some(id.clone()), ..ContainerFilter::default() };
    while cri.containers(&filter).unwrap().iter().any(|c| c.state != want) {
        assert!(
            start.elapsed() < std::time::Duration::from_mins(1),
            "the container {id} never became {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(id)
}

/// The static Pod rows from a real containerd (the private one of `cri.rs`, at the rendered
/// root's socket; the test hook `KSCRIPT_TEST_CRI=real` makes the render's status ask it),
/// with what the kubelet would have made laid out by hand under its labels: a container
/// running after two restarts, one that exited with its last log line, a sandbox with no
/// container, and none at all for a Pod whose image (under a `.invalid` registry) the runtime
/// lacks. Then with containerd gone: named in those rows, the rest printed.
#[test]
fn static_pod_rows_from_a_real_containerd() {
    let sb = Sandbox::new();
    let args: Vec<&str> = [CP, &["--set", "encryptionAlgorithm=ECDSA-P256"]].concat();
    sb.render("control-plane.rhai", &args).ok();
    let manifests = sb.root().join("etc/kubernetes/manifests");
    let etcd_yaml = fs::read_to_string(manifests.join("etcd.yaml")).unwrap();
    let etcd_image = etcd_yaml.lines().find_map(|l| l.trim().strip_prefix("image: ")).unwrap().to_string();
    let absent = format!("registry.kscript.invalid/{}", etcd_image.rsplit('/').next().unwrap());
    fs::write(manifests.join("etcd.yaml"), etcd_yaml.replace(&etcd_image, &absent)).unwrap();
    let root = fs::canonicalize(sb.root()).unwrap();
    let mut containerd = Containerd::start_at(&sb, &root.join("var/run/containerd/containerd.sock"));
    for component in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        let text = fs::read_to_string(manifests.join(format!("{component}.yaml"))).unwrap();
        let image = text.lines().find_map(|l| l.trim().strip_prefix("image: ")).unwrap();
        containerd.tag(IMAGE, image);
    }
    let logs = sb.path().join("pod-logs");
    static_pod_in_runtime(
        &containerd,
        &logs,
        "kube-apiserver",
        Some((&["/pause"], 2, ContainerState::Running)),
    );
    let failing: &[&str] = &["/pause", "E1207", "cannot", "load", "/etc/kubernetes/controller-manager.conf"];
    static_pod_in_runtime(
        &containerd,
        &logs,
        "kube-controller-manager",
        Some((failing, 3, ContainerState::Exited)),
    );
    static_pod_in_runtime(&containerd, &logs, "kube-scheduler", None);

    let status_cri = || {
        let mut all = vec!["status", "control-plane.rhai", "--root", root.to_str().unwrap()];
        all.extend_from_slice(CP);
        sb.kscript_env(&[("KSCRIPT_TEST_CRI", "real")], &all)
    };
    let run = status_cri();
    assert_eq!(row(&run.stdout, "etcd"), format!("etcd static Pod not started (image {absent} not present)"));
    assert_eq!(row(&run.stdout, "kube-apiserver"), "kube-apiserver static Pod running restarts: 2");
    assert_eq!(
        row(&run.stdout, "kube-controller-manager"),
        "kube-controller-manager static Pod exited (exit code 1 (Error)) restarts: 3; E1207 cannot load /etc/kubernetes/controller-manager.conf"
    );
    assert_eq!(
        row(&run.stdout, "kube-scheduler"),
        "kube-scheduler static Pod not started (Pod sandbox ready, no kube-scheduler container)"
    );
    assert!(row(&run.stdout, "kubelet").contains("n/a (rendered)"), "{}", run.stdout);

    // containerd gone: each static Pod row names the runtime; the rest is printed.
    let _ = containerd.shutdown();
    let run = status_cri();
    for name in ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
        let r = row(&run.stdout, name);
        assert!(r.contains(&format!("{name} static Pod unknown CRI not reachable: ")), "{r}");
    }
    assert!(row(&run.stdout, "CoreDNS").contains("applied in stage 3"), "{}", run.stdout);
    assert!(run.stdout.contains("stage 4 of 4 complete"), "{}", run.stdout);
}

/// Status on the real systemd host of `systemd.rs` after its stage 1 (containerd from
/// Debian's package): containerd running, the kubelet not installed, no static Pod, the API
/// server not asked for want of a kubeconfig (named in its rows); stage 1 complete, and
/// stage 2's files and the kubelet to come.
pub(super) fn on_a_real_systemd_after_stage_1(node: &Node) {
    let run = node.kscript(&["status", "control-plane.rhai"]).code(1);
    assert!(run.stdout.contains("control-plane.rhai: control plane "), "{}", run.stdout);
    assert!(run.stdout.contains(", on this host\n"), "{}", run.stdout);
    assert_eq!(
        row(&run.stdout, "containerd"),
        "containerd systemd service running enabled",
        "{}",
        run.stdout
    );
    assert_eq!(row(&run.stdout, "kubelet"), "kubelet systemd service not installed no unit kubelet.service");
    assert_eq!(
        row(&run.stdout, "etcd"),
        "etcd static Pod not installed no manifest /etc/kubernetes/manifests/etcd.yaml"
    );
    let r = row(&run.stdout, "CoreDNS");
    assert!(
        r.contains("unknown API server not reachable: no kubeconfig /etc/kubernetes/kubelet.conf yet"),
        "{r}"
    );
    assert!(
        run.stdout.contains("stage 1 of 4 complete (containerd)\nstage 2 (kubelet) must still produce:"),
        "{}",
        run.stdout
    );
    for want in [
        "\n  /usr/lib/systemd/system/kubelet.service ",
        "\n  /opt/cni/bin/bridge ",
        "\n  kubelet: not installed (no unit kubelet.service); must be installed\n",
    ] {
        assert!(run.stdout.contains(want), "no `{want}` in\n{}", run.stdout);
    }
}

/// Status on the real systemd host after its stage 2 (the kubelet from a bundle: a stand-in
/// named as such in `systemd.rs`, which exits 1 as the kubelet does without the files init
/// writes; systemd restarts it): the kubelet crash-looping because config.yaml is missing,
/// from systemd's state and restart counter; stage 2 complete, as the spec says of a node
/// after stage 2; init's files and a running kubelet still to come.
pub(super) fn on_a_real_systemd_after_stage_2(node: &Node) {
    let run = node.kscript(&["status", "control-plane.rhai"]).code(1);
    let kubelet = row(&run.stdout, "kubelet");
    assert!(
        kubelet.starts_with(
            "kubelet systemd service crash-looping (config.yaml missing) exit status 1; enabled; restarts: "
        ),
        "{}",
        run.stdout
    );
    assert_eq!(row(&run.stdout, "containerd"), "containerd systemd service running enabled");
    assert!(
        run.stdout
            .contains("stage 2 of 4 complete (containerd, kubelet)\nstage 3 (init) must still produce:"),
        "{}",
        run.stdout
    );
    for want in [
        "\n  /etc/kubernetes/pki/ca.crt ",
        "\n  /var/lib/kubelet/config.yaml ",
        "\n  /var/lib/kubelet/pki/kubelet.crt ",
        "\n  kubelet: crash-looping (config.yaml missing) (exit status 1; enabled; restarts: ",
        "\n  etcd: not installed (no manifest /etc/kubernetes/manifests/etcd.yaml); must be running\n",
    ] {
        assert!(run.stdout.contains(want), "no `{want}` in\n{}", run.stdout);
    }
    let run = node.kscript(&["status", "control-plane.rhai", "--output", "json"]).code(1);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["live"], true);
    assert_eq!(doc["reached"], 2);
    let kubelet = &doc["components"][1];
    assert_eq!(kubelet["state"], "crash-looping");
    assert_eq!(kubelet["reason"], "config.yaml missing");
    assert!(kubelet["restarts"].as_u64().unwrap() >= 1, "{kubelet}");
    // Without a SCRIPT: the journal shows only the stages both flows share.
    let run = node.kscript(&["status"]).code(1);
    assert!(run.stderr.contains("nothing on the node tells: control-plane.rhai"), "{}", run.stderr);
}

/// Figures, not a check: how long `kscript status` takes, as a process, on a rendered control
/// plane, and with its API rows read from the fake API server (the live path: three requests
/// in parallel, each with its own TLS client). The fake lives in this test binary, so this is
/// a test, not a bench. Run: `cargo test --release --test cli status_figures -- --ignored
/// --nocapture` (the targets: under 100 ms rendered, under 300 ms with the API).
#[test]
#[ignore = "prints figures"]
fn status_figures() {
    const RUNS: usize = 15;
    let cp = ControlPlane::up();
    cp.fake.put(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "kubeadm:cluster-admins"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "kubeadm:cluster-admins"}]}),
    );
    let root = cp.sb.root();
    let mut args: Vec<&str> = vec!["status", "control-plane.rhai", "--root", root.to_str().unwrap()];
    args.extend(cp.args.iter().map(String::as_str));
    let median = |env: &[(&str, &str)]| {
        let mut times: Vec<std::time::Duration> = (0..RUNS)
            .map(|_| {
                let start = std::time::Instant::now();
                let run = cp.sb.kscript_env(env, &args);
                assert!(run.code < 2, "{}", run.stderr);
                start.elapsed()
            })
            .collect();
        times.sort();
        times[RUNS / 2].as_secs_f64() * 1000.0
    };
    let rendered = median(&[]);
    let api = median(&[("KSCRIPT_TEST_CLUSTER_API", "real")]);
    assert!(cp.fake.seen().iter().any(|s| s.path == "/apis/apps/v1/deployments" && s.status == 200));
    eprintln!(
        "kscript status, median of {RUNS} ({} build):",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    eprintln!("  rendered root:                       {rendered:7.1} ms  (target < 100 ms)");
    eprintln!("  API rows from the fake API server:   {api:7.1} ms  (target < 300 ms)");
}

/// The table is declared when a script loads: reading it neither stops a run nor warns. A
/// distribution kscript does not know, or a node root without /etc/os-release, is for the
/// steps that install packages to report when they run.
#[test]
fn declaring_the_table_neither_stops_a_run_nor_warns() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.root().join("etc")).unwrap();
    fs::write(sb.root().join("etc/os-release"), "ID=plan9\nVERSION_ID=4\n").unwrap();
    sb.render("control-plane.rhai", &["--only", "init/certs/ca"]).ok();
    assert!(sb.root().join("etc/kubernetes/pki/ca.crt").exists());

    let fresh = Sandbox::new();
    let run = fresh.render("control-plane.rhai", &["--only", "init/certs/ca"]).ok();
    assert!(!run.stderr.contains("os-release"), "{}", run.stderr);
}
