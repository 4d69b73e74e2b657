//! Checks of the kubeadm fields in the configuration, as kubeadm makes them: addresses,
//! CIDRs, names, ports, durations, versions, and subnets that must not overlap. Each error
//! names the field and points at it in the file that set it.

use std::net::IpAddr;

use crate::config::{Config, Value};
use crate::error::Error;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (a, p) = text.trim().split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    fn bits(&self) -> (u128, u32) {
        match self.addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, u32::from(self.prefix)),
            IpAddr::V6(a) => (u128::from(a), u32::from(self.prefix)),
        }
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() {
            return false;
        }
        let ((a, pa), (b, pb)) = (self.bits(), other.bits());
        let p = pa.min(pb);
        let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
        a & mask == b & mask
    }
}

/// A DNS-1123 subdomain: what kubeadm accepts as a node name.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn text<'a>(cfg: &'a Config, path: &str) -> Option<&'a str> {
    match &cfg.get(path)?.value {
        Value::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

fn cidrs(cfg: &Config, path: &str) -> Result<Vec<Cidr>, Error> {
    let Some(value) = text(cfg, path) else { return Ok(Vec::new()) };
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<&str> = value.split(',').collect();
    if list.len() > 2 {
        return Err(cfg.error_at(path, "at most two CIDRs (one IPv4, one IPv6) may be given", None));
    }
    list.iter()
        .map(|c| {
            Cidr::parse(c).ok_or_else(|| {
                cfg.error_at(
                    path,
                    &format!("`{c}` is not a CIDR"),
                    Some("write it as ADDRESS/PREFIX, such as 10.96.0.0/12".into()),
                )
            })
        })
        .collect()
}

/// Checks every kubeadm field the configuration has.
pub fn check(cfg: &Config) -> Result<(), Error> {
    check_node(cfg)?;
    check_network(cfg)?;
    check_pki(cfg)?;
    check_version(cfg)
}

fn check_node(cfg: &Config) -> Result<(), Error> {
    if let Some(a) = text(cfg, "localAPIEndpoint.advertiseAddress").filter(|a| !a.is_empty()) {
        let path = "localAPIEndpoint.advertiseAddress";
        let ip: IpAddr =
            a.parse().map_err(|_| cfg.error_at(path, &format!("`{a}` is not an IP address"), None))?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(cfg.error_at(path, &format!("`{a}` cannot be advertised"), None));
        }
    }
    if let Some(Value::Int(p)) = cfg.get("localAPIEndpoint.bindPort").map(|n| &n.value)
        && !(1..=65535).contains(p)
    {
        return Err(cfg.error_at(
            "localAPIEndpoint.bindPort",
            &format!("{p} is not a port (1 to 65535)"),
            None,
        ));
    }
    if let Some(n) = text(cfg, "nodeRegistration.name").filter(|n| !n.is_empty())
        && !is_dns_subdomain(n)
    {
        return Err(cfg.error_at(
            "nodeRegistration.name",
            &format!("`{n}` is not a valid node name"),
            Some("lower-case letters, digits, `-` and `.`, as a DNS name".into()),
        ));
    }
    Ok(())
}

fn check_network(cfg: &Config) -> Result<(), Error> {
    if let Some(d) = text(cfg, "networking.dnsDomain")
        && !is_dns_subdomain(d)
    {
        return Err(cfg.error_at("networking.dnsDomain", &format!("`{d}` is not a DNS domain"), None));
    }
    let services = cidrs(cfg, "networking.serviceSubnet")?;
    let pods = cidrs(cfg, "networking.podSubnet")?;
    for s in &services {
        for p in &pods {
            if s.overlaps(p) {
                return Err(cfg.error_at(
                    "networking.podSubnet",
                    &format!("{}/{} overlaps the service subnet {}/{}", p.addr, p.prefix, s.addr, s.prefix),
                    Some("pick pod and service subnets that do not overlap".into()),
                ));
            }
        }
    }
    if let Some(e) = text(cfg, "controlPlaneEndpoint").filter(|e| !e.is_empty()) {
        let host = endpoint_host(e).ok_or_else(|| {
            cfg.error_at("controlPlaneEndpoint", &format!("`{e}` is not HOST or HOST:PORT"), None)
        })?;
        if host.parse::<IpAddr>().is_err() && !is_dns_subdomain(host) {
            let message = format!("`{host}` is neither an IP address nor a DNS name");
            return Err(cfg.error_at("controlPlaneEndpoint", &message, None));
        }
    }
    if let Some(Value::List(sans)) = cfg.get("apiServer.certSANs").map(|n| &n.value) {
        for san in sans {
            if let Value::Str(s) = &san.value
                && s.parse::<IpAddr>().is_err()
                && !is_dns_subdomain(&s.trim_start_matches("*.").to_lowercase())
            {
                let message = format!("`{s}` is neither an IP address nor a DNS name");
                return Err(cfg.error_at("apiServer.certSANs", &message, None));
            }
        }
    }
    Ok(())
}

fn check_pki(cfg: &Config) -> Result<(), Error> {
    if let Some(a) = text(cfg, "encryptionAlgorithm")
        && a.parse::<crate::pki::KeyAlgorithm>().is_err()
    {
        return Err(cfg.error_at(
            "encryptionAlgorithm",
            &format!("`{a}` is not a key algorithm"),
            Some("use RSA-2048, RSA-3072, RSA-4096, ECDSA-P256 or ECDSA-P384".into()),
        ));
    }
    for path in ["certificateValidityPeriod", "caCertificateValidityPeriod"] {
        if let Some(d) = text(cfg, path)
            && crate::api::pki::parse_go_duration(d).is_none_or(|d| d.is_zero())
        {
            return Err(cfg.error_at(
                path,
                &format!("`{d}` is not a duration"),
                Some("such as 8760h0m0s".into()),
            ));
        }
    }
    Ok(())
}

fn check_version(cfg: &Config) -> Result<(), Error> {
    let Some(v) = text(cfg, "kubernetesVersion") else { return Ok(()) };
    // `1.37.0`, `v1.37.0-rc.0`, `v1.28.7+build`: the pre-release and build may hold dots.
    let release = v.strip_prefix('v').unwrap_or(v).split(['-', '+']).next().unwrap_or_default();
    let parts = release.split('.').collect::<Vec<_>>();
    let ok = parts.len() == 3
        && parts[0] == "1"
        && parts[1].parse::<u32>().is_ok_and(|m| m >= 28)
        && parts[2].parse::<u32>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(cfg.error_at(
            "kubernetesVersion",
            &format!("`{v}` is not a supported version"),
            Some(
                "kscript supports v1.28.0 and later, written as v1.MINOR.PATCH (or v1.MINOR.PATCH-rc.N)"
                    .into(),
            ),
        ))
    }
}

/// The host of `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn endpoint_host(e: &str) -> Option<&str> {
    if let Some(rest) = e.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        return (tail.is_empty() || tail.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()))
            .then_some(host);
    }
    match e.matches(':').count() {
        0 => Some(e),
        1 => {
            let (h, p) = e.split_once(':')?;
            p.parse::<u16>().ok().map(|_| h)
        }
        _ => e.parse::<std::net::Ipv6Addr>().ok().map(|_| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_overlap() {
        let c = |s: &str| Cidr::parse(s).unwrap();
        assert!(c("10.96.0.0/12").overlaps(&c("10.100.0.0/16")));
        assert!(!c("10.96.0.0/12").overlaps(&c("10.244.0.0/16")));
        assert!(!c("10.96.0.0/12").overlaps(&c("fd00::/64")));
        assert!(c("fd00::/48").overlaps(&c("fd00:0:0:1::/64")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0/8").is_none());
    }

    #[test]
    fn names_and_endpoints() {
        assert!(is_dns_subdomain("k8s-ctr.example.com"));
        assert!(!is_dns_subdomain("K8s"));
        assert!(!is_dns_subdomain("-a"));
        assert_eq!(endpoint_host("api.example:6443"), Some("api.example"));
        assert_eq!(endpoint_host("[fd00::1]:6443"), Some("fd00::1"));
        assert_eq!(endpoint_host("fd00::1"), Some("fd00::1"));
        assert_eq!(endpoint_host("api:x"), None);
    }
}
