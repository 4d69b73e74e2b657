//! Running host programs.

use std::rc::Rc;

use rhai::{Array, Engine, EvalAltResult, FuncRegistration, ImmutableString, Map};

use super::{Ctx, check_opts, effect_error, opt, script_error};
use crate::host::CommandSpec;
use crate::journal::Outcome;
use crate::report::EffectLine;

type R<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    const DOC: &[&str] = &[
        "/// Runs a host program: `argv` is the program and its arguments (no shell; use",
        "/// `[\"sh\", \"-c\", \"...\"]` for one). On a real run it is executed; with `--root` or",
        "/// `--dry-run` it is recorded, not executed, and the result has `executed: false`.",
        "///",
        "/// Options: `check` (default `true`: a non-zero exit fails the step), `env` (map of",
        "/// variables to add), `stdin` (text), `cwd`, `timeout` (seconds), `creates` (a node path:",
        "/// if it exists the command is not run, the way Ansible's `creates` works), `changes`",
        "/// (default `true`: whether running it counts as a change), `label` (text shown while",
        "/// waiting). Returns `#{ code, stdout, stderr, executed }`.",
    ];
    let c = ctx.clone();
    FuncRegistration::new("run")
        .with_comments(DOC)
        .with_params_info(["argv: Array", "options: Map", "Map"])
        .register_into_engine(engine, move |argv: Array, opts: Map| run(&c, argv, &opts));
    let c = ctx.clone();
    FuncRegistration::new("run")
        .with_comments(DOC)
        .with_params_info(["argv: Array", "Map"])
        .register_into_engine(engine, move |argv: Array| run(&c, argv, &Map::new()));
}

fn result_map(code: i64, stdout: String, stderr: String, executed: bool) -> Map {
    let mut m = Map::new();
    m.insert("code".into(), code.into());
    m.insert("stdout".into(), stdout.into());
    m.insert("stderr".into(), stderr.into());
    m.insert("executed".into(), executed.into());
    m
}

/// The command an argv and options describe.
fn spec_of(argv: Array, opts: &Map) -> R<CommandSpec> {
    check_opts(opts, &["check", "env", "stdin", "cwd", "timeout", "creates", "changes", "label"], "run")?;
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| a.try_cast::<ImmutableString>().map(|s| s.to_string()))
        .collect::<Option<_>>()
        .ok_or_else(|| script_error("run(): every item of argv must be a string"))?;
    if argv.is_empty() || argv[0].is_empty() {
        return Err(script_error("run(): argv must name a program"));
    }
    let env = opt::<Map>(opts, "env", "run")?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let timeout = opts
        .get("timeout")
        .filter(|v| !v.is_unit())
        .map(|v| super::timeout_option("run(): option `timeout`", v))
        .transpose()?;
    Ok(CommandSpec {
        argv,
        env,
        stdin: opt::<ImmutableString>(opts, "stdin", "run")?.map(|s| s.to_string()),
        cwd: opt::<ImmutableString>(opts, "cwd", "run")?.map(|s| s.to_string()),
        timeout,
    })
}

fn run(ctx: &Ctx, argv: Array, opts: &Map) -> R<Map> {
    ctx.require_step("run")?;
    let spec = spec_of(argv, opts)?;
    let check = opt::<bool>(opts, "check", "run")?.unwrap_or(true);
    let changes = opt::<bool>(opts, "changes", "run")?.unwrap_or(true);
    let shown = spec.display();
    ctx.attempt(&shown);

    if let Some(creates) = opt::<ImmutableString>(opts, "creates", "run")? {
        let r = ctx.root.resolve(&creates).map_err(|e| effect_error(e.to_string()))?;
        if ctx.host.files.state(&r.host).map_err(|e| effect_error(e.to_string()))?.is_some() {
            let detail = format!("not run: {} exists", r.node);
            let line = EffectLine::new('=', shown.clone(), detail.clone());
            ctx.record("run", &shown, Outcome::Ok, Some(detail), Some(line));
            return Ok(result_map(0, String::new(), String::new(), false));
        }
    }

    let label =
        opt::<ImmutableString>(opts, "label", "run")?.map_or_else(|| shown.clone(), |s| s.to_string());
    let out = ctx
        .wait(&label, || ctx.host.commands.run(&spec))
        .map_err(|e| effect_error(format!("`{shown}`: {e}")))?;

    if !out.executed {
        let line = EffectLine::new('!', shown.clone(), "recorded, not run");
        ctx.record("run", &shown, Outcome::Recorded, None, Some(line));
        return Ok(result_map(0, String::new(), String::new(), false));
    }
    let failed = out.timed_out || (check && out.code != 0);
    let outcome = if failed {
        Outcome::Failed
    } else if changes {
        Outcome::Changed
    } else {
        Outcome::Ok
    };
    let detail = if out.timed_out { "timed out".to_string() } else { format!("exit {}", out.code) };
    let line = EffectLine::new('!', shown.clone(), detail.clone());
    ctx.record("run", &shown, outcome, Some(detail), Some(line));
    if failed {
        let tail: Vec<&str> =
            out.stderr.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
        let why = if out.timed_out {
            format!("timed out after {:.0}s", spec.timeout.unwrap_or_default().as_secs_f64())
        } else {
            format!("exited with code {}", out.code)
        };
        let mut message = format!("`{shown}` {why}");
        if !tail.is_empty() {
            message.push_str(":\n");
            message.push_str(&tail.join("\n"));
        }
        return Err(effect_error(message));
    }
    Ok(result_map(out.code, out.stdout, out.stderr, true))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn timeout(v: rhai::Dynamic) -> R<Option<Duration>> {
        let mut opts = Map::new();
        opts.insert("timeout".into(), v);
        spec_of(vec!["true".into()], &opts).map(|s| s.timeout)
    }

    #[test]
    fn timeouts_too_long_for_a_duration_are_refused() {
        // Found by the runner's property test: `run(["/"], #{timeout: 1.0e300})` panicked.
        for secs in [1.0e300, 1.0e20, f64::INFINITY] {
            let err = timeout(secs.into()).unwrap_err().to_string();
            assert!(err.contains("option `timeout` is too long"), "{err}");
        }
        for secs in [0.0, -1.0, f64::NAN] {
            let err = timeout(secs.into()).unwrap_err().to_string();
            assert!(err.contains("must be a positive number"), "{err}");
        }
        assert_eq!(timeout(0.5_f64.into()).unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(
            timeout(i64::MAX.into()).unwrap(),
            Some(Duration::from_secs(i32::MAX.unsigned_abs().into()))
        );
    }
}
