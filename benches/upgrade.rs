//! Benchmark: kscript's own time in a control-plane `upgrade.rhai --only apply`, against the
//! fake API server of the integration tests (`tests/cli/fake_apiserver.rs`), whose mirror Pods
//! show each new manifest 2 s after it is written, as a kubelet restarting the static Pod
//! would. kscript's own time is the wall time minus the waits the run reports in its JSON
//! stream (`wait` objects, `done`), i.e. what kscript adds on top of the components' restarts.
//!
//! Run: `cargo bench --bench upgrade` (prints figures; the target is at most 5 s of kscript's
//! own time). Everything runs on 127.0.0.1; nothing is asserted about time.

#[allow(dead_code, clippy::all, clippy::pedantic)]
#[path = "../tests/cli/fake_apiserver.rs"]
mod fake_apiserver;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;

const RUNS: usize = 3;
const RESTART: Duration = Duration::from_secs(2);

fn kscript(args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kscript"))
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("kscript runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "kscript {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, took)
}

/// The seconds the run's JSON stream says it waited (each wait's `done`).
fn waited(stdout: &[u8]) -> f64 {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "wait" && v["state"] == "done")
        .filter_map(|v| v["elapsed_s"].as_f64())
        .sum()
}

/// One control plane rendered at v1.36.2, its API objects made against a fresh fake, then
/// upgraded to v1.37.0: (wall, waited) of the apply.
fn one_upgrade() -> (Duration, f64) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let root_s = root.to_str().unwrap().to_string();
    let listener = FakeApiServer::reserve();
    let port = listener.local_addr().unwrap().port().to_string();
    let node: Vec<String> = [
        "nodeRegistration.name=k8s-ctr".to_string(),
        "localAPIEndpoint.advertiseAddress=127.0.0.1".to_string(),
        format!("localAPIEndpoint.bindPort={port}"),
        "encryptionAlgorithm=ECDSA-P256".to_string(),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect();
    let node: Vec<&str> = node.iter().map(String::as_str).collect();
    let from = ["--set", "kubernetesVersion=v1.36.2"];
    kscript(&[&["run", "control-plane.rhai", "--root", &root_s][..], &node, &from].concat(), &[]);
    let pki = root.join("etc/kubernetes/pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let fake =
        FakeApiServer::start(listener, &read("apiserver.crt"), &read("apiserver.key"), &read("ca.crt"));
    fake.put(
        "/api/v1/nodes/k8s-ctr",
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-ctr"},
                           "status": {"nodeInfo": {"kubeletVersion": "v1.36.2"}}}),
    );
    let real = [("KSCRIPT_TEST_CLUSTER_API", "real")];
    let mut api: Vec<&str> = vec!["run", "control-plane.rhai", "--root", &root_s];
    api.extend_from_slice(&node);
    api.extend_from_slice(&from);
    for step in [
        "init/wait-control-plane",
        "init/cluster-admins",
        "init/upload-config",
        "init/mark-control-plane",
        "init/bootstrap-token",
        "init/addon/coredns",
        "init/addon/kube-proxy",
    ] {
        api.extend(["--only", step]);
    }
    kscript(&api, &real);
    fake.mirror_static_pods(&root.join("etc/kubernetes/manifests"), "k8s-ctr", &[]);
    fake.mirror_delay(RESTART);
    let mut apply: Vec<&str> =
        vec!["run", "upgrade.rhai", "--root", &root_s, "--only", "apply", "--output", "json"];
    apply.extend_from_slice(&node);
    apply.extend(["--set", "kubernetesVersion=v1.37.0"]);
    let (out, wall) = kscript(&apply, &real);
    (wall, waited(&out.stdout))
}

fn main() {
    println!(
        "kscript upgrade.rhai --only apply of a rendered control plane, v1.36.2 -> v1.37.0, the fake API \
         server's mirror Pods restarting {}s after each manifest changes ({RUNS} runs):",
        RESTART.as_secs()
    );
    let mut own = Vec::new();
    for i in 1..=RUNS {
        let (wall, waited) = one_upgrade();
        let mine = wall.as_secs_f64() - waited;
        println!("  run {i}: wall {:.2}s, waits {waited:.2}s, kscript's own {mine:.2}s", wall.as_secs_f64());
        own.push(mine);
    }
    own.sort_by(f64::total_cmp);
    println!("  median of kscript's own time: {:.2}s (target: at most 5 s)", own[own.len() / 2]);
}
