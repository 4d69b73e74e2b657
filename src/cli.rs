//! Every command and flag, declared once; help, man page and completions come from here.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::error::{self, Error};
use crate::host::{Host, Mode};
use crate::report::Reporter;
use crate::root::NodeRoot;
use crate::runner::{self, Loaded, RunOptions, Script};
use crate::stages::Selection;
use crate::{eject, stock, suite, tree};

/// What `kscript --version` prints after the name: the version, the git commit and the target
/// the binary was built for (both recorded by build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KSCRIPT_COMMIT"),
    ", ",
    env!("KSCRIPT_TARGET"),
    ")"
);

/// Bootstrap Kubernetes nodes with scripts you can read and edit.
///
/// kscript runs Rhai scripts made of named stages (kubeadm's phases, as code): containerd,
/// kubelet, init or join, the pod network. Every effect goes through a confined node root and
/// is recorded in a journal. On a real host (as root) a run changes the host; with `--root DIR`
/// it renders the node into DIR instead, touching nothing outside it; with `--dry-run` it
/// changes nothing and prints what would change.
#[derive(Debug, Parser)]
#[command(name = "kscript", version = VERSION, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script's stages on this host, into a folder (--root), or as a dry run.
    ///
    /// Exit codes: 0 success; 1 a step failed; 2 a usage, configuration or script error (or,
    /// with --detailed-exitcode, something changed or would change).
    ///
    /// --output json prints one JSON object per line as the run goes, each with its type and
    /// schema ("kscript.run/v1", described by schemas/run.v1.json): start, stage, step (with
    /// its effects), message, warning, wait, recap, error (with its causes), and last, always,
    /// result {ok, changed, changes, failed_step, exit_code}. Nothing else goes to stdout, no
    /// spinner is drawn, and once the command line is read every failure is an error object,
    /// not text on stderr.
    #[allow(clippy::doc_markdown)] // help for people, not rustdoc's code spans
    Run(RunArgs),
    /// List a script's stages and steps with their descriptions.
    ///
    /// --output json prints one JSON document (schema "kscript.stages/v1", described by
    /// schemas/stages.v1.json): script, stages [{number, name, description, explicit, steps
    /// [{name, description}]}], handlers, warnings.
    #[allow(clippy::doc_markdown)]
    Stages(StagesArgs),
    /// List the stock scripts built into kscript.
    Scripts,
    /// Write the stock scripts and their stdlib into DIR, to fork them; or bring a fork up to
    /// this kscript's stock scripts (--upgrade).
    ///
    /// A script in DIR imports DIR/stdlib/NAME.rhai before the built-in module of that name,
    /// and reads DIR/stdlib/defaults.yaml for its configuration defaults. DIR/.kscript/ records
    /// the kscript version and each stock file as ejected (eject.yaml, stock/): keep it in
    /// version control with the fork, since --upgrade merges from it.
    ///
    /// --upgrade compares, per stock file, the fork's text, the text it was ejected from and
    /// this kscript's: unchanged on both sides, nothing; changed upstream only, the new text is
    /// taken as it is; changed in the fork only, kept; changed in both, a three-way merge, with
    /// conflict markers where the changes overlap (never a silent overwrite). New stock files
    /// are added; a fork's own files are never touched. Exit codes: 0 done; 1 conflicts were
    /// marked (or would be, with --dry-run); 2 a usage error.
    Eject {
        /// The folder to write into (created if missing), or the fork to upgrade.
        dir: PathBuf,
        /// Overwrite files that exist already.
        #[arg(long, conflicts_with = "upgrade")]
        force: bool,
        /// Bring the fork in DIR up to this kscript's stock scripts.
        #[arg(long)]
        upgrade: bool,
        /// With --upgrade: list what would be done, and change nothing.
        #[arg(long, requires = "upgrade")]
        dry_run: bool,
    },
    /// Run a fork's snapshot suite: render each case, compare it with its snapshot.
    ///
    /// The suite is kscript-tests.yaml (in PATH, or PATH itself): `set` (values for every
    /// case) and `cases`, each with `name`, `script` (a file beside the suite; a stock
    /// script as builtin:NAME, or by its name alone outside a fork), and optionally `config`
    /// (files), `set`, `patches` (a folder), `only`, `skip`,
    /// `discovery` (the name of a case rendering the control plane this node joins: its
    /// admin.conf and CA pin are passed as discovery.file.kubeConfigPath and
    /// discovery.bootstrapToken.caCertHashes) and `snapshot` (node paths to compare; default
    /// the whole tree). Unknown keys are errors.
    ///
    /// Each case is rendered by this binary into a temporary folder with a fixed clock
    /// (2026-01-01), cases in parallel, and normalised as kscript's own snapshot tests are:
    /// certificates summarised, keys, credentials and Secrets' values replaced, tokens and
    /// certificate keys as placeholders, file modes shown, then the API objects the render
    /// recorded. The text is compared with snapshots/NAME.snap beside the suite. A difference
    /// prints a unified diff per file; --accept writes the new snapshots (and removes those of
    /// no case). Exit codes: 0 all match (or were accepted); 1 a case differs, is new, or
    /// failed to render; 2 a usage error (a bad suite, an unknown case).
    #[allow(clippy::doc_markdown)] // help for people: names as they read, not rustdoc's code spans
    Test {
        /// The suite file, or the folder holding kscript-tests.yaml.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Write the snapshots that differ or are missing; remove those of no case.
        #[arg(long)]
        accept: bool,
        /// Only this case (and the case it discovers from); may be repeated.
        #[arg(long = "case", value_name = "NAME")]
        cases: Vec<String>,
        /// How many cases render at once (default: the number of CPUs).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
    },
    /// Find mistakes in a script or a fork without running it.
    ///
    /// Checks SCRIPT (a file, or a stock script's name) and the modules it imports, found as
    /// `run` finds them (SCRIPT's stdlib/ folder first, then the built-in stdlib); or every
    /// script of DIR (a folder made by `kscript eject`; default: the current folder) with its
    /// stdlib/*.rhai modules and stdlib/defaults.yaml. Nothing runs: each file is compiled and
    /// its syntax tree read.
    ///
    /// It finds: syntax errors, undefined variables and modules used without an import (what
    /// Rhai's compiler reports); imports that find no module; calls to functions that neither
    /// the script API (`kscript api`, with Rhai's own functions) nor the file defines, with the
    /// closest name; calls with a number of arguments no overload of the function takes
    /// (`x.f(a)` counts as `f(x, a)`); `alias::f(...)` when the module imported as `alias` has
    /// no public `f`; `Fn("name")` naming no function; stage names declared twice in a script,
    /// step names twice in a stage, names `--only` could not select; `cfg.` keys (`cfg.a.b`,
    /// `cfg["a"]`) that the defaults do not have, with the closest key. With a SCRIPT,
    /// `--only`/`--skip` NAME are checked against its stages and steps, listed as `kscript
    /// stages` lists them (with the default configuration). Then each script whose files show
    /// none of these has its top level evaluated as `kscript stages` evaluates it (against a dry
    /// run: no step runs, nothing changes), which finds what only the declared stages show:
    /// step names made from a table declared twice, an error at the top level.
    ///
    /// It cannot find what only running a step shows, since Rhai is dynamic: the function a
    /// pointer's `.call(...)` reaches and a method on a map's function property are not
    /// resolved; a variable called as `f(...)` is reported (Rhai calls pointers with `.call`);
    /// only `cfg` paths written out from a variable named `cfg` are checked, not a part of
    /// `cfg` passed on under another name; types are not checked.
    ///
    /// Each finding names its file, line and column, with the source line shown; then a count.
    /// Exit codes: 0 no problems; 1 problems found; 2 a usage error (no such file or folder).
    Check(CheckArgs),
    /// Print the script API reference: every function, its signature and documentation.
    Api {
        /// Instead, write `.d.rhai` definition files for editors into DIR.
        #[arg(long, value_name = "DIR")]
        definitions: Option<PathBuf>,
    },
    /// Print a node's files, each annotated with the stage that wrote it (from the journal).
    ///
    /// Files that another actor creates (containerd's socket, kubelet's certificates) are
    /// listed as expected. A rendered folder is walked whole; on a real host (`kscript tree /`)
    /// only the paths the journal names are shown.
    ///
    /// --output json prints one JSON document (schema "kscript.tree/v1", described by
    /// schemas/tree.v1.json): root, files [{path, kind, mode, link, stage {number, name},
    /// expected_by}].
    #[allow(clippy::doc_markdown)]
    Tree {
        /// The node root: a folder rendered with --root, or / for this host.
        dir: PathBuf,
        /// `text` or `json` (schema kscript.tree/v1).
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Show where this node stands: each component's state, the stage reached, what is missing.
    ///
    /// One row per component of the script's stage table (`node_status(...)`, built by
    /// stdlib/status.rhai): systemd services from systemd, static Pods from the container
    /// runtime, Deployments and DaemonSets (and the Node) from the API server, the three asked
    /// in parallel, each request within `--timeout` (5 s). States: not installed; installed,
    /// stopped; starting; running; crash-looping (with the file it misses, else its last log line);
    /// failed; exited (exit code, last log line); not started (why: its image not present, no
    /// container yet); ready or not ready (ready/desired replicas); unknown (its source not
    /// reachable, named in the row: the rest of the table is still shown); not readable (the
    /// kubeconfig may not read it, as a worker's kubelet.conf may not read DaemonSets);
    /// n/a (rendered).
    ///
    /// Then the verdict: "stage N of M complete", and what stage N+1 must still produce: files
    /// of the stage map and of the journal (written or expected by the script), services not
    /// running, objects not ready, the Node not Ready. On this host a stage is complete when its
    /// files exist and its components are in the state it requires; in a rendered folder
    /// (--root), when the files kscript writes exist and the journal shows it ran.
    ///
    /// --output json prints the same facts as one JSON document: schema ("kscript.status/v1";
    /// it changes only when a field changes meaning or goes), script, role, root, live, node
    /// {name, ready_from_stage, state, reason, message}, components [{name, runs,
    /// installed_from_stage, running_from_stage, state, reason, detail, restarts, ready,
    /// desired}], stages [{number, name, complete, missing [{kind: file (path, role, by) |
    /// not-run | component (name, state, wants) | node (state)}]}], reached, total, done.
    /// A component's state is one of not-installed, stopped, starting, running, crash-looping,
    /// failed, exited, not-started, ready, not-ready, unknown, unreadable, not-measured; the
    /// Node's one of ready, not-ready, not-registered, unknown, not-measured.
    ///
    /// Exit codes: 0 the node has reached the script's last stage; 1 it has not; 2 a usage
    /// error (no such folder, a folder that is not a node, an unknown script, a bad table).
    #[allow(clippy::doc_markdown)] // help for people: names as they read, not rustdoc's code spans
    Status(StatusArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print kscript's man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// A script file, or the name of a stock script (see `kscript scripts`).
    pub script: String,
    /// A YAML configuration file overriding the defaults; may be repeated, later files win.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Override one setting: a dotted key and a value typed like its default
    /// (`--set networking.podSubnet=10.244.0.0/16`); may be repeated.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub script: ScriptArgs,
    /// Render the node into DIR instead of changing this host: files go under DIR, host
    /// commands are recorded, not run. DIR is created if missing.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Run only this stage, or this step (`STAGE/STEP`, or a group such as `init/certs`);
    /// may be repeated.
    #[arg(long, value_name = "STAGE|STAGE/STEP")]
    pub only: Vec<String>,
    /// Skip this stage or step; may be repeated.
    #[arg(long, value_name = "STAGE|STAGE/STEP")]
    pub skip: Vec<String>,
    /// Start at this stage or step; the ones before it do not run.
    #[arg(long, value_name = "STAGE|STAGE/STEP")]
    pub from: Option<String>,
    /// Change nothing; print each effect that would happen: `+` create, `~` change,
    /// `=` unchanged, `-` remove, `!` a command. Preflight checks that fail only warn (on a bare
    /// node the stages before them are planned, not done).
    #[arg(long)]
    pub dry_run: bool,
    /// Print a unified diff of each changed text file (never of keys or credentials).
    #[arg(long)]
    pub diff: bool,
    /// Print every effect under its step, also when not in a dry run; and with an error the
    /// script threw or an effect that failed, where in the script it happened.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Exit with 2 when something changed or would change (0 when nothing did).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// A folder of kubeadm-style patches (`target[suffix][+patchtype].{yaml,json}`) for the
    /// static pods and the kubelet configuration; sets `patches.directory`.
    #[arg(long, value_name = "DIR")]
    pub patches: Option<PathBuf>,
    /// Preflight checks whose errors only warn (kubeadm's names, comma-separated, or `all`);
    /// sets `nodeRegistration.ignorePreflightErrors`.
    #[arg(long, value_name = "NAME,...|all", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// Confirm a destructive script: sets `reset.force=true`, without which reset.rhai
    /// refuses to change anything (a --dry-run needs no confirmation).
    #[arg(long)]
    pub force: bool,
    /// Append the journal to FILE (a host path) instead of
    /// /var/lib/kscript/journal.jsonl under the node root.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// `text` (for people) or `json` (JSON lines, schema kscript.run/v1).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The script that builds this node, or the name of a stock script; default: detected
    /// from the node (its journal, then its files).
    pub script: Option<String>,
    /// A folder rendered with `kscript run --root DIR`: report what its files and journal
    /// say; nothing is measured live.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// A YAML configuration file overriding the defaults; may be repeated, later files win.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Override one setting (`--set nodeRegistration.name=node-1`); may be repeated.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `text` (a table) or `json` (schema kscript.status/v1).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// How long each request to the container runtime or the API server may take; a source
    /// that does not answer in time is named in its rows.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = timeout_seconds)]
    pub timeout: std::time::Duration,
}

/// `--timeout SECONDS`: a positive number of seconds (`0.5`, `5`).
fn timeout_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 3600.0 => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!("`{text}` is not a number of seconds between 0 and 3600")),
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A script (a file, or a stock script's name) or a fork's folder; default: the current folder.
    #[arg(value_name = "SCRIPT|DIR")]
    pub target: Option<String>,
    /// A stage or step name a run would be given with --only: it must select something.
    #[arg(long, value_name = "STAGE|STAGE/STEP")]
    pub only: Vec<String>,
    /// A stage or step name a run would be given with --skip: it must select something.
    #[arg(long, value_name = "STAGE|STAGE/STEP")]
    pub skip: Vec<String>,
    /// A configuration file for evaluating the scripts' top level (a fork whose top level
    /// needs site settings); may be repeated.
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// A setting for evaluating the scripts' top level; may be repeated.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StagesArgs {
    #[command(flatten)]
    pub script: ScriptArgs,
    /// `text` or `json` (schema kscript.stages/v1).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
}

/// Parses the command line, runs the command, prints any error; returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { error::EXIT_USAGE } else { 0 };
        }
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let _ = write!(std::io::stderr(), "{}", error::render(&e, color));
            e.exit_code()
        }
    }
}

/// `kscript eject`: a new fork with its starter suite, or with `upgrade` the fork brought up
/// to this kscript. What to print, and the exit code.
fn eject_command(
    dir: &std::path::Path,
    force: bool,
    upgrade: bool,
    dry_run: bool,
) -> Result<(String, u8), Error> {
    if upgrade {
        let plan = eject::plan(dir)?;
        if !dry_run {
            eject::apply(dir, &plan)?;
        }
        let code = if plan.conflicts() > 0 { error::EXIT_FAILURE } else { 0 };
        return Ok((eject::describe(&plan, dry_run), code));
    }
    let mut text = String::new();
    for p in eject::eject(dir, force)? {
        text.push_str(&format!("wrote {}\n", p.display()));
    }
    if let Some(p) = eject::starter_suite(dir)? {
        text.push_str(&format!(
            "wrote {} and its snapshots: run `kscript test {}`\n",
            p.display(),
            dir.display()
        ));
    }
    Ok((text, 0))
}

/// The run a command line asks for: the flags that are settings (`--patches`,
/// `--ignore-preflight-errors`, `--force`) become `--set` values before the user's own.
fn run_options(a: RunArgs) -> Result<RunOptions, Error> {
    Ok(RunOptions {
        script: a.script.script,
        root: a.root,
        config: a.script.config,
        set: patches_setting(a.patches.as_deref())?
            .into_iter()
            .chain((!a.ignore_preflight_errors.is_empty()).then(|| {
                format!("nodeRegistration.ignorePreflightErrors=[{}]", a.ignore_preflight_errors.join(", "))
            }))
            .chain(a.force.then(|| "reset.force=true".to_string()))
            .chain(a.script.set)
            .collect(),
        selection: Selection { only: a.only, skip: a.skip, from: a.from },
        dry_run: a.dry_run,
        diff: a.diff,
        verbose: a.verbose,
        detailed_exitcode: a.detailed_exitcode,
        json: a.output == "json",
        journal: a.journal,
    })
}

fn dispatch(command: Command) -> Result<u8, Error> {
    // Not locked for the whole command: a run in JSON writes from the threads watching its waits.
    let mut out = std::io::stdout();
    let print = |out: &mut dyn Write, text: &str| {
        let _ = out.write_all(text.as_bytes());
    };
    match command {
        Command::Run(a) => {
            let json = a.output == "json";
            match run_options(a) {
                Ok(opts) => runner::run(&opts),
                // In JSON every failure after the command line is parsed is in the stream.
                Err(e) if json => Ok(runner::json_failure(&e)),
                Err(e) => Err(e),
            }
        }
        Command::Stages(a) => {
            let script = Script::load(&a.script.script)?;
            let (cfg, warnings) = script.config(&a.script.config, &a.script.set)?;
            if a.output == "json" {
                let loaded = inert(script, &cfg)?;
                let name = loaded.script.name.trim_start_matches("builtin:");
                let builtin = loaded.script.dir.is_none();
                print(&mut out, &crate::stages::json(&loaded.model(), name, builtin, &warnings));
                return Ok(0);
            }
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let loaded = inert(script, &cfg)?;
            print(&mut out, &stages_listing(&loaded));
            Ok(0)
        }
        Command::Status(a) => crate::status::run(&crate::status::Options {
            script: a.script,
            root: a.root,
            config: a.config,
            set: a.set,
            json: a.output == "json",
            timeout: a.timeout,
        }),
        Command::Check(a) => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let opts = crate::check::Options {
                target: a.target,
                only: a.only,
                skip: a.skip,
                config: a.config,
                set: a.set,
            };
            crate::check::run(&opts, color, &mut out)
        }
        Command::Scripts => {
            for e in stock::SCRIPTS {
                print(&mut out, &format!("{:<20} {}\n", e.name, stock::summary(e)));
            }
            Ok(0)
        }
        Command::Eject { dir, force, upgrade, dry_run } => {
            let (text, code) = eject_command(&dir, force, upgrade, dry_run)?;
            print(&mut out, &text);
            Ok(code)
        }
        Command::Test { path, accept, cases, jobs } => {
            let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
            let outcome = suite::run(&suite::Options { path, accept, cases, jobs })?;
            print(&mut out, &outcome.describe());
            Ok(outcome.exit_code())
        }
        Command::Api { definitions } => {
            let script = Script { name: "api".into(), text: String::new(), dir: None };
            let (cfg, _) = script.config(&[], &[])?;
            let loaded = inert(script, &cfg)?;
            match definitions {
                Some(dir) => {
                    loaded.engine.definitions().write_to_dir(&dir).map_err(|e| {
                        Error::io(format!("cannot write definitions into {}", dir.display()), e)
                    })?;
                    print(&mut out, &format!("wrote definition files into {}\n", dir.display()));
                }
                None => print(&mut out, &crate::apiref::reference(&loaded.engine)),
            }
            Ok(0)
        }
        Command::Tree { dir, output } => {
            let text = if output == "json" { tree::json(&dir)? } else { tree::render(&dir)? };
            print(&mut out, &text);
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kscript", &mut out);
            Ok(0)
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            man.render(&mut out).map_err(|e| Error::io("cannot write the man page", e))?;
            Ok(0)
        }
    }
}

/// `--patches DIR` as the `patches.directory` setting, with DIR made absolute.
fn patches_setting(dir: Option<&std::path::Path>) -> Result<Option<String>, Error> {
    let Some(dir) = dir else { return Ok(None) };
    if !dir.is_dir() {
        return Err(Error::Usage { message: format!("--patches {}: no such folder", dir.display()) });
    }
    let abs =
        std::path::absolute(dir).map_err(|e| Error::io(format!("cannot resolve {}", dir.display()), e))?;
    Ok(Some(format!("patches.directory={}", abs.display())))
}

/// A script loaded to be inspected, not run: a dry run against `/` whose steps never run.
fn inert(script: Script, cfg: &crate::config::Config) -> Result<Loaded, Error> {
    let root = NodeRoot::new(std::path::Path::new("/")).map_err(|e| Error::io("cannot open /", e))?;
    Loaded::new(script, cfg, root, Host::for_mode(Mode::DryRun), Reporter::silent())
}

/// The text of `kscript stages`.
pub fn stages_listing(loaded: &Loaded) -> String {
    let model = loaded.model();
    let mut out = format!("{}\n", loaded.script.name.trim_start_matches("builtin:"));
    let width = model
        .stages
        .iter()
        .flat_map(|s| s.steps.iter().map(move |p| p.name.len() + 4).chain([s.name.len()]))
        .max()
        .unwrap_or(0);
    for (i, stage) in model.stages.iter().enumerate() {
        let note = if stage.explicit { " (runs only when named with --only or --from)" } else { "" };
        out.push_str(&format!("\n{}. {:<width$}  {}{note}\n", i + 1, stage.name, stage.description));
        for step in &stage.steps {
            out.push_str(&format!("     {:<width$}{}\n", step.name, step.description));
        }
    }
    if !model.handlers.is_empty() {
        out.push_str(
            "\nhandlers (run at the end of a stage when notified by a step that changed something):\n",
        );
        for h in &model.handlers {
            out.push_str(&format!("   {}\n", h.name));
        }
    }
    out
}
