//! Facts about the machine kscript runs on: its host name and its address.

use std::io;
use std::net::IpAddr;

/// What scripts may ask about the machine.
pub trait Facts {
    /// The host name, as `hostname` prints it.
    fn hostname(&self) -> io::Result<String>;
    /// The IPv4 address of the interface that holds the default route; failing that, the
    /// first address that is not loopback. `None` when the machine has neither.
    fn default_address(&self) -> io::Result<Option<IpAddr>>;
}

/// This machine's facts.
#[derive(Debug, Default)]
pub struct RealFacts;

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
}
