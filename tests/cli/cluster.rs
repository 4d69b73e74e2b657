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

use super::fake_apiserver::{FakeApiServer, Seen};
use super::{Run, Sandbox};

/// init's API steps, in the flow's order.
pub(super) const API_STEPS: &[&str] = &[
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
pub(super) struct ControlPlane {
    pub(super) sb: Sandbox,
    pub(super) fake: FakeApiServer,
    pub(super) args: Vec<String>,
}

impl ControlPlane {
    /// Renders the node (ECDSA keys: quick), starts the fake with its certificates, and
    /// registers its Node there, as the kubelet would.
    pub(super) fn up() -> Self {
        Self::up_with(&[])
    }

    /// The same, rendered with `extra` arguments too (`--set kubernetesVersion=v1.36.2`).
    pub(super) fn up_with(extra: &[&str]) -> Self {
        Self::up_on("127.0.0.1", extra)
    }

    /// The same with the node's API server (and etcd) on `ip`, a loopback address.
    pub(super) fn up_on(ip: &str, extra: &[&str]) -> Self {
        let (sb, args, listener) = Self::render_on(ip, extra);
        Self::serve(sb, args, listener)
    }

    /// Renders the node with its API server on `ip` (a loopback address), at a port held by
    /// the listener returned, not served yet.
    fn render_on(ip: &str, extra: &[&str]) -> (Sandbox, Vec<String>, std::net::TcpListener) {
        let listener = FakeApiServer::reserve_on(ip);
        let port = listener.local_addr().unwrap().port();
        let args: Vec<String> = [
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            &format!("localAPIEndpoint.advertiseAddress={ip}"),
            "--set",
            &format!("localAPIEndpoint.bindPort={port}"),
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let sb = Sandbox::new();
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        sb.render("control-plane.rhai", &all).ok();
        (sb, args, listener)
    }

    /// Serves the rendered node's API with the fake on `listener`.
    fn serve(sb: Sandbox, args: Vec<String>, listener: std::net::TcpListener) -> Self {
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
    pub(super) fn run_script(&self, script: &str, steps: &[&str], extra: &[&str]) -> Run {
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
    assert!(seen.iter().all(|s| s.status < 300), "{:?}", seen.iter().map(Seen::line).collect::<Vec<_>>());
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

/// One `discover_cluster_info` in a script of its own against the fake, as a real run (the
/// journal kept in the sandbox): what it printed, and the requests the fake got meanwhile.
fn discover_once(cp: &ControlPlane, token: &str, pins: &[&str], options: &str) -> (Run, Vec<Seen>) {
    let pins: Vec<String> = pins.iter().map(|p| format!("\"{p}\"")).collect();
    cp.sb.write(
        "discover.rhai",
        &format!(
            r#"stage("join", "discovery", [ step("discover", "token discovery", || {{
    let found = discover_cluster_info("127.0.0.1:{port}", "{token}", [{pins}], {options});
    info(`found server=${{found.server}} pin=${{found.pin}} ca=${{found.ca_pem.starts_with("-----BEGIN CERTIFICATE-----")}}`);
}}) ]);"#,
            port = cp.fake.port,
            pins = pins.join(", "),
        ),
    );
    let journal = cp.sb.path().join("discover.jsonl");
    cp.fake.forget_requests();
    let run = cp.sb.kscript(&["run", "discover.rhai", "--journal", journal.to_str().unwrap()]);
    (run, cp.fake.seen())
}

fn lines(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

/// Every request was an anonymous GET of cluster-info.
fn only_cluster_info(seen: &[Seen]) -> bool {
    seen.iter().all(|s| s.user == "anonymous" && s.path.ends_with("/kube-public/configmaps/cluster-info"))
}

/// Token discovery against the fake: the CA is found and checked, with two fetches. What can
/// never get better ends on the first answer, with the default time of 5 minutes: a wrong
/// secret (the signature does not verify), a pin that does not match (both hashes named), a
/// cluster-info altered after signing. A token the cluster has not signed for (unknown, or
/// expired) is waited for, then named with what to do.
#[test]
fn token_discovery_against_the_fake() {
    let cp = ControlPlane::up();
    cp.run(API_STEPS, &[]).ok();
    let token = cp.token();
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    let server = format!("127.0.0.1:{}", cp.fake.port);
    let url = format!("https://{server}");

    let (run, seen) = discover_once(&cp, &token, &[&pin], "#{}");
    assert!(run.stdout.contains(&format!("found server={url} pin={pin} ca=true")), "{}", run.stdout);
    assert_eq!(seen.len(), 2, "first trusting nothing, then over verified TLS: {:?}", lines(&seen));
    assert!(only_cluster_info(&seen) && seen.iter().all(|s| s.status == 200), "{:?}", lines(&seen));

    // A wrong secret: the signature does not verify. Refused on the first answer.
    let (id, secret) = token.split_once('.').unwrap();
    let last = if secret.ends_with('a') { 'b' } else { 'a' };
    let wrong = format!("{id}.{}{last}", &secret[..15]);
    let (run, seen) = discover_once(&cp, &wrong, &[&pin], "#{}");
    let run = run.code(1);
    assert!(
        run.message().contains(&format!(
            "discovery from {server}: cluster-info's signature for token id `{id}` is refused: the signature does not match"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(seen.len(), 1, "{:?}", lines(&seen));

    // A pin that does not match: refused on the first answer, naming both hashes.
    let other = format!("sha256:{}", "ab".repeat(32));
    let (run, seen) = discover_once(&cp, &token, &[&other], "#{}");
    let run = run.code(1);
    assert!(
        run.message().contains(&format!(
            "discovery from {server}: the cluster CA does not match the pins: expected {other}, found {pin}"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(seen.len(), 1, "{:?}", lines(&seen));

    // A machine in the middle changes cluster-info after it was signed: refused at once.
    cp.fake.tamper_with_cluster_info(true);
    let (run, seen) = discover_once(&cp, &token, &[&pin], "#{}");
    let run = run.code(1);
    assert!(
        run.message().contains("cluster-info's signature for token id")
            && run.message().contains("cluster-info was altered, or the token is wrong"),
        "{}",
        run.stderr
    );
    assert_eq!(seen.len(), 1, "{:?}", lines(&seen));
    cp.fake.tamper_with_cluster_info(false);

    // A token the cluster has not signed for: asked again until the time is up, then named.
    let (run, seen) = discover_once(&cp, "zzzzzz.0123456789abcdef", &[&pin], "#{ timeout: 1 }");
    let run = run.code(1);
    assert!(
        run.message().contains(&format!(
            "discovery from {server}: no verified cluster-info after 1s: cluster-info holds no signature for token id `zzzzzz`"
        )) && run.message().contains("kscript run token.rhai"),
        "{}",
        run.stderr
    );
    assert!(seen.len() >= 2 && only_cluster_info(&seen), "asked again: {:?}", lines(&seen));

    // An expired token: the bootstrap signer dropped its signature.
    let path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
    let mut s = cp.fake.object(&path).unwrap();
    s["data"]["expiration"] = Value::String(STANDARD.encode("2001-01-01T00:00:00Z"));
    cp.fake.put(&path, s);
    let (run, _) = discover_once(&cp, &token, &[&pin], "#{ timeout: 1 }");
    let run = run.code(1);
    assert!(run.message().contains(&format!("holds no signature for token id `{id}`")), "{}", run.stderr);
    assert!(run.message().contains("kscript run token.rhai"), "{}", run.stderr);

    // What the message advises: a new token, with token.rhai; discovery then succeeds.
    let fresh = "newtok.0123456789abcdef";
    let run =
        cp.run_script("token.rhai", &[], &["--set", &format!("bootstrapTokens=[{{token: {fresh}}}]")]).ok();
    assert!(
        run.stdout.contains(&format!("--token {fresh} --discovery-token-ca-cert-hash {pin}")),
        "{}",
        run.stdout
    );
    let (run, _) = discover_once(&cp, fresh, &[&pin], "#{}");
    assert!(run.ok().stdout.contains(&format!("found server={url} pin={pin} ca=true")));
}

/// A cluster-info the bootstrap signer has not signed yet, and a server answering 503 while
/// it starts: discovery asks again (a line says why) and succeeds once it can; the requests
/// are counted, not timed.
#[test]
fn discovery_waits_for_a_late_signature_and_a_server_still_starting() {
    let cp = ControlPlane::up();
    cp.run(API_STEPS, &[]).ok();
    let token = cp.token();
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    let url = format!("https://127.0.0.1:{}", cp.fake.port);

    cp.fake.unsigned_for(3);
    let (run, seen) = discover_once(&cp, &token, &[&pin], "#{}");
    let run = run.ok();
    assert!(run.stdout.contains(&format!("found server={url} pin={pin} ca=true")), "{}", run.stdout);
    assert_eq!(seen.len(), 3 + 2, "three unsigned answers, then the two fetches: {:?}", lines(&seen));
    assert!(only_cluster_info(&seen) && seen.iter().all(|s| s.status == 200), "{:?}", lines(&seen));

    cp.fake.unavailable_for(4);
    let (run, seen) = discover_once(&cp, &token, &[&pin], "#{}");
    let run = run.ok();
    assert!(run.stdout.contains(&format!("found server={url} pin={pin} ca=true")), "{}", run.stdout);
    let codes: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(codes, [503, 503, 503, 503, 200, 200], "{:?}", lines(&seen));

    // Both at once, then a pin mismatch: still refused on its first answer, once there is one.
    cp.fake.unavailable_for(2);
    cp.fake.unsigned_for(1);
    let other = format!("sha256:{}", "cd".repeat(32));
    let (run, seen) = discover_once(&cp, &token, &[&other], "#{}");
    let run = run.code(1);
    assert!(run.message().contains(&format!("expected {other}, found {pin}")), "{}", run.stderr);
    let codes: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(codes, [503, 503, 200, 200], "two 503s, one unsigned answer, one signed: {:?}", lines(&seen));
}

/// No API server: discovery (once its time is up: a short one here) and the readiness wait
/// name the address, the time waited and the last reason.
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
            "closed: discovery from 127.0.0.1:{closed}: no verified cluster-info after 2s: cannot connect to the API server at https://127.0.0.1:{closed}: Connection refused"
        ),
        format!(
            "silent: discovery from 127.0.0.1:{silent_port}: no verified cluster-info after 1s: no answer from the API server at https://127.0.0.1:{silent_port} within 1s"
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
    // A pin that does not match ends the join on the first answer, naming both hashes.
    let other = format!("discovery.bootstrapToken.caCertHashes=[sha256:{}]", "ab".repeat(32));
    cp.fake.forget_requests();
    let run = worker.kscript_env(&real, &[&args[..], &["--set", &other]].concat()).code(1);
    let actual = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    assert!(
        run.message().contains(&format!("expected sha256:{}, found {actual}", "ab".repeat(32))),
        "{}",
        run.stderr
    );
    assert_eq!(cp.fake.seen().len(), 1, "{:?}", lines(&cp.fake.seen()));
    // Rendering without an API server cannot discover: the error says what to give instead.
    let run = worker.kscript(&[&args[..], &["--set", &pin]].concat()).code(1);
    assert!(run.message().contains("give discovery.file.kubeConfigPath"), "{}", run.stderr);
}

/// A kscript run in the background, its stderr read line by line as it comes, so that a test
/// can wait for what it says (a condition, not a time) before changing the world under it.
struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// The stderr lines read so far.
    stderr: Vec<String>,
}

impl Background {
    /// `kscript ARGS` in `sb`, its API calls sent for real.
    fn start(sb: &Sandbox, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader, Read};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kscript"))
            .args(args)
            .env("KSCRIPT_TEST_CLUSTER_API", "real")
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .current_dir(sb.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            text
        });
        let (tx, lines) = std::sync::mpsc::channel();
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, stdout: Some(stdout), stderr: Vec::new() }
    }

    /// Waits until it prints `line` on stderr (for two minutes at most: then the test fails).
    fn wait_for_line(&mut self, line: &str) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_mins(2);
        while !self.stderr.iter().any(|l| l == line) {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            let Ok(next) = self.lines.recv_timeout(left) else {
                let _ = self.child.kill();
                panic!("no `{line}` on stderr:\n{}", self.stderr.join("\n"));
            };
            self.stderr.push(next);
        }
    }

    /// Waits for it to end (five minutes at most); its exit status, stdout, and all of stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, Vec<String>) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_mins(5);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > give_up {
                let _ = self.child.kill();
                panic!("it did not finish:\n{}", self.stderr.join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        self.stderr.extend(self.lines.iter());
        let stdout = self.stdout.take().unwrap().join().unwrap();
        (status, stdout, self.stderr)
    }
}

/// `worker.rhai`'s discovery, bootstrap kubeconfig and kubelet-start, rendered into `worker`
/// against the API server at `endpoint`, in the background.
fn background_worker(worker: &Sandbox, endpoint: &str, token: &str, pin: &str) -> Background {
    let root = worker.root();
    let endpoint = format!("discovery.bootstrapToken.apiServerEndpoint={endpoint}");
    let token = format!("discovery.bootstrapToken.token={}", token.trim());
    let pin = format!("discovery.bootstrapToken.caCertHashes=[{pin}]");
    Background::start(
        worker,
        &[
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
            "--set",
            &pin,
        ],
    )
}

/// A worker started before its control plane: the API server's port refuses connections, then
/// the server comes up and init makes its RBAC, configuration, token and cluster-info while the
/// worker waits. The worker joins in one run, saying once per change why it waits. Nothing is
/// timed: the test waits for the worker's line about the refused connection before starting
/// the server, then for the worker to finish.
#[test]
fn a_worker_started_before_its_control_plane_joins_once_it_is_up() {
    // A loopback address of its own, so that no other test takes the port meanwhile.
    let (sb, args, listener) = ControlPlane::render_on("127.0.31.1", &[]);
    let port = listener.local_addr().unwrap().port();
    drop(listener); // nothing listens: connections are refused
    let token = fs::read_to_string(sb.root().join("var/lib/kscript/bootstrap-token")).unwrap();
    let pin = kscript::pki::ca_pin(&fs::read_to_string(sb.root().join("etc/kubernetes/pki/ca.crt")).unwrap())
        .unwrap();
    let worker = Sandbox::new();
    let mut run = background_worker(&worker, &format!("127.0.31.1:{port}"), &token, &pin);
    let refused = format!(
        "  ... waiting: discovery from 127.0.31.1:{port}; API server not answering: connection refused"
    );
    run.wait_for_line(&refused);

    // The control plane comes up on that port, and init makes what join needs.
    let listener = std::net::TcpListener::bind(("127.0.31.1", port)).unwrap();
    let cp = ControlPlane::serve(sb, args, listener);
    cp.run(
        &["init/wait-control-plane", "init/cluster-admins", "init/upload-config", "init/bootstrap-token"],
        &[],
    )
    .ok();

    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "the worker failed:\n{stdout}\n{}", stderr.join("\n"));
    let root = worker.root();
    assert_eq!(fs::read_to_string(root.join("etc/kubernetes/pki/ca.crt")).unwrap(), cp.sb.pki("ca.crt"));
    assert!(root.join("var/lib/kubelet/config.yaml").exists(), "{stdout}");
    // One line per reason, never the same twice in a row.
    let waits: Vec<&String> = stderr.iter().filter(|l| l.starts_with("  ... waiting: discovery")).collect();
    assert!(waits.windows(2).all(|w| w[0] != w[1]), "{}", stderr.join("\n"));
    assert_eq!(waits.iter().filter(|l| **l == &refused).count(), 1, "{}", stderr.join("\n"));
    // The join went on from where discovery stopped waiting: its reads with the bootstrap token.
    let seen = cp.fake.seen();
    assert!(
        seen.iter().any(|s| s.path.ends_with("/configmaps/kubelet-config") && s.status == 200),
        "{:?}",
        lines(&seen)
    );
}

/// Join's reads with the bootstrap token while the cluster's RBAC for them is not there yet:
/// discovery passes, reading kube-system/kubeadm-config is forbidden (403), and the worker asks
/// again, saying why, until init's upload-config makes its Role and `RoleBinding`; then it joins.
#[test]
fn join_reads_wait_for_the_rbac_that_allows_them() {
    let cp = ControlPlane::up();
    cp.run(&["init/wait-control-plane", "init/cluster-admins", "init/bootstrap-token"], &[]).ok();
    let pin = kscript::pki::ca_pin(&cp.sb.pki("ca.crt")).unwrap();
    let worker = Sandbox::new();
    let mut run = background_worker(&worker, &format!("127.0.0.1:{}", cp.fake.port), &cp.token(), &pin);
    run.wait_for_line(
        "  ... waiting: reading ConfigMap kube-system/kubeadm-config (/etc/kubernetes/bootstrap-kubelet.conf); forbidden for now (403): the RBAC rules may not be in place yet",
    );
    cp.run(&["init/upload-config"], &[]).ok();
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "the worker failed:\n{stdout}\n{}", stderr.join("\n"));
    assert!(worker.root().join("var/lib/kubelet/config.yaml").exists(), "{stdout}");
    let reads: Vec<u16> = cp
        .fake
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/configmaps/kubeadm-config") && s.user.starts_with("system:bootstrap:"))
        .map(|s| s.status)
        .collect();
    assert!(reads.len() >= 2 && reads[0] == 403 && reads.last() == Some(&200), "{reads:?}");

    // Without the time to wait (kubernetesAPICall of 1s), a read still forbidden fails naming why.
    let other = ControlPlane::up();
    other.run(&["init/wait-control-plane", "init/cluster-admins", "init/bootstrap-token"], &[]).ok();
    let pin = kscript::pki::ca_pin(&other.sb.pki("ca.crt")).unwrap();
    let worker = Sandbox::new();
    let root = worker.root();
    let run = worker
        .kscript_env(
            &[("KSCRIPT_TEST_CLUSTER_API", "real")],
            &[
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
                &format!("discovery.bootstrapToken.apiServerEndpoint=127.0.0.1:{}", other.fake.port),
                "--set",
                &format!("discovery.bootstrapToken.token={}", other.token()),
                "--set",
                &format!("discovery.bootstrapToken.caCertHashes=[{pin}]"),
                "--set",
                "timeouts.kubernetesAPICall=1s",
            ],
        )
        .code(1);
    // miette wraps the message anywhere, even inside a path: compared without white space.
    let bare = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        bare(&run.message()).contains(&bare("API get ConfigMap kube-system/kubeadm-config (/etc/kubernetes/bootstrap-kubelet.conf): still failing after 1s: get ConfigMap kube-system/kubeadm-config: forbidden by the API server")),
        "{}",
        run.stderr
    );
}

/// The discovery timeout of a kubeadm configuration reaches the wait: v1beta4's
/// `timeouts.discovery`, v1beta3's `discovery.timeout`; when it runs out against a server that
/// never answers, the error names the server, the time and the last reason.
#[test]
fn the_configured_discovery_timeout_is_the_one_waited() {
    let closed = FakeApiServer::reserve_on("127.0.31.2").local_addr().unwrap().port();
    let worker = Sandbox::new();
    let pin = format!("sha256:{}", "ab".repeat(32));
    for (file, text, waited) in [
        (
            "v1beta4.yaml",
            format!(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 127.0.31.2:{closed}\n    caCertHashes: [{pin}]\ntimeouts:\n  discovery: 2s\n"
            ),
            "2s",
        ),
        (
            "v1beta3.yaml",
            format!(
                "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 127.0.31.2:{closed}\n    caCertHashes: [{pin}]\n  timeout: 1s\n"
            ),
            "1s",
        ),
    ] {
        worker.write(file, &text);
        let run = worker
            .kscript_env(
                &[("KSCRIPT_TEST_CLUSTER_API", "real")],
                &["run", "worker.rhai", "--root", "root", "--config", file, "--only", "join/discovery"],
            )
            .code(1);
        let want = format!(
            "discovery from 127.0.31.2:{closed}: no verified cluster-info after {waited}: cannot connect to the API server at https://127.0.31.2:{closed}: Connection refused"
        );
        let bare = |s: &str| s.split_whitespace().collect::<String>();
        assert!(bare(&run.message()).contains(&bare(&want)), "no `{want}` in:\n{}", run.stderr);
    }
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

/// `api_get` with a timeout gives each try a share of it: against an API server that accepts
/// connections and never answers, the read fails naming a try of 1s, not the 30s a single read
/// waits without a timeout.
#[test]
fn a_read_with_a_timeout_gives_each_try_a_share_of_it() {
    // The rendered node's admin.conf names a port that listens and is never served.
    let (sb, _args, silent) = ControlPlane::render_on("127.0.0.1", &[]);
    sb.write(
        "read.rhai",
        r#"stage("s", "x", [ step("r", "r", || {
    api_get("/etc/kubernetes/admin.conf", "v1", "ConfigMap", "kube-system", "kubeadm-config", #{ timeout: 1 });
}) ]);"#,
    );
    let root = sb.root();
    let run = sb
        .kscript_env(
            &[("KSCRIPT_TEST_CLUSTER_API", "real")],
            &["run", "read.rhai", "--root", root.to_str().unwrap()],
        )
        .code(1);
    let bare = |s: &str| s.split_whitespace().collect::<String>();
    let message = bare(&run.message());
    assert!(message.contains(&bare("still failing after 1s")), "{}", run.stderr);
    assert!(
        message.contains(&bare("no answer from the API")) && message.contains("within1s;"),
        "{}",
        run.stderr
    );
    drop(silent);
}
