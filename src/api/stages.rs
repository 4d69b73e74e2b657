//! Declaring stages, steps and handlers; notifying handlers; skipping a step.

use std::rc::Rc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, Position};

use super::{Ctx, SkipSignal, script_error};
use crate::stages::{Handler, Stage, Step, check_name};

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    engine.register_type_with_name::<Step>("Step");

    FuncRegistration::new("step")
        .with_comments([
            "/// A step of a stage: `name` in kubeadm's style (`certs/apiserver`: lower-case words,",
            "/// `/` between groups), a one-line `description`, and the `body` to run.",
            "///",
            "/// Steps are data: `kscript stages` lists them, and `--only`, `--skip` and `--from`",
            "/// select them by `stage/name` or by a group prefix (`init/certs`).",
            "/// A closure captures variables by reference: inside a loop, copy the loop variable",
            "/// first (`for row in rows { let r = row; steps.push(step(r.name, \"...\", || use(r))) }`).",
            "///",
            "/// ```rhai",
            "/// step(\"modules\", \"Load kernel modules at boot\", || {",
            "///     file(\"/etc/modules-load.d/k8s.conf\", \"overlay\\nbr_netfilter\\n\");",
            "/// })",
            "/// ```",
        ])
        .with_params_info(["name: &str", "description: &str", "body: FnPtr", "Step"])
        .register_into_engine(
            engine,
            |name: &str, description: &str, body: FnPtr| -> Result<Step, Box<EvalAltResult>> {
                check_name(name, true).map_err(script_error)?;
                Ok(Step { name: name.into(), description: description.into(), body })
            },
        );

    const STAGE_DOC: &[&str] = &[
        "/// Declares a stage: its `name`, a one-line `description`, and its `steps` in order",
        "/// (an array of `step(...)`). Stages run in the order they are declared.",
        "///",
        "/// A stage must be able to run alone (`--only NAME`): read what earlier stages left",
        "/// on the node with `read_file`/`exists`, not variables set by them.",
        "/// Options: `explicit: true` makes a stage run only when `--only` or `--from` names it",
        "/// (for on-demand or destructive work, such as renewing certificates).",
    ];
    let c = ctx.clone();
    FuncRegistration::new("stage")
        .with_comments(STAGE_DOC)
        .with_params_info(["name: &str", "description: &str", "steps: Array", "()"])
        .register_into_engine(engine, move |name: &str, description: &str, steps: Array| {
            declare_stage(&c, name, description, steps, &rhai::Map::new())
        });
    let c = ctx.clone();
    FuncRegistration::new("stage")
        .with_comments(STAGE_DOC)
        .with_params_info(["name: &str", "description: &str", "steps: Array", "options: Map", "()"])
        .register_into_engine(engine, move |name: &str, description: &str, steps: Array, opts: rhai::Map| {
            declare_stage(&c, name, description, steps, &opts)
        });

    let c = ctx.clone();
    FuncRegistration::new("handler")
        .with_comments([
            "/// Declares a handler: work (such as restarting a service) that runs once, at the end",
            "/// of a stage, if a step that changed something called `notify(name)`.",
        ])
        .with_params_info(["name: &str", "body: FnPtr", "()"])
        .register_into_engine(engine, move |name: &str, body: FnPtr| -> Result<(), Box<EvalAltResult>> {
            c.model.borrow_mut().add_handler(Handler { name: name.into(), body }).map_err(script_error)
        });

    let c = ctx.clone();
    FuncRegistration::new("notify")
        .with_comments([
            "/// Asks for the handler `name` to run at the end of this stage. It runs once however",
            "/// many steps notify it, and only if one of them changed something.",
        ])
        .with_params_info(["name: &str", "()"])
        .register_into_engine(engine, move |name: &str| -> Result<(), Box<EvalAltResult>> {
            c.require_step("notify")?;
            if c.model.borrow().handler(name).is_none() {
                let known: Vec<String> =
                    c.model.borrow().handlers.iter().map(|h| format!("`{}`", h.name)).collect();
                return Err(script_error(format!(
                    "notify(\"{name}\"): no handler has that name; declared: {}",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
            if let Some(s) = c.current.borrow_mut().as_mut()
                && !s.notified.iter().any(|n| n == name)
            {
                s.notified.push(name.to_string());
            }
            Ok(())
        });

    let c = ctx.clone();
    FuncRegistration::new("node_status")
        .with_comments([
            "/// Declares what `kscript status` measures on this script's node: a map of `role`,",
            "/// `kubeconfig` (a node path), `cri_socket`, `node` (its name), `node_ready` (the stage",
            "/// from which the Node must be Ready; optional), `components` (the stage",
            "/// table: a row per systemd service, static Pod, Deployment or DaemonSet, each with the",
            "/// stage from which it must be `installed` and `running`) and `files` (the stage map:",
            "/// `stage`, `path`, `role`, and `by` for a file another actor makes). stdlib/status.rhai",
            "/// builds it; call this once, at the script's top level:",
            "///",
            "/// ```rhai",
            "/// node_status(status::control_plane(cfg));",
            "/// ```",
            "///",
            "/// A fork adds a component by pushing a row (`status::daemonset(...)`) onto",
            "/// `components`; a bad row is an error naming it.",
        ])
        .with_params_info(["status: Map", "()"])
        .register_into_engine(engine, move |map: rhai::Map| -> Result<(), Box<EvalAltResult>> {
            let spec = crate::status::spec::Spec::from_map(&map)
                .map_err(|e| script_error(format!("node_status(): {e}")))?;
            let mut model = c.model.borrow_mut();
            if model.node_status.is_some() {
                return Err(script_error(
                    "node_status() was called twice: a script declares one status table",
                ));
            }
            model.node_status = Some(spec);
            Ok(())
        });

    FuncRegistration::new("skip_step")
        .with_comments([
            "/// Ends the current step here, reported as `skipped` with `reason` (for a step that",
            "/// does not apply to this node). Effects already made stay recorded.",
        ])
        .with_params_info(["reason: &str", "()"])
        .register_into_engine(engine, |reason: &str| -> Result<(), Box<EvalAltResult>> {
            Err(Box::new(EvalAltResult::ErrorRuntime(
                Dynamic::from(SkipSignal { reason: reason.into() }),
                Position::NONE,
            )))
        });
}

fn declare_stage(
    ctx: &Ctx,
    name: &str,
    description: &str,
    steps: Array,
    opts: &rhai::Map,
) -> Result<(), Box<EvalAltResult>> {
    super::check_opts(opts, &["explicit"], "stage")?;
    let explicit = super::opt::<bool>(opts, "explicit", "stage")?.unwrap_or(false);
    let mut list = Vec::with_capacity(steps.len());
    for (i, s) in steps.into_iter().enumerate() {
        let type_name = s.type_name();
        let step = s.try_cast::<Step>().ok_or_else(|| {
            script_error(format!(
                "stage `{name}`: item {} of its steps is {type_name}, not a step(...)",
                i + 1
            ))
        })?;
        list.push(step);
    }
    let stage = Stage { name: name.into(), description: description.into(), steps: list, explicit };
    ctx.model.borrow_mut().add_stage(stage).map_err(script_error)
}
