//! The Kubernetes API: wait until the API server is ready, apply objects (server-side), get
//! and delete them; and the join helpers: bootstrap tokens, their Secret, token discovery of
//! `cluster-info`, the join command.
//!
//! Every API function takes a kubeconfig as a node path (`/etc/kubernetes/admin.conf`),
//! resolved in the node root. On a real run the root is `/`, so node paths are host paths;
//! when rendering or in a dry run no API call is made: applies are recorded (a dry run prints
//! each object, Secrets' values redacted) and reads answer from what was recorded.

use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, Map, NativeCallContext};
use serde_json::Value;

use super::{Ctx, check_opts, effect_error, opt, script_error};
use crate::bootstrap::{self, Discovered, DiscoveryError, Token};
use crate::host::cluster::{Applied, ObjectRef, Readiness, Removed, Trust, redacted, retry_reason};
use crate::host::{Mode, seconds};
use crate::journal::Outcome;
use crate::report::{EffectLine, Progress};

type R<T> = Result<T, Box<EvalAltResult>>;

/// How long discovery keeps trying, unless told: kubeadm's `timeouts.discovery` (5m0s).
const DISCOVERY_TIMEOUT: Duration = Duration::from_mins(5);
/// The most one attempt of a retried call may take (one `cluster-info` fetch).
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(10);
/// The least an attempt gets, even the last one, when the time allowed is not shorter.
const ATTEMPT_FLOOR: Duration = Duration::from_secs(1);
/// The longest pause between attempts: kubeadm's discovery retry interval.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// What one attempt of a retried call came to.
#[derive(Debug, PartialEq, Eq)]
enum Attempt<T> {
    Done(T),
    /// Not yet: `reason` in a few words for the wait's progress, `error` the whole story for
    /// the error if the time runs out.
    Again {
        reason: String,
        error: String,
    },
    /// It will not get better by asking again.
    Fatal(String),
}

/// How a retried call ended without a result.
#[derive(Debug)]
enum GaveUp {
    Fatal(String),
    /// The time ran out; the last attempt's error.
    TimedOut(String),
}

/// The pause after the `n`th failed attempt (from 0): a quarter of a second, doubling, at most
/// [`LONGEST_PAUSE`]: quick while a server is about to answer, then kubeadm's pace.
fn pause(n: u32) -> Duration {
    Duration::from_millis(250).saturating_mul(1 << n.min(5)).min(LONGEST_PAUSE)
}

/// An API call's failure as an attempt: again when time may mend it (see `retry_reason`).
fn failed_call<T>(e: &io::Error) -> Attempt<T> {
    match retry_reason(e) {
        Some(reason) => Attempt::Again { reason: reason.to_string(), error: e.to_string() },
        None => Attempt::Fatal(e.to_string()),
    }
}

/// Calls `attempt` (with the time that attempt may take) until it is done or fails for good,
/// for up to `patience`, pausing between attempts and telling `progress` why it waits. An
/// attempt that fails when the time is up ends the wait with its error.
fn keep_trying<T>(
    progress: &Progress,
    patience: Duration,
    mut attempt: impl FnMut(Duration) -> Attempt<T>,
) -> Result<T, GaveUp> {
    let start = Instant::now();
    let mut n = 0;
    loop {
        let left = patience.saturating_sub(start.elapsed());
        match attempt(left.min(ATTEMPT_DEADLINE).max(ATTEMPT_FLOOR.min(patience))) {
            Attempt::Done(v) => return Ok(v),
            Attempt::Fatal(e) => return Err(GaveUp::Fatal(e)),
            Attempt::Again { reason, error } => {
                let left = patience.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(GaveUp::TimedOut(error));
                }
                progress.reason(&reason);
                std::thread::sleep(pause(n).min(left));
                n += 1;
            }
        }
    }
}

/// The host path of a kubeconfig named by its node path.
fn kubeconfig(ctx: &Ctx, function: &str, path: &str) -> R<PathBuf> {
    if !path.starts_with('/') {
        return Err(script_error(format!(
            "{function}(): `{path}` is not a kubeconfig's node path such as /etc/kubernetes/admin.conf"
        )));
    }
    let r = ctx.root.resolve(path).map_err(|e| effect_error(format!("{function}(): {e}")))?;
    Ok(r.host)
}

fn to_json(function: &str, object: Map) -> R<Value> {
    serde_json::to_value(Dynamic::from_map(object)).map_err(|e| script_error(format!("{function}(): {e}")))
}

fn from_json(value: Value) -> R<Dynamic> {
    serde_json::from_value::<Dynamic>(value)
        .map_err(|e| effect_error(format!("the API server's answer: {e}")))
}

fn object_ref(function: &str, api_version: &str, kind: &str, namespace: &str, name: &str) -> R<ObjectRef> {
    ObjectRef::new(api_version, kind, namespace, name).map_err(|e| script_error(format!("{function}(): {e}")))
}

/// Records one API effect; `via` is the kubeconfig (or the server) it went through.
fn record(
    ctx: &Ctx,
    via: &str,
    target: &str,
    outcome: Outcome,
    word: &str,
    sign: char,
    body: Option<String>,
) {
    let line = EffectLine::new(sign, format!("api {target}"), word).with_body(body);
    ctx.record("api", target, outcome, Some(format!("{word} ({via})")), Some(line));
}

fn apply(ctx: &Ctx, kubeconfig_path: &str, object: Map) -> R<String> {
    const F: &str = "api_apply";
    ctx.require_step(F)?;
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let value = to_json(F, object)?;
    let r = ObjectRef::of(&value).map_err(|e| script_error(format!("{F}(): {e}")))?;
    let target = format!("apply {r}");
    ctx.attempt(&target);
    let applied = ctx.host.cluster.apply(&host, &value).map_err(|e| {
        ctx.record("api", &target, Outcome::Failed, Some(format!("failed ({kubeconfig_path})")), None);
        effect_error(format!("API {target} ({kubeconfig_path}): {e}"))
    })?;
    let (outcome, sign, word, result) = match applied {
        Applied::Created => (Outcome::Changed, '+', "created", "created"),
        Applied::Configured => (Outcome::Changed, '~', "configured", "configured"),
        Applied::Unchanged => (Outcome::Ok, '=', "unchanged", "unchanged"),
        Applied::Recorded => (Outcome::Recorded, '!', "recorded, not applied", "recorded"),
    };
    // What a dry run shows: the object as it would be sent, never a Secret's values.
    let body = (applied == Applied::Recorded).then(|| crate::yaml::to_string(&redacted(&value)));
    record(ctx, kubeconfig_path, &target, outcome, word, sign, body);
    Ok(result.to_string())
}

/// `api_get`; with `patience`, asked again through failures time may mend (the API server not
/// answering yet, 401/403 while its RBAC comes up, 5xx) until then, as kubeadm retries its
/// API calls within `timeouts.kubernetesAPICall`.
fn get(ctx: &Ctx, kubeconfig_path: &str, r: &ObjectRef, patience: Option<Duration>) -> R<Dynamic> {
    const F: &str = "api_get";
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    ctx.attempt(&format!("get {r}"));
    let failed = |e: String| effect_error(format!("API get {r} ({kubeconfig_path}): {e}"));
    let cluster = &ctx.host.cluster;
    let found = match patience {
        None => cluster.get(&host, r).map_err(|e| failed(e.to_string()))?,
        Some(patience) => ctx
            .wait_with(&format!("reading {r} ({kubeconfig_path})"), |progress| {
                keep_trying(progress, patience, |deadline| match cluster.get_within(&host, r, deadline) {
                    Ok(found) => Attempt::Done(found),
                    Err(e) => failed_call(&e),
                })
            })
            .map_err(|g| match g {
                GaveUp::Fatal(e) => failed(e),
                GaveUp::TimedOut(e) => failed(format!("still failing after {}: {e}", seconds(patience))),
            })?,
    };
    found.map_or(Ok(Dynamic::UNIT), from_json)
}

fn list(
    ctx: &Ctx,
    kubeconfig_path: &str,
    api_version: &str,
    kind: &str,
    namespace: &str,
    selector: &str,
) -> R<Array> {
    const F: &str = "api_list";
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let collection = ObjectRef::collection(api_version, kind, namespace)
        .map_err(|e| script_error(format!("{F}(): {e}")))?;
    if selector.split(',').filter(|p| !p.is_empty()).any(|p| !p.contains('=') || p.contains("!=")) {
        return Err(script_error(format!(
            "{F}(): `{selector}` is not a selector of key=value pairs joined by commas"
        )));
    }
    let what = format!("list {}", collection.collection_path());
    ctx.attempt(&what);
    let items = ctx
        .host
        .cluster
        .list(&host, &collection, selector)
        .map_err(|e| effect_error(format!("API {what} ({kubeconfig_path}): {e}")))?;
    items.into_iter().map(from_json).collect()
}

fn delete(ctx: &Ctx, kubeconfig_path: &str, r: &ObjectRef) -> R<bool> {
    const F: &str = "api_delete";
    ctx.require_step(F)?;
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let target = format!("delete {r}");
    ctx.attempt(&target);
    let removed = ctx
        .host
        .cluster
        .delete(&host, r)
        .map_err(|e| effect_error(format!("API {target} ({kubeconfig_path}): {e}")))?;
    let (outcome, sign, word) = match removed {
        Removed::Deleted => (Outcome::Changed, '-', "deleted"),
        Removed::Absent => (Outcome::Ok, '=', "absent"),
        Removed::Recorded => (Outcome::Recorded, '!', "recorded, not sent"),
    };
    record(ctx, kubeconfig_path, &target, outcome, word, sign, None);
    Ok(removed == Removed::Deleted)
}

/// How often `api_wait_ready`'s check looks at the node while the API server is not ready.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A script's look at the node between tries of a wait: the closure, and the call it is made
/// from.
struct Check<'a, 'c> {
    context: &'a NativeCallContext<'c>,
    look: &'a FnPtr,
}

/// Waits for the API server; with `check`, calls it at the first try that finds the server
/// not ready and then every [`CHECK_EVERY`], shows what it returns as progress, and stops
/// when it throws.
fn wait_ready(ctx: &Ctx, kubeconfig_path: &str, timeout: f64, check: Option<&Check<'_, '_>>) -> R<bool> {
    const F: &str = "api_wait_ready";
    ctx.require_step(F)?;
    let timeout = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let target = "wait-ready";
    ctx.attempt(target);
    let label = format!("waiting for the API server of {kubeconfig_path} to be ready");
    let mut stopped: Option<Box<EvalAltResult>> = None;
    let waited = ctx.wait_with(&label, |progress| {
        let mut next = Instant::now();
        let mut between = || {
            let Some(check) = check else { return ControlFlow::Continue(()) };
            if Instant::now() < next {
                return ControlFlow::Continue(());
            }
            match check.look.call_within_context::<Dynamic>(check.context, ()) {
                Ok(seen) if seen.is_unit() => progress.reason(""),
                Ok(seen) if seen.is_string() => progress.reason(&seen.to_string()),
                Ok(seen) => {
                    stopped = Some(script_error(format!(
                        "{F}(): the check must return a string (what it sees) or () (nothing to say), not {}",
                        seen.type_name()
                    )));
                    return ControlFlow::Break(());
                }
                Err(e) => {
                    stopped = Some(e);
                    return ControlFlow::Break(());
                }
            }
            // What the check looked at is not what the step waits for.
            ctx.attempt(target);
            next = Instant::now() + CHECK_EVERY;
            ControlFlow::Continue(())
        };
        ctx.host.cluster.wait_ready(&host, timeout, &mut between)
    });
    match waited {
        Ok(Readiness::Ready) => {
            record(ctx, kubeconfig_path, target, Outcome::Ok, "ready", '=', None);
            Ok(true)
        }
        Ok(Readiness::Recorded) => {
            record(ctx, kubeconfig_path, target, Outcome::Recorded, "recorded, not run", '!', None);
            Ok(false)
        }
        Ok(Readiness::Stopped) => {
            ctx.record(
                "api",
                target,
                Outcome::Failed,
                Some(format!("stopped by its check ({kubeconfig_path})")),
                None,
            );
            Err(stopped.unwrap_or_else(|| effect_error(format!("{F}(): the wait was stopped"))))
        }
        Err(e) => {
            ctx.record("api", target, Outcome::Failed, Some(format!("not ready ({kubeconfig_path})")), None);
            Err(effect_error(e.to_string()))
        }
    }
}

fn wait_for(ctx: &Ctx, kubeconfig_path: &str, r: &ObjectRef, timeout: f64) -> R<Dynamic> {
    const F: &str = "api_wait_for";
    ctx.require_step(F)?;
    let timeout = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let target = format!("wait-for {r}");
    ctx.attempt(&target);
    match ctx.wait(&format!("waiting for {r}"), || ctx.host.cluster.wait_for(&host, r, timeout)) {
        Ok(found) => {
            if ctx.host.cluster.is_recording() {
                record(ctx, kubeconfig_path, &target, Outcome::Recorded, "recorded, not run", '!', None);
            } else {
                record(ctx, kubeconfig_path, &target, Outcome::Ok, "there", '=', None);
            }
            found.map_or(Ok(Dynamic::UNIT), from_json)
        }
        Err(e) => {
            ctx.record("api", &target, Outcome::Failed, Some(format!("absent ({kubeconfig_path})")), None);
            Err(effect_error(format!("API {target} ({kubeconfig_path}): {e}")))
        }
    }
}

fn wait_condition(ctx: &Ctx, kubeconfig_path: &str, r: &ObjectRef, kind: &str, timeout: f64) -> R<Dynamic> {
    const F: &str = "api_wait_condition";
    ctx.require_step(F)?;
    let timeout = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let host = kubeconfig(ctx, F, kubeconfig_path)?;
    let target = format!("wait-condition {r} {kind}");
    ctx.attempt(&target);
    match ctx.wait(&format!("waiting for {r} to be {kind}"), || {
        ctx.host.cluster.wait_condition(&host, r, kind, timeout)
    }) {
        Ok(found) => {
            if ctx.host.cluster.is_recording() {
                record(ctx, kubeconfig_path, &target, Outcome::Recorded, "recorded, not run", '!', None);
            } else {
                record(ctx, kubeconfig_path, &target, Outcome::Ok, kind, '=', None);
            }
            found.map_or(Ok(Dynamic::UNIT), from_json)
        }
        Err(e) => {
            ctx.record(
                "api",
                &target,
                Outcome::Failed,
                Some(format!("not {kind} ({kubeconfig_path})")),
                None,
            );
            Err(effect_error(format!("API {target} ({kubeconfig_path}): {e}")))
        }
    }
}

fn parse_token(function: &str, token: &str) -> R<Token> {
    Token::parse(token).map_err(|e| script_error(format!("{function}(): {e}")))
}

fn strings(function: &str, what: &str, list: Array) -> R<Vec<String>> {
    list.into_iter()
        .map(|v| {
            v.into_immutable_string().map(|s| s.to_string()).map_err(|t| {
                script_error(format!("{function}(): every item of `{what}` must be a string, not {t}"))
            })
        })
        .collect()
}

/// kubeadm's checksum of a `ConfigMap`'s `data`: SHA-256 over the values in the order of their
/// sorted keys, as `sha256:<hex>`.
fn config_map_checksum(data: &rhai::Map) -> String {
    // A rhai::Map is a BTreeMap: its values come in the order of their sorted keys.
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for value in data.values() {
        ctx.update(value.to_string().as_bytes());
    }
    format!("sha256:{}", crate::pki::hex(ctx.finish().as_ref()))
}

/// A duration as `kubectl` and `kubeadm token list` print it: `45s`, `12m`, `23h`, `6d`, `2y`.
fn short_duration(secs: i64) -> String {
    match secs {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// What `kubeadm token list` shows of a bootstrap-token Secret (an object as `api_get` or
/// `api_list` return it); `()` when it is not one.
fn token_info(ctx: &Ctx, secret: &Map) -> R<Dynamic> {
    let object = to_json("token_info", secret.clone())?;
    if object["type"] != "bootstrap.kubernetes.io/token" {
        return Ok(Dynamic::UNIT);
    }
    let field = |k: &str| -> Option<String> {
        let v = object.pointer(&format!("/data/{k}"))?.as_str()?;
        String::from_utf8(STANDARD.decode(v).ok()?).ok()
    };
    let (Some(id), Some(secret_part)) = (field("token-id"), field("token-secret")) else {
        return Ok(Dynamic::UNIT);
    };
    let mut m = Map::new();
    m.insert("token".into(), format!("{id}.{secret_part}").into());
    m.insert("id".into(), id.into());
    let now = ctx.pki.context.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let expires = field("expiration").map(|e| {
        let at = time::OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339)
            .map(time::OffsetDateTime::unix_timestamp);
        (e, at.ok())
    });
    let (ttl, expired, shown) = match &expires {
        None => ("<forever>".to_string(), false, "<never>".to_string()),
        Some((text, None)) => ("<invalid>".to_string(), false, text.clone()),
        Some((text, Some(at))) => (short_duration(at - now), *at <= now, text.clone()),
    };
    m.insert("ttl".into(), ttl.into());
    m.insert("expires".into(), shown.into());
    m.insert("expired".into(), expired.into());
    let usages: Array = ["authentication", "signing"]
        .iter()
        .filter(|u| field(&format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
        .map(|u| Dynamic::from(u.to_string()))
        .collect();
    m.insert("usages".into(), usages.into());
    m.insert("description".into(), field("description").unwrap_or_default().into());
    let groups: Array = field("auth-extra-groups")
        .map(|g| g.split(',').filter(|s| !s.is_empty()).map(|s| Dynamic::from(s.to_string())).collect())
        .unwrap_or_default();
    m.insert("groups".into(), groups.into());
    Ok(m.into())
}

fn check_pins(function: &str, pins: &[String]) -> R<()> {
    for p in pins {
        let hex = p.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(script_error(format!(
                "{function}(): `{p}` is not a CA pin: pins are `sha256:` and 64 hex digits, as `ca_pin()` and kubeadm's --discovery-token-ca-cert-hash give them"
            )));
        }
    }
    Ok(())
}

/// What one fetched `cluster-info` comes to. Not signed for the token yet is worth waiting for:
/// the controller manager's bootstrap signer adds the signature a little after the token's
/// Secret appears, and kubeadm waits for it too. A signature that does not verify, a CA that
/// does not match the pins, or a cluster-info that is not kubeadm's end discovery at once.
fn judge(checked: Result<Discovered, DiscoveryError>, token: &Token) -> Attempt<Option<Discovered>> {
    match checked {
        Ok(found) => Attempt::Done(Some(found)),
        Err(e) if e.may_mend() => Attempt::Again {
            reason: format!("cluster-info not signed for token {} yet", token.id),
            error: e.to_string(),
        },
        Err(e) => Attempt::Fatal(e.to_string()),
    }
}

/// Token discovery, kubeadm's join step 1.
fn discover(ctx: &Ctx, server: &str, token: &str, pins: Array, opts: &Map) -> R<Dynamic> {
    const F: &str = "discover_cluster_info";
    check_opts(opts, &["unsafe_skip_ca_verification", "timeout"], F)?;
    let token = parse_token(F, token)?;
    let pins = strings(F, "pins", pins)?;
    check_pins(F, &pins)?;
    let skip = opt::<bool>(opts, "unsafe_skip_ca_verification", F)?.unwrap_or(false);
    if pins.is_empty() && !skip {
        return Err(script_error(format!(
            "{F}(): give the CA pin(s) to check the cluster CA against (`sha256:...`, printed by the control plane's show-join step), or set `unsafe_skip_ca_verification: true` to trust whichever CA the server sends"
        )));
    }
    let timeout = match opts.get("timeout") {
        None => DISCOVERY_TIMEOUT,
        Some(t) => super::timeout_option(&format!("{F}(): option `timeout`"), t)?,
    };
    let target = format!("discover {server}");
    ctx.attempt(&target);
    let key = format!("{server}\n{}\n{pins:?}\n{skip}", token.expose());
    if let Some(found) = ctx.discovered.borrow().get(&key) {
        let pin = found.get("pin").map(ToString::to_string).unwrap_or_default();
        let line =
            EffectLine::new('=', format!("api {target}"), format!("CA {pin}, verified earlier in this run"));
        ctx.record(
            "api",
            &target,
            Outcome::Ok,
            Some(format!("verified earlier in this run, CA {pin}")),
            Some(line),
        );
        return Ok(Dynamic::from_map(found.clone()));
    }
    let failed = |why: &str, e: String| {
        ctx.record("api", &target, Outcome::Failed, Some(why.into()), None);
        effect_error(format!("discovery from {server}: {e}"))
    };
    let cluster = &ctx.host.cluster;
    let outcome = ctx.wait_with(&format!("discovery from {server}"), |progress| {
        let start = Instant::now();
        let found = keep_trying(progress, timeout, |deadline| {
            match cluster.cluster_info(server, Trust::Nothing, deadline) {
                Ok(None) => Attempt::Done(None),
                Ok(Some(cm)) => judge(bootstrap::check_cluster_info(&cm, &token, &pins, skip), &token),
                Err(e) => failed_call(&e),
            }
        })?;
        let Some(found) = found else { return Ok(None) };
        // kubeadm's second fetch, over TLS verified with the CA just found: tried again through
        // what time may mend, for what is left of the time (10 s at least: the server answered).
        let patience = timeout.saturating_sub(start.elapsed()).max(ATTEMPT_DEADLINE);
        let again = keep_trying(progress, patience, |deadline| {
            match cluster.cluster_info(server, Trust::Ca(&found.ca_pem), deadline) {
                Ok(None) => Attempt::Fatal("the second fetch was not made".into()),
                Ok(Some(cm)) => match bootstrap::cluster_info_kubeconfig(&cm) {
                    Ok(k) => Attempt::Done(k.to_string()),
                    Err(e) => Attempt::Fatal(e.to_string()),
                },
                Err(e) => failed_call(&e),
            }
        })?;
        if again != found.kubeconfig {
            return Err(GaveUp::Fatal(DiscoveryError::Changed.to_string()));
        }
        Ok(Some(found))
    });
    let found = match outcome {
        Ok(Some(found)) => found,
        Ok(None) => {
            record(ctx, server, &target, Outcome::Recorded, "recorded, not run", '!', None);
            return Ok(Dynamic::UNIT);
        }
        Err(GaveUp::Fatal(e)) => return Err(failed("refused", e)),
        Err(GaveUp::TimedOut(e)) => {
            let e = format!("no verified cluster-info after {}: {e}", seconds(timeout));
            return Err(failed("timed out", e));
        }
    };
    if pins.is_empty() {
        ctx.report.borrow_mut().warn(&format!(
            "discovery from {server}: the cluster CA ({}) is trusted without a pin (unsafe_skip_ca_verification)",
            found.pin
        ));
    }
    let line = EffectLine::new('=', format!("api {target}"), format!("CA {}", found.pin));
    ctx.record("api", &target, Outcome::Ok, Some(format!("verified, CA {}", found.pin)), Some(line));
    let mut m = Map::new();
    m.insert("ca_pem".into(), found.ca_pem.into());
    m.insert("server".into(), found.server.into());
    m.insert("pin".into(), found.pin.into());
    ctx.discovered.borrow_mut().insert(key, m.clone());
    Ok(Dynamic::from_map(m))
}

/// The bootstrap-token Secret of `token`.
fn token_secret(
    ctx: &Ctx,
    token: &str,
    ttl: &str,
    description: &str,
    usages: Array,
    groups: Array,
) -> R<Map> {
    const F: &str = "token_secret_object";
    let token = parse_token(F, token)?;
    let usages = strings(F, "usages", usages)?;
    let groups = strings(F, "groups", groups)?;
    let mut data = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), Value::String(STANDARD.encode(v)));
    };
    put("token-id", &token.id);
    put("token-secret", &token.secret);
    if !description.is_empty() {
        put("description", description);
    }
    let ttl = ttl.trim();
    if !(ttl.is_empty() || ttl == "0" || ttl == "0s") {
        let d = super::pki::parse_go_duration(ttl)
            .ok_or_else(|| script_error(format!("{F}(): `{ttl}` is not a duration such as 24h0m0s")))?;
        let expires = ctx.pki.context.now().checked_add(d).filter(|_| d.as_secs() < 100 * 365 * 86400);
        let expires = expires.ok_or_else(|| script_error(format!("{F}(): a ttl of `{ttl}` is too long")))?;
        put("expiration", &super::pki::time_string(expires));
    }
    for u in &usages {
        if !["signing", "authentication"].contains(&u.as_str()) {
            return Err(script_error(format!("{F}(): unknown usage `{u}`; usages: signing, authentication")));
        }
        put(&format!("usage-bootstrap-{u}"), "true");
    }
    for g in &groups {
        if !g.starts_with("system:bootstrappers:") {
            return Err(script_error(format!(
                "{F}(): group `{g}` must start with `system:bootstrappers:` (the API server refuses other extra groups for tokens)"
            )));
        }
    }
    if !groups.is_empty() {
        put("auth-extra-groups", &groups.join(","));
    }
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": format!("bootstrap-token-{}", token.id), "namespace": "kube-system" },
        "type": "bootstrap.kubernetes.io/token",
        "data": data,
    });
    from_json(secret).map(Dynamic::cast::<Map>)
}

/// `kubeadm join` with the token and pins; in a dry run, without the token's secret.
fn join_command(ctx: &Ctx, server: &str, token: &str, pins: Array) -> R<String> {
    const F: &str = "join_command";
    let token = parse_token(F, token)?;
    let pins = strings(F, "pins", pins)?;
    check_pins(F, &pins)?;
    let endpoint = server.split_once("://").map_or(server, |(_, rest)| rest).trim_end_matches('/');
    let shown = if ctx.host.mode == Mode::DryRun {
        format!("{}.[TOKEN SECRET: not shown in a dry run]", token.id)
    } else {
        token.expose()
    };
    let mut cmd = format!("kubeadm join {endpoint} --token {shown}");
    for p in &pins {
        cmd.push_str(&format!(" --discovery-token-ca-cert-hash {p}"));
    }
    if pins.is_empty() {
        cmd.push_str(" --discovery-token-unsafe-skip-ca-verification");
    }
    Ok(cmd)
}

/// `text` as one shell word: as it is when the shell would take it so, else single-quoted
/// (a `'` inside becomes `'\''`), so that a printed command can be pasted into a shell.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-+=:,./@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// `kscript run worker.rhai` with the `--set` flags that join the cluster at `server` with
/// `token`, checking its CA against `pins`; with option `certificate_key`, as a control plane
/// (`controlPlane`). In a dry run the token's secret is not shown.
fn kscript_join_command(ctx: &Ctx, server: &str, token: &str, pins: Array, opts: &Map) -> R<String> {
    const F: &str = "kscript_join_command";
    check_opts(opts, &["certificate_key"], F)?;
    let token = parse_token(F, token)?;
    let pins = strings(F, "pins", pins)?;
    check_pins(F, &pins)?;
    let key = opt::<rhai::ImmutableString>(opts, "certificate_key", F)?;
    let endpoint = server.split_once("://").map_or(server, |(_, rest)| rest).trim_end_matches('/');
    let shown = if ctx.host.mode == Mode::DryRun {
        format!("{}.[TOKEN SECRET: not shown in a dry run]", token.id)
    } else {
        token.expose()
    };
    let mut sets = vec![
        format!("discovery.bootstrapToken.apiServerEndpoint={endpoint}"),
        format!("discovery.bootstrapToken.token={shown}"),
    ];
    if pins.is_empty() {
        sets.push("discovery.bootstrapToken.unsafeSkipCAVerification=true".into());
    } else {
        sets.push(format!("discovery.bootstrapToken.caCertHashes=[{}]", pins.join(", ")));
    }
    if let Some(key) = key {
        // A YAML double-quoted string is a JSON string: the key stays a string whatever it holds.
        let quoted = serde_json::to_string(key.as_str()).unwrap_or_default();
        sets.push(format!("controlPlane={{certificateKey: {quoted}}}"));
    }
    let mut cmd = String::from("kscript run worker.rhai");
    for s in &sets {
        cmd.push_str(" --set ");
        cmd.push_str(&shell_word(s));
    }
    Ok(cmd)
}

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    const READY_DOC: &[&str] = &[
        "/// Waits up to `timeout` seconds, with progress, until the API server named by the",
        "/// kubeconfig at node path `kubeconfig` answers 200 on `/livez`, then on `/readyz`.",
        "/// Returns `true` when it is ready, `false` when rendering or in a dry run (nothing is",
        "/// asked). If the time runs out, the step fails naming the server, the timeout and the",
        "/// last answer.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("api_use_recorded")
        .with_comments([
            "/// When rendering into a folder, starts this run's recorded cluster from the objects an",
            "/// earlier render of the same node recorded (/var/lib/kscript/objects.yaml), so that a",
            "/// script reading the cluster (upgrade.rhai: kubeadm-config, the Nodes) previews against",
            "/// it; the file's Secrets are not loaded (it holds them redacted) and are written back",
            "/// unchanged. Only scripts that call it start from that file. Returns how many objects",
            "/// were loaded: 0 on a real cluster, in a dry run on this host, or without the file.",
        ])
        .with_params_info(["i64"])
        .register_into_engine(engine, move || -> Result<i64, Box<rhai::EvalAltResult>> {
            if !c.host.cluster.is_recording() || c.root.is_host_root() {
                return Ok(0);
            }
            let objects = crate::host::cluster::rendered_objects(c.root.host()).map_err(|e| {
                super::effect_error(format!(
                    "cannot read the objects an earlier render recorded under {} ({}): {e}; remove the file to start from no cluster",
                    c.root.host().display(),
                    crate::host::cluster::RENDERED_OBJECTS
                ))
            })?;
            let n = i64::try_from(objects.len()).unwrap_or(i64::MAX);
            c.host.cluster.preload(objects);
            Ok(n)
        });
    let c = ctx.clone();
    FuncRegistration::new("api_live")
        .with_comments([
            "/// Whether the API functions reach a real cluster: `true` on a real run, `false` when",
            "/// rendering or in a dry run, where applies are recorded and reads answer from them.",
        ])
        .with_params_info(["bool"])
        .register_into_engine(engine, move || !c.host.cluster.is_recording());
    let c = ctx.clone();
    FuncRegistration::new("api_wait_ready")
        .with_comments(READY_DOC)
        .with_params_info(["kubeconfig: &str", "timeout: f64", "bool"])
        .register_into_engine(engine, move |k: &str, timeout: rhai::FLOAT| wait_ready(&c, k, timeout, None));
    let c = ctx.clone();
    FuncRegistration::new("api_wait_ready")
        .with_comments(READY_DOC)
        .with_params_info(["kubeconfig: &str", "timeout: i64", "bool"])
        .register_into_engine(engine, move |k: &str, timeout: rhai::INT| {
            wait_ready(&c, k, super::int_seconds(timeout), None)
        });
    const CHECKED_DOC: &[&str] = &[
        "/// `api_wait_ready`, looking at the node while it waits: `check` (a closure of no",
        "/// arguments) is called when the API server is first found not ready, then every 5",
        "/// seconds. It returns what it sees, a string shown as progress when it changes (`etcd",
        "/// exited with code 1: ...`), or `()`; it throws to stop the wait at once, when what it",
        "/// sees cannot get better by itself (an image that cannot be pulled): the step then fails",
        "/// with what it threw. When rendering or in a dry run, nothing is asked and `check` is not",
        "/// called.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("api_wait_ready")
        .with_comments(CHECKED_DOC)
        .with_params_info(["kubeconfig: &str", "timeout: f64", "check: FnPtr", "bool"])
        .register_into_engine(
            engine,
            move |context: NativeCallContext, k: &str, timeout: rhai::FLOAT, look: FnPtr| {
                wait_ready(&c, k, timeout, Some(&Check { context: &context, look: &look }))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("api_wait_ready")
        .with_comments(CHECKED_DOC)
        .with_params_info(["kubeconfig: &str", "timeout: i64", "check: FnPtr", "bool"])
        .register_into_engine(
            engine,
            move |context: NativeCallContext, k: &str, timeout: rhai::INT, look: FnPtr| {
                wait_ready(
                    &c,
                    k,
                    super::int_seconds(timeout),
                    Some(&Check { context: &context, look: &look }),
                )
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("api_apply")
        .with_comments([
            "/// Applies `object` (a map with `apiVersion`, `kind`, `metadata.name`, and",
            "/// `metadata.namespace` unless cluster-scoped) by server-side apply, as field manager",
            "/// `kscript`, forcing conflicts, with strict field validation (a field the API does not",
            "/// have is an error), with the kubeconfig at node path `kubeconfig`. Returns",
            "/// `created`, `configured`, `unchanged` (the object's resourceVersion did not move), or",
            "/// `recorded` when rendering or in a dry run (a dry run prints the object, with a",
            "/// Secret's values replaced by `[REDACTED]`).",
        ])
        .with_params_info(["kubeconfig: &str", "object: Map", "String"])
        .register_into_engine(engine, move |k: &str, object: Map| apply(&c, k, object));

    let c = ctx.clone();
    FuncRegistration::new("api_get")
        .with_comments([
            "/// The object `kind` `name` of `api_version` (`v1`, `apps/v1`) in `namespace` (`\"\"` for",
            "/// cluster-scoped kinds), read with the kubeconfig at node path `kubeconfig`; `()` when",
            "/// there is none. When rendering or in a dry run, the object as applied earlier in the",
            "/// run, or `()`. One request: a server that does not answer is an error at once.",
        ])
        .with_params_info([
            "kubeconfig: &str",
            "api_version: &str",
            "kind: &str",
            "namespace: &str",
            "name: &str",
            "Dynamic",
        ])
        .register_into_engine(
            engine,
            move |k: &str, api_version: &str, kind: &str, namespace: &str, name: &str| -> R<Dynamic> {
                get(&c, k, &object_ref("api_get", api_version, kind, namespace, name)?, None)
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("api_get")
        .with_comments([
            "/// `api_get` with options. `timeout` (seconds): ask again, with progress, through what",
            "/// time may mend (the API server not answering yet, 401 or 403 while its RBAC rules are",
            "/// being made, 429, 5xx) until then, as kubeadm retries its API calls within",
            "/// `timeouts.kubernetesAPICall`; a 404 is an answer (`()`), and other errors end at once.",
        ])
        .with_params_info([
            "kubeconfig: &str",
            "api_version: &str",
            "kind: &str",
            "namespace: &str",
            "name: &str",
            "options: Map",
            "Dynamic",
        ])
        .register_into_engine(
            engine,
            move |k: &str,
                  api_version: &str,
                  kind: &str,
                  namespace: &str,
                  name: &str,
                  opts: Map|
                  -> R<Dynamic> {
                const F: &str = "api_get";
                check_opts(&opts, &["timeout"], F)?;
                let patience = match opts.get("timeout") {
                    None => None,
                    Some(t) if t.is_unit() => None,
                    Some(t) => Some(super::timeout_option(&format!("{F}(): option `timeout`"), t)?),
                };
                get(&c, k, &object_ref(F, api_version, kind, namespace, name)?, patience)
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("api_list")
        .with_comments([
            "/// The objects `kind` of `api_version` in `namespace` (`\"\"` for cluster-scoped kinds)",
            "/// whose labels match `selector` (`key=value` pairs joined by commas, `\"\"` for all),",
            "/// read with the kubeconfig at node path `kubeconfig`, each with its `apiVersion` and",
            "/// `kind`. When rendering or in a dry run, the matching objects applied earlier in the run.",
        ])
        .with_params_info([
            "kubeconfig: &str",
            "api_version: &str",
            "kind: &str",
            "namespace: &str",
            "selector: &str",
            "Array",
        ])
        .register_into_engine(
            engine,
            move |k: &str, api_version: &str, kind: &str, namespace: &str, selector: &str| -> R<Array> {
                list(&c, k, api_version, kind, namespace, selector)
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("api_delete")
        .with_comments([
            "/// Deletes the object `kind` `name` of `api_version` in `namespace` (`\"\"` for",
            "/// cluster-scoped kinds) with the kubeconfig at node path `kubeconfig`. Returns `true` if",
            "/// it was there; recorded when rendering.",
        ])
        .with_params_info([
            "kubeconfig: &str",
            "api_version: &str",
            "kind: &str",
            "namespace: &str",
            "name: &str",
            "bool",
        ])
        .register_into_engine(
            engine,
            move |k: &str, api_version: &str, kind: &str, namespace: &str, name: &str| -> R<bool> {
                delete(&c, k, &object_ref("api_delete", api_version, kind, namespace, name)?)
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("api_wait_condition")
        .with_comments([
            "/// Waits up to `timeout` seconds, with progress, until the object `what` (a map of",
            "/// `apiVersion`, `kind`, `namespace` (`\"\"` for cluster-scoped kinds) and `name`) has the",
            "/// status condition `condition` set to `True` (a Node `Ready`), and returns it; when",
            "/// rendering, what `api_get` returns. If the time runs out, the step fails saying why.",
        ])
        .with_params_info(["kubeconfig: &str", "what: Map", "condition: &str", "timeout: i64", "Dynamic"])
        .register_into_engine(
            engine,
            move |k: &str, what: rhai::Map, condition: &str, timeout: i64| -> R<Dynamic> {
                let field = |key: &str| -> R<String> {
                    what.get(key)
                        .map(ToString::to_string)
                        .ok_or_else(|| script_error(format!("api_wait_condition(): `what` needs `{key}`")))
                };
                let r = object_ref(
                    "api_wait_condition",
                    &field("apiVersion")?,
                    &field("kind")?,
                    &what.get("namespace").map(ToString::to_string).unwrap_or_default(),
                    &field("name")?,
                )?;
                wait_condition(&c, k, &r, condition, super::int_seconds(timeout))
            },
        );

    const WAIT_FOR_DOC: &[&str] = &[
        "/// Waits up to `timeout` seconds, with progress, until the object `kind` `name` of",
        "/// `api_version` in `namespace` exists (a Node once its kubelet registers), and returns",
        "/// it; when rendering, what `api_get` returns. If the time runs out, the step fails.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("api_wait_for")
        .with_comments(WAIT_FOR_DOC)
        .with_params_info([
            "kubeconfig: &str",
            "api_version: &str",
            "kind: &str",
            "namespace: &str",
            "name: &str",
            "timeout: i64",
            "Dynamic",
        ])
        .register_into_engine(
            engine,
            move |k: &str,
                  api_version: &str,
                  kind: &str,
                  namespace: &str,
                  name: &str,
                  timeout: rhai::INT|
                  -> R<Dynamic> {
                let r = object_ref("api_wait_for", api_version, kind, namespace, name)?;
                wait_for(&c, k, &r, super::int_seconds(timeout))
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("discover_cluster_info")
        .with_comments([
            "/// Token discovery, as `kubeadm join` does it: fetches the ConfigMap",
            "/// kube-public/cluster-info from the API server at `server` (`host:port` or",
            "/// `https://host:port`) without trusting its certificate; checks the detached JWS",
            "/// `jws-kubeconfig-<token id>` with the bootstrap `token` (`id.secret`); checks the CA it",
            "/// holds against the `pins` (`sha256:...`, any one matching); then fetches it again over",
            "/// TLS verified with that CA and checks both copies agree. Returns `#{ ca_pem, server,",
            "/// pin }`, or `()` when rendering or in a dry run; a second call with the same arguments in",
            "/// one run answers what the first verified. As kubeadm, it keeps trying, with progress,",
            "/// while the control plane comes up: through a server that does not answer, a",
            "/// cluster-info not there or not readable yet, and one not signed for the token yet. A",
            "/// signature that does not verify, or a CA that does not match the pins (both hashes",
            "/// named), ends it at once. Options: `unsafe_skip_ca_verification` (trust the CA without",
            "/// pins: only with no pins given), `timeout` (seconds to keep trying, default 300:",
            "/// kubeadm's `timeouts.discovery`; each fetch takes at most 10). When the time runs out,",
            "/// it fails naming the server and the last reason (an unknown or expired token, a",
            "/// connection refused...).",
        ])
        .with_params_info(["server: &str", "token: &str", "pins: Array", "options: Map", "Dynamic"])
        .register_into_engine(engine, move |server: &str, token: &str, pins: Array, opts: Map| {
            discover(&c, server, token, pins, &opts)
        });

    FuncRegistration::new("token_generate")
        .with_comments([
            "/// A new random bootstrap token, `id.secret` (6 and 16 characters of [a-z0-9]). It is a",
            "/// credential: write it only to files marked secret.",
        ])
        .with_params_info(["String"])
        .register_into_engine(engine, || -> R<String> {
            Token::generate().map(|t| t.expose()).map_err(|e| effect_error(format!("token_generate(): {e}")))
        });

    let c = ctx.clone();
    FuncRegistration::new("token_secret_object")
        .with_comments([
            "/// The Secret kube-system/bootstrap-token-<id> of a bootstrap `token` (`id.secret`), as",
            "/// kubeadm writes it: type `bootstrap.kubernetes.io/token`, `data` (base64) with",
            "/// `token-id`, `token-secret`, `expiration` (now + `ttl`, a duration such as `24h0m0s`;",
            "/// none for `\"\"` or `0s`), `description` (when not empty), `usage-bootstrap-<usage>`",
            "/// (`signing`, `authentication`) and `auth-extra-groups` (`groups` joined by commas;",
            "/// each must start with `system:bootstrappers:`).",
        ])
        .with_params_info([
            "token: &str",
            "ttl: &str",
            "description: &str",
            "usages: Array",
            "groups: Array",
            "Map",
        ])
        .register_into_engine(
            engine,
            move |token: &str, ttl: &str, description: &str, usages: Array, groups: Array| {
                token_secret(&c, token, ttl, description, usages, groups)
            },
        );

    FuncRegistration::new("config_map_checksum")
        .with_comments([
            "/// kubeadm's checksum of a ConfigMap's `data` (the `kubeadm.kubernetes.io/component-config.hash`",
            "/// annotation): SHA-256 over the values in the order of their sorted keys, `sha256:<hex>`.",
        ])
        .with_params_info(["data: Map", "String"])
        .register_into_engine(engine, |data: rhai::Map| config_map_checksum(&data));

    let c = ctx.clone();
    FuncRegistration::new("token_info")
        .with_comments([
            "/// What `kubeadm token list` shows of a bootstrap-token Secret (as `api_get` or",
            "/// `api_list` return it): `#{ token, id, ttl (`23h`, `<forever>`), expires (RFC 3339 or",
            "/// `<never>`), expired, usages, description, groups }`; `()` for any other object.",
        ])
        .with_params_info(["secret: Map", "Dynamic"])
        .register_into_engine(engine, move |secret: Map| token_info(&c, &secret));

    let c = ctx.clone();
    FuncRegistration::new("join_command")
        .with_comments([
            "/// The `kubeadm join` command a node joins with: the API server endpoint of `server`",
            "/// (`https://host:port` or `host:port`), `--token`, and one",
            "/// `--discovery-token-ca-cert-hash` per pin. In a dry run the token's secret is not",
            "/// shown.",
        ])
        .with_params_info(["server: &str", "token: &str", "pins: Array", "String"])
        .register_into_engine(engine, move |server: &str, token: &str, pins: Array| {
            join_command(&c, server, token, pins)
        });

    let c = ctx.clone();
    FuncRegistration::new("kscript_join_command")
        .with_comments([
            "/// The `kscript run worker.rhai` command a node joins with, ready to paste into a",
            "/// shell: `--set` flags for the API server endpoint of `server` (`https://host:port`",
            "/// or `host:port`), the token and the CA pins (`discovery.bootstrapToken.*`; no pins:",
            "/// `unsafeSkipCAVerification=true`). Option `certificate_key` makes it a control-plane",
            "/// join (`controlPlane={certificateKey: ...}`; the node advertises the address of its",
            "/// default route unless `controlPlane.localAPIEndpoint` says otherwise). In a dry run",
            "/// the token's secret is not shown.",
        ])
        .with_params_info(["server: &str", "token: &str", "pins: Array", "options: Map", "String"])
        .register_into_engine(engine, move |server: &str, token: &str, pins: Array, opts: Map| {
            kscript_join_command(&c, server, token, pins, &opts)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each word, printed by `sh` after it split the quoted line, comes back as it was.
    #[test]
    fn shell_words_survive_the_shell() {
        let words = [
            "discovery.bootstrapToken.apiServerEndpoint=10.0.0.1:6443",
            "discovery.bootstrapToken.caCertHashes=[sha256:ab, sha256:cd]",
            "discovery.bootstrapToken.apiServerEndpoint=[fd00::1]:6443",
            "controlPlane={certificateKey: \"<certificate key>\"}",
            "it's $HOME `x` \\ * ?",
            "",
        ];
        assert_eq!(shell_word(words[0]), words[0], "plain words stay as they are");
        let line: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", line.join(" ")))
            .output()
            .unwrap();
        let back: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(back, words);
    }

    /// Against `printf 'hello world' | sha256sum`: the values concatenated in key order.
    #[test]
    fn config_map_checksum_hashes_values_in_key_order() {
        let mut m = Map::new();
        m.insert("b".into(), "world".into());
        m.insert("a".into(), "hello ".into());
        assert_eq!(
            config_map_checksum(&m),
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    /// Which outcomes of a fetched cluster-info discovery waits on: only a missing signature.
    #[test]
    fn discovery_waits_only_for_a_signature() {
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(
            judge(Err(DiscoveryError::UnknownToken("abcdef".into())), &token),
            Attempt::Again {
                reason: "cluster-info not signed for token abcdef yet".into(),
                error: DiscoveryError::UnknownToken("abcdef".into()).to_string(),
            }
        );
        let mismatch = DiscoveryError::PinMismatch {
            expected: vec![format!("sha256:{}", "ab".repeat(32))],
            actual: format!("sha256:{}", "cd".repeat(32)),
        };
        match judge(Err(mismatch), &token) {
            Attempt::Fatal(e) => assert!(e.contains(&"ab".repeat(32)) && e.contains(&"cd".repeat(32)), "{e}"),
            other => panic!("{other:?}"),
        }
        for fatal in [
            DiscoveryError::BadSignature { id: "abcdef".into(), reason: bootstrap::JwsError::BadSignature },
            DiscoveryError::NoKubeconfig,
            DiscoveryError::BadKubeconfig("it names no server".into()),
        ] {
            assert!(matches!(judge(Err(fatal.clone()), &token), Attempt::Fatal(_)), "{fatal:?}");
        }
    }

    /// An API error is tried again only when the host marked it as one time may mend.
    #[test]
    fn only_marked_failures_are_tried_again() {
        let plain = io::Error::new(io::ErrorKind::InvalidData, "the kubeconfig /x: bad");
        assert_eq!(failed_call::<()>(&plain), Attempt::Fatal("the kubeconfig /x: bad".into()));
    }

    #[test]
    fn pauses_grow_to_kubeadms_interval() {
        let pauses: Vec<u128> = (0..8).map(|n| pause(n).as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(pause(u32::MAX), LONGEST_PAUSE);
    }

    /// The loop: done after failures that may mend; at once on a fatal one; with no time
    /// left, the last error. Attempts are counted, not timed.
    #[test]
    fn keep_trying_stops_on_success_fatal_or_time() {
        let again = || Attempt::Again { reason: "not yet".into(), error: "no answer".into() };
        let mut script = vec![again(), again(), Attempt::Done(7)].into_iter();
        let mut calls = 0;
        let got = crate::report::wait_with("test", crate::report::Watch::Plain, |p| {
            keep_trying(p, Duration::from_mins(10), |_| {
                calls += 1;
                script.next().unwrap()
            })
        });
        assert_eq!((got.unwrap(), calls), (7, 3));

        let mut script = vec![again(), Attempt::Fatal("pin".into()), Attempt::Done(1)].into_iter();
        let got = crate::report::wait_with("test", crate::report::Watch::Plain, |p| {
            keep_trying(p, Duration::from_mins(10), |_| script.next().unwrap())
        });
        assert!(matches!(got, Err(GaveUp::Fatal(e)) if e == "pin"));
        assert_eq!(script.len(), 1, "nothing asked after the fatal answer");

        let mut deadlines = Vec::new();
        let got = crate::report::wait_with("test", crate::report::Watch::Plain, |p| {
            keep_trying(p, Duration::ZERO, |d| {
                deadlines.push(d);
                again()
            })
        });
        assert!(matches!(got, Err(GaveUp::TimedOut(e)) if e == "no answer"));
        assert_eq!(deadlines, [Duration::ZERO], "one attempt when no time is allowed");
    }

    #[test]
    fn short_durations_read_as_kubeadm_prints_them() {
        let cases =
            [(-5, "<invalid>"), (-1, "0s"), (59, "59s"), (3599, "59m"), (7200, "2h"), (86_400 * 3, "3d")];
        for (secs, shown) in cases {
            assert_eq!(short_duration(secs), shown, "{secs}");
        }
        assert_eq!(short_duration(400 * 86_400), "1y");
    }
}
