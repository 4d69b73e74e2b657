//! The control plane's PKI and kubeconfigs: checked against the spec, the real `openssl`, a
//! real etcd, and the kube crate's client.

use std::fs;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kscript::pki::{self, CertInfo, Eku, KeyAlgorithm, PrivateKey};

use super::fake_apiserver::FakeApiServer;
use super::{KillOnDrop, Run, Sandbox, assert_same, etcdctl_with, fingerprint, wait_until_etcd_healthy};

/// The settings every PKI test starts from: a fixed node name and address.
const NODE: &[&str] =
    &["--set", "nodeRegistration.name=k8s-ctr", "--set", "localAPIEndpoint.advertiseAddress=192.168.56.10"];

/// The 22 files of pki.md, relative to /etc/kubernetes/pki.
pub(super) const PKI_FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "apiserver-kubelet-client.crt",
    "apiserver-kubelet-client.key",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "front-proxy-client.crt",
    "front-proxy-client.key",
    "sa.key",
    "sa.pub",
    "etcd/ca.crt",
    "etcd/ca.key",
    "etcd/server.crt",
    "etcd/server.key",
    "etcd/peer.crt",
    "etcd/peer.key",
    "etcd/healthcheck-client.crt",
    "etcd/healthcheck-client.key",
    "apiserver-etcd-client.crt",
    "apiserver-etcd-client.key",
];

const KUBECONFIGS: &[&str] =
    &["admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"];

/// (leaf, its CA) pairs.
const LEAVES: &[(&str, &str)] = &[
    ("apiserver", "ca"),
    ("apiserver-kubelet-client", "ca"),
    ("front-proxy-client", "front-proxy-ca"),
    ("etcd/server", "etcd/ca"),
    ("etcd/peer", "etcd/ca"),
    ("etcd/healthcheck-client", "etcd/ca"),
    ("apiserver-etcd-client", "etcd/ca"),
];

fn render_cp(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = NODE.to_vec();
    args.extend_from_slice(extra);
    sb.render("control-plane.rhai", &args)
}

fn pki_dir(sb: &Sandbox) -> PathBuf {
    sb.root().join("etc/kubernetes/pki")
}

fn cert(sb: &Sandbox, name: &str) -> CertInfo {
    CertInfo::from_pem(&fs::read_to_string(pki_dir(sb).join(format!("{name}.crt"))).unwrap()).unwrap()
}

#[track_caller]
fn openssl_verify(ca: &Path, leaf: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(leaf)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The embedded client certificate of a kubeconfig.
fn kubeconfig_cert(path: &Path) -> String {
    use base64::Engine as _;
    let kc = pki::Kubeconfig::from_yaml(&fs::read_to_string(path).unwrap()).unwrap();
    let data = kc.users[0].user.client_certificate_data.clone().expect("embedded client certificate");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
}

/// Every PKI file and kubeconfig as a parsed summary: certificates by subject, SANs, usages
/// and validity length; keys by algorithm; kubeconfigs with credentials redacted.
fn pki_snapshot(root: &Path) -> String {
    let dir = root.join("etc/kubernetes/pki");
    let mut out = String::new();
    for f in PKI_FILES {
        let p = dir.join(f);
        let text = fs::read_to_string(&p).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&p).unwrap().permissions()) & 0o7777;
        out.push_str(&format!("=== pki/{f} ({mode:04o})\n"));
        if f.ends_with(".crt") {
            out.push_str(&pki::summary(&text).unwrap());
        } else if f.ends_with(".pub") {
            assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"));
            out.push_str("[PUBLIC KEY]");
        } else {
            out.push_str(&PrivateKey::from_pem(&text).unwrap().placeholder());
        }
        out.push('\n');
    }
    for k in KUBECONFIGS {
        let p = root.join("etc/kubernetes").join(k);
        let kc = pki::Kubeconfig::from_yaml(&fs::read_to_string(&p).unwrap()).unwrap();
        out.push_str(&format!("=== {k} (0600)\n{}", kc.redacted().to_yaml().unwrap()));
        out.push_str(&format!("--- client certificate\n{}\n", pki::summary(&kubeconfig_cert(&p)).unwrap()));
    }
    out
}

#[test]
fn control_plane_pki_matches_the_spec() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    let dir = pki_dir(&sb);
    let mut found: Vec<String> = Vec::new();
    for entry in walk(&dir) {
        found.push(entry.strip_prefix(&dir).unwrap().display().to_string());
    }
    found.sort();
    let mut want: Vec<String> = PKI_FILES.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(found, want, "the pki folder holds exactly the 22 files");
    for (leaf, ca) in LEAVES {
        openssl_verify(&dir.join(format!("{ca}.crt")), &dir.join(format!("{leaf}.crt")));
    }
    for k in KUBECONFIGS {
        let client = sb.path().join(format!("{k}.crt"));
        fs::write(&client, kubeconfig_cert(&sb.root().join("etc/kubernetes").join(k))).unwrap();
        openssl_verify(&dir.join("ca.crt"), &client);
    }
    // The facts of pki.md, spelled out.
    let api = cert(&sb, "apiserver");
    assert_eq!(api.subject_cn, "kube-apiserver");
    assert_eq!(
        api.dns_names,
        [
            "k8s-ctr",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local"
        ]
    );
    assert_eq!(api.ip_addresses, ["10.96.0.1".parse::<IpAddr>().unwrap(), "192.168.56.10".parse().unwrap()]);
    assert_eq!(api.extended_key_usages, [Eku::ServerAuth]);
    assert!(api.key_usage_critical);
    let etcd = cert(&sb, "etcd/server");
    assert_eq!(etcd.subject_cn, "k8s-ctr");
    assert_eq!(etcd.dns_names, ["k8s-ctr", "localhost"]);
    assert_eq!(
        etcd.ip_addresses,
        ["192.168.56.10".parse::<IpAddr>().unwrap(), "127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]
    );
    assert_eq!(etcd.extended_key_usages, [Eku::ServerAuth, Eku::ClientAuth]);
    let ca = cert(&sb, "ca");
    assert!(ca.is_ca && ca.dns_names == ["kubernetes"]);
    assert_eq!(ca.validity(), Duration::from_hours(3650 * 24) + Duration::from_mins(5));
    assert_eq!(api.validity(), Duration::from_hours(365 * 24) + Duration::from_mins(5));
    for (name, o) in [
        ("apiserver-kubelet-client", "system:masters"),
        ("etcd/healthcheck-client", "system:masters"),
        ("apiserver-etcd-client", "system:masters"),
    ] {
        assert_eq!(cert(&sb, name).organizations, [o], "{name}");
    }
    assert_eq!(
        CertInfo::from_pem(&kubeconfig_cert(&sb.root().join("etc/kubernetes/admin.conf")))
            .unwrap()
            .organizations,
        ["kubeadm:cluster-admins"]
    );
    assert_eq!(
        CertInfo::from_pem(&kubeconfig_cert(&sb.root().join("etc/kubernetes/kubelet.conf")))
            .unwrap()
            .subject_cn,
        "system:node:k8s-ctr"
    );
    insta::assert_snapshot!("pki_default", pki_snapshot(&sb.root()));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn pki_follows_non_default_configuration() {
    let sb = Sandbox::new();
    sb.write(
        "cluster.yaml",
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: k8s-api.example.internal:8443\nencryptionAlgorithm: ECDSA-P256\ncertificateValidityPeriod: 720h0m0s\ncaCertificateValidityPeriod: 43800h0m0s\nnetworking:\n  serviceSubnet: 10.100.0.0/16\n  dnsDomain: corp.local\napiServer:\n  certSANs: [api.example.com, 203.0.113.7]\netcd:\n  local:\n    serverCertSANs: [etcd.example.com]\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: fd00::10\nnodeRegistration:\n  name: cp-1\n",
    );
    sb.kscript(&["run", "control-plane.rhai", "--root", "root", "--config", "cluster.yaml"]).ok();
    let api = cert(&sb, "apiserver");
    assert_eq!(
        api.dns_names,
        [
            "cp-1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.corp.local",
            "k8s-api.example.internal",
            "api.example.com"
        ]
    );
    assert_eq!(
        api.ip_addresses,
        [
            "10.100.0.1".parse::<IpAddr>().unwrap(),
            "fd00::10".parse().unwrap(),
            "203.0.113.7".parse().unwrap()
        ]
    );
    assert_eq!(api.key_algorithm, Some(KeyAlgorithm::EcdsaP256));
    assert_eq!(api.validity(), Duration::from_hours(720) + Duration::from_mins(5));
    assert_eq!(cert(&sb, "ca").validity(), Duration::from_hours(43800) + Duration::from_mins(5));
    assert!(cert(&sb, "etcd/server").dns_names.contains(&"etcd.example.com".to_string()));
    assert!(cert(&sb, "etcd/peer").ip_addresses.contains(&"fd00::10".parse().unwrap()));
    let key = fs::read_to_string(pki_dir(&sb).join("apiserver.key")).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "kubeadm writes EC keys as SEC1");
    for (leaf, ca) in LEAVES {
        openssl_verify(&pki_dir(&sb).join(format!("{ca}.crt")), &pki_dir(&sb).join(format!("{leaf}.crt")));
    }
    // Clients go through the endpoint; the local components talk to their own API server.
    let admin = fs::read_to_string(sb.root().join("etc/kubernetes/admin.conf")).unwrap();
    assert!(admin.contains("server: https://k8s-api.example.internal:8443"), "{admin}");
    let scheduler = fs::read_to_string(sb.root().join("etc/kubernetes/scheduler.conf")).unwrap();
    assert!(scheduler.contains("server: https://[fd00::10]:6443"), "{scheduler}");
}

#[test]
fn existing_material_is_reused_and_mismatches_refused() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    let before = fingerprint(&sb.root());
    render_cp(&sb, &["--detailed-exitcode"]).ok();
    assert_same(&before, &fingerprint(&sb.root()), "a rerun rewrote PKI files");

    // A different advertise address: the existing apiserver certificate lacks it.
    let run = sb
        .render(
            "control-plane.rhai",
            &[
                "--set",
                "nodeRegistration.name=k8s-ctr",
                "--set",
                "localAPIEndpoint.advertiseAddress=192.168.56.99",
            ],
        )
        .code(1);
    assert!(
        run.stderr.contains("/etc/kubernetes/pki/apiserver.crt exists but lacks the SANs")
            && run.stderr.contains("IP:192.168.56.99"),
        "{}",
        run.stderr
    );

    // External CA mode: without ca.key, existing leaves and kubeconfigs are accepted (the
    // controller manager's manifest changes: it cannot sign without the key).
    fs::remove_file(pki_dir(&sb).join("ca.key")).unwrap();
    let before = fingerprint(&sb.root());
    render_cp(&sb, &["--only", "init/certs", "--only", "init/kubeconfig"]).ok();
    assert_same(&before, &fingerprint(&sb.root()), "external CA mode rewrote files");
    // ...and a missing one cannot be made.
    fs::remove_file(pki_dir(&sb).join("apiserver.crt")).unwrap();
    fs::remove_file(pki_dir(&sb).join("apiserver.key")).unwrap();
    let run = render_cp(&sb, &[]).code(1);
    assert!(run.stderr.contains("external CA mode"), "{}", run.stderr);

    // A leaf signed by another CA is refused, not replaced.
    let other = Sandbox::new();
    render_cp(&other, &[]).ok();
    fs::copy(pki_dir(&other).join("front-proxy-client.crt"), pki_dir(&sb).join("front-proxy-client.crt"))
        .unwrap();
    fs::copy(pki_dir(&other).join("front-proxy-client.key"), pki_dir(&sb).join("front-proxy-client.key"))
        .unwrap();
    let run = sb
        .render("control-plane.rhai", &[NODE, &["--only", "init/certs/front-proxy-client"][..]].concat())
        .code(1);
    assert!(run.message().contains("front-proxy-client.crt exists but is not signed by"), "{}", run.stderr);
}

#[test]
fn renew_changes_leaves_only_and_keeps_them_verifying() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    let dir = pki_dir(&sb);
    let read = |f: &str| fs::read(dir.join(f)).unwrap();
    let cas: Vec<Vec<u8>> = ["ca.crt", "ca.key", "etcd/ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"]
        .iter()
        .map(|f| read(f))
        .collect();
    let old_api = read("apiserver.crt");
    let old_admin = fs::read(sb.root().join("etc/kubernetes/admin.conf")).unwrap();
    // Without naming it, renew does not run.
    let run = sb.kscript(&[&["run", "certs.rhai", "--root", "root"][..], NODE].concat()).ok();
    assert!(!run.stdout.contains("renew/"), "{}", run.stdout);
    assert_eq!(read("apiserver.crt"), old_api);
    let run =
        sb.kscript(&[&["run", "certs.rhai", "--root", "root", "--only", "renew"][..], NODE].concat()).ok();
    assert!(run.stdout.contains("changed  renew/apiserver"), "{}", run.stdout);
    let after: Vec<Vec<u8>> = ["ca.crt", "ca.key", "etcd/ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub"]
        .iter()
        .map(|f| read(f))
        .collect();
    assert_eq!(cas, after, "renew touched a CA or the service-account keys");
    assert_ne!(read("apiserver.crt"), old_api);
    assert_ne!(fs::read(sb.root().join("etc/kubernetes/admin.conf")).unwrap(), old_admin);
    let before = CertInfo::from_pem(&String::from_utf8(old_api).unwrap()).unwrap();
    let now = cert(&sb, "apiserver");
    assert_eq!(
        (before.subject, before.dns_names, before.ip_addresses),
        (now.subject, now.dns_names, now.ip_addresses)
    );
    for (leaf, ca) in LEAVES {
        openssl_verify(&dir.join(format!("{ca}.crt")), &dir.join(format!("{leaf}.crt")));
    }
    // One by name.
    let old = read("etcd/peer.crt");
    let old_server = read("etcd/server.crt");
    sb.kscript(&[&["run", "certs.rhai", "--root", "root", "--only", "renew/etcd-peer"][..], NODE].concat())
        .ok();
    assert_ne!(read("etcd/peer.crt"), old);
    assert_eq!(read("etcd/server.crt"), old_server);
    // The expiration table lists every leaf and kubeconfig.
    let run = sb
        .kscript(&[&["run", "certs.rhai", "--root", "root", "--only", "check-expiration"][..], NODE].concat())
        .ok();
    for name in ["admin.conf", "apiserver-etcd-client", "etcd-peer", "front-proxy-ca", "364d", "9y"] {
        assert!(run.stdout.contains(name), "check-expiration lacks {name}:\n{}", run.stdout);
    }
}

/// A real etcd from Debian's packages, serving with the generated certificates.
struct Etcd {
    _process: KillOnDrop,
    endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn etcdctl(endpoint: &str, ca: &Path, cert: &Path, key: &Path) -> std::process::Output {
    etcdctl_with(endpoint, [ca, cert, key], &["endpoint", "health"])
}

fn start_etcd(sb: &Sandbox) -> Etcd {
    let pki = pki_dir(sb).join("etcd");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{client}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "k8s-ctr", "--data-dir"])
        .arg(sb.path().join("etcd-data"))
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("k8s-ctr={peer_url}")])
        .arg("--cert-file")
        .arg(pki.join("server.crt"))
        .arg("--key-file")
        .arg(pki.join("server.key"))
        .arg("--trusted-ca-file")
        .arg(pki.join("ca.crt"))
        .arg("--client-cert-auth")
        .arg("--peer-cert-file")
        .arg(pki.join("peer.crt"))
        .arg("--peer-key-file")
        .arg(pki.join("peer.key"))
        .arg("--peer-trusted-ca-file")
        .arg(pki.join("ca.crt"))
        .arg("--peer-client-cert-auth")
        .stdout(Stdio::null())
        .stderr(fs::File::create(sb.path().join("etcd.log")).unwrap())
        .spawn()
        .expect("etcd is installed (Debian's etcd-server)");
    Etcd { _process: KillOnDrop(child), endpoint }
}

#[test]
fn real_etcd_accepts_the_generated_certificates() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    let etcd = start_etcd(&sb);
    let pki = pki_dir(&sb);
    let ca = pki.join("etcd/ca.crt");
    let healthy = |cert: &str, key: &str| etcdctl(&etcd.endpoint, &ca, &pki.join(cert), &pki.join(key));
    wait_until_etcd_healthy("etcd", &sb.path().join("etcd.log"), || {
        healthy("etcd/healthcheck-client.crt", "etcd/healthcheck-client.key")
    });
    let out = healthy("apiserver-etcd-client.crt", "apiserver-etcd-client.key");
    assert!(out.status.success(), "apiserver-etcd-client refused: {}", String::from_utf8_lossy(&out.stderr));
    // A client certificate from another cluster's etcd CA is refused.
    let other = Sandbox::new();
    render_cp(&other, &[]).ok();
    let opki = pki_dir(&other);
    let out = etcdctl(
        &etcd.endpoint,
        &ca,
        &opki.join("etcd/healthcheck-client.crt"),
        &opki.join("etcd/healthcheck-client.key"),
    );
    assert!(!out.status.success(), "etcd accepted a certificate from another CA");
}

#[test]
fn kubeconfigs_load_with_kube_and_complete_mutual_tls() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = FakeApiServer::reserve();
    let port = listener.local_addr().unwrap().port();
    let sb = Sandbox::new();
    let port_arg = format!("localAPIEndpoint.bindPort={port}");
    sb.render(
        "control-plane.rhai",
        &[
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=127.0.0.1",
            "--set",
            &port_arg,
        ],
    )
    .ok();
    let dir = pki_dir(&sb);
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    // The shared fake API server: TLS with apiserver.crt, client certificates checked against ca.crt.
    let fake =
        FakeApiServer::start(listener, &read("apiserver.crt"), &read("apiserver.key"), &read("ca.crt"));
    for (file, user) in [
        ("admin.conf", "kubernetes-admin"),
        ("super-admin.conf", "kubernetes-super-admin"),
        ("controller-manager.conf", "system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler"),
        ("kubelet.conf", "system:node:k8s-ctr"),
    ] {
        let path = sb.root().join("etc/kubernetes").join(file);
        let kc = kube::config::Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("{file} does not load: {e}"));
        assert_eq!(kc.current_context.as_deref(), Some(format!("{user}@kubernetes").as_str()));
        let info = runtime
            .block_on(async {
                let options = kube::config::KubeConfigOptions::default();
                let config =
                    kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| e.to_string())?;
                let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
                client.apiserver_version().await.map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| panic!("{file}: mutual TLS with the fake API server failed: {e}"));
        assert_eq!(info.git_version, "v1.37.0-fake");
        let seen = fake.seen();
        let last = seen.last().expect("the fake saw the request");
        assert_eq!(
            (last.path.as_str(), last.user.as_str()),
            ("/version", user),
            "the server saw another client identity for {file}"
        );
    }
}

#[test]
fn certificate_checks_from_scripts() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    sb.write(
        "checks.rhai",
        r#"
        stage("check", "inspect the PKI", [ step("all", "checks", || {
            let d = "/etc/kubernetes/pki";
            info(`signed=${cert_signed_by(d + "/apiserver.crt", d + "/ca.crt")}`);
            info(`foreign=${cert_signed_by(d + "/apiserver.crt", d + "/etcd/ca.crt")}`);
            info(`sans=${cert_has_sans(d + "/apiserver.crt", ["kubernetes.default", "10.96.0.1"])}`);
            info(`nosans=${cert_has_sans(d + "/apiserver.crt", ["example.com"])}`);
            info(`soon=${cert_expires_within(d + "/apiserver.crt", "720h")}`);
            info(`year=${cert_expires_within(d + "/apiserver.crt", "8800h")}`);
            info(`admin=${cert_info("/etc/kubernetes/admin.conf").cn}`);
            info(`pin=${ca_pin(d + "/ca.crt")}`);
            ensure_kubeconfig(#{ path: "/etc/kubernetes/bootstrap-kubelet.conf", server: "https://192.168.56.10:6443",
                user: "tls-bootstrap-token-user", ca_cert: d + "/ca.crt", ca_key: d + "/ca.key", token: "abcdef.0123456789abcdef" });
        }) ]);
        "#,
    );
    let run = sb.render("checks.rhai", &["-v"]).ok();
    for want in [
        "signed=true",
        "foreign=false",
        "sans=true",
        "nosans=false",
        "soon=false",
        "year=true",
        "admin=kubernetes-admin",
    ] {
        assert!(run.stdout.contains(want), "{want} missing:\n{}", run.stdout);
    }
    let ca = fs::read_to_string(pki_dir(&sb).join("ca.crt")).unwrap();
    assert!(run.stdout.contains(&format!("pin={}", pki::ca_pin(&ca).unwrap())));
    let boot = fs::read_to_string(sb.root().join("etc/kubernetes/bootstrap-kubelet.conf")).unwrap();
    assert!(
        boot.contains("token: abcdef.0123456789abcdef")
            && boot.contains("tls-bootstrap-token-user@kubernetes"),
        "{boot}"
    );
    assert!(!run.stdout.contains("0123456789abcdef"), "a token was printed");
}

#[test]
fn the_clock_can_be_injected_for_expiration_checks() {
    let sb = Sandbox::new();
    render_cp(&sb, &[]).ok();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let later = (now + 360 * 86400).to_string();
    let args = [&["run", "certs.rhai", "--root", "root", "--only", "check-expiration"][..], NODE].concat();
    let run = sb.kscript_env(&[("KSCRIPT_TEST_NOW", &later)], &args).ok();
    assert!(run.stdout.contains(" 4d ") || run.stdout.contains(" 5d "), "{}", run.stdout);
    let much_later = (now + 400 * 86400).to_string();
    let run = sb.kscript_env(&[("KSCRIPT_TEST_NOW", &much_later)], &args).ok();
    assert!(run.stdout.contains("<invalid>"), "{}", run.stdout);
}

#[test]
fn dry_run_of_the_pki_shows_no_key_material() {
    let sb = Sandbox::new();
    let run = render_cp(&sb, &["--dry-run", "--diff"]).ok();
    assert!(run.stdout.contains("+ /etc/kubernetes/pki/ca.key (0600"), "{}", run.stdout);
    assert!(run.stdout.contains("(secret: content not shown)"));
    for secret in ["PRIVATE KEY", "client-key-data: L"] {
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{secret} printed");
    }
    assert!(!sb.root().join("etc").exists(), "a dry run wrote files");
}
