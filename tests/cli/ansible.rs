//! The Ansible collection in ansible/ (kscript.kscript): its unit tests, its build, and the
//! playbook `kscript.kscript.cluster` rendering a control plane and two workers with this
//! kscript (each host is localhost with its own `kscript_root`): check mode shows diffs and
//! writes nothing, the real run builds every node, a second run changes nothing; and bad
//! inventories fail naming the host and the reason.
//!
//! Needs ansible-core from `PyPI` (`.ci/run` installs it). Without it the tests say they are
//! skipped, except under CI (env `CI` set), where they fail.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let out = Command::new(program)
        .args(args)
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
