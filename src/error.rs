//! Every error kscript reports, with its message and exit code in one place.
//!
//! Plain data, depending on no other module of kscript: the layers above build these (a Rhai
//! error becomes a [`ScriptDiagnostic`] in `script_error`).

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

    /// This error as an operator sees it without `-v`: see [`ScriptDiagnostic::for_operator`].
    #[must_use]
    pub fn for_operator(self) -> Self {
        match self {
            Error::Script(d) => Error::Script(Box::new(d.for_operator())),
            other => other,
        }
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

/// Why a script stopped: decides what an operator is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A mistake in the script: it does not compile, calls what does not exist, passes a
    /// function a wrong argument, runs into a limit. Shown with its source frame.
    Bug,
    /// The script threw it on purpose (`throw "..."`): a preflight failure, a refused
    /// configuration. A message for the operator; the frame only with `-v`.
    Thrown,
    /// An effect failed (a command, a file, the API). A message for the operator; the
    /// frame only with `-v`.
    Effect,
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
    #[diagnostic(skip)]
    pub cause: Cause,
}

impl ScriptDiagnostic {
    /// As an operator sees it: an error thrown on purpose or a failed effect is its message
    /// alone (the message carries its own advice); a script bug keeps its frame and help.
    #[must_use]
    pub fn for_operator(mut self) -> Self {
        if self.cause != Cause::Bug {
            self.src = None;
            self.span = None;
            self.help = None;
            self.chain.clear();
        }
        self
    }
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
    // Lines wrap at spaces only, never inside a word, at its hyphens or after its commas: a path, a process list
    // (`users:(("cli-1",pid=1,fd=3),...)`) or a flag name split in two could not be copied or
    // searched for.
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_break_words(false)
        .with_word_separator(textwrap::WordSeparator::AsciiSpace)
        .with_word_splitter(textwrap::WordSplitter::NoHyphenation);
    let mut out = String::new();
    if handler.render_report(&mut out, err).is_err() {
        out = format!("error: {err}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_are_never_split_across_lines() {
        let users = format!(
            "users:(({}))",
            (1..=6).map(|n| format!("\"cli-{n}\",pid={n}00{n},fd=3")).collect::<Vec<_>>().join("),(")
        );
        assert!(users.len() > 100, "the word must be longer than a line");
        let err = Error::Usage { message: format!("port 6443 is in use by {users}: stop that process") };
        let text = render(&err, false);
        assert!(text.contains(&users), "split across lines:\n{text}");
    }
}
