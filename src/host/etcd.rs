//! etcd's cluster membership, as a joining control-plane node changes it: list the members,
//! add this node's peer URL. kubeadm does it with etcd's Go client; kscript speaks etcd's
//! JSON gateway (`POST /v3/cluster/member/list`, `/v3/cluster/member/add`, served on the
//! client port of etcd 3.4 and later) over mutual TLS with a client certificate signed by the
//! etcd CA (apiserver-etcd-client).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use super::cri::root_cause;

/// PEM texts of the etcd CA and a client certificate and key it signed.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// One etcd member as the gateway lists it. A member added but not started yet has no name
/// and no client URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member ID, in hex as etcdctl prints it.
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// `https://host:port` of an etcd client URL, as host, port and `Host` header.
struct Target {
    url: String,
    host: String,
    port: u16,
    authority: String,
}

fn target(endpoint: &str) -> io::Result<Target> {
    let bad = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{endpoint}` is not an etcd client URL such as https://192.168.56.10:2379: {why}"),
        )
    };
    let uri: http::Uri = endpoint.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("kubeadm's etcd serves clients over https".into()));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host".into()))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(2379);
    let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    Ok(Target { url: format!("https://{shown}:{port}"), authority: format!("{shown}:{port}"), host, port })
}

fn tls_config(tls: &EtcdTls) -> io::Result<Arc<rustls::ClientConfig>> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("the etcd {what} is not usable: {e}"))
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| invalid("CA", &e))?).map_err(|e| invalid("CA", &e))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("client certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| invalid("client key", &e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid("client certificate", &e))?;
    Ok(Arc::new(config))
}

/// POSTs `body` to `path` of the etcd gateway at `endpoint` and returns the JSON answer.
pub async fn post(endpoint: &str, tls: &EtcdTls, path: &str, body: &Value) -> io::Result<Value> {
    let t = target(endpoint)?;
    let url = &t.url;
    let config = tls_config(tls)?;
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to etcd at {url}: {e}")))?;
    let name = ServerName::try_from(t.host.clone()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("`{}` is not a TLS name", t.host))
    })?;
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "TLS with etcd at {url} failed (is its certificate signed by the etcd CA, and this client's too?): {e}"
            ),
        )
    })?;
    let http_error = |e: &(dyn std::error::Error + 'static)| {
        io::Error::other(format!("HTTP with etcd at {url}: {}", root_cause(e)))
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| http_error(&e))?;
    let driver = tokio::spawn(connection);
    let request = http::Request::post(path)
        .header(http::header::HOST, &t.authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| http_error(&e))?;
    let response = sender.send_request(request).await.map_err(|e| http_error(&e))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| http_error(&e))?.to_bytes();
    driver.abort();
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("etcd at {url} answered {status} with no JSON: {e}"),
        )
    })?;
    if !status.is_success() {
        let message =
            answer.get("message").or_else(|| answer.get("error")).and_then(Value::as_str).unwrap_or("");
        return Err(io::Error::other(format!("etcd at {url} answered {status}: {message}")));
    }
    Ok(answer)
}

/// The members in an answer of the gateway (`members`), IDs in hex.
pub fn members(answer: &Value) -> Vec<Member> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    answer["members"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| Member {
                    id: hex_id(&m["ID"]),
                    name: m["name"].as_str().unwrap_or_default().to_string(),
                    peer_urls: strings(&m["peerURLs"]),
                    client_urls: strings(&m["clientURLs"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The gateway prints uint64 IDs as decimal strings; etcdctl shows them in hex.
fn hex_id(v: &Value) -> String {
    let n = match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    n.map_or_else(String::new, |n| format!("{n:x}"))
}

/// The body of a member add.
pub fn add_request(peer_url: &str) -> Value {
    json!({ "peerURLs": [peer_url] })
}

/// How long one etcd call may take.
pub const DEADLINE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_from_the_gateways_answer() {
        let answer = json!({"header": {"cluster_id": "1"}, "members": [
            {"ID": "10276657743932975437", "name": "cp-1", "peerURLs": ["https://10.0.0.1:2380"],
             "clientURLs": ["https://10.0.0.1:2379"]},
            {"ID": "3", "peerURLs": ["https://10.0.0.2:2380"]},
        ]});
        let m = members(&answer);
        assert_eq!(m[0].id, "8e9e05c52164694d");
        assert_eq!(m[0].name, "cp-1");
        assert_eq!(
            m[1],
            Member {
                id: "3".into(),
                name: String::new(),
                peer_urls: vec!["https://10.0.0.2:2380".into()],
                client_urls: vec![]
            }
        );
    }

    #[test]
    fn endpoints_must_be_https_client_urls() {
        assert!(target("http://10.0.0.1:2379").is_err());
        let t = target("https://[fd00::1]:2379").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("fd00::1", 2379, "[fd00::1]:2379"));
    }
}
