//! reset.rhai: a node rendered by control-plane.rhai or worker.rhai, then reset, holds what it
//! held before (and, by default, what stages 1 and 2 installed); nothing happens without
//! confirmation; a dry run lists the removals and changes nothing; a reset node builds again
//! as a fresh one. The etcd member removal runs against real etcd members, the Pod removal
//! against a private containerd.

use std::fs;
use std::path::Path;

use super::cri::Containerd;
use super::systemd::{CONTAINER_LIMITS, STAGE_1, STAGE_2, make_bundle};
use super::systemd_host::Node;
use super::{
    KillOnDrop, Run, Sandbox, etcdctl_as_healthcheck, fingerprint, start_etcd_member, tree_snapshot,
};

/// A CA of the user's, made before init: ca.crt and ca.key, rendered in a scratch folder.
fn user_ca() -> (Vec<u8>, Vec<u8>) {
    let scratch = Sandbox::new();
    scratch.render("control-plane.rhai", &["--only", "init/certs/ca"]).ok();
    let pki = scratch.root().join("etc/kubernetes/pki");
    (fs::read(pki.join("ca.crt")).unwrap(), fs::read(pki.join("ca.key")).unwrap())
}

/// What a node holds before kscript comes: a site file, an empty folder of the user's, and
/// (with `ca`) the user's CA in /etc/kubernetes/pki.
fn lay_out_before(root: &Path, ca: Option<&(Vec<u8>, Vec<u8>)>) {
    fs::create_dir_all(root.join("etc/motd.d")).unwrap();
    fs::write(root.join("etc/motd.d/site"), "rack 4\n").unwrap();
    fs::create_dir_all(root.join("srv/data")).unwrap();
    if let Some((crt, key)) = ca {
        let pki = root.join("etc/kubernetes/pki");
        fs::create_dir_all(&pki).unwrap();
        fs::write(pki.join("ca.crt"), crt).unwrap();
        fs::write(pki.join("ca.key"), key).unwrap();
    }
}

/// `kscript run reset.rhai --root ROOT ARGS...`
fn reset(sb: &Sandbox, args: &[&str]) -> Run {
    sb.render("reset.rhai", args)
}

/// The annotated file list `kscript tree` prints for a node root.
fn tree(sb: &Sandbox) -> String {
    sb.kscript(&["tree", sb.root().to_str().unwrap()]).ok().stdout
}

/// Without confirmation nothing changes and the refusal says what reset would do and how to
/// confirm; a dry run needs none, lists each removal and each file kept, and changes nothing.
#[test]
fn reset_refuses_without_confirmation_and_a_dry_run_changes_nothing() {
    let sb = Sandbox::new();
    let ca = user_ca();
    lay_out_before(&sb.root(), Some(&ca));
    sb.render("control-plane.rhai", &[]).ok();
    let before = fingerprint(&sb.root());
    let journal = fs::read(sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();

    let run = reset(&sb, &[]).code(1);
    let message = run.message();
    assert!(message.contains("not resetting this node without confirmation"), "{}", run.stderr);
    assert!(message.contains("remove this node's member from etcd, stop the kubelet"), "{}", run.stderr);
    assert!(message.contains("kscript run reset.rhai --force"), "{}", run.stderr);
    assert!(message.contains("--dry-run"), "{}", run.stderr);
    super::assert_same(&before, &fingerprint(&sb.root()), "a refused reset changed");
    // A step run alone asks for the confirmation too.
    let run = reset(&sb, &["--only", "cleanup-node/files"]).code(1);
    assert!(run.message().contains("not resetting this node without confirmation"), "{}", run.stderr);
    super::assert_same(&before, &fingerprint(&sb.root()), "a refused step changed");

    let run = reset(&sb, &["--dry-run"]).ok();
    for line in [
        "- /etc/kubernetes/admin.conf (removed)",
        "- /etc/kubernetes/manifests/etcd.yaml (removed)",
        "- /etc/kubernetes/pki/apiserver.key (removed)",
        "- /var/lib/kubelet/config.yaml (removed)",
        "- /var/lib/etcd (removed)",
        "kept /etc/kubernetes/pki/ca.crt: it was there before kscript",
        "kept /etc/kubernetes/pki/ca.key: it was there before kscript",
        "would remove etcd member",
        "reset does not clean iptables or IPVS rules",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("- /etc/kubernetes/pki/ca.crt"), "{}", run.stdout);
    super::assert_same(&before, &fingerprint(&sb.root()), "a dry run changed");
    assert_eq!(
        fs::read(sb.root().join("var/lib/kscript/journal.jsonl")).unwrap(),
        journal,
        "a dry run journals"
    );
}

/// control-plane.rhai rendered over a node with files of its own and the user's CA, then
/// reset: what init and the network wrote is gone, the CA is kept, and the node holds exactly
/// what a render of stages 1 and 2 alone holds. With reset.packages, exactly what was there
/// before. Rendered again, it is a fresh node's tree.
#[test]
fn reset_takes_a_rendered_control_plane_back_to_what_was_there() {
    let ca = user_ca();
    let sb = Sandbox::new();
    lay_out_before(&sb.root(), Some(&ca));
    let bare = tree_snapshot(&sb.root());
    sb.render("control-plane.rhai", &[]).ok();
    assert!(sb.root().join("etc/kubernetes/manifests/kube-apiserver.yaml").exists());
    assert_eq!(
        fs::read(sb.root().join("etc/kubernetes/pki/ca.key")).unwrap(),
        ca.1,
        "init keeps the user's CA"
    );

    let run = reset(&sb, &["--force"]).ok();
    assert!(run.stdout.contains("kept /etc/kubernetes/pki/ca.crt"), "{}", run.stdout);
    assert!(run.stdout.contains("skipped  packages/services  reset.packages is false"), "{}", run.stdout);
    // What stages 1 and 2 alone leave on the same node.
    let installed = Sandbox::new();
    lay_out_before(&installed.root(), Some(&ca));
    installed.render("control-plane.rhai", &["--only", "containerd", "--only", "kubelet"]).ok();
    assert_eq!(tree_snapshot(&sb.root()), tree_snapshot(&installed.root()));
    assert_eq!(fs::read(sb.root().join("etc/kubernetes/pki/ca.crt")).unwrap(), ca.0);
    // Where the node stands now, by its files and journal: the reset's own stages (numbered
    // from 1 too) are not taken for the control plane's.
    let root = sb.root();
    let status = sb.kscript(&["status", "--root", root.to_str().unwrap(), "control-plane.rhai"]).code(1);
    assert!(status.stdout.contains("stage 2 of 4 complete"), "{}", status.stdout);
    assert!(status.stdout.contains("/etc/kubernetes/manifests/kube-apiserver.yaml"), "{}", status.stdout);
    // A second reset finds nothing of kscript's left: it does not take the node for one kubeadm
    // built (whose list would take the CA kscript found and kept), and changes nothing.
    let again = reset(&sb, &["--force"]).ok();
    assert!(!again.stderr.contains("was it built by kubeadm"), "{}", again.stderr);
    assert!(!again.stdout.contains("was it built by kubeadm"), "{}", again.stdout);
    assert_eq!(tree_snapshot(&sb.root()), tree_snapshot(&installed.root()));
    assert_eq!(fs::read(sb.root().join("etc/kubernetes/pki/ca.key")).unwrap(), ca.1);
    // The journal stays, with the reset's removals in it: what reset removed is no longer
    // kscript's (a file another tool writes there later is that tool's), what stays still is.
    let entries = kscript::journal::read(&sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    assert!(entries.iter().any(|e| e.stage == "cleanup-node" && e.action == "remove"));
    sb.write(
        "wrote.rhai",
        r#"stage("s", "x", [step("ask", "x", || {
            for p in ["/etc/kubernetes/admin.conf", "/etc/kubernetes/manifests/etcd.yaml", "/etc/containerd/config.toml", "/etc/kubernetes/pki/ca.crt"] {
                info(`${p}: ${kscript_wrote(p)}`);
            }
        })]);"#,
    );
    let run = sb.render("wrote.rhai", &[]).ok();
    for line in [
        "/etc/kubernetes/admin.conf: false",
        "/etc/kubernetes/manifests/etcd.yaml: false",
        "/etc/containerd/config.toml: true",
        "/etc/kubernetes/pki/ca.crt: true",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }

    // Again with reset.packages: everything of kscript's run is gone.
    reset(&sb, &["--force", "--set", "reset.packages=true"]).ok();
    let entries = kscript::journal::read(&sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    let uninstall = entries
        .iter()
        .find(|e| e.stage == "packages" && e.action == "run" && e.target.starts_with("apt-get remove"));
    assert_eq!(
        uninstall.map(|e| e.target.as_str()),
        Some("apt-get remove -y -q containerd kubelet kubeadm kubectl kubernetes-cni"),
        "the packages the render recorded installing are the ones removed"
    );
    assert_eq!(tree_snapshot(&sb.root()), bare);
    let status = sb.kscript(&["status", "--root", root.to_str().unwrap(), "control-plane.rhai"]).code(1);
    assert!(status.stdout.contains("stage 0 of 4 complete"), "{}", status.stdout);
    let left: Vec<String> = fs::read_dir(sb.root().join("var/lib/kscript"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["journal.jsonl"], "kscript's own state but its journal is gone");

    // Built again: the same tree as a fresh node's, the CA still the user's.
    sb.render("control-plane.rhai", &[]).ok();
    let fresh = Sandbox::new();
    lay_out_before(&fresh.root(), Some(&ca));
    fresh.render("control-plane.rhai", &[]).ok();
    assert_eq!(tree(&sb), tree(&fresh));
    assert_eq!(fs::read(sb.root().join("etc/kubernetes/pki/ca.key")).unwrap(), ca.1);
}

/// What the actors kscript started make on a real node (the kubelet's certificates and
/// state, etcd's data, Flannel's CNI file) goes, as kubeadm removes it; what another tool put
/// next to kscript's files stays, and reset says so.
#[test]
fn reset_removes_what_the_actors_made_and_keeps_what_others_put_there() {
    let sb = Sandbox::new();
    sb.render("control-plane.rhai", &[]).ok();
    let root = sb.root();
    let put = |path: &str, text: &str| {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    // The actors'.
    put("/etc/cni/net.d/10-flannel.conflist", "{}\n");
    put("/var/lib/kubelet/pki/kubelet-client-2026-12-07-00-00-00.pem", "pem\n");
    std::os::unix::fs::symlink(
        "/var/lib/kubelet/pki/kubelet-client-2026-12-07-00-00-00.pem",
        root.join("var/lib/kubelet/pki/kubelet-client-current.pem"),
    )
    .unwrap();
    put("/var/lib/kubelet/pods/0a1b/etc-hosts", "127.0.0.1 localhost\n");
    put("/var/lib/kubelet/cpu_manager_state", "{}\n");
    put("/var/lib/etcd/member/snap/db", "data\n");
    // Another tool's.
    put("/etc/cni/net.d/50-other.conflist", "{}\n");
    put("/etc/kubernetes/audit-policy.yaml", "rules: []\n");

    let run = reset(&sb, &["--force"]).ok();
    assert!(
        run.stdout.contains("kept in /etc/cni/net.d (not written in kscript's run): 50-other.conflist"),
        "{}",
        run.stdout
    );
    let installed = Sandbox::new();
    installed.render("control-plane.rhai", &["--only", "containerd", "--only", "kubelet"]).ok();
    let other = installed.root();
    fs::write(other.join("etc/cni/net.d/50-other.conflist"), "{}\n").unwrap();
    fs::write(other.join("etc/kubernetes/audit-policy.yaml"), "rules: []\n").unwrap();
    assert_eq!(tree_snapshot(&root), tree_snapshot(&other));

    // Back to before stage 1: the folders kscript made stay where they hold another's file.
    let run = reset(&sb, &["--force", "--set", "reset.packages=true"]).ok();
    for kept in ["/etc/kubernetes/", "/etc/cni/net.d/"] {
        assert!(run.stdout.contains(&format!("kept {kept}: kscript made it")), "{kept}: {}", run.stdout);
    }
    let bare = Sandbox::new();
    fs::create_dir_all(bare.root().join("etc/cni/net.d")).unwrap();
    fs::create_dir_all(bare.root().join("etc/kubernetes")).unwrap();
    fs::write(bare.root().join("etc/cni/net.d/50-other.conflist"), "{}\n").unwrap();
    fs::write(bare.root().join("etc/kubernetes/audit-policy.yaml"), "rules: []\n").unwrap();
    assert_eq!(tree_snapshot(&root), tree_snapshot(&bare.root()));
}

/// A node with no journal of init or join (built by kubeadm): kubeadm's list, with a warning.
#[test]
fn without_a_journal_reset_removes_what_kubeadm_reset_removes() {
    let sb = Sandbox::new();
    sb.render("control-plane.rhai", &[]).ok();
    let root = sb.root();
    fs::remove_file(root.join("var/lib/kscript/journal.jsonl")).unwrap();
    fs::write(root.join("etc/kubernetes/pki/extra.crt"), "not kscript's\n").unwrap();
    fs::write(root.join("etc/kubernetes/audit-policy.yaml"), "rules: []\n").unwrap();
    let run = reset(&sb, &["--force"]).ok();
    assert!(run.message().contains("no journal of kscript's init or join on this node"), "{}", run.stderr);
    for dir in ["etc/kubernetes/manifests", "etc/kubernetes/pki", "var/lib/kubelet", "var/lib/etcd"] {
        let left: Vec<_> = fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir} is not empty: {left:?}");
    }
    for f in ["admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"] {
        assert!(!root.join("etc/kubernetes").join(f).exists(), "{f}");
    }
    // Outside kubeadm's list, nothing is touched.
    assert!(root.join("etc/kubernetes/audit-policy.yaml").exists());
    assert!(root.join("etc/containerd/config.toml").exists());
}

/// worker.rhai's join rendered (discovery from a control plane's files), then reset: back to
/// stages 1 and 2; with reset.packages back to what was there; joined again, a fresh worker.
#[test]
fn reset_takes_a_rendered_worker_back_to_what_was_there() {
    let cp = Sandbox::new();
    cp.render("control-plane.rhai", &["--only", "init/certs", "--only", "init/kubeconfig"]).ok();
    let discovery =
        format!("discovery.file.kubeConfigPath={}", cp.root().join("etc/kubernetes/admin.conf").display());
    let ca = fs::read_to_string(cp.root().join("etc/kubernetes/pki/ca.crt")).unwrap();
    let pin = format!("discovery.bootstrapToken.caCertHashes=[{}]", kscript::pki::ca_pin(&ca).unwrap());
    let join = |sb: &Sandbox, only: &[&str]| {
        let mut args = vec![
            "--set",
            "nodeRegistration.name=worker-1",
            "--set",
            "discovery.bootstrapToken.token=abcdef.0123456789abcdef",
            "--set",
            &discovery,
            "--set",
            &pin,
        ];
        args.extend_from_slice(only);
        sb.render("worker.rhai", &args).ok();
    };
    let sb = Sandbox::new();
    lay_out_before(&sb.root(), None);
    let bare = tree_snapshot(&sb.root());
    join(&sb, &[]);
    assert!(sb.root().join("etc/kubernetes/bootstrap-kubelet.conf").exists());

    let run = reset(&sb, &["--force"]).ok();
    assert!(
        run.stdout.contains("skipped  remove-etcd-member/member  no /etc/kubernetes/manifests/etcd.yaml"),
        "{}",
        run.stdout
    );
    let installed = Sandbox::new();
    lay_out_before(&installed.root(), None);
    join(&installed, &["--only", "containerd", "--only", "kubelet"]);
    assert_eq!(tree_snapshot(&sb.root()), tree_snapshot(&installed.root()));

    // Another tool puts a static Pod on the reset node; a second reset finds nothing of
    // kscript's left, and does not take the node for one kubeadm built (whose list empties the
    // manifests folder): the other tool's file stays.
    let site = sb.root().join("etc/kubernetes/manifests/site-proxy.yaml");
    fs::create_dir_all(site.parent().unwrap()).unwrap();
    fs::write(&site, "kind: Pod\n").unwrap();
    let again = reset(&sb, &["--force"]).ok();
    assert!(!again.stderr.contains("was it built by kubeadm"), "{}", again.stderr);
    assert!(site.exists(), "a second reset removed another tool's file:\n{}", again.stdout);
    fs::remove_file(&site).unwrap();

    reset(&sb, &["--force", "--set", "reset.packages=true"]).ok();
    assert_eq!(tree_snapshot(&sb.root()), bare);

    join(&sb, &[]);
    let fresh = Sandbox::new();
    lay_out_before(&fresh.root(), None);
    join(&fresh, &[]);
    assert_eq!(tree(&sb), tree(&fresh));
}

/// The package names reset uninstalls, read from each install command the journal records.
#[test]
fn the_packages_to_uninstall_are_read_from_the_install_commands() {
    let sb = Sandbox::new();
    sb.write(
        "names.rhai",
        r#"import "reset" as reset;
stage("s", "x", [step("names", "x", || {
    for c in [
        "apt-get install -y -q containerd",
        "apt-get install -y -q --allow-change-held-packages kubelet=1.37.0-1.1 kubeadm=1.37.0-1.1",
        "dnf install -y --disableexcludes=kubernetes kubelet-1.37.0 cri-tools-1.37.0",
        "dpkg -i /srv/bundle/containerd_1.6.20~ds1-1+b1_amd64.deb /srv/bundle/runc_1.1.5+ds1-1+deb12u1_amd64.deb",
        "rpm -Uvh /srv/bundle/containerd.io-1.7.27-3.1.el9.x86_64.rpm",
        "apt-get update -q",
    ] {
        let i = reset::installed_by(c);
        info(if i == () { `${c} => ()` } else { `${c} => ${i.tool} ${i.names}` });
    }
})]);"#,
    );
    let run = sb.render("names.rhai", &[]).ok();
    for line in [
        r#"apt-get install -y -q containerd => apt ["containerd"]"#,
        r#"kubeadm=1.37.0-1.1 => apt ["kubelet", "kubeadm"]"#,
        r#"cri-tools-1.37.0 => dnf ["kubelet", "cri-tools"]"#,
        r#"_amd64.deb => dpkg ["containerd", "runc"]"#,
        r#".x86_64.rpm => rpm ["containerd.io"]"#,
        "apt-get update -q => ()",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
}

/// The settings of control-plane node `n` of a 3-member etcd cluster on 127.0.12.x: its etcd
/// Pod lists all three from the start.
fn etcd_node_args(n: u8) -> Vec<String> {
    let cluster: Vec<String> = (1..=3).map(|m| format!("cp-{m}=https://127.0.12.{m}:2380")).collect();
    [
        format!("nodeRegistration.name=cp-{n}"),
        format!("localAPIEndpoint.advertiseAddress=127.0.12.{n}"),
        "encryptionAlgorithm=ECDSA-P256".into(),
        // An etcd Pod Debian's etcd 3.4 runs (1.37's passes --feature-gates, which 3.4 lacks).
        "kubernetesVersion=v1.33.0".into(),
        format!("etcd.local.extraArgs=[{{name: initial-cluster, value: \"{}\"}}]", cluster.join(",")),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// The member names as `etcdctl member list` through `endpoint` prints them, sorted.
fn member_names(root: &Path, endpoint: &str) -> Vec<String> {
    let out = etcdctl_as_healthcheck(root, endpoint, &["member", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(", ").nth(2).unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// reset's remove-etcd-member against real etcd members: a member of three leaves (two are
/// left); of two, it is refused with the quorum message unless reset.allowEtcdQuorumLoss; the
/// last member is not removed.
#[test]
fn reset_removes_this_nodes_etcd_member_and_guards_the_quorum() {
    let nodes: Vec<Sandbox> = (0..3).map(|_| Sandbox::new()).collect();
    for (i, node) in nodes.iter().enumerate() {
        let n = u8::try_from(i + 1).unwrap();
        if n > 1 {
            // One etcd CA for all: copied from the first node before the others make theirs.
            let from = nodes[0].root().join("etc/kubernetes/pki/etcd");
            let to = node.root().join("etc/kubernetes/pki/etcd");
            fs::create_dir_all(&to).unwrap();
            for f in ["ca.crt", "ca.key"] {
                fs::copy(from.join(f), to.join(f)).unwrap();
            }
        }
        let mut args = etcd_node_args(n);
        args.extend(["--only", "init/certs", "--only", "init/etcd"].map(String::from));
        node.render("control-plane.rhai", &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    }
    // The members start together: the first is healthy only once a second one runs.
    let mut members: Vec<Option<KillOnDrop>> = std::thread::scope(|s| {
        let started: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| s.spawn(move || start_etcd_member(node, &format!("127.0.12.{}", i + 1)).0))
            .collect();
        started.into_iter().map(|h| Some(h.join().unwrap())).collect()
    });
    let first = nodes[0].root();
    let ep1 = "https://127.0.12.1:2379";
    assert_eq!(member_names(&first, ep1), ["cp-1", "cp-2", "cp-3"]);

    let reset_member = |n: usize, extra: &[&str]| {
        let mut args = vec!["run", "reset.rhai", "--only", "remove-etcd-member", "--force"];
        let root = nodes[n - 1].root();
        args.extend(["--root", root.to_str().unwrap()]);
        args.extend_from_slice(extra);
        nodes[n - 1].kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args)
    };
    // Three members: cp-2 leaves.
    let run = reset_member(2, &[]).ok();
    assert!(run.stdout.contains("removing etcd member cp-2"), "{}", run.stdout);
    assert!(
        run.stdout.contains("etcd members now: cp-1, cp-3")
            || run.stdout.contains("etcd members now: cp-3, cp-1"),
        "{}",
        run.stdout
    );
    assert_eq!(member_names(&first, ep1), ["cp-1", "cp-3"]);
    members[1].take();
    // A rerun finds it gone.
    let run = reset_member(2, &[]).ok();
    assert!(run.stdout.contains("cp-2 (https://127.0.12.2:2380) is not a member"), "{}", run.stdout);

    // Two members: refused, nothing removed; allowed with the switch.
    let run = reset_member(3, &[]).code(1);
    let message = run.message();
    assert!(message.contains("refusing to remove cp-3 from a 2-member etcd cluster"), "{}", run.stderr);
    assert!(message.contains("reset.allowEtcdQuorumLoss=true"), "{}", run.stderr);
    assert_eq!(member_names(&first, ep1), ["cp-1", "cp-3"]);
    // cp-3 made the leader: removing a leader from two members is where quorum is lost when
    // it stops before cp-1 learns the removal is committed; reset hands the leadership over.
    let ep3 = "https://127.0.12.3:2379";
    let id3 = String::from_utf8_lossy(&etcdctl_as_healthcheck(&first, ep1, &["member", "list"]).stdout)
        .lines()
        .find(|l| l.contains(", cp-3, "))
        .map(|l| l.split(", ").next().unwrap().to_string())
        .unwrap();
    let moved = etcdctl_as_healthcheck(&first, &format!("{ep1},{ep3}"), &["move-leader", &id3]);
    let said = String::from_utf8_lossy(&moved.stderr);
    assert!(moved.status.success() || said.contains("already"), "{said}");
    let run = reset_member(3, &["--set", "reset.allowEtcdQuorumLoss=true"]).ok();
    assert!(run.stdout.contains("cp-3 leads etcd: handing the leadership to cp-1 first"), "{}", run.stdout);
    assert!(run.stdout.contains("removing etcd member cp-3"), "{}", run.stdout);
    assert_eq!(member_names(&first, ep1), ["cp-1"]);
    members[2].take();

    // The last member stays; its data goes with the data folder.
    let run = reset_member(1, &[]).ok();
    assert!(run.stdout.contains("cp-1 is etcd's last member: it is not removed"), "{}", run.stdout);
    assert_eq!(member_names(&first, ep1), ["cp-1"]);
    drop(members);
}

/// The Pods the script below runs: two host-network Pods with a container each.
const PODS: &str = r#"
const EP = "unix:///run/containerd/containerd.sock";
stage("pods", "Two Pods", [
    step("run", "Run them", || {
        for n in ["a", "b"] {
            let pod = #{ name: "reset-" + n, namespace: "kube-system", uid: "uid-" + n, host_network: true,
                         cgroup_parent: "@PARENT@", log_directory: "@LOGS@/" + n };
            let id = cri_run_pod(EP, pod);
            let c = cri_create_container(EP, id, pod, #{ name: "pause", image: "test.local/pause:1", log_path: "pause.log" });
            cri_start_container(EP, c);
        }
        info(`pods=${cri_pods(EP).len()} containers=${cri_containers(EP).len()}`);
    }),
    step("count", "Count them", || {
        info(`pods=${cri_pods(EP).len()} containers=${cri_containers(EP).len()}`);
    }),
]);
"#;

/// reset's remove-containers against a private containerd holding two running Pods: none is
/// left, and nothing is left behind for the clean-up to remove by force.
#[test]
fn reset_stops_and_removes_every_pod_the_runtime_holds() {
    let sb = Sandbox::new();
    let socket = fs::canonicalize(sb.path()).unwrap().join("root/run/containerd/containerd.sock");
    let mut containerd = Containerd::start_at(&sb, &socket);
    let script = PODS
        .replace("@PARENT@", &containerd.cgroup_parent)
        .replace("@LOGS@", &sb.path().join("pod-logs").display().to_string());
    sb.write("pods.rhai", &script);
    let real = [("KSCRIPT_TEST_CRI", "real")];
    let root = sb.root();
    let pods = |only: &str| {
        sb.kscript_env(&real, &["run", "pods.rhai", "--root", root.to_str().unwrap(), "--only", only])
            .ok()
            .stdout
    };
    assert!(pods("pods/run").contains("pods=2 containers=2"));
    // The kubelet's files name the runtime (1.33's kubeadm-flags.env holds
    // --container-runtime-endpoint): reset reads it there, not from its own defaults.
    sb.render(
        "control-plane.rhai",
        &[
            "--only",
            "init/kubelet-start",
            "--set",
            "kubernetesVersion=v1.33.0",
            "--set",
            "nodeRegistration.criSocket=unix:///run/containerd/containerd.sock",
        ],
    )
    .ok();
    let flags = fs::read_to_string(root.join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(flags.contains("--container-runtime-endpoint=unix:///run/containerd/containerd.sock"), "{flags}");
    let args = [
        "run",
        "reset.rhai",
        "--root",
        root.to_str().unwrap(),
        "--force",
        "--only",
        "cleanup-node/remove-containers",
    ];
    let run = sb.kscript_env(&real, &args).ok();
    assert!(run.stdout.contains("changed  cleanup-node/remove-containers"), "{}", run.stdout);
    assert!(pods("pods/count").contains("pods=0 containers=0"));
    let forced = containerd.shutdown();
    assert!(forced.is_empty(), "left behind after reset removed the Pods: {forced:?}");
}

/// On a real systemd host (the nspawn harness): stages 1 and 2 (containerd from Debian's
/// package, the kubelet from a bundle, crash-looping), init's kubelet files, a volume mounted
/// under /var/lib/kubelet and a file of the kubelet's own state; then a real reset: the
/// kubelet stopped, its files and state gone, the volume unmounted, containerd still running.
/// With reset.packages: containerd and the kubelet stopped, disabled and uninstalled, the
/// files of stages 1 and 2 and the bundle record gone.
#[test]
fn reset_on_a_real_systemd_host_after_stages_1_and_2() {
    let node = Node::boot();
    node.kscript(&[STAGE_1, CONTAINER_LIMITS].concat()).ok();
    make_bundle(&node.work().join("bundle"));
    node.kscript(STAGE_2).ok();
    node.kscript(&["run", "control-plane.rhai", "--only", "init/kubelet-start"]).ok();
    node.sh("echo '{}' > /var/lib/kubelet/cpu_manager_state");
    let volume = "/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~empty-dir/cache";
    node.sh(&format!("mkdir -p {volume} && mount -t tmpfs tmpfs {volume} && echo x > {volume}/f"));
    let mounted =
        |path: &str| node.sh("cat /proc/self/mountinfo").lines().any(|l| l.split(' ').nth(4) == Some(path));
    assert!(mounted(volume));
    assert_eq!(node.property("kubelet.service", "ActiveState"), "activating", "crash-looping");

    let run = node.kscript(&["run", "reset.rhai", "--force"]).ok();
    assert!(run.stdout.contains("skipped  remove-etcd-member/member"), "{}", run.stdout);
    assert!(run.stdout.contains("changed  cleanup-node/stop-kubelet"), "{}", run.stdout);
    assert!(run.stdout.contains("unmounted 1 mount points under /var/lib/kubelet"), "{}", run.stdout);
    assert_eq!(node.property("kubelet.service", "ActiveState"), "inactive");
    assert!(!mounted(volume), "the kubelet's volume is still mounted");
    for gone in ["config.yaml", "kubeadm-flags.env", "instance-config.yaml", "cpu_manager_state", "pods"] {
        assert!(!node.path(&format!("/var/lib/kubelet/{gone}")).exists(), "{gone} is still there");
    }
    assert!(node.path("/var/lib/kubelet").is_dir(), "stage 2's folder stays");
    assert!(node.path("/usr/bin/kubelet").is_file() && node.path("/etc/containerd/config.toml").is_file());
    assert_eq!(node.property("containerd.service", "ActiveState"), "active");
    assert_eq!(node.property("kubelet.service", "UnitFileState"), "enabled");

    let run = node.kscript(&["run", "reset.rhai", "--force", "--set", "reset.packages=true"]).ok();
    assert!(run.stdout.contains("changed  packages/uninstall"), "{}", run.stdout);
    assert_eq!(node.property("containerd.service", "ActiveState"), "inactive");
    assert_eq!(node.property("containerd.service", "LoadState"), "not-found");
    assert_eq!(node.property("kubelet.service", "LoadState"), "not-found");
    let status = node.exec(&["dpkg-query", "-W", "-f", "${Status}", "containerd"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("install ok installed"),
        "containerd is still installed"
    );
    for gone in [
        "/usr/bin/kubelet",
        "/usr/bin/kubeadm",
        "/usr/bin/kubectl",
        "/opt/cni/bin/bridge",
        "/etc/containerd/config.toml",
        "/usr/lib/systemd/system/kubelet.service",
        "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
        "/var/lib/kscript/bundle.json",
        "/etc/systemd/system/multi-user.target.wants/kubelet.service",
    ] {
        assert!(!node.path(gone).exists(), "{gone} is still there");
    }
    assert!(node.path("/var/lib/kscript/journal.jsonl").is_file());
}
