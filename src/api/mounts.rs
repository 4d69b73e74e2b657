//! Unmounting what is mounted under a node folder (reset: the kubelet's volumes under
//! /var/lib/kubelet, before its files are removed).

use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FuncRegistration};

use super::{Ctx, effect_error};
use crate::host::mounts::Unmounted;
use crate::journal::Outcome;
use crate::report::EffectLine;

type R<T> = Result<T, Box<EvalAltResult>>;

fn unmount_under(ctx: &Ctx, path: &str) -> R<Array> {
    ctx.require_step("unmount_under")?;
    ctx.attempt(path);
    // Symlinks followed inside the root, as kubeadm evaluates /var/lib/kubelet's.
    let r = ctx.root.resolve(path).map_err(|e| effect_error(e.to_string()))?;
    if r.node == "/" {
        return Err(effect_error("unmount_under(\"/\") is refused: it would unmount the whole node"));
    }
    let points = ctx
        .host
        .mounts
        .mounts_under(&r.host)
        .map_err(|e| effect_error(format!("cannot list the mounts under {}: {e}", r.node)))?;
    let mut done = Array::new();
    for point in points {
        let node = ctx.root.node_path_of(&point).unwrap_or_else(|| point.display().to_string());
        ctx.attempt(&node);
        let outcome = ctx.host.mounts.unmount(&point).map_err(|e| {
            ctx.record("unmount", &node, Outcome::Failed, None, None);
            effect_error(format!("cannot unmount {node}: {e} (is a process still using it?)"))
        })?;
        let (outcome, sign, word) = match outcome {
            Unmounted::Done => (Outcome::Changed, '-', "unmounted"),
            Unmounted::Recorded => (Outcome::Recorded, '!', "unmount recorded, not done"),
        };
        ctx.record(
            "unmount",
            &node,
            outcome,
            Some(word.into()),
            Some(EffectLine::new(sign, node.clone(), word)),
        );
        done.push(Dynamic::from(node));
    }
    Ok(done)
}

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("unmount_under")
        .with_comments([
            "/// Unmounts every mount point strictly below node folder `path` (its symlinks",
            "/// followed inside the root), deepest first, as kubeadm reset does under",
            "/// /var/lib/kubelet, reading this host's mount table (/proc/self/mountinfo). Returns",
            "/// the node paths unmounted, in order. When rendering or in a dry run each unmount is",
            "/// recorded, never done: the host's mounts are left as they are.",
        ])
        .with_params_info(["path: &str", "Array"])
        .register_into_engine(engine, move |path: &str| unmount_under(&c, path));
}
