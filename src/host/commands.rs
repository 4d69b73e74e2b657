//! Host commands: executed for real, or recorded.

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A host program to run.
#[derive(Debug, Clone, Default)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<String>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
}

impl CommandSpec {
    /// The command line as a person would type it (arguments with spaces quoted).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                    format!("'{}'", a.replace('\'', r"'\''"))
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a command did.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// The exit code; `-1` when it was killed by a signal or timed out.
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// False when it was only recorded.
    pub executed: bool,
    pub timed_out: bool,
}

/// Runs host programs.
pub trait Commands {
    fn run(&self, spec: &CommandSpec) -> io::Result<CommandOutput>;
}

/// Runs commands on this host.
#[derive(Debug, Default)]
pub struct RealCommands;

impl Commands for RealCommands {
    fn run(&self, spec: &CommandSpec) -> io::Result<CommandOutput> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let mut child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start `{program}`: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (spec.stdin.clone(), child.stdin.take()) {
            thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let out_t = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let err_t = thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if spec.timeout.is_some_and(|t| start.elapsed() >= t) {
                let _ = child.kill();
                timed_out = true;
                break child.wait()?;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
        Ok(CommandOutput {
            code: status.code().map_or(-1, i64::from),
            stdout,
            stderr,
            executed: true,
            timed_out,
        })
    }
}

/// Records commands without running them (rendering, dry runs).
#[derive(Debug, Default)]
pub struct RecordingCommands;

impl Commands for RecordingCommands {
    fn run(&self, spec: &CommandSpec) -> io::Result<CommandOutput> {
        if spec.argv.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        }
        Ok(CommandOutput::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_commands_capture_output_and_codes() {
        let spec = CommandSpec {
            argv: vec!["sh".into(), "-c".into(), "read x; echo out $x; echo err >&2; exit 3".into()],
            stdin: Some("in\n".into()),
            ..Default::default()
        };
        let out = RealCommands.run(&spec).unwrap();
        assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (3, "out in\n", "err\n"));
        assert!(out.executed);
    }

    #[test]
    fn real_commands_time_out() {
        let spec = CommandSpec {
            argv: vec!["sleep".into(), "5".into()],
            timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let out = RealCommands.run(&spec).unwrap();
        assert!(out.timed_out);
        assert!(
            RealCommands
                .run(&CommandSpec { argv: vec!["/no/such/program".into()], ..Default::default() })
                .is_err()
        );
    }

    #[test]
    fn recording_runs_nothing() {
        let spec = CommandSpec { argv: vec!["false".into()], ..Default::default() };
        let out = RecordingCommands.run(&spec).unwrap();
        assert!(!out.executed);
        assert_eq!(spec.display(), "false");
        let spec = CommandSpec { argv: vec!["echo".into(), "a b".into()], ..Default::default() };
        assert_eq!(spec.display(), "echo 'a b'");
    }
}
