//! What a certificate should contain: [`CertSpec`], SANs, extended key usages,
//! and the service-CIDR helper the API server's SANs need.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use super::error::{PkiError, Result};

/// kubeadm's CA validity: 10 years of 365 days.
pub const CA_VALIDITY: Duration = Duration::from_hours(10 * 365 * 24);
/// kubeadm's leaf validity: 1 year of 365 days.
pub const CERT_VALIDITY: Duration = Duration::from_hours(365 * 24);
/// How far notBefore is set back from "now", as kubeadm does against clock skew.
pub const BACKDATE: Duration = Duration::from_mins(5);

/// An extended key usage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Eku {
    /// TLS server authentication (`serverAuth`).
    ServerAuth,
    /// TLS client authentication (`clientAuth`).
    ClientAuth,
    /// Any other usage: its name where known (`codeSigning`, `anyExtendedKeyUsage`, ...)
    /// or its dotted OID. Only dotted OIDs can be put in a new certificate.
    Other(String),
}

impl fmt::Display for Eku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerAuth => f.write_str("serverAuth"),
            Self::ClientAuth => f.write_str("clientAuth"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

impl FromStr for Eku {
    type Err = PkiError;

    /// Parses `serverAuth`, `clientAuth` (as kubeadm and OpenSSL spell them)
    /// or a dotted OID such as `1.3.6.1.5.5.7.3.9`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "serverAuth" => Ok(Self::ServerAuth),
            "clientAuth" => Ok(Self::ClientAuth),
            _ if dotted_oid(s).is_some() => Ok(Self::Other(s.to_owned())),
            _ => Err(PkiError::UnknownEku { input: s.to_owned() }),
        }
    }
}

/// The arcs of a dotted OID with at least two arcs, if `s` is one.
pub(crate) fn dotted_oid(s: &str) -> Option<Vec<u64>> {
    let arcs = s
        .split('.')
        .map(|arc| {
            if arc.is_empty() || !arc.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                arc.parse::<u64>().ok()
            }
        })
        .collect::<Option<Vec<_>>>()?;
    (arcs.len() >= 2 && arcs[0] <= 2).then_some(arcs)
}

/// A subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum San {
    /// A DNS name (or `*.`-wildcard).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Reads a SAN the way kubeadm reads `apiServer.certSANs`: an IPv4 or IPv6
/// literal becomes an IP SAN, anything else must be a DNS-1123 subdomain
/// (optionally with a `*.` wildcard prefix) and becomes a DNS SAN.
///
/// # Errors
/// When the text is neither an IP literal nor a valid DNS name; the error says why.
pub fn parse_san(input: &str) -> Result<San> {
    if let Ok(ip) = input.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    validate_dns_name(input)?;
    Ok(San::Dns(input.to_owned()))
}

/// Checks a DNS SAN: a lowercase RFC 1123 subdomain of at most 253 characters,
/// labels of 1..=63 of `[a-z0-9-]` not starting or ending with `-`; a leading
/// `*.` wildcard label is allowed.
pub(crate) fn validate_dns_name(input: &str) -> Result<()> {
    let invalid = |reason: String| PkiError::InvalidSan { input: input.to_owned(), reason };
    let name = input.strip_prefix("*.").unwrap_or(input);
    if name.is_empty() {
        return Err(invalid("empty DNS name".to_owned()));
    }
    if name.len() > 253 {
        return Err(invalid(format!("DNS name is {} characters long, at most 253 are allowed", name.len())));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label (leading, trailing or double dot)".to_owned()));
        }
        if label.len() > 63 {
            return Err(invalid(format!("label {label:?} is longer than 63 characters")));
        }
        if let Some(bad) =
            label.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(invalid(format!(
                "character {bad:?} is not allowed: use lowercase letters, digits, '-' and '.' \
                 (or give an IP address)"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(format!("label {label:?} starts or ends with '-'")));
        }
    }
    Ok(())
}

/// What a certificate should say. Time, serial and keys come separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Subject common name (CN).
    pub common_name: String,
    /// Subject organizations (O): the groups Kubernetes puts the user in.
    /// At most one is supported (see [`PkiError::InvalidSpec`]).
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
    /// Extended key usages (none for kubeadm's CAs).
    pub extended_key_usages: Vec<Eku>,
    /// How long after "now" the certificate expires. notBefore is always "now"
    /// minus [`BACKDATE`].
    pub validity: Duration,
}

impl CertSpec {
    /// A CA spec as kubeadm makes them: no O, no EKU, 10 years.
    #[must_use]
    pub fn ca(common_name: impl Into<String>) -> Self {
        Self {
            common_name: common_name.into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            is_ca: true,
            extended_key_usages: Vec::new(),
            validity: CA_VALIDITY,
        }
    }

    /// A leaf spec with the given usages and kubeadm's 1-year validity.
    #[must_use]
    pub fn leaf(common_name: impl Into<String>, extended_key_usages: Vec<Eku>) -> Self {
        Self {
            common_name: common_name.into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            is_ca: false,
            extended_key_usages,
            validity: CERT_VALIDITY,
        }
    }

    /// Adds a SAN to the matching list, unless it is already there.
    pub fn add_san(&mut self, san: San) {
        match san {
            San::Dns(name) => {
                if !self.dns_names.contains(&name) {
                    self.dns_names.push(name);
                }
            }
            San::Ip(ip) => {
                if !self.ip_addresses.contains(&ip) {
                    self.ip_addresses.push(ip);
                }
            }
        }
    }

    /// Builder form of [`CertSpec::add_san`].
    #[must_use]
    pub fn with_san(mut self, san: San) -> Self {
        self.add_san(san);
        self
    }

    /// Builder form setting the organizations.
    #[must_use]
    pub fn with_organizations<I, S>(mut self, organizations: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.organizations = organizations.into_iter().map(Into::into).collect();
        self
    }

    /// The spec's SANs, DNS names first, in order, without duplicates.
    #[must_use]
    pub fn sans(&self) -> Vec<San> {
        let mut out: Vec<San> = Vec::new();
        let all = self
            .dns_names
            .iter()
            .map(|d| San::Dns(d.clone()))
            .chain(self.ip_addresses.iter().map(|ip| San::Ip(*ip)));
        for san in all {
            if !out.contains(&san) {
                out.push(san);
            }
        }
        out
    }
}

/// The first usable address of a service CIDR, which the API server's
/// `kubernetes` Service gets and its certificate must name
/// (`10.96.0.0/12` → `10.96.0.1`). For a dual-stack list such as
/// `10.96.0.0/12,fd00::/108` the first CIDR is used, as kubeadm does.
///
/// # Errors
/// When the CIDR does not parse or its range has no address after the network address.
pub fn first_service_ip(cidr: &str) -> Result<IpAddr> {
    let invalid = |reason: &str| PkiError::InvalidCidr { input: cidr.to_owned(), reason: reason.to_owned() };
    let first = cidr.split(',').next().unwrap_or_default().trim();
    let (addr, prefix) = first.split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid("the address is not an IPv4 or IPv6 address"))?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid("the prefix length is not a number"))?;
    match addr {
        IpAddr::V4(v4) => {
            if prefix > 31 {
                return Err(invalid("an IPv4 prefix must be at most /31 to leave room for a Service IP"));
            }
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            let network = u32::from(v4) & mask;
            Ok(IpAddr::V4(Ipv4Addr::from(network + 1)))
        }
        IpAddr::V6(v6) => {
            if prefix > 127 {
                return Err(invalid("an IPv6 prefix must be at most /127 to leave room for a Service IP"));
            }
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            let network = u128::from(v6) & mask;
            Ok(IpAddr::V6(Ipv6Addr::from(network + 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ip_is_network_plus_one() {
        let cases = [
            ("10.96.0.0/12", "10.96.0.1"),
            ("10.96.5.7/12", "10.96.0.1"),
            ("192.168.0.0/16", "192.168.0.1"),
            ("0.0.0.0/0", "0.0.0.1"),
            ("fd00::/108", "fd00::1"),
            ("fd00:10:96::/112", "fd00:10:96::1"),
            ("10.96.0.0/12,fd00::/108", "10.96.0.1"),
            ("fd00::/108, 10.96.0.0/12", "fd00::1"),
        ];
        for (cidr, want) in cases {
            assert_eq!(first_service_ip(cidr).unwrap(), want.parse::<IpAddr>().unwrap(), "{cidr}");
        }
    }

    #[test]
    fn bad_service_cidrs_say_what_is_wrong() {
        for bad in ["", "10.96.0.0", "10.96.0.0/x", "10.96.0/12", "10.0.0.0/32", "10.0.0.0/33", "fd00::/128"]
        {
            let err = first_service_ip(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn sans_parse_as_kubeadm_does() {
        assert_eq!(parse_san("10.0.0.1").unwrap(), San::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_san("fd00::1").unwrap(), San::Ip("fd00::1".parse().unwrap()));
        assert_eq!(parse_san("::1").unwrap(), San::Ip("::1".parse().unwrap()));
        for dns in ["kubernetes", "kubernetes.default.svc.cluster.local", "node-1", "*.example.com", "1.2.3"]
        {
            assert_eq!(parse_san(dns).unwrap(), San::Dns(dns.to_owned()), "{dns}");
        }
        for bad in
            ["", "Node1", "-a", "a-", "a..b", "a_b", "[::1]", "with space", "*.", "é.com", &"a".repeat(64)]
        {
            let err = parse_san(bad).unwrap_err().to_string();
            assert!(err.contains("invalid subject alternative name"), "{bad}: {err}");
        }
    }

    #[test]
    fn ekus_parse_and_display() {
        assert_eq!("serverAuth".parse::<Eku>().unwrap(), Eku::ServerAuth);
        assert_eq!("clientAuth".parse::<Eku>().unwrap(), Eku::ClientAuth);
        assert_eq!("1.3.6.1.5.5.7.3.9".parse::<Eku>().unwrap(), Eku::Other("1.3.6.1.5.5.7.3.9".to_owned()));
        assert!("server".parse::<Eku>().is_err());
        assert!("1".parse::<Eku>().is_err());
        assert_eq!(Eku::ClientAuth.to_string(), "clientAuth");
    }

    #[test]
    fn spec_sans_are_deduplicated_in_order() {
        let spec = CertSpec::leaf("x", vec![Eku::ServerAuth])
            .with_san(San::Dns("b".into()))
            .with_san(San::Ip("::1".parse().unwrap()))
            .with_san(San::Dns("a".into()))
            .with_san(San::Dns("b".into()));
        assert_eq!(
            spec.sans().iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["DNS:b", "DNS:a", "IP:::1"]
        );
    }
}
