//! Stages 1 (containerd) and 2 (kubelet) of the stock flows: the rendered files against the
//! spec and the packages, the distribution switch, idempotence, and the rendered
//! config.toml and unit files checked by the real containerd and systemd-analyze.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Run, Sandbox, assert_same, fingerprint, tree_snapshot};

/// A fixed node, and only the first two stages.
const STAGES_1_2: &[&str] = &[
    "--set",
    "nodeRegistration.name=n1",
    "--set",
    "localAPIEndpoint.advertiseAddress=10.0.0.10",
    "--only",
    "containerd",
    "--only",
    "kubelet",
];

/// The fallback warning of `kscript.distro: auto` on a root without os-release.
const GUESSED: &str = "the node root has no /etc/os-release: assuming a Debian-family node";

fn render_12(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = STAGES_1_2.to_vec();
    args.extend_from_slice(extra);
    sb.render("control-plane.rhai", &args)
}

fn read(sb: &Sandbox, node_path: &str) -> String {
    let p = sb.root().join(node_path.trim_start_matches('/'));
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {node_path}: {e}"))
}

fn exists(sb: &Sandbox, node_path: &str) -> bool {
    sb.root().join(node_path.trim_start_matches('/')).symlink_metadata().is_ok()
}

/// kubelet.service as the kubelet package ships it (kubernetes/release krel templates).
const KUBELET_SERVICE: &str = "[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
";

/// 10-kubeadm.conf as the kubeadm rpm ships it; the deb reads /etc/default/kubelet instead.
const DROPIN_RPM: &str = r#"# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/sysconfig/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"#;

fn toml_at<'a>(doc: &'a toml::Table, path: &[&str]) -> &'a toml::Value {
    let mut table = doc;
    for (i, key) in path.iter().enumerate() {
        let v = table.get(*key).unwrap_or_else(|| panic!("config.toml has no {}", path[..=i].join(".")));
        if i + 1 == path.len() {
            return v;
        }
        table = v.as_table().unwrap_or_else(|| panic!("{} is not a table", path[..=i].join(".")));
    }
    unreachable!("empty path")
}

const CRI_V2: &str = "io.containerd.grpc.v1.cri";

#[test]
fn stages_1_and_2_render_the_spec_files_and_are_idempotent() {
    let sb = Sandbox::new();
    // A node whose fstab has swap: the swap step comments it out.
    sb.write("root/etc/fstab", "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# swap kept\n");
    let run = render_12(&sb, &["-v"]).ok();
    assert_eq!(run.stderr.matches(GUESSED).count(), 1, "the guess is said once:\n{}", run.stderr);

    // Stage 1: spec's files and prerequisites.
    assert_eq!(read(&sb, "/etc/modules-load.d/k8s.conf"), "overlay\nbr_netfilter\n");
    let sysctl = read(&sb, "/etc/sysctl.d/k8s.conf");
    for line in [
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
        "net.ipv4.ip_forward = 1",
    ] {
        assert!(sysctl.contains(line), "{sysctl}");
    }
    assert_eq!(
        read(&sb, "/etc/fstab"),
        "UUID=1 / ext4 defaults 0 1\n# /swapfile none swap sw 0 0\n# swap kept\n"
    );
    let config: toml::Table = toml::from_str(&read(&sb, "/etc/containerd/config.toml")).unwrap();
    assert_eq!(config["version"].as_integer(), Some(2));
    let runc = ["plugins", CRI_V2, "containerd", "runtimes", "runc"];
    assert_eq!(toml_at(&config, &[&runc[..], &["options", "SystemdCgroup"]].concat()).as_bool(), Some(true));
    assert_eq!(
        toml_at(&config, &[&runc[..], &["runtime_type"]].concat()).as_str(),
        Some("io.containerd.runc.v2")
    );
    // kubeadm 1.37's pause image, and containerd's own defaults kept.
    assert_eq!(
        toml_at(&config, &["plugins", CRI_V2, "sandbox_image"]).as_str(),
        Some("registry.k8s.io/pause:3.10.2")
    );
    assert_eq!(toml_at(&config, &["grpc", "address"]).as_str(), Some("/run/containerd/containerd.sock"));
    assert_eq!(toml_at(&config, &["plugins", CRI_V2, "cni", "bin_dir"]).as_str(), Some("/opt/cni/bin"));
    let mode = |p: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(sb.root().join(p.trim_start_matches('/'))).unwrap().permissions(),
        ) & 0o7777
    };
    assert_eq!(mode("/etc/containerd/config.toml"), 0o644);
    // containerd's unit, written because the recorded install left none, and enabled.
    assert!(
        read(&sb, "/usr/lib/systemd/system/containerd.service").contains("ExecStart=/usr/bin/containerd\n")
    );
    assert_eq!(
        fs::read_link(sb.root().join("etc/systemd/system/multi-user.target.wants/containerd.service"))
            .unwrap(),
        Path::new("/usr/lib/systemd/system/containerd.service")
    );

    // Stage 2: the package files, byte for byte, and the Debian user file.
    assert_eq!(read(&sb, "/usr/lib/systemd/system/kubelet.service"), KUBELET_SERVICE);
    assert_eq!(
        read(&sb, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"),
        DROPIN_RPM.replace("/etc/sysconfig/kubelet", "/etc/default/kubelet")
    );
    assert_eq!(read(&sb, "/etc/default/kubelet"), "KUBELET_EXTRA_ARGS=\n");
    assert!(!exists(&sb, "/etc/sysconfig/kubelet"));
    assert!(sb.root().join("opt/cni/bin").is_dir());
    assert_eq!(
        read(&sb, "/etc/apt/sources.list.d/kubernetes.list"),
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.37/deb/ /\n"
    );
    assert_eq!(
        fs::read_link(sb.root().join("etc/systemd/system/multi-user.target.wants/kubelet.service")).unwrap(),
        Path::new("/usr/lib/systemd/system/kubelet.service")
    );
    // The host commands a real node runs, recorded in order.
    for cmd in [
        "! apt-get install -y -q containerd (recorded, not run)",
        "! apt-get install -y -q --allow-change-held-packages kubelet=1.37.0-1.1 kubeadm=1.37.0-1.1 kubectl=1.37.0-1.1",
        "! apt-mark hold kubelet kubeadm kubectl",
        "https://pkgs.k8s.io/core:/stable:/v1.37/deb/Release.key /etc/apt/keyrings/kubernetes-apt-keyring.gpg",
        "! modprobe br_netfilter",
        "! systemctl enable kubelet.service",
        "! systemctl wait-active containerd.service",
        "! sysctl --system",
    ] {
        assert!(run.stdout.contains(cmd), "`{cmd}` was not recorded:\n{}", run.stdout);
    }
    // Enabled and started (`systemctl enable --now kubelet`): it crash-loops until init.
    assert!(run.stdout.contains("! systemctl start kubelet.service (recorded, not run)"), "{}", run.stdout);
    insta::assert_snapshot!("stages_1_2_tree", tree_snapshot(&sb.root()));

    // `kscript tree` puts each file under its stage, and the socket as containerd's.
    let tree = sb.kscript(&["tree", "root"]).ok().stdout;
    for (path, stage) in [
        ("/etc/containerd/config.toml", "[1 containerd]"),
        ("/run/containerd/containerd.sock", "[1 containerd] expected, created by containerd"),
        ("/usr/lib/systemd/system/kubelet.service ", "[2 kubelet]"),
        ("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", "[2 kubelet]"),
        ("/etc/default/kubelet", "[2 kubelet]"),
        ("/opt/cni/bin/bridge", "[2 kubelet] expected, created by kubernetes-cni"),
    ] {
        let line =
            tree.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("tree lacks {path}:\n{tree}"));
        assert!(line.contains(stage), "{line}");
    }

    // Again: nothing changes, nothing is rewritten, no handler runs.
    let before = fingerprint(&sb.root());
    let again = render_12(&sb, &["--detailed-exitcode"]).ok();
    assert!(again.stdout.contains("changed=0") && !again.stdout.contains("changed "), "{}", again.stdout);
    assert!(!again.stdout.contains("handlers/"), "{}", again.stdout);
    assert_same(&before, &fingerprint(&sb.root()), "a second run rewrote files");
}

#[test]
fn the_distribution_picks_paths_repositories_and_commands() {
    // rhel by configuration.
    let sb = Sandbox::new();
    let run = render_12(&sb, &["-v", "--set", "kscript.distro=rhel"]).ok();
    assert!(!run.stderr.contains(GUESSED), "{}", run.stderr);
    assert_eq!(read(&sb, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"), DROPIN_RPM);
    assert_eq!(read(&sb, "/etc/sysconfig/kubelet"), "KUBELET_EXTRA_ARGS=\n");
    assert_eq!(read(&sb, "/usr/lib/systemd/system/kubelet.service"), KUBELET_SERVICE);
    assert_eq!(
        read(&sb, "/etc/yum.repos.d/kubernetes.repo"),
        "[kubernetes]\nname=Kubernetes\nbaseurl=https://pkgs.k8s.io/core:/stable:/v1.37/rpm/\nenabled=1\ngpgcheck=1\n\
         gpgkey=https://pkgs.k8s.io/core:/stable:/v1.37/rpm/repodata/repomd.xml.key\n\
         exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    );
    for absent in ["/etc/default/kubelet", "/etc/apt"] {
        assert!(!exists(&sb, absent), "{absent} written on rhel");
    }
    for cmd in [
        "! rpm -q --qf %{VERSION} kubelet",
        "! dnf install -y --disableexcludes=kubernetes kubelet-1.37.0 kubeadm-1.37.0 kubectl-1.37.0",
        "! dnf install -y containerd",
    ] {
        assert!(run.stdout.contains(cmd), "`{cmd}` was not recorded:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("apt-"), "{}", run.stdout);
    render_12(&sb, &["--set", "kscript.distro=rhel", "--detailed-exitcode"]).ok();

    // auto: the node root's os-release decides, ID_LIKE included.
    for (os_release, family_file) in [
        ("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", "/etc/sysconfig/kubelet"),
        ("NAME=Ubuntu\nID=ubuntu\nID_LIKE=debian\n", "/etc/default/kubelet"),
        ("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", "/etc/default/kubelet"),
    ] {
        let sb = Sandbox::new();
        sb.write("root/etc/os-release", os_release);
        let run = render_12(&sb, &[]).ok();
        assert!(!run.stderr.contains(GUESSED), "{}", run.stderr);
        assert!(exists(&sb, family_file), "{os_release}: no {family_file}");
    }
    let sb = Sandbox::new();
    sb.write("root/usr/lib/os-release", "ID=alpine\n");
    let run = render_12(&sb, &[]).code(1);
    assert!(
        run.message().contains("names a distribution kscript does not know (ID=alpine)"),
        "{}",
        run.stderr
    );
    let run = render_12(&sb, &["--set", "kscript.distro=arch"]).code(1);
    assert!(run.message().contains("use auto, debian or rhel"), "{}", run.stderr);
}

#[test]
fn versions_pick_the_config_layout_pause_image_and_channel() {
    let sb = Sandbox::new();
    render_12(&sb, &["--set", "kscript.containerd.version=2.1", "--set", "kubernetesVersion=v1.31.4"]).ok();
    let text = read(&sb, "/etc/containerd/config.toml");
    let config: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(config["version"].as_integer(), Some(3), "{text}");
    let runtime = ["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc"];
    assert_eq!(
        toml_at(&config, &[&runtime[..], &["options", "SystemdCgroup"]].concat()).as_bool(),
        Some(true)
    );
    assert_eq!(toml_at(&config, &[&runtime[..], &["sandboxer"]].concat()).as_str(), Some("podsandbox"));
    assert_eq!(
        toml_at(&config, &["plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"]).as_str(),
        Some("registry.k8s.io/pause:3.10")
    );
    assert!(
        !text.contains("io.containerd.grpc.v1.cri\".containerd"),
        "version 2 paths in a version 3 file:\n{text}"
    );
    assert!(
        read(&sb, "/usr/lib/systemd/system/containerd.service")
            .contains("After=network.target dbus.service\n")
    );
    assert!(read(&sb, "/etc/apt/sources.list.d/kubernetes.list").contains("/core:/stable:/v1.31/deb/"));
    let run = render_12(
        &sb,
        &["-v", "--set", "kubernetesVersion=v1.31.4", "--set", "kscript.containerd.version=2.1"],
    )
    .ok();
    assert!(run.stdout.contains("kubelet=1.31.4-1.1"), "{}", run.stdout);

    // A custom registry carries over to the sandbox image.
    let sb = Sandbox::new();
    render_12(
        &sb,
        &["--set", "imageRepository=registry.example:5000/k8s", "--set", "kubernetesVersion=v1.29.2"],
    )
    .ok();
    assert!(
        read(&sb, "/etc/containerd/config.toml")
            .contains("sandbox_image = \"registry.example:5000/k8s/pause:3.9\"")
    );

    let run = render_12(&sb, &["--set", "kscript.containerd.version=2.3"]).code(1);
    assert!(run.message().contains("containerd 2.3 is not supported"), "{}", run.stderr);
}

/// Asks stage 1's facts what containerd version its steps configure, and prints it.
const CONTAINERD_FACTS: &str = r#"import "containerd" as containerd;
stage("facts", "What stage 1 knows of containerd", [
    step("version", "The version the containerd steps configure", || {
        let f = containerd::facts(cfg);
        info(`version=${f.version} detected=${f.detected}`);
    }),
]);
"#;

/// The warning of a chosen containerd version that is not the installed one.
const VERSION_WARNING: &str = "kscript.containerd.version says";

/// `kscript.containerd.version` left at `auto` takes the installed containerd's version
/// without a word; a version the user chose that differs is said, and the installed one
/// configured. On this host, through its real `containerd --version` (the run's only
/// effect; the journal goes to the sandbox).
#[test]
fn only_a_chosen_containerd_version_that_differs_warns() {
    let installed = containerd_version();
    let sb = Sandbox::new();
    sb.write("facts.rhai", CONTAINERD_FACTS);
    let journal = sb.path().join("journal.jsonl");
    let on_host = |extra: &[&str]| {
        let mut args = vec!["run", "facts.rhai", "--journal", journal.to_str().unwrap()];
        args.extend_from_slice(extra);
        sb.kscript(&args).ok()
    };
    let found = format!("version={installed} detected=true");

    let run = on_host(&[]);
    assert!(run.stdout.contains(&found), "{}", run.stdout);
    assert!(!run.stderr.contains(VERSION_WARNING), "{}", run.stderr);

    let same = format!("kscript.containerd.version={installed}");
    let run = on_host(&["--set", &same]);
    assert!(run.stdout.contains(&found), "{}", run.stdout);
    assert!(!run.stderr.contains(VERSION_WARNING), "{}", run.stderr);

    let other = if installed == "1.7" { "2.1" } else { "1.7" };
    let run = on_host(&["--set", &format!("kscript.containerd.version={other}")]);
    assert!(run.stdout.contains(&found), "{}", run.stdout);
    let warning = format!(
        "containerd {installed} is installed, kscript.containerd.version says {other}: configuring it for {installed}"
    );
    assert!(run.message().contains(&warning), "{}", run.stderr);

    // A render has no containerd to ask: `auto` stands for 1.7, as the default did before.
    let run = sb.render("facts.rhai", &[]).ok();
    assert!(run.stdout.contains("version=1.7 detected=false"), "{}", run.stdout);
    assert!(!run.stderr.contains(VERSION_WARNING), "{}", run.stderr);
}

#[test]
fn bundles_install_from_local_files() {
    let sb = Sandbox::new();
    let run = render_12(
        &sb,
        &[
            "-v",
            "--set",
            "kscript.containerd.source=bundle",
            "--set",
            "kscript.containerd.bundleDir=/srv/bundle/containerd",
            "--set",
            "kscript.kubernetes.source=bundle",
            "--set",
            "kscript.kubernetes.bundleDir=/srv/bundle/k8s/",
        ],
    )
    .ok();
    for cmd in [
        "! sh -c 'dpkg -i \"$0\"/*.deb' /srv/bundle/containerd",
        "! install -m 0755 /srv/bundle/k8s/kubelet /usr/bin/kubelet",
        "! install -m 0755 /srv/bundle/k8s/kubectl /usr/bin/kubectl",
        "ctr -n k8s.io images import",
        "tar -C /opt/cni/bin -xzf",
    ] {
        assert!(run.stdout.contains(cmd), "`{cmd}` was not recorded:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("skipped  kubelet/repository  kscript.kubernetes.source is bundle"));
    assert!(!run.stdout.contains("apt-get"), "{}", run.stdout);
    // No package: kscript owns the unit files.
    assert_eq!(read(&sb, "/usr/lib/systemd/system/kubelet.service"), KUBELET_SERVICE);
    assert!(exists(&sb, "/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"));

    let run = render_12(&sb, &["--set", "kscript.kubernetes.source=bundle"]).code(1);
    assert!(run.message().contains("kscript.kubernetes.bundleDir is empty"), "{}", run.stderr);
}

/// The installed containerd's major.minor, or a failure that says how to get it.
fn containerd_version() -> String {
    let out = Command::new("containerd").arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "containerd is not installed ({e}): this test runs Debian's containerd; install it with \
             `apt-get install containerd runc` (.ci/run does)"
        )
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find_map(|w| {
            let mut parts = w.trim_start_matches('v').split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            (parts.next().is_some()
                && major.chars().all(|c| c.is_ascii_digit())
                && minor.chars().all(|c| c.is_ascii_digit())
                && !major.is_empty())
            .then(|| format!("{major}.{minor}"))
        })
        .unwrap_or_else(|| panic!("no version in `containerd --version`: {text}"))
}

fn must_run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every key path of a TOML table whose value differs between `a` and `b`.
fn toml_differences(a: &toml::Table, b: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => toml_differences(x, y, &path, out),
            (x, y) if x == y => {}
            _ => out.push(path),
        }
    }
}

/// A containerd this test started, in its own mount namespace; stopped by its PID when the
/// test ends, passed or failed.
struct Containerd {
    child: Child,
    log: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits in i32"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts containerd with `config`, its root, state and socket in `dir`. It runs in a
/// private mount namespace where /etc, /opt and /run are overlays whose changes land in
/// `dir`: the rendered config names the node's real paths (/etc/cni/net.d, which the CRI
/// plugin creates; /opt/containerd, which the opt plugin creates), containerd 1.x keeps its
/// shim sockets in /run/containerd/s whatever its state folder, and the test must leave this
/// machine (and other tests' containerds) as it found them.
fn start_containerd(config: &Path, dir: &Path) -> Containerd {
    assert!(nix::unistd::geteuid().is_root(), "starting containerd needs root");
    for d in ["etc-up", "etc-work", "opt-up", "opt-work", "run-up", "run-work", "root", "state"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let log = dir.join("containerd.log");
    let script = "mount -t overlay overlay -o lowerdir=/etc,upperdir=\"$0/etc-up\",workdir=\"$0/etc-work\" /etc && \
                  mount -t overlay overlay -o lowerdir=/opt,upperdir=\"$0/opt-up\",workdir=\"$0/opt-work\" /opt && \
                  mount -t overlay overlay -o lowerdir=/run,upperdir=\"$0/run-up\",workdir=\"$0/run-work\" /run && \
                  exec containerd --config \"$1\" --root \"$0/root\" --state \"$0/state\" --address \"$0/containerd.sock\"";
    // unshare execs sh, which execs containerd: the child's PID is containerd's.
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script])
        .arg(dir)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux) is installed");
    Containerd { child, log }
}

#[test]
fn real_containerd_accepts_the_rendered_config() {
    let version = containerd_version();
    let sb = Sandbox::new();
    render_12(&sb, &["--set", &format!("kscript.containerd.version={version}")]).ok();
    let config = sb.root().join("etc/containerd/config.toml");

    // What containerd makes of the file: its own defaults, and exactly kscript's changes.
    let default: toml::Table = toml::from_str(&String::from_utf8_lossy(
        &must_run(Command::new("containerd").args(["config", "default"])).stdout,
    ))
    .unwrap();
    let dump_out = must_run(Command::new("containerd").arg("--config").arg(&config).args(["config", "dump"]));
    let dump: toml::Table = toml::from_str(&String::from_utf8_lossy(&dump_out.stdout)).unwrap();
    let mut diff = Vec::new();
    toml_differences(&default, &dump, "", &mut diff);
    let (cgroup, sandbox) = if version.starts_with("1.") {
        (
            format!("plugins.{CRI_V2}.containerd.runtimes.runc.options.SystemdCgroup"),
            format!("plugins.{CRI_V2}.sandbox_image"),
        )
    } else {
        (
            "plugins.io.containerd.cri.v1.runtime.containerd.runtimes.runc.options.SystemdCgroup".to_string(),
            "plugins.io.containerd.cri.v1.images.pinned_images.sandbox".to_string(),
        )
    };
    diff.retain(|p| p != "imports");
    assert_eq!(diff, vec![cgroup, sandbox], "containerd {version} reads other changes than kscript's");

    // And it runs with it: the socket answers, the CRI plugin loaded.
    let dir = sb.path().join("containerd");
    let started = Instant::now();
    let daemon = start_containerd(&config, &dir);
    let sock = dir.join("containerd.sock");
    let ctr = |args: &[&str]| Command::new("ctr").arg("--address").arg(&sock).args(args).output().unwrap();
    let answered = loop {
        let out = ctr(&["--timeout", "1s", "version"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "containerd did not answer within 20 s:\n{}",
            fs::read_to_string(&daemon.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let up = started.elapsed();
    assert!(answered.contains("Server:"), "{answered}");
    let plugins = String::from_utf8_lossy(&ctr(&["plugins", "ls"]).stdout).into_owned();
    let cri =
        plugins.lines().find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri ")).unwrap_or_else(
            || panic!("no CRI plugin:\n{plugins}\n{}", fs::read_to_string(&daemon.log).unwrap_or_default()),
        );
    assert!(
        cri.trim_end().ends_with("ok"),
        "the CRI plugin did not load: {cri}\n{}",
        fs::read_to_string(&daemon.log).unwrap()
    );
    let log = fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains("level=fatal"), "{log}");
    drop(daemon);
    // Nothing outside the sandbox: what containerd made under /etc and /opt is in the overlays.
    assert!(dir.join("etc-up/cni/net.d").is_dir(), "the CRI plugin's conf dir was not in the overlay");
    assert!(dir.join("opt-up/containerd").is_dir(), "the opt plugin's folder was not in the overlay");
    eprintln!("containerd {version}: socket answered {:.0} ms after start", up.as_secs_f64() * 1000.0);
}

#[test]
fn systemd_analyze_verifies_the_unit_files() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: install Debian's `systemd` (.ci/run does)"
    );
    assert!(nix::unistd::geteuid().is_root(), "this test mounts an overlay: it needs root");
    let sb = Sandbox::new();
    render_12(&sb, &[]).ok();
    let units = sb.root().join("usr/lib/systemd/system");
    // kubelet is not installable here: a stub in /usr/bin, through an overlay in a private
    // mount namespace, stands in for it. containerd is the real one.
    let fake = sb.path().join("fake-bin");
    fs::create_dir_all(fake.join("up")).unwrap();
    fs::create_dir_all(fake.join("work")).unwrap();
    fs::write(fake.join("up/kubelet"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(fake.join("up/kubelet"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let verify = |unit_dir: &Path| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t overlay overlay -o lowerdir=/usr/bin,upperdir=\"$0/up\",workdir=\"$0/work\" /usr/bin && \
                 SYSTEMD_UNIT_PATH=\"$1:\" exec systemd-analyze verify kubelet.service containerd.service",
            )
            .arg(&fake)
            .arg(unit_dir)
            .output()
            .unwrap()
    };
    let out = verify(&units);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The drop-in is part of what was verified: a broken one fails.
    let broken = sb.path().join("broken-units");
    fs::create_dir_all(broken.join("kubelet.service.d")).unwrap();
    for f in ["kubelet.service", "containerd.service", "kubelet.service.d/10-kubeadm.conf"] {
        fs::copy(units.join(f), broken.join(f)).unwrap();
    }
    let dropin = broken.join("kubelet.service.d/10-kubeadm.conf");
    fs::write(
        &dropin,
        fs::read_to_string(&dropin)
            .unwrap()
            .replace("ExecStart=/usr/bin/kubelet $", "ExecStart=/nonexistent $"),
    )
    .unwrap();
    let out = verify(&broken);
    assert!(!out.status.success(), "a broken drop-in passed: the drop-in was not read");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
