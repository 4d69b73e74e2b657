//! Private keys: the algorithms kubeadm offers, generation (in parallel), and
//! PEM in the encodings kubeadm writes.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm,
};
use x509_parser::der_parser::oid::Oid;
use x509_parser::der_parser::{oid, parse_der};

use super::error::{PkiError, Result};

/// PEM label kubeadm uses for RSA keys (PKCS#1 `RSAPrivateKey`).
const PEM_RSA: &str = "RSA PRIVATE KEY";
/// PEM label kubeadm uses for EC keys (SEC1 `ECPrivateKey`).
const PEM_EC: &str = "EC PRIVATE KEY";
/// PEM label of a PKCS#8 `PrivateKeyInfo`, accepted on input.
const PEM_PKCS8: &str = "PRIVATE KEY";

/// rsaEncryption, the PKCS#8 algorithm of an RSA key.
const OID_RSA_ENCRYPTION: Oid<'static> = oid!(1.2.840.113549.1.1.1);
/// id-ecPublicKey, the PKCS#8 algorithm of an EC key.
const OID_EC_PUBLIC_KEY: Oid<'static> = oid!(1.2.840.10045.2.1);

/// A key algorithm, spelled as kubeadm's `encryptionAlgorithm` setting.
///
/// RSA-2048 is the default, as in kubeadm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// RSA with a 2048-bit modulus (`RSA-2048`, the default).
    #[default]
    Rsa2048,
    /// RSA with a 3072-bit modulus (`RSA-3072`).
    Rsa3072,
    /// RSA with a 4096-bit modulus (`RSA-4096`).
    Rsa4096,
    /// ECDSA on NIST P-256 (`ECDSA-P256`).
    EcdsaP256,
    /// ECDSA on NIST P-384 (`ECDSA-P384`).
    EcdsaP384,
}

impl KeyAlgorithm {
    /// Every supported algorithm, in kubeadm's documentation order.
    pub const ALL: [Self; 5] =
        [Self::Rsa2048, Self::Rsa3072, Self::Rsa4096, Self::EcdsaP256, Self::EcdsaP384];

    /// The kubeadm spelling: `RSA-2048`, `ECDSA-P256`, ...
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA-2048",
            Self::Rsa3072 => "RSA-3072",
            Self::Rsa4096 => "RSA-4096",
            Self::EcdsaP256 => "ECDSA-P256",
            Self::EcdsaP384 => "ECDSA-P384",
        }
    }

    /// True for the RSA algorithms.
    #[must_use]
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// The signature algorithm a key of this kind signs certificates with.
    /// Go's crypto/x509 (and so kubeadm) uses SHA-256 for every RSA size and
    /// the curve's own hash for ECDSA.
    pub(crate) fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// The algorithm of an RSA key with this many modulus bits.
    pub(crate) fn from_rsa_bits(bits: usize) -> Option<Self> {
        match bits {
            2048 => Some(Self::Rsa2048),
            3072 => Some(Self::Rsa3072),
            4096 => Some(Self::Rsa4096),
            _ => None,
        }
    }

    fn ecdsa_signing(self) -> Option<&'static EcdsaSigningAlgorithm> {
        match self {
            Self::EcdsaP256 => Some(&ECDSA_P256_SHA256_ASN1_SIGNING),
            Self::EcdsaP384 => Some(&ECDSA_P384_SHA384_ASN1_SIGNING),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = PkiError;

    /// Parses kubeadm's exact spellings (they are case-sensitive there too).
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| PkiError::UnknownKeyAlgorithm { input: s.to_owned() })
    }
}

/// A private key that can sign certificates.
///
/// Cheap to clone (the key is shared), `Send` and `Sync`. Its `Debug` output
/// names the algorithm only and never shows key material.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    algorithm: KeyAlgorithm,
    /// The key as kubeadm writes it: PKCS#1 DER for RSA, SEC1 DER for EC.
    traditional_der: Vec<u8>,
    /// The same key in the form rcgen signs with.
    pair: rcgen::KeyPair,
}

impl PrivateKey {
    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.inner.algorithm
    }

    /// The key as PEM, exactly as kubeadm writes it: PKCS#1 `RSA PRIVATE KEY`
    /// for RSA keys, SEC1 `EC PRIVATE KEY` (with curve and public key) for EC keys.
    #[must_use]
    pub fn to_pem(&self) -> String {
        let label = if self.inner.algorithm.is_rsa() { PEM_RSA } else { PEM_EC };
        encode_pem(label, &self.inner.traditional_der)
    }

    /// Reads a private key from PEM: PKCS#1 (`RSA PRIVATE KEY`), SEC1
    /// (`EC PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`). The first block whose label
    /// ends in `PRIVATE KEY` is used, so a leading `EC PARAMETERS` block (as
    /// `openssl ecparam -genkey` writes) is skipped.
    ///
    /// # Errors
    /// When the text holds no such PEM block, the block is not a plain private
    /// key (an encrypted one, say), or the key is not one of the [`KeyAlgorithm`]s.
    pub fn from_pem(pem_text: &str) -> Result<Self> {
        let blocks = pem::parse_many(pem_text)
            .map_err(|e| PkiError::InvalidPem { what: "private key", reason: e.to_string() })?;
        let block =
            blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")).or(blocks.first()).ok_or_else(|| {
                PkiError::InvalidPem { what: "private key", reason: "no PEM block found".to_owned() }
            })?;
        match block.tag() {
            PEM_RSA => Self::from_pkcs1_der(block.contents()),
            PEM_EC => Self::from_sec1_or_pkcs8_ec_der(block.contents()),
            PEM_PKCS8 => Self::from_pkcs8_der(block.contents()),
            other => Err(PkiError::InvalidPem {
                what: "private key",
                reason: format!(
                    "PEM block is {other:?}, expected \"{PEM_RSA}\", \"{PEM_EC}\" or \"{PEM_PKCS8}\""
                ),
            }),
        }
    }

    /// The public half as a PEM `PUBLIC KEY` (PKIX `SubjectPublicKeyInfo`), as
    /// kubeadm writes `sa.pub`.
    #[must_use]
    pub fn public_key_pem(&self) -> String {
        encode_pem("PUBLIC KEY", &self.public_key_spki_der())
    }

    /// A stable stand-in for snapshots and logs: `[PRIVATE KEY RSA-2048]`.
    #[must_use]
    pub fn placeholder(&self) -> String {
        format!("[PRIVATE KEY {}]", self.inner.algorithm)
    }

    /// DER `SubjectPublicKeyInfo` of the key.
    pub(crate) fn public_key_spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData as _;
        self.inner.pair.subject_public_key_info()
    }

    /// The raw public key: `RSAPublicKey` DER for RSA, the uncompressed point for EC
    /// (the content of a certificate's subjectPublicKey BIT STRING).
    pub(crate) fn public_key_raw(&self) -> &[u8] {
        self.inner.pair.public_key_raw()
    }

    /// The key in the form rcgen signs with.
    pub(crate) fn key_pair(&self) -> &rcgen::KeyPair {
        &self.inner.pair
    }

    fn from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let rsa = RsaKeyPair::from_der(der).map_err(|e| {
            if e.description_() == "TooSmall" {
                PkiError::UnsupportedKey {
                    reason: "RSA key shorter than 2048 bits (supported: RSA-2048, RSA-3072, \
                             RSA-4096)"
                        .to_owned(),
                }
            } else {
                PkiError::InvalidPem {
                    what: "private key",
                    reason: format!("not a usable PKCS#1 RSA key: {}", e.description_()),
                }
            }
        })?;
        let bits = rsa.public_modulus_len() * 8;
        let algorithm = KeyAlgorithm::from_rsa_bits(bits).ok_or_else(|| PkiError::UnsupportedKey {
            reason: format!("RSA key with a {bits}-bit modulus (supported: RSA-2048, RSA-3072, RSA-4096)"),
        })?;
        Self::assemble(algorithm, der.to_vec())
    }

    fn from_sec1_or_pkcs8_ec_der(der: &[u8]) -> Result<Self> {
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let Some(signing) = algorithm.ecdsa_signing() else {
                continue;
            };
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(signing, der) {
                return Self::from_ecdsa_pair(algorithm, &pair);
            }
        }
        Err(PkiError::UnsupportedKey {
            reason: "EC key that is not on P-256 or P-384 (or is malformed)".to_owned(),
        })
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let bad = |reason: &str| PkiError::InvalidPem {
            what: "private key",
            reason: format!("malformed PKCS#8 PrivateKeyInfo: {reason}"),
        };
        // PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, ... }
        let (_, info) = parse_der(der).map_err(|_| bad("not DER"))?;
        let fields = info.as_sequence().map_err(|_| bad("not a SEQUENCE"))?;
        let (Some(alg_id), Some(private_key)) = (fields.get(1), fields.get(2)) else {
            return Err(bad("too few fields"));
        };
        let algorithm_oid = alg_id
            .as_sequence()
            .ok()
            .and_then(|seq| seq.first())
            .and_then(|o| o.as_oid().ok())
            .ok_or_else(|| bad("no algorithm identifier"))?;
        if *algorithm_oid == OID_RSA_ENCRYPTION {
            // The OCTET STRING holds the PKCS#1 RSAPrivateKey itself.
            let pkcs1 = private_key.as_slice().map_err(|_| bad("private key is not an OCTET STRING"))?;
            Self::from_pkcs1_der(pkcs1)
        } else if *algorithm_oid == OID_EC_PUBLIC_KEY {
            // The embedded SEC1 key may omit the curve; let the backend read the
            // whole PKCS#8 document and write a complete SEC1 key back.
            Self::from_sec1_or_pkcs8_ec_der(der)
        } else {
            Err(PkiError::UnsupportedKey {
                reason: format!(
                    "PKCS#8 key of algorithm {algorithm_oid} (supported: RSA and ECDSA P-256/P-384)"
                ),
            })
        }
    }

    fn from_ecdsa_pair(algorithm: KeyAlgorithm, pair: &EcdsaKeyPair) -> Result<Self> {
        let sec1 = pair.private_key().as_der().map_err(|_| PkiError::UnsupportedKey {
            reason: format!("{algorithm} key could not be encoded as SEC1"),
        })?;
        Self::assemble(algorithm, sec1.as_ref().to_vec())
    }

    /// Builds the signing form from the traditional DER and checks that both
    /// agree on the algorithm.
    fn assemble(algorithm: KeyAlgorithm, traditional_der: Vec<u8>) -> Result<Self> {
        let pair =
            rcgen::KeyPair::try_from(traditional_der.as_slice()).map_err(|e| PkiError::UnsupportedKey {
                reason: format!("{algorithm} key rejected by the certificate signer: {e}"),
            })?;
        if pair.algorithm() != algorithm.signature_algorithm() {
            return Err(PkiError::UnsupportedKey {
                reason: format!("{algorithm} key was read as a different algorithm"),
            });
        }
        Ok(Self { inner: Arc::new(KeyInner { algorithm, traditional_der, pair }) })
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateKey").field(&format_args!("{}", self.inner.algorithm)).finish()
    }
}

/// Generates a fresh private key.
///
/// # Errors
/// When the crypto backend fails (it does not, short of a broken RNG).
pub fn generate_key(algorithm: KeyAlgorithm) -> Result<PrivateKey> {
    let failed = |what: &str| PkiError::KeyGeneration { algorithm, reason: what.to_owned() };
    let size = match algorithm {
        KeyAlgorithm::Rsa2048 => Some(KeySize::Rsa2048),
        KeyAlgorithm::Rsa3072 => Some(KeySize::Rsa3072),
        KeyAlgorithm::Rsa4096 => Some(KeySize::Rsa4096),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => None,
    };
    if let Some(size) = size {
        let pair = RsaKeyPair::generate(size).map_err(|_| failed("RSA key generation failed"))?;
        let pkcs8 = pair.as_der().map_err(|_| failed("RSA key could not be encoded"))?;
        return PrivateKey::from_pkcs8_der(pkcs8.as_ref());
    }
    let signing = algorithm.ecdsa_signing().ok_or_else(|| failed("no ECDSA curve for this algorithm"))?;
    let pair = EcdsaKeyPair::generate(signing).map_err(|_| failed("EC key generation failed"))?;
    PrivateKey::from_ecdsa_pair(algorithm, &pair)
}

/// Generates one independent key per entry of `algorithms`, in that order,
/// spreading the work over the machine's cores (RSA generation dominates the
/// cost of building a cluster's PKI).
///
/// # Errors
/// The first generation error, in `algorithms` order.
pub fn generate_keys(algorithms: &[KeyAlgorithm]) -> Result<Vec<PrivateKey>> {
    let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get).min(algorithms.len());
    if workers <= 1 {
        return algorithms.iter().copied().map(generate_key).collect();
    }

    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<PrivateKey>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&algorithm) = algorithms.get(index) else {
                            break mine;
                        };
                        mine.push((index, generate_key(algorithm)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![(
                        0,
                        Err(PkiError::KeyGeneration {
                            algorithm: algorithms[0],
                            reason: "a key generation thread panicked".to_owned(),
                        }),
                    )]
                })
            })
            .collect()
    });
    done.sort_by_key(|(index, _)| *index);
    if done.len() != algorithms.len() {
        return Err(PkiError::KeyGeneration {
            algorithm: algorithms[0],
            reason: "a key generation thread stopped early".to_owned(),
        });
    }
    done.into_iter().map(|(_, key)| key).collect()
}

/// Encodes one PEM block with Unix line endings and 64-column lines.
pub(crate) fn encode_pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_and_default_is_rsa_2048() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.to_string().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::Rsa2048);
        assert_eq!("ECDSA-P256".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::EcdsaP256);
        let err = "rsa-2048".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.to_string().contains("\"rsa-2048\""), "{err}");
    }

    #[test]
    fn debug_never_shows_key_material() {
        for alg in [KeyAlgorithm::Rsa2048, KeyAlgorithm::EcdsaP256] {
            let key = generate_key(alg).unwrap();
            let debug = format!("{key:?} {key:#?}");
            assert!(!debug.contains("BEGIN"), "{debug}");
            assert!(!debug.contains("PRIVATE KEY"), "{debug}");
            assert!(debug.contains(alg.as_str()), "{debug}");
            assert!(debug.len() < 64, "{debug}");
            assert_eq!(key.placeholder(), format!("[PRIVATE KEY {alg}]"));
        }
    }

    #[test]
    fn pem_headers_and_round_trip_per_algorithm() {
        for alg in KeyAlgorithm::ALL {
            let key = generate_key(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let pem = key.to_pem();
            let label = if alg.is_rsa() { PEM_RSA } else { PEM_EC };
            assert!(pem.starts_with(&format!("-----BEGIN {label}-----\n")), "{alg}");
            assert!(pem.ends_with(&format!("-----END {label}-----\n")), "{alg}");
            let back = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.to_pem(), pem, "{alg} PEM round trip");
            assert_eq!(back.public_key_pem(), key.public_key_pem());
            assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        }
    }

    #[test]
    fn generate_keys_keeps_order_and_makes_distinct_keys() {
        let algs = [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa2048,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa2048,
        ];
        let keys = generate_keys(&algs).unwrap();
        let got: Vec<_> = keys.iter().map(PrivateKey::algorithm).collect();
        assert_eq!(got, algs);
        let mut publics: Vec<_> = keys.iter().map(PrivateKey::public_key_pem).collect();
        publics.sort();
        publics.dedup();
        assert_eq!(publics.len(), algs.len());
        assert!(generate_keys(&[]).unwrap().is_empty());
    }

    #[test]
    fn keys_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync + Clone + 'static>() {}
        send_sync::<PrivateKey>();
    }

    #[test]
    fn from_pem_rejects_non_keys_by_label() {
        let cert_like = encode_pem("CERTIFICATE", b"not really");
        let err = PrivateKey::from_pem(&cert_like).unwrap_err().to_string();
        assert!(err.contains("\"CERTIFICATE\""), "{err}");
        let err = PrivateKey::from_pem("no pem here").unwrap_err().to_string();
        assert!(err.contains("private key") && err.contains("no PEM block"), "{err}");
    }
}
