//! Benchmark: `kscript test` of the starter suite `kscript eject` writes (a control plane, a
//! worker discovering it, and three variants: five renders, the worker after its control
//! plane), with the stock RSA-2048 keys and with ECDSA-P256.
//!
//! Run: `cargo bench --bench suite` (prints the median of several runs; the targets are under
//! 3 s with RSA-2048 and under 1 s with ECDSA on a 2-core machine).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn kscript(args: &[&str], dir: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_kscript"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kscript runs");
    assert!(status.success(), "kscript {args:?} failed");
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    kscript(&["eject", "fork"], tmp.path());
    let fork = tmp.path().join("fork");
    let rsa = median((0..RUNS).map(|_| kscript(&["test", "."], &fork)).collect());
    println!(
        "kscript test, starter suite (5 cases), RSA-2048:   median {:7.1} ms of {RUNS}",
        rsa.as_secs_f64() * 1e3
    );

    let suite = fork.join("kscript-tests.yaml");
    let text = std::fs::read_to_string(&suite).expect("the starter suite");
    let ecdsa = text.replacen("set:\n", "set:\n  - encryptionAlgorithm=ECDSA-P256\n", 1);
    assert_ne!(text, ecdsa, "the starter suite has a `set` list");
    std::fs::write(&suite, ecdsa).expect("suite written");
    kscript(&["test", ".", "--accept"], &fork);
    let ec = median((0..RUNS).map(|_| kscript(&["test", "."], &fork)).collect());
    println!(
        "kscript test, starter suite (5 cases), ECDSA-P256: median {:7.1} ms of {RUNS}",
        ec.as_secs_f64() * 1e3
    );
}
