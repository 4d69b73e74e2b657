//! Join material: bootstrap tokens, the detached JWS that signs `cluster-info`, and the
//! certificate key that encrypts the shared control-plane certificates.
//!
//! The facts follow Kubernetes' bootstrap token design: a token is `[a-z0-9]{6}.[a-z0-9]{16}`
//! (id.secret); the controller manager's bootstrap signer adds to `kube-public/cluster-info`
//! a key `jws-kubeconfig-<id>` holding a detached JWS (HS256, keyed by the token's secret,
//! `kid` the token id) of the `kubeconfig` value; the certificate key is 32 random bytes
//! (hex) for AES-256-GCM, the nonce written before the ciphertext.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A bootstrap token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is a credential: never printed.
        write!(f, "Token({}.****************)", self.id)
    }
}

const TOKEN_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl Token {
    /// Parses `id.secret`, checking the format.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| TOKEN_CHARS.contains(&b));
        match text.split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(Self { id: id.into(), secret: secret.into() }),
            _ => Err("a bootstrap token is 6 and 16 characters of [a-z0-9] joined by a dot (abcdef.0123456789abcdef)".into()),
        }
    }

    /// A new random token.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pick = |n: usize| -> Result<String, String> {
            let mut out = String::with_capacity(n);
            while out.len() < n {
                let mut b = [0u8; 1];
                rng.fill(&mut b).map_err(|_| "no randomness available".to_string())?;
                // Rejection sampling keeps every character equally likely.
                if usize::from(b[0]) < 252 {
                    out.push(char::from(TOKEN_CHARS[usize::from(b[0]) % TOKEN_CHARS.len()]));
                }
            }
            Ok(out)
        };
        Ok(Self { id: pick(6)?, secret: pick(16)? })
    }

    /// `id.secret`.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

/// Why a detached JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the signature is not a detached JWS (HEADER..SIGNATURE)")]
    Malformed,
    #[error("the JWS header is not HS256 for token id {0}")]
    WrongHeader(String),
    #[error("the signature does not match: cluster-info was altered, or the token is wrong")]
    BadSignature,
}

/// Signs `content` as the bootstrap signer does: `base64url(header)..base64url(hmac)`.
pub fn sign_detached(content: &str, token: &Token) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id));
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret.as_bytes());
    let sig = hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// Checks a detached JWS of `content` against the token: the header must say HS256 (and,
/// when it names one, this token's id); the HMAC must match, compared in constant time.
pub fn verify_detached(jws: &str, content: &str, token: &Token) -> Result<(), JwsError> {
    let mut parts = jws.split('.');
    let (Some(header), Some(""), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwsError::Malformed)?;
    let h: serde_json::Value = serde_json::from_slice(&header_json).map_err(|_| JwsError::Malformed)?;
    let kid_ok = h.get("kid").is_none_or(|k| k.as_str() == Some(token.id.as_str()));
    if h.get("alg").and_then(|a| a.as_str()) != Some("HS256") || !kid_ok {
        return Err(JwsError::WrongHeader(token.id.clone()));
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| JwsError::Malformed)?;
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    let key = hmac::Key::new(hmac::HMAC_SHA256, token.secret.as_bytes());
    hmac::verify(&key, input.as_bytes(), &sig).map_err(|_| JwsError::BadSignature)
}

/// What discovery learnt from a signed `cluster-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// The API server URL cluster-info names.
    pub server: String,
    /// The `sha256:` pin of the CA.
    pub pin: String,
    /// The signed `kubeconfig` text, to compare with a second fetch.
    pub kubeconfig: String,
}

/// Why a `cluster-info` `ConfigMap` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cluster-info has no `kubeconfig` key: it is not the ConfigMap kubeadm writes")]
    NoKubeconfig,
    #[error(
        "cluster-info holds no signature for token id `{0}` (no key jws-kubeconfig-{0}): the token is unknown, or it has expired (the bootstrap signer drops the signatures of expired and deleted tokens). Make a new token on the control plane, `kscript run token.rhai` (or `kubeadm token create`), and join with it"
    )]
    UnknownToken(String),
    #[error("cluster-info's signature for token id `{id}` is refused: {reason}")]
    BadSignature { id: String, reason: JwsError },
    #[error("cluster-info's kubeconfig is unusable: {0}")]
    BadKubeconfig(String),
    #[error("the cluster CA does not match the pins: expected {}, found {actual}", expected.join(" or "))]
    PinMismatch { expected: Vec<String>, actual: String },
    #[error(
        "cluster-info differs between the first fetch and the one over TLS verified with its CA: the API server is not the one that signed it, or it changed meanwhile"
    )]
    Changed,
}

impl DiscoveryError {
    /// Whether asking again may mend it: only a cluster-info not signed for the token, which
    /// the controller manager's bootstrap signer may not have got to yet (its token Secret is
    /// new, or the controller manager is still starting). Everything else is in what was
    /// signed, or in the signature: asking again brings the same.
    pub fn may_mend(&self) -> bool {
        matches!(self, DiscoveryError::UnknownToken(_))
    }
}

/// The `kubeconfig` text of a `cluster-info` `ConfigMap`.
pub fn cluster_info_kubeconfig(configmap: &serde_json::Value) -> Result<&str, DiscoveryError> {
    configmap
        .pointer("/data/kubeconfig")
        .and_then(serde_json::Value::as_str)
        .ok_or(DiscoveryError::NoKubeconfig)
}

/// Checks a `cluster-info` `ConfigMap` fetched without trusting the server, as kubeadm's token
/// discovery does: the detached JWS under `jws-kubeconfig-<token id>` must verify with the
/// token's secret, and the CA it names must match one of `pins` (unless `skip_ca` and there
/// are no pins). Returns the CA, the server and the pin.
pub fn check_cluster_info(
    configmap: &serde_json::Value,
    token: &Token,
    pins: &[String],
    skip_ca: bool,
) -> Result<Discovered, DiscoveryError> {
    let kubeconfig = cluster_info_kubeconfig(configmap)?;
    let key = format!("jws-kubeconfig-{}", token.id);
    let jws = configmap
        .pointer(&format!("/data/{key}"))
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| DiscoveryError::UnknownToken(token.id.clone()))?;
    verify_detached(jws, kubeconfig, token)
        .map_err(|reason| DiscoveryError::BadSignature { id: token.id.clone(), reason })?;
    let (ca, server) = kubeconfig_ca(kubeconfig)?;
    let pin = crate::pki::ca_pin(&ca).map_err(|e| DiscoveryError::BadKubeconfig(e.to_string()))?;
    let pinned = pins.iter().any(|p| p.eq_ignore_ascii_case(&pin));
    let unpinned_on_purpose = pins.is_empty() && skip_ca;
    if !(pinned || unpinned_on_purpose) {
        return Err(DiscoveryError::PinMismatch { expected: pins.to_vec(), actual: pin });
    }
    Ok(Discovered { ca_pem: ca, server, pin, kubeconfig: kubeconfig.to_string() })
}

/// The CA (PEM) and the server of a kubeconfig's first cluster, as discovery trusts them.
pub fn kubeconfig_ca(kubeconfig: &str) -> Result<(String, String), DiscoveryError> {
    // Read loosely: kubeadm writes `contexts: null` and `users: null` in cluster-info.
    let kc: serde_json::Value =
        serde_saphyr::from_str(kubeconfig).map_err(|e| DiscoveryError::BadKubeconfig(e.to_string()))?;
    let cluster = kc
        .pointer("/clusters/0/cluster")
        .ok_or_else(|| DiscoveryError::BadKubeconfig("it names no cluster".into()))?;
    let text = |key: &str| cluster.get(key).and_then(serde_json::Value::as_str);
    let data = text("certificate-authority-data")
        .ok_or_else(|| DiscoveryError::BadKubeconfig("it holds no certificate-authority-data".into()))?;
    let server = text("server").ok_or_else(|| DiscoveryError::BadKubeconfig("it names no server".into()))?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            DiscoveryError::BadKubeconfig("its certificate-authority-data is not base64 of PEM".into())
        })?;
    Ok((ca, server.to_string()))
}

/// A new certificate key: 32 random bytes, as hex.
pub fn generate_certificate_key() -> Result<String, String> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| "no randomness available".to_string())?;
    Ok(crate::pki::hex(&key))
}

fn key_bytes(hex: &str) -> Result<[u8; 32], String> {
    // `from_str_radix` alone would take a sign (`+f`).
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a certificate key is 64 hex digits (32 bytes)".into());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| "not hex".to_string())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| "a certificate key is hex digits".to_string())?;
    }
    Ok(out)
}

/// Encrypts `data` with AES-256-GCM under the hex certificate key; the 12-byte nonce comes first.
pub fn encrypt(data: &[u8], key_hex: &str) -> Result<Vec<u8>, String> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key_bytes(key_hex)?).map_err(|_| "bad key".to_string())?,
    );
    let mut nonce = [0u8; 12];
    SystemRandom::new().fill(&mut nonce).map_err(|_| "no randomness available".to_string())?;
    let mut sealed = data.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed)
        .map_err(|_| "encryption failed".to_string())?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(out)
}

/// Decrypts what [`encrypt`] made; fails when the key is wrong or the data was altered.
pub fn decrypt(data: &[u8], key_hex: &str) -> Result<Vec<u8>, String> {
    if data.len() < 12 + 16 {
        return Err("the encrypted data is too short".into());
    }
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key_bytes(key_hex)?).map_err(|_| "bad key".to_string())?,
    );
    let (nonce, sealed) = data.split_at(12);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| "cannot decrypt: the certificate key is wrong, or the data was altered".to_string())?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7515 appendix A.1: the HS256 example, computed with the same HMAC.
    #[test]
    fn rfc7515_hs256_example() {
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .unwrap();
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), input.as_bytes());
        assert_eq!(URL_SAFE_NO_PAD.encode(sig.as_ref()), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    }

    #[test]
    fn detached_jws_round_trip_and_refusals() {
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let content = "apiVersion: v1\nclusters: []\n";
        let jws = sign_detached(content, &token);
        assert!(jws.contains(".."), "{jws}");
        // An independent computation of the same signature.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"abcdef"}"#);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef"), input.as_bytes());
        assert_eq!(jws, format!("{header}..{}", URL_SAFE_NO_PAD.encode(mac.as_ref())));
        verify_detached(&jws, content, &token).unwrap();
        assert_eq!(
            verify_detached(&jws, "apiVersion: v1\nclusters: [x]\n", &token),
            Err(JwsError::BadSignature)
        );
        let wrong = Token::parse("abcdef.0123456789abcdee").unwrap();
        assert_eq!(verify_detached(&jws, content, &wrong), Err(JwsError::BadSignature));
        let other_id = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        assert!(matches!(verify_detached(&jws, content, &other_id), Err(JwsError::WrongHeader(_))));
        assert_eq!(verify_detached("abc.def", content, &token), Err(JwsError::Malformed));
        let none = format!("{}..{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), "");
        assert!(verify_detached(&none, content, &token).is_err());
    }

    #[test]
    fn tokens() {
        assert!(Token::parse("abcdef.0123456789abcdef").is_ok());
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde!",
        ] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
        let t = Token::generate().unwrap();
        assert!(Token::parse(&t.expose()).is_ok());
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    fn signed_cluster_info(token: &Token) -> (serde_json::Value, String, String) {
        use crate::pki::{CertSpec, Context, KeyAlgorithm, generate_key, self_signed_ca};
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = self_signed_ca(&CertSpec::ca("kubernetes"), &key, &Context::system()).unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://192.168.56.10:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
            base64::engine::general_purpose::STANDARD.encode(&ca)
        );
        let jws = sign_detached(&kubeconfig, token);
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": kubeconfig, format!("jws-kubeconfig-{}", token.id): jws}});
        let pin = crate::pki::ca_pin(&ca).unwrap();
        (cm, ca, pin)
    }

    #[test]
    fn cluster_info_checks() {
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let (cm, ca, pin) = signed_cluster_info(&token);
        let found = check_cluster_info(&cm, &token, std::slice::from_ref(&pin), false).unwrap();
        assert_eq!(
            (found.ca_pem.as_str(), found.server.as_str()),
            (ca.as_str(), "https://192.168.56.10:6443")
        );
        assert_eq!(found.pin, pin);
        // Any one pin of several matching is enough.
        let other = format!("sha256:{}", "0".repeat(64));
        check_cluster_info(
            &cm,
            &token,
            &[other.clone(), pin.to_uppercase().replace("SHA256", "sha256")],
            false,
        )
        .unwrap();
        match check_cluster_info(&cm, &token, std::slice::from_ref(&other), false) {
            Err(e @ DiscoveryError::PinMismatch { .. }) if e.may_mend() => {
                panic!("a pin mismatch waits: {e}")
            }
            Err(DiscoveryError::PinMismatch { expected, actual }) => {
                assert_eq!((expected, actual.clone()), (vec![other.clone()], pin.clone()));
                let text = DiscoveryError::PinMismatch { expected: vec![other.clone()], actual }.to_string();
                assert!(text.contains(&other) && text.contains(&pin), "{text}");
            }
            e => panic!("{e:?}"),
        }
        // No pins: refused unless verification is skipped on purpose.
        assert!(matches!(
            check_cluster_info(&cm, &token, &[], false),
            Err(DiscoveryError::PinMismatch { .. })
        ));
        check_cluster_info(&cm, &token, &[], true).unwrap();
        // Another token, a changed payload, no signature.
        let wrong = Token::parse("abcdef.0123456789abcdee").unwrap();
        let e = check_cluster_info(&cm, &wrong, std::slice::from_ref(&pin), false).unwrap_err();
        assert!(matches!(e, DiscoveryError::BadSignature { reason: JwsError::BadSignature, .. }), "{e:?}");
        assert!(!e.may_mend(), "a bad signature waits");
        let unknown = Token::parse("zzzzzz.0123456789abcdef").unwrap();
        let e = check_cluster_info(&cm, &unknown, std::slice::from_ref(&pin), false).unwrap_err();
        assert_eq!(e, DiscoveryError::UnknownToken("zzzzzz".into()));
        assert!(e.may_mend(), "the bootstrap signer may not have signed it yet");
        assert!(e.to_string().contains("kscript run token.rhai"), "{e}");
        let mut tampered = cm.clone();
        let text = tampered["data"]["kubeconfig"].as_str().unwrap().replace("192.168.56.10", "192.168.56.66");
        tampered["data"]["kubeconfig"] = text.into();
        assert!(matches!(
            check_cluster_info(&tampered, &token, std::slice::from_ref(&pin), false),
            Err(DiscoveryError::BadSignature { .. })
        ));
        let mut bare = cm;
        bare["data"].as_object_mut().unwrap().remove("kubeconfig");
        assert_eq!(check_cluster_info(&bare, &token, &[pin], false), Err(DiscoveryError::NoKubeconfig));
    }

    #[test]
    fn certificate_key_encryption() {
        let key = generate_certificate_key().unwrap();
        assert_eq!(key.len(), 64);
        let sealed = encrypt(b"-----BEGIN RSA PRIVATE KEY-----", &key).unwrap();
        assert_eq!(decrypt(&sealed, &key).unwrap(), b"-----BEGIN RSA PRIVATE KEY-----");
        let other = generate_certificate_key().unwrap();
        assert!(decrypt(&sealed, &other).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(decrypt(&tampered, &key).is_err());
        assert!(encrypt(b"x", "abc").is_err());
        assert!(encrypt(b"x", &"+f".repeat(32)).is_err(), "a sign is not a hex digit");
    }
}
