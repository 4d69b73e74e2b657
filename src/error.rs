//! Every error kscript reports, with its message and exit code in one place.

use std::io;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// Exit code of a run that failed while applying (an effect failed, or the script threw).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage or script error (bad flags, bad configuration, a script that does not
/// compile or calls what does not exist).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    /// The command line asked for something that cannot be done.
    #[error("{message}")]
    #[diagnostic(code(kscript::usage))]
    Usage { message: String },

    /// A configuration file or `--set` value is wrong; points at the key.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(Box<ConfigError>),

    /// A script error or a failed step, rendered with its source and call chain.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Script(Box<ScriptDiagnostic>),

    /// Reading or writing kscript's own files failed.
    #[error("{context}: {source}")]
    #[diagnostic(code(kscript::io))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage { .. } | Error::Config(_) => EXIT_USAGE,
            Error::Script(d) => d.exit_code,
            Error::Io { .. } => EXIT_FAILURE,
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// A configuration error at a key of a YAML file.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(kscript::config))]
pub struct ConfigError {
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("here")]
    pub span: SourceSpan,
    #[help]
    pub help: Option<String>,
}

/// A script error at a place in a source file, with the places that led there.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ScriptDiagnostic {
    pub message: String,
    #[source_code]
    pub src: Option<NamedSource<String>>,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    pub label: String,
    #[help]
    pub help: Option<String>,
    /// The call chain, innermost caller first.
    #[related]
    pub chain: Vec<ChainFrame>,
    #[diagnostic(skip)]
    pub exit_code: u8,
}

/// One caller in a script error's chain.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(severity(Advice))]
pub struct ChainFrame {
    pub message: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("here")]
    pub span: SourceSpan,
}

/// Renders an error for a person: source lines, markers and help; colour only on a terminal.
pub fn render(err: &dyn Diagnostic, color: bool) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, err).is_err() {
        out = format!("error: {err}\n");
    }
    out
}

/// Why a script stopped, classified for the exit code and the help line.
fn classify(leaf: &rhai::EvalAltResult, limits: &crate::engine::Limits) -> (u8, Option<String>) {
    use rhai::EvalAltResult as E;
    match leaf {
        E::ErrorRuntime(v, _) if v.is::<crate::api::EffectFailure>() => (EXIT_FAILURE, None),
        E::ErrorRuntime(..) => (EXIT_FAILURE, Some("the script threw this error".into())),
        E::ErrorTooManyOperations(_) => (
            EXIT_USAGE,
            Some(format!(
                "the script ran more than {} operations and was stopped: a loop that never ends?",
                limits.max_operations
            )),
        ),
        E::ErrorStackOverflow(_) => (
            EXIT_USAGE,
            Some(format!("calls nest deeper than {} levels: a recursion that never ends?", limits.max_call_levels)),
        ),
        E::ErrorDataTooLarge(..) => (EXIT_USAGE, Some("a string, array or map grew past the script limits".into())),
        E::ErrorFunctionNotFound(..) => (
            EXIT_USAGE,
            Some("`kscript api` lists every function scripts can call, with its parameters".into()),
        ),
        E::ErrorPropertyNotFound(..) => (
            EXIT_USAGE,
            Some("the map has no such key; configuration keys are those of defaults.yaml".into()),
        ),
        E::ErrorModuleNotFound(..) => (
            EXIT_USAGE,
            Some("modules are looked up in the script's stdlib/ folder, then among the built-in ones (`kscript scripts`)".into()),
        ),
        _ => (EXIT_USAGE, None),
    }
}

/// Byte span of a 1-based line and column in `text`, covering the word that starts there.
fn span_at(text: &str, pos: rhai::Position) -> Option<SourceSpan> {
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
/// the message.
pub fn from_rhai(
    err: &rhai::EvalAltResult,
    main_source: &str,
    sources: &std::collections::HashMap<String, String>,
    limits: &crate::engine::Limits,
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
    let (exit_code, help) = classify(e, limits);
    let pos = e.position();
    let message = match e {
        E::ErrorRuntime(v, _) => {
            v.clone().try_cast::<crate::api::EffectFailure>().map_or_else(|| v.to_string(), |f| f.message)
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
    }))
}
