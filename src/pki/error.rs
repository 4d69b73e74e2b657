//! The one error type of the PKI module.
//!
//! Every message says what failed and on which input (a common name, a SAN, a
//! PEM label, a user name). None of them ever contains key material.

use super::key::KeyAlgorithm;

/// Result type of the PKI module.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Everything that can go wrong while generating, signing, reading or
/// checking keys, certificates and kubeconfigs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A key algorithm name is not one of kubeadm's `encryptionAlgorithm` values.
    #[error(
        "unknown key algorithm {input:?}: expected one of RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"
    )]
    UnknownKeyAlgorithm {
        /// The name that was given.
        input: String,
    },

    /// The crypto backend failed to generate a key.
    #[error("could not generate a {algorithm} private key: {reason}")]
    KeyGeneration {
        /// The algorithm that was asked for.
        algorithm: KeyAlgorithm,
        /// What the backend reported.
        reason: String,
    },

    /// A PEM document could not be read as the expected object.
    #[error("could not read {what} PEM: {reason}")]
    InvalidPem {
        /// What was expected: "private key", "certificate", ...
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// A private key was well-formed but is not one kscript can use.
    #[error("unsupported private key: {reason}")]
    UnsupportedKey {
        /// Which kind of key it was.
        reason: String,
    },

    /// A subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {input:?}: {reason}")]
    InvalidSan {
        /// The SAN as given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// An extended key usage name is not known.
    #[error("unknown extended key usage {input:?}: expected serverAuth, clientAuth or a dotted OID")]
    UnknownEku {
        /// The name that was given.
        input: String,
    },

    /// A service CIDR could not be parsed or has no room for a first address.
    #[error("invalid service CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The CIDR as given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A certificate spec cannot be turned into a certificate.
    #[error("invalid certificate spec for {common_name:?}: {reason}")]
    InvalidSpec {
        /// The common name of the spec.
        common_name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The CA given to sign a leaf cannot be used for that.
    #[error("CA certificate {subject:?} cannot sign: {reason}")]
    UnusableCa {
        /// The subject of the CA certificate.
        subject: String,
        /// Why: not a CA, key mismatch, expired.
        reason: String,
    },

    /// Building or signing the certificate failed.
    #[error("could not sign certificate {common_name:?}: {reason}")]
    Signing {
        /// The common name of the certificate being signed.
        common_name: String,
        /// What the backend reported.
        reason: String,
    },

    /// A signature could not be checked at all (as opposed to checked and found wrong).
    #[error("could not verify certificate {subject:?} against CA {ca:?}: {reason}")]
    Verification {
        /// The subject of the certificate being checked.
        subject: String,
        /// The subject of the CA.
        ca: String,
        /// Why the check could not be made.
        reason: String,
    },

    /// The injected clock returned a time that cannot go in a certificate.
    #[error("unusable clock time: {reason}")]
    Clock {
        /// Why the time was refused.
        reason: String,
    },

    /// The injected serial source returned an unusable serial number.
    #[error("unusable certificate serial number: {reason}")]
    Serial {
        /// Why the serial was refused.
        reason: String,
    },

    /// A kubeconfig could not be built.
    #[error("could not build the kubeconfig for user {user:?}: {reason}")]
    Kubeconfig {
        /// The user the kubeconfig is for.
        user: String,
        /// What is wrong.
        reason: String,
    },

    /// A kubeconfig document could not be parsed.
    #[error("could not parse kubeconfig: {reason}")]
    KubeconfigParse {
        /// What the YAML parser reported.
        reason: String,
    },
}
