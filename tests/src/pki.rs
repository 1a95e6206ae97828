//! Certificates generated at test time: a CA, a server certificate for the
//! Envoy TLS listener, and client certificates (for mTLS).

use crate::client::TlsClient;
use crate::config::TlsListener;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A test CA with a server certificate (by default for `localhost`,
/// `example.com`, `*.example.com` and `*.test`; [`TestPki::for_hosts`] picks
/// the names).
pub struct TestPki {
    pub dir: PathBuf,
    ca_cert: Certificate,
    ca_key: KeyPair,
    pub ca_pem: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A generated client certificate.
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256_hex: String,
    pub der: Vec<u8>,
}

/// The server certificate's names of [`TestPki::new`].
pub const DEFAULT_SERVER_NAMES: [&str; 4] = ["localhost", "example.com", "*.example.com", "*.test"];

impl TestPki {
    /// A PKI whose server certificate covers [`DEFAULT_SERVER_NAMES`].
    pub fn new(dir: &Path) -> TestPki {
        let names: Vec<String> = DEFAULT_SERVER_NAMES.iter().map(|s| s.to_string()).collect();
        TestPki::for_hosts(dir, &names)
    }

    /// A PKI whose server certificate has exactly `server_names` as DNS
    /// subject alternative names (the first one is also the subject CN).
    pub fn for_hosts(dir: &Path, server_names: &[String]) -> TestPki {
        assert!(
            !server_names.is_empty(),
            "a server certificate needs a name"
        );
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "gatehouse test CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(server_names.to_vec()).unwrap();
        let mut sdn = DistinguishedName::new();
        sdn.push(DnType::CommonName, server_names[0].as_str());
        sp.distinguished_name = sdn;
        let server_cert = sp.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

        let ca_pem = dir.join("ca.pem");
        let server_cert_path = dir.join("server.pem");
        let server_key_path = dir.join("server.key");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&server_cert_path, server_cert.pem()).unwrap();
        std::fs::write(&server_key_path, server_key.serialize_pem()).unwrap();
        TestPki {
            dir: dir.to_path_buf(),
            ca_cert,
            ca_key,
            ca_pem,
            server_cert: server_cert_path,
            server_key: server_key_path,
        }
    }

    /// A TLS listener with this PKI's server certificate; `mtls` requests
    /// client certificates signed by the CA (`require` refuses connections
    /// without one).
    pub fn listener(&self, mtls: bool, require: bool) -> TlsListener {
        TlsListener {
            cert_chain: self.server_cert.clone(),
            private_key: self.server_key.clone(),
            client_ca: if mtls {
                Some(self.ca_pem.clone())
            } else {
                None
            },
            require_client_cert: require,
        }
    }

    /// A client certificate with subject CN `cn` and optional URI SAN.
    pub fn client_cert(&self, cn: &str, uri_san: Option<&str>) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        if let Some(uri) = uri_san {
            p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        }
        let cert = p.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        let der = cert.der().to_vec();
        ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            sha256_hex: sha256_hex(&der),
            der,
        }
    }

    /// A TLS client trusting this CA, optionally presenting a client cert.
    pub fn client(&self, server_name: &str, cert: Option<&ClientCert>) -> TlsClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = vec![rustls::pki_types::CertificateDer::from(c.der.clone())];
                let key = rustls::pki_types::PrivateKeyDer::try_from(
                    pem_body(&c.key_pem).expect("key PEM"),
                )
                .unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        TlsClient {
            config: Arc::new(config),
            server_name: server_name.to_string(),
        }
    }
}

/// The DER bytes inside a single-block PEM document.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64_decode(&b64)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = T.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// SHA-256 (via ring, which rustls already links), lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = ring_digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn ring_digest(data: &[u8]) -> Vec<u8> {
    use rustls::crypto::hash::Hash;
    let h = rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .find_map(|s| {
            let hp = s.tls13().map(|t| t.common.hash_provider)?;
            (hp.algorithm() == rustls::crypto::hash::HashAlgorithm::SHA256).then_some(hp)
        })
        .expect("SHA-256 provider");
    let out = Hash::hash(h, data);
    out.as_ref().to_vec()
}
