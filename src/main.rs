use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug must not reach the user as a Rust backtrace: say what happened and where to report.
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!(
            "kscript: internal error{place}: {what}\nThis is a bug in kscript; please report it with the command you ran."
        );
    }));
    match std::panic::catch_unwind(kscript::cli::main) {
        Ok(code) => ExitCode::from(code),
        Err(_) => ExitCode::from(101),
    }
}
