//! The cluster half against a fake API server: init's API phases (the requests, in order,
//! snapshotted; a rerun changes nothing), what a dry run shows, and token discovery.
//!
//! A control plane is rendered into a sandbox with its API server at 127.0.0.1:<port>; the
//! fake serves on that port with the rendered apiserver.crt and trusts the rendered CA. The
//! API steps are then run with `KSCRIPT_TEST_CLUSTER_API=real`: files stay in the sandbox,
//! API calls go to the fake.

use std::fs;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::fake_apiserver::FakeApiServer;
use super::{Run, Sandbox};

/// init's API steps, in the flow's order.
const API_STEPS: &[&str] = &[
    "init/wait-control-plane",
    "init/cluster-admins",
    "init/upload-config",
    "init/mark-control-plane",
    "init/bootstrap-token",
    "init/addon/coredns",
    "init/addon/kube-proxy",
    "init/show-join",
];

/// A rendered control-plane node and the fake API server its kubeconfigs name.
struct ControlPlane {
    sb: Sandbox,
    fake: FakeApiServer,
    args: Vec<String>,
}

impl ControlPlane {
    /// Renders the node (ECDSA keys: quick), starts the fake with its certificates, and
    /// registers its Node there, as the kubelet would.
    fn up() -> Self {
        let listener = FakeApiServer::reserve();
        let port = listener.local_addr().unwrap().port();
        let args: Vec<String> = [
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=127.0.0.1",
            "--set",
            &format!("localAPIEndpoint.bindPort={port}"),
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let sb = Sandbox::new();
        sb.render("control-plane.rhai", &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
        let fake = FakeApiServer::start(
            listener,
            &sb.pki("apiserver.crt"),
            &sb.pki("apiserver.key"),
            &sb.pki("ca.crt"),
        );
        fake.put(
            "/api/v1/nodes/k8s-ctr",
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": "k8s-ctr", "labels": {"kubernetes.io/hostname": "k8s-ctr", "kubernetes.io/os": "linux"}},
                   "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
                   "status": {"nodeInfo": {"kubeletVersion": "v1.37.0"}}}),
        );
        Self { sb, fake, args }
    }

    /// `kscript run control-plane.rhai --root ROOT <node args> --only <each step> <extra>`,
    /// its API calls sent to the fake.
    fn run(&self, steps: &[&str], extra: &[&str]) -> Run {
        self.run_script("control-plane.rhai", steps, extra)
    }

    /// The same with another script.
    fn run_script(&self, script: &str, steps: &[&str], extra: &[&str]) -> Run {
        let root = self.sb.root();
        let mut all: Vec<&str> = vec!["run", script, "--root", root.to_str().unwrap()];
        all.extend(self.args.iter().map(String::as_str));
        for s in steps {
            all.extend(["--only", s]);
        }
        all.extend_from_slice(extra);
        self.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &all)
    }

    /// The token init generated and kept for reruns.
    fn token(&self) -> String {
        fs::read_to_string(self.sb.root().join("var/lib/kscript/bootstrap-token")).unwrap().trim().to_string()
    }

    /// `text` with what changes from run to run replaced: the token, the port, the CA.
    fn stable(&self, text: &str) -> String {
        let token = self.token();
        let (id, secret) = token.split_once('.').unwrap();
        text.replace(secret, "[TOKEN SECRET]")
            .replace(id, "[TOKEN ID]")
            .replace(&STANDARD.encode(self.sb.pki("ca.crt")), "[CA DATA]")
            .replace(&format!(":{}", self.fake.port), ":[PORT]")
    }
}

impl Sandbox {
    fn pki(&self, file: &str) -> String {
        fs::read_to_string(self.root().join("etc/kubernetes/pki").join(file)).unwrap()
    }
}

/// Every object a run applied, in order, as YAML under a header naming the request, Secrets'
/// values redacted.
fn applied_objects(fake: &FakeApiServer) -> String {
    let mut out = String::new();
    for s in fake.seen().iter().filter(|s| s.method == "PATCH") {
        out.push_str(&format!("=== {} -> {}\n", s.path, s.status));
        let body = s.body.as_ref().expect("an apply has a body");
        out.push_str(&kscript::yaml::to_string(&kscript::host::cluster::redacted(body)));
    }
    out
}

fn decoded(secret: &Value, key: &str) -> String {
    String::from_utf8(STANDARD.decode(secret["data"][key].as_str().unwrap()).unwrap()).unwrap()
}

/// show-join's lines: kubeadm's join command, and the same join as kscript's own command,
/// quoted for a shell.
fn assert_join_commands(cp: &ControlPlane, stdout: &str) {
    let (token, port) = (cp.token(), cp.fake.port);
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    for line in [
        format!(
            "Join worker nodes with: kubeadm join 127.0.0.1:{port} --token {token} --discovery-token-ca-cert-hash {pin}\n"
        ),
        format!(
            "  or with kscript: kscript run worker.rhai --set discovery.bootstrapToken.apiServerEndpoint=127.0.0.1:{port} --set discovery.bootstrapToken.token={token} --set 'discovery.bootstrapToken.caCertHashes=[{pin}]'\n"
        ),
    ] {
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
}

/// init's API phases against the fake: the requests in order (snapshotted, with the objects
/// sent), what the cluster then holds, and a rerun that changes nothing.
#[test]
fn init_against_a_fake_api_server() {
    let cp = ControlPlane::up();
    // admin.conf can do nothing before kubeadm:cluster-admins exists: the error says so.
    let run = cp.run(&["init/upload-config"], &[]).code(1);
    assert!(
        run.message().contains("forbidden by the API server at https://127.0.0.1:")
            && run.message().contains("User \"kubernetes-admin\" cannot get"),
        "{}",
        run.stderr
    );
    cp.fake.forget_requests();

    // A server still starting: /readyz answers 500 once, then 200.
    cp.fake.not_ready_for(1);
    let run = cp.run(API_STEPS, &["-v"]).ok();
    let requests: Vec<String> = cp.fake.seen().iter().map(|s| cp.stable(&s.line())).collect();
    insta::assert_snapshot!("init_requests", requests.join("\n"));
    // The component-config checksums hold the port: checked here, then left out of the snapshot.
    for name in ["kubelet-config", "kube-proxy"] {
        let cm = cp.fake.object(&format!("/api/v1/namespaces/kube-system/configmaps/{name}")).unwrap();
        let data = cm["data"].as_object().unwrap();
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        let joined: String = keys.iter().map(|k| data[*k].as_str().unwrap()).collect();
        // Computed independently, by coreutils' sha256sum.
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), joined.as_bytes()).unwrap();
        let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let hex = out.split_whitespace().next().unwrap();
        assert_eq!(
            cm["metadata"]["annotations"]["kubeadm.kubernetes.io/component-config.hash"],
            format!("sha256:{hex}")
        );
    }
    let objects: String = cp
        .stable(&applied_objects(&cp.fake))
        .lines()
        .map(|l| match l.split_once("component-config.hash: sha256:") {
            Some((head, _)) => format!("{head}component-config.hash: sha256:[CHECKSUM]\n"),
            None => format!("{l}\n"),
        })
        .collect();
    insta::assert_snapshot!("init_objects", objects);
    for line in [
        "= api wait-ready (ready)",
        "+ api apply ClusterRoleBinding kubeadm:cluster-admins (created)",
        "~ api apply Node k8s-ctr (configured)",
        "+ api apply DaemonSet kube-system/kube-proxy (created)",
    ] {
        assert!(run.stdout.contains(line), "no `{line}` in:\n{}", run.stdout);
    }
    let token = cp.token();
    assert_join_commands(&cp, &run.stdout);

    // The Node kept what the kubelet set, and gained the control plane's marks.
    let node = cp.fake.object("/api/v1/nodes/k8s-ctr").unwrap();
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "k8s-ctr");
    assert_eq!(node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "");
    assert_eq!(
        node["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
               {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    );
    // The token's Secret, as kubeadm writes it.
    let (id, secret) = token.split_once('.').unwrap();
    let s = cp.fake.object(&format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}")).unwrap();
    assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
    assert_eq!((decoded(&s, "token-id"), decoded(&s, "token-secret")), (id.to_string(), secret.to_string()));
    assert_eq!(decoded(&s, "usage-bootstrap-authentication"), "true");
    assert_eq!(decoded(&s, "auth-extra-groups"), "system:bootstrappers:kubeadm:default-node-token");
    let expiration = decoded(&s, "expiration");
    assert!(expiration.len() == 20 && expiration.ends_with('Z'), "{expiration}");

    // A rerun converges: every apply is unchanged, the Secret is not sent again, and no
    // object moved.
    let before = cp.fake.objects();
    cp.fake.forget_requests();
    let run = cp.run(API_STEPS, &["-v", "--detailed-exitcode"]).ok();
    assert!(!run.stdout.contains("(created)") && !run.stdout.contains("(configured)"), "{}", run.stdout);
    assert!(run.stdout.contains("= api apply Deployment kube-system/coredns (unchanged)"), "{}", run.stdout);
    assert_eq!(cp.fake.objects(), before, "a rerun changed objects");
    let seen = cp.fake.seen();
    assert!(
        seen.iter().all(|s| s.status < 300),
        "{:?}",
        seen.iter().map(super::fake_apiserver::Seen::line).collect::<Vec<_>>()
    );
    assert!(
        !seen.iter().any(|s| s.method == "PATCH" && s.path.contains("/secrets/")),
        "the Secret was sent again"
    );
    // The journal names each apply and how it came out.
    let journal = kscript::journal::read(&cp.sb.root().join("var/lib/kscript/journal.jsonl")).unwrap();
    assert!(journal.iter().any(|e| e.action == "api"
        && e.target == "apply ConfigMap kube-system/kubeadm-config"
        && e.outcome == kscript::journal::Outcome::Ok));
}

/// A dry run prints every object it would apply, with no credential: not the token's
/// secret (in the Secret or the join command), and no Secret value at all.
#[test]
fn a_dry_run_prints_the_objects_without_secrets() {
    let sb = Sandbox::new();
    let node = [
        "--set",
        "nodeRegistration.name=k8s-ctr",
        "--set",
        "localAPIEndpoint.advertiseAddress=192.168.56.10",
    ];
    let node = [&node[..], &["--set", "encryptionAlgorithm=ECDSA-P256"]].concat();
    sb.render("control-plane.rhai", &node).ok();
    let token =
        fs::read_to_string(sb.root().join("var/lib/kscript/bootstrap-token")).unwrap().trim().to_string();
    let (id, secret) = token.split_once('.').unwrap();
    let mut args = node.clone();
    for s in API_STEPS {
        args.extend(["--only", s]);
    }
    let run = sb.render("control-plane.rhai", &[&args[..], &["--dry-run"]].concat()).ok();
    let out = &run.stdout;
    for want in [
        "! api apply Secret kube-system/bootstrap-token-",
        "token-secret: '[REDACTED]'",
        "expiration: '[REDACTED]'",
        "type: bootstrap.kubernetes.io/token",
        "kind: Deployment",
        "kind: DaemonSet",
        "clusterIP: 10.96.0.10",
        "ClusterConfiguration: |",
        "node-role.kubernetes.io/control-plane: \"\"",
        &format!("--token {id}.[TOKEN SECRET: not shown in a dry run]"),
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }
    for secret_text in [secret.to_string(), STANDARD.encode(secret), STANDARD.encode(&token)] {
        assert!(
            !out.contains(&secret_text) && !run.stderr.contains(&secret_text),
            "{secret_text} printed:\n{out}"
        );
    }
    // Without --dry-run or --diff, a render lists the objects but does not print them.
    let run = sb.render("control-plane.rhai", &[&args[..], &["-v"]].concat()).ok();
    assert!(run.stdout.contains("! api apply Secret kube-system/bootstrap-token-"), "{}", run.stdout);
    assert!(!run.stdout.contains("kind: Secret"), "{}", run.stdout);
}

/// The script that tries discovery; `@...@` are filled in.
const DISCOVER: &str = r#"
stage("join", "discovery", [ step("discover", "token discovery", || {
    let found = discover_cluster_info("@SERVER@", "@TOKEN@", ["@PIN@"], #{});
    info(`found server=${found.server} pin=${found.pin} ca=${found.ca_pem.starts_with("-----BEGIN CERTIFICATE-----")}`);
    for t in [["wrong", "@WRONG@", "@PIN@"], ["unknown", "zzzzzz.0123456789abcdef", "@PIN@"], ["pin", "@TOKEN@", "@OTHER_PIN@"]] {
        try { discover_cluster_info("@SERVER@", t[1], [t[2]], #{}); info(`${t[0]}: accepted`); }
        catch (e) { info(`${t[0]}: ${e}`); }
    }
}) ]);
"#;

fn discovery_script(cp: &ControlPlane, server: &str, token: &str) -> String {
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    let (id, secret) = token.split_once('.').unwrap();
    let last = if secret.ends_with('a') { 'b' } else { 'a' };
    let wrong = format!("{id}.{}{last}", &secret[..15]);
    DISCOVER
        .replace("@SERVER@", server)
        .replace("@TOKEN@", token)
        .replace("@WRONG@", &wrong)
        .replace("@PIN@", &pin)
        .replace("@OTHER_PIN@", &format!("sha256:{}", "ab".repeat(32)))
}

/// Token discovery against the fake: the CA is found and checked; a wrong token, an unknown
/// (or expired) one, a tampered cluster-info, a pin that does not match and a server that
/// does not answer are refused, each saying why.
#[test]
fn token_discovery_against_the_fake() {
    let cp = ControlPlane::up();
    cp.run(API_STEPS, &[]).ok();
    let token = cp.token();
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    let server = format!("127.0.0.1:{}", cp.fake.port);
    cp.sb.write("discover.rhai", &discovery_script(&cp, &server, &token));
    let journal = cp.sb.path().join("discover.jsonl");
    let journal = journal.to_str().unwrap();
    cp.fake.forget_requests();
    let run = cp.sb.kscript(&["run", "discover.rhai", "--journal", journal]).ok();
    let out = &run.stdout;
    let url = format!("https://127.0.0.1:{}", cp.fake.port);
    for want in [
        format!("found server={url} pin={pin} ca=true"),
        format!(
            "wrong: discovery from {server}: cluster-info's signature for token id `{}` is refused: the signature does not match",
            &token[..6]
        ),
        format!("unknown: discovery from {server}: cluster-info holds no signature for token id `zzzzzz`"),
        "kscript run token.rhai".to_string(),
        format!(
            "pin: discovery from {server}: the cluster CA does not match the pins: expected sha256:{}, found {pin}",
            "ab".repeat(32)
        ),
    ] {
        assert!(out.contains(&want), "no `{want}` in:\n{out}");
    }
    // The first fetch of each is anonymous; the good one fetched twice.
    let seen = cp.fake.seen();
    assert!(
        seen.iter()
            .all(|s| s.user == "anonymous" && s.path.ends_with("/kube-public/configmaps/cluster-info"))
    );
    assert_eq!(seen.len(), 5, "{:?}", seen.iter().map(super::fake_apiserver::Seen::line).collect::<Vec<_>>());

    // A machine in the middle changes cluster-info after it was signed.
    cp.fake.tamper_with_cluster_info(true);
    let run = cp.sb.kscript(&["run", "discover.rhai", "--journal", journal]).code(1);
    assert!(
        run.message().contains("cluster-info's signature for token id")
            && run.message().contains("cluster-info was altered, or the token is wrong"),
        "{}",
        run.stderr
    );
    cp.fake.tamper_with_cluster_info(false);

    // An expired token: the bootstrap signer dropped its signature.
    let (id, secret) = token.split_once('.').unwrap();
    let path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
    let mut s = cp.fake.object(&path).unwrap();
    s["data"]["expiration"] = Value::String(STANDARD.encode("2001-01-01T00:00:00Z"));
    cp.fake.put(&path, s);
    let run = cp.sb.kscript(&["run", "discover.rhai", "--journal", journal]).code(1);
    assert!(run.message().contains(&format!("holds no signature for token id `{id}`")), "{}", run.stderr);
    assert!(run.message().contains("kscript run token.rhai"), "{}", run.stderr);
    let _ = secret;

    // What the message advises: a new token, with token.rhai; discovery then succeeds.
    let fresh = "newtok.0123456789abcdef";
    let run =
        cp.run_script("token.rhai", &[], &["--set", &format!("bootstrapTokens=[{{token: {fresh}}}]")]).ok();
    assert!(
        run.stdout.contains(&format!("--token {fresh} --discovery-token-ca-cert-hash {pin}")),
        "{}",
        run.stdout
    );
    cp.sb.write("discover.rhai", &discovery_script(&cp, &server, fresh));
    let run = cp.sb.kscript(&["run", "discover.rhai", "--journal", journal]).ok();
    assert!(run.stdout.contains(&format!("found server={url} pin={pin} ca=true")), "{}", run.stdout);
}

/// No API server: discovery and the readiness wait name the address and the time waited.
#[test]
fn an_unreachable_api_server_is_named_with_the_time_waited() {
    let sb = Sandbox::new();
    // Nothing listens on a port bound then closed; a bound port that never accepts hangs.
    let closed = FakeApiServer::reserve().local_addr().unwrap().port();
    let silent = FakeApiServer::reserve();
    let silent_port = silent.local_addr().unwrap().port();
    let token = "abcdef.0123456789abcdef";
    let pin = format!("sha256:{}", "ab".repeat(32));
    sb.write(
        "discover.rhai",
        &format!(
            r#"stage("s", "x", [ step("d", "d", || {{
                try {{ discover_cluster_info("127.0.0.1:{closed}", "{token}", ["{pin}"], #{{ timeout: 2 }}); }}
                catch (e) {{ info(`closed: ${{e}}`); }}
                try {{ discover_cluster_info("127.0.0.1:{silent_port}", "{token}", ["{pin}"], #{{ timeout: 1 }}); }}
                catch (e) {{ info(`silent: ${{e}}`); }}
                try {{ discover_cluster_info("127.0.0.1:{closed}", "{token}", [], #{{}}); }}
                catch (e) {{ info(`no pins: ${{e}}`); }}
            }}) ]);"#
        ),
    );
    let journal = sb.path().join("j.jsonl");
    let run = sb.kscript(&["run", "discover.rhai", "--journal", journal.to_str().unwrap()]).ok();
    for want in [
        format!(
            "closed: discovery from 127.0.0.1:{closed}: cannot connect to the API server at https://127.0.0.1:{closed}:"
        ),
        format!(
            "silent: discovery from 127.0.0.1:{silent_port}: no answer from the API server at https://127.0.0.1:{silent_port} within 1s"
        ),
        "no pins: discover_cluster_info(): give the CA pin(s)".to_string(),
    ] {
        assert!(run.stdout.contains(&want), "no `{want}` in:\n{}", run.stdout);
    }

    // wait-control-plane with admin.conf naming a port where nothing answers.
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:{closed}\n    insecure-skip-tls-verify: true\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: u\n  name: c\ncurrent-context: c\nkind: Config\npreferences: {{}}\nusers:\n- name: u\n  user:\n    token: x\n"
    );
    sb.write("root/etc/kubernetes/admin.conf", &kubeconfig);
    sb.write(
        "wait.rhai",
        r#"stage("s", "x", [ step("w", "w", || { api_wait_ready("/etc/kubernetes/admin.conf", 1); }) ]);"#,
    );
    let run = sb
        .kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real")], &["run", "wait.rhai", "--root", "root"])
        .code(1);
    let message = run.message();
    assert!(
        message.contains(&format!("the API server at https://127.0.0.1:{closed} is not ready after 1s"))
            && message.contains("/livez"),
        "{}",
        run.stderr
    );
    drop(silent);
}

/// Stage 4 against the fake: Flannel's objects, with the pod CIDR from configuration, then the
/// node's Ready condition waited for.
#[test]
fn flannel_is_applied_and_the_node_turns_ready() {
    let cp = ControlPlane::up();
    cp.run(&["init/wait-control-plane", "init/cluster-admins"], &[]).ok();
    // The kubelet reports the node Ready once the network is up.
    let mut node = cp.fake.object("/api/v1/nodes/k8s-ctr").unwrap();
    node["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    cp.fake.put("/api/v1/nodes/k8s-ctr", node);
    let run = cp.run(&["network"], &["-v", "--set", "networking.podSubnet=10.32.0.0/16"]).ok();
    assert!(
        run.stdout.contains("+ api apply DaemonSet kube-flannel/kube-flannel-ds (created)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("= api wait-condition"), "{}", run.stdout);
    let cm = cp
        .fake
        .object("/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg")
        .expect("the ConfigMap was applied");
    let net: Value = serde_json::from_str(cm["data"]["net-conf.json"].as_str().unwrap()).unwrap();
    assert_eq!(net["Network"], "10.32.0.0/16");
    assert_eq!(net["Backend"]["Type"], "vxlan");
    let ds = cp
        .fake
        .object("/apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds")
        .expect("the DaemonSet was applied");
    assert_eq!(ds["spec"]["template"]["spec"]["serviceAccountName"], "flannel");
    // Applied again: nothing moves.
    let run = cp.run(&["network"], &["-v", "--set", "networking.podSubnet=10.32.0.0/16"]).ok();
    assert!(!run.stdout.contains("(created)") && !run.stdout.contains("(configured)"), "{}", run.stdout);
}

/// A worker joins by token discovery against the fake: the CA it writes is the cluster's, its
/// bootstrap kubeconfig names the discovered server; with the bootstrap token it reads the
/// cluster's kubeadm-config and kubelet-config and writes its kubelet files from them, not from
/// its own settings; a wrong pin is refused.
#[test]
fn a_worker_joins_by_token_discovery() {
    let cp = ControlPlane::up();
    cp.run(&["init/wait-control-plane", "init/cluster-admins", "init/bootstrap-token"], &[]).ok();
    // The cluster runs 1.33 (NodeLocalCRISocket off: the socket is a kubelet flag) with a
    // kubelet setting the worker's own configuration does not have.
    cp.run(&["init/upload-config"], &["--set", "kubernetesVersion=v1.33.0", "--set", "kubelet.maxPods=42"])
        .ok();
    // The worker joins with the command init's show-join printed, pasted into a shell.
    let shown = cp.run(&["init/show-join"], &[]).ok();
    let printed = shown
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("or with kscript: "))
        .unwrap_or_else(|| panic!("no kscript join command in:\n{}", shown.stdout))
        .to_string();
    cp.fake.forget_requests();
    let worker = Sandbox::new();
    let endpoint = format!("discovery.bootstrapToken.apiServerEndpoint=127.0.0.1:{}", cp.fake.port);
    let token = format!("discovery.bootstrapToken.token={}", cp.token());
    let pin = format!(
        "discovery.bootstrapToken.caCertHashes=[{}]",
        kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap()
    );
    let root = worker.root();
    let args = [
        "run",
        "worker.rhai",
        "--root",
        root.to_str().unwrap(),
        "--only",
        "join/discovery",
        "--only",
        "join/kubeconfig",
        "--only",
        "join/kubelet-start",
        "--set",
        "nodeRegistration.name=worker-1",
        "--set",
        &endpoint,
        "--set",
        &token,
    ];
    let real = [("KSCRIPT_TEST_CLUSTER_API", "real")];
    let pasted = format!(
        "'{}' {} --root '{}' --only join/discovery --only join/kubeconfig --only join/kubelet-start --set nodeRegistration.name=worker-1",
        env!("CARGO_BIN_EXE_kscript"),
        printed.strip_prefix("kscript ").expect("the command starts with kscript"),
        root.display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&pasted)
        .current_dir(worker.path())
        .env("KSCRIPT_TEST_CLUSTER_API", "real")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run::from(&out).ok();
    assert_eq!(fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap(), cp.sb.pki("ca.crt"));
    let boot = fs::read_to_string(root.join("etc/kubernetes/bootstrap-kubelet.conf")).unwrap();
    assert!(boot.contains(&format!("server: https://127.0.0.1:{}", cp.fake.port)), "{boot}");
    // Every request of the join, in order: discovery's two cluster-info fetches (anonymous:
    // first trusting nothing, then over verified TLS; the second step that discovers is
    // answered from the first), then the cluster's configuration with the bootstrap token.
    let requests: Vec<String> = cp.fake.seen().iter().map(|s| cp.stable(&s.line())).collect();
    insta::assert_snapshot!("join_requests", requests.join("\n"));
    let uploaded = cp.fake.object("/api/v1/namespaces/kube-system/configmaps/kubelet-config").unwrap();
    assert!(
        uploaded["metadata"].get("annotations").is_none(),
        "a KubeletConfiguration the user supplied is not marked as kubeadm's: {uploaded}"
    );
    let config = fs::read_to_string(root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert_eq!(config, uploaded["data"]["kubelet"].as_str().unwrap(), "the cluster's, unchanged at 1.33");
    assert!(config.contains("maxPods: 42"), "{config}");
    let flags = fs::read_to_string(root.join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(flags.contains("--container-runtime-endpoint=unix://"), "{flags}");
    assert!(
        flags.contains("--pod-infra-container-image=registry.k8s.io/pause:3.10"),
        "1.33's pause: {flags}"
    );
    assert!(!root.join("var/lib/kubelet/instance-config.yaml").exists(), "no per-node file at 1.33");
    let other = format!("discovery.bootstrapToken.caCertHashes=[sha256:{}]", "ab".repeat(32));
    let run = worker.kscript_env(&real, &[&args[..], &["--set", &other]].concat()).code(1);
    assert!(run.message().contains("sha256:abab"), "{}", run.stderr);
    // Rendering without an API server cannot discover: the error says what to give instead.
    let run = worker.kscript(&[&args[..], &["--set", &pin]].concat()).code(1);
    assert!(run.message().contains("give discovery.file.kubeConfigPath"), "{}", run.stderr);
}

/// wait-control-plane gives up after `timeouts.controlPlaneComponentHealthCheck` with a
/// diagnosis: the wait's error, the kubelet, the control-plane containers the runtime runs,
/// and what to run next.
#[test]
fn wait_control_plane_times_out_with_a_diagnosis() {
    let cp = ControlPlane::up();
    cp.fake.not_ready_for(usize::MAX);
    let run = cp
        .run(&["init/wait-control-plane"], &["--set", "timeouts.controlPlaneComponentHealthCheck=2s"])
        .code(1);
    // miette wraps the message: compare with runs of white space as one space.
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = flat(&run.message());
    for want in [
        "is not ready after 2s",
        "[-]poststarthook/rbac/bootstrap-roles failed",
        "The kubelet:\n  (not known here)",
        "Control-plane containers seen through the CRI (unix:///var/run/containerd/containerd.sock):\n  none: the kubelet has not started the static Pods",
        "Next: journalctl -u kubelet -n 100; crictl --runtime-endpoint unix:///var/run/containerd/",
        "ps -a; crictl logs <container id> (kube-apiserver, then etcd)",
    ] {
        assert!(message.contains(&flat(want)), "no `{want}` in:\n{}", run.stderr);
    }
    // With what a real node reports: the kubelet's status and the containers it started.
    cp.sb.write(
        "diagnose.rhai",
        r#"import "cluster" as cluster;
stage("s", "x", [ step("d", "d", || {
    let containers = [
        #{ name: "etcd", state: "running", attempt: 0, id: "0123456789abcdef0123" },
        #{ name: "kube-apiserver", state: "exited", attempt: 4, id: "fedcba9876543210fedc" },
        #{ name: "coredns", state: "running", attempt: 0, id: "aaaaaaaaaaaaaaaaaaaa" },
    ];
    info(cluster::control_plane_diagnosis("not ready", "● kubelet.service - active (running)", containers, "unix:///run/c.sock"));
    info(cluster::control_plane_diagnosis("not ready", (), "connection refused", "unix:///run/c.sock"));
}) ]);"#,
    );
    let run = cp.sb.kscript(&["run", "diagnose.rhai", "--root", "r"]).ok();
    for want in [
        "The kubelet:\n● kubelet.service - active (running)",
        "  etcd: running (attempt 0, id 0123456789abc)",
        "  kube-apiserver: exited (attempt 4, id fedcba9876543)",
        "the runtime did not answer: connection refused",
    ] {
        assert!(run.stdout.contains(want), "no `{want}` in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("coredns"), "only control-plane containers: {}", run.stdout);
}

/// token.rhai against the fake: create a token with its options, list it as `kubeadm token
/// list` does, delete it; deleting it again is an error naming it.
#[test]
fn token_create_list_delete() {
    let cp = ControlPlane::up();
    cp.run(&["init/wait-control-plane", "init/cluster-admins", "init/bootstrap-token"], &[]).ok();
    let token = "rack04.0123456789abcdef";
    let options = format!(
        "bootstrapTokens=[{{token: {token}, ttl: 2h0m0s, description: rack 4, usages: [authentication], groups: [system:bootstrappers:rack4]}}]"
    );
    let run = cp.run_script("token.rhai", &[], &["--set", &options]).ok();
    assert!(run.stdout.contains(&format!("--token {token}")), "{}", run.stdout);
    let secret = cp.fake.object("/api/v1/namespaces/kube-system/secrets/bootstrap-token-rack04").unwrap();
    assert_eq!(decoded(&secret, "description"), "rack 4");
    assert_eq!(decoded(&secret, "auth-extra-groups"), "system:bootstrappers:rack4");
    assert!(secret["data"].get("usage-bootstrap-signing").is_none());

    let run = cp.run_script("token.rhai", &["list"], &[]).ok();
    let table: Vec<&str> =
        run.stdout.lines().map(str::trim).filter(|l| l.contains("TOKEN") || l.contains('.')).collect();
    let header = table.iter().find(|l| l.starts_with("TOKEN")).unwrap();
    assert!(header.contains("TTL") && header.contains("EXTRA GROUPS"), "{}", run.stdout);
    let row = table.iter().find(|l| l.starts_with(token)).unwrap_or_else(|| panic!("{}", run.stdout));
    let cells: Vec<&str> = row.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert!(["1h", "2h"].contains(&cells[1]), "{row}");
    assert_eq!(&cells[3..], ["authentication", "rack 4", "system:bootstrappers:rack4"], "{row}");
    let init = cp.token();
    let row = table.iter().find(|l| l.starts_with(&init)).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(row.contains("authentication,signing") && row.contains("<none>"), "{row}");

    cp.run_script("token.rhai", &["delete"], &["--set", "token.delete=[rack04]"]).ok();
    assert!(cp.fake.object("/api/v1/namespaces/kube-system/secrets/bootstrap-token-rack04").is_none());
    let run = cp.run_script("token.rhai", &["list"], &[]).ok();
    assert!(!run.stdout.contains(token), "{}", run.stdout);
    let run = cp.run_script("token.rhai", &["delete"], &["--set", "token.delete=[rack04]"]).code(1);
    assert!(run.message().contains("there is no bootstrap token rack04"), "{}", run.stderr);
    let run = cp.run_script("token.rhai", &["delete"], &["--set", "token.delete=[nope]"]).code(1);
    assert!(run.message().contains("'nope' is not a token ID"), "{}", run.stderr);
}
