//! Keys, certificates and kubeconfigs for a kubeadm-style control plane, in
//! pure Rust (rcgen on aws-lc-rs to issue, x509-parser to read and verify).
//!
//! This module knows nothing of scripts: it takes plain values and returns
//! PEM/YAML strings, and does no file I/O. Key material never appears in
//! `Debug` output or error messages.
//!
//! The facts it follows (validities, backdating, key usages, encodings) are
//! those of kubeadm's v1beta4-era behaviour.

mod error;
mod key;

pub use error::{PkiError, Result};
pub use key::{KeyAlgorithm, PrivateKey, generate_key, generate_keys};
