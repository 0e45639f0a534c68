//! TLS of the HTTP control API, with rustls on ring: the server's configuration from the manifest's
//! PEM files (`control_server.tls`), and the client's of `ctl --url https://`, which trusts the
//! system's certificate authorities or the ones in `--ca-file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} file `{}`: {source}", .path.display())]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("the {what} file `{}` {why}", .path.display())]
    Content {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refuses the certificate and key (a key that does not go with the certificate, say).
    #[error("the certificate `{}` and the key `{}` cannot serve TLS: {source}", .cert.display(), .key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The system's certificate authorities cannot be read.
    #[error("cannot read the system's certificate authorities ({0}); pass `--ca-file FILE`")]
    NoRoots(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate in the PEM file `path`; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let content = |why: String| TlsError::Content {
        what,
        path: path.to_path_buf(),
        why,
    };
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(
            "holds no certificate (`-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

/// Returns the server configuration for the chain in `cert` and the key in `key` (HTTP/1.1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("certificate", cert)?;
    let pem = read("key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Content {
        what: "key",
        path: key.to_path_buf(),
        why: format!("holds no private key in PEM ({e})"),
    })?;
    let refused = |source| TlsError::Refused {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Returns the client configuration that trusts the authorities in `ca_file`, or else the system's.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(file) => {
            for cert in certificates("certificate authority", file)? {
                roots.add(cert).map_err(|e| TlsError::Content {
                    what: "certificate authority",
                    path: file.to_path_buf(),
                    why: format!("holds a certificate rustls cannot use: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), ToString::to_string);
                return Err(TlsError::NoRoots(why));
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring offers the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
