//! The images kubeadm uses: the pins of every release row, the list `images.rhai` prints, and
//! kubeadm's `ImagePull` preflight check and `images.rhai --only pull` against a private
//! containerd (reached through a render with the test hook `KSCRIPT_TEST_CRI=real`, so the
//! host's `/` is never touched).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use kscript::journal;

use super::Sandbox;
use super::cri::{Containerd, IMAGE, build_pause_image};

/// One release and the tags kubeadm pins for it: every row of the spec's table, tested at
/// the patch before a change and at the patch of the change (and one after).
struct Row {
    release: &'static str,
    pause: &'static str,
    etcd: &'static str,
    coredns: &'static str,
    /// Whether the pins carry an "unverified" note.
    unverified: bool,
}

const fn row(release: &'static str, pause: &'static str, etcd: &'static str, coredns: &'static str) -> Row {
    Row { release, pause, etcd, coredns, unverified: false }
}

const fn open(release: &'static str, pause: &'static str, etcd: &'static str, coredns: &'static str) -> Row {
    Row { release, pause, etcd, coredns, unverified: true }
}

const TABLE: &[Row] = &[
    // 1.28: etcd 3.5.9-0; 3.5.10-0 (.6); 3.5.12-0 (.8); 3.5.15-0 (.14)
    row("v1.28.0", "3.9", "3.5.9-0", "v1.10.1"),
    row("v1.28.5", "3.9", "3.5.9-0", "v1.10.1"),
    row("v1.28.6", "3.9", "3.5.10-0", "v1.10.1"),
    row("v1.28.7", "3.9", "3.5.10-0", "v1.10.1"),
    row("v1.28.8", "3.9", "3.5.12-0", "v1.10.1"),
    row("v1.28.13", "3.9", "3.5.12-0", "v1.10.1"),
    row("v1.28.14", "3.9", "3.5.15-0", "v1.10.1"),
    row("v1.28.15", "3.9", "3.5.15-0", "v1.10.1"),
    // 1.29: 3.5.10-0; 3.5.12-0 (.3); 3.5.15-0 (.9); 3.5.16-0 (.11)
    row("v1.29.0", "3.9", "3.5.10-0", "v1.11.1"),
    row("v1.29.2", "3.9", "3.5.10-0", "v1.11.1"),
    row("v1.29.3", "3.9", "3.5.12-0", "v1.11.1"),
    row("v1.29.8", "3.9", "3.5.12-0", "v1.11.1"),
    row("v1.29.9", "3.9", "3.5.15-0", "v1.11.1"),
    row("v1.29.10", "3.9", "3.5.15-0", "v1.11.1"),
    row("v1.29.11", "3.9", "3.5.16-0", "v1.11.1"),
    row("v1.29.15", "3.9", "3.5.16-0", "v1.11.1"),
    // 1.30: 3.5.12-0; 3.5.15-0 (.5) | CoreDNS v1.11.1; v1.11.3 (.5)
    row("v1.30.0", "3.9", "3.5.12-0", "v1.11.1"),
    row("v1.30.4", "3.9", "3.5.12-0", "v1.11.1"),
    row("v1.30.5", "3.9", "3.5.15-0", "v1.11.3"),
    row("v1.30.14", "3.9", "3.5.15-0", "v1.11.3"),
    // 1.31: 3.5.15-0; 3.5.24-0 (.14) | CoreDNS v1.11.1; v1.11.3 (.1)
    row("v1.31.0", "3.10", "3.5.15-0", "v1.11.1"),
    row("v1.31.1", "3.10", "3.5.15-0", "v1.11.3"),
    row("v1.31.13", "3.10", "3.5.15-0", "v1.11.3"),
    row("v1.31.14", "3.10", "3.5.24-0", "v1.11.3"),
    // 1.32: 3.5.16-0; 3.5.24-0 (.10)
    row("v1.32.0", "3.10", "3.5.16-0", "v1.11.3"),
    row("v1.32.9", "3.10", "3.5.16-0", "v1.11.3"),
    row("v1.32.10", "3.10", "3.5.24-0", "v1.11.3"),
    // 1.33: 3.5.21-0; 3.5.24-0 (.6)
    row("v1.33.0", "3.10", "3.5.21-0", "v1.12.0"),
    row("v1.33.5", "3.10", "3.5.21-0", "v1.12.0"),
    row("v1.33.6", "3.10", "3.5.24-0", "v1.12.0"),
    // 1.34: 3.6.4-0; 3.6.5-0 (.2); later patches unconfirmed (3.6.10/3.6.11)
    row("v1.34.0", "3.10.1", "3.6.4-0", "v1.12.1"),
    row("v1.34.1", "3.10.1", "3.6.4-0", "v1.12.1"),
    open("v1.34.2", "3.10.1", "3.6.5-0", "v1.12.1"),
    // 1.35 and 1.36: one row each, later patches unconfirmed.
    open("v1.35.0", "3.10.1", "3.6.6-0", "v1.13.1"),
    open("v1.35.4", "3.10.1", "3.6.6-0", "v1.13.1"),
    open("v1.36.0", "3.10.2", "3.6.8-0", "v1.14.2"),
    // 1.37: from rc.0; an earlier pre-release takes rc.0's pins with a warning.
    row("v1.37.0-alpha.1", "3.10.2", "3.7.0-0", "v1.14.6"),
    row("v1.37.0-rc.0", "3.10.2", "3.7.0-0", "v1.14.6"),
    row("v1.37.0-rc.1", "3.10.2", "3.7.0-0", "v1.14.6"),
    row("v1.37.0", "3.10.2", "3.7.0-0", "v1.14.6"),
    row("1.37.2", "3.10.2", "3.7.0-0", "v1.14.6"),
    // A minor the table does not have: the newest pins, with a warning.
    row("v1.38.0", "3.10.2", "3.7.0-0", "v1.14.6"),
];

/// Every row of the table, through the stdlib functions init uses (`etcd_image`,
/// `pause_image`, `coredns_image`), at the default registry.
#[test]
fn every_release_row_pins_kubeadms_images() {
    let sb = Sandbox::new();
    let mut script = String::from(
        "import \"versions\" as versions;\nstage(\"t\", \"pins\", [ step(\"rows\", \"every row\", || {\n",
    );
    for r in TABLE {
        writeln!(
            script,
            "    {{ let c = cfg; c.kubernetesVersion = \"{v}\"; let p = versions::pin(c);
      info(`row {v} ${{versions::pause_image(c)}} ${{versions::etcd_image(c)}} ${{versions::coredns_image(c)}} unverified=${{p.unverified != ()}}`); }}",
            v = r.release
        )
        .unwrap();
    }
    script.push_str("}) ]);\n");
    sb.write("pins.rhai", &script);
    let run = sb.render("pins.rhai", &[]).ok();
    for r in TABLE {
        let want = format!(
            "row {} registry.k8s.io/pause:{} registry.k8s.io/etcd:{} registry.k8s.io/coredns/coredns:{} unverified={}",
            r.release, r.pause, r.etcd, r.coredns, r.unverified
        );
        assert!(run.stdout.lines().any(|l| l.trim() == want), "no `{want}` in:\n{}", run.stdout);
    }
    let warnings = run.stderr.replace("\n  │ ", " ");
    assert!(
        warnings.contains(
            "v1.37.0-alpha.1 is older than the first 1.37 release kscript knows the images of (1.37.0-rc.0)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        warnings.contains("no images are pinned for Kubernetes 1.38; using those of the newest 1.37 release"),
        "{}",
        run.stderr
    );
}

/// The overrides win over the pins, and a registry of one's own has no `/coredns` sub-path.
#[test]
fn overrides_win_over_the_pins() {
    let sb = Sandbox::new();
    sb.write(
        "o.rhai",
        r#"import "versions" as versions;
stage("t", "overrides", [ step("o", "overrides", || {
    let c = cfg;
    c.kubernetesVersion = "v1.28.7";
    c.etcd.local.imageTag = "3.5.99-0";
    c.dns.imageTag = "v9.9.9";
    info(`over ${versions::etcd_image(c)} ${versions::coredns_image(c)}`);
    c.imageRepository = "registry.example/k8s";
    c.etcd.local.imageRepository = "etcd.example/mirror";
    info(`repo ${versions::etcd_image(c)} ${versions::coredns_image(c)} ${versions::pause_image(c)}`);
}) ]);"#,
    );
    let run = sb.render("o.rhai", &[]).ok();
    assert!(
        run.stdout.contains("over registry.k8s.io/etcd:3.5.99-0 registry.k8s.io/coredns/coredns:v9.9.9"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "repo etcd.example/mirror/etcd:3.5.99-0 registry.example/k8s/coredns:v9.9.9 registry.example/k8s/pause:3.9"
        ),
        "{}",
        run.stdout
    );
}

/// `images.rhai`'s list, as `kubeadm config images list` prints it: 1.28's order (pause, etcd,
/// `CoreDNS` last), 1.29's and later (`CoreDNS` before pause), a pre-release, and disabled add-ons.
#[test]
fn the_images_script_lists_what_kubeadm_lists() {
    let sb = Sandbox::new();
    let mut text = String::new();
    for args in [
        &["--set", "kubernetesVersion=v1.28.7"][..],
        &["--set", "kubernetesVersion=v1.30.5", "--set", "imageRepository=registry.example/k8s"],
        &["--set", "kubernetesVersion=v1.37.0-rc.0"],
        &["--set", "kubernetesVersion=v1.36.1", "--set", "dns.disabled=true", "--set", "proxy.disabled=true"],
    ] {
        let run = sb.kscript(&[&["run", "images.rhai", "--dry-run"][..], args].concat()).ok();
        writeln!(text, "$ kscript run images.rhai --dry-run {}", args.join(" ")).unwrap();
        text.push_str(&sb.stable(&run.stdout));
        if !run.stderr.is_empty() {
            text.push_str("stderr:\n");
            text.push_str(&sb.stable(&run.stderr));
        }
        text.push('\n');
    }
    insta::assert_snapshot!("images_list", text);
}

/// `text` without whitespace or miette's frame characters.
fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && *c != '│').collect()
}

/// The images init needs for v1.28.7 from `registry.invalid/k8s` (a registry that cannot
/// be reached: DNS fails for `.invalid`).
const NEEDED: &[&str] = &[
    "registry.invalid/k8s/kube-apiserver:v1.28.7",
    "registry.invalid/k8s/kube-controller-manager:v1.28.7",
    "registry.invalid/k8s/kube-scheduler:v1.28.7",
    "registry.invalid/k8s/kube-proxy:v1.28.7",
    "registry.invalid/k8s/pause:3.9",
    "registry.invalid/k8s/etcd:3.5.10-0",
    "registry.invalid/k8s/coredns:v1.10.1",
];

/// `args` for a render of `script` into the sandbox itself, whose runtime is the private
/// containerd (its socket is `<sandbox>/containerd/containerd.sock`).
fn cri_render(sb: &Sandbox, script: &str, extra: &[&str]) -> super::Run {
    let root = sb.path().to_str().unwrap().to_string();
    let mut args = vec![
        "run",
        script,
        "--root",
        &root,
        "--set",
        "nodeRegistration.criSocket=unix:///containerd/containerd.sock",
        "--set",
        "imageRepository=registry.invalid/k8s",
        "--set",
        "kubernetesVersion=v1.28.7",
        "--set",
        "nodeRegistration.name=k8s-ctr",
        "--set",
        "localAPIEndpoint.advertiseAddress=192.0.2.2",
    ];
    args.extend_from_slice(extra);
    sb.kscript_env(&[("KSCRIPT_TEST_CRI", "real")], &args)
}

/// The CRI operations in the render's journal (under the sandbox, the node root here).
fn cri_journal(root: &Path) -> Vec<(String, journal::Outcome)> {
    let path = root.join("var/lib/kscript/journal.jsonl");
    if !path.exists() {
        return Vec::new();
    }
    journal::read(&path)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "cri")
        .map(|e| (e.target, e.outcome))
        .collect()
}

/// Every image there: `ImagePull` asks for each, pulls none (their registry cannot be reached,
/// yet the check passes, and the journal holds no pull).
#[test]
fn image_pull_passes_without_pulling_when_every_image_is_there() {
    let sb = Sandbox::new();
    let containerd = Containerd::start(&sb);
    for image in NEEDED {
        containerd.tag(IMAGE, image);
    }
    let run = cri_render(&sb, "control-plane.rhai", &["--only", "init/preflight"]).ok();
    assert!(run.stdout.contains("ok       init/preflight"), "{}\n{}", run.stdout, run.stderr);
    let pulls: Vec<_> = cri_journal(sb.path()).into_iter().filter(|(t, _)| t.starts_with("pull ")).collect();
    assert!(pulls.is_empty(), "pulls were attempted: {pulls:?}");
    assert!(!run.stderr.contains("ImagePull"), "{}", run.stderr);
}

/// Two images missing and no registry: init stops at preflight, naming both with the
/// runtime's error, before any file of init is written; ignored by name, it warns.
#[test]
fn image_pull_names_every_missing_image_before_init_writes_anything() {
    let sb = Sandbox::new();
    let containerd = Containerd::start(&sb);
    let missing = ["registry.invalid/k8s/etcd:3.5.10-0", "registry.invalid/k8s/coredns:v1.10.1"];
    for image in NEEDED.iter().filter(|i| !missing.contains(i)) {
        containerd.tag(IMAGE, image);
    }
    let run = cri_render(&sb, "control-plane.rhai", &["--only", "init"]).code(1);
    let message = squeeze(&run.stderr);
    for image in missing {
        // The image, then the runtime's own words: it could not resolve the registry's name.
        let want = format!(
            "[ERROR ImagePull]: failed to pull image {image}: CRI pull {image} (unix:///containerd/containerd.sock): PullImage: "
        );
        let at =
            message.find(&squeeze(&want)).unwrap_or_else(|| panic!("{image} is not named:\n{}", run.stderr));
        let rest = &message[at..];
        let end = rest[1..].find("[ERROR").map_or(rest.len(), |i| i + 1);
        assert!(
            rest[..end].contains("lookupregistry.invalid"),
            "no runtime error for {image}:\n{}",
            run.stderr
        );
    }
    assert!(message.contains("togoonanyway:--ignore-preflight-errors=ImagePull"), "{}", run.stderr);
    assert!(run.stdout.contains("failed   init/preflight"), "{}", run.stdout);
    for written in ["etc/kubernetes", "var/lib/etcd", "var/lib/kubelet"] {
        assert!(!sb.path().join(written).exists(), "init wrote {written} although preflight failed");
    }
    let journal_path = sb.path().join("var/lib/kscript/journal.jsonl");
    if journal_path.exists() {
        let effects: Vec<String> = journal::read(&journal_path)
            .unwrap()
            .into_iter()
            .filter(|e| e.step != "preflight")
            .map(|e| format!("{} {} {} {}", e.step, e.action, e.target, e.outcome))
            .collect();
        assert!(effects.is_empty(), "init did this before preflight failed: {effects:?}");
    }

    let run = cri_render(
        &sb,
        "control-plane.rhai",
        &["--only", "init/preflight", "--ignore-preflight-errors", "ImagePull"],
    )
    .ok();
    assert!(
        run.message().contains(
            "warning: [preflight] ImagePull: failed to pull image registry.invalid/k8s/etcd:3.5.10-0"
        ),
        "{}",
        run.stderr
    );
}

/// `images.rhai --only pull` against the private containerd: the images there are reported
/// present and not pulled; the missing ones fail together, each named.
#[test]
fn the_images_script_pulls_against_a_real_containerd() {
    let sb = Sandbox::new();
    let containerd = Containerd::start(&sb);
    for image in &NEEDED[..5] {
        containerd.tag(IMAGE, image);
    }
    let run = cri_render(&sb, "images.rhai", &["--only", "pull"]).code(1);
    for image in &NEEDED[..5] {
        assert!(run.stdout.contains(&format!("present: {image}")), "{}", run.stdout);
    }
    // miette wraps long lines anywhere, even in a path: compare without whitespace.
    let message = squeeze(&run.stderr);
    assert!(
        message.contains(&squeeze("2 image(s) could not be pulled from unix:///containerd/containerd.sock:")),
        "{}",
        run.stderr
    );
    for image in &NEEDED[5..] {
        assert!(
            message.contains(&squeeze(&format!("failed to pull image {image}: CRI pull {image}"))),
            "{}",
            run.stderr
        );
    }
    // With every image there, nothing is pulled.
    for image in &NEEDED[5..] {
        containerd.tag(IMAGE, image);
    }
    let run = cri_render(&sb, "images.rhai", &["--only", "pull"]).ok();
    assert!(run.stdout.contains("every image was present: nothing to pull"), "{}", run.stdout);
}

/// A registry on 127.0.0.1 serving the pause image under every name (tests/cli/cri/registry.py).
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(sb: &Sandbox) -> Self {
        let dir = sb.path().join("registry");
        std::fs::create_dir_all(&dir).unwrap();
        let archive = build_pause_image(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/cri/registry.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(archive)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port =
            line.trim().parse().unwrap_or_else(|_| panic!("registry.py printed `{line}`, not its port"));
        Self { child, port }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `images.rhai --only pull` with the images in a registry: every one is pulled, with the
/// runtime's answer checked after; a second pull finds them all present.
#[test]
fn the_images_script_pulls_the_missing_images_from_a_registry() {
    let sb = Sandbox::new();
    let _containerd = Containerd::start(&sb);
    let registry = Registry::start(&sb);
    let repo = format!("imageRepository=127.0.0.1:{}/k8s", registry.port);
    let run = cri_render(&sb, "images.rhai", &["--only", "pull", "--set", &repo]).ok();
    let images: Vec<String> = NEEDED
        .iter()
        .map(|i| i.replace("registry.invalid/k8s", &format!("127.0.0.1:{}/k8s", registry.port)))
        .collect();
    for image in &images {
        assert!(run.stdout.contains(&format!("pulled: {image}")), "{}\n{}", run.stdout, run.stderr);
    }
    let pulls: Vec<_> = cri_journal(sb.path()).into_iter().filter(|(t, _)| t.starts_with("pull ")).collect();
    assert_eq!(pulls.len(), images.len(), "{pulls:?}");
    assert!(pulls.iter().all(|(_, o)| *o == journal::Outcome::Changed), "{pulls:?}");

    let run = cri_render(&sb, "images.rhai", &["--only", "pull", "--set", &repo]).ok();
    for image in &images {
        assert!(run.stdout.contains(&format!("present: {image}")), "{}", run.stdout);
    }
    assert!(run.stdout.contains("every image was present: nothing to pull"), "{}", run.stdout);
}
