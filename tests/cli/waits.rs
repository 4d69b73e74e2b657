//! init's wait for the control plane says why it waits: against a real containerd (the
//! private one of `cri.rs`), with the node's static Pod manifests rendered by kscript and no
//! API server answering. An image that is not in the runtime and cannot be pulled ends the wait
//! at once, naming it; a container that keeps failing is shown with its last log line.
//!
//! The node is rendered into a sandbox (`--root`), then `init/wait-control-plane` runs with
//! `KSCRIPT_TEST_CLUSTER_API=real` and `KSCRIPT_TEST_CRI=real`: the API server named by the
//! rendered admin.conf and the runtime behind the socket under the root are asked for real;
//! nothing on the host's `/` is touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kscript::host::cri::{ContainerFilter, ContainerSpec, ContainerState, Cri, PodSpec, RealCri};

use super::cri::{Containerd, IMAGE, check};
use super::{Run, Sandbox};

/// The runtime's socket as the node's configuration names it; under the root in the sandbox.
const SOCKET: &str = "/run/kscript-test/containerd.sock";

/// A rendered control-plane node whose API server address has nothing listening, and a
/// private containerd serving the socket its configuration names.
struct Node {
    sb: Sandbox,
    containerd: Containerd,
    args: Vec<String>,
}

impl Node {
    /// Renders the node with `extra` settings, and starts containerd at its socket.
    fn up(extra: &[&str]) -> Self {
        let sb = Sandbox::new();
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut args: Vec<String> = [
            "--set",
            "nodeRegistration.name=k8s-ctr",
            "--set",
            "localAPIEndpoint.advertiseAddress=127.0.0.1",
            "--set",
            &format!("localAPIEndpoint.bindPort={port}"),
            "--set",
            "encryptionAlgorithm=ECDSA-P256",
            "--set",
            &format!("nodeRegistration.criSocket=unix://{SOCKET}"),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.extend(extra.iter().map(ToString::to_string));
        sb.render("control-plane.rhai", &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
        let root = fs::canonicalize(sb.root()).unwrap();
        let socket = root.join(SOCKET.trim_start_matches('/'));
        fs::create_dir_all(socket.parent().unwrap()).unwrap();
        // The socket must be in the root, not where a symlink of the render would lead.
        assert!(fs::canonicalize(socket.parent().unwrap()).unwrap().starts_with(&root));
        let containerd = Containerd::start_at(&sb, &socket);
        Self { sb, containerd, args }
    }

    /// `kscript run control-plane.rhai --root ROOT <node args> --only init/wait-control-plane
    /// <extra>`, asking the API server and the runtime for real.
    fn wait(&self, extra: &[&str]) -> Run {
        let root = self.sb.root();
        let mut all: Vec<&str> = vec!["run", "control-plane.rhai", "--root", root.to_str().unwrap()];
        all.extend(self.args.iter().map(String::as_str));
        all.extend(["--only", "init/wait-control-plane"]);
        all.extend_from_slice(extra);
        self.sb.kscript_env(&[("KSCRIPT_TEST_CLUSTER_API", "real"), ("KSCRIPT_TEST_CRI", "real")], &all)
    }

    /// The images the rendered static Pods name, each once.
    fn manifest_images(&self) -> Vec<String> {
        let mut images = Vec::new();
        for entry in fs::read_dir(self.sb.root().join("etc/kubernetes/manifests")).unwrap() {
            let text = fs::read_to_string(entry.unwrap().path()).unwrap();
            for line in text.lines() {
                if let Some(image) = line.trim().strip_prefix("image: ")
                    && !images.contains(&image.to_string())
                {
                    images.push(image.to_string());
                }
            }
        }
        images.sort();
        images
    }
}

/// `text` with runs of white space as one space (miette wraps long lines).
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The static Pods name images under a registry that does not resolve: the first one the wait
/// looks at is pulled once through the runtime, the pull fails, and the wait stops at once with
/// the image and the runtime's error, not after its 10 minutes.
#[test]
fn an_image_that_cannot_be_pulled_ends_the_wait_at_once() {
    let node = Node::up(&["--set", "imageRepository=registry.kscript.invalid"]);
    let images = node.manifest_images();
    let etcd = images.iter().find(|i| i.contains("/etcd:")).expect("an etcd image").clone();
    assert!(etcd.starts_with("registry.kscript.invalid/"), "{images:?}");
    let journal = node.sb.path().join("journal.jsonl");
    let run = node
        .wait(&[
            "--set",
            "timeouts.controlPlaneComponentHealthCheck=10m",
            "--journal",
            journal.to_str().unwrap(),
        ])
        .code(1);
    let message = flat(&run.message());
    for want in [
        format!("the static Pod etcd cannot start: its image {etcd} is not in the container runtime"),
        "and pulling it failed: CRI pull".to_string(),
        "registry.kscript.invalid".to_string(),
        "Nothing will change by waiting.".to_string(),
        // The full diagnosis follows.
        "Control-plane containers seen through the CRI".to_string(),
        "none: the kubelet has not started the static Pods".to_string(),
    ] {
        assert!(message.contains(&flat(&want)), "no `{want}` in:\n{}", run.stderr);
    }
    assert!(!message.contains("is not ready after"), "the wait ran out instead: {}", run.stderr);
    // The step's line names what failed: the pull.
    assert!(run.stdout.contains(&format!("failed   init/wait-control-plane  pull {etcd}")), "{}", run.stdout);
    // The runtime was asked, and still lacks the image.
    let cri = RealCri::new(&node.containerd.socket);
    assert_eq!(cri.image_status(&etcd).unwrap(), kscript::host::cri::ImageLookup::Absent);
    let journal = fs::read_to_string(&journal).unwrap();
    assert!(journal.contains("stopped by its check"), "{journal}");
}

/// Runs the container `name` with a command that fails, writing `words` to stderr, as attempts
/// 0 and 1 of one pod (as the kubelet restarts a failing container); waits until both exited.
fn run_failing_container(containerd: &Containerd, logs: &Path, name: &str, words: &[&str]) {
    let cri = RealCri::new(&containerd.socket);
    let pod = PodSpec {
        name: format!("{name}-k8s-ctr"),
        namespace: "kube-system".into(),
        uid: format!("uid-{name}"),
        host_network: true,
        cgroup_parent: containerd.cgroup_parent.clone(),
        log_directory: logs.display().to_string(),
        ..PodSpec::default()
    };
    let pod_id = cri.run_pod(&pod).unwrap().id.unwrap();
    for attempt in 0..2 {
        let spec = ContainerSpec {
            name: name.into(),
            attempt,
            image: IMAGE.into(),
            command: [&["/pause"], words].concat().iter().map(ToString::to_string).collect(),
            log_path: format!("{name}/{attempt}.log"),
            ..ContainerSpec::default()
        };
        let id = cri.create_container(&pod_id, &pod, &spec).unwrap().id.unwrap();
        cri.start_container(&id).unwrap();
        let start = Instant::now();
        let filter = ContainerFilter { id: Some(id.clone()), ..ContainerFilter::default() };
        while cri.containers(&filter).unwrap().iter().any(|c| c.state != ContainerState::Exited) {
            assert!(start.elapsed() < Duration::from_mins(1), "the container {id} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// With every image there and the API server's container failing, the wait shows that
/// container, its exit code and its last log line as progress, and the diagnosis it ends with
/// has them too.
#[test]
fn a_failing_container_is_shown_with_its_last_log_line() {
    let node = Node::up(&[]);
    // Every image the static Pods name is the pause image, under that name.
    for image in node.manifest_images() {
        let out =
            node.containerd.ctr().args(["-n", "k8s.io", "images", "tag", IMAGE, &image]).output().unwrap();
        check("ctr images tag", &out);
    }
    let logs: PathBuf = node.sb.path().join("pod-logs");
    let words = ["Error:", "unable", "to", "load", "server", "certificate:", "no", "such", "file"];
    run_failing_container(&node.containerd, &logs, "kube-apiserver", &words);
    let last = words.join(" ");
    let run = node.wait(&["--set", "timeouts.controlPlaneComponentHealthCheck=3s"]).code(1);
    // Progress, while it waited (not a terminal: lines).
    let seen = format!("kube-apiserver exited with code 1 (attempt 1): {last}");
    // A line per change of what is seen: `  ... waiting: LABEL; WHAT IS SEEN`.
    let progress: Vec<&str> =
        run.stderr.lines().filter(|l| l.starts_with("  ... waiting: ") && l.contains("; ")).collect();
    assert!(progress.iter().any(|l| l.contains(&seen)), "no `{seen}` in progress: {}", run.stderr);
    assert!(progress.iter().any(|l| l.contains("etcd not started")), "{progress:?}");
    // One line per change of what is seen: the same sight is not repeated.
    let mut unique = progress.clone();
    unique.dedup();
    assert_eq!(unique, progress, "{}", run.stderr);
    // The step's line names what it waited for, not what the check looked at last.
    assert!(run.stdout.contains("failed   init/wait-control-plane  wait-ready"), "{}", run.stdout);
    // The diagnosis it ended with.
    let message = flat(&run.message());
    for want in [
        "is not ready after 3s".to_string(),
        "kube-apiserver: exited (attempt 1, id".to_string(),
        format!("exit code 1, last log line: {last}"),
    ] {
        assert!(message.contains(&flat(&want)), "no `{want}` in:\n{}", run.stderr);
    }

    // The same wait with --output json: wait objects instead of lines on stderr, the failure
    // as an error object, nothing on stderr.
    let run =
        node.wait(&["--set", "timeouts.controlPlaneComponentHealthCheck=3s", "--output", "json"]).code(1);
    assert_eq!(run.stderr, "");
    super::json::check("run.v1.json", &run.stdout, true);
    let objects: Vec<serde_json::Value> =
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let waits: Vec<&serde_json::Value> = objects.iter().filter(|o| o["type"] == "wait").collect();
    let states: Vec<&str> = waits.iter().map(|w| w["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"waiting"), "{waits:?}");
    assert_eq!(states.last(), Some(&"done"), "{waits:?}");
    assert!(waits.iter().any(|w| w["reason"].as_str().is_some_and(|r| r.contains(&seen))), "{waits:?}");
    // Past its grace period only, and the end no sooner than the start.
    let elapsed: Vec<f64> = waits.iter().map(|w| w["elapsed_s"].as_f64().unwrap()).collect();
    assert!(elapsed[0] >= 1.0 && elapsed.windows(2).all(|p| p[0] <= p[1]), "{elapsed:?}");
    let error = objects.iter().find(|o| o["type"] == "error").unwrap();
    assert_eq!(error["step"], "init/wait-control-plane");
    assert!(flat(error["message"].as_str().unwrap()).contains("is not ready after 3s"), "{error}");
    assert_eq!(objects.last().unwrap()["failed_step"], "init/wait-control-plane");
}

/// `api_wait_ready` with a check: when rendering and in a dry run the wait is recorded and the
/// check never called; against a server that does not answer, what the check throws ends the
/// wait at once, and a check that returns neither a string nor `()` is a script error.
#[test]
fn a_checked_wait_is_recorded_when_rendering_and_stopped_by_its_check() {
    let sb = Sandbox::new();
    let script = |check: &str| {
        format!(
            r#"stage("s", "x", [ step("w", "w", || {{
                info(`ready=${{api_wait_ready("/etc/kubernetes/admin.conf", 600, {check})}}`);
            }}) ]);"#
        )
    };
    sb.write("never.rhai", &script(r#"|| throw "the check was called""#));
    let run = sb.render("never.rhai", &["-v"]).ok();
    assert!(run.stdout.contains("ready=false"), "{}", run.stdout);
    assert!(run.stdout.contains("! api wait-ready (recorded, not run)"), "{}", run.stdout);
    let run = sb.render("never.rhai", &["--dry-run"]).ok();
    assert!(run.stdout.contains("ready=false"), "{}", run.stdout);

    // admin.conf naming a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    sb.write(
        "root/etc/kubernetes/admin.conf",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: x}}\n"
        ),
    );
    let real = [("KSCRIPT_TEST_CLUSTER_API", "real")];
    let root = sb.root();
    let run_script = |name: &str| sb.kscript_env(&real, &["run", name, "--root", root.to_str().unwrap()]);
    sb.write(
        "stop.rhai",
        &script(r"|| { let n = looks.len(); looks.push(n); if n < 1 { `look ${n}` } else { throw `stopped at look ${n}` } }")
            .replace("stage(", "let looks = [];\nstage("),
    );
    let run = run_script("stop.rhai").code(1);
    assert!(run.message().contains("stopped at look 1"), "{}", run.stderr);
    assert!(!run.message().contains("is not ready after"), "{}", run.stderr);
    sb.write("number.rhai", &script("|| 42"));
    let run = run_script("number.rhai").code(1);
    assert!(
        flat(&run.message()).contains(
            "api_wait_ready(): the check must return a string (what it sees) or () (nothing to say), not i64"
        ),
        "{}",
        run.stderr
    );
}
