//! What a control-plane join needs beyond a worker's: the shared certificates, sealed with a
//! certificate key for the kubeadm-certs Secret, and etcd's membership (list the members, add
//! this node's peer URL; a reset removes its member).
//!
//! etcd calls go through the cluster backend: on a real run to etcd's JSON gateway over
//! mutual TLS; when rendering or in a dry run nothing is asked, and a member add or remove is
//! recorded.

use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use super::files::read_file;
use super::{Ctx, check_opts, effect_error, script_error};
use crate::bootstrap;
use crate::host::etcd::{self, EtcdTls, Member};
use crate::journal::Outcome;
use crate::report::EffectLine;

type R<T> = Result<T, Box<EvalAltResult>>;

/// The TLS material named by `certs` (`#{ ca, cert, key }`, node paths), read from the root.
fn tls(ctx: &Ctx, function: &str, certs: &Map) -> R<EtcdTls> {
    check_opts(certs, &["ca", "cert", "key"], function)?;
    let path = |key: &str| -> R<String> {
        certs
            .get(key)
            .and_then(|v| v.clone().into_string().ok())
            .ok_or_else(|| script_error(format!("{function}(): `{key}` (a node path) is required")))
    };
    Ok(EtcdTls {
        ca_pem: read_file(ctx, &path("ca")?)?,
        cert_pem: read_file(ctx, &path("cert")?)?,
        key_pem: read_file(ctx, &path("key")?)?,
    })
}

fn to_array(members: Vec<Member>) -> Array {
    members
        .into_iter()
        .map(|m| {
            let mut map = Map::new();
            map.insert("id".into(), m.id.into());
            map.insert("name".into(), m.name.into());
            map.insert(
                "peer_urls".into(),
                m.peer_urls.into_iter().map(Dynamic::from).collect::<Array>().into(),
            );
            map.insert(
                "client_urls".into(),
                m.client_urls.into_iter().map(Dynamic::from).collect::<Array>().into(),
            );
            Dynamic::from_map(map)
        })
        .collect()
}

fn members(ctx: &Ctx, endpoint: &str, certs: &Map) -> R<Dynamic> {
    const F: &str = "etcd_members";
    let tls = tls(ctx, F, certs)?;
    ctx.attempt(&format!("etcd member list ({endpoint})"));
    let answer = ctx
        .host
        .cluster
        .etcd(endpoint, &tls, "/v3/cluster/member/list", &serde_json::json!({}))
        .map_err(|e| effect_error(format!("etcd member list: {e}")))?;
    Ok(answer.map_or(Dynamic::UNIT, |a| to_array(etcd::members(&a)).into()))
}

/// One change of etcd's, `target` (`etcd member add URL`), carried out by `call` under the
/// progress line `label` and recorded: failed, `done` (its sign and word, `+ added`), or
/// recorded, not sent, when rendering or in a dry run. Returns etcd's answer (`None` then).
fn change(
    ctx: &Ctx,
    endpoint: &str,
    target: &str,
    label: &str,
    (sign, word): (char, &str),
    call: impl FnOnce() -> std::io::Result<Option<serde_json::Value>>,
) -> R<Option<serde_json::Value>> {
    ctx.attempt(target);
    let answer = ctx.wait(label, call).map_err(|e| {
        ctx.record("etcd", target, Outcome::Failed, Some(format!("failed ({endpoint})")), None);
        effect_error(format!("{target}: {e}"))
    })?;
    let (outcome, sign, word) = if answer.is_some() {
        (Outcome::Changed, sign, word)
    } else {
        (Outcome::Recorded, '!', "recorded, not sent")
    };
    let line = EffectLine::new(sign, target.to_string(), word);
    ctx.record("etcd", target, outcome, Some(format!("{word} ({endpoint})")), Some(line));
    Ok(answer)
}

fn member_add(ctx: &Ctx, endpoint: &str, certs: &Map, peer_url: &str) -> R<Dynamic> {
    const F: &str = "etcd_member_add";
    ctx.require_step(F)?;
    if !peer_url.starts_with("https://") {
        return Err(script_error(format!(
            "{F}(): `{peer_url}` is not a peer URL such as https://10.0.0.2:2380"
        )));
    }
    let tls = tls(ctx, F, certs)?;
    let target = format!("etcd member add {peer_url}");
    let label = format!("adding {peer_url} to etcd at {endpoint}");
    let add = etcd::add_request(peer_url);
    let answer = change(ctx, endpoint, &target, &label, ('+', "added"), || {
        change_membership(
            ctx,
            endpoint,
            &tls,
            ("/v3/cluster/member/add", &add),
            "already exists",
            ADD_PATIENCE,
        )
    })?;
    Ok(answer.map_or(Dynamic::UNIT, |a| to_array(etcd::members(&a)).into()))
}

/// How long a member add keeps trying while etcd says it cannot change its membership yet.
const ADD_PATIENCE: Duration = Duration::from_mins(2);

/// One change of etcd's membership (`path`, a member add or remove, with `body`), tried again
/// while etcd refuses for a passing reason, until `patience` runs out: a member that joined or
/// started moments ago is not yet connected to all (`unhealthy cluster`; etcd says the same of
/// a change that would leave the members without quorum, which does not pass and ends with the
/// patience), no leader for now. A change whose answer was lost is found on the next try
/// (`done`: etcd's words for it, `already exists` or `member not found`), and answered with
/// the member list.
fn change_membership(
    ctx: &Ctx,
    endpoint: &str,
    tls: &EtcdTls,
    (path, body): (&str, &serde_json::Value),
    done: &str,
    patience: Duration,
) -> std::io::Result<Option<serde_json::Value>> {
    let start = Instant::now();
    loop {
        let error = match ctx.host.cluster.etcd(endpoint, tls, path, body) {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        let text = error.to_string();
        if text.contains(done) {
            return ctx.host.cluster.etcd(endpoint, tls, "/v3/cluster/member/list", &serde_json::json!({}));
        }
        let passing = ["unhealthy cluster", "timed out", "no leader", "leader changed"]
            .iter()
            .any(|p| text.contains(p));
        if !passing || start.elapsed() >= patience {
            return Err(error);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn status(ctx: &Ctx, endpoint: &str, certs: &Map) -> R<Dynamic> {
    let tls = tls(ctx, "etcd_status", certs)?;
    ctx.attempt(&format!("etcd status ({endpoint})"));
    let answer = ctx
        .host
        .cluster
        .etcd(endpoint, &tls, "/v3/maintenance/status", &serde_json::json!({}))
        .map_err(|e| effect_error(format!("etcd status: {e}")))?;
    Ok(answer.map_or(Dynamic::UNIT, |a| {
        let s = etcd::status(&a);
        let mut m = Map::new();
        m.insert("member_id".into(), s.member_id.into());
        m.insert("leader".into(), s.leader.into());
        m.insert("version".into(), s.version.into());
        Dynamic::from_map(m)
    }))
}

fn move_leader(ctx: &Ctx, endpoint: &str, certs: &Map, id: &str) -> R<bool> {
    const F: &str = "etcd_move_leader";
    ctx.require_step(F)?;
    let Some(body) = etcd::move_leader_request(id) else {
        return Err(script_error(format!(
            "{F}(): `{id}` is not a member ID (hex, as etcd_members gives it)"
        )));
    };
    let tls = tls(ctx, F, certs)?;
    let target = format!("etcd move-leader {id}");
    let label = format!("moving etcd's leadership to {id} through {endpoint}");
    let answer = change(ctx, endpoint, &target, &label, ('~', "moved"), || {
        ctx.host.cluster.etcd(endpoint, &tls, "/v3/maintenance/transfer-leadership", &body)
    })?;
    Ok(answer.is_some())
}

fn member_remove(ctx: &Ctx, endpoint: &str, certs: &Map, id: &str) -> R<Dynamic> {
    const F: &str = "etcd_member_remove";
    ctx.require_step(F)?;
    let Some(body) = etcd::remove_request(id) else {
        return Err(script_error(format!(
            "{F}(): `{id}` is not a member ID (hex, as etcd_members gives it, such as 8e9e05c52164694d)"
        )));
    };
    let tls = tls(ctx, F, certs)?;
    let target = format!("etcd member remove {id}");
    let label = format!("removing member {id} from etcd at {endpoint}");
    let answer = change(ctx, endpoint, &target, &label, ('-', "removed"), || {
        change_membership(
            ctx,
            endpoint,
            &tls,
            ("/v3/cluster/member/remove", &body),
            "member not found",
            REMOVE_PATIENCE,
        )
    })?;
    Ok(answer.map_or(Dynamic::UNIT, |a| to_array(etcd::members(&a)).into()))
}

/// How long a member remove keeps trying while etcd refuses for a passing reason.
const REMOVE_PATIENCE: Duration = Duration::from_secs(30);

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("etcd_members")
        .with_comments([
            "/// The members of the etcd cluster whose client URL is `endpoint`",
            "/// (`https://10.0.0.1:2379`), asked over mutual TLS with `certs`, a map of node paths",
            "/// `ca` (the etcd CA), `cert` and `key` (a client certificate it signed, such as",
            "/// apiserver-etcd-client). Each member: `#{ id, name, peer_urls, client_urls }` (a",
            "/// member added but not started has no name yet). `()` when rendering or in a dry run.",
        ])
        .with_params_info(["endpoint: &str", "certs: Map", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, certs: Map| members(&c, endpoint, &certs));

    let c = ctx.clone();
    FuncRegistration::new("etcd_member_add")
        .with_comments([
            "/// Adds a member with `peer_url` (`https://10.0.0.2:2380`) to the etcd cluster at",
            "/// `endpoint`, as `etcdctl member add` does (`certs` as for `etcd_members`), and returns",
            "/// the members then. While etcd refuses for a passing reason (a member that joined",
            "/// moments ago is not yet connected to all, no leader for now) it tries again, for up to",
            "/// 2 minutes, with progress. When rendering or in a dry run it is recorded, and returns",
            "/// `()`. Look in `etcd_members` first: a second add of the same URL is refused by etcd.",
        ])
        .with_params_info(["endpoint: &str", "certs: Map", "peer_url: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, certs: Map, peer_url: &str| {
            member_add(&c, endpoint, &certs, peer_url)
        });

    let c = ctx.clone();
    FuncRegistration::new("etcd_status")
        .with_comments([
            "/// What the etcd member at `endpoint` says of itself (`certs` as for `etcd_members`):",
            "/// `#{ member_id, leader, version }`, the IDs in hex as `etcd_members` gives them (the",
            "/// member is the leader when they are equal). `()` when rendering or in a dry run.",
        ])
        .with_params_info(["endpoint: &str", "certs: Map", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, certs: Map| status(&c, endpoint, &certs));

    let c = ctx.clone();
    FuncRegistration::new("etcd_move_leader")
        .with_comments([
            "/// Hands etcd's leadership to member `id` (hex), as `etcdctl move-leader` does: asked",
            "/// of the leader, at `endpoint` (`certs` as for `etcd_members`). Before a leader is",
            "/// removed from a 2-member cluster, so the member left is the one that commits the",
            "/// removal. Returns `true` when sent; recorded when rendering or in a dry run (`false`).",
        ])
        .with_params_info(["endpoint: &str", "certs: Map", "id: &str", "bool"])
        .register_into_engine(engine, move |endpoint: &str, certs: Map, id: &str| {
            move_leader(&c, endpoint, &certs, id)
        });

    let c = ctx.clone();
    FuncRegistration::new("etcd_member_remove")
        .with_comments([
            "/// Removes member `id` (hex, as `etcd_members` gives it) from the etcd cluster at",
            "/// `endpoint`, as `etcdctl member remove` does (`certs` as for `etcd_members`), and",
            "/// returns the members left. A member already gone is not an error. etcd itself refuses",
            "/// a removal that would leave its cluster without quorum of started members (`unhealthy",
            "/// cluster`, also said for a while after a member started: tried again for up to 30 s,",
            "/// with progress); the caller decides about a 2-member cluster (see stdlib/reset.rhai).",
            "/// When rendering or in a dry run it is recorded, and returns `()`.",
        ])
        .with_params_info(["endpoint: &str", "certs: Map", "id: &str", "Dynamic"])
        .register_into_engine(engine, move |endpoint: &str, certs: Map, id: &str| {
            member_remove(&c, endpoint, &certs, id)
        });

    FuncRegistration::new("certificate_key_generate")
        .with_comments([
            "/// A new certificate key: 32 random bytes as 64 hex digits, what `kubeadm certs",
            "/// certificate-key` prints. It is a credential: write it only to files marked secret.",
        ])
        .with_params_info(["String"])
        .register_into_engine(engine, || -> R<String> {
            bootstrap::generate_certificate_key()
                .map_err(|e| effect_error(format!("certificate_key_generate(): {e}")))
        });

    FuncRegistration::new("certificate_key_encrypt")
        .with_comments([
            "/// `text` sealed with the certificate `key` (AES-256-GCM, the nonce first), in base64,",
            "/// as kubeadm stores each file in the kubeadm-certs Secret's `data`.",
        ])
        .with_params_info(["text: &str", "key: &str", "String"])
        .register_into_engine(engine, |text: &str, key: &str| -> R<String> {
            bootstrap::encrypt(text.as_bytes(), key)
                .map(|sealed| STANDARD.encode(sealed))
                .map_err(|e| script_error(format!("certificate_key_encrypt(): {e}")))
        });

    FuncRegistration::new("certificate_key_decrypt")
        .with_comments([
            "/// What `certificate_key_encrypt` sealed: `data` (base64, a value of the kubeadm-certs",
            "/// Secret) opened with the certificate `key`. Fails when the key is wrong or the data",
            "/// was altered.",
        ])
        .with_params_info(["data: &str", "key: &str", "String"])
        .register_into_engine(engine, |data: &str, key: &str| -> R<String> {
            let sealed = STANDARD.decode(data.trim()).map_err(|e| {
                effect_error(format!("certificate_key_decrypt(): the data is not base64: {e}"))
            })?;
            let plain = bootstrap::decrypt(&sealed, key)
                .map_err(|e| effect_error(format!("certificate_key_decrypt(): {e}")))?;
            String::from_utf8(plain).map_err(|_| {
                effect_error("certificate_key_decrypt(): the plain text is not UTF-8".to_string())
            })
        });
}
