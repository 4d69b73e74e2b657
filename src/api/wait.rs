//! Waiting on what another actor does: `wait_until` polls a script's check with progress, and
//! `now_stamp` names what a run makes at a point in time (kubeadm's dated backup folders).

use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, FuncRegistration, NativeCallContext};

use super::{Ctx, effect_error, script_error};
use crate::journal::Outcome;

type R<T> = Result<T, Box<EvalAltResult>>;

/// How often `wait_until` asks its check again.
const POLL: Duration = Duration::from_millis(500);

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    const DOC: &[&str] = &[
        "/// Waits up to `timeout` seconds, with progress under `label`, until `check` (a closure",
        "/// of no arguments, asked at once and then every half second) says it is done, and",
        "/// returns what it said. `check` returns `()`, `false` or a string while not done (the",
        "/// string says why, shown as progress when it changes: `kube-apiserver: restarted, not",
        "/// ready`); any other value ends the wait and is returned (`true`, the object waited",
        "/// for). It throws to stop the wait at once, when what it sees cannot get better by",
        "/// itself. If the time runs out, the step fails with `label`, the timeout and the last",
        "/// reason, unless the script catches it (to roll back, say). It waits in every mode: a",
        "/// check that asks the cluster or the runtime looks at `api_live()` first.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("wait_until")
        .with_comments(DOC)
        .with_params_info(["label: &str", "timeout: i64", "check: FnPtr", "Dynamic"])
        .register_into_engine(
            engine,
            move |context: NativeCallContext, label: &str, timeout: rhai::INT, check: FnPtr| {
                wait_until(&c, &context, label, super::int_seconds(timeout), &check)
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("wait_until")
        .with_comments(DOC)
        .with_params_info(["label: &str", "timeout: f64", "check: FnPtr", "Dynamic"])
        .register_into_engine(
            engine,
            move |context: NativeCallContext, label: &str, timeout: rhai::FLOAT, check: FnPtr| {
                wait_until(&c, &context, label, timeout, &check)
            },
        );

    let c = ctx.clone();
    FuncRegistration::new("now_stamp")
        .with_comments([
            "/// The time now, UTC, as kubeadm dates its backup folders: `2026-12-07-06-15-50`",
            "/// (year, month, day, hours, minutes, seconds). `KSCRIPT_TEST_NOW` fixes it, as it",
            "/// fixes the clock certificates are dated by.",
        ])
        .with_params_info(["String"])
        .register_into_engine(engine, move || -> R<String> {
            let now = time::OffsetDateTime::from(c.pki.context.now());
            Ok(format!(
                "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            ))
        });
}

fn wait_until(
    ctx: &Ctx,
    context: &NativeCallContext,
    label: &str,
    timeout: f64,
    check: &FnPtr,
) -> R<Dynamic> {
    const F: &str = "wait_until";
    ctx.require_step(F)?;
    let limit = super::timeout(&format!("{F}(): the timeout"), timeout)?;
    let start = Instant::now();
    let mut last = String::new();
    let result: R<Option<Dynamic>> = ctx.wait_with(label, |progress| {
        loop {
            let seen = check.call_within_context::<Dynamic>(context, ())?;
            if seen.is_string() {
                last = seen.to_string();
                progress.reason(&last);
            } else if !(seen.is_unit() || seen.as_bool() == Ok(false)) {
                return Ok(Some(seen));
            }
            if start.elapsed() >= limit {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(limit.saturating_sub(start.elapsed())));
        }
    });
    let waited = crate::host::seconds(Duration::from_secs(start.elapsed().as_secs()));
    match result {
        Ok(Some(done)) => {
            ctx.record("wait", label, Outcome::Ok, Some(format!("done after {waited}")), None);
            Ok(done)
        }
        Ok(None) => {
            ctx.record("wait", label, Outcome::Failed, Some(format!("not done after {waited}")), None);
            let why = if last.is_empty() { String::new() } else { format!("; last seen: {last}") };
            Err(effect_error(format!("{label}: not done within {}{why}", crate::host::seconds(limit))))
        }
        Err(e) => {
            ctx.record("wait", label, Outcome::Failed, Some("stopped by its check".into()), None);
            if let EvalAltResult::ErrorRuntime(v, _) = &*e
                && v.is_unit()
            {
                return Err(script_error(format!("{F}(): the check threw ()")));
            }
            Err(e)
        }
    }
}
