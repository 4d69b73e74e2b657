//! The images kubeadm uses: the pins of every release row.

use std::fmt::Write as _;

use super::Sandbox;

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
