//! Benchmark: the whole control-plane node rendered into a fresh root (RSA-2048 and
//! ECDSA-P256), then rerun on the rendered node with nothing to change.
//!
//! Run: `cargo bench --bench render` (prints medians; the targets are a rerun under 50 ms and,
//! for a fresh render, everything but key generation under 30 ms).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kscript::pki::{KeyAlgorithm, generate_keys};

const RUNS: usize = 7;
/// Keys of a control plane: 11 for the certificates and the service-account pair, 5 for the
/// kubeconfigs' client certificates.
const KEYS: usize = 16;

fn kscript(root: &std::path::Path, algorithm: &str) -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_kscript"))
        .args(["run", "control-plane.rhai", "--root"])
        .arg(root)
        .args([
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=192.168.56.10",
        ])
        .args(["--set", &format!("encryptionAlgorithm={algorithm}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kscript runs");
    assert!(status.success(), "the render failed");
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    println!(
        "control-plane node (stages 1-4: {KEYS} keys, 22 PKI files, 5 kubeconfigs, 4 static Pods, kubelet files), median of {RUNS}:"
    );
    for (alg, algorithm) in [("RSA-2048", KeyAlgorithm::Rsa2048), ("ECDSA-P256", KeyAlgorithm::EcdsaP256)] {
        let (mut fresh, mut rerun, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let d = tempfile::tempdir().unwrap();
            fresh.push(kscript(d.path(), alg));
            rerun.push(kscript(d.path(), alg));
            let start = Instant::now();
            generate_keys(&[algorithm; KEYS]).unwrap();
            keys.push(start.elapsed());
        }
        let (fresh, rerun, keys) = (median(fresh), median(rerun), median(keys));
        println!(
            "  {alg:<10} fresh render {:8.1} ms; its key generation alone {:7.1} ms; everything else {:6.1} ms (target: under 30 ms)",
            ms(fresh),
            ms(keys),
            ms(fresh.saturating_sub(keys))
        );
        println!("  {alg:<10} no-change rerun {:5.1} ms (target: under 50 ms)", ms(rerun));
    }
}
