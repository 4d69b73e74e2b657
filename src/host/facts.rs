//! Facts about the machine kscript runs on: its host name and its address.

use std::io;
use std::net::IpAddr;

/// What preflight checks read of the host a real run changes.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub cpus: usize,
    pub mem_mib: u64,
    /// Whether any swap space is active (/proc/swaps lists one).
    pub swap_active: bool,
    /// `uname -r`.
    pub kernel: String,
    /// Whether /sys/fs/cgroup is the unified (v2) hierarchy.
    pub cgroup_v2: bool,
    /// The cgroup controllers available (v2: cgroup.controllers; v1: /proc/cgroups enabled).
    pub cgroup_controllers: Vec<String>,
    pub is_root: bool,
}

/// What scripts may ask about the machine.
pub trait Facts {
    /// The host name, as `hostname` prints it.
    fn hostname(&self) -> io::Result<String>;
    /// The IPv4 address of the interface that holds the default route; failing that, the
    /// first address that is not loopback. `None` when the machine has neither.
    fn default_address(&self) -> io::Result<Option<IpAddr>>;
    /// The host's resources and settings for preflight checks; `None` when the run does not
    /// change this host (rendering into a folder), so checking it would mean nothing.
    fn probe(&self) -> io::Result<Option<Probe>>;
    /// Whether nothing listens on TCP `port` (a listener can be bound on all addresses);
    /// `None` when the run does not change this host.
    fn port_free(&self, port: u16) -> io::Result<Option<bool>>;
}

/// This machine's facts. `probes_host` is false when the run renders into a folder.
#[derive(Debug, Default)]
pub struct RealFacts {
    pub probes_host: bool,
}

/// The interface of the IPv4 default route, from /proc/net/route.
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 2 && fields[1] == "00000000").then(|| fields[0].to_string())
    })
}

impl Facts for RealFacts {
    fn hostname(&self) -> io::Result<String> {
        let name = nix::unistd::gethostname().map_err(io::Error::from)?;
        Ok(name.to_string_lossy().into_owned())
    }

    fn default_address(&self) -> io::Result<Option<IpAddr>> {
        let iface = default_route_interface();
        let mut first = None;
        for ifa in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
            let Some(addr) =
                ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|a| IpAddr::V4(a.ip()))
            else {
                continue;
            };
            if addr.is_loopback() {
                continue;
            }
            if iface.as_deref() == Some(ifa.interface_name.as_str()) {
                return Ok(Some(addr));
            }
            first.get_or_insert(addr);
        }
        Ok(first)
    }

    fn probe(&self) -> io::Result<Option<Probe>> {
        if !self.probes_host {
            return Ok(None);
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo")?;
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        let cgroup_controllers = if cgroup_v2 {
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect()
        } else {
            std::fs::read_to_string("/proc/cgroups")
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
                })
                .collect()
        };
        Ok(Some(Probe {
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            mem_mib: mem_kib / 1024,
            swap_active: swaps.lines().skip(1).any(|l| !l.trim().is_empty()),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            cgroup_v2,
            cgroup_controllers,
            is_root: nix::unistd::geteuid().is_root(),
        }))
    }

    fn port_free(&self, port: u16) -> io::Result<Option<bool>> {
        if !self.probes_host {
            return Ok(None);
        }
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => Ok(Some(true)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }
}
