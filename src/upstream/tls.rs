//! TLS to upstreams: the public web roots plus, optionally, the CA certificates of a PEM
//! bundle (`upstream_ca_bundle`, for internal upstreams behind a private CA), and the protocol
//! offered in ALPN.
//!
//! Upstreams are spoken to over HTTP/1.1 unless a provider opts in (`http2 = true`): awc's
//! HTTP/2 goes through h2 0.3, which has an open advisory (RUSTSEC-2026-0258: a peer can make
//! it queue empty DATA frames without bound) fixed only in h2 0.4, which no awc release uses.
//! Only an opted-in provider is offered `h2` (its clients are built by
//! [`super::build_http2_client`]), so only an upstream the operator chose to trust that far
//! can reach that code (`deny.toml` records the exception).
//!
//! The trust store is process-wide, like rustls' crypto provider: [`install`] sets it at
//! start and every client built afterwards (each worker's, the probes') uses it.

use std::sync::{Arc, RwLock};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// What upstream clients are built with.
#[derive(Clone)]
struct Transport {
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
}

static INSTALLED: RwLock<Option<Transport>> = RwLock::new(None);

/// The web roots plus every certificate of `ca_bundle`. A bundle that cannot be read or holds
/// no certificate is an error naming the file.
fn roots(ca_bundle: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_bundle {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("upstream_ca_bundle: cannot read {path}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("upstream_ca_bundle: {path} is not valid PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("upstream_ca_bundle: a certificate in {path} is not usable: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("upstream_ca_bundle: {path} holds no certificate"));
        }
    }
    Ok(roots)
}

/// The client TLS configuration: `ca_bundle` trusted besides the web roots, and ALPN offering
/// `http/1.1` only, or `h2` first when `http2`.
pub fn client_config(ca_bundle: Option<&str>, http2: bool) -> Result<Arc<ClientConfig>, String> {
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots(ca_bundle)?)
        .with_no_client_auth();
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Sets the trust store of every upstream client built from now on.
pub fn install(ca_bundle: Option<&str>) -> Result<(), String> {
    let transport = Transport {
        http1: client_config(ca_bundle, false)?,
        http2: client_config(ca_bundle, true)?,
    };
    *INSTALLED.write().unwrap_or_else(|p| p.into_inner()) = Some(transport);
    Ok(())
}

fn installed() -> Option<Transport> {
    INSTALLED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The installed HTTP/1.1 configuration, or the default one (web roots).
pub fn current() -> Arc<ClientConfig> {
    match installed() {
        Some(t) => t.http1,
        // The default reads no file, so it cannot fail; an empty store would only refuse.
        None => client_config(None, false).unwrap_or_else(|_| {
            Arc::new(
                ClientConfig::builder()
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }),
    }
}

/// The installed HTTP/2-offering configuration (`h2` first in ALPN), or the default one.
pub fn current_http2() -> Arc<ClientConfig> {
    match installed() {
        Some(t) => t.http2,
        None => client_config(None, true).unwrap_or_else(|_| current()),
    }
}

/// Warns when a provider's key would travel in clear: plain `http://` to a host that is not
/// this machine.
pub fn warn_if_key_in_clear(name: &str, base_url: &str, has_key: bool) {
    if let Some(host) = remote_plain_http_host(base_url)
        && has_key
    {
        log::warn!(
            "provider {name}: its key is sent over plain http to {host}; use https:// (and \
             upstream_ca_bundle for a private CA)"
        );
    }
}

/// The host of a plain `http://` URL when it is not a loopback name or address.
fn remote_plain_http_host(base_url: &str) -> Option<&str> {
    let rest = base_url.strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = if authority.starts_with('[') {
        authority.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let local = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!local).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_bundle_is_named() {
        let e = client_config(Some("/nonexistent/ca.pem"), false).unwrap_err();
        assert!(
            e.contains("upstream_ca_bundle") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = client_config(empty.to_str(), false).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        let c = client_config(None, false).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let c = client_config(None, true).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_private_ca_is_trusted_besides_the_web_roots() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-ca.pem");
        let with = client_config(Some(path), false).unwrap();
        let without = client_config(None, false).unwrap();
        // The stores are not inspectable through ClientConfig; the bundle parsed and the
        // configuration offers HTTP/1.1 only, like the default.
        assert_eq!(with.alpn_protocols, without.alpn_protocols);
    }

    #[test]
    fn plain_http_is_flagged_only_for_remote_hosts() {
        assert_eq!(
            remote_plain_http_host("http://10.0.0.1:8000/v1"),
            Some("10.0.0.1")
        );
        assert_eq!(
            remote_plain_http_host("http://api.internal/v1"),
            Some("api.internal")
        );
        for local in [
            "http://[::1]:9/v1",
            "http://localhost/v1",
            "http://127.0.0.1:9/v1",
            "https://x/v1",
        ] {
            assert_eq!(remote_plain_http_host(local), None, "{local}");
        }
        assert_eq!(remote_plain_http_host("http://"), Some(""));
    }
}
