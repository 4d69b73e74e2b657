//! Benchmark: the control plane's whole PKI and kubeconfigs into a fresh root, by kscript
//! (RSA-2048 and ECDSA-P256) and by a plain `openssl` command-line script making the same
//! certificates (the way "Kubernetes the hard way" does), as the baseline.
//!
//! Run: `cargo bench --bench pki` (prints medians, the ratio, and peak memory).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 7;

/// Runs a command to completion; returns its wall time and its peak resident memory (KiB).
fn measure(cmd: &mut Command) -> (Duration, i64) {
    let start = Instant::now();
    // Reaped by wait4 below, which also reports the child's own peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("the command starts");
    let pid = i32::try_from(child.id()).expect("a pid fits i32");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid pointers to status and usage.
    let r = unsafe { nix::libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    assert!(nix::libc::WIFEXITED(status) && nix::libc::WEXITSTATUS(status) == 0, "the command failed");
    (elapsed, usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The openssl script: the same 16 keys (RSA-2048) and 10 certificates plus 5 kubeconfig
/// client certificates as kubeadm's set, one openssl command at a time.
fn openssl_script(dir: &Path) -> String {
    let mut s = String::from("set -e\ncd \"$1\"\nmkdir -p etcd\n");
    let ca = |s: &mut String, name: &str, cn: &str| {
        let _ = writeln!(s, "openssl genrsa -out {name}.key 2048 2>/dev/null");
        let _ = writeln!(
            s,
            "openssl req -x509 -new -key {name}.key -subj '/CN={cn}' -days 3650 -out {name}.crt \
             -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign' \
             -addext 'subjectAltName=DNS:{cn}'"
        );
    };
    let leaf = |s: &mut String, name: &str, ca: &str, subj: &str, eku: &str, san: &str| {
        let _ = writeln!(s, "openssl genrsa -out {name}.key 2048 2>/dev/null");
        let _ = writeln!(s, "openssl req -new -key {name}.key -subj '{subj}' -out {name}.csr");
        let ext = format!(
            "basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature,keyEncipherment\\nextendedKeyUsage={eku}{}",
            if san.is_empty() { String::new() } else { format!("\\nsubjectAltName={san}") }
        );
        let _ = writeln!(s, "printf '{ext}\\n' > {name}.ext");
        let _ = writeln!(
            s,
            "openssl x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 365 -extfile {name}.ext -out {name}.crt 2>/dev/null"
        );
    };
    ca(&mut s, "ca", "kubernetes");
    leaf(
        &mut s,
        "apiserver",
        "ca",
        "/CN=kube-apiserver",
        "serverAuth",
        "DNS:k8s-ctr,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:192.168.56.10",
    );
    leaf(
        &mut s,
        "apiserver-kubelet-client",
        "ca",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "clientAuth",
        "",
    );
    ca(&mut s, "front-proxy-ca", "front-proxy-ca");
    leaf(&mut s, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth", "");
    ca(&mut s, "etcd/ca", "etcd-ca");
    let etcd_sans = "DNS:k8s-ctr,DNS:localhost,IP:192.168.56.10,IP:127.0.0.1,IP:::1";
    leaf(&mut s, "etcd/server", "etcd/ca", "/CN=k8s-ctr", "serverAuth,clientAuth", etcd_sans);
    leaf(&mut s, "etcd/peer", "etcd/ca", "/CN=k8s-ctr", "serverAuth,clientAuth", etcd_sans);
    leaf(
        &mut s,
        "etcd/healthcheck-client",
        "etcd/ca",
        "/O=system:masters/CN=kube-etcd-healthcheck-client",
        "clientAuth",
        "",
    );
    leaf(
        &mut s,
        "apiserver-etcd-client",
        "etcd/ca",
        "/O=system:masters/CN=kube-apiserver-etcd-client",
        "clientAuth",
        "",
    );
    s.push_str("openssl genrsa -out sa.key 2048 2>/dev/null\nopenssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null\n");
    for (name, subj) in [
        ("admin", "/O=kubeadm:cluster-admins/CN=kubernetes-admin"),
        ("super-admin", "/O=system:masters/CN=kubernetes-super-admin"),
        ("kubelet", "/O=system:nodes/CN=system:node:k8s-ctr"),
        ("controller-manager", "/CN=system:kube-controller-manager"),
        ("scheduler", "/CN=system:kube-scheduler"),
    ] {
        leaf(&mut s, &format!("{name}-client"), "ca", subj, "clientAuth", "");
        // The kubeconfig itself: the CA and the client pair, base64-embedded.
        let _ = writeln!(
            s,
            "printf 'apiVersion: v1\\nkind: Config\\nclusters:\\n- cluster:\\n    certificate-authority-data: %s\\n    server: https://192.168.56.10:6443\\n  name: kubernetes\\nusers:\\n- name: u\\n  user:\\n    client-certificate-data: %s\\n    client-key-data: %s\\n' \"$(base64 -w0 ca.crt)\" \"$(base64 -w0 {name}-client.crt)\" \"$(base64 -w0 {name}-client.key)\" > {name}.conf"
        );
    }
    let path = dir.join("pki.sh");
    std::fs::write(&path, s).unwrap();
    path.display().to_string()
}

fn kscript(root: &Path, algorithm: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kscript"));
    // Only stage 3's certificates and kubeconfigs: what the openssl script makes too.
    cmd.args(["run", "control-plane.rhai", "--only", "init/certs", "--only", "init/kubeconfig", "--root"])
        .arg(root)
        .args(["--journal", "/dev/null"])
        .args([
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=192.168.56.10",
        ])
        .args(["--set", &format!("encryptionAlgorithm={algorithm}")]);
    cmd
}

fn main() {
    let scratch = tempfile::tempdir().unwrap();
    let script = openssl_script(scratch.path());
    let (mut rsa, mut ecdsa, mut openssl) = (Vec::new(), Vec::new(), Vec::new());
    let mut peak = 0;
    for _ in 0..RUNS {
        let d = tempfile::tempdir().unwrap();
        let (t, rss) = measure(&mut kscript(d.path(), "RSA-2048"));
        rsa.push(t);
        peak = peak.max(rss);
        let d = tempfile::tempdir().unwrap();
        let (t, rss) = measure(&mut kscript(d.path(), "ECDSA-P256"));
        ecdsa.push(t);
        peak = peak.max(rss);
        let d = tempfile::tempdir().unwrap();
        let (t, _) = measure(Command::new("bash").arg(&script).arg(d.path()));
        openssl.push(t);
    }
    let (rsa, ecdsa, openssl) = (median(rsa), median(ecdsa), median(openssl));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "control-plane PKI + kubeconfigs into a fresh root (22 files, 5 kubeconfigs), median of {RUNS}:"
    );
    println!("  kscript RSA-2048     {:8.1} ms", ms(rsa));
    println!("  kscript ECDSA-P256   {:8.1} ms   (target: under 50 ms)", ms(ecdsa));
    println!("  openssl script       {:8.1} ms   (RSA-2048, one command at a time)", ms(openssl));
    println!("  ratio RSA-2048 / openssl: {:.3}x   (target: at most 0.2x)", ms(rsa) / ms(openssl));
    println!(
        "  peak memory of a kscript run: {:.1} MiB   (target: under 20 MiB)",
        f64::from(i32::try_from(peak).unwrap_or(i32::MAX)) / 1024.0
    );
}
