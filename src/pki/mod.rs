//! Keys, certificates and kubeconfigs for a kubeadm-style control plane, in
//! pure Rust (rcgen on aws-lc-rs to issue, x509-parser to read and verify).
//!
//! This module knows nothing of scripts: it takes plain values and returns
//! PEM/YAML strings, and does no file I/O. Time and serial numbers come from
//! a [`Context`], so output is reproducible in tests. Key material never
//! appears in `Debug` output or error messages.
//!
//! The facts it follows (validities, backdating, key usages, encodings) are
//! those of kubeadm's v1beta4-era behaviour.

mod context;
mod error;
mod inspect;
mod issue;
mod key;
mod kubeconfig;
mod spec;

pub use context::{Clock, Context, FixedClock, RandomSerials, SequentialSerials, SerialSource, SystemClock};
pub use error::{PkiError, Result};
pub use inspect::{CertInfo, KeyUsage, ca_pin, hex, inspect, key_matches_cert, summary, verify_signed_by};
pub use issue::{self_signed_ca, sign_leaf};
pub use key::{KeyAlgorithm, PrivateKey, generate_key, generate_keys};
pub use kubeconfig::{
    Cluster, ContextRef, Kubeconfig, KubeconfigAuth, KubeconfigSpec, NamedCluster, NamedContext, NamedUser,
    Preferences, UserAuth, kubeconfig_yaml,
};
pub use spec::{BACKDATE, CA_VALIDITY, CERT_VALIDITY, CertSpec, Eku, San, first_service_ip, parse_san};

#[cfg(test)]
mod tests;
