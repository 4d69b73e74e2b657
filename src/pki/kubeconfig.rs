//! Kubeconfig files as kubeadm writes them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::error::{PkiError, Result};
use super::inspect::{parse_cert_der, pem_to_cert_der};

/// How the kubeconfig's user authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeconfigAuth {
    /// A client certificate and key embedded as `client-certificate-data` /
    /// `client-key-data` (what kubeadm writes).
    Embedded {
        /// The client certificate PEM.
        cert_pem: String,
        /// The client key PEM.
        key_pem: String,
    },
    /// A client certificate and key referenced by path as `client-certificate`
    /// / `client-key` (kubelet.conf after kubelet-finalize).
    Files {
        /// Path of the certificate file.
        cert_path: String,
        /// Path of the key file.
        key_path: String,
    },
    /// A bearer token (`token`).
    Token(String),
}

/// What a kubeconfig should contain: one cluster, one user, one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    /// Cluster name (`kubernetes` unless `clusterName` says otherwise).
    pub cluster_name: String,
    /// API server URL, e.g. `https://10.0.0.10:6443`.
    pub server: String,
    /// The cluster CA certificate PEM, embedded as `certificate-authority-data`.
    pub ca_pem: String,
    /// User name, e.g. `kubernetes-admin`.
    pub user: String,
    /// How that user authenticates.
    pub auth: KubeconfigAuth,
}

impl KubeconfigSpec {
    /// The context name, `<user>@<cluster>`, which is also the current context.
    #[must_use]
    pub fn context_name(&self) -> String {
        format!("{}@{}", self.user, self.cluster_name)
    }
}

/// A kubeconfig document (the part of clientcmd's `v1.Config` kubeadm uses).
/// Fields serialize in the sorted order kubeadm's files have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Named clusters.
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    /// Named contexts.
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// Name of the context in use.
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    /// Always `Config`.
    pub kind: String,
    /// Always empty in kubeadm's files.
    #[serde(default)]
    pub preferences: Preferences,
    /// Named users.
    #[serde(default)]
    pub users: Vec<NamedUser>,
}

/// The (empty) `preferences` map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {}

/// An entry of `clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// The cluster.
    pub cluster: Cluster,
    /// Its name.
    pub name: String,
}

/// A cluster: where the API server is and which CA it is trusted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Base64 of the CA certificate PEM.
    #[serde(rename = "certificate-authority-data", default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// API server URL.
    pub server: String,
}

/// An entry of `contexts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// The context.
    pub context: ContextRef,
    /// Its name.
    pub name: String,
}

/// A context: a cluster and a user, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRef {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
}

/// An entry of `users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Its name.
    pub name: String,
    /// The credentials.
    pub user: UserAuth,
}

/// Credentials of a user; unset fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAuth {
    /// Path of the client certificate.
    #[serde(rename = "client-certificate", default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Base64 of the client certificate PEM.
    #[serde(rename = "client-certificate-data", default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Path of the client key.
    #[serde(rename = "client-key", default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Base64 of the client key PEM.
    #[serde(rename = "client-key-data", default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Kubeconfig {
    /// The document a spec describes.
    ///
    /// # Errors
    /// When a name or the server is empty, the CA or client certificate is not
    /// a certificate PEM, or the client key is not a private key PEM.
    pub fn from_spec(spec: &KubeconfigSpec) -> Result<Self> {
        let fail = |reason: String| PkiError::Kubeconfig { user: spec.user.clone(), reason };
        for (field, value) in
            [("cluster name", &spec.cluster_name), ("server", &spec.server), ("user", &spec.user)]
        {
            if value.trim().is_empty() {
                return Err(fail(format!("the {field} is empty")));
            }
        }
        check_cert_pem(&spec.ca_pem, "CA certificate").map_err(&fail)?;

        let user = match &spec.auth {
            KubeconfigAuth::Embedded { cert_pem, key_pem } => {
                check_cert_pem(cert_pem, "client certificate").map_err(&fail)?;
                check_key_pem(key_pem).map_err(&fail)?;
                UserAuth {
                    client_certificate_data: Some(STANDARD.encode(cert_pem)),
                    client_key_data: Some(STANDARD.encode(key_pem)),
                    ..UserAuth::default()
                }
            }
            KubeconfigAuth::Files { cert_path, key_path } => {
                if cert_path.is_empty() || key_path.is_empty() {
                    return Err(fail("a client certificate or key path is empty".to_owned()));
                }
                UserAuth {
                    client_certificate: Some(cert_path.clone()),
                    client_key: Some(key_path.clone()),
                    ..UserAuth::default()
                }
            }
            KubeconfigAuth::Token(token) => {
                if token.is_empty() {
                    return Err(fail("the token is empty".to_owned()));
                }
                UserAuth { token: Some(token.clone()), ..UserAuth::default() }
            }
        };

        let context = spec.context_name();
        Ok(Self {
            api_version: "v1".to_owned(),
            clusters: vec![NamedCluster {
                cluster: Cluster {
                    certificate_authority_data: Some(STANDARD.encode(&spec.ca_pem)),
                    server: spec.server.clone(),
                },
                name: spec.cluster_name.clone(),
            }],
            contexts: vec![NamedContext {
                context: ContextRef { cluster: spec.cluster_name.clone(), user: spec.user.clone() },
                name: context.clone(),
            }],
            current_context: context,
            kind: "Config".to_owned(),
            preferences: Preferences {},
            users: vec![NamedUser { name: spec.user.clone(), user }],
        })
    }

    /// Serializes as YAML in kubeadm's layout (sorted keys, list items at the
    /// parent key's indentation, base64 on one line).
    ///
    /// # Errors
    /// When the YAML serializer fails.
    pub fn to_yaml(&self) -> Result<String> {
        let options = serde_saphyr::ser_options! {
            prefer_block_scalars: false,
        };
        serde_saphyr::to_string_with_options(self, options).map_err(|e| PkiError::Kubeconfig {
            user: self.users.first().map(|u| u.name.clone()).unwrap_or_default(),
            reason: format!("YAML serialization failed: {e}"),
        })
    }

    /// A copy with embedded certificates, keys and tokens replaced by stable
    /// placeholders (`[CERTIFICATE DATA]`, `[PRIVATE KEY DATA]`, `[TOKEN]`),
    /// for snapshots and logs.
    #[must_use]
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        let replace = |field: &mut Option<String>, placeholder: &str| {
            if field.is_some() {
                *field = Some(placeholder.to_owned());
            }
        };
        for named in &mut copy.clusters {
            replace(&mut named.cluster.certificate_authority_data, "[CERTIFICATE DATA]");
        }
        for named in &mut copy.users {
            replace(&mut named.user.client_certificate_data, "[CERTIFICATE DATA]");
            replace(&mut named.user.client_key_data, "[PRIVATE KEY DATA]");
            replace(&mut named.user.token, "[TOKEN]");
        }
        copy
    }

    /// Parses a kubeconfig YAML document.
    ///
    /// # Errors
    /// When the text is not YAML of a kubeconfig's shape.
    pub fn from_yaml(yaml: &str) -> Result<Self> {
        serde_saphyr::from_str(yaml).map_err(|e| PkiError::KubeconfigParse { reason: e.to_string() })
    }
}

/// A kubeconfig as YAML, laid out as kubeadm writes it: `apiVersion`,
/// `clusters`, `contexts`, `current-context` (`<user>@<cluster>`), `kind`,
/// `preferences: {}`, `users`.
///
/// # Errors
/// See [`Kubeconfig::from_spec`].
pub fn kubeconfig_yaml(spec: &KubeconfigSpec) -> Result<String> {
    Kubeconfig::from_spec(spec)?.to_yaml()
}

fn check_cert_pem(text: &str, what: &'static str) -> std::result::Result<(), String> {
    let der = pem_to_cert_der(text, what).map_err(|e| e.to_string())?;
    parse_cert_der(&der, what).map(|_| ()).map_err(|e| e.to_string())
}

/// The client key must be a private key kscript can read, by the rule every key is read with
/// (`PrivateKey::from_pem`: a leading `EC PARAMETERS` block is passed over).
fn check_key_pem(text: &str) -> std::result::Result<(), String> {
    super::key::PrivateKey::from_pem(text).map(|_| ()).map_err(|e| format!("the client key: {e}"))
}
