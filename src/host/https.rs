//! One HTTPS request over one TLS connection, for the calls that do not go through a
//! kubeconfig: join discovery's `cluster-info` fetches and etcd's JSON gateway. Each caller
//! chooses the trust (rustls configuration) and explains failures in its own terms.

use std::io;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{io_kind_of, root_cause};

/// Where a request goes.
#[derive(Debug)]
pub(super) struct Endpoint {
    /// `https://host:port`, for messages.
    pub url: String,
    /// The host as TLS names it: a DNS name or an IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` for the `Host` header.
    pub authority: String,
}

impl Endpoint {
    /// `https://host:port`, `host:port` or `host` (then `default_port`). `example` completes
    /// the error message: "`x` is not <example>: why".
    pub fn parse(text: &str, default_port: u16, example: &str) -> io::Result<Self> {
        let bad = |why: &str| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("`{text}` is not {example}: {why}"))
        };
        let with_scheme = if text.contains("://") { text.to_string() } else { format!("https://{text}") };
        let uri: http::Uri = with_scheme.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("it speaks https"));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(bad("give no path"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(default_port);
        let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        Ok(Self {
            url: format!("https://{shown_host}:{port}"),
            authority: format!("{shown_host}:{port}"),
            host,
            port,
        })
    }
}

/// The certificates of a CA bundle (PEM), to trust; `what` names it in errors.
pub(super) fn roots(pem: &str, what: &str) -> io::Result<rustls::RootCertStore> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("the {what} {why}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| invalid(format!("is not PEM: {e}")))?;
        roots.add(cert).map_err(|e| invalid(format!("is not usable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no certificate".into()));
    }
    Ok(roots)
}

/// Why a request got no answer.
#[derive(Debug)]
pub(super) enum Failure {
    Connect(io::Error),
    /// The host is not a name TLS can check.
    BadName,
    Tls(io::Error),
    /// The HTTP exchange failed: its kind is that of the io error among its causes (a reset,
    /// a broken pipe), so callers classify it as they classify connecting; `Other` when none.
    Http(io::Error),
}

fn http_failure(e: &(dyn std::error::Error + 'static)) -> Failure {
    Failure::Http(io::Error::new(io_kind_of(e).unwrap_or(io::ErrorKind::Other), root_cause(e)))
}

/// Sends `request` (its `Host` header is set here) to `endpoint` over one TLS connection made
/// with `config`, and returns the status and body of the answer.
pub(super) async fn exchange(
    endpoint: &Endpoint,
    config: Arc<rustls::ClientConfig>,
    mut request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), Failure> {
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(Failure::Connect)?;
    let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| Failure::BadName)?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(Failure::Tls)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| http_failure(&e))?;
    let driver = tokio::spawn(connection);
    let host = http::HeaderValue::from_str(&endpoint.authority)
        .map_err(|e| Failure::Http(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    request.headers_mut().insert(http::header::HOST, host);
    let response = sender.send_request(request).await.map_err(|e| http_failure(&e))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| http_failure(&e))?.to_bytes();
    driver.abort();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("192.168.56.10:6443", 6443, "an address").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.url.as_str()),
            ("192.168.56.10", 6443, "https://192.168.56.10:6443")
        );
        let e = Endpoint::parse("https://[fd00::10]:8443", 6443, "an address").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.authority.as_str()), ("fd00::10", 8443, "[fd00::10]:8443"));
        assert_eq!(Endpoint::parse("cp.example", 6443, "an address").unwrap().port, 6443);
        assert_eq!(Endpoint::parse("https://10.0.0.1", 2379, "an address").unwrap().port, 2379);
        let err = Endpoint::parse("http://x:6443", 6443, "an API server address").unwrap_err().to_string();
        assert!(err.contains("is not an API server address") && err.contains("https"), "{err}");
        assert!(Endpoint::parse("https://x:6443/api", 6443, "an address").is_err());
        assert!(Endpoint::parse("http://10.0.0.1:2379", 2379, "an etcd client URL").is_err());
        let e = Endpoint::parse("https://[fd00::1]:2379", 2379, "an etcd client URL").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.authority.as_str()), ("fd00::1", 2379, "[fd00::1]:2379"));
    }

    #[test]
    fn roots_name_the_bundle() {
        let err = roots("no certificate here", "etcd CA").unwrap_err().to_string();
        assert_eq!(err, "the etcd CA holds no certificate");
    }
}
