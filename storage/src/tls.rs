//! A node's TLS identity and SPKI pinning, as Tahoe-LAFS's HTTPS storage protocol does it.
//!
//! A storage server presents a **self-signed** certificate. Clients do not check it against a CA, a host
//! name or its validity period; they check only that the SHA-256 of its DER `SubjectPublicKeyInfo`
//! equals the hash carried in the server's NURL (RFC 7469 "SPKI pinning", tahoe-interfaces.md §1.2).
//! The TLS handshake signature is still verified properly against that key (ring), so a server must
//! hold the private key whose public half the NURL names: the key is pinned, not the certificate.
//!
//! - [`TlsIdentity`]: private key plus certificate, stored as one PEM file (Tahoe's
//!   `private/node.pem` shape). Generation (rcgen, ECDSA P-256) needs feature `server`; loading,
//!   saving and hashing are always available, and Tahoe's own RSA `node.pem` loads too.
//! - [`spki_hash_of_certificate`]: the pin of a DER certificate (x509-parser), for the client side.
//! - [`pinned_client_config`]: a rustls client configuration that accepts exactly the pinned key.
//!
//! Only the ring crypto provider is used, always passed explicitly (never a process-wide default).

use std::fmt;
use std::sync::Arc;

use data_encoding::{BASE64, BASE64URL_NOPAD};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Length of the textual SPKI hash: 32 bytes in unpadded base64 are 43 characters.
pub const SPKI_HASH_LEN: usize = 43;

/// Why a TLS identity or certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The PEM text has no certificate.
    #[error("the PEM file holds no CERTIFICATE block")]
    NoCertificate,
    /// The PEM text has no private key.
    #[error("the PEM file holds no private key block (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")]
    NoPrivateKey,
    /// A PEM block could not be decoded.
    #[error("malformed PEM: {0}")]
    BadPem(String),
    /// The certificate is not valid DER X.509.
    #[error("malformed certificate: {0}")]
    BadCertificate(String),
    /// The key is not usable with the ring provider, or does not belong to the certificate.
    #[error("unusable private key: {0}")]
    BadKey(String),
    /// Generating a key or certificate failed.
    #[error("cannot generate a TLS identity: {0}")]
    Generate(String),
}

/// A node's TLS private key and self-signed certificate.
pub struct TlsIdentity {
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    spki_hash: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("TlsIdentity")
            .field("spki_hash", &self.spki_hash)
            .finish_non_exhaustive()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            certificate: self.certificate.clone(),
            key: self.key.clone_key(),
            spki_hash: self.spki_hash.clone(),
        }
    }
}

impl TlsIdentity {
    /// Generates a fresh ECDSA P-256 key and a self-signed certificate for it (valid until 4096, as
    /// validity is never checked).
    #[cfg(feature = "server")]
    pub fn generate() -> Result<Self, TlsError> {
        let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tessera-storage");
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
        Self::from_parts(certificate.der().clone(), key)
    }

    /// Builds an identity from a DER certificate and its private key, checking that they match.
    pub fn from_parts(
        certificate: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let spki_hash = spki_hash_of_certificate(&certificate)?;
        let provider = ring_provider();
        rustls::sign::CertifiedKey::from_der(vec![certificate.clone()], key.clone_key(), &provider)
            .map_err(|e| TlsError::BadKey(e.to_string()))?;
        Ok(TlsIdentity {
            certificate,
            key,
            spki_hash,
        })
    }

    /// Parses one PEM text holding the certificate and the private key, in either order (extra
    /// blocks are ignored; the first certificate and the first key are used).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let certificate = match CertificateDer::from_pem_slice(pem.as_bytes()) {
            Ok(cert) => cert,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(TlsError::NoCertificate),
            Err(e) => return Err(TlsError::BadPem(e.to_string())),
        };
        let key = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(key) => key,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(TlsError::NoPrivateKey),
            Err(e) => return Err(TlsError::BadPem(e.to_string())),
        };
        Self::from_parts(certificate, key)
    }

    /// The PEM text: the certificate, then the private key.
    pub fn to_pem(&self) -> String {
        let (label, key_der): (&str, &[u8]) = match &self.key {
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
            // `PrivateKeyDer` is non-exhaustive; every variant rustls-pki-types has today is above.
            _ => ("PRIVATE KEY", self.key.secret_der()),
        };
        let mut out = pem_block("CERTIFICATE", &self.certificate);
        out.push_str(&pem_block(label, key_der));
        out
    }

    /// The pin: unpadded URL-safe base64 of SHA-256 over the certificate's DER SubjectPublicKeyInfo.
    pub fn spki_hash(&self) -> String {
        self.spki_hash.clone()
    }

    /// The DER certificate.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// A rustls server configuration presenting this identity (TLS 1.2 and 1.3, ring, no client
    /// certificates, no ALPN so that any HTTP/1.1 client fits).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        rustls::ServerConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::BadKey(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![self.certificate.clone()], self.key.clone_key())
            .map_err(|e| TlsError::BadKey(e.to_string()))
    }
}

/// The SPKI hash (see [`TlsIdentity::spki_hash`]) of a DER certificate.
pub fn spki_hash_of_certificate(der: &[u8]) -> Result<String, TlsError> {
    Ok(BASE64URL_NOPAD.encode(&spki_digest(der)?))
}

fn spki_digest(der: &[u8]) -> Result<[u8; 32], TlsError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TlsError::BadCertificate(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into())
}

/// Checks a handshake signature with the public key of `cert`, parsing only its
/// SubjectPublicKeyInfo. webpki (which `rustls::crypto::verify_tls1x_signature` uses) refuses X.509
/// v1 certificates, and Foolscap — so every Tahoe node's `node.pem` — makes v1 certificates; the
/// pin, not the certificate, is what is trusted here.
fn verify_with_certificate_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &rustls::crypto::WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| bad())?;
    let spki = parsed.tbs_certificate.subject_pki.raw;
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    let (_, body, _) = der_element(spki).ok_or_else(bad)?;
    let (_, algorithm_id, after_algorithm) = der_element(body).ok_or_else(bad)?;
    let (tag, bits, _) = der_element(after_algorithm).ok_or_else(bad)?;
    if tag != 0x03 || bits.first() != Some(&0) {
        return Err(bad());
    }
    let public_key = &bits[1..];
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))?;
    for algorithm in candidates {
        if algorithm.public_key_alg_id().as_ref() == algorithm_id
            && algorithm
                .verify_signature(public_key, message, dss.signature())
                .is_ok()
        {
            return Ok(HandshakeSignatureValid::assertion());
        }
    }
    Err(rustls::Error::InvalidCertificate(
        rustls::CertificateError::BadSignature,
    ))
}

/// Splits one DER element off the front of `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let len = input
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + count)
    };
    let contents = input.get(header..header.checked_add(len)?)?;
    Some((tag, contents, &input[header + len..]))
}

/// Decodes a textual SPKI hash into its 32 bytes.
pub(crate) fn decode_spki_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != SPKI_HASH_LEN {
        return None;
    }
    BASE64URL_NOPAD.decode(text.as_bytes()).ok()?.try_into().ok()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The crypto provider everything in this crate uses.
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A rustls client configuration that accepts a server only if its certificate's SPKI hash equals
/// `spki_hash` (no CA, host name or validity checks; the handshake signature is verified).
pub fn pinned_client_config(spki_hash: &str) -> Result<rustls::ClientConfig, TlsError> {
    let expected = decode_spki_hash(spki_hash).ok_or_else(|| {
        TlsError::BadCertificate(format!(
            "{spki_hash:?} is not a {SPKI_HASH_LEN}-character SPKI hash"
        ))
    })?;
    let provider = Arc::new(ring_provider());
    let verifier = Arc::new(SpkiPinVerifier {
        expected,
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::BadKey(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts exactly the certificates whose SPKI hashes to the pin.
#[derive(Debug)]
struct SpkiPinVerifier {
    expected: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpkiPinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = spki_digest(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        if constant_time_eq(&digest, &self.expected) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_certificate_key(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_certificate_key(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One PEM block with 64-character lines.
fn pem_block(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn spki_hash_text_decodes() {
        assert!(decode_spki_hash(&"A".repeat(43)).is_some());
        assert!(decode_spki_hash(&"A".repeat(44)).is_none());
        assert!(decode_spki_hash(&"+".repeat(43)).is_none());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            spki_hash_of_certificate(b"nonsense"),
            Err(TlsError::BadCertificate(_))
        ));
        assert_eq!(TlsIdentity::from_pem("").unwrap_err(), TlsError::NoCertificate);
    }

    #[cfg(feature = "server")]
    #[test]
    fn generated_identity_round_trips_through_pem() {
        let identity = TlsIdentity::generate().unwrap();
        let hash = identity.spki_hash();
        assert_eq!(hash.len(), SPKI_HASH_LEN);
        assert_eq!(
            spki_hash_of_certificate(identity.certificate_der()).unwrap(),
            hash
        );
        let pem = identity.to_pem();
        assert!(pem.contains("-----BEGIN CERTIFICATE-----"));
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"));
        let loaded = TlsIdentity::from_pem(&pem).unwrap();
        assert_eq!(loaded.spki_hash(), hash);
        assert_eq!(loaded.to_pem(), pem);
        assert!(loaded.server_config().is_ok());
        // Two identities never share a pin.
        assert_ne!(TlsIdentity::generate().unwrap().spki_hash(), hash);
        // The key must belong to the certificate.
        let other = TlsIdentity::generate().unwrap();
        let mismatched = format!(
            "{}{}",
            pem_block("CERTIFICATE", identity.certificate_der()),
            other
                .to_pem()
                .split("-----END CERTIFICATE-----\n")
                .nth(1)
                .unwrap()
        );
        assert!(matches!(
            TlsIdentity::from_pem(&mismatched),
            Err(TlsError::BadKey(_))
        ));
        // Only the certificate: no key.
        assert_eq!(
            TlsIdentity::from_pem(&pem_block("CERTIFICATE", identity.certificate_der())).unwrap_err(),
            TlsError::NoPrivateKey
        );
    }

    /// A Tahoe-shaped `node.pem` (certificate, then a PKCS#1 RSA-2048 key, CN=newpb_thingy), made with
    /// OpenSSL for this test. Its pin, computed by OpenSSL (`openssl x509 -pubkey | openssl pkey -pubin
    /// -outform der | openssl dgst -sha256 -binary | basenc --base64url`), is `RSA_NODE_PIN`.
    const RSA_NODE_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIDDzCCAfegAwIBAgIUNR2KCAUmB3C066eFRzRPkCP4STEwDQYJKoZIhvcNAQEL\n\
BQAwFzEVMBMGA1UEAwwMbmV3cGJfdGhpbmd5MB4XDTI2MTEyNDE5MzkxM1oXDTI3\n\
MTEyNDE5MzkxM1owFzEVMBMGA1UEAwwMbmV3cGJfdGhpbmd5MIIBIjANBgkqhkiG\n\
9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtwRQDSEh/oZfhj6JTbu6grnxS3+hC45paBod\n\
uwSIfp3GM/+QpY3HcxdgvpvYfUeYY4b9x2eUFEhEr7/3E5ZyxwFf5Y+JH5NIbNlL\n\
byoova1jkJV5hGRdVihr0u/AuuNAFqg/3LpMMICSsZ1topnM7iBa2TobfZW98SR4\n\
d9nhGWG2JE7ZNS5qaTzUP/Tx5u/AZ7ZfGHRJ/1gRPUh3LCtznC0Vu1Owm/iSh7JQ\n\
Qr9wWADZS9mydXE1ZFZlm0fmrphet0lahAFd9KIT+Xvb7R+/R7qioNHPiRaVLGa4\n\
lC576wxiGkwn3mY7vRXqy+bOenXIRAJyHVKozAjnH/V3a4HcmwIDAQABo1MwUTAd\n\
BgNVHQ4EFgQU4PJ6RDm84axvfN+iLXZSj2xbQQQwHwYDVR0jBBgwFoAU4PJ6RDm8\n\
4axvfN+iLXZSj2xbQQQwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOC\n\
AQEAsOLpPVfa0KrCXcZqRfc09JjH3Sn2FtqQFWe7hbx+MeMNB60bxJkXAvFc371M\n\
Exi0/+6iNi1WPcXH+Z/WxJ+CY9VfKy71NXK++XvLbVn1f7gGs+EbwkjeGzOGLN5P\n\
2boJajipq2a/zd5Con0In2IqSxkWcRW4TFVG0k//R+UDw627+luSOymAISjnTTJW\n\
iSoswTNxxZJU6VS50pQDQpBaBWQC21BYAeUDskyLHEctehzWWW2CqJQkIL/RZwEE\n\
w/md++tPrfSo7S93GnDw1JHHk9IS+ERg8+V3H6yiCw55M8oUv/ZtpsfmHN2Ogks3\n\
iEb7FuOpRrFtqde2ctR6qDz9VQ==\n\
-----END CERTIFICATE-----\n\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAtwRQDSEh/oZfhj6JTbu6grnxS3+hC45paBoduwSIfp3GM/+Q\n\
pY3HcxdgvpvYfUeYY4b9x2eUFEhEr7/3E5ZyxwFf5Y+JH5NIbNlLbyoova1jkJV5\n\
hGRdVihr0u/AuuNAFqg/3LpMMICSsZ1topnM7iBa2TobfZW98SR4d9nhGWG2JE7Z\n\
NS5qaTzUP/Tx5u/AZ7ZfGHRJ/1gRPUh3LCtznC0Vu1Owm/iSh7JQQr9wWADZS9my\n\
dXE1ZFZlm0fmrphet0lahAFd9KIT+Xvb7R+/R7qioNHPiRaVLGa4lC576wxiGkwn\n\
3mY7vRXqy+bOenXIRAJyHVKozAjnH/V3a4HcmwIDAQABAoIBAAYI5V7ZddZ/tcym\n\
aT6f7xF6ciNsLPJFmuIs4kgVaS7Lowp55dofp7D611zRpLzUzIiTnfCiULauf11Q\n\
NiR2NIitWe0m432gDKZSL/OVb0x52CufUid0a8N4h72n3DINZkKY/6oWloaO5sdm\n\
ioPvEFvVw0kgamGku2OlMTe6fnqouOIVFMbr08XdyFm44WVpG6e5QXtV7Si5g+Fr\n\
qIxyCXRKXJZQQTRfEh6U5o0PjkPtk77fY8w+YRvDjo8P2xKvPJ+jH8IEG63X6vzC\n\
ZByLpCamIJ6tK/I1SSZ4AWjlQko1G4yduLNyi6vfWJcBvRXAKgnZAjwz5w4Zb6um\n\
hnnnDiECgYEA3nqCZ/eEGD5+rsDT+/Cxa3+H6uU7Ul9WoPt0UzczvYEQ/QwzPWKn\n\
kMdKwElKenjFaUEkdOgfTvOPz6VxK3VlSnuY5J7M7aqcguS+hdmXcj4nfBW/01G6\n\
/iAGcoQmZg4NCZa0XHHULc4kRqJ175lHfGO6vVk/gzZa6qtbGEPn7KsCgYEA0pet\n\
ijyHDhYux50SnNe9FHuPkd1JuwNRF8W7vZeMg3ut8JA5+hRxDWb2S6AfZBq4N/SK\n\
Ckz5IRAmJdIDfp/e7u6ZboizWW5wFerCNWNJq2sn6Lp6/R5z83qltTF6Qy36wSZy\n\
y+DBEgezZJ+g9LzIcU8oEQYpRNve0gkDyhOi79ECgYACS3k04VS3e02LN+n320+5\n\
MCOSxLKL8vfNyUo14YfjGIW4Vnvg0jewQp3+xcLC6KQApe9eVVadVd3R4n78V8Wn\n\
swastQagHPZoUzuz3b62KvX1TbQg1eL75BCs9bf/rX1s7+UEXxg1ML8nC130Dryy\n\
B8VRVq5VCCZ/7SyPX4Pw6QKBgQCnR6in9/BntiMumIxiXdRp4sRmX1rj3Hyb34uD\n\
zE/nWWUPg+EpzvcGaFUYOXb182uFtw+3ovD53HQQ8sOn36IcNRdXf+rHDTynjDT8\n\
Z4PrUFEBQq/TRE9ihnf+d/DgUDOxHbNuU3fJtKhBM7OM9DBcIT54V2aMtgJG4LZL\n\
3FE/IQKBgQC0OcItlCUt9h6doJXPyaqTExWJ5Uh09Y4tyuy4JQnHJEtN3G7VcIwE\n\
LR4kNddBwy8Tqf3Cyj84g6/lcnyTAgUo2ZjNYLPnnChbBxJ1z3kEI+gVHcSFoPzU\n\
UY6lL7prO9eEdIxtB3ImSv9g1bPz4maKdqXRCobs7hWu8fW6D5s/AA==\n\
-----END RSA PRIVATE KEY-----\n\
";
    const RSA_NODE_PIN: &str = "-Nx_A8Mh6SMicMFxTE2bqrJizNL3z8Tf_NC8opp0hXs";

    /// Runs a TLS handshake in memory; `Err` if either side refuses.
    fn handshake(client: rustls::ClientConfig, server: rustls::ServerConfig) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..20 {
            let mut buffer = Vec::new();
            client.write_tls(&mut buffer).unwrap();
            server.read_tls(&mut buffer.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buffer = Vec::new();
            server.write_tls(&mut buffer).unwrap();
            client.read_tls(&mut buffer.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn tahoe_rsa_node_pem_loads_pins_like_openssl_and_serves() {
        let identity = TlsIdentity::from_pem(RSA_NODE_PEM).unwrap();
        assert_eq!(identity.spki_hash(), RSA_NODE_PIN);
        assert!(identity.to_pem().contains("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(
            TlsIdentity::from_pem(&identity.to_pem()).unwrap().spki_hash(),
            RSA_NODE_PIN
        );
        // Key first, certificate second is accepted too.
        let (cert, key) = RSA_NODE_PEM.split_at(RSA_NODE_PEM.find("-----BEGIN RSA").unwrap());
        assert_eq!(
            TlsIdentity::from_pem(&format!("{key}{cert}"))
                .unwrap()
                .spki_hash(),
            RSA_NODE_PIN
        );
        handshake(
            pinned_client_config(RSA_NODE_PIN).unwrap(),
            identity.server_config().unwrap(),
        )
        .unwrap();
    }

    #[cfg(feature = "server")]
    #[test]
    fn the_pin_decides_the_handshake() {
        let identity = TlsIdentity::generate().unwrap();
        let server = || identity.server_config().unwrap();
        handshake(pinned_client_config(&identity.spki_hash()).unwrap(), server()).unwrap();
        let error = handshake(pinned_client_config(RSA_NODE_PIN).unwrap(), server()).unwrap_err();
        assert!(matches!(error, rustls::Error::InvalidCertificate(_)), "{error:?}");
    }

    /// Presents a fixed certificate and key, matching or not.
    #[cfg(feature = "server")]
    #[derive(Debug)]
    struct Impostor(Arc<rustls::sign::CertifiedKey>);

    #[cfg(feature = "server")]
    impl rustls::server::ResolvesServerCert for Impostor {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[cfg(feature = "server")]
    #[test]
    fn a_server_with_the_pinned_certificate_but_not_its_key_is_refused() {
        let victim = TlsIdentity::generate().unwrap();
        let attacker = TlsIdentity::generate().unwrap();
        let key = rustls::crypto::ring::sign::any_supported_type(&attacker.key).unwrap();
        let stolen = rustls::sign::CertifiedKey::new(vec![victim.certificate_der().clone()], key);
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Impostor(Arc::new(stolen))));
        let error = handshake(pinned_client_config(&victim.spki_hash()).unwrap(), server).unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
            ),
            "{error:?}"
        );
    }

    #[test]
    fn pinned_config_needs_a_real_pin() {
        assert!(pinned_client_config("short").is_err());
        assert!(pinned_client_config(&"A".repeat(43)).is_ok());
    }
}
