//! Facts about the machine kscript runs on: its host name, its address, what preflight
//! checks read, and who listens on a TCP port.

use std::io;
use std::net::IpAddr;
use std::path::Path;

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
    /// Who holds TCP `port`: `None` when it is free, or when the run does not change this
    /// host; otherwise the processes holding a listening socket on it, which may be none that
    /// can be named (the socket belongs to another PID namespace, or their /proc/PID/fd cannot
    /// be read): the port is in use all the same.
    fn port_use(&self, port: u16) -> io::Result<Option<PortUse>>;
}

/// A process holding a socket, named as `ss -p` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The file descriptor of the socket in that process.
    pub fd: u32,
    /// The process name ss shows: /proc/PID/comm, which the kernel cuts at 15 bytes
    /// (`kube-controller-manager` is `kube-controller` there).
    pub name: String,
    /// The name in full: the base name of argv[0] (/proc/PID/cmdline); `None` when the
    /// process has no command line (a kernel thread, a zombie) or it cannot be read.
    pub command: Option<String>,
}

/// A TCP port in use, and the processes found holding a listening socket on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortUse {
    pub port: u16,
    /// In the order `ss` lists them; empty when none can be found.
    pub holders: Vec<Holder>,
}

impl PortUse {
    /// The holders as `ss -ltnp` prints them: `users:(("nc",pid=1234,fd=3))`; `None` when
    /// none is known.
    pub fn ss_users(&self) -> Option<String> {
        if self.holders.is_empty() {
            return None;
        }
        let each: Vec<String> =
            self.holders.iter().map(|h| format!("(\"{}\",pid={},fd={})", h.name, h.pid, h.fd)).collect();
        Some(format!("users:({})", each.join(",")))
    }
}

/// TCP state 0x0A in /proc/net/tcp: LISTEN.
const TCP_LISTEN: &str = "0A";

/// The inodes of the sockets listening on `port` in a /proc/net/tcp or /proc/net/tcp6 table
/// (the same layout for both: `sl local_address rem_address st ... uid timeout inode`, the
/// local address `ADDR:PORT` in hexadecimal).
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let state = *fields.get(3)?;
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (state == TCP_LISTEN && u16::from_str_radix(local_port, 16).ok()? == port && inode != 0)
                .then_some(inode)
        })
        .collect()
}

/// The inode of a /proc/PID/fd link's target when it is a socket: `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The base name of argv[0] in a /proc/PID/cmdline (NUL-separated arguments).
pub fn command_name(cmdline: &[u8]) -> Option<String> {
    let argv0 = cmdline.split(|b| *b == 0).next().filter(|a| !a.is_empty())?;
    let argv0 = String::from_utf8_lossy(argv0);
    let base = argv0.rsplit('/').next().unwrap_or(&argv0);
    (!base.is_empty()).then(|| base.to_string())
}

/// The processes under `proc` (a /proc) holding one of the sockets `inodes`, in the order ss
/// lists them (it walks /proc and each fd folder in order and puts each find first). A
/// process that ends during the walk, or whose fd folder cannot be read, is passed over.
pub fn socket_holders(proc: &Path, inodes: &[u64]) -> Vec<Holder> {
    let mut found = Vec::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(entries) = std::fs::read_dir(proc) else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Some(number) = fd.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Some(inode) =
                std::fs::read_link(fd.path()).ok().and_then(|l| socket_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let name = std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim_end_matches('\n').to_string())
                .unwrap_or_default();
            let command = std::fs::read(entry.path().join("cmdline")).ok().and_then(|c| command_name(&c));
            found.push(Holder { pid, fd: number, name, command });
        }
    }
    found.sort_by_key(|h| std::cmp::Reverse((h.pid, h.fd)));
    found
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

/// The inodes of the sockets listening on TCP `port` in this network namespace (empty when
/// the port is held by a socket bound but not listening); `None` when the port is free.
fn listening(port: u16) -> io::Result<Option<Vec<u64>>> {
    // IPv4 and IPv6: a listener on [::] only, with IPV6_V6ONLY, does not stop a bind on
    // 0.0.0.0, yet holds the port for the dual-stack listeners Kubernetes components open.
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => inodes.extend(listening_inodes(&text, port)),
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read {table}: {e}"))),
        }
    }
    if inodes.is_empty() {
        // A socket bound but not listening holds the port too, as kubeadm's own check (a
        // listen on the port) finds; its owner cannot be told from the listen tables.
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(inodes))
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
        // Whether it is held needs the listen tables only, not who holds it.
        Ok(Some(listening(port)?.is_none()))
    }

    fn port_use(&self, port: u16) -> io::Result<Option<PortUse>> {
        if !self.probes_host {
            return Ok(None);
        }
        let Some(inodes) = listening(port)? else { return Ok(None) };
        Ok(Some(PortUse { port, holders: socket_holders(Path::new("/proc"), &inodes) }))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;

    /// /proc/net/tcp as the kernel prints it: a header, then one socket a line. 6443 is 0x192B,
    /// 2379 is 0x094B.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21317 1 0000000000000000 100 0 0 10 0
   1: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33412 1 0000000000000000 100 0 0 10 0
   2: 0A00000F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33413 1 0000000000000000 100 0 0 10 0
   3: 0100007F:192B 0100007F:C8A2 01 00000000:00000000 00:00000000 00000000     0        0 40112 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:C8A2 0100007F:192B 06 00000000:00000000 03:00000EB6 00000000     0        0 0 3 0000000000000000
";

    /// /proc/net/tcp6: the same columns with 128-bit addresses. 10250 is 0x280A.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:280A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55123 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:192B 00000000000000000000000001000000:D3C2 01 00000000:00000000 00:00000000 00000000     0        0 55124 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listening_sockets_are_found_by_port_in_both_tables() {
        // A connected socket on the same port (state 01) and a TIME_WAIT one (inode 0) are not
        // listeners.
        assert_eq!(listening_inodes(TCP, 6443), [21317]);
        // One listener per address.
        assert_eq!(listening_inodes(TCP, 2379), [33412, 33413]);
        assert_eq!(listening_inodes(TCP, 10250), Vec::<u64>::new());
        assert_eq!(listening_inodes(TCP6, 10250), [55123]);
        assert_eq!(listening_inodes(TCP6, 6443), Vec::<u64>::new());
        // Nothing but a header, or a torn line: nothing found, nothing fails.
        assert!(listening_inodes("  sl  local_address\n   0: 00000000:192B", 6443).is_empty());
    }

    #[test]
    fn fd_links_and_command_lines_are_read_as_ss_reads_them() {
        assert_eq!(socket_inode("socket:[21317]"), Some(21317));
        assert_eq!(socket_inode("pipe:[21317]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(
            command_name(b"/usr/local/bin/kube-controller-manager\0--bind-address=127.0.0.1\0"),
            Some("kube-controller-manager".into())
        );
        assert_eq!(command_name(b"etcd\0--name\0n\0"), Some("etcd".into()));
        assert_eq!(command_name(b""), None);
        let holders = PortUse {
            port: 6443,
            holders: vec![
                Holder { pid: 12, fd: 7, name: "nc".into(), command: Some("nc".into()) },
                Holder { pid: 9, fd: 3, name: "nc".into(), command: None },
            ],
        };
        assert_eq!(holders.ss_users().unwrap(), r#"users:(("nc",pid=12,fd=7),("nc",pid=9,fd=3))"#);
        assert_eq!(PortUse { port: 1, holders: vec![] }.ss_users(), None);
    }

    /// This test process's own listeners, IPv4 and IPv6-only, are found in the real /proc with
    /// its PID, the socket's descriptor and its name.
    #[test]
    fn a_real_listener_is_found_with_its_process() {
        let facts = RealFacts { probes_host: true };
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_string();
        let mut listeners = vec![TcpListener::bind("127.0.0.1:0").unwrap()];
        if let Ok(v6) = TcpListener::bind("[::1]:0") {
            listeners.push(v6);
        }
        for l in &listeners {
            let port = l.local_addr().unwrap().port();
            let used = facts.port_use(port).unwrap().expect("the port is in use");
            assert_eq!(used.port, port);
            let me =
                used.holders.iter().find(|h| h.pid == std::process::id()).expect("this process holds it");
            assert_eq!(me.fd, u32::try_from(l.as_raw_fd()).unwrap());
            assert_eq!(me.name, comm);
            assert!(me.command.as_deref().is_some_and(|c| comm.starts_with(&c[..c.len().min(15)])), "{me:?}");
            assert_eq!(facts.port_free(port).unwrap(), Some(false));
        }
        // Free again once closed; and never probed when rendering. A child another test forks
        // at that moment holds a copy of the socket until it execs (the descriptor is
        // close-on-exec), so the port is free once that copy is gone too: asked until then.
        let port = listeners[0].local_addr().unwrap().port();
        drop(listeners);
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        let mut used = facts.port_use(port).unwrap();
        while used.is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            used = facts.port_use(port).unwrap();
        }
        assert_eq!(used, None);
        assert_eq!(RealFacts { probes_host: false }.port_use(port).unwrap(), None);
    }
}
