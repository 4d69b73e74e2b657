//! Benchmark: `kscript status` of a rendered control plane (the whole process: load the
//! script, read the table, stat the files, read the journal, judge, print), and the same with
//! the API and CRI probes made real by the test hooks while nothing answers (the cost of the
//! parallel probes and their clients: connection refused at once, no socket).
//!
//! Run: `cargo bench --bench status` (prints medians; the targets are under 100 ms for a
//! rendered root, under 300 ms for a live node whose API server answers).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 15;

fn status(root: &std::path::Path, env: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kscript"))
        .args(["status", "control-plane.rhai", "--root"])
        .arg(root)
        .args(["--set", "nodeRegistration.name=k8s-ctr", "--set", "localAPIEndpoint.bindPort=1"])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kscript runs");
    assert!(out.code().is_some_and(|c| c < 2), "status failed: {out}");
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
    let d = tempfile::tempdir().unwrap();
    let rendered = Command::new(env!("CARGO_BIN_EXE_kscript"))
        .args(["run", "control-plane.rhai", "--root"])
        .arg(d.path())
        .args([
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=127.0.0.1",
            "--set",
            "localAPIEndpoint.bindPort=1",
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("kscript runs");
    assert!(rendered.success(), "the render failed");
    println!(
        "kscript status of a rendered control plane (9 components, the stage map of 49 files), median of {RUNS}:"
    );
    let files: Vec<Duration> = (0..RUNS).map(|_| status(d.path(), &[])).collect();
    println!(
        "  rendered root, no probes:                       {:7.1} ms  (target < 100 ms)",
        ms(median(files))
    );
    let hooks = [("KSCRIPT_TEST_CLUSTER_API", "real"), ("KSCRIPT_TEST_CRI", "real")];
    let probes: Vec<Duration> = (0..RUNS).map(|_| status(d.path(), &hooks)).collect();
    println!("  API and CRI probes on, nothing answering:       {:7.1} ms", ms(median(probes)));
}
