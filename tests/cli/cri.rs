//! The CRI primitives: against a real containerd and runc (Debian's `containerd runc`) on a
//! private socket, driven through kscript's script functions; and what they do without one.
//!
//! A [`Containerd`] keeps all its state under the test's sandbox and its pods' cgroups under a
//! cgroup parent of its own. Dropping it, also when the test panics, stops containerd and
//! removes what it left on the machine: pods, shims and their sockets under /run/containerd/s,
//! mounts, cgroups. Only processes it can tell are its own are killed, by their PID.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kscript::host::cri::{Cri, PodFilter, RealCri};
use kscript::journal::{self, Outcome};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Sandbox;

/// The image every pod here runs: pause.c, built static, in a one-layer OCI image.
pub(super) const IMAGE: &str = "test.local/pause:1";

/// Builds pause.c static in `dir` and wraps it in a one-layer OCI image archive named
/// [`IMAGE`] with oci-image.py; returns the archive's path (`dir/pause.tar`).
pub(super) fn build_pause_image(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/cri");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(dir.join("pause"))
        .arg(src.join("pause.c"))
        .output()
        .expect("gcc runs (Debian packages gcc and libc6-dev; `.ci/run` installs them)");
    check("gcc -static pause.c", &out);
    let out = Command::new("python3")
        .arg(src.join("oci-image.py"))
        .args(["pause.tar", IMAGE, r#"["/pause"]"#, "pause=/pause"])
        .current_dir(dir)
        .output()
        .expect("python3 runs");
    check("oci-image.py", &out);
    dir.join("pause.tar")
}

/// The programs the real-runtime tests need, and the Debian package of each.
const TOOLS: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("gcc", "gcc"),
    ("python3", "python3"),
    ("umount", "mount"),
];

/// Fails the test, saying what to install, unless every tool is there and we are root.
#[track_caller]
fn require_tools() {
    super::require_tools(
        TOOLS,
        "the CRI tests run a real containerd",
        "the CRI tests run containerd, which needs root",
    );
}

#[track_caller]
pub(super) fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `pid` is gone or a zombie (nothing here reaps what PID 1 inherits).
fn dead(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// The cgroup hierarchies' mount points: each v1 controller and the v2 tree of a hybrid
/// layout, or the one v2 tree.
fn hierarchies() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    out
}

/// Every folder under `dir`, `dir` included, deepest first.
pub(super) fn folders_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&d) {
            stack.extend(
                entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
            );
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all
}

/// What a private containerd leaves on the machine, found from the outside.
#[derive(Debug, Default)]
pub(super) struct Traces {
    /// Shim processes serving its socket.
    shims: Vec<i32>,
    /// Processes in its pods' cgroups.
    processes: Vec<i32>,
    /// Its pods' cgroup folders (the cgroup parent itself not counted).
    cgroups: Vec<PathBuf>,
    /// Mounts under its state folder.
    mounts: Vec<PathBuf>,
    /// Shim sockets it was told about.
    sockets: Vec<PathBuf>,
}

impl Traces {
    fn is_empty(&self) -> bool {
        self.shims.is_empty()
            && self.processes.is_empty()
            && self.cgroups.is_empty()
            && self.mounts.is_empty()
            && self.sockets.is_empty()
    }
}

/// A private containerd with runc, all its state under a test's sandbox.
pub(super) struct Containerd {
    child: Option<Child>,
    dir: PathBuf,
    pub(super) socket: PathBuf,
    /// The cgroup the test's pods go under (`/kscript-test-<pid>-<nanos>`).
    pub(super) cgroup_parent: String,
    /// The shim sockets seen, for the clean-up (the state that names them may be gone by then).
    shim_sockets: Vec<PathBuf>,
    /// The ids of the pods and containers seen.
    ids: Vec<String>,
    cleaned: bool,
}

impl Containerd {
    /// Starts containerd (`SystemdCgroup = false`, `restrict_oom_score_adj = true`, as these
    /// machines need) and imports the pause image.
    pub(super) fn start(sb: &Sandbox) -> Self {
        let socket = fs::canonicalize(sb.path()).unwrap().join("containerd/containerd.sock");
        Self::start_at(sb, &socket)
    }

    /// [`Containerd::start`], serving on `socket` (a node root's
    /// `/run/containerd/containerd.sock`, for a render that asks the runtime).
    pub(super) fn start_at(sb: &Sandbox, socket: &Path) -> Self {
        require_tools();
        // Real paths: mounts under it are found in /proc/self/mountinfo by prefix.
        let dir = fs::canonicalize(sb.path()).unwrap().join("containerd");
        for sub in ["root", "state", "opt", "runc", "cni/bin", "cni/conf"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let cgroup_parent = format!("/kscript-test-{}-{nanos}", std::process::id());
        let socket = socket.to_path_buf();
        let d = dir.display();
        fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{IMAGE}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{d}/cni/bin"
      conf_dir = "{d}/cni/conf"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{d}/runc"
"#,
                socket = socket.display(),
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd starts");
        // From here on, a panic stops it and cleans up.
        let mut me = Self {
            child: Some(child),
            dir,
            socket,
            cgroup_parent,
            shim_sockets: Vec::new(),
            ids: Vec::new(),
            cleaned: false,
        };
        me.wait_until_it_answers();
        me.import_pause_image();
        me
    }

    /// `ctr` against this containerd.
    pub(super) fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket).args(["--timeout", "10s"]);
        cmd
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn wait_until_it_answers(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited ({status}):\n{}", self.log());
            }
            let out = self.ctr().arg("version").output().unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not answer in 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Imports the pause image (see `build_pause_image`).
    fn import_pause_image(&self) {
        let archive = build_pause_image(&self.dir);
        let out = self.ctr().args(["-n", "k8s.io", "images", "import"]).arg(archive).output().unwrap();
        check("ctr images import", &out);
    }

    /// Tags the image `source` (imported or pulled already) as `target` too.
    pub(super) fn tag(&self, source: &str, target: &str) {
        let out = self.ctr().args(["-n", "k8s.io", "images", "tag", source, target]).output().unwrap();
        check(&format!("ctr images tag {source} {target}"), &out);
    }

    pub(super) fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The ids of the task bundles under the state folder, and the shim sockets they name.
    fn note_bundles(&mut self) {
        let tasks = self.dir.join("state/io.containerd.runtime.v2.task/k8s.io");
        for bundle in fs::read_dir(tasks).into_iter().flatten().flatten() {
            let id = bundle.file_name().to_string_lossy().into_owned();
            if !self.ids.contains(&id) {
                self.ids.push(id);
            }
            if let Ok(address) = fs::read_to_string(bundle.path().join("address"))
                && let Some(path) = address.trim().strip_prefix("unix://")
            {
                let path = PathBuf::from(path);
                if !self.shim_sockets.contains(&path) {
                    self.shim_sockets.push(path);
                }
            }
        }
    }

    /// What this containerd has left on the machine right now.
    fn traces(&self) -> Traces {
        let mut t = Traces::default();
        // Shims: `containerd-shim-runc-v2 ... -address <our socket>`.
        let ours = self.socket.as_os_str().as_encoded_bytes();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = argv.first().is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
            if is_shim && argv.windows(2).any(|w| w[0] == b"-address" && w[1] == ours) && !dead(pid) {
                t.shims.push(pid);
            }
        }
        // Our pods' cgroups, and the processes in them.
        for top in self.cgroup_tops() {
            for d in folders_deepest_first(&top) {
                for line in fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                    if let Ok(pid) = line.trim().parse::<i32>()
                        && !t.processes.contains(&pid)
                        && !dead(pid)
                    {
                        t.processes.push(pid);
                    }
                }
                if !d.ends_with(self.cgroup_parent.trim_start_matches('/')) {
                    t.cgroups.push(d);
                }
            }
        }
        // Mounts under our folder (image layers, rootfs overlays, the sandbox's shm).
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            if let Some(point) = line.split(' ').nth(4).map(|p| PathBuf::from(p.replace("\\040", " ")))
                && point.starts_with(&self.dir)
            {
                t.mounts.push(point);
            }
        }
        t.mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        t.sockets = self.shim_sockets.iter().filter(|s| s.exists()).cloned().collect();
        t
    }

    /// The cgroup folders this containerd's pods may have, in every hierarchy: the test's
    /// cgroup parent, and `/k8s.io/<id>`, where containerd puts a pod given no parent.
    fn cgroup_tops(&self) -> Vec<PathBuf> {
        let mut tops = Vec::new();
        for h in hierarchies() {
            tops.push(h.join(self.cgroup_parent.trim_start_matches('/')));
            tops.extend(self.ids.iter().map(|id| h.join("k8s.io").join(id)));
        }
        tops.retain(|p| p.is_dir());
        tops
    }

    /// Kills containerd at once, as a crash would: its shims and containers stay behind.
    fn crash(&mut self) {
        self.note_bundles();
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops containerd and removes what it left; returns what had to be removed by force
    /// (nothing, when the test removed its pods itself).
    pub(super) fn shutdown(&mut self) -> Traces {
        if self.cleaned {
            return Traces::default();
        }
        self.cleaned = true;
        self.note_bundles();
        // While containerd runs, let it remove the pods a failed test left behind.
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            let cri = RealCri::new(&self.socket);
            for pod in cri.pods(&PodFilter::default()).unwrap_or_default() {
                if let Err(e) = cri.remove_pod(&pod.id) {
                    eprintln!("clean-up: containerd could not remove pod {}: {e}", pod.id);
                }
            }
        }
        let found = self.traces();
        // containerd: SIGTERM, then SIGKILL after 5 s.
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = kill(pid, Signal::SIGTERM);
            let start = Instant::now();
            while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // What outlives it: the containers in our cgroups, then the shims serving our socket.
        for pid in found.processes.iter().chain(&found.shims) {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        let start = Instant::now();
        while !found.processes.iter().chain(&found.shims).all(|p| dead(*p))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for point in &found.mounts {
            let _ = Command::new("umount").arg("--lazy").arg(point).stderr(Stdio::null()).status();
        }
        for socket in &found.sockets {
            let _ = fs::remove_file(socket);
        }
        // Our cgroups, children first; a folder stays busy for a moment after its last
        // process is killed. `/k8s.io` goes too if that leaves it empty (rmdir refuses
        // otherwise: other runtimes on the machine may use it).
        let start = Instant::now();
        for top in self.cgroup_tops() {
            for d in folders_deepest_first(&top) {
                while fs::remove_dir(&d).is_err() && d.exists() && start.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        for h in hierarchies() {
            let _ = fs::remove_dir(h.join("k8s.io"));
        }
        let left = self.traces();
        if !left.is_empty() {
            eprintln!("clean-up: containerd in {} left {left:?}", self.dir.display());
        }
        found
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn journal_targets(path: &Path) -> Vec<(String, Outcome)> {
    journal::read(path)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "cri")
        .map(|e| (e.target, e.outcome))
        .collect()
}

/// The script the real-runtime test runs; `@EP@`, `@PARENT@` and `@LOGS@` are filled in.
const FLOW: &str = r#"
const EP = "@EP@";
const POD = #{
    name: "kscript-cri-test", namespace: "kscript-test", uid: "uid-1", host_network: true,
    cgroup_parent: "@PARENT@", log_directory: "@LOGS@", labels: #{ suite: "kscript" },
};
const PAUSE = #{ name: "pause", image: "test.local/pause:1", log_path: "pause.log", labels: #{ role: "test" } };

stage("runtime", "The runtime answers", [
    step("ready", "Wait until it is ready", || {
        let s = cri_wait_ready(EP, 20);
        info(`ready runtime_ready=${s.runtime_ready}`);
    }),
    step("ask", "Version, status, images", || {
        let v = cri_version(EP);
        info(`version runtime_name=${v.runtime_name} api=${v.runtime_api_version}`);
        let s = cri_status(EP);
        info(`status runtime_ready=${s.runtime_ready} network_ready=${s.network_ready}`);
        let i = cri_image_status(EP, "test.local/pause:1");
        info(`image present=${i.present} tags=${i.repo_tags}`);
        info(`absent present=${cri_image_status(EP, "test.local/absent:1").present}`);
        info(`pull changed=${cri_pull(EP, "test.local/pause:1")}`);
        try { cri_pull(EP, "127.0.0.1:9/absent:1"); } catch (e) { info(`pull failure: ${e}`); }
    }),
]);

stage("pod", "A host-network pod", [
    step("run", "Run a pod with a container", || {
        let pod = cri_run_pod(EP, POD);
        let c = cri_create_container(EP, pod, POD, PAUSE);
        cri_start_container(EP, c);
        let running = cri_wait_running(EP, "pause", 20);
        info(`running name=${running.name} state=${running.state} same_pod=${running.pod_id == pod} same_id=${running.id == c}`);
    }),
    step("again", "Running it again changes nothing", || {
        let pod = cri_run_pod(EP, POD);
        let c = cri_create_container(EP, pod, POD, PAUSE);
        info(`again started=${cri_start_container(EP, c)}`);
    }),
    step("list", "Find it with filters", || {
        let pods = cri_pods(EP, #{ labels: #{ suite: "kscript" }, state: "ready" });
        info(`pods=${pods.len()} name=${pods[0].name} namespace=${pods[0].namespace} uid=${pods[0].uid}`);
        let cs = cri_containers(EP, #{ pod_id: pods[0].id, state: "running", name: "pause", labels: #{ role: "test" } });
        info(`running containers=${cs.len()} image=${cs[0].image}`);
        info(`exited containers=${cri_containers(EP, #{ state: "exited" }).len()}`);
        info(`other pods=${cri_pods(EP, #{ name: "nope" }).len()}`);
        try { cri_wait_running(EP, "never-there", 1); } catch (e) { info(`wait failure: ${e}`); }
    }),
    step("stop", "Stop and remove it", || {
        let id = cri_pods(EP, #{ name: "kscript-cri-test" })[0].id;
        info(`stop=${cri_stop_pod(EP, id)} again=${cri_stop_pod(EP, id)}`);
        info(`stopped pod=${cri_pods(EP, #{ id: id })[0].state} container=${cri_containers(EP, #{ pod_id: id })[0].state}`);
        info(`remove=${cri_remove_pod(EP, id)} again=${cri_remove_pod(EP, id)}`);
        info(`left pods=${cri_pods(EP).len()} containers=${cri_containers(EP).len()}`);
    }),
]);
"#;

/// Version and Status, the imported image, a host-network pod with a container seen running,
/// stopped and removed: all through kscript's script functions, against containerd.
#[test]
fn cri_primitives_against_a_real_containerd() {
    let sb = Sandbox::new();
    let mut containerd = Containerd::start(&sb);
    let script = FLOW
        .replace("@EP@", &containerd.endpoint())
        .replace("@PARENT@", &containerd.cgroup_parent)
        .replace("@LOGS@", &sb.path().join("pod-logs").display().to_string());
    sb.write("cri.rhai", &script);
    let journal = sb.path().join("journal.jsonl");
    let run = sb.kscript(&["run", "cri.rhai", "--journal", journal.to_str().unwrap()]).ok();
    let out = &run.stdout;
    for line in [
        "ready runtime_ready=true",
        "version runtime_name=containerd api=v1",
        // No CNI here: the network is not ready, which host-network pods do not need.
        "status runtime_ready=true network_ready=false",
        "image present=true tags=[\"test.local/pause:1\"]",
        "absent present=false",
        "pull changed=false",
        "running name=pause state=running same_pod=true same_id=true",
        "again started=false",
        "pods=1 name=kscript-cri-test namespace=kscript-test uid=uid-1",
        "running containers=1 image=test.local/pause:1",
        "exited containers=0",
        "other pods=0",
        "stop=true again=false",
        "stopped pod=notready container=exited",
        "remove=true again=false",
        "left pods=0 containers=0",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}\n{}", run.stderr);
    }
    assert!(out.contains("pull failure: CRI pull 127.0.0.1:9/absent:1 ("), "{out}");
    assert!(
        out.contains("wait failure: no container named `never-there` is running at unix://")
            && out.contains("after 1s; containers seen:\n  pause  running  attempt 0  id "),
        "{out}"
    );
    assert!(out.contains("changed  pod/run") && out.contains("ok       pod/again"), "{out}");
    assert!(
        sb.path().join("pod-logs/pause.log").is_file(),
        "the container's log file is under log_directory"
    );

    let targets = journal_targets(&journal);
    let has =
        |prefix: &str, outcome: Outcome| targets.iter().any(|(t, o)| t.starts_with(prefix) && *o == outcome);
    for (prefix, outcome) in [
        ("wait-ready", Outcome::Ok),
        ("pull test.local/pause:1", Outcome::Ok),
        ("run-pod kscript-test/kscript-cri-test", Outcome::Changed),
        ("create-container pause in pod ", Outcome::Changed),
        ("start-container ", Outcome::Changed),
        ("wait-running pause", Outcome::Ok),
        ("run-pod kscript-test/kscript-cri-test", Outcome::Ok),
        ("start-container ", Outcome::Ok),
        ("wait-running never-there", Outcome::Failed),
        ("stop-pod ", Outcome::Changed),
        ("stop-pod ", Outcome::Ok),
        ("remove-pod ", Outcome::Changed),
        ("remove-pod ", Outcome::Ok),
    ] {
        assert!(has(prefix, outcome), "no journal entry `{prefix}...` {outcome}: {targets:?}");
    }

    // The script removed its pod: nothing is left for the clean-up to remove by force.
    let forced = containerd.shutdown();
    assert!(forced.is_empty(), "left behind after the pod was removed: {forced:?}");
}

/// A test that fails half-way, with a pod running and containerd gone, leaves no shim, no
/// container process, no shim socket, no mount and no cgroup behind.
#[test]
fn a_failed_test_leaves_nothing_behind() {
    let sb = Sandbox::new();
    let mut seen = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut containerd = Containerd::start(&sb);
        let script = format!(
            r#"stage("s", "leave a pod running", [ step("run", "run", || {{
                let pod = #{{ name: "left-behind", host_network: true }};
                let id = cri_run_pod("{ep}", pod);
                cri_start_container("{ep}", cri_create_container("{ep}", id, pod, #{{ name: "pause", image: "{IMAGE}" }}));
                cri_wait_running("{ep}", "pause", 20);
            }}) ]);"#,
            ep = containerd.endpoint(),
        );
        sb.write("leave.rhai", &script);
        sb.kscript(&["run", "leave.rhai", "--journal", sb.path().join("j.jsonl").to_str().unwrap()]).ok();
        containerd.crash();
        let traces = containerd.traces();
        assert!(!traces.shims.is_empty() && traces.processes.len() >= 2, "nothing to clean up: {traces:?}");
        assert!(!traces.mounts.is_empty() && !traces.sockets.is_empty(), "{traces:?}");
        // No cgroup parent given: containerd put the pod under /k8s.io/<id>.
        assert!(traces.cgroups.iter().any(|c| c.to_string_lossy().contains("/k8s.io/")), "{traces:?}");
        // The same containerd seen from outside, for a look after the clean-up.
        let outside = Containerd {
            child: None,
            dir: containerd.dir.clone(),
            socket: containerd.socket.clone(),
            cgroup_parent: containerd.cgroup_parent.clone(),
            shim_sockets: containerd.shim_sockets.clone(),
            ids: containerd.ids.clone(),
            cleaned: true,
        };
        seen = Some((outside, traces));
        panic!("failing half-way, as a test can");
    }));
    assert!(result.is_err());
    let (outside, before) = seen.expect("the test got as far as the crash");
    let after = outside.traces();
    assert!(after.is_empty(), "left behind: {after:?} (before the clean-up: {before:?})");
    assert!(before.processes.iter().chain(&before.shims).all(|p| dead(*p)));
}

/// Rendering and dry runs record the CRI effects; queries know nothing; no socket is needed.
#[test]
fn cri_calls_are_recorded_when_rendering() {
    let sb = Sandbox::new();
    sb.write(
        "cri.rhai",
        r#"
const EP = "unix:///run/containerd/containerd.sock";
stage("cri", "record", [ step("all", "every effect", || {
    info(`unknown: ready=${cri_wait_ready(EP, 5) == ()} version=${cri_version(EP) == ()} status=${cri_status(EP) == ()}`);
    info(`image=${cri_image_status(EP, "registry.k8s.io/pause:3.10") == ()} pods=${cri_pods(EP)} containers=${cri_containers(EP, #{ state: "running" })}`);
    info(`pulled=${cri_pull(EP, "registry.k8s.io/pause:3.10")}`);
    let pod = #{ name: "etcd", namespace: "kube-system", host_network: true, log_directory: "/var/log/pods/etcd" };
    let id = cri_run_pod(EP, pod);
    let c = cri_create_container(EP, id, pod, #{ name: "etcd", image: "registry.k8s.io/etcd:3.5", mounts: [#{ container_path: "/var/lib/etcd", host_path: "/var/lib/etcd" }] });
    info(`pod=${id == ()} container=${c == ()} started=${cri_start_container(EP, c)}`);
    info(`running=${cri_wait_running(EP, "etcd", 5) == ()}`);
    info(`stopped=${cri_stop_pod(EP, "0123abc")} removed=${cri_remove_pod(EP, "0123abc")}`);
}) ]);
"#,
    );
    let run = sb.render("cri.rhai", &["-v"]).ok();
    let out = &run.stdout;
    for line in [
        "unknown: ready=true version=true status=true",
        "image=true pods=[] containers=[]",
        "pulled=false",
        "pod=true container=true started=false",
        "running=true",
        "stopped=false removed=false",
        "! cri wait-ready (recorded, not run)",
        "! cri pull registry.k8s.io/pause:3.10 (recorded, not run)",
        "! cri run-pod kube-system/etcd (recorded, not run)",
        "! cri create-container etcd in pod (id not known) (recorded, not run)",
        "! cri start-container (id not known) (recorded, not run)",
        "! cri wait-running etcd (recorded, not run)",
        "! cri stop-pod 0123abc (recorded, not run)",
        "! cri remove-pod 0123abc (recorded, not run)",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    let targets = journal_targets(&sb.root().join("var/lib/kscript/journal.jsonl"));
    assert_eq!(targets.len(), 8, "{targets:?}");
    assert!(targets.iter().all(|(_, o)| *o == Outcome::Recorded), "{targets:?}");
    // A dry run records the same, and writes nothing.
    let run = sb.render("cri.rhai", &["--dry-run"]).ok();
    assert!(run.stdout.contains("! cri stop-pod 0123abc (recorded, not run)"), "{}", run.stdout);
}

/// `text` without whitespace or miette's frame characters.
fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// No runtime behind the socket: the error names the socket and what to check.
#[test]
fn a_missing_cri_socket_is_a_clear_error() {
    let sb = Sandbox::new();
    let socket = sb.path().join("no-containerd.sock");
    let journal = sb.path().join("journal.jsonl");
    let journal = journal.to_str().unwrap();
    let script = |body: &str| {
        format!(
            r#"stage("s", "x", [ step("c", "ask", || {{ const EP = "unix://{}"; {body}; }}) ]);"#,
            socket.display()
        )
    };
    sb.write("version.rhai", &script("info(cri_version(EP))"));
    let run = sb.kscript(&["run", "version.rhai", "--journal", journal]).code(1);
    // miette wraps long lines, and may break a path: compare without whitespace.
    let message = squeeze(&run.stderr);
    for part in [
        format!("CRI version (unix://{})", socket.display()),
        format!("no socket at {}", socket.display()),
        "is containerd running? `systemctl status containerd`".to_string(),
    ] {
        assert!(message.contains(&squeeze(&part)), "no `{part}` in {}", run.stderr);
    }

    sb.write("wait.rhai", &script("cri_wait_ready(EP, 1)"));
    let start = Instant::now();
    let run = sb.kscript(&["run", "wait.rhai", "--journal", journal]).code(1);
    assert!(start.elapsed() >= Duration::from_secs(1));
    let message = squeeze(&run.stderr);
    assert!(message.contains(&squeeze("is not ready after 1s: no socket at")), "{}", run.stderr);
    assert!(message.contains(&squeeze("systemctl status containerd")), "{}", run.stderr);

    sb.write("endpoint.rhai", &script(r#"cri_version("tcp://127.0.0.1:1")"#));
    let run = sb.kscript(&["run", "endpoint.rhai", "--journal", journal]);
    assert_ne!(run.code, 0);
    assert!(
        run.message().contains("`tcp://127.0.0.1:1` is not a CRI endpoint kscript can use"),
        "{}",
        run.stderr
    );
}
