//! systemd: `systemctl` on a real host, recorded elsewhere.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

/// What a unit operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitChange {
    /// Already so: nothing done.
    Unchanged,
    /// Done now.
    Changed,
    /// Recorded, not done (rendering, dry runs).
    Recorded,
}

/// Why a unit did not become active, with what to look at.
#[derive(Debug, Clone)]
pub struct UnitFailure {
    pub state: String,
    /// `systemctl status` and the unit's last journal lines.
    pub diagnosis: String,
}

/// systemd's manager, as kscript uses it.
pub trait Systemd {
    fn daemon_reload(&self) -> io::Result<UnitChange>;
    /// `systemctl enable` (the wants/requires symlinks are made by the caller, in the node
    /// root, so a rendered tree shows them too).
    fn enable(&self, unit: &str) -> io::Result<UnitChange>;
    fn disable(&self, unit: &str) -> io::Result<UnitChange>;
    /// Starts the unit unless it is active.
    fn start(&self, unit: &str) -> io::Result<UnitChange>;
    /// Stops the unit unless it is inactive or failed (one waiting to be started again after a
    /// crash is stopped, ending its loop).
    fn stop(&self, unit: &str) -> io::Result<UnitChange>;
    fn restart(&self, unit: &str) -> io::Result<UnitChange>;
    /// `systemctl is-active`: `active`, `inactive`, `failed`, `activating`...; `None` when
    /// not known (recorded).
    fn state(&self, unit: &str) -> io::Result<Option<String>>;
    /// Waits until the unit is active; on timeout or failure, its state and diagnosis.
    fn wait_active(&self, unit: &str, timeout: Duration) -> io::Result<Result<UnitChange, UnitFailure>>;
    /// `systemctl status` and the last journal lines of `unit`; `None` when recording.
    fn diagnosis(&self, unit: &str) -> Option<String>;
    /// What systemd knows of each of `units`, in their order, from one `systemctl show`;
    /// `None` when recording (there is no systemd to ask).
    fn units(&self, units: &[&str]) -> io::Result<Option<Vec<UnitStatus>>>;
    /// The last line `unit` wrote to the journal; `None` when it wrote none, or recording.
    fn last_log_line(&self, unit: &str) -> Option<String>;
}

/// A unit as `systemctl show` reports it (the properties of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitStatus {
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `error`...
    pub load_state: String,
    /// `active`, `inactive`, `activating`, `deactivating`, `failed`, `reloading`.
    pub active_state: String,
    /// `running`, `auto-restart`, `dead`, `start`, `exited`...
    pub sub_state: String,
    /// How it last ended: `success`, `exit-code`, `signal`, `start-limit-hit`...
    pub result: String,
    /// How many times systemd restarted it (`Restart=`) since it was last started by hand.
    pub restarts: u64,
    /// `enabled`, `disabled`, `static`... (empty when unknown).
    pub unit_file_state: String,
    /// The exit status of its main process's last run.
    pub exec_main_status: i32,
}

/// The properties [`Systemd::units`] reads.
pub const UNIT_PROPERTIES: &str =
    "Id,LoadState,ActiveState,SubState,Result,NRestarts,UnitFileState,ExecMainStatus";

/// Parses `systemctl show -p UNIT_PROPERTIES UNIT...`: one block of `Key=value` lines per
/// unit, blocks separated by a blank line, in the order the units were named.
pub fn parse_show(text: &str) -> Vec<UnitStatus> {
    let mut units = Vec::new();
    let mut cur: Option<UnitStatus> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            units.extend(cur.take());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let u = cur.get_or_insert_with(UnitStatus::default);
        let value = value.trim().to_string();
        match key {
            "Id" => u.id = value,
            "LoadState" => u.load_state = value,
            "ActiveState" => u.active_state = value,
            "SubState" => u.sub_state = value,
            "Result" => u.result = value,
            "NRestarts" => u.restarts = value.parse().unwrap_or(0),
            "UnitFileState" => u.unit_file_state = value,
            "ExecMainStatus" => u.exec_main_status = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    units.extend(cur);
    units
}

/// `systemctl` on this host.
#[derive(Debug, Default)]
pub struct RealSystemd;

fn systemctl(args: &[&str]) -> io::Result<std::process::Output> {
    Command::new("systemctl").args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot run systemctl: {e} (is systemd installed and running as PID 1?)"),
        )
    })
}

fn check(args: &[&str]) -> io::Result<()> {
    let out = systemctl(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`systemctl {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A failed `systemctl start` or `restart` with the unit's status and journal lines: the
/// start job of a `Type=notify`, `forking` or `oneshot` unit fails with the unit (systemctl
/// waits for it), and systemctl's own message only says where to look. An error from not
/// being able to run systemctl at all is left as it is.
fn with_diagnosis(error: io::Error, unit: &str) -> io::Error {
    if error.kind() == io::ErrorKind::Other {
        io::Error::other(format!("{error}\n{}", diagnose(unit)))
    } else {
        error
    }
}

/// `systemctl status` and the last journal lines of `unit`, for an error message.
fn diagnose(unit: &str) -> String {
    let status = systemctl(&["status", "--no-pager", "--lines=0", unit])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_default();
    let journal = Command::new("journalctl")
        .args(["--no-pager", "-n", "20", "-u", unit])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_default();
    format!(
        "{status}\n\nlast journal lines (journalctl -u {unit}):\n{journal}\n\nlook further with: systemctl status {unit}; journalctl -u {unit}"
    )
}

impl Systemd for RealSystemd {
    fn diagnosis(&self, unit: &str) -> Option<String> {
        Some(diagnose(unit))
    }

    fn units(&self, units: &[&str]) -> io::Result<Option<Vec<UnitStatus>>> {
        if units.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut args = vec!["show", "-p", UNIT_PROPERTIES, "--"];
        args.extend_from_slice(units);
        let out = systemctl(&args)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`systemctl show` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let found = parse_show(&String::from_utf8_lossy(&out.stdout));
        if found.len() != units.len() {
            return Err(io::Error::other(format!(
                "`systemctl show` answered for {} unit(s) of {}",
                found.len(),
                units.len()
            )));
        }
        Ok(Some(found))
    }

    fn last_log_line(&self, unit: &str) -> Option<String> {
        let out = Command::new("journalctl")
            .args(["--no-pager", "-q", "-n", "1", "-o", "cat", "-u", unit])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
    }

    fn daemon_reload(&self) -> io::Result<UnitChange> {
        check(&["daemon-reload"])?;
        Ok(UnitChange::Changed)
    }

    fn enable(&self, unit: &str) -> io::Result<UnitChange> {
        let before = systemctl(&["is-enabled", unit])?;
        if String::from_utf8_lossy(&before.stdout).trim() == "enabled" {
            return Ok(UnitChange::Unchanged);
        }
        check(&["enable", unit])?;
        Ok(UnitChange::Changed)
    }

    fn disable(&self, unit: &str) -> io::Result<UnitChange> {
        let before = systemctl(&["is-enabled", unit])?;
        if String::from_utf8_lossy(&before.stdout).trim() != "enabled" {
            return Ok(UnitChange::Unchanged);
        }
        check(&["disable", unit])?;
        Ok(UnitChange::Changed)
    }

    fn start(&self, unit: &str) -> io::Result<UnitChange> {
        if self.state(unit)?.as_deref() == Some("active") {
            return Ok(UnitChange::Unchanged);
        }
        check(&["start", unit]).map_err(|e| with_diagnosis(e, unit))?;
        Ok(UnitChange::Changed)
    }

    fn stop(&self, unit: &str) -> io::Result<UnitChange> {
        // A unit crash-looping between two starts (`auto-restart`) is `activating`: stopped too,
        // or systemd starts it again.
        if matches!(self.state(unit)?.as_deref(), None | Some("inactive" | "failed" | "unknown")) {
            return Ok(UnitChange::Unchanged);
        }
        check(&["stop", unit])?;
        Ok(UnitChange::Changed)
    }

    fn restart(&self, unit: &str) -> io::Result<UnitChange> {
        check(&["restart", unit]).map_err(|e| with_diagnosis(e, unit))?;
        Ok(UnitChange::Changed)
    }

    fn state(&self, unit: &str) -> io::Result<Option<String>> {
        let out = systemctl(&["is-active", unit])?;
        Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    fn wait_active(&self, unit: &str, timeout: Duration) -> io::Result<Result<UnitChange, UnitFailure>> {
        let start = Instant::now();
        loop {
            let state = self.state(unit)?.unwrap_or_default();
            if state == "active" {
                return Ok(Ok(UnitChange::Unchanged));
            }
            if state == "failed" || start.elapsed() >= timeout {
                return Ok(Err(UnitFailure { state, diagnosis: diagnose(unit) }));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Records unit operations without a systemd (rendering, dry runs).
#[derive(Debug, Default)]
pub struct RecordingSystemd;

impl Systemd for RecordingSystemd {
    fn daemon_reload(&self) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn enable(&self, _unit: &str) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn disable(&self, _unit: &str) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn start(&self, _unit: &str) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn stop(&self, _unit: &str) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn restart(&self, _unit: &str) -> io::Result<UnitChange> {
        Ok(UnitChange::Recorded)
    }
    fn state(&self, _unit: &str) -> io::Result<Option<String>> {
        Ok(None)
    }
    fn diagnosis(&self, _unit: &str) -> Option<String> {
        None
    }
    fn units(&self, _units: &[&str]) -> io::Result<Option<Vec<UnitStatus>>> {
        Ok(None)
    }
    fn last_log_line(&self, _unit: &str) -> Option<String> {
        None
    }
    fn wait_active(&self, _unit: &str, _timeout: Duration) -> io::Result<Result<UnitChange, UnitFailure>> {
        Ok(Ok(UnitChange::Recorded))
    }
}

/// The `[Install]` section of a unit file: where `enable` links it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Install {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub alias: Vec<String>,
}

/// Parses a unit file's `[Install]` section (later assignments add; an empty one resets).
pub fn parse_install(unit_file: &str) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    for line in unit_file.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let list = match key.trim() {
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "Alias" => &mut install.alias,
            _ => continue,
        };
        if value.trim().is_empty() {
            list.clear();
        }
        list.extend(value.split_whitespace().map(String::from));
    }
    install
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_blocks_in_order() {
        let text = "Id=containerd.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\nUnitFileState=enabled\nExecMainStatus=0\n\nId=kubelet.service\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=7\nUnitFileState=enabled\nExecMainStatus=1\n\nId=nope.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nResult=success\nNRestarts=0\nUnitFileState=\nExecMainStatus=0\n";
        let units = parse_show(text);
        assert_eq!(units.len(), 3);
        assert_eq!(units[1].sub_state, "auto-restart");
        assert_eq!(units[1].restarts, 7);
        assert_eq!(units[1].exec_main_status, 1);
        assert_eq!(units[2].load_state, "not-found");
        assert_eq!(units[2].unit_file_state, "");
    }

    #[test]
    fn install_sections() {
        let unit = "[Unit]\nDescription=x\nWantedBy=ignored.target\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nWantedBy=other.target\nRequiredBy=a.service\nAlias=k.service\n";
        let i = parse_install(unit);
        assert_eq!(i.wanted_by, ["multi-user.target", "other.target"]);
        assert_eq!(i.required_by, ["a.service"]);
        assert_eq!(i.alias, ["k.service"]);
        assert_eq!(
            parse_install("[Install]\nWantedBy=a.target\nWantedBy=\nWantedBy=b.target\n").wanted_by,
            ["b.target"]
        );
    }
}
