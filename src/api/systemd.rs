//! systemd units: enable (with the same `.wants/` symlinks `systemctl --root` makes), start,
//! stop, restart, daemon-reload, state, wait until active.

use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration};

use super::files::{make_symlink, read_bytes, remove};
use super::{Ctx, effect_error, script_error};
use crate::host::seconds;
use crate::host::systemd::{Systemd, UnitChange, parse_install};
use crate::journal::Outcome;
use crate::report::EffectLine;

type R<T> = Result<T, Box<EvalAltResult>>;

/// Where unit files are looked up on the node, in systemd's order of precedence.
const UNIT_DIRS: &[&str] = &["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];

fn check_unit(unit: &str) -> R<()> {
    let ok = !unit.is_empty()
        && unit.contains('.')
        && unit.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@:\\".contains(c));
    if ok {
        Ok(())
    } else {
        Err(script_error(format!("`{unit}` is not a unit name such as kubelet.service")))
    }
}

/// Records one unit operation and turns its result into `changed`.
fn record(ctx: &Ctx, what: &str, unit: &str, result: std::io::Result<UnitChange>) -> R<bool> {
    let target = format!("{what} {unit}").trim_end().to_string();
    ctx.attempt(&target);
    let change = result.map_err(|e| effect_error(format!("systemd {target}: {e}")))?;
    let (outcome, detail) = match change {
        UnitChange::Unchanged => (Outcome::Ok, "already so"),
        UnitChange::Changed => (Outcome::Changed, "done"),
        UnitChange::Recorded => (Outcome::Recorded, "recorded, not run"),
    };
    let line = EffectLine::new('!', format!("systemctl {target}"), detail);
    ctx.record("systemd", &target, outcome, Some(detail.into()), Some(line));
    Ok(change == UnitChange::Changed)
}

/// The node path of a unit's file, in the first unit folder that has it.
fn unit_file(ctx: &Ctx, unit: &str) -> R<(String, String)> {
    for dir in UNIT_DIRS {
        let path = format!("{dir}/{unit}");
        if let Some(bytes) = read_bytes(ctx, &path)? {
            return Ok((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Err(effect_error(format!("no unit file {unit} on the node (looked in {})", UNIT_DIRS.join(", "))))
}

/// The symlinks `systemctl enable` makes for a unit, as (link, target) node paths.
fn install_links(ctx: &Ctx, unit: &str) -> R<Vec<(String, String)>> {
    let (path, text) = unit_file(ctx, unit)?;
    let install = parse_install(&text);
    let mut links = Vec::new();
    for t in &install.wanted_by {
        links.push((format!("/etc/systemd/system/{t}.wants/{unit}"), path.clone()));
    }
    for t in &install.required_by {
        links.push((format!("/etc/systemd/system/{t}.requires/{unit}"), path.clone()));
    }
    for a in &install.alias {
        links.push((format!("/etc/systemd/system/{a}"), path.clone()));
    }
    Ok(links)
}

fn enable(ctx: &Ctx, unit: &str) -> R<bool> {
    ctx.require_step("unit_enable")?;
    check_unit(unit)?;
    let mut changed = false;
    for (link, target) in install_links(ctx, unit)? {
        changed |= make_symlink(ctx, &target, &link)?;
    }
    // On a real host, systemctl sees the links and may do more (presets, Also=).
    changed |= record(ctx, "enable", unit, ctx.host.systemd.enable(unit))?;
    Ok(changed)
}

fn disable(ctx: &Ctx, unit: &str) -> R<bool> {
    ctx.require_step("unit_disable")?;
    check_unit(unit)?;
    let mut changed = false;
    for (link, _) in install_links(ctx, unit)? {
        changed |= remove(ctx, &link)?;
    }
    changed |= record(ctx, "disable", unit, ctx.host.systemd.disable(unit))?;
    Ok(changed)
}

fn wait_active(ctx: &Ctx, unit: &str, timeout: f64) -> R<bool> {
    ctx.require_step("unit_wait_active")?;
    check_unit(unit)?;
    let timeout = super::timeout("unit_wait_active(): the timeout", timeout)?;
    let result = ctx
        .wait(&format!("waiting for {unit} to be active"), || ctx.host.systemd.wait_active(unit, timeout))
        .map_err(|e| effect_error(format!("systemd wait {unit}: {e}")))?;
    match result {
        Ok(change) => record(ctx, "wait-active", unit, Ok(change)),
        Err(failure) => {
            ctx.record(
                "systemd",
                &format!("wait-active {unit}"),
                Outcome::Failed,
                Some(failure.state.clone()),
                None,
            );
            // A failed unit ends the wait at once: "after {timeout}s" would not be true.
            let what = match failure.state.as_str() {
                "failed" => "has failed (state: failed)".to_string(),
                "" => format!("is not active (state: unknown) after {}", seconds(timeout)),
                state => format!("is not active (state: {state}) after {}", seconds(timeout)),
            };
            Err(effect_error(format!("{unit} {what}\n{}", failure.diagnosis)))
        }
    }
}

#[allow(clippy::too_many_lines)] // one registration after another, each with its documentation
pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("unit_enable")
        .with_comments([
            "/// Enables the systemd unit `unit` (`kubelet.service`): makes the symlinks its",
            "/// `[Install]` section asks for (`/etc/systemd/system/<target>.wants/<unit>`, pointing at",
            "/// the unit file), as `systemctl --root` does, so a rendered node shows them; on a real",
            "/// run, `systemctl enable` too. The unit file must be on the node already.",
            "/// Returns `true` if something changed.",
        ])
        .with_params_info(["unit: &str", "bool"])
        .register_into_engine(engine, move |unit: &str| enable(&c, unit));

    let c = ctx.clone();
    FuncRegistration::new("unit_disable")
        .with_comments(["/// Disables `unit`: removes the symlinks `unit_enable` makes; `systemctl disable` on a real run."])
        .with_params_info(["unit: &str", "bool"])
        .register_into_engine(engine, move |unit: &str| disable(&c, unit));

    let c = ctx.clone();
    FuncRegistration::new("daemon_reload")
        .with_comments([
            "/// `systemctl daemon-reload`: makes systemd read changed unit files (recorded when rendering).",
        ])
        .with_params_info(["bool"])
        .register_into_engine(engine, move || -> R<bool> {
            c.require_step("daemon_reload")?;
            record(&c, "daemon-reload", "", c.host.systemd.daemon_reload())
        });

    // Each function with the operation it performs (no catch-all: a row names its own).
    type Operation = fn(&dyn Systemd, &str) -> std::io::Result<UnitChange>;
    let operations: [(&str, &str, Operation, &str); 3] = [
        (
            "unit_start",
            "start",
            |s, unit| s.start(unit),
            "/// Starts `unit` unless it is active (recorded when rendering). Returns `true` if it started.",
        ),
        (
            "unit_stop",
            "stop",
            |s, unit| s.stop(unit),
            "/// Stops `unit` unless inactive or failed (a crash loop too; recorded when rendering). Returns `true` if it stopped.",
        ),
        (
            "unit_restart",
            "restart",
            |s, unit| s.restart(unit),
            "/// Restarts `unit` (recorded when rendering): what a handler does after a change.",
        ),
    ];
    for (name, what, operation, doc) in operations {
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_comments([doc])
            .with_params_info(["unit: &str", "bool"])
            .register_into_engine(engine, move |unit: &str| -> R<bool> {
                c.require_step(name)?;
                check_unit(unit)?;
                record(&c, what, unit, operation(c.host.systemd.as_ref(), unit))
            });
    }

    let c = ctx.clone();
    FuncRegistration::new("unit_state")
        .with_comments([
            "/// The state `systemctl is-active` reports for `unit` (`active`, `inactive`, `failed`,",
            "/// `activating`, ...); `()` when rendering or in a dry run, where there is no systemd.",
        ])
        .with_params_info(["unit: &str", "Dynamic"])
        .register_into_engine(engine, move |unit: &str| -> R<Dynamic> {
            check_unit(unit)?;
            let state =
                c.host.systemd.state(unit).map_err(|e| effect_error(format!("systemd state {unit}: {e}")))?;
            Ok(state.map_or(Dynamic::UNIT, Dynamic::from))
        });

    let c = ctx.clone();
    FuncRegistration::new("unit_diagnosis")
        .with_comments([
            "/// What to show when `unit` misbehaves: `systemctl status` and its last journal lines;",
            "/// `()` when rendering or in a dry run.",
        ])
        .with_params_info(["unit: &str", "Dynamic"])
        .register_into_engine(engine, move |unit: &str| -> R<Dynamic> {
            check_unit(unit)?;
            Ok(c.host.systemd.diagnosis(unit).map_or(Dynamic::UNIT, Dynamic::from))
        });

    let c = ctx.clone();
    FuncRegistration::new("unit_wait_active")
        .with_comments([
            "/// Waits up to `timeout` seconds for `unit` to be active, with progress. If it fails or",
            "/// the time runs out, the step fails with the unit's status and its last journal lines.",
        ])
        .with_params_info(["unit: &str", "timeout: f64", "bool"])
        .register_into_engine(engine, move |unit: &str, timeout: rhai::FLOAT| wait_active(&c, unit, timeout));
    let c = ctx.clone();
    FuncRegistration::new("unit_wait_active")
        .with_comments([
            "/// Waits up to `timeout` seconds for `unit` to be active, with progress. If it fails or",
            "/// the time runs out, the step fails with the unit's status and its last journal lines.",
        ])
        .with_params_info(["unit: &str", "timeout: i64", "bool"])
        .register_into_engine(engine, move |unit: &str, timeout: rhai::INT| {
            wait_active(&c, unit, super::int_seconds(timeout))
        });
}
