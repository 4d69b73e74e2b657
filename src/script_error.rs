//! A Rhai error as kscript reports it: classified (a script bug, an error the script threw on
//! purpose, a failed effect) and turned into an [`Error::Script`] that shows the source line,
//! its marker and the chain of calls that led there.

use std::collections::HashMap;

use miette::{NamedSource, SourceSpan};
use rhai::EvalAltResult;

use crate::api::{self, EffectFailure};
use crate::engine::Limits;
use crate::error::{Cause, ChainFrame, EXIT_FAILURE, EXIT_USAGE, Error, ScriptDiagnostic};

/// Why a script stopped: its cause, the exit code and the help line.
fn classify(leaf: &EvalAltResult, limits: &Limits) -> (Cause, u8, Option<String>) {
    use rhai::EvalAltResult as E;
    match leaf {
        E::ErrorRuntime(v, _) if v.is::<EffectFailure>() => (Cause::Effect, EXIT_FAILURE, None),
        E::ErrorRuntime(v, _) if api::is_misuse(v) => (
            Cause::Bug,
            EXIT_FAILURE,
            Some("`kscript api` describes every function scripts can call, its parameters and options".into()),
        ),
        E::ErrorRuntime(..) => (Cause::Thrown, EXIT_FAILURE, Some("the script threw this error".into())),
        E::ErrorTooManyOperations(_) => (
            Cause::Bug,
            EXIT_USAGE,
            Some(format!(
                "the script ran more than {} operations and was stopped: a loop that never ends?",
                limits.max_operations
            )),
        ),
        E::ErrorStackOverflow(_) => (
            Cause::Bug,
            EXIT_USAGE,
            Some(format!("calls nest deeper than {} levels: a recursion that never ends?", limits.max_call_levels)),
        ),
        E::ErrorDataTooLarge(..) => {
            (Cause::Bug, EXIT_USAGE, Some("a string, array or map grew past the script limits".into()))
        }
        E::ErrorFunctionNotFound(..) => (
            Cause::Bug,
            EXIT_USAGE,
            Some("`kscript api` lists every function scripts can call, with its parameters".into()),
        ),
        E::ErrorPropertyNotFound(..) => (
            Cause::Bug,
            EXIT_USAGE,
            Some("the map has no such key; configuration keys are those of defaults.yaml".into()),
        ),
        E::ErrorModuleNotFound(..) => (
            Cause::Bug,
            EXIT_USAGE,
            Some("modules are looked up in the script's stdlib/ folder, then among the built-in ones (`kscript scripts`)".into()),
        ),
        _ => (Cause::Bug, EXIT_USAGE, None),
    }
}

/// Byte span of a 1-based line and column in `text`, covering the word that starts there.
pub(crate) fn span_at(text: &str, pos: rhai::Position) -> Option<SourceSpan> {
    let line = pos.line()?;
    let col = pos.position().unwrap_or(1).max(1);
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let start = offset + l.char_indices().nth(col - 1).map_or(l.len(), |(b, _)| b);
            let rest = &text[start..];
            let len = rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map_or(rest.len(), |(b, _)| b)
                .max(1)
                .min(rest.len());
            return Some(SourceSpan::new(start.into(), len));
        }
        offset += l.len();
    }
    None
}

/// Turns a Rhai error into a diagnostic that shows the source line, the marker and the chain
/// of calls and imports that led to it. `context` (such as `step init/certs failed`) prefixes
/// the message. The frame is always there; [`Error::for_operator`] drops it where it is not
/// the operator's concern.
pub fn from_rhai(
    err: &EvalAltResult,
    main_source: &str,
    sources: &HashMap<String, String>,
    limits: &Limits,
    context: Option<&str>,
) -> Error {
    use rhai::EvalAltResult as E;
    let named = |src: &str| sources.get(src).map(|t| NamedSource::new(src, t.clone()));
    let mut frames = Vec::new();
    let mut current = main_source.to_string();
    let mut e = err;
    loop {
        match e {
            E::ErrorInFunctionCall(name, src, inner, pos) => {
                if !pos.is_none() {
                    let what = if name.starts_with("anon$") {
                        "in a closure".to_string()
                    } else {
                        format!("in call to `{name}`")
                    };
                    frames.push((current.clone(), *pos, what));
                }
                if !src.is_empty() {
                    current.clone_from(src);
                }
                e = inner;
            }
            E::ErrorInModule(name, inner, pos) => {
                if !pos.is_none() {
                    frames.push((current.clone(), *pos, format!("while loading module {name}")));
                }
                current.clone_from(name);
                e = inner;
            }
            _ => break,
        }
    }
    let (cause, exit_code, help) = classify(e, limits);
    let pos = e.position();
    let message = match e {
        E::ErrorRuntime(v, _) => {
            v.clone().try_cast::<EffectFailure>().map_or_else(|| v.to_string(), |f| f.message)
        }
        other => {
            let text = other.to_string();
            let suffix = format!(" ({pos})");
            text.strip_suffix(&suffix).map(str::to_string).unwrap_or(text)
        }
    };
    let message = match context {
        Some(c) => format!("{c}: {message}"),
        None => message,
    };
    let src = named(&current);
    let span = src.as_ref().and_then(|_| span_at(&sources[&current], pos));
    let location = pos
        .line()
        .map(|l| format!("{current}:{l}:{}", pos.position().unwrap_or(1)))
        .unwrap_or(current.clone());
    let chain = frames
        .into_iter()
        .rev()
        .filter_map(|(src, pos, what)| {
            let text = sources.get(&src)?;
            Some(ChainFrame {
                message: format!("{what}, at {src}:{}", pos.line().unwrap_or(0)),
                span: span_at(text, pos)?,
                src: NamedSource::new(&src, text.clone()),
            })
        })
        .collect();
    Error::Script(Box::new(ScriptDiagnostic {
        message,
        src: if span.is_some() { src } else { None },
        span,
        label: location,
        help,
        chain,
        exit_code,
        cause,
    }))
}
