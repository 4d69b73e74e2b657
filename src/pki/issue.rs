//! Issuing certificates the way kubeadm does: self-signed CAs and leaves
//! signed by them.

use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use super::context::Context;
use super::error::{PkiError, Result};
use super::inspect::{parse_cert_der, pem_to_cert_der, spki_matches_key};
use super::key::PrivateKey;
use super::spec::{BACKDATE, CertSpec, Eku, San, dotted_oid, validate_dns_name};

/// Issues a self-signed CA certificate for `key`, as kubeadm does:
/// basicConstraints `CA:TRUE` (critical); keyUsage digitalSignature,
/// keyEncipherment, keyCertSign (critical); a DNS SAN equal to the CN (then
/// the spec's own SANs); a subject key identifier; notBefore "now" minus
/// five minutes and notAfter "now" plus `spec.validity`. Returns the PEM.
///
/// # Errors
/// When the spec is not a CA spec or cannot be encoded (see [`CertSpec`]),
/// or the clock or serial source give unusable values.
pub fn self_signed_ca(spec: &CertSpec, key: &PrivateKey, ctx: &Context) -> Result<String> {
    if !spec.is_ca {
        return Err(invalid_spec(spec, "a self-signed CA needs a spec with is_ca set"));
    }
    let now = unix_seconds(ctx.now())?;
    let not_after = add_validity(spec, now)?;

    let mut params = base_params(spec, ctx, now, not_after)?;
    let cn_san = Ia5String::try_from(spec.common_name.as_str())
        .map_err(|_| invalid_spec(spec, "a CA's common name is also its DNS SAN and must be ASCII"))?;
    params
        .subject_alt_names
        .retain(|san| !matches!(san, SanType::DnsName(name) if name.as_str() == spec.common_name));
    params.subject_alt_names.insert(0, SanType::DnsName(cn_san));
    params.use_authority_key_identifier_extension = false;

    let cert = params.self_signed(key.key_pair()).map_err(|e| signing_failed(spec, &e))?;
    Ok(cert.pem())
}

/// Issues a certificate for `key` signed by the CA (`ca_cert_pem`, `ca_key`),
/// as kubeadm does: keyUsage digitalSignature, keyEncipherment (critical;
/// plus keyCertSign and `CA:TRUE` if the spec is a CA), the spec's extended
/// key usages and SANs, an authority key identifier equal to the CA's subject
/// key identifier, the issuer copied from the CA's subject byte for byte,
/// notBefore "now" minus five minutes, and notAfter "now" plus
/// `spec.validity` but never after the CA's own notAfter. Returns the PEM.
///
/// # Errors
/// When the CA is not a CA, has expired, does not match `ca_key`, or has a
/// subject that cannot be copied exactly; when the spec cannot be encoded;
/// or when the clock or serial source give unusable values.
pub fn sign_leaf(
    spec: &CertSpec,
    key: &PrivateKey,
    ca_cert_pem: &str,
    ca_key: &PrivateKey,
    ctx: &Context,
) -> Result<String> {
    let ca_der = pem_to_cert_der(ca_cert_pem, "CA certificate")?;
    let ca = parse_cert_der(&ca_der, "CA certificate")?;
    let unusable = |reason: String| PkiError::UnusableCa { subject: ca.subject().to_string(), reason };
    check_can_sign(&ca).map_err(unusable)?;
    if !spki_matches_key(ca.public_key(), ca_key) {
        return Err(unusable("the CA private key given does not match the CA certificate".to_owned()));
    }

    let now = unix_seconds(ctx.now())?;
    let ca_not_after = ca.validity().not_after.timestamp();
    if ca_not_after <= now {
        return Err(unusable(format!("it expired at {}", ca.validity().not_after)));
    }
    let not_after = add_validity(spec, now)?.min(ca_not_after);

    let mut params = base_params(spec, ctx, now, not_after)?;
    params.use_authority_key_identifier_extension = true;

    let issuer = Issuer::from_ca_cert_der(&ca_der.as_slice().into(), ca_key.key_pair())
        .map_err(|e| unusable(format!("its certificate cannot be used as an issuer: {e}")))?;
    let cert = params.signed_by(key.key_pair(), &issuer).map_err(|e| signing_failed(spec, &e))?;

    // Go (and so Kubernetes) finds a certificate's parent by comparing the raw
    // issuer bytes with the raw subject bytes; refuse anything but an exact copy.
    let leaf = parse_cert_der(cert.der(), "signed certificate")?;
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return Err(unusable(
            "its subject cannot be reproduced byte for byte as the issuer name \
             (it repeats an attribute or uses an unusual string type)"
                .to_owned(),
        ));
    }
    Ok(cert.pem())
}

/// Why a parsed certificate cannot sign others, if it cannot.
fn check_can_sign(ca: &X509Certificate<'_>) -> std::result::Result<(), String> {
    match ca.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(_) => return Err("it is not a CA (no basicConstraints CA:TRUE)".to_owned()),
        Err(e) => return Err(format!("its basicConstraints cannot be read: {e}")),
    }
    match ca.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => {
            Err("its key usage does not include keyCertSign".to_owned())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("its key usage cannot be read: {e}")),
    }
}

/// Everything both kinds of certificate share: subject, SANs, serial, times,
/// key usages, EKUs and CA-ness.
fn base_params(spec: &CertSpec, ctx: &Context, now: i64, not_after: i64) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_name(spec)?;
    params.subject_alt_names =
        spec.sans().into_iter().map(|san| to_rcgen_san(spec, san)).collect::<Result<_>>()?;
    params.serial_number = Some(SerialNumber::from_slice(&ctx.serial()?));
    let backdate = i64::try_from(BACKDATE.as_secs()).unwrap_or(i64::MAX);
    params.not_before = to_datetime(now.saturating_sub(backdate))?;
    params.not_after = to_datetime(not_after)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    if spec.is_ca {
        params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    } else {
        // Go writes basicConstraints CA:FALSE on kubeadm's leaves too.
        params.is_ca = IsCa::ExplicitNoCa;
    }
    for eku in &spec.extended_key_usages {
        let purpose = to_rcgen_eku(spec, eku)?;
        params.insert_extended_key_usage(purpose);
    }
    Ok(params)
}

/// The subject as Go's crypto/x509 writes it: O before CN, each value a
/// `PrintableString` when it fits that alphabet, else a `UTF8String`.
fn subject_name(spec: &CertSpec) -> Result<DistinguishedName> {
    if spec.common_name.is_empty() {
        return Err(invalid_spec(spec, "the common name is empty"));
    }
    if spec.organizations.len() > 1 {
        return Err(invalid_spec(
            spec,
            "at most one organization (O) is supported; the certificate encoder \
             cannot repeat a name attribute",
        ));
    }
    let mut name = DistinguishedName::new();
    for org in &spec.organizations {
        if org.is_empty() {
            return Err(invalid_spec(spec, "an organization (O) is empty"));
        }
        name.push(DnType::OrganizationName, name_value(org));
    }
    name.push(DnType::CommonName, name_value(&spec.common_name));
    Ok(name)
}

fn name_value(text: &str) -> DnValue {
    PrintableString::try_from(text)
        .map_or_else(|_| DnValue::Utf8String(text.to_owned()), DnValue::PrintableString)
}

fn to_rcgen_san(spec: &CertSpec, san: San) -> Result<SanType> {
    match san {
        San::Ip(ip) => Ok(SanType::IpAddress(ip)),
        San::Dns(name) => {
            validate_dns_name(&name).map_err(|e| invalid_spec(spec, &e.to_string()))?;
            let ia5 = Ia5String::try_from(name.as_str())
                .map_err(|e| invalid_spec(spec, &format!("DNS SAN {name:?}: {e}")))?;
            Ok(SanType::DnsName(ia5))
        }
    }
}

fn to_rcgen_eku(spec: &CertSpec, eku: &Eku) -> Result<ExtendedKeyUsagePurpose> {
    match eku {
        Eku::ServerAuth => Ok(ExtendedKeyUsagePurpose::ServerAuth),
        Eku::ClientAuth => Ok(ExtendedKeyUsagePurpose::ClientAuth),
        Eku::Other(text) => dotted_oid(text).map(ExtendedKeyUsagePurpose::Other).ok_or_else(|| {
            invalid_spec(
                spec,
                &format!("extended key usage {text:?} must be serverAuth, clientAuth or a dotted OID"),
            )
        }),
    }
}

/// "now" plus the spec's validity, in whole seconds.
fn add_validity(spec: &CertSpec, now: i64) -> Result<i64> {
    if spec.validity.as_secs() == 0 {
        return Err(invalid_spec(spec, "the validity must be at least one second"));
    }
    i64::try_from(spec.validity.as_secs())
        .ok()
        .and_then(|secs| now.checked_add(secs))
        .filter(|end| to_datetime(*end).is_ok())
        .ok_or_else(|| invalid_spec(spec, "the validity ends after the year 9999"))
}

/// Whole seconds since the Unix epoch (certificate times have no fractions).
fn unix_seconds(time: SystemTime) -> Result<i64> {
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| PkiError::Clock { reason: "the clock is before 1970".to_owned() })?;
    i64::try_from(since.as_secs())
        .map_err(|_| PkiError::Clock { reason: "the clock is too far in the future".to_owned() })
}

fn to_datetime(seconds: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).ok().filter(|t| t.year() <= 9999).ok_or_else(|| {
        PkiError::Clock { reason: format!("{seconds} seconds after 1970 cannot be written in a certificate") }
    })
}

fn invalid_spec(spec: &CertSpec, reason: &str) -> PkiError {
    PkiError::InvalidSpec { common_name: spec.common_name.clone(), reason: reason.to_owned() }
}

fn signing_failed(spec: &CertSpec, error: &rcgen::Error) -> PkiError {
    PkiError::Signing { common_name: spec.common_name.clone(), reason: error.to_string() }
}
