//! Cross-checks of the PKI module against the real `openssl` command line,
//! plus exact checks of validity, serials, summaries and kubeconfigs under an
//! injected clock.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

const DAY: u64 = 24 * 60 * 60;

/// Runs `openssl` in `dir` and returns its stdout; fails the test with
/// stderr if it exits non-zero.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line tool must be installed to run these tests");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a shell pipeline in `dir` and returns its stdout.
fn shell(dir: &Path, script: &str) -> String {
    let out =
        Command::new("sh").args(["-c", &format!("set -e; {script}")]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `openssl x509 -noout -text` with each line trimmed, so that the checks
/// below do not depend on OpenSSL's indentation.
fn x509_text(dir: &Path, file: &str) -> String {
    openssl(dir, &["x509", "-noout", "-text", "-in", file])
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The line after `heading` in trimmed `openssl -text` output.
fn value_after<'a>(text: &'a str, heading: &str) -> &'a str {
    let mut lines = text.lines();
    lines.find(|line| line.starts_with(heading));
    lines.next().unwrap_or_default()
}

fn write(dir: &Path, name: &str, content: &str) {
    fs::write(dir.join(name), content).unwrap();
}

fn apiserver_like_spec() -> CertSpec {
    CertSpec::leaf("kube-apiserver", vec![Eku::ServerAuth, Eku::ClientAuth])
        .with_organizations(["system:masters"])
        .with_san(parse_san("kubernetes.default").unwrap())
        .with_san(parse_san("node-1").unwrap())
        .with_san(parse_san("10.96.0.1").unwrap())
        .with_san(parse_san("fd00::1").unwrap())
}

/// 2025-06-15T12:00:00.75Z: a fixed "now" with a fraction of a second, which
/// certificates must drop.
fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_749_988_800_750)
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap().as_secs())
}

#[test]
fn every_algorithm_passes_openssl_verify_and_has_kubeadm_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::system();
    let algs: Vec<KeyAlgorithm> = KeyAlgorithm::ALL.iter().flat_map(|a| [*a, *a]).collect();
    let keys = generate_keys(&algs).unwrap();

    for (alg, pair) in KeyAlgorithm::ALL.iter().zip(keys.chunks(2)) {
        let (ca_key, leaf_key) = (&pair[0], &pair[1]);
        let sub = dir.path().join(alg.as_str());
        fs::create_dir(&sub).unwrap();

        let ca = self_signed_ca(&CertSpec::ca("kubernetes"), ca_key, &ctx).unwrap();
        let leaf = sign_leaf(&apiserver_like_spec(), leaf_key, &ca, ca_key, &ctx).unwrap();
        write(&sub, "ca.crt", &ca);
        write(&sub, "ca.key", &ca_key.to_pem());
        write(&sub, "leaf.crt", &leaf);
        write(&sub, "leaf.key", &leaf_key.to_pem());

        // The real chain check.
        assert_eq!(
            openssl(&sub, &["verify", "-CAfile", "ca.crt", "leaf.crt"]).trim(),
            "leaf.crt: OK",
            "{alg}"
        );

        let (sig_alg, key_line) = match alg {
            KeyAlgorithm::Rsa2048 => ("sha256WithRSAEncryption", "Public-Key: (2048 bit)"),
            KeyAlgorithm::Rsa3072 => ("sha256WithRSAEncryption", "Public-Key: (3072 bit)"),
            KeyAlgorithm::Rsa4096 => ("sha256WithRSAEncryption", "Public-Key: (4096 bit)"),
            KeyAlgorithm::EcdsaP256 => ("ecdsa-with-SHA256", "NIST CURVE: P-256"),
            KeyAlgorithm::EcdsaP384 => ("ecdsa-with-SHA384", "NIST CURVE: P-384"),
        };

        let ca_text = x509_text(&sub, "ca.crt");
        for want in [
            "Issuer: CN = kubernetes",
            "Subject: CN = kubernetes",
            "X509v3 Basic Constraints: critical\nCA:TRUE",
            "X509v3 Key Usage: critical\nDigital Signature, Key Encipherment, Certificate Sign",
            "X509v3 Subject Alternative Name:\nDNS:kubernetes\n",
            "X509v3 Subject Key Identifier:",
            &format!("Signature Algorithm: {sig_alg}"),
        ] {
            assert!(ca_text.contains(want), "{alg} CA lacks {want:?}:\n{ca_text}");
        }
        assert!(!ca_text.contains("Extended Key Usage"), "{alg}");
        assert!(!ca_text.contains("Authority Key Identifier"), "{alg}");

        let leaf_text = x509_text(&sub, "leaf.crt");
        for want in [
            "Issuer: CN = kubernetes",
            "Subject: O = system:masters, CN = kube-apiserver",
            "X509v3 Key Usage: critical\nDigital Signature, Key Encipherment\n",
            "X509v3 Extended Key Usage:\nTLS Web Server Authentication, TLS Web Client Authentication",
            "X509v3 Subject Alternative Name:\nDNS:kubernetes.default, DNS:node-1, \
             IP Address:10.96.0.1, IP Address:FD00:0:0:0:0:0:0:1",
            "X509v3 Basic Constraints: critical\nCA:FALSE",
            key_line,
            &format!("Signature Algorithm: {sig_alg}"),
        ] {
            assert!(leaf_text.contains(want), "{alg} leaf lacks {want:?}:\n{leaf_text}");
        }
        // The authority key identifier is the CA's subject key identifier.
        let aki = value_after(&leaf_text, "X509v3 Authority Key Identifier:");
        let ski = value_after(&ca_text, "X509v3 Subject Key Identifier:");
        assert!(!ski.is_empty(), "{alg}");
        assert_eq!(aki.trim_start_matches("keyid:"), ski, "{alg}");

        check_keys_with_openssl(&sub, *alg, ca_key, leaf_key);
        check_own_reading(*alg, &ca, &leaf);
    }
}

/// Keys: kubeadm's PEM labels, accepted by openssl, matching the certificates
/// (`ca.key`, `ca.crt`, `leaf.key`, `leaf.crt` in `dir`).
fn check_keys_with_openssl(dir: &Path, alg: KeyAlgorithm, ca_key: &PrivateKey, leaf_key: &PrivateKey) {
    let ca = fs::read_to_string(dir.join("ca.crt")).unwrap();
    let leaf = fs::read_to_string(dir.join("leaf.crt")).unwrap();
    let label = if alg.is_rsa() { "RSA PRIVATE KEY" } else { "EC PRIVATE KEY" };
    for key in [ca_key, leaf_key] {
        assert!(key.to_pem().starts_with(&format!("-----BEGIN {label}-----\n")), "{alg}");
    }
    openssl(dir, &["pkey", "-in", "leaf.key", "-noout"]);
    let check = if alg.is_rsa() { "rsa" } else { "ec" };
    openssl(dir, &[check, "-in", "ca.key", "-check", "-noout"]);
    let key_pub = openssl(dir, &["pkey", "-in", "leaf.key", "-pubout"]);
    let cert_pub = openssl(dir, &["x509", "-in", "leaf.crt", "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub, "{alg}");
    assert_eq!(leaf_key.public_key_pem(), cert_pub, "{alg}");
    assert!(key_matches_cert(leaf_key, &leaf), "{alg}");
    assert!(key_matches_cert(ca_key, &ca), "{alg}");
    assert!(!key_matches_cert(ca_key, &leaf), "{alg}");
}

/// Our own parsing and verification agree with what was asked for.
fn check_own_reading(alg: KeyAlgorithm, ca: &str, leaf: &str) {
    assert!(verify_signed_by(leaf, ca).unwrap(), "{alg}");
    assert!(verify_signed_by(ca, ca).unwrap(), "{alg}");
    let info = inspect(leaf).unwrap();
    assert_eq!(info.key_algorithm, Some(alg));
    assert_eq!(info.subject_cn, "kube-apiserver");
    assert_eq!(info.organizations, ["system:masters"]);
    assert_eq!(info.issuer_cn, "kubernetes");
    assert!(!info.is_ca);
    assert!(info.key_usage_critical);
    assert_eq!(info.key_usages, [KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment]);
    assert_eq!(info.extended_key_usages, [Eku::ServerAuth, Eku::ClientAuth]);
    assert_eq!(info.dns_names, ["kubernetes.default", "node-1"]);
    assert_eq!(
        info.ip_addresses,
        ["10.96.0.1".parse::<std::net::IpAddr>().unwrap(), "fd00::1".parse().unwrap()]
    );
    assert_eq!(info.serial.len(), 40, "20 random bytes");
    let ca_info = inspect(ca).unwrap();
    assert!(ca_info.is_ca);
    assert_eq!(ca_info.dns_names, ["kubernetes"]);
}

#[test]
fn private_keys_are_read_from_every_encoding_openssl_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |file: &str| PrivateKey::from_pem(&fs::read_to_string(d.join(file)).unwrap());

    // PKCS#8 RSA in, PKCS#1 out, byte for byte what `openssl rsa -traditional` writes.
    openssl(d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", "rsa8.pem"]);
    let key = read("rsa8.pem").unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa3072);
    assert_eq!(key.to_pem(), openssl(d, &["rsa", "-in", "rsa8.pem", "-traditional"]));

    // SEC1 in and out unchanged.
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec1.pem"]);
    let key = read("ec1.pem").unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
    assert_eq!(key.to_pem(), fs::read_to_string(d.join("ec1.pem")).unwrap());
    // With the EC PARAMETERS block openssl writes before the key without -noout.
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-out", "ecp.pem"]);
    let text = fs::read_to_string(d.join("ecp.pem")).unwrap();
    assert!(text.starts_with("-----BEGIN EC PARAMETERS-----"));
    assert_eq!(read("ecp.pem").unwrap().algorithm(), KeyAlgorithm::EcdsaP256);

    // PKCS#8 EC in, SEC1 (with the curve) out, as `openssl ec` writes it.
    openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "ec8.pem"]);
    let key = read("ec8.pem").unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP384);
    assert_eq!(key.to_pem(), openssl(d, &["ec", "-in", "ec8.pem"]));

    // Our keys converted to PKCS#8 by openssl come back identical.
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
        let ours = generate_key(alg).unwrap();
        write(d, "ours.pem", &ours.to_pem());
        openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "ours.pem", "-out", "ours8.pem"]);
        let back = read("ours8.pem").unwrap();
        assert_eq!(back.to_pem(), ours.to_pem(), "{alg}");
    }

    // Keys kscript cannot sign with are refused with the reason.
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    let err = read("ed.pem").unwrap_err().to_string();
    assert!(err.contains("unsupported private key"), "{err}");
    openssl(d, &["genrsa", "-traditional", "-out", "rsa1024.pem", "1024"]);
    let err = read("rsa1024.pem").unwrap_err().to_string();
    assert!(err.contains("shorter than 2048 bits"), "{err}");
    assert!(!err.contains("BEGIN"), "{err}");
}

#[test]
fn ca_pin_equals_openssl_spki_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::system();
    for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
        let key = generate_key(alg).unwrap();
        let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &key, &ctx).unwrap();
        write(dir.path(), "ca.crt", &ca);
        let sum = shell(
            dir.path(),
            "openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform der | sha256sum",
        );
        let hex = sum.split_whitespace().next().unwrap();
        assert_eq!(ca_pin(&ca).unwrap(), format!("sha256:{hex}"), "{alg}");
    }
}

#[test]
fn verify_signed_by_tells_the_right_ca_from_others() {
    let ctx = Context::system();
    let keys = generate_keys(&[KeyAlgorithm::EcdsaP256; 4]).unwrap();
    let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[0], &ctx).unwrap();
    // Same name, different key: only the signature tells them apart.
    let twin = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[1], &ctx).unwrap();
    let other = self_signed_ca(&CertSpec::ca("etcd-ca"), &keys[2], &ctx).unwrap();
    let leaf = sign_leaf(
        &CertSpec::leaf("kube-apiserver-etcd-client", vec![Eku::ClientAuth]),
        &keys[3],
        &ca,
        &keys[0],
        &ctx,
    )
    .unwrap();

    assert!(verify_signed_by(&leaf, &ca).unwrap());
    assert!(!verify_signed_by(&leaf, &twin).unwrap());
    assert!(!verify_signed_by(&leaf, &other).unwrap());
    assert!(verify_signed_by("garbage", &ca).is_err());

    // An RSA leaf under an ECDSA CA and the other way round.
    let rsa_keys = generate_keys(&[KeyAlgorithm::Rsa2048; 2]).unwrap();
    let rsa_ca = self_signed_ca(&CertSpec::ca("front-proxy-ca"), &rsa_keys[0], &ctx).unwrap();
    let spec = CertSpec::leaf("front-proxy-client", vec![Eku::ClientAuth]);
    let ec_leaf = sign_leaf(&spec, &keys[3], &rsa_ca, &rsa_keys[0], &ctx).unwrap();
    let rsa_leaf = sign_leaf(&spec, &rsa_keys[1], &ca, &keys[0], &ctx).unwrap();
    assert!(verify_signed_by(&ec_leaf, &rsa_ca).unwrap());
    assert!(verify_signed_by(&rsa_leaf, &ca).unwrap());
    assert!(!verify_signed_by(&rsa_leaf, &rsa_ca).unwrap());
}

#[test]
fn validity_and_serials_follow_the_injected_context() {
    let now = fixed_now();
    let second = whole_seconds(now);
    let ctx = Context::fixed(now, 42);
    let keys = generate_keys(&[KeyAlgorithm::EcdsaP256; 3]).unwrap();

    let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[0], &ctx).unwrap();
    let ca_info = inspect(&ca).unwrap();
    assert_eq!(ca_info.not_before, second - Duration::from_mins(5));
    assert_eq!(ca_info.not_after, second + Duration::from_secs(10 * 365 * DAY));
    assert_eq!(ca_info.serial, "2a");

    let spec = CertSpec::leaf("kube-scheduler", vec![Eku::ClientAuth]);
    let leaf = sign_leaf(&spec, &keys[1], &ca, &keys[0], &ctx).unwrap();
    let info = inspect(&leaf).unwrap();
    assert_eq!(info.not_before, second - BACKDATE);
    assert_eq!(info.not_after, second + Duration::from_secs(365 * DAY));
    assert_eq!(info.serial, "2b");
    assert_eq!(info.validity(), CERT_VALIDITY + BACKDATE);
    assert!(info.is_valid_at(now));
    assert!(!info.is_valid_at(now + Duration::from_secs(366 * DAY)));
    assert!(info.expires_within(Duration::from_secs(366 * DAY), now));
    assert!(!info.expires_within(Duration::from_secs(364 * DAY), now));

    // A leaf never outlives its CA.
    let mut short = CertSpec::ca("short-lived-ca");
    short.validity = Duration::from_secs(30 * DAY);
    let short_ca = self_signed_ca(&short, &keys[2], &ctx).unwrap();
    let capped = sign_leaf(&spec, &keys[1], &short_ca, &keys[2], &ctx).unwrap();
    assert_eq!(inspect(&capped).unwrap().not_after, inspect(&short_ca).unwrap().not_after);

    // An expired CA cannot sign.
    let later = Context::fixed(now + Duration::from_secs(31 * DAY), 1);
    let err = sign_leaf(&spec, &keys[1], &short_ca, &keys[2], &later).unwrap_err().to_string();
    assert!(err.contains("short-lived-ca") && err.contains("expired"), "{err}");
}

#[test]
fn summaries_are_stable_and_free_of_secrets() {
    let ctx = Context::fixed(fixed_now(), 1);
    let keys = generate_keys(&[KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256]).unwrap();
    let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[0], &ctx).unwrap();
    let leaf = sign_leaf(&apiserver_like_spec(), &keys[1], &ca, &keys[0], &ctx).unwrap();

    assert_eq!(
        summary(&ca).unwrap(),
        "\
subject: CN=kubernetes
issuer: CN=kubernetes
is CA: true
key: RSA-2048
key usage (critical): digitalSignature, keyEncipherment, keyCertSign
extended key usage: -
DNS names: kubernetes
IP addresses: -
validity: 3650d 5m
"
    );
    let leaf_summary = summary(&leaf).unwrap();
    assert_eq!(
        leaf_summary,
        "\
subject: O=system:masters, CN=kube-apiserver
issuer: CN=kubernetes
is CA: false
key: ECDSA-P256
key usage (critical): digitalSignature, keyEncipherment
extended key usage: serverAuth, clientAuth
DNS names: kubernetes.default, node-1
IP addresses: 10.96.0.1, fd00::1
validity: 365d 5m
"
    );
    // Same inputs, new keys and serials: same summary.
    let other_ctx = Context::system();
    let keys2 = generate_keys(&[KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256]).unwrap();
    let ca2 = self_signed_ca(&CertSpec::ca("kubernetes"), &keys2[0], &other_ctx).unwrap();
    let leaf2 = sign_leaf(&apiserver_like_spec(), &keys2[1], &ca2, &keys2[0], &other_ctx).unwrap();
    assert_eq!(summary(&leaf2).unwrap(), leaf_summary);
}

#[test]
fn signing_refuses_bad_cas_and_bad_specs_with_clear_errors() {
    let ctx = Context::system();
    let keys = generate_keys(&[KeyAlgorithm::EcdsaP256; 3]).unwrap();
    let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[0], &ctx).unwrap();
    let spec = CertSpec::leaf("front-proxy-client", vec![Eku::ClientAuth]);

    let err = sign_leaf(&spec, &keys[1], &ca, &keys[2], &ctx).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");

    let leaf = sign_leaf(&spec, &keys[1], &ca, &keys[0], &ctx).unwrap();
    let err = sign_leaf(&spec, &keys[2], &leaf, &keys[1], &ctx).unwrap_err().to_string();
    assert!(err.contains("not a CA"), "{err}");

    let two_orgs = spec.clone().with_organizations(["system:masters", "system:nodes"]);
    let err = sign_leaf(&two_orgs, &keys[1], &ca, &keys[0], &ctx).unwrap_err().to_string();
    assert!(err.contains("front-proxy-client") && err.contains("organization"), "{err}");

    let mut bad_san = spec.clone();
    bad_san.dns_names.push("Bad_Name".to_owned());
    let err = sign_leaf(&bad_san, &keys[1], &ca, &keys[0], &ctx).unwrap_err().to_string();
    assert!(err.contains("\"Bad_Name\""), "{err}");

    // A CA spec given to sign_leaf makes an intermediate CA that can sign in turn.
    let intermediate = sign_leaf(&CertSpec::ca("intermediate"), &keys[2], &ca, &keys[0], &ctx).unwrap();
    let info = inspect(&intermediate).unwrap();
    assert!(info.is_ca && info.key_usages.contains(&KeyUsage::KeyCertSign));
    let under = sign_leaf(&spec, &keys[1], &intermediate, &keys[2], &ctx).unwrap();
    assert!(verify_signed_by(&under, &intermediate).unwrap());
    assert!(verify_signed_by(&intermediate, &ca).unwrap());

    let err = self_signed_ca(&spec, &keys[0], &ctx).unwrap_err().to_string();
    assert!(err.contains("is_ca"), "{err}");

    let err = sign_leaf(&spec, &keys[1], "not a pem", &keys[0], &ctx).unwrap_err().to_string();
    assert!(err.contains("CA certificate"), "{err}");
}

#[test]
fn leaves_signed_by_openssl_made_cas_keep_the_issuer_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ctx = Context::system();
    // string_mask = default makes PrintableString names, as Go's crypto/x509
    // (and so kubeadm) writes them; the stock config makes UTF8String names.
    for (mask, subject) in [("default", "C = DE\nO = Example\nCN = kubernetes"), ("utf8only", "CN = etcd-ca")]
    {
        let config = format!(
            "[req]\ndistinguished_name = dn\nprompt = no\nstring_mask = {mask}\nx509_extensions = ext\n\
             [dn]\n{subject}\n\
             [ext]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\n\
             subjectKeyIdentifier = hash\n"
        );
        write(d, "ca.cnf", &config);
        openssl(
            d,
            &[
                "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.crt", "-days", "30", "-config", "ca.cnf",
            ],
        );
        let ca = fs::read_to_string(d.join("ca.crt")).unwrap();
        let ca_key = PrivateKey::from_pem(&fs::read_to_string(d.join("ca.key")).unwrap()).unwrap();
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let spec = CertSpec::leaf("etcd-server", vec![Eku::ServerAuth]);
        let leaf = sign_leaf(&spec, &key, &ca, &ca_key, &ctx).unwrap();
        write(d, "leaf.crt", &leaf);
        assert_eq!(openssl(d, &["verify", "-CAfile", "ca.crt", "leaf.crt"]).trim(), "leaf.crt: OK", "{mask}");
        assert!(verify_signed_by(&leaf, &ca).unwrap(), "{mask}");
        let text = x509_text(d, "leaf.crt");
        let ski = value_after(&x509_text(d, "ca.crt"), "X509v3 Subject Key Identifier:").to_owned();
        assert_eq!(value_after(&text, "X509v3 Authority Key Identifier:").trim_start_matches("keyid:"), ski);
    }

    // A multi-valued RDN cannot be copied exactly, so it is refused.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "mv.key",
            "-out",
            "mv.crt",
            "-days",
            "30",
            "-multivalue-rdn",
            "-subj",
            "/CN=odd-ca+O=odd",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let ca = fs::read_to_string(d.join("mv.crt")).unwrap();
    let ca_key = PrivateKey::from_pem(&fs::read_to_string(d.join("mv.key")).unwrap()).unwrap();
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let spec = CertSpec::leaf("x", vec![Eku::ClientAuth]);
    let err = sign_leaf(&spec, &key, &ca, &ca_key, &ctx).unwrap_err().to_string();
    assert!(err.contains("odd-ca"), "{err}");
}

fn kubeconfig_material() -> (String, PrivateKey, String) {
    let ctx = Context::fixed(fixed_now(), 1);
    let keys = generate_keys(&[KeyAlgorithm::EcdsaP256; 2]).unwrap();
    let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &keys[0], &ctx).unwrap();
    let client = sign_leaf(
        &CertSpec::leaf("kubernetes-admin", vec![Eku::ClientAuth])
            .with_organizations(["kubeadm:cluster-admins"]),
        &keys[1],
        &ca,
        &keys[0],
        &ctx,
    )
    .unwrap();
    (ca, keys[1].clone(), client)
}

#[test]
fn embedded_kubeconfig_round_trips_with_the_pems() {
    let (ca, key, client) = kubeconfig_material();
    let spec = KubeconfigSpec {
        cluster_name: "kubernetes".to_owned(),
        server: "https://10.0.0.10:6443".to_owned(),
        ca_pem: ca.clone(),
        user: "kubernetes-admin".to_owned(),
        auth: KubeconfigAuth::Embedded { cert_pem: client.clone(), key_pem: key.to_pem() },
    };
    let yaml = kubeconfig_yaml(&spec).unwrap();

    let top: Vec<&str> =
        yaml.lines().filter(|l| !l.starts_with([' ', '-'])).map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        top,
        ["apiVersion", "clusters", "contexts", "current-context", "kind", "preferences", "users"],
        "{yaml}"
    );
    assert!(yaml.contains("\npreferences: {}\n"), "{yaml}");
    assert!(yaml.contains("\n- cluster:\n    certificate-authority-data: "), "{yaml}");

    let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(value["apiVersion"], "v1");
    assert_eq!(value["kind"], "Config");
    assert_eq!(value["current-context"], "kubernetes-admin@kubernetes");
    assert_eq!(value["contexts"][0]["name"], "kubernetes-admin@kubernetes");
    assert_eq!(value["contexts"][0]["context"]["cluster"], "kubernetes");
    assert_eq!(value["contexts"][0]["context"]["user"], "kubernetes-admin");
    assert_eq!(value["clusters"][0]["name"], "kubernetes");
    assert_eq!(value["clusters"][0]["cluster"]["server"], "https://10.0.0.10:6443");
    assert_eq!(value["users"][0]["name"], "kubernetes-admin");
    let decode =
        |v: &serde_json::Value| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(decode(&value["clusters"][0]["cluster"]["certificate-authority-data"]), ca);
    assert_eq!(decode(&value["users"][0]["user"]["client-certificate-data"]), client);
    assert_eq!(decode(&value["users"][0]["user"]["client-key-data"]), key.to_pem());

    let parsed = Kubeconfig::from_yaml(&yaml).unwrap();
    assert_eq!(parsed, Kubeconfig::from_spec(&spec).unwrap());
    assert_eq!(parsed.to_yaml().unwrap(), yaml);

    // A key as `openssl ecparam -genkey` writes it (EC PARAMETERS first) is a key too; a
    // certificate is not.
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        key.to_pem()
    );
    let spec_params = KubeconfigSpec {
        auth: KubeconfigAuth::Embedded { cert_pem: client.clone(), key_pem: with_params },
        ..spec.clone()
    };
    assert!(Kubeconfig::from_spec(&spec_params).is_ok());
    let spec_cert = KubeconfigSpec {
        auth: KubeconfigAuth::Embedded { cert_pem: client.clone(), key_pem: client.clone() },
        ..spec.clone()
    };
    assert!(Kubeconfig::from_spec(&spec_cert).unwrap_err().to_string().contains("the client key"));

    let redacted = parsed.redacted().to_yaml().unwrap();
    assert!(!redacted.contains("LS0t"), "{redacted}");
    assert!(redacted.contains("client-key-data: \"[PRIVATE KEY DATA]\""), "{redacted}");
    assert!(redacted.contains("certificate-authority-data: \"[CERTIFICATE DATA]\""), "{redacted}");
}

#[test]
fn file_and_token_kubeconfigs_have_kubeadms_layout() {
    let (ca, _, _) = kubeconfig_material();
    let ca_data = STANDARD.encode(&ca);
    let mut spec = KubeconfigSpec {
        cluster_name: "kubernetes".to_owned(),
        server: "https://cp.example:6443".to_owned(),
        ca_pem: ca,
        user: "system:node:node-1".to_owned(),
        auth: KubeconfigAuth::Files {
            cert_path: "/var/lib/kubelet/pki/kubelet-client-current.pem".to_owned(),
            key_path: "/var/lib/kubelet/pki/kubelet-client-current.pem".to_owned(),
        },
    };
    assert_eq!(
        kubeconfig_yaml(&spec).unwrap(),
        format!(
            "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca_data}
    server: https://cp.example:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: system:node:node-1
  name: system:node:node-1@kubernetes
current-context: system:node:node-1@kubernetes
kind: Config
preferences: {{}}
users:
- name: system:node:node-1
  user:
    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem
    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem
"
        )
    );

    spec.user = "tls-bootstrap-token-user".to_owned();
    spec.auth = KubeconfigAuth::Token("abcdef.0123456789abcdef".to_owned());
    let yaml = kubeconfig_yaml(&spec).unwrap();
    assert!(
        yaml.ends_with(
            "users:\n- name: tls-bootstrap-token-user\n  user:\n    token: abcdef.0123456789abcdef\n"
        ),
        "{yaml}"
    );

    spec.ca_pem = "not a certificate".to_owned();
    let err = kubeconfig_yaml(&spec).unwrap_err().to_string();
    assert!(err.contains("tls-bootstrap-token-user") && err.contains("CA certificate"), "{err}");
}

/// Not a correctness test: prints how long kubeadm's 11 RSA-2048 keys take
/// generated one after the other and with [`generate_keys`]. RSA key
/// generation time varies a lot from key to key, so it runs 20 rounds of each,
/// interleaved, and prints totals and medians. Run with
/// `cargo test --release --lib pki::tests::keygen_timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing measurement, run by hand"]
fn keygen_timing() {
    let algs = [KeyAlgorithm::Rsa2048; 11];
    let mut serial = Vec::new();
    let mut parallel = Vec::new();
    for _ in 0..20 {
        let start = std::time::Instant::now();
        for alg in algs {
            generate_key(alg).unwrap();
        }
        serial.push(start.elapsed());
        let start = std::time::Instant::now();
        generate_keys(&algs).unwrap();
        parallel.push(start.elapsed());
    }
    for (name, times) in [("serial", &mut serial), ("parallel", &mut parallel)] {
        times.sort();
        let total: Duration = times.iter().sum();
        println!(
            "11 x RSA-2048 {name}: median {:?}, min {:?}, max {:?}, total of 20 rounds {total:?}",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
        );
    }
    println!("available parallelism: {:?}", std::thread::available_parallelism());
}
