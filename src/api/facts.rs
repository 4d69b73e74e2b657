//! Facts about the machine: host name and address, what preflight reads, who holds a port,
//! and what kscript's journal says it wrote.

use std::rc::Rc;

use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, Map};

use super::{Ctx, effect_error};

pub fn register(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("hostname")
        .with_comments(["/// This machine's host name, lower-cased as kubeadm uses it for the node name."])
        .with_params_info(["String"])
        .register_into_engine(engine, move || -> Result<String, Box<EvalAltResult>> {
            c.host
                .facts
                .hostname()
                .map(|h| h.to_lowercase())
                .map_err(|e| effect_error(format!("cannot read the host name: {e}")))
        });
    let c = ctx.clone();
    FuncRegistration::new("default_address")
        .with_comments([
            "/// The IPv4 address of the interface that holds this machine's default route (failing",
            "/// that, the first address that is not loopback), as kubeadm picks the advertise",
            "/// address; `()` when there is none.",
        ])
        .with_params_info(["Dynamic"])
        .register_into_engine(engine, move || -> Result<Dynamic, Box<EvalAltResult>> {
            let addr = c
                .host
                .facts
                .default_address()
                .map_err(|e| effect_error(format!("cannot list addresses: {e}")))?;
            Ok(addr.map_or(Dynamic::UNIT, |a| a.to_string().into()))
        });

    let c = ctx.clone();
    FuncRegistration::new("host_probe")
        .with_comments([
            "/// What preflight checks read of the host a real run changes: `#{ cpus, mem_mib,",
            "/// swap_active, kernel, cgroup_v2, cgroup_controllers, is_root }`; `()` when rendering",
            "/// into a folder (the host is not the node then).",
        ])
        .with_params_info(["Dynamic"])
        .register_into_engine(engine, move || -> Result<Dynamic, Box<EvalAltResult>> {
            let probe =
                c.host.facts.probe().map_err(|e| effect_error(format!("cannot read the host: {e}")))?;
            Ok(probe.map_or(Dynamic::UNIT, |p| {
                let mut m = Map::new();
                m.insert("cpus".into(), i64::try_from(p.cpus).unwrap_or(i64::MAX).into());
                m.insert("mem_mib".into(), i64::try_from(p.mem_mib).unwrap_or(i64::MAX).into());
                m.insert("swap_active".into(), p.swap_active.into());
                m.insert("kernel".into(), p.kernel.into());
                m.insert("cgroup_v2".into(), p.cgroup_v2.into());
                m.insert(
                    "cgroup_controllers".into(),
                    p.cgroup_controllers.into_iter().map(Dynamic::from).collect::<rhai::Array>().into(),
                );
                m.insert("is_root".into(), p.is_root.into());
                m.into()
            }))
        });
    let c = ctx.clone();
    FuncRegistration::new("run_mode")
        .with_comments([
            "/// How this run treats the node: `\"apply\"` (a real run, changing this host),",
            "/// `\"render\"` (`--root DIR`: files under DIR, host commands recorded) or `\"dry-run\"`",
            "/// (nothing changes). For what a script says or asks, never to change what an effect",
            "/// does: every effect already does the right thing in each mode.",
        ])
        .with_params_info(["String"])
        .register_into_engine(engine, move || -> String {
            match c.host.mode {
                crate::host::Mode::Apply => "apply",
                crate::host::Mode::Render => "render",
                crate::host::Mode::DryRun => "dry-run",
            }
            .to_string()
        });
    register_ports(engine, ctx);
    register_journal(engine, ctx);
}

/// `port_free` and `port_use`: whether a port is in use, and by whom.
fn register_ports(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("port_free")
        .with_comments([
            "/// Whether nothing listens on TCP `port` of this host; `()` when rendering into a folder.",
        ])
        .with_params_info(["port: i64", "Dynamic"])
        .register_into_engine(engine, move |port: i64| -> Result<Dynamic, Box<EvalAltResult>> {
            let port =
                u16::try_from(port).map_err(|_| super::script_error(format!("{port} is not a port")))?;
            let free = c
                .host
                .facts
                .port_free(port)
                .map_err(|e| effect_error(format!("cannot probe port {port}: {e}")))?;
            Ok(free.map_or(Dynamic::UNIT, Dynamic::from))
        });
    let c = ctx.clone();
    FuncRegistration::new("port_use")
        .with_comments([
            "/// Who holds TCP `port` of this host, as `ss -ltnp` shows it: `()` when it is free (or",
            "/// when rendering into a folder), else `#{ port, users, holders }`: `holders` the",
            "/// processes with a listening socket on it, each `#{ pid, fd, name, command }` (`name`",
            "/// as ss shows it, the kernel's 15-byte comm: `kube-controller`; `command` the base name",
            "/// of argv[0] in full: `kube-controller-manager`, or `()`), and `users` ss's text for",
            "/// them (`users:((\"nc\",pid=1234,fd=3))`). `holders` is empty and `users` is `()`",
            "/// when the port is in use by a process this run cannot see (another PID namespace).",
        ])
        .with_params_info(["port: i64", "Dynamic"])
        .register_into_engine(engine, move |port: i64| -> Result<Dynamic, Box<EvalAltResult>> {
            let port =
                u16::try_from(port).map_err(|_| super::script_error(format!("{port} is not a port")))?;
            let used = c
                .host
                .facts
                .port_use(port)
                .map_err(|e| effect_error(format!("cannot find who holds port {port}: {e}")))?;
            let Some(used) = used else {
                return Ok(Dynamic::UNIT);
            };
            let mut m = Map::new();
            m.insert("port".into(), i64::from(used.port).into());
            m.insert("users".into(), used.ss_users().map_or(Dynamic::UNIT, Dynamic::from));
            let holders: rhai::Array = used
                .holders
                .into_iter()
                .map(|h| {
                    let mut h2 = Map::new();
                    h2.insert("pid".into(), i64::from(h.pid).into());
                    h2.insert("fd".into(), i64::from(h.fd).into());
                    h2.insert("name".into(), h.name.into());
                    h2.insert("command".into(), h.command.map_or(Dynamic::UNIT, Dynamic::from));
                    h2.into()
                })
                .collect();
            m.insert("holders".into(), holders.into());
            Ok(m.into())
        });
}

/// The entries of this node's journal file from earlier runs (the `--journal` file when one
/// is named), as [`crate::journal::read`] trusts them.
fn earlier_entries(c: &Ctx) -> Result<Vec<crate::journal::Entry>, Box<EvalAltResult>> {
    let journal = match c.journal_file.borrow().clone() {
        Some(file) => file,
        None => c.root.resolve(crate::journal::JOURNAL_PATH).map_err(|e| effect_error(e.to_string()))?.host,
    };
    crate::journal::read(&journal).map_err(|e| effect_error(format!("cannot read the journal: {e}")))
}

/// `kscript_wrote`, `journal_entries` and `journal_paths`: what the journal says kscript did
/// on this node.
fn register_journal(engine: &mut Engine, ctx: &Rc<Ctx>) {
    let c = ctx.clone();
    FuncRegistration::new("kscript_wrote")
        .with_comments([
            "/// Whether kscript's journal on this node records writing node path `path`, or",
            "/// expecting another actor to write it as part of kscript's run (a worker's",
            "/// /etc/kubernetes/kubelet.conf, which the kubelet writes after TLS bootstrap), and no",
            "/// removal of it (a reset) since: so a file there is kscript's own, not another tool's.",
        ])
        .with_params_info(["path: &str", "bool"])
        .register_into_engine(engine, move |path: &str| -> Result<bool, Box<EvalAltResult>> {
            if c.journal.borrow().made(path) {
                return Ok(true);
            }
            // The journal file is read once per run, not once per question.
            if c.earlier_made.get().is_none() {
                let records = crate::journal::paths(&earlier_entries(&c)?);
                let _ = c.earlier_made.set(records.into_iter().map(|r| r.path).collect());
            }
            Ok(c.earlier_made.get().is_some_and(|w| w.contains(path)))
        });

    let c = ctx.clone();
    FuncRegistration::new("journal_entries")
        .with_comments([
            "/// The entries of kscript's journal on this node that can be trusted (see the journal's",
            "/// durability note), earlier runs' first, then this run's so far: each `#{ stage,",
            "/// stage_index, step, action, target, outcome, detail }` (`outcome` as the run prints it:",
            "/// `ok`, `changed`, `recorded`, ...; `detail` or `()`). `[]` without a journal.",
        ])
        .with_params_info(["Array"])
        .register_into_engine(engine, move || -> Result<rhai::Array, Box<EvalAltResult>> {
            let mut entries = earlier_entries(&c)?;
            entries.extend(c.journal.borrow().entries().iter().cloned());
            Ok(entries
                .into_iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("stage".into(), e.stage.into());
                    m.insert("stage_index".into(), i64::try_from(e.stage_index).unwrap_or(i64::MAX).into());
                    m.insert("step".into(), e.step.into());
                    m.insert("action".into(), e.action.into());
                    m.insert("target".into(), e.target.into());
                    m.insert("outcome".into(), e.outcome.to_string().into());
                    m.insert("detail".into(), e.detail.map_or(Dynamic::UNIT, Dynamic::from));
                    Dynamic::from_map(m)
                })
                .collect())
        });

    let c = ctx.clone();
    FuncRegistration::new("journal_paths")
        .with_comments([
            "/// Every node path kscript's journal on this node names, with what kscript did to it,",
            "/// in the order first named: each `#{ path, kind, state, stage, stage_index, step, by }`.",
            "/// `kind` is `\"file\"`, `\"dir\"`, `\"symlink\"` or `\"expected\"`; `state` is",
            "/// `\"created\"` (nothing was there: kscript made it), `\"changed\"` (kscript changed what",
            "/// was there), `\"found\"` (it was there as wanted and kscript left it alone, such as a CA",
            "/// placed before init) or `\"expected\"` (another actor makes it during kscript's run;",
            "/// `by` names it, else `()`); `stage` and `step` are those of its first entry. A removal",
            "/// (`remove`, a reset) forgets a path and everything under it until it is written again.",
            "/// Earlier runs' entries come first, then this run's. `[]` without a journal.",
        ])
        .with_params_info(["Array"])
        .register_into_engine(engine, move || -> Result<rhai::Array, Box<EvalAltResult>> {
            let mut entries = earlier_entries(&c)?;
            entries.extend(c.journal.borrow().entries().iter().cloned());
            Ok(crate::journal::paths(&entries)
                .into_iter()
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("path".into(), r.path.into());
                    m.insert("kind".into(), r.kind.into());
                    m.insert("state".into(), r.state.name().into());
                    m.insert("stage".into(), r.stage.into());
                    m.insert("stage_index".into(), i64::try_from(r.stage_index).unwrap_or(i64::MAX).into());
                    m.insert("step".into(), r.step.into());
                    m.insert("by".into(), r.by.map_or(Dynamic::UNIT, Dynamic::from));
                    Dynamic::from_map(m)
                })
                .collect())
        });
}
