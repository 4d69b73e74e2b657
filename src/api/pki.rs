//! Certificates, keys and kubeconfigs, with kubeadm's reuse rules.
//!
//! The `ensure_*` functions keep what is already right (an existing CA is reused; a leaf
//! signed by its CA with the required SANs is kept byte for byte) and refuse what is wrong,
//! naming the file and what differs, rather than silently regenerate. Key material goes to
//! files only (0600), never to the output or the journal.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map};

use super::files::{exists, put, read_text};
use super::{Ctx, check_opts, effect_error, opt, script_error};
use crate::journal::Outcome;
use crate::pki::{
    self, CertInfo, CertSpec, Context, Eku, KeyAlgorithm, KubeconfigAuth, KubeconfigSpec, PrivateKey, San,
};

type R<T> = Result<T, Box<EvalAltResult>>;

/// Keys made ahead of need (in parallel), by the path they will be written to; the clock; and
/// for tests, a folder of keys to reuse.
pub struct PkiState {
    pool: RefCell<HashMap<String, PrivateKey>>,
    pub(crate) context: Context,
    reuse: Option<PathBuf>,
}

/// Test only: a folder of keys, by node path and algorithm, that renders reuse instead of
/// making new ones (and add to). `kscript test` sets it so that a suite's cases share keys:
/// snapshots show no key bytes, and RSA key generation dominates a render's time.
pub const REUSE_KEYS: &str = "KSCRIPT_TEST_KEYS";

impl PkiState {
    /// The system clock and random serials; `KSCRIPT_TEST_NOW` (Unix seconds) fixes the clock
    /// and numbers serials from 1, for reproducible tests; see also [`REUSE_KEYS`], which only
    /// a render heeds: a run that changes a host never reuses a key.
    pub fn from_env(mode: crate::host::Mode) -> Self {
        let context = match std::env::var("KSCRIPT_TEST_NOW").ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(secs) => Context::fixed(UNIX_EPOCH + Duration::from_secs(secs), 1),
            None => Context::system(),
        };
        let reuse = std::env::var_os(REUSE_KEYS)
            .filter(|v| !v.is_empty() && mode == crate::host::Mode::Render)
            .map(PathBuf::from);
        Self { pool: RefCell::default(), context, reuse }
    }

    fn reused_path(&self, path: &str, alg: KeyAlgorithm) -> Option<PathBuf> {
        // The path spelled in hex: one file name per node path, never two paths on one name.
        let name = crate::pki::hex(path.as_bytes());
        self.reuse.as_ref().map(|dir| dir.join(format!("{name}.{alg}.pem")))
    }

    /// The kept key for `path`, when keys are reused and one was kept.
    fn reused(&self, path: &str, alg: KeyAlgorithm) -> Option<PrivateKey> {
        let file = self.reused_path(path, alg)?;
        let key = PrivateKey::from_pem(&std::fs::read_to_string(file).ok()?).ok()?;
        (key.algorithm() == alg).then_some(key)
    }

    /// Keeps a new key for reuse (best effort: a key another render kept first stays).
    fn keep(&self, path: &str, key: &PrivateKey) {
        let Some(file) = self.reused_path(path, key.algorithm()) else { return };
        let Some(dir) = file.parent() else { return };
        if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
            && std::io::Write::write_all(&mut tmp, key.to_pem().as_bytes()).is_ok()
        {
            let _ = tmp.persist_noclobber(&file);
        }
    }
}

fn algorithm(opts: &Map) -> R<KeyAlgorithm> {
    match opt::<ImmutableString>(opts, "algorithm", "pki")? {
        None => Ok(KeyAlgorithm::default()),
        Some(a) => a.parse().map_err(|_| {
            script_error(format!(
                "unknown key algorithm `{a}`: use RSA-2048, RSA-3072, RSA-4096, ECDSA-P256 or ECDSA-P384"
            ))
        }),
    }
}

/// Parses a Go duration as kubeadm's configuration writes them (`8760h0m0s`, `90m`, `1.5h`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += value * secs;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn validity(opts: &Map, default: Duration) -> R<Duration> {
    match opt::<ImmutableString>(opts, "validity", "pki")? {
        None => Ok(default),
        Some(v) => parse_go_duration(&v)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| script_error(format!("validity `{v}` is not a duration such as 8760h0m0s"))),
    }
}

fn required(opts: &Map, key: &str, function: &str) -> R<String> {
    opt::<ImmutableString>(opts, key, function)?
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| script_error(format!("{function}(): option `{key}` is required")))
}

fn pki_err(path: &str) -> impl Fn(pki::PkiError) -> Box<EvalAltResult> + '_ {
    move |e| effect_error(format!("{path}: {e}"))
}

/// A key for `path`: made ahead by `prepare_keys`, else made now.
fn key_for(ctx: &Ctx, path: &str, alg: KeyAlgorithm) -> R<PrivateKey> {
    if let Some(k) = ctx.pki.pool.borrow_mut().remove(path)
        && k.algorithm() == alg
    {
        return Ok(k);
    }
    if let Some(k) = ctx.pki.reused(path, alg) {
        return Ok(k);
    }
    let key = pki::generate_key(alg).map_err(pki_err(path))?;
    ctx.pki.keep(path, &key);
    Ok(key)
}

fn sans_of(list: &Array) -> R<Vec<San>> {
    list.iter()
        .map(|v| {
            let s = v
                .clone()
                .into_string()
                .map_err(|t| script_error(format!("a SAN must be a string, not {t}")))?;
            pki::parse_san(&s).map_err(|e| script_error(format!("SAN `{s}`: {e}")))
        })
        .collect()
}

fn ekus_of(list: &Array) -> R<Vec<Eku>> {
    list.iter()
        .map(|v| match v.to_string().as_str() {
            "server" | "serverAuth" => Ok(Eku::ServerAuth),
            "client" | "clientAuth" => Ok(Eku::ClientAuth),
            other => Err(script_error(format!("unknown usage `{other}`: use \"server\" or \"client\""))),
        })
        .collect()
}

fn split_sans(sans: &[San]) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for s in sans {
        match s {
            San::Dns(d) => dns.push(d.clone()),
            San::Ip(ip) => ips.push(*ip),
        }
    }
    (dns, ips)
}

fn record_kept(ctx: &Ctx, path: &str, detail: &str) {
    let line = crate::report::EffectLine::new('=', path.to_string(), detail.to_string());
    ctx.record("file", path, Outcome::Ok, Some(detail.to_string()), Some(line));
}

/// Makes sure a CA exists: reuses a matching pair, accepts `ca.crt` alone (external CA).
fn ensure_ca(ctx: &Ctx, opts: &Map) -> R<bool> {
    ctx.require_step("ensure_ca")?;
    check_opts(opts, &["cert", "key", "cn", "algorithm", "validity"], "ensure_ca")?;
    let (cert_path, key_path) = (required(opts, "cert", "ensure_ca")?, required(opts, "key", "ensure_ca")?);
    let cn = required(opts, "cn", "ensure_ca")?;
    let alg = algorithm(opts)?;
    ctx.attempt(&cert_path);
    match (read_text(ctx, &cert_path)?, read_text(ctx, &key_path)?) {
        (Some(cert), Some(key)) => {
            let info = CertInfo::from_pem(&cert).map_err(pki_err(&cert_path))?;
            let key = PrivateKey::from_pem(&key).map_err(pki_err(&key_path))?;
            if !info.is_ca {
                return Err(effect_error(format!("{cert_path} exists but is not a CA certificate")));
            }
            if !pki::key_matches_cert(&key, &cert) {
                return Err(effect_error(format!(
                    "{key_path} does not match {cert_path}: restore the pair, or remove both to make a new CA"
                )));
            }
            record_kept(ctx, &cert_path, "existing CA reused");
            record_kept(ctx, &key_path, "existing CA key reused");
            Ok(false)
        }
        (Some(cert), None) => {
            CertInfo::from_pem(&cert).map_err(pki_err(&cert_path))?;
            record_kept(ctx, &cert_path, "external CA: no key, leaves must exist");
            Ok(false)
        }
        (None, existing_key) => {
            let mut spec = CertSpec::ca(cn);
            spec.validity = validity(opts, pki::CA_VALIDITY)?;
            let key = key_or_new(ctx, &key_path, existing_key.as_deref(), alg)?;
            let cert = pki::self_signed_ca(&spec, &key, &ctx.pki.context).map_err(pki_err(&cert_path))?;
            put(ctx, &cert_path, cert.as_bytes(), 0o644, None, false)?;
            Ok(true)
        }
    }
}

/// What a leaf must be, from the options.
fn leaf_spec(opts: &Map, function: &str) -> R<CertSpec> {
    let cn = required(opts, "cn", function)?;
    let ekus = ekus_of(&opt::<Array>(opts, "usages", function)?.unwrap_or_default())?;
    let mut spec = CertSpec::leaf(cn, ekus);
    if let Some(o) = opt::<ImmutableString>(opts, "organization", function)?.filter(|o| !o.is_empty()) {
        spec = spec.with_organizations([o.to_string()]);
    }
    for san in sans_of(&opt::<Array>(opts, "sans", function)?.unwrap_or_default())? {
        spec.add_san(san);
    }
    spec.validity = validity(opts, pki::CERT_VALIDITY)?;
    Ok(spec)
}

/// Makes sure a leaf exists, signed by its CA, with the required SANs.
fn ensure_cert(ctx: &Ctx, opts: &Map) -> R<bool> {
    ctx.require_step("ensure_cert")?;
    check_opts(
        opts,
        &[
            "cert",
            "key",
            "ca_cert",
            "ca_key",
            "cn",
            "organization",
            "sans",
            "usages",
            "algorithm",
            "validity",
        ],
        "ensure_cert",
    )?;
    let cert_path = required(opts, "cert", "ensure_cert")?;
    let key_path = required(opts, "key", "ensure_cert")?;
    let ca_cert_path = required(opts, "ca_cert", "ensure_cert")?;
    let ca_key_path = required(opts, "ca_key", "ensure_cert")?;
    let spec = leaf_spec(opts, "ensure_cert")?;
    let alg = algorithm(opts)?;
    ctx.attempt(&cert_path);
    let ca_cert = read_text(ctx, &ca_cert_path)?.ok_or_else(|| {
        effect_error(format!(
            "{ca_cert_path} does not exist: make the CA first (its step comes before this one)"
        ))
    })?;
    match (read_text(ctx, &cert_path)?, read_text(ctx, &key_path)?) {
        (Some(cert), Some(key)) => {
            let info = CertInfo::from_pem(&cert).map_err(pki_err(&cert_path))?;
            if !pki::verify_signed_by(&cert, &ca_cert).map_err(pki_err(&cert_path))? {
                return Err(effect_error(format!(
                    "{cert_path} exists but is not signed by {ca_cert_path}: remove it (and its key) to have it made again"
                )));
            }
            let (dns, ips) = split_sans(&spec.sans());
            let missing = info.missing_sans(&dns, &ips);
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                return Err(effect_error(format!(
                    "{cert_path} exists but lacks the SANs {}: remove it (and its key) to have it made again",
                    list.join(", ")
                )));
            }
            let key = PrivateKey::from_pem(&key).map_err(pki_err(&key_path))?;
            if !pki::key_matches_cert(&key, &cert) {
                return Err(effect_error(format!("{key_path} does not match {cert_path}")));
            }
            record_kept(ctx, &cert_path, "existing certificate kept");
            record_kept(ctx, &key_path, "existing key kept");
            Ok(false)
        }
        (Some(_), None) => Err(effect_error(format!("{cert_path} exists but {key_path} does not"))),
        (None, existing_key) => {
            let ca_key = read_text(ctx, &ca_key_path)?.ok_or_else(|| {
                effect_error(format!(
                    "{cert_path} is missing and {ca_key_path} is absent (external CA mode): provide {cert_path} and {key_path}, signed by the external CA"
                ))
            })?;
            let ca_key = PrivateKey::from_pem(&ca_key).map_err(pki_err(&ca_key_path))?;
            let key = key_or_new(ctx, &key_path, existing_key.as_deref(), alg)?;
            sign_and_write(ctx, &spec, &key, &cert_path, &ca_cert, &ca_key)?;
            Ok(true)
        }
    }
}

/// The key at `path` if one is there (a run interrupted between writing a key and its
/// certificate left it: the certificate is made for it now), else a new one, written first.
fn key_or_new(ctx: &Ctx, path: &str, existing: Option<&str>, alg: KeyAlgorithm) -> R<PrivateKey> {
    if let Some(pem) = existing {
        record_kept(ctx, path, "existing key kept");
        return PrivateKey::from_pem(pem).map_err(pki_err(path));
    }
    let key = key_for(ctx, path, alg)?;
    put(ctx, path, key.to_pem().as_bytes(), 0o600, None, true)?;
    Ok(key)
}

fn sign_and_write(
    ctx: &Ctx,
    spec: &CertSpec,
    key: &PrivateKey,
    cert_path: &str,
    ca_cert: &str,
    ca_key: &PrivateKey,
) -> R<()> {
    let cert = pki::sign_leaf(spec, key, ca_cert, ca_key, &ctx.pki.context).map_err(pki_err(cert_path))?;
    put(ctx, cert_path, cert.as_bytes(), 0o644, None, false)?;
    Ok(())
}

fn issue_leaf(
    ctx: &Ctx,
    spec: &CertSpec,
    alg: KeyAlgorithm,
    cert_path: &str,
    key_path: &str,
    ca_cert: &str,
    ca_key: &PrivateKey,
) -> R<()> {
    let key = key_for(ctx, key_path, alg)?;
    put(ctx, key_path, key.to_pem().as_bytes(), 0o600, None, true)?;
    sign_and_write(ctx, spec, &key, cert_path, ca_cert, ca_key)
}

/// Makes sure a key pair exists (the service-account signing keys).
fn ensure_key_pair(ctx: &Ctx, opts: &Map) -> R<bool> {
    ctx.require_step("ensure_key_pair")?;
    check_opts(opts, &["key", "public_key", "algorithm"], "ensure_key_pair")?;
    let key_path = required(opts, "key", "ensure_key_pair")?;
    let pub_path = required(opts, "public_key", "ensure_key_pair")?;
    ctx.attempt(&key_path);
    let (key, made) = if let Some(pem) = read_text(ctx, &key_path)? {
        record_kept(ctx, &key_path, "existing key kept");
        (PrivateKey::from_pem(&pem).map_err(pki_err(&key_path))?, false)
    } else {
        let key = key_for(ctx, &key_path, algorithm(opts)?)?;
        put(ctx, &key_path, key.to_pem().as_bytes(), 0o600, None, true)?;
        (key, true)
    };
    // The public half always follows the private one (kubeadm writes sa.pub 0600 too).
    let changed = put(ctx, &pub_path, key.public_key_pem().as_bytes(), 0o600, None, false)?;
    Ok(made || changed)
}

/// Makes sure a kubeconfig exists with a client certificate signed by the CA.
fn ensure_kubeconfig(ctx: &Ctx, opts: &Map, renew: bool) -> R<bool> {
    let function = if renew { "renew_kubeconfig" } else { "ensure_kubeconfig" };
    ctx.require_step(function)?;
    check_opts(
        opts,
        &[
            "path",
            "cluster",
            "server",
            "ca_cert",
            "ca_key",
            "user",
            "organization",
            "algorithm",
            "validity",
            "client_cert_file",
            "client_key_file",
            "token",
        ],
        function,
    )?;
    let path = required(opts, "path", function)?;
    let server = required(opts, "server", function)?;
    let user = required(opts, "user", function)?;
    let cluster = opt::<ImmutableString>(opts, "cluster", function)?
        .map_or_else(|| "kubernetes".to_string(), |s| s.to_string());
    let ca_cert_path = required(opts, "ca_cert", function)?;
    // Only a client certificate signed here needs the CA key.
    let ca_key_path =
        opt::<ImmutableString>(opts, "ca_key", function)?.map(|s| s.to_string()).unwrap_or_default();
    ctx.attempt(&path);
    let ca_cert = read_text(ctx, &ca_cert_path)?
        .ok_or_else(|| effect_error(format!("{ca_cert_path} does not exist: make the CA first")))?;
    let files = match (
        opt::<ImmutableString>(opts, "client_cert_file", function)?,
        opt::<ImmutableString>(opts, "client_key_file", function)?,
    ) {
        (Some(c), Some(k)) => Some((c.to_string(), k.to_string())),
        (None, None) => None,
        _ => {
            return Err(script_error(format!(
                "{function}(): give both client_cert_file and client_key_file, or neither"
            )));
        }
    };
    match read_text(ctx, &path)? {
        Some(existing) => {
            check_kubeconfig(&path, &existing, &cluster, &server, &ca_cert, &ca_cert_path)?;
            if !renew {
                record_kept(ctx, &path, "existing kubeconfig kept");
                return Ok(false);
            }
        }
        None if renew => {
            return Err(effect_error(format!("{path} does not exist: there is nothing to renew")));
        }
        None => {}
    }
    let token = opt::<ImmutableString>(opts, "token", function)?.map(|t| t.to_string());
    let auth = if let Some(token) = token {
        KubeconfigAuth::Token(token)
    } else if let Some((cert_file, key_file)) = files {
        KubeconfigAuth::Files { cert_path: cert_file, key_path: key_file }
    } else {
        if ca_key_path.is_empty() {
            return Err(script_error(format!(
                "{function}(): give `ca_key` to sign a client certificate, or `token` or client files"
            )));
        }
        let ca_key = read_text(ctx, &ca_key_path)?.ok_or_else(|| {
            effect_error(format!(
                "{path} is missing and {ca_key_path} is absent (external CA mode): provide {path}"
            ))
        })?;
        let ca_key = PrivateKey::from_pem(&ca_key).map_err(pki_err(&ca_key_path))?;
        let mut spec = CertSpec::leaf(user.clone(), vec![Eku::ClientAuth]);
        if let Some(o) = opt::<ImmutableString>(opts, "organization", function)?.filter(|o| !o.is_empty()) {
            spec = spec.with_organizations([o.to_string()]);
        }
        spec.validity = validity(opts, pki::CERT_VALIDITY)?;
        let key = key_for(ctx, &path, algorithm(opts)?)?;
        let cert =
            pki::sign_leaf(&spec, &key, &ca_cert, &ca_key, &ctx.pki.context).map_err(pki_err(&path))?;
        KubeconfigAuth::Embedded { cert_pem: cert, key_pem: key.to_pem() }
    };
    let yaml =
        pki::kubeconfig_yaml(&KubeconfigSpec { cluster_name: cluster, server, ca_pem: ca_cert, user, auth })
            .map_err(pki_err(&path))?;
    put(ctx, &path, yaml.as_bytes(), 0o600, None, true)
}

/// Refuses an existing kubeconfig that trusts another CA or points at another server
/// (kubeadm refuses them too, rather than overwrite).
fn check_kubeconfig(
    path: &str,
    existing: &str,
    cluster: &str,
    server: &str,
    ca_cert: &str,
    ca_cert_path: &str,
) -> R<()> {
    let kc = pki::Kubeconfig::from_yaml(existing).map_err(pki_err(path))?;
    let cl = kc.clusters.iter().find(|c| c.name == cluster).or(kc.clusters.first());
    let ca_data = cl.and_then(|c| c.cluster.certificate_authority_data.as_deref()).unwrap_or("");
    if ca_data != base64_of(ca_cert) {
        return Err(effect_error(format!(
            "{path} exists but its certificate-authority-data is not {ca_cert_path}: remove it to have it made again"
        )));
    }
    let got_server = cl.map_or("", |c| c.cluster.server.as_str());
    if got_server != server {
        return Err(effect_error(format!(
            "{path} exists but points at {got_server}, not {server}: remove it to have it made again"
        )));
    }
    Ok(())
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// Issues a leaf again with a new key, the same subject and SANs, signed by the same CA.
fn renew_cert(ctx: &Ctx, opts: &Map) -> R<bool> {
    ctx.require_step("renew_cert")?;
    check_opts(opts, &["cert", "key", "ca_cert", "ca_key", "algorithm", "validity"], "renew_cert")?;
    let cert_path = required(opts, "cert", "renew_cert")?;
    let key_path = required(opts, "key", "renew_cert")?;
    let ca_cert_path = required(opts, "ca_cert", "renew_cert")?;
    let ca_key_path = required(opts, "ca_key", "renew_cert")?;
    ctx.attempt(&cert_path);
    let cert = read_text(ctx, &cert_path)?
        .ok_or_else(|| effect_error(format!("{cert_path} does not exist: there is nothing to renew")))?;
    let ca_cert = read_text(ctx, &ca_cert_path)?
        .ok_or_else(|| effect_error(format!("{ca_cert_path} does not exist")))?;
    let ca_key = read_text(ctx, &ca_key_path)?.ok_or_else(|| {
        effect_error(format!("{ca_key_path} is absent (external CA): renew {cert_path} with the external CA"))
    })?;
    let ca_key = PrivateKey::from_pem(&ca_key).map_err(pki_err(&ca_key_path))?;
    let info = CertInfo::from_pem(&cert).map_err(pki_err(&cert_path))?;
    let mut spec = CertSpec::leaf(info.subject_cn.clone(), info.extended_key_usages.clone());
    spec = spec.with_organizations(info.organizations.clone());
    for d in &info.dns_names {
        spec.add_san(San::Dns(d.clone()));
    }
    for ip in &info.ip_addresses {
        spec.add_san(San::Ip(*ip));
    }
    spec.validity = validity(opts, pki::CERT_VALIDITY)?;
    let alg = match opt::<ImmutableString>(opts, "algorithm", "renew_cert")? {
        Some(_) => algorithm(opts)?,
        None => info.key_algorithm.unwrap_or_default(),
    };
    issue_leaf(ctx, &spec, alg, &cert_path, &key_path, &ca_cert, &ca_key)?;
    Ok(true)
}

/// Makes, in parallel, the keys that the given rows will need and do not have yet.
fn prepare_keys(ctx: &Ctx, rows: &Array) -> R<i64> {
    ctx.require_step("prepare_keys")?;
    let mut wanted = Vec::new();
    for row in rows {
        let m = row
            .clone()
            .try_cast::<Map>()
            .ok_or_else(|| script_error("prepare_keys(): each item must be a map #{ path, algorithm }"))?;
        let path = required(&m, "path", "prepare_keys")?;
        let missing = !exists(ctx, &path)? && !ctx.pki.pool.borrow().contains_key(&path);
        if missing {
            let alg = algorithm(&m)?;
            match ctx.pki.reused(&path, alg) {
                Some(key) => drop(ctx.pki.pool.borrow_mut().insert(path, key)),
                None => wanted.push((path, alg)),
            }
        }
    }
    let algs: Vec<KeyAlgorithm> = wanted.iter().map(|(_, a)| *a).collect();
    let keys = ctx
        .wait("generating keys", || pki::generate_keys(&algs))
        .map_err(|e| effect_error(format!("key generation failed: {e}")))?;
    let count = keys.len();
    let mut pool = ctx.pki.pool.borrow_mut();
    for ((path, _), key) in wanted.into_iter().zip(keys) {
        ctx.pki.keep(&path, &key);
        pool.insert(path, key);
    }
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

pub(crate) fn time_string(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// A certificate's facts as a map, for scripts.
fn cert_info(ctx: &Ctx, path: &str) -> R<Map> {
    let pem = read_text(ctx, path)?.ok_or_else(|| effect_error(format!("{path} does not exist")))?;
    // A kubeconfig's embedded client certificate is read the same way.
    let pem = if pem.contains("BEGIN CERTIFICATE") {
        pem
    } else {
        let kc = pki::Kubeconfig::from_yaml(&pem).map_err(pki_err(path))?;
        let data = kc
            .users
            .first()
            .and_then(|u| u.user.client_certificate_data.clone())
            .ok_or_else(|| effect_error(format!("{path} embeds no client certificate")))?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| effect_error(format!("{path}: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| effect_error(format!("{path}: the client certificate is not PEM")))?
    };
    let info = CertInfo::from_pem(&pem).map_err(pki_err(path))?;
    let now = ctx.pki.context.now();
    let residual = info.not_after.duration_since(now).map_or(0, |d| d.as_secs());
    let mut m = Map::new();
    m.insert("subject".into(), info.subject.clone().into());
    m.insert("cn".into(), info.subject_cn.clone().into());
    m.insert(
        "organizations".into(),
        info.organizations.iter().map(|o| Dynamic::from(o.clone())).collect::<Array>().into(),
    );
    m.insert("issuer".into(), info.issuer_cn.clone().into());
    m.insert(
        "dns_names".into(),
        info.dns_names.iter().map(|d| Dynamic::from(d.clone())).collect::<Array>().into(),
    );
    m.insert(
        "ip_addresses".into(),
        info.ip_addresses.iter().map(|i| Dynamic::from(i.to_string())).collect::<Array>().into(),
    );
    m.insert("is_ca".into(), info.is_ca.into());
    m.insert("not_before".into(), time_string(info.not_before).into());
    m.insert("not_after".into(), time_string(info.not_after).into());
    m.insert("residual_seconds".into(), i64::try_from(residual).unwrap_or(i64::MAX).into());
    m.insert("expired".into(), (!info.is_valid_at(now)).into());
    m.insert("key_algorithm".into(), info.key_algorithm.map_or_else(String::new, |a| a.to_string()).into());
    Ok(m)
}

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("ensure_ca")
        .with_comments([
            "/// Makes sure a self-signed CA exists at `cert`/`key` (kubeadm's CA rules: CA:TRUE,",
            "/// keyCertSign, a DNS SAN equal to its CN, backdated 5 minutes). An existing pair is",
            "/// reused; `cert` alone is an external CA (leaves must then exist already).",
            "/// Options: `cert`, `key`, `cn`, `algorithm` (RSA-2048 default, RSA-3072, RSA-4096,",
            "/// ECDSA-P256, ECDSA-P384), `validity` (a duration, default `87600h`).",
            "/// Returns `true` if a new CA was made.",
        ])
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| ensure_ca(&c, &opts));

    let c = ctx.clone();
    FuncRegistration::new("ensure_cert")
        .with_comments([
            "/// Makes sure a leaf certificate and key exist at `cert`/`key`, signed by `ca_cert`/",
            "/// `ca_key`. An existing leaf that is signed by that CA, has every SAN asked for and",
            "/// matches its key is kept byte for byte; any other existing leaf is an error naming",
            "/// the file and what differs (as kubeadm refuses, rather than regenerates).",
            "/// Options: `cert`, `key`, `ca_cert`, `ca_key`, `cn`, `organization`, `sans` (strings:",
            "/// DNS names, IPv4 and IPv6 addresses), `usages` (`\"server\"`, `\"client\"`),",
            "/// `algorithm`, `validity` (default `8760h`). Returns `true` if it was made now.",
        ])
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| ensure_cert(&c, &opts));

    let c = ctx.clone();
    FuncRegistration::new("renew_cert")
        .with_comments([
            "/// Issues the leaf at `cert` again: a new key, the same subject, SANs and usages,",
            "/// signed by the same CA (`ca_cert`/`ca_key`), valid for `validity` from now.",
        ])
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| renew_cert(&c, &opts));

    let c = ctx.clone();
    FuncRegistration::new("ensure_key_pair")
        .with_comments([
            "/// Makes sure a private key exists at `key` and its PEM public key at `public_key`",
            "/// (the service-account signing pair, sa.key and sa.pub, both 0600).",
            "/// Options: `key`, `public_key`, `algorithm`. Returns `true` if something changed.",
        ])
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| ensure_key_pair(&c, &opts));

    const KUBECONFIG_DOC: &[&str] = &[
        "/// Makes sure a kubeconfig exists at `path` (0600) for `user` (the client certificate's",
        "/// CN, with `organization` as its O), talking to `server`, trusting `ca_cert`: the",
        "/// cluster `cluster` (default `kubernetes`), the context `user@cluster`. The client",
        "/// certificate is signed by `ca_cert`/`ca_key` and embedded, unless `client_cert_file`",
        "/// and `client_key_file` name files to reference instead, or `token` gives a bearer",
        "/// token (a bootstrap kubeconfig). An existing kubeconfig with the same CA and server",
        "/// is kept; one with another CA or server is an error.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("ensure_kubeconfig")
        .with_comments(KUBECONFIG_DOC)
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| ensure_kubeconfig(&c, &opts, false));
    let c = ctx.clone();
    FuncRegistration::new("renew_kubeconfig")
        .with_comments([
            "/// Issues the client certificate of the kubeconfig at `path` again (same options as",
            "/// `ensure_kubeconfig`), keeping its CA and server.",
        ])
        .with_params_info(["options: Map", "bool"])
        .register_into_engine(engine, move |opts: Map| ensure_kubeconfig(&c, &opts, true));

    let c = ctx.clone();
    FuncRegistration::new("prepare_keys")
        .with_comments([
            "/// Generates, in parallel across cores, the keys that the steps after this one will",
            "/// need: `rows` is an array of `#{ path, algorithm }` (a key file, or a kubeconfig for",
            "/// its client key). Paths that exist already are left alone. Nothing is written: each",
            "/// key is used by the step that writes it. Returns how many keys were made.",
        ])
        .with_params_info(["rows: Array", "i64"])
        .register_into_engine(engine, move |rows: Array| prepare_keys(&c, &rows));

    let c = ctx.clone();
    FuncRegistration::new("cert_info")
        .with_comments([
            "/// The facts of the certificate at `path` (a PEM certificate, or a kubeconfig's",
            "/// embedded client certificate): `subject`, `cn`, `organizations`, `issuer`,",
            "/// `dns_names`, `ip_addresses`, `is_ca`, `not_before`, `not_after` (RFC 3339),",
            "/// `residual_seconds`, `expired`, `key_algorithm`.",
        ])
        .with_params_info(["path: &str", "Map"])
        .register_into_engine(engine, move |path: &str| cert_info(&c, path));

    let c = ctx.clone();
    FuncRegistration::new("ca_pin")
        .with_comments([
            "/// The CA pin of the certificate at `path`, as `kubeadm join` takes it:",
            "/// `sha256:` and the hex SHA-256 of its DER SubjectPublicKeyInfo.",
        ])
        .with_params_info(["path: &str", "String"])
        .register_into_engine(engine, move |path: &str| -> R<String> {
            let pem = read_text(&c, path)?.ok_or_else(|| effect_error(format!("{path} does not exist")))?;
            pki::ca_pin(&pem).map_err(pki_err(path))
        });

    FuncRegistration::new("ca_pin_of")
        .with_comments([
            "/// The CA pin (`sha256:...`) of a PEM certificate given as text (before it is written).",
        ])
        .with_params_info(["pem: &str", "String"])
        .register_into_engine(engine, |pem: &str| -> R<String> {
            pki::ca_pin(pem).map_err(|e| effect_error(format!("ca_pin_of(): {e}")))
        });

    let c = ctx.clone();
    FuncRegistration::new("cert_signed_by")
        .with_comments(["/// Whether the certificate at `cert` carries a valid signature of the CA at `ca`."])
        .with_params_info(["cert: &str", "ca: &str", "bool"])
        .register_into_engine(engine, move |cert: &str, ca: &str| -> R<bool> {
            let cert_pem =
                read_text(&c, cert)?.ok_or_else(|| effect_error(format!("{cert} does not exist")))?;
            let ca_pem = read_text(&c, ca)?.ok_or_else(|| effect_error(format!("{ca} does not exist")))?;
            pki::verify_signed_by(&cert_pem, &ca_pem).map_err(pki_err(cert))
        });

    let c = ctx.clone();
    FuncRegistration::new("cert_has_sans")
        .with_comments([
            "/// Whether the certificate at `path` carries every SAN of `sans` (DNS names and IP addresses).",
        ])
        .with_params_info(["path: &str", "sans: Array", "bool"])
        .register_into_engine(engine, move |path: &str, sans: Array| -> R<bool> {
            let pem = read_text(&c, path)?.ok_or_else(|| effect_error(format!("{path} does not exist")))?;
            let info = CertInfo::from_pem(&pem).map_err(pki_err(path))?;
            let (dns, ips) = split_sans(&sans_of(&sans)?);
            Ok(info.has_sans(&dns, &ips))
        });

    let c = ctx.clone();
    FuncRegistration::new("cert_expires_within")
        .with_comments([
            "/// Whether the certificate at `path` (or a kubeconfig's client certificate) has expired",
            "/// or expires within `duration` (such as `720h`).",
        ])
        .with_params_info(["path: &str", "duration: &str", "bool"])
        .register_into_engine(engine, move |path: &str, duration: &str| -> R<bool> {
            let within = parse_go_duration(duration)
                .ok_or_else(|| script_error(format!("`{duration}` is not a duration such as 720h")))?;
            let info = cert_info(&c, path)?;
            let left = info.get("residual_seconds").and_then(|v| v.as_int().ok()).unwrap_or(0);
            Ok(u64::try_from(left).unwrap_or(0) <= within.as_secs())
        });

    FuncRegistration::new("first_service_ip")
        .with_comments([
            "/// The first address of a service CIDR (`10.96.0.0/12` -> `10.96.0.1`), the API",
            "/// server's in-cluster address; for a dual-stack list, of its first CIDR.",
        ])
        .with_params_info(["cidr: &str", "String"])
        .register_into_engine(engine, |cidr: &str| -> R<String> {
            pki::first_service_ip(cidr)
                .map(|ip| ip.to_string())
                .map_err(|e| script_error(format!("`{cidr}`: {e}")))
        });

    FuncRegistration::new("parse_duration")
        .with_comments(["/// Seconds in a Go duration as kubeadm writes them (`8760h0m0s`, `90m`)."])
        .with_params_info(["text: &str", "i64"])
        .register_into_engine(engine, |text: &str| -> R<i64> {
            parse_go_duration(text)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .ok_or_else(|| script_error(format!("`{text}` is not a duration such as 8760h0m0s")))
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("8760h0m0s"), Some(Duration::from_hours(8760)));
        assert_eq!(parse_go_duration("90m"), Some(Duration::from_mins(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_mins(90)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5d"), None);
    }
}
