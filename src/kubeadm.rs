//! kubeadm's configuration files, read as they are.
//!
//! A `--config` file may hold kubeadm documents (`apiVersion: kubeadm.k8s.io/v1beta4` or
//! `v1beta3`, `kind: InitConfiguration`, `ClusterConfiguration`, `JoinConfiguration`; v1beta4's
//! `ResetConfiguration` for reset.rhai and `UpgradeConfiguration` for upgrade.rhai), a
//! `KubeletConfiguration` and a `KubeProxyConfiguration`. Each is translated to the keys of
//! `cfg` (see `stdlib/defaults.yaml`): v1beta3 is converted to v1beta4 first (extra-argument
//! maps become `{name, value}` lists, timeouts move), and fields kubeadm knows but kscript does
//! not use are passed over with a warning.

use crate::config::{Node, Source, Value, config_error};
use crate::error::Error;

const KUBEADM_GROUP: &str = "kubeadm.k8s.io/";

/// The top-level fields of each kubeadm kind (v1beta4; v1beta3's are converted to these).
const CLUSTER_FIELDS: &[&str] = &[
    "etcd",
    "networking",
    "kubernetesVersion",
    "controlPlaneEndpoint",
    "apiServer",
    "controllerManager",
    "scheduler",
    "dns",
    "proxy",
    "certificatesDir",
    "imageRepository",
    "featureGates",
    "clusterName",
    "encryptionAlgorithm",
    "certificateValidityPeriod",
    "caCertificateValidityPeriod",
];
const INIT_FIELDS: &[&str] = &[
    "bootstrapTokens",
    "dryRun",
    "nodeRegistration",
    "localAPIEndpoint",
    "certificateKey",
    "skipPhases",
    "patches",
    "timeouts",
];
const JOIN_FIELDS: &[&str] = &[
    "dryRun",
    "nodeRegistration",
    "caCertPath",
    "discovery",
    "controlPlane",
    "skipPhases",
    "patches",
    "timeouts",
];

/// kubeadm fields (as `cfg` key paths) that kscript accepts but does not act on.
const KNOWN_UNUSED: &[&str] =
    &["dryRun", "skipPhases", "timeouts.etcdAPICall", "etcd.external", "nodeRegistration.imagePullSerial"];

/// One configuration document translated to `cfg`'s keys.
#[derive(Debug)]
pub struct Translated {
    /// What the document is, for messages (`InitConfiguration (kubeadm.k8s.io/v1beta4)`).
    pub what: String,
    pub overlay: Node,
    pub warnings: Vec<String>,
}

/// `ResetConfiguration`'s fields kscript reads, and where they land: reset.rhai's confirmation
/// (`kubeadm reset --force`), the certificate folder, the runtime whose Pods are removed.
const RESET_FIELDS: &[(&str, &[&str])] = &[
    ("force", &["reset", "force"]),
    ("certificatesDir", &["certificatesDir"]),
    ("criSocket", &["nodeRegistration", "criSocket"]),
];

/// `ResetConfiguration`'s fields kscript does not read, with what to use instead.
const RESET_UNUSED: &[(&str, &str)] = &[
    ("dryRun", "use --dry-run"),
    ("skipPhases", "use --skip STAGE"),
    ("ignorePreflightErrors", "reset's preflight is its confirmation alone"),
    (
        "cleanupTmpDir",
        "reset keeps upgrade.rhai's backups in /etc/kubernetes/tmp, as kubeadm does by default; remove them by hand",
    ),
    ("unmountFlags", "reset unmounts without flags"),
];

/// A v1beta4 `ResetConfiguration` as the keys reset.rhai reads (see [`RESET_FIELDS`]).
fn translate_reset(mut doc: Node, src: &Source, what: String) -> Result<Translated, Error> {
    let span = doc.span;
    let Value::Map(entries) = &mut doc.value else { unreachable!("is_typed checked a map") };
    let mut top: Vec<(Node, Node)> = Vec::new();
    let mut warnings = Vec::new();
    for (k, v) in std::mem::take(entries) {
        let Value::Str(name) = &k.value else { continue };
        if let Some((_, path)) = RESET_FIELDS.iter().find(|(f, _)| f == name) {
            // The value under its path, as nested maps.
            let mut node = v;
            for part in path[1..].iter().rev() {
                node = Node { value: Value::Map(vec![(str_node(part, k.span), node)]), span: k.span };
            }
            top.push((str_node(path[0], k.span), node));
        } else if let Some((_, instead)) = RESET_UNUSED.iter().find(|(f, _)| f == name) {
            warnings.push(format!("kscript does not use ResetConfiguration's `{name}`: {instead}"));
        } else {
            let known: Vec<&str> =
                RESET_FIELDS.iter().map(|(f, _)| *f).chain(RESET_UNUSED.iter().map(|(f, _)| *f)).collect();
            return Err(config_error(
                src,
                k.span,
                &format!("`{name}` is not a field of ResetConfiguration"),
                Some(format!("ResetConfiguration's fields: {}", known.join(", "))),
            ));
        }
    }
    Ok(Translated { what, overlay: Node { value: Value::Map(top), span }, warnings })
}

/// `UpgradeConfiguration`'s fields upgrade.rhai reads (section, field), and where they land:
/// the target version, the pre-releases allowed, certificate renewal and etcd's upgrade, the
/// patches; `timeouts` lands as a whole (upgradeManifests, kubernetesAPICall, ...). kscript
/// has one key where kubeadm has one per section (a run is plan, apply or node): sections
/// that give one key different values are refused ([`translate_upgrade`]).
const UPGRADE_FIELDS: &[(&str, &str, &[&str])] = &[
    ("apply", "kubernetesVersion", &["kubernetesVersion"]),
    ("plan", "kubernetesVersion", &["kubernetesVersion"]),
    ("apply", "allowExperimentalUpgrades", &["upgrade", "allowExperimentalUpgrades"]),
    ("plan", "allowExperimentalUpgrades", &["upgrade", "allowExperimentalUpgrades"]),
    ("apply", "allowRCUpgrades", &["upgrade", "allowRCUpgrades"]),
    ("plan", "allowRCUpgrades", &["upgrade", "allowRCUpgrades"]),
    ("apply", "certificateRenewal", &["upgrade", "certificateRenewal"]),
    ("node", "certificateRenewal", &["upgrade", "certificateRenewal"]),
    ("apply", "etcdUpgrade", &["upgrade", "etcdUpgrade"]),
    ("node", "etcdUpgrade", &["upgrade", "etcdUpgrade"]),
    ("apply", "patches", &["patches"]),
    ("node", "patches", &["patches"]),
];

/// Whether two values are the same, whatever their place in the source.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(&p.value, &q.value))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, v), (l, w))| same_value(&k.value, &l.value) && same_value(&v.value, &w.value))
        }
        _ => a == b,
    }
}

/// `value` under `path` in the map entries `top`, making the maps on the way.
fn insert_at(top: &mut Vec<(Node, Node)>, path: &[&str], value: Node, span: (usize, usize)) {
    let Some((first, rest)) = path.split_first() else { return };
    let slot = top.iter().position(|(k, _)| matches!(&k.value, Value::Str(s) if s == first));
    if rest.is_empty() {
        if let Some(i) = slot {
            top.remove(i);
        }
        top.push((str_node(first, span), value));
        return;
    }
    let i = slot.unwrap_or_else(|| {
        top.push((str_node(first, span), Node { value: Value::Map(Vec::new()), span }));
        top.len() - 1
    });
    if let Value::Map(inner) = &mut top[i].1.value {
        insert_at(inner, rest, value, span);
    }
}

/// A v1beta4 `UpgradeConfiguration` as the keys upgrade.rhai reads (see [`UPGRADE_FIELDS`]);
/// the fields of `apply`, `node`, `plan` and `diff` it does not read are said, an unknown
/// section is refused.
fn translate_upgrade(mut doc: Node, src: &Source, what: String) -> Result<Translated, Error> {
    const SECTIONS: &[&str] = &["apply", "node", "plan", "diff", "timeouts"];
    let span = doc.span;
    let Value::Map(entries) = &mut doc.value else { unreachable!("is_typed checked a map") };
    let mut top: Vec<(Node, Node)> = Vec::new();
    let mut warnings = Vec::new();
    // Each key set so far: the section.field that set it and its value.
    let mut given: Vec<(&[&str], String, Node)> = Vec::new();
    for (k, v) in std::mem::take(entries) {
        let Value::Str(section) = &k.value else { continue };
        if !SECTIONS.contains(&section.as_str()) {
            return Err(config_error(
                src,
                k.span,
                &format!("`{section}` is not a field of UpgradeConfiguration"),
                Some(format!("UpgradeConfiguration's fields: {}", SECTIONS.join(", "))),
            ));
        }
        if section == "timeouts" {
            insert_at(&mut top, &["timeouts"], v, k.span);
            continue;
        }
        let Value::Map(fields) = v.value else { continue };
        for (f, value) in fields {
            let Value::Str(name) = &f.value else { continue };
            match UPGRADE_FIELDS.iter().find(|(s, n, _)| s == section && n == name) {
                Some((_, _, path)) => {
                    let here = format!("{section}.{name}");
                    if let Some((_, there, first)) = given.iter().find(|(p, _, _)| p == path)
                        && !same_value(&first.value, &value.value)
                    {
                        return Err(config_error(
                            src,
                            f.span,
                            &format!("`{here}` differs from `{there}`, and kscript has one `{}` for both", path.join(".")),
                            Some(format!(
                                "a run of upgrade.rhai is plan, apply or node: give `{here}` and `{there}` the same value, or give one of them"
                            )),
                        ));
                    }
                    given.push((path, here, value.clone()));
                    insert_at(&mut top, path, value, f.span);
                }
                None => warnings.push(format!(
                    "kscript does not use UpgradeConfiguration's `{section}.{name}` (upgrade.rhai reads {})",
                    "kubernetesVersion, allowExperimentalUpgrades, allowRCUpgrades, certificateRenewal, etcdUpgrade, patches and timeouts"
                )),
            }
        }
    }
    Ok(Translated { what, overlay: Node { value: Value::Map(top), span }, warnings })
}

/// Whether `doc` declares an `apiVersion` and a `kind`.
pub fn is_typed(doc: &Node) -> bool {
    let Value::Map(entries) = &doc.value else {
        return false;
    };
    let has = |k: &str| entries.iter().any(|(key, _)| matches!(&key.value, Value::Str(s) if s == k));
    has("apiVersion") && has("kind")
}

/// Whether a key path the defaults lack is a kubeadm field kscript passes over.
pub fn known_unused(path: &[String]) -> Option<String> {
    let joined = path.join(".");
    KNOWN_UNUSED
        .iter()
        .any(|k| joined == *k || joined.starts_with(&format!("{k}.")))
        .then(|| format!("kscript does not use the kubeadm field `{joined}`; it is ignored"))
}

fn str_node(s: &str, span: (usize, usize)) -> Node {
    Node { value: Value::Str(s.into()), span }
}

fn take(entries: &mut Vec<(Node, Node)>, key: &str) -> Option<(Node, Node)> {
    let i = entries.iter().position(|(k, _)| matches!(&k.value, Value::Str(s) if s == key))?;
    Some(entries.remove(i))
}

fn get_mut<'a>(node: &'a mut Node, path: &[&str]) -> Option<&'a mut Node> {
    let mut cur = node;
    for part in path {
        let Value::Map(entries) = &mut cur.value else {
            return None;
        };
        cur = &mut entries.iter_mut().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == part))?.1;
    }
    Some(cur)
}

/// Turns a v1beta3 `map[string]string` of arguments into v1beta4's `[{name, value}]`.
fn args_map_to_list(node: &mut Node) {
    if let Value::Map(entries) = &mut node.value {
        let mut entries = std::mem::take(entries);
        // Sorted by name, then value, as kubeadm's conversion sorts them.
        let text = |n: &Node| match &n.value {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        };
        entries.sort_by_key(|(k, v)| (text(k), text(v)));
        let list = entries
            .into_iter()
            .map(|(k, v)| {
                let span = k.span;
                Node {
                    value: Value::Map(vec![(str_node("name", span), k), (str_node("value", v.span), v)]),
                    span,
                }
            })
            .collect();
        node.value = Value::List(list);
    }
}

/// Moves a v1beta3 field to where v1beta4 keeps it (`timeouts.X`).
fn move_to_timeouts(doc: &mut Node, from: &[&str], to: &str) {
    let Some((last, parents)) = from.split_last() else {
        return;
    };
    let moved = get_mut(doc, parents).and_then(|n| match &mut n.value {
        Value::Map(e) => take(e, last),
        _ => None,
    });
    let Some((k, v)) = moved else { return };
    let Value::Map(top) = &mut doc.value else {
        return;
    };
    // v1beta3 has no `timeouts`: the map is new.
    top.push((
        str_node("timeouts", k.span),
        Node { value: Value::Map(vec![(str_node(to, k.span), v)]), span: k.span },
    ));
}

/// Translates one typed document. `doc` must satisfy [`is_typed`].
#[allow(clippy::too_many_lines)] // one kind after another, each with its checks
pub fn translate(mut doc: Node, src: &Source) -> Result<Translated, Error> {
    let span = doc.span;
    let Value::Map(entries) = &mut doc.value else { unreachable!("is_typed checked a map") };
    let (_, api) = take(entries, "apiVersion").expect("is_typed checked apiVersion");
    let (_, kind) = take(entries, "kind").expect("is_typed checked kind");
    let (Value::Str(api_version), Value::Str(kind_name)) = (&api.value, &kind.value) else {
        return Err(config_error(src, api.span, "apiVersion and kind must be strings", None));
    };
    let what = format!("{kind_name} ({api_version})");
    let wrap = |key: &str, doc: Node| Node { value: Value::Map(vec![(str_node(key, span), doc)]), span };
    match (api_version.as_str(), kind_name.as_str()) {
        ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration") => {
            return Ok(Translated { what, overlay: wrap("kubelet", doc), warnings: Vec::new() });
        }
        ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration") => {
            return Ok(Translated { what, overlay: wrap("kubeProxy", doc), warnings: Vec::new() });
        }
        _ => {}
    }
    let Some(version) = api_version.strip_prefix(KUBEADM_GROUP) else {
        return Err(config_error(
            src,
            api.span,
            &format!("`{api_version}` is not a configuration kscript reads"),
            Some("kscript reads kubeadm.k8s.io/v1beta4 and v1beta3, kubelet.config.k8s.io/v1beta1 and kubeproxy.config.k8s.io/v1alpha1".into()),
        ));
    };
    if version != "v1beta4" && version != "v1beta3" {
        return Err(config_error(
            src,
            api.span,
            &format!("kubeadm's `{version}` API is not supported"),
            Some("convert it with `kubeadm config migrate` to v1beta4 (v1beta3 is read too)".into()),
        ));
    }
    let fields = match kind_name.as_str() {
        "ClusterConfiguration" => CLUSTER_FIELDS,
        "InitConfiguration" => INIT_FIELDS,
        "JoinConfiguration" => JOIN_FIELDS,
        "ResetConfiguration" if version == "v1beta4" => return translate_reset(doc, src, what),
        "UpgradeConfiguration" if version == "v1beta4" => return translate_upgrade(doc, src, what),
        other => {
            return Err(config_error(
                src,
                kind.span,
                &format!("kscript does not read kubeadm's `{other}`"),
                Some("kscript reads InitConfiguration, ClusterConfiguration, JoinConfiguration and (v1beta4) ResetConfiguration and UpgradeConfiguration".into()),
            ));
        }
    };
    for (k, _) in entries.iter() {
        if let Value::Str(name) = &k.value
            && !fields.contains(&name.as_str())
        {
            return Err(config_error(
                src,
                k.span,
                &format!("`{name}` is not a field of {kind_name}"),
                Some(format!("{kind_name}'s fields: {}", fields.join(", "))),
            ));
        }
    }
    let mut warnings = Vec::new();
    if version == "v1beta3" {
        for path in [
            &["apiServer", "extraArgs"][..],
            &["controllerManager", "extraArgs"],
            &["scheduler", "extraArgs"],
            &["etcd", "local", "extraArgs"],
            &["nodeRegistration", "kubeletExtraArgs"],
        ] {
            if let Some(n) = get_mut(&mut doc, path) {
                args_map_to_list(n);
            }
        }
        move_to_timeouts(
            &mut doc,
            &["apiServer", "timeoutForControlPlane"],
            "controlPlaneComponentHealthCheck",
        );
        move_to_timeouts(&mut doc, &["discovery", "timeout"], "discovery");
        warnings.push(format!("{}: {what} is read as kubeadm.k8s.io/v1beta4 (converted)", src.name));
    }
    Ok(Translated { what, overlay: doc, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, parse_documents};

    fn defaults() -> Config {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/stdlib/defaults.yaml")).unwrap();
        Config::from_defaults(&Source { name: "defaults.yaml".into(), text }).unwrap()
    }

    fn load(text: &str) -> Result<(Config, Vec<String>), Error> {
        let mut cfg = defaults();
        let src = Source { name: "kubeadm.yaml".into(), text: text.into() };
        let mut warnings = Vec::new();
        for doc in parse_documents(&src)? {
            let t = translate(doc, &src)?;
            warnings.extend(t.warnings);
            warnings.extend(cfg.merge_node(t.overlay, &src, &known_unused)?);
        }
        Ok((cfg, warnings))
    }

    fn get(cfg: &Config, path: &str) -> rhai::Dynamic {
        let mut d = cfg.to_dynamic();
        for p in path.split('.') {
            d = d.cast::<rhai::Map>()[p].clone();
        }
        d
    }

    #[test]
    fn reads_a_v1beta4_init_and_cluster_configuration() {
        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: 192.168.56.10\nnodeRegistration:\n  name: k8s-ctr\n  kubeletExtraArgs:\n  - name: node-ip\n    value: 192.168.56.10\ntimeouts:\n  kubeletHealthCheck: 2m0s\n  etcdAPICall: 3m0s\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.2\nnetworking:\n  podSubnet: 10.10.0.0/16\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
        )
        .unwrap();
        assert_eq!(get(&cfg, "localAPIEndpoint.advertiseAddress").to_string(), "192.168.56.10");
        assert_eq!(get(&cfg, "nodeRegistration.name").to_string(), "k8s-ctr");
        assert_eq!(get(&cfg, "kubernetesVersion").to_string(), "v1.33.2");
        assert_eq!(get(&cfg, "networking.podSubnet").to_string(), "10.10.0.0/16");
        assert_eq!(get(&cfg, "networking.serviceSubnet").to_string(), "10.96.0.0/12");
        assert_eq!(get(&cfg, "kubelet.cgroupDriver").to_string(), "systemd");
        assert_eq!(get(&cfg, "timeouts.kubeletHealthCheck").to_string(), "2m0s");
        assert_eq!(
            warnings,
            ["kscript does not use the kubeadm field `timeouts.etcdAPICall`; it is ignored"]
        );
    }

    /// How long join's discovery waits: v1beta4's `timeouts.discovery`, v1beta3's
    /// `discovery.timeout` (moved there); the API-call timeout join's reads are retried within.
    #[test]
    fn the_discovery_timeout_reaches_the_configuration() {
        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.1:6443\ntimeouts:\n  discovery: 1m30s\n  kubernetesAPICall: 45s\n",
        )
        .unwrap();
        assert_eq!(get(&cfg, "timeouts.discovery").to_string(), "1m30s");
        assert_eq!(get(&cfg, "timeouts.kubernetesAPICall").to_string(), "45s");
        assert_eq!(get(&cfg, "timeouts.tlsBootstrap").to_string(), "5m0s", "the others keep their defaults");
        assert!(warnings.is_empty(), "{warnings:?}");

        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.1:6443\n    unsafeSkipCAVerification: true\n  timeout: 2m0s\n",
        )
        .unwrap();
        assert_eq!(get(&cfg, "timeouts.discovery").to_string(), "2m0s");
        assert_eq!(get(&cfg, "discovery.bootstrapToken.apiServerEndpoint").to_string(), "10.0.0.1:6443");
        assert!(!warnings.iter().any(|w| w.contains("timeout")), "{warnings:?}");

        // Unset, kubeadm's defaults.
        let (cfg, _) = load("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n").unwrap();
        assert_eq!(get(&cfg, "timeouts.discovery").to_string(), "5m0s");
        assert_eq!(get(&cfg, "timeouts.kubernetesAPICall").to_string(), "1m0s");
    }

    /// `kubeadm reset --config`'s `ResetConfiguration`: what reset.rhai reads lands in `cfg`,
    /// what it does not is said with what to use; an unknown field is refused.
    #[test]
    fn reads_a_reset_configuration() {
        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ResetConfiguration\nforce: true\ncriSocket: unix:///run/crio/crio.sock\ncertificatesDir: /srv/pki\nskipPhases: [remove-etcd-member]\n",
        )
        .unwrap();
        assert_eq!(get(&cfg, "reset.force").to_string(), "true");
        assert_eq!(get(&cfg, "reset.packages").to_string(), "false");
        assert_eq!(get(&cfg, "nodeRegistration.criSocket").to_string(), "unix:///run/crio/crio.sock");
        assert_eq!(get(&cfg, "certificatesDir").to_string(), "/srv/pki");
        assert_eq!(warnings, ["kscript does not use ResetConfiguration's `skipPhases`: use --skip STAGE"]);
        let err =
            load("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ResetConfiguration\nforec: true\n").unwrap_err();
        assert!(err.to_string().contains("`forec` is not a field of ResetConfiguration"), "{err}");
    }

    /// `kubeadm upgrade apply --config`'s `UpgradeConfiguration`: the target, renewal, etcd's
    /// upgrade and the timeouts land in `cfg`; the rest is said; an unknown section is refused.
    #[test]
    fn reads_an_upgrade_configuration() {
        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\napply:\n  kubernetesVersion: v1.37.2\n  certificateRenewal: false\n  forceUpgrade: true\nnode:\n  etcdUpgrade: false\ntimeouts:\n  upgradeManifests: 10m0s\n",
        )
        .unwrap();
        assert_eq!(get(&cfg, "kubernetesVersion").to_string(), "v1.37.2");
        assert_eq!(get(&cfg, "upgrade.certificateRenewal").to_string(), "false");
        assert_eq!(get(&cfg, "upgrade.etcdUpgrade").to_string(), "false");
        assert_eq!(get(&cfg, "timeouts.upgradeManifests").to_string(), "10m0s");
        assert_eq!(get(&cfg, "timeouts.kubeletHealthCheck").to_string(), "4m0s");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`apply.forceUpgrade`"), "{warnings:?}");
        let err =
            load("apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\naply: {}\n").unwrap_err();
        assert!(err.to_string().contains("`aply` is not a field of UpgradeConfiguration"), "{err}");
    }

    /// kscript has one key for apply's and node's (and plan's) field of the same name: the
    /// same value in both is taken, different values are refused, naming both.
    #[test]
    fn an_upgrade_configuration_giving_one_key_two_values_is_refused() {
        let doc = |apply: &str, node: &str| {
            format!(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: UpgradeConfiguration\napply:\n  allowRCUpgrades: true\n  {apply}\nnode:\n  {node}\nplan:\n  allowRCUpgrades: true\n"
            )
        };
        let (cfg, _) = load(&doc("certificateRenewal: false", "certificateRenewal: false")).unwrap();
        assert_eq!(get(&cfg, "upgrade.certificateRenewal").to_string(), "false");
        assert_eq!(get(&cfg, "upgrade.allowRCUpgrades").to_string(), "true");
        let (cfg, _) = load(&doc("patches: {directory: /etc/p}", "patches:\n    directory: /etc/p")).unwrap();
        assert_eq!(get(&cfg, "patches.directory").to_string(), "/etc/p");
        let err = load(&doc("certificateRenewal: true", "certificateRenewal: false")).unwrap_err();
        let text = format!("{err:?}");
        assert!(
            err.to_string().contains(
                "`node.certificateRenewal` differs from `apply.certificateRenewal`, and kscript has one `upgrade.certificateRenewal` for both"
            ),
            "{text}"
        );
    }

    #[test]
    fn converts_v1beta3() {
        let (cfg, warnings) = load(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 6m0s\n  extraArgs:\n    v: \"2\"\n    audit-log-maxage: \"30\"\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-ip: 10.0.0.5\n",
        )
        .unwrap();
        let args = get(&cfg, "apiServer.extraArgs").cast::<rhai::Array>();
        let first = args[0].clone().cast::<rhai::Map>();
        assert_eq!(
            (first["name"].to_string(), first["value"].to_string()),
            ("audit-log-maxage".into(), "30".into())
        );
        // Sorted by name, as kubeadm converts them, not in the file's order.
        assert_eq!(args[1].clone().cast::<rhai::Map>()["name"].to_string(), "v");
        let kargs = get(&cfg, "nodeRegistration.kubeletExtraArgs").cast::<rhai::Array>();
        assert_eq!(kargs[0].clone().cast::<rhai::Map>()["value"].to_string(), "10.0.0.5");
        assert!(warnings.iter().any(|w| w.contains("converted")));
        // apiServer.timeoutForControlPlane moved to where v1beta4 keeps it, and is used.
        assert_eq!(get(&cfg, "timeouts.controlPlaneComponentHealthCheck").to_string(), "6m0s");
        assert!(!warnings.iter().any(|w| w.contains("timeouts")), "{warnings:?}");
    }

    #[test]
    fn refuses_what_kubeadm_would_refuse() {
        let err = load("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnetworking: {}\n")
            .unwrap_err();
        assert!(err.to_string().contains("`networking` is not a field of InitConfiguration"), "{err}");
        let err = load("apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n").unwrap_err();
        assert!(err.to_string().contains("v1beta2"), "{err}");
        let err = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnett: x\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown key `networking.podSubnett`"), "{err}");
        let err = load(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: [x]\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("must be a string"), "{err}");
    }
}
