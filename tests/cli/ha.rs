//! High availability: the first control plane uploads the shared certificates, then a second
//! and a third control-plane node join with the certificate key and form a stacked etcd
//! cluster of three.
//!
//! The API server is the FAKE one (there is no kube-apiserver package here), serving at the
//! first node's controlPlaneEndpoint. etcd is real: Debian's etcd, one member per node,
//! started from the etcd Pod kscript renders for that node. Each node has a loopback address
//! of its own (127.0.10.1, .2, .3; another test uses 127.0.11.x), so the three members use etcd's usual ports side by side;
//! the harness leaves out the 127.0.0.1 client and metrics listeners the Pods also declare,
//! which three members on one host cannot share.

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::fake_apiserver::FakeApiServer;
use super::{KillOnDrop, Run, Sandbox, etcdctl_as_healthcheck, start_etcd_member, static_pod};

/// The steps of a control-plane join up to its etcd Pod (what follows waits on its kubelet).
pub(super) const CONTROL_PLANE_JOIN_STEPS: &[&str] = &[
    "join/discovery",
    "join/kubeconfig",
    "join/control-plane-prepare",
    "join/kubelet-start",
    "join/control-plane-join/etcd",
];

/// The shared files, by their key in kube-system/kubeadm-certs.
const SHARED: &[(&str, &str)] = &[
    ("ca.crt", "ca.crt"),
    ("ca.key", "ca.key"),
    ("front-proxy-ca.crt", "front-proxy-ca.crt"),
    ("front-proxy-ca.key", "front-proxy-ca.key"),
    ("sa.key", "sa.key"),
    ("sa.pub", "sa.pub"),
    ("etcd-ca.crt", "etcd/ca.crt"),
    ("etcd-ca.key", "etcd/ca.key"),
];

/// A real etcd member, killed when dropped.
type Member = KillOnDrop;

fn pki(root: &Path) -> std::path::PathBuf {
    root.join("etc/kubernetes/pki")
}

/// `etcdctl ARGS` against `endpoint` as the node's healthcheck client.
fn etcdctl(root: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    etcdctl_as_healthcheck(root, endpoint, args)
}

/// The etcd Pod kscript wrote on a node.
fn etcd_pod(root: &Path) -> Value {
    static_pod(root, "etcd.yaml")
}

/// Starts the node's etcd member (see `start_etcd_member`) and waits until it is healthy.
fn start_member(sb: &Sandbox, ip: &str) -> Member {
    start_etcd_member(sb, ip).0
}

/// The members as `name peer-url` lines, sorted, as `etcdctl member list` prints them.
fn member_list(root: &Path, endpoint: &str) -> Vec<String> {
    let out = etcdctl(root, endpoint, &["member", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            format!("{} {} {}", f[1], f[2], f[3])
        })
        .collect();
    lines.sort();
    lines
}

/// The cluster: the first node rendered, its etcd member running, the fake API server at its
/// controlPlaneEndpoint with the etcd mirror Pod the kubelet would post.
struct Cluster {
    /// The first three parts of the nodes' addresses: node n is at `<net>.<n>`.
    net: &'static str,
    first: Sandbox,
    fake: FakeApiServer,
    endpoint: String,
    _etcd: Member,
}

const VERSION: &str = "kubernetesVersion=v1.33.0";

impl Cluster {
    /// The first node at `<net>.1`; each test has a `net` of its own, as tests run at once.
    fn up(net: &'static str) -> Self {
        let ip = format!("{net}.1");
        let listener = FakeApiServer::reserve_on(&ip);
        let port = listener.local_addr().unwrap().port();
        let endpoint = format!("{ip}:{port}");
        let first = Sandbox::new();
        let args = Self::node_args("cp-1", &ip, port, &endpoint);
        first.render("control-plane.rhai", &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
        let p = pki(&first.root());
        let read = |f: &str| fs::read_to_string(p.join(f)).unwrap();
        let fake =
            FakeApiServer::start(listener, &read("apiserver.crt"), &read("apiserver.key"), &read("ca.crt"));
        let etcd = start_member(&first, &ip);
        let cluster = Self { net, first, fake, endpoint, _etcd: etcd };
        cluster.post_mirror_pod(&cluster.first.root(), "cp-1");
        let run = cluster.run_first(&[
            "init/wait-control-plane",
            "init/cluster-admins",
            "init/upload-config",
            "init/upload-certs",
            "init/bootstrap-token",
            "init/show-join",
        ]);
        run.ok();
        cluster
    }

    /// The settings of a control-plane node at `ip`, in a cluster at `endpoint`.
    fn node_args(name: &str, ip: &str, port: u16, endpoint: &str) -> Vec<String> {
        [
            format!("nodeRegistration.name={name}"),
            format!("localAPIEndpoint.advertiseAddress={ip}"),
            format!("localAPIEndpoint.bindPort={port}"),
            format!("controlPlaneEndpoint={endpoint}"),
            "encryptionAlgorithm=ECDSA-P256".into(),
            VERSION.into(),
            "kscript.uploadCerts=true".into(),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
    }

    /// The etcd mirror Pod of a node, as its kubelet posts it: the static Pod's metadata,
    /// named after the node.
    fn post_mirror_pod(&self, root: &Path, node: &str) {
        let mut pod = etcd_pod(root);
        pod["metadata"]["name"] = json!(format!("etcd-{node}"));
        self.fake.put(&format!("/api/v1/namespaces/kube-system/pods/etcd-{node}"), pod);
    }

    fn run_first(&self, steps: &[&str]) -> Run {
        let port: u16 = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let root = self.first.root();
        let mut all: Vec<String> =
            ["run", "control-plane.rhai", "--root", root.to_str().unwrap()].map(String::from).to_vec();
        all.extend(Self::node_args("cp-1", &format!("{}.1", self.net), port, &self.endpoint));
        for s in steps {
            all.extend(["--only".to_string(), (*s).to_string()]);
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.first.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &all)
    }

    fn certificate_key(&self) -> String {
        fs::read_to_string(self.first.root().join("var/lib/kscript/certificate-key"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Joins a node at `ip` as a control plane, through the join steps up to its etcd Pod.
    fn join(&self, node: &Sandbox, name: &str, ip: &str, key: &str) -> Run {
        let token = fs::read_to_string(self.first.root().join("var/lib/kscript/bootstrap-token")).unwrap();
        let pin = kscript::pki::ca_pin(&fs::read_to_string(pki(&self.first.root()).join("ca.crt")).unwrap())
            .unwrap();
        let root = node.root();
        let control_plane = format!(
            "controlPlane={{localAPIEndpoint: {{advertiseAddress: {ip}}}, certificateKey: \"{key}\"}}"
        );
        let args = [
            "run",
            "worker.rhai",
            "--root",
            root.to_str().unwrap(),
            "--set",
            &format!("nodeRegistration.name={name}"),
            "--set",
            &format!("discovery.bootstrapToken.apiServerEndpoint={}", self.endpoint),
            "--set",
            &format!("discovery.bootstrapToken.token={}", token.trim()),
            "--set",
            &format!("discovery.bootstrapToken.caCertHashes=[{pin}]"),
            "--set",
            &control_plane,
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
        ];
        let mut args = args.to_vec();
        for step in CONTROL_PLANE_JOIN_STEPS {
            args.extend(["--only", step]);
        }
        node.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &args)
    }
}

/// init's upload-certs: the Secret holds every shared file, sealed with the certificate key;
/// it is owned by a 2-hour token; the token's group may read it; a rerun changes nothing.
#[test]
fn init_uploads_the_shared_certificates_sealed() {
    let c = Cluster::up("127.0.11");
    let key = c.certificate_key();
    assert_eq!(key.len(), 64);
    let secret = c.fake.object("/api/v1/namespaces/kube-system/secrets/kubeadm-certs").unwrap();
    let data = secret["data"].as_object().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = SHARED.iter().map(|(k, _)| *k).collect();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    for (k, file) in SHARED {
        let sealed = STANDARD.decode(data[*k].as_str().unwrap()).unwrap();
        let plain = kscript::bootstrap::decrypt(&sealed, &key).unwrap();
        assert_eq!(plain, fs::read(pki(&c.first.root()).join(file)).unwrap(), "{k}");
        let wrong = "0".repeat(64);
        assert!(kscript::bootstrap::decrypt(&sealed, &wrong).is_err(), "{k} opens with another key");
    }
    let owner = &secret["metadata"]["ownerReferences"][0];
    let token = fs::read_to_string(c.first.root().join("var/lib/kscript/upload-certs-token")).unwrap();
    let id = token.trim().split_once('.').unwrap().0;
    let owner_path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
    let token_secret = c.fake.object(&owner_path).unwrap();
    assert_eq!(owner["name"], json!(format!("bootstrap-token-{id}")));
    assert_eq!(owner["uid"], token_secret["metadata"]["uid"]);
    assert_eq!(owner["controller"], json!(true));
    let decoded = |k: &str| {
        String::from_utf8(STANDARD.decode(token_secret["data"][k].as_str().unwrap()).unwrap()).unwrap()
    };
    assert_eq!(decoded("description"), "Proxy for managing TTL for the kubeadm-certs secret");
    assert!(
        token_secret["data"].get("usage-bootstrap-authentication").is_none(),
        "the owner token authenticates nobody"
    );
    let binding = c
        .fake
        .object(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/kubeadm:kubeadm-certs",
        )
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "system:bootstrappers:kubeadm:default-node-token");

    // The join command for control planes carries the key.
    let run = c.run_first(&["init/show-join"]).ok();
    assert!(run.stdout.contains(&format!("--control-plane --certificate-key {key}")), "{}", run.stdout);
    // So does kscript's own, and a shell hands its settings to kscript as they were meant.
    let printed = run
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("or with kscript: "))
        .find(|l| l.contains("controlPlane="))
        .unwrap_or_else(|| panic!("no kscript control-plane join in:\n{}", run.stdout));
    assert!(printed.ends_with(&format!(" --set 'controlPlane={{certificateKey: \"{key}\"}}'")), "{printed}");
    let settings = printed.strip_prefix("kscript run worker.rhai ").unwrap();
    let script = "import \"ha\" as ha;\nstage(\"s\", \"d\", [step(\"show\", \"d\", || { info(`endpoint=${cfg.discovery.bootstrapToken.apiServerEndpoint} pins=${cfg.discovery.bootstrapToken.caCertHashes} key=${cfg.controlPlane.certificateKey} joins=${ha::joins_control_plane(cfg)}`); })]);\n";
    c.first.write("settings.rhai", script);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' run settings.rhai --root settings-root {settings}", env!("CARGO_BIN_EXE_kscript")))
        .current_dir(c.first.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let seen = Run::from(&out).ok();
    let pin =
        kscript::pki::ca_pin(&fs::read_to_string(pki(&c.first.root()).join("ca.crt")).unwrap()).unwrap();
    assert!(
        seen.stdout.contains(&format!("endpoint={} pins=[\"{pin}\"] key={key} joins=true", c.endpoint)),
        "{}",
        seen.stdout
    );

    // A rerun within the two hours changes nothing: the same token, the same sealed values.
    let before = c.fake.objects();
    c.fake.forget_requests();
    c.run_first(&["init/upload-certs"]).ok();
    assert_eq!(c.fake.objects(), before);
    assert!(c.fake.seen().iter().filter(|s| s.method == "PATCH").all(|s| s.status == 200));
}

/// Two more control-plane nodes join: each downloads and opens the shared certificates,
/// signs its own leaves with them, adds itself to the real etcd cluster and writes an etcd Pod
/// that, started, makes a healthy cluster of three. A rerun adds no member; a wrong key is
/// refused.
#[test]
fn control_planes_join_and_form_a_stacked_etcd_cluster() {
    let c = Cluster::up("127.0.10");
    let key = c.certificate_key();
    let first = c.first.root();
    let mut members = Vec::new();
    let mut nodes = Vec::new();
    for (n, ip) in [(2, "127.0.10.2"), (3, "127.0.10.3")] {
        let name = format!("cp-{n}");
        let node = Sandbox::new();
        c.fake.forget_requests();
        let run = c.join(&node, &name, ip, &key).ok();
        if n == 2 {
            // Every API request of a control-plane join, in order (etcd is asked directly).
            let token = fs::read_to_string(first.join("var/lib/kscript/bootstrap-token")).unwrap();
            let id = token.split_once('.').unwrap().0;
            let requests: Vec<String> =
                c.fake.seen().iter().map(|s| s.line().replace(id, "[TOKEN ID]")).collect();
            insta::assert_snapshot!("control_plane_join_requests", requests.join("\n"));
        }
        assert!(run.stdout.contains(&format!("adding {name} (https://{ip}:2380) to etcd")), "{}", run.stdout);
        let root = node.root();
        for (_, file) in SHARED {
            assert_eq!(
                fs::read(pki(&root).join(file)).unwrap(),
                fs::read(pki(&first).join(file)).unwrap(),
                "{file}"
            );
        }
        for (leaf, ca) in
            [("apiserver", "ca"), ("etcd/peer", "etcd/ca"), ("apiserver-etcd-client", "etcd/ca")]
        {
            let out = Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(pki(&root).join(format!("{ca}.crt")))
                .arg(pki(&root).join(format!("{leaf}.crt")))
                .output()
                .unwrap();
            assert!(out.status.success(), "{leaf}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pod = etcd_pod(&root);
        let command: Vec<&str> = pod["spec"]["containers"][0]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut expected_cluster = vec!["cp-1=https://127.0.10.1:2380".to_string()];
        for m in 2..=n {
            expected_cluster.push(format!("cp-{m}=https://127.0.10.{m}:2380"));
        }
        assert!(
            command.contains(&format!("--initial-cluster={}", expected_cluster.join(",")).as_str()),
            "{command:?}"
        );
        assert!(command.contains(&"--initial-cluster-state=existing"), "{command:?}");
        let manifests = fs::read_dir(root.join("etc/kubernetes/manifests")).unwrap().count();
        assert_eq!(manifests, 4, "etcd and the three control-plane Pods");
        members.push(start_member(&node, ip));
        c.post_mirror_pod(&root, &name);
        nodes.push(node);
    }
    let list = member_list(&first, "https://127.0.10.1:2379");
    assert_eq!(
        list,
        [
            "started cp-1 https://127.0.10.1:2380",
            "started cp-2 https://127.0.10.2:2380",
            "started cp-3 https://127.0.10.3:2380",
        ]
    );
    // One cluster: written through the first member, read through the third.
    let put = etcdctl(&first, "https://127.0.10.1:2379", &["put", "kscript-ha", "three"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let get =
        etcdctl(&nodes[1].root(), "https://127.0.10.3:2379", &["get", "kscript-ha", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "three");

    // A rerun of the second node's join adds no member and leaves its files as they are.
    let before = fs::read(nodes[0].root().join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    let run = c.join(&nodes[0], "cp-2", "127.0.10.2", &key).ok();
    assert!(!run.stdout.contains("adding cp-2"), "{}", run.stdout);
    assert_eq!(member_list(&first, "https://127.0.10.1:2379").len(), 3);
    let after = fs::read(nodes[0].root().join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&before), String::from_utf8_lossy(&after));

    // A wrong key is refused before anything of the node's own is made.
    let node = Sandbox::new();
    let run = c.join(&node, "cp-4", "127.0.10.4", &"0".repeat(64)).code(1);
    assert!(run.message().contains("controlPlane.certificateKey does not open"), "{}", run.stderr);
    assert!(!pki(&node.root()).join("ca.key").exists());
    assert!(!pki(&node.root()).join("apiserver.crt").exists());
    drop(members);
}

/// Rendering a control-plane join: with the shared certificates copied under the node root by
/// hand, the node gets its own leaves, kubeconfigs and Pods, and an etcd Pod that joins; a
/// joining node never makes a CA: without them, or without a controlPlaneEndpoint, it stops
/// and says why.
#[test]
fn a_control_plane_join_renders_from_certificates_copied_by_hand() {
    let first = Sandbox::new();
    let endpoint_arg = "controlPlaneEndpoint=cp.example.internal:6443";
    first
        .render(
            "control-plane.rhai",
            &[
                "--set",
                "nodeRegistration.name=cp-1",
                "--set",
                "localAPIEndpoint.advertiseAddress=10.0.0.1",
                "--set",
                endpoint_arg,
                "--set",
                "encryptionAlgorithm=ECDSA-P256",
                "--only",
                "init/certs",
            ],
        )
        .ok();
    let ca = STANDARD.encode(fs::read(pki(&first.root()).join("ca.crt")).unwrap());
    let node = Sandbox::new();
    let kubeconfig = node.write(
        "cluster.conf",
        &format!("apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://cp.example.internal:6443\n    certificate-authority-data: {ca}\n"),
    );
    // The join's settings; a control plane's with `controlPlane`.
    let args = |control_plane: bool, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--set",
            "nodeRegistration.name=cp-2",
            "--set",
            &format!("discovery.file.kubeConfigPath={}", kubeconfig.display()),
            "--set",
            "discovery.tlsBootstrapToken=abcdef.0123456789abcdef",
            "--set",
            "discovery.bootstrapToken.unsafeSkipCAVerification=true",
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
            "--only",
            "join",
        ]
        .map(String::from)
        .to_vec();
        if control_plane {
            a.extend(
                ["--set", "controlPlane={localAPIEndpoint: {advertiseAddress: 10.0.0.2}}"].map(String::from),
            );
        }
        a.extend(extra.iter().map(|s| (*s).to_string()));
        a
    };
    let render = |extra: &[&str]| {
        let a = args(true, extra);
        node.render("worker.rhai", &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // No shared certificates yet: refused, naming what is missing, and no CA is made.
    let run = render(&["--set", endpoint_arg]).code(1);
    assert!(run.message().contains("shared certificates, and these are missing"), "{}", run.stderr);
    assert!(!pki(&node.root()).join("ca.key").exists());
    for (_, file) in SHARED {
        let to = pki(&node.root()).join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(pki(&first.root()).join(file), to).unwrap();
    }
    // A cluster without a controlPlaneEndpoint takes no second control plane.
    let run = render(&[]).code(1);
    assert!(run.message().contains("joins only a cluster with a controlPlaneEndpoint"), "{}", run.stderr);
    let run = render(&["--set", endpoint_arg]).ok();
    assert!(run.stdout.contains("skipped  join/control-plane-prepare/download-certs"), "{}", run.stdout);
    let root = node.root();
    for f in ["apiserver.crt", "etcd/peer.crt", "apiserver-etcd-client.crt", "front-proxy-client.crt"] {
        assert!(pki(&root).join(f).exists(), "{f}");
    }
    for f in ["admin.conf", "controller-manager.conf", "scheduler.conf"] {
        assert!(root.join("etc/kubernetes").join(f).exists(), "{f}");
    }
    assert!(!root.join("etc/kubernetes/super-admin.conf").exists(), "the first node's alone");
    for (_, file) in SHARED {
        assert_eq!(
            fs::read(pki(&root).join(file)).unwrap(),
            fs::read(pki(&first.root()).join(file)).unwrap()
        );
    }
    let command = etcd_pod(&root)["spec"]["containers"][0]["command"].clone();
    let command: Vec<&str> = command.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(command.contains(&"--initial-cluster=cp-2=https://10.0.0.2:2380"), "{command:?}");
    assert!(command.contains(&"--initial-cluster-state=existing"), "{command:?}");
    let apiserver = fs::read_to_string(root.join("etc/kubernetes/manifests/kube-apiserver.yaml")).unwrap();
    assert!(apiserver.contains("--advertise-address=10.0.0.2"), "{apiserver}");
    // A worker render skips every control-plane step.
    let worker = Sandbox::new();
    let a = args(false, &[]);
    let run = worker.render("worker.rhai", &a.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert!(run.stdout.contains("skipped  join/control-plane-join/etcd  a worker joins"), "{}", run.stdout);
    assert!(!worker.root().join("etc/kubernetes/manifests/etcd.yaml").exists());
}
