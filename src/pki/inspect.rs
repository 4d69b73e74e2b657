//! Reading certificates back: a parsed [`CertInfo`], signature checks, the
//! join CA pin, key/certificate matching and a stable summary for snapshots.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::error::{PkiError, Result};
use super::key::{KeyAlgorithm, PrivateKey};
use super::spec::{Eku, San};

/// A key usage bit of the keyUsage extension (RFC 5280 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// `digitalSignature`
    DigitalSignature,
    /// `nonRepudiation` (also called contentCommitment)
    NonRepudiation,
    /// `keyEncipherment`
    KeyEncipherment,
    /// `dataEncipherment`
    DataEncipherment,
    /// `keyAgreement`
    KeyAgreement,
    /// `keyCertSign`
    KeyCertSign,
    /// `cRLSign`
    CrlSign,
    /// `encipherOnly`
    EncipherOnly,
    /// `decipherOnly`
    DecipherOnly,
}

impl fmt::Display for KeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DigitalSignature => "digitalSignature",
            Self::NonRepudiation => "nonRepudiation",
            Self::KeyEncipherment => "keyEncipherment",
            Self::DataEncipherment => "dataEncipherment",
            Self::KeyAgreement => "keyAgreement",
            Self::KeyCertSign => "keyCertSign",
            Self::CrlSign => "cRLSign",
            Self::EncipherOnly => "encipherOnly",
            Self::DecipherOnly => "decipherOnly",
        })
    }
}

/// What a certificate says, parsed from PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The whole subject, e.g. `O=system:masters, CN=kube-apiserver-etcd-client`.
    pub subject: String,
    /// The subject's (first) common name, empty if there is none.
    pub subject_cn: String,
    /// The subject's organizations (O), in order.
    pub organizations: Vec<String>,
    /// The whole issuer name.
    pub issuer: String,
    /// The issuer's (first) common name, empty if there is none.
    pub issuer_cn: String,
    /// DNS subject alternative names, in certificate order.
    pub dns_names: Vec<String>,
    /// IP subject alternative names, in certificate order.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether basicConstraints says `CA:TRUE`.
    pub is_ca: bool,
    /// The keyUsage bits that are set, in RFC 5280 order.
    pub key_usages: Vec<KeyUsage>,
    /// Whether the keyUsage extension is marked critical.
    pub key_usage_critical: bool,
    /// Extended key usages, in certificate order.
    pub extended_key_usages: Vec<Eku>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The subject key's algorithm, if it is one of the supported ones.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// The serial number as lowercase hex (no separators).
    pub serial: String,
}

impl CertInfo {
    /// Parses the first `CERTIFICATE` block of a PEM text.
    ///
    /// # Errors
    /// When there is no certificate block or it is not a valid X.509 certificate.
    pub fn from_pem(cert_pem: &str) -> Result<Self> {
        let der = pem_to_cert_der(cert_pem, "certificate")?;
        let cert = parse_cert_der(&der, "certificate")?;
        Self::from_x509(&cert)
    }

    fn from_x509(cert: &X509Certificate<'_>) -> Result<Self> {
        let bad = |what: &str, e: X509Error| PkiError::InvalidPem {
            what: "certificate",
            reason: format!("{what} of {}: {e}", cert.subject()),
        };
        let first_cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_owned()
        };

        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Some(san) = cert.subject_alternative_name().map_err(|e| bad("subjectAltName", e))? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }

        let is_ca =
            cert.basic_constraints().map_err(|e| bad("basicConstraints", e))?.is_some_and(|bc| bc.value.ca);

        let (key_usages, key_usage_critical) = match cert.key_usage().map_err(|e| bad("keyUsage", e))? {
            None => (Vec::new(), false),
            Some(ext) => {
                let ku = ext.value;
                let bits = [
                    (ku.digital_signature(), KeyUsage::DigitalSignature),
                    (ku.non_repudiation(), KeyUsage::NonRepudiation),
                    (ku.key_encipherment(), KeyUsage::KeyEncipherment),
                    (ku.data_encipherment(), KeyUsage::DataEncipherment),
                    (ku.key_agreement(), KeyUsage::KeyAgreement),
                    (ku.key_cert_sign(), KeyUsage::KeyCertSign),
                    (ku.crl_sign(), KeyUsage::CrlSign),
                    (ku.encipher_only(), KeyUsage::EncipherOnly),
                    (ku.decipher_only(), KeyUsage::DecipherOnly),
                ];
                let set = bits.iter().filter(|(on, _)| *on).map(|(_, u)| *u);
                (set.collect(), ext.critical)
            }
        };

        let mut extended_key_usages = Vec::new();
        if let Some(ext) = cert.extended_key_usage().map_err(|e| bad("extendedKeyUsage", e))? {
            let eku = ext.value;
            let named = [
                (eku.server_auth, Eku::ServerAuth),
                (eku.client_auth, Eku::ClientAuth),
                (eku.any, Eku::Other("anyExtendedKeyUsage".to_owned())),
                (eku.code_signing, Eku::Other("codeSigning".to_owned())),
                (eku.email_protection, Eku::Other("emailProtection".to_owned())),
                (eku.time_stamping, Eku::Other("timeStamping".to_owned())),
                (eku.ocsp_signing, Eku::Other("OCSPSigning".to_owned())),
            ];
            extended_key_usages.extend(named.into_iter().filter(|(on, _)| *on).map(|(_, e)| e));
            extended_key_usages.extend(eku.other.iter().map(|oid| Eku::Other(oid.to_id_string())));
        }

        Ok(Self {
            subject: cert.subject().to_string(),
            subject_cn: first_cn(cert.subject()),
            organizations: cert
                .subject()
                .iter_organization()
                .filter_map(|o| o.as_str().ok())
                .map(str::to_owned)
                .collect(),
            issuer: cert.issuer().to_string(),
            issuer_cn: first_cn(cert.issuer()),
            dns_names,
            ip_addresses,
            is_ca,
            key_usages,
            key_usage_critical,
            extended_key_usages,
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            key_algorithm: spki_algorithm(cert.public_key()),
            serial: hex(cert.raw_serial()),
        })
    }

    /// True when the certificate carries every given DNS name (compared without
    /// regard to case) and IP address.
    #[must_use]
    pub fn has_sans(&self, dns_names: &[String], ip_addresses: &[IpAddr]) -> bool {
        self.missing_sans(dns_names, ip_addresses).is_empty()
    }

    /// The given SANs that the certificate does not carry, for error messages
    /// that name the mismatch.
    #[must_use]
    pub fn missing_sans(&self, dns_names: &[String], ip_addresses: &[IpAddr]) -> Vec<San> {
        let dns = dns_names
            .iter()
            .filter(|want| !self.dns_names.iter().any(|have| have.eq_ignore_ascii_case(want)))
            .map(|d| San::Dns(d.clone()));
        let ips = ip_addresses.iter().filter(|want| !self.ip_addresses.contains(want)).map(|ip| San::Ip(*ip));
        dns.chain(ips).collect()
    }

    /// True when the certificate is no longer valid at `now + within`
    /// (so `expires_within(Duration::ZERO, now)` means "expired at `now`").
    #[must_use]
    pub fn expires_within(&self, within: Duration, now: SystemTime) -> bool {
        now.checked_add(within).is_none_or(|deadline| self.not_after <= deadline)
    }

    /// True when `now` is inside the validity period.
    #[must_use]
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The length of the validity period, notBefore to notAfter.
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.not_after.duration_since(self.not_before).unwrap_or_default()
    }

    /// A stable, human-readable multi-line summary for snapshot tests: subject,
    /// issuer, CA-ness, key algorithm, key usages, extended key usages, SANs and
    /// the validity length. It leaves out absolute dates, the serial and key bytes.
    #[must_use]
    pub fn summary(&self) -> String {
        let join = |items: Vec<String>| {
            if items.is_empty() { "-".to_owned() } else { items.join(", ") }
        };
        let usages = join(self.key_usages.iter().map(ToString::to_string).collect());
        let critical = if self.key_usage_critical { " (critical)" } else { "" };
        let key = self.key_algorithm.map_or_else(|| "unsupported".to_owned(), |alg| alg.to_string());
        let mut out = String::new();
        let _ = writeln!(out, "subject: {}", self.subject);
        let _ = writeln!(out, "issuer: {}", self.issuer);
        let _ = writeln!(out, "is CA: {}", self.is_ca);
        let _ = writeln!(out, "key: {key}");
        let _ = writeln!(out, "key usage{critical}: {usages}");
        let _ = writeln!(
            out,
            "extended key usage: {}",
            join(self.extended_key_usages.iter().map(ToString::to_string).collect())
        );
        let _ = writeln!(out, "DNS names: {}", join(self.dns_names.clone()));
        let _ = writeln!(
            out,
            "IP addresses: {}",
            join(self.ip_addresses.iter().map(ToString::to_string).collect())
        );
        let _ = writeln!(out, "validity: {}", format_length(self.validity()));
        out
    }
}

/// Parses a certificate PEM into a [`CertInfo`].
///
/// # Errors
/// See [`CertInfo::from_pem`].
pub fn inspect(cert_pem: &str) -> Result<CertInfo> {
    CertInfo::from_pem(cert_pem)
}

/// The stable summary of a certificate PEM; see [`CertInfo::summary`].
///
/// # Errors
/// See [`CertInfo::from_pem`].
pub fn summary(cert_pem: &str) -> Result<String> {
    Ok(CertInfo::from_pem(cert_pem)?.summary())
}

/// Whether `cert_pem` was issued by `ca_pem`: its issuer name equals the CA's
/// subject byte for byte and its signature verifies with the CA's public key
/// (RSA PKCS#1 v1.5 or ECDSA).
///
/// # Errors
/// When either PEM cannot be parsed, or the signature uses an algorithm that
/// cannot be checked. A wrong signature is `Ok(false)`, not an error.
pub fn verify_signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool> {
    let cert_der = pem_to_cert_der(cert_pem, "certificate")?;
    let cert = parse_cert_der(&cert_der, "certificate")?;
    let ca_der = pem_to_cert_der(ca_pem, "CA certificate")?;
    let ca = parse_cert_der(&ca_der, "CA certificate")?;
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Ok(false);
    }
    match cert.verify_signature(Some(ca.public_key())) {
        Ok(()) => Ok(true),
        Err(X509Error::SignatureVerificationError) => Ok(false),
        Err(e) => Err(PkiError::Verification {
            subject: cert.subject().to_string(),
            ca: ca.subject().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The CA pin of `kubeadm join --discovery-token-ca-cert-hash`: `sha256:`
/// followed by the lowercase hex SHA-256 of the certificate's DER
/// `SubjectPublicKeyInfo`.
///
/// # Errors
/// When the PEM is not a certificate.
pub fn ca_pin(ca_cert_pem: &str) -> Result<String> {
    let der = pem_to_cert_der(ca_cert_pem, "CA certificate")?;
    let cert = parse_cert_der(&der, "CA certificate")?;
    let hash = digest::digest(&digest::SHA256, cert.public_key().raw);
    Ok(format!("sha256:{}", hex(hash.as_ref())))
}

/// `bytes` as lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Whether `key` is the private half of the certificate's public key. An
/// unreadable certificate does not match.
#[must_use]
pub fn key_matches_cert(key: &PrivateKey, cert_pem: &str) -> bool {
    let Ok(der) = pem_to_cert_der(cert_pem, "certificate") else {
        return false;
    };
    parse_cert_der(&der, "certificate").is_ok_and(|cert| spki_matches_key(cert.public_key(), key))
}

/// Whether a `SubjectPublicKeyInfo` holds the public half of `key`.
pub(crate) fn spki_matches_key(spki: &SubjectPublicKeyInfo<'_>, key: &PrivateKey) -> bool {
    spki_algorithm(spki) == Some(key.algorithm())
        && spki.subject_public_key.data.as_ref() == key.public_key_raw()
}

/// The supported algorithm of a public key, if it is one.
fn spki_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyAlgorithm> {
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => KeyAlgorithm::from_rsa_bits(rsa.key_size()),
        PublicKey::EC(_) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 {
                Some(KeyAlgorithm::EcdsaP256)
            } else if curve == OID_NIST_EC_P384 {
                Some(KeyAlgorithm::EcdsaP384)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The DER of the first `CERTIFICATE` block in a PEM text.
pub(crate) fn pem_to_cert_der(cert_pem: &str, what: &'static str) -> Result<Vec<u8>> {
    let blocks =
        pem::parse_many(cert_pem).map_err(|e| PkiError::InvalidPem { what, reason: e.to_string() })?;
    blocks
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .ok_or_else(|| PkiError::InvalidPem { what, reason: "no \"CERTIFICATE\" PEM block found".to_owned() })
}

/// Parses DER as one X.509 certificate with nothing after it.
pub(crate) fn parse_cert_der<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::InvalidPem { what, reason: "trailing data after the certificate".to_owned() }),
        Err(e) => Err(PkiError::InvalidPem { what, reason: format!("not an X.509 certificate: {e}") }),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
}

/// `365d 5m`, `3650d`, `1h 30s`: the non-zero parts, largest first.
fn format_length(length: Duration) -> String {
    let secs = length.as_secs();
    let parts =
        [(secs / 86_400, "d"), (secs % 86_400 / 3600, "h"), (secs % 3600 / 60, "m"), (secs % 60, "s")];
    let text: Vec<String> =
        parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if text.is_empty() { "0s".to_owned() } else { text.join(" ") }
}
