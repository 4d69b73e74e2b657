//! The Ansible collection in ansible/ (kscript.kscript): its unit tests, its build, and the
//! playbook `kscript.kscript.cluster` rendering a control plane and two workers with this
//! kscript (each host is localhost with its own `kscript_root`): check mode shows diffs and
//! writes nothing, the real run builds every node, a second run changes nothing; and bad
//! inventories fail naming the host and the reason.
//!
//! And two real systemd nodes (the nspawn harness) driven over SSH through stages 1 and 2.
//!
//! Needs ansible-core from `PyPI` (`.ci/run` installs it). Without it the tests say they are
//! skipped, except under CI (env `CI` set), where they fail.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::systemd_host::Node;
use super::{Run, Sandbox};

fn collection() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible")
}

/// Whether ansible-core is installed; under CI its absence is a failure.
fn ansible_ready(test: &str) -> bool {
    let ok = Command::new("ansible-playbook").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ansible-playbook is not installed (python3 -m pip install ansible-core==2.19.14; .ci/run does)"
        );
        eprintln!(
            "{test}: skipped, ansible-playbook is not installed (python3 -m pip install ansible-core==2.19.14)"
        );
    }
    ok
}

/// A sandbox where the collection is installed (a link to ansible/) and Ansible keeps its
/// state.
fn ansible_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let ns = sb.path().join("collections/ansible_collections/kscript");
    fs::create_dir_all(&ns).unwrap();
    symlink(collection(), ns.join("kscript")).unwrap();
    sb
}

fn ansible(sb: &Sandbox, program: &str, args: &[&str]) -> Run {
    ansible_env(sb, program, args, &[])
}

fn ansible_env(sb: &Sandbox, program: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(sb.path())
        .env("ANSIBLE_COLLECTIONS_PATH", sb.path().join("collections"))
        .env("ANSIBLE_HOME", sb.path().join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .output()
        .unwrap();
    Run::from(&out)
}

fn python() -> String {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The PLAY RECAP: host -> (changed, unreachable, failed).
fn recap(run: &Run) -> BTreeMap<String, (u32, u32, u32)> {
    let part = run.stdout.split("PLAY RECAP").nth(1).unwrap_or_else(|| panic!("no recap:\n{}", run.stdout));
    let mut hosts = BTreeMap::new();
    for line in part.lines().filter(|l| l.contains(" ok=")) {
        let host = line.split_whitespace().next().unwrap().to_owned();
        let field = |name: &str| -> u32 {
            let v = line.split(&format!(" {name}=")).nth(1).unwrap().split_whitespace().next().unwrap();
            v.parse().unwrap()
        };
        hosts.insert(host, (field("changed"), field("unreachable"), field("failed")));
    }
    hosts
}

fn inventory(sb: &Sandbox, name: &str, groups: &str) -> String {
    // This build's kscript, unless the groups name one.
    let binary = if groups.contains("kscript_binary=") {
        String::new()
    } else {
        format!("kscript_binary={}\n", env!("CARGO_BIN_EXE_kscript"))
    };
    let text = format!(
        "{groups}\n[all:vars]\nansible_connection=local\nansible_python_interpreter={}\n{binary}",
        python()
    );
    sb.write(name, &text).to_str().unwrap().to_owned()
}

#[test]
fn ansible_module_unit_tests() {
    if !ansible_ready("ansible_module_unit_tests") {
        return;
    }
    let out = Command::new("python3")
        .arg(collection().join("tests/unit/plugins/modules/test_modules.py"))
        .output()
        .unwrap();
    let run = Run::from(&out);
    assert!(run.stderr.contains("\nOK"), "unit tests of the modules:\n{}", run.stderr);
    run.ok();
}

#[test]
fn ansible_collection_builds() {
    if !ansible_ready("ansible_collection_builds") {
        return;
    }
    let sb = ansible_sandbox();
    let dir = collection();
    ansible(&sb, "ansible-galaxy", &["collection", "build", dir.to_str().unwrap(), "--output-path", "dist"])
        .ok();
    let tarball = sb.path().join("dist/kscript-kscript-0.1.0.tar.gz");
    let list = Command::new("tar").arg("tzf").arg(&tarball).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    for f in [
        "plugins/modules/kscript_run.py",
        "plugins/modules/kscript_facts.py",
        "plugins/module_utils/kscript.py",
        "roles/cluster/tasks/join.yml",
        "playbooks/cluster.yml",
        "README.md",
    ] {
        assert!(list.lines().any(|l| l == f), "{f} missing from {}:\n{list}", tarball.display());
    }
}

#[test]
fn ansible_playbook_renders_a_cluster_check_then_apply_then_nothing_changes() {
    if !ansible_ready("ansible_playbook_renders_a_cluster") {
        return;
    }
    let sb = ansible_sandbox();
    let nodes = sb.path().join("nodes");
    let n = nodes.to_str().unwrap();
    let inv = inventory(
        &sb,
        "cluster.ini",
        &format!(
            "[control_plane]\ncp1 kscript_root={n}/cp1 kscript_advertise_address=127.0.20.1\n\
             [workers]\nw1 kscript_root={n}/w1\nw2 kscript_root={n}/w2\n"
        ),
    );
    let play = |extra: &[&str]| {
        let mut args = vec!["-i", inv.as_str(), "kscript.kscript.cluster"];
        args.extend_from_slice(extra);
        ansible(&sb, "ansible-playbook", &args).ok()
    };

    // Check mode: kscript's dry runs, with their diffs; nothing written.
    let check = play(&["--check", "--diff"]);
    for (host, (changed, _, _)) in recap(&check) {
        assert!(changed > 0, "{host} would change nothing in check mode:\n{}", check.stdout);
    }
    assert!(check.stdout.contains("+++ b/etc/sysctl.d/k8s.conf"), "no diff shown:\n{}", check.stdout);
    assert!(!nodes.exists(), "check mode wrote {}", nodes.display());

    // For real: every node built; the workers joined with the token the control plane stored.
    let apply = play(&[]);
    let hosts = recap(&apply);
    assert_eq!(hosts.keys().collect::<Vec<_>>(), ["cp1", "w1", "w2"], "{}", apply.stdout);
    for (host, (changed, _, _)) in &hosts {
        assert!(*changed > 0, "{host} changed nothing:\n{}", apply.stdout);
    }
    assert!(nodes.join("cp1/etc/kubernetes/admin.conf").is_file());
    let journal = fs::read_to_string(nodes.join("cp1/var/lib/kscript/journal.jsonl")).unwrap();
    for w in ["w1", "w2"] {
        let conf = fs::read_to_string(nodes.join(w).join("etc/kubernetes/bootstrap-kubelet.conf")).unwrap();
        let token = conf.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap().to_owned();
        assert!(!apply.stdout.contains(&token), "the join token is in Ansible's output:\n{}", apply.stdout);
        let id = token.split('.').next().unwrap();
        assert!(
            journal.contains(&format!("bootstrap-token-{id}")),
            "{w} joined with token {id}, which cp1's token.rhai did not store"
        );
    }

    // Again: nothing to change anywhere.
    let again = play(&["--diff"]);
    for (host, (changed, _, _)) in recap(&again) {
        assert_eq!(changed, 0, "{host} changed on the second run:\n{}", again.stdout);
    }
}

#[test]
fn ansible_playbook_renders_two_control_planes_serially_without_showing_credentials() {
    if !ansible_ready("ansible_playbook_renders_two_control_planes") {
        return;
    }
    let sb = ansible_sandbox();
    let nodes = sb.path().join("nodes");
    let n = nodes.to_str().unwrap();
    // kscript installed by the playbook from a tarball laid out as the portable release's
    // (dist/build.sh), holding this build's binary, into a folder per host.
    let release = sb.path().join("kscript-0.1.0-x86_64-unknown-linux-gnu");
    fs::create_dir_all(&release).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_kscript"), release.join("kscript")).unwrap();
    let tar = Command::new("tar")
        .args([
            "-czf",
            "kscript-0.1.0-x86_64-unknown-linux-gnu.tar.gz",
            "kscript-0.1.0-x86_64-unknown-linux-gnu",
        ])
        .current_dir(sb.path())
        .status()
        .unwrap();
    assert!(tar.success());
    let s = sb.path().to_str().unwrap();
    let inv = inventory(
        &sb,
        "ha.ini",
        &format!(
            "[control_plane]\ncp1 kscript_root={n}/cp1 kscript_advertise_address=127.0.20.1\n\
             cp2 kscript_root={n}/cp2 kscript_advertise_address=127.0.20.2\n\
             [workers]\nw1 kscript_root={n}/w1\n\
             [all:vars]\nkscript_control_plane_endpoint=k8s-api.test.invalid:6443\n\
             kscript_release_tarball={s}/kscript-0.1.0-x86_64-unknown-linux-gnu.tar.gz\n\
             kscript_release_dir={s}/release/{{{{ inventory_hostname }}}}\n\
             kscript_binary={s}/bin/{{{{ inventory_hostname }}}}/kscript\n"
        ),
    );
    // Check mode on nodes without kscript yet: each plans with the release unpacked in a temporary
    // folder, removed at the end; nothing is installed and no node is written.
    let tmp = sb.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let t = tmp.to_str().unwrap();
    let check = ansible_env(
        &sb,
        "ansible-playbook",
        &["-i", &inv, "kscript.kscript.cluster", "--check", "--diff", "-v"],
        &[("TMPDIR", t)],
    )
    .ok();
    let made = format!("\"kscript_check_tmp\": \"{t}/kscript-check.");
    assert_eq!(check.stdout.matches(&made).count(), 3, "no temporary release per host:\n{}", check.stdout);
    assert!(check.stdout.contains("+++ after"), "check mode showed no diff:\n{}", check.stdout);
    for host in ["cp1", "cp2", "w1"] {
        assert!(!sb.path().join("bin").join(host).exists(), "{host}: check mode installed kscript");
        assert!(!nodes.join(host).exists(), "{host}: check mode wrote the node");
    }
    let unpacked = |tmp: &Path| -> Vec<_> {
        let names = fs::read_dir(tmp).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.starts_with("kscript-check.")).collect()
    };
    assert!(unpacked(&tmp).is_empty(), "check mode left {:?} in the temporary folder", unpacked(&tmp));
    let run = ansible(&sb, "ansible-playbook", &["-i", &inv, "kscript.kscript.cluster", "-vv"]).ok();
    for host in ["cp1", "cp2", "w1"] {
        assert!(sb.path().join("bin").join(host).join("kscript").is_file(), "{host}: kscript not installed");
    }
    // cp2 joined as a control plane: its own etcd member in the existing cluster.
    let etcd = fs::read_to_string(nodes.join("cp2/etc/kubernetes/manifests/etcd.yaml")).unwrap();
    assert!(etcd.contains("--initial-cluster-state=existing"), "{etcd}");
    assert!(etcd.contains("https://127.0.20.2:2380"), "{etcd}");
    assert!(nodes.join("w1/etc/kubernetes/bootstrap-kubelet.conf").is_file());
    let key = fs::read_to_string(nodes.join("cp1/var/lib/kscript/certificate-key")).unwrap();
    let conf = fs::read_to_string(nodes.join("cp2/etc/kubernetes/bootstrap-kubelet.conf")).unwrap();
    let token = conf.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap();
    for secret in [key.trim(), token] {
        assert!(!run.stdout.contains(secret), "a credential is in Ansible's -vv output:\n{}", run.stdout);
    }
    let again = ansible(&sb, "ansible-playbook", &["-i", &inv, "kscript.kscript.cluster"]).ok();
    for (host, (changed, _, _)) in recap(&again) {
        assert_eq!(changed, 0, "{host} changed on the second run:\n{}", again.stdout);
    }
}

#[test]
fn ansible_bad_inventories_fail_naming_host_and_reason() {
    if !ansible_ready("ansible_bad_inventories") {
        return;
    }
    let sb = ansible_sandbox();
    let n = sb.path().join("nodes");
    let n = n.to_str().unwrap();

    let inv = inventory(&sb, "no-cp.ini", &format!("[workers]\nw1 kscript_root={n}/w1\n"));
    let run = ansible(&sb, "ansible-playbook", &["-i", &inv, "kscript.kscript.cluster"]).code(2);
    assert!(run.stdout.contains("w1: the inventory has no hosts in group 'control_plane'"), "{}", run.stdout);

    let inv = inventory(
        &sb,
        "cluster.ini",
        &format!("[control_plane]\ncp1 kscript_root={n}/cp1\n[workers]\nw1 kscript_root={n}/w1\n"),
    );
    let play = sb.write(
        "workers-first.yml",
        "- hosts: workers\n  gather_facts: false\n  tasks:\n    - ansible.builtin.include_role:\n        \
         name: kscript.kscript.cluster\n        tasks_from: worker_join\n",
    );
    let run = ansible(&sb, "ansible-playbook", &["-i", &inv, play.to_str().unwrap()]).code(2);
    assert!(
        run.stdout.contains("w1: cannot join as a worker: no control plane was initialised in this run"),
        "{}",
        run.stdout
    );
    assert!(!sb.path().join("nodes/w1").exists());

    // Port 1 on the loopback: nothing listens, the connection is refused at once.
    let inv = inventory(
        &sb,
        "unreachable.ini",
        &format!(
            "[control_plane]\ncp1 ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh\n\
             [workers]\nw1 kscript_root={n}/w1\n"
        ),
    );
    let run = ansible(&sb, "ansible-playbook", &["-i", &inv, "kscript.kscript.cluster"]).code(4);
    assert!(run.stdout.contains("fatal: [cp1]: UNREACHABLE!"), "{}", run.stdout);
    assert!(run.stdout.contains("port 1: Connection refused"), "{}", run.stdout);
    assert_eq!(recap(&run)["cp1"].1, 1, "{}", run.stdout);
    assert!(!sb.path().join("nodes/w1").exists(), "a worker was built with its control plane unreachable");
}

/// A free TCP port on 127.0.0.1 for a node's sshd (the nodes share the machine's network).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on 127.0.0.1:`port` (sshd started), within a
/// generous bound.
fn wait_listening(port: u16, node: &Node) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_mins(2),
            "sshd of {} does not listen on 127.0.0.1:{port}:\n{}",
            node.name,
            node.sh("systemctl status ssh --no-pager || true")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Two real systemd nodes (the nspawn harness: systemd as PID 1), each given Python and an
/// sshd on a port of its own, driven by Ansible over SSH with the playbook
/// `kscript.kscript.cluster` through stages 1 and 2 (`kscript_stages`) (containerd from Debian's package, the kubelet from a local bundle whose binaries
/// are stand-ins, tests/cli/systemd.rs `make_bundle`): check mode shows diffs and changes
/// nothing on the nodes, the real run brings containerd up and leaves the kubelet enabled,
/// the second run changes nothing. As root, with network for apt inside the containers.
#[test]
fn ansible_drives_two_systemd_nodes_over_ssh_through_stages_1_and_2() {
    if !ansible_ready("ansible_drives_two_systemd_nodes") {
        return;
    }
    let sb = ansible_sandbox();
    let key = sb.path().join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kscript-ansible-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap();

    let nodes = [Node::boot(), Node::boot()];
    let mut hosts = Vec::new();
    for node in &nodes {
        let port = free_port();
        node.write("authorized_keys", &public);
        // The port is chosen before the package starts sshd, so it never listens on 22.
        node.sh(&format!(
            "mkdir -p /etc/ssh/sshd_config.d /root/.ssh && chmod 700 /root/.ssh && \
             printf 'Port {port}\\nListenAddress 127.0.0.1\\n' > /etc/ssh/sshd_config.d/kscript-test.conf && \
             install -m 0600 /mnt/work/authorized_keys /root/.ssh/authorized_keys && \
             DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 openssh-server \
               > /dev/null && systemctl enable --now ssh"
        ));
        super::systemd::make_bundle(&node.work().join("bundle"));
        wait_listening(port, node);
        hosts.push(port);
    }
    let inv = sb.write(
        "nodes.ini",
        &format!(
            "[control_plane]\nnode1 ansible_port={}\n[workers]\nnode2 ansible_port={}\n\
             [all:vars]\nansible_host=127.0.0.1\nansible_user=root\nansible_ssh_private_key_file={}\n\
             ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no'\n\
             ansible_python_interpreter=/usr/bin/python3\n",
            hosts[0],
            hosts[1],
            key.display()
        ),
    );
    // The playbook through stages 1 and 2 of each node's script; what a container cannot do
    // (load kernel modules, write sysctls) skipped as in tests/cli/systemd.rs.
    let vars = sb.write(
        "stages-1-2.yml",
        "kscript_stages: [containerd, kubelet]\nkscript_skip: [containerd/modules, containerd/sysctl]\n\
         kscript_settings:\n  kscript.kubernetes.source: bundle\n  kscript.kubernetes.bundleDir: /mnt/work/bundle\n",
    );
    let vars = format!("@{}", vars.display());
    let play = "kscript.kscript.cluster";

    let inv = inv.to_str().unwrap();

    let check = ansible(&sb, "ansible-playbook", &["-i", inv, play, "-e", &vars, "--check", "--diff"]).ok();
    for (host, (changed, _, _)) in recap(&check) {
        assert_eq!(changed, 1, "{host} would change nothing in check mode:\n{}", check.stdout);
    }
    assert!(check.stdout.contains("+++ b/etc/containerd/config.toml"), "no diff shown:\n{}", check.stdout);
    for node in &nodes {
        assert!(!node.path("/etc/containerd/config.toml").exists(), "check mode wrote on {}", node.name);
        assert!(!node.path("/usr/bin/kubelet").exists(), "check mode installed the kubelet on {}", node.name);
    }

    let apply = ansible(&sb, "ansible-playbook", &["-i", inv, play, "-e", &vars]).ok();
    assert_eq!(recap(&apply).len(), 2, "{}", apply.stdout);
    for (host, (changed, _, _)) in recap(&apply) {
        assert_eq!(changed, 1, "{host} changed nothing:\n{}", apply.stdout);
    }
    for node in &nodes {
        assert_eq!(node.property("containerd.service", "ActiveState"), "active", "{}", node.name);
        assert_eq!(node.property("kubelet.service", "UnitFileState"), "enabled", "{}", node.name);
        let status = node.kscript(&["status", "--output", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        // Stage 2 complete; stage 1 lacks only the two files of the steps a container skips.
        assert_eq!(status["stages"][1]["complete"], true, "{}: {status}", node.name);
        let missing: Vec<_> =
            status["stages"][0]["missing"].as_array().unwrap().iter().map(|m| &m["path"]).collect();
        assert_eq!(
            missing,
            ["/etc/modules-load.d/k8s.conf", "/etc/sysctl.d/k8s.conf"],
            "{}: {status}",
            node.name
        );
        let kubelet =
            status["components"].as_array().unwrap().iter().find(|c| c["name"] == "kubelet").unwrap();
        assert_eq!(kubelet["state"], "crash-looping", "{}: {status}", node.name);
    }

    let again = ansible(&sb, "ansible-playbook", &["-i", inv, play, "-e", &vars, "--diff"]).ok();
    for (host, (changed, _, _)) in recap(&again) {
        assert_eq!(changed, 0, "{host} changed on the second run:\n{}", again.stdout);
    }
    print_overhead(&sb, inv, &nodes);
}

/// Ansible's overhead per host per kscript run over SSH, printed (`--nocapture` shows it),
/// asserted nothing: a dry run of stages 1-2 by kscript alone in each node, against the task
/// repeated in one check-mode playbook on both nodes (minus the playbook with one task:
/// Ansible's start-up).
fn print_overhead(sb: &Sandbox, inv: &str, nodes: &[Node]) {
    const TASKS: u32 = 5;
    let task = "    - kscript.kscript.kscript_run:\n        \
                script: \"{{ 'control-plane.rhai' if inventory_hostname in groups['control_plane'] else 'worker.rhai' }}\"\n        \
                only: [containerd, kubelet]\n        skip: [containerd/modules, containerd/sysctl]\n        \
                set: {kscript.kubernetes.source: bundle, kscript.kubernetes.bundleDir: /mnt/work/bundle}\n";
    let head = "- hosts: all\n  gather_facts: false\n  tasks:\n";
    let one = sb.write("one.yml", &format!("{head}{task}"));
    let many = sb.write("many.yml", &format!("{head}{}", task.repeat(TASKS as usize)));
    let timed = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let alone = nodes
        .iter()
        .map(|node| {
            timed(&|| {
                node.kscript(&[
                    "run",
                    "control-plane.rhai",
                    "--only",
                    "containerd",
                    "--only",
                    "kubelet",
                    "--skip",
                    "containerd/modules",
                    "--skip",
                    "containerd/sysctl",
                    "--set",
                    "kscript.kubernetes.source=bundle",
                    "--set",
                    "kscript.kubernetes.bundleDir=/mnt/work/bundle",
                    "--dry-run",
                    "--output",
                    "json",
                ])
                .ok();
            })
        })
        .sum::<f64>()
        / 2.0;
    // Ansible's default over SSH (a connection kept open; the module copied, then run: several
    // round trips a task), then with pipelining (the module sent on the command's stdin: one).
    for (how, pipelining) in [("default", "False"), ("pipelining", "True")] {
        let env = [("ANSIBLE_PIPELINING", pipelining)];
        let run = |play: &Path| {
            let args = ["-i", inv, play.to_str().unwrap(), "--check"];
            timed(&|| {
                ansible_env(sb, "ansible-playbook", &args, &env).ok();
            })
        };
        let (t1, tn) = (run(&one), run(&many));
        let per_task = (tn - t1) / f64::from(TASKS - 1);
        eprintln!(
            "ansible overhead, 2 nodes over SSH ({how}): kscript alone {:.0} ms a dry run of stages 1-2; a \
             kscript_run task on both nodes {:.0} ms wall, {:.0} ms over kscript's own (playbook start-up {:.0} ms)",
            alone * 1e3,
            per_task * 1e3,
            (per_task - alone) * 1e3,
            t1 * 1e3
        );
    }
}
