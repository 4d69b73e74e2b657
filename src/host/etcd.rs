//! etcd's cluster membership, as a joining control-plane node changes it (list the members,
//! add this node's peer URL) and a reset one does (remove its member). kubeadm does it with etcd's Go client; kscript speaks etcd's
//! JSON gateway (`POST /v3/cluster/member/list`, `/v3/cluster/member/add`, `/v3/cluster/member/remove`, served on the
//! client port of etcd 3.4 and later) over mutual TLS with a client certificate signed by the
//! etcd CA (apiserver-etcd-client).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use super::https;

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

fn tls_config(tls: &EtcdTls) -> io::Result<Arc<rustls::ClientConfig>> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("the etcd {what} is not usable: {e}"))
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("client certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| invalid("client key", &e))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(https::roots(&tls.ca_pem, "etcd CA")?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| invalid("client certificate", &e))?;
    Ok(Arc::new(config))
}

/// POSTs `body` to `path` of the etcd gateway at `endpoint` and returns the JSON answer.
pub async fn post(endpoint: &str, tls: &EtcdTls, path: &str, body: &Value) -> io::Result<Value> {
    let target =
        https::Endpoint::parse(endpoint, 2379, "an etcd client URL such as https://192.168.56.10:2379")?;
    let url = &target.url;
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(io::Error::other)?;
    let (status, bytes) = https::exchange(&target, tls_config(tls)?, request).await.map_err(|f| match f {
        https::Failure::Connect(e) => io::Error::new(e.kind(), format!("cannot connect to etcd at {url}: {e}")),
        https::Failure::BadName => {
            io::Error::new(io::ErrorKind::InvalidInput, format!("`{}` is not a TLS name", target.host))
        }
        https::Failure::Tls(e) => io::Error::new(
            e.kind(),
            format!(
                "TLS with etcd at {url} failed (is its certificate signed by the etcd CA, and this client's too?): {e}"
            ),
        ),
        https::Failure::Http(e) => io::Error::new(e.kind(), format!("HTTP with etcd at {url}: {e}")),
    })?;
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

/// What `/v3/maintenance/status` says of the member that answers: its ID and the leader's,
/// in hex, and its etcd version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub member_id: String,
    pub leader: String,
    pub version: String,
}

/// The status in an answer of the gateway's `/v3/maintenance/status`.
pub fn status(answer: &Value) -> Status {
    Status {
        member_id: hex_id(&answer["header"]["member_id"]),
        leader: hex_id(&answer["leader"]),
        version: answer["version"].as_str().unwrap_or_default().to_string(),
    }
}

/// The body of a leadership transfer to member `id` (hex); `None` when it is not a member ID.
pub fn move_leader_request(id: &str) -> Option<Value> {
    let n = u64::from_str_radix(id, 16).ok()?;
    Some(json!({ "targetID": n.to_string() }))
}

/// The body of a member remove: `id` in hex, as [`members`] gives it; `None` when it is not
/// a member ID.
pub fn remove_request(id: &str) -> Option<Value> {
    let n = u64::from_str_radix(id, 16).ok()?;
    // The gateway reads a uint64 from a JSON string (a number would lose digits in
    // JavaScript-minded parsers).
    Some(json!({ "ID": n.to_string() }))
}

/// How long one etcd call may take.
pub const DEADLINE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_leadership_transfer_speak_hex_to_scripts_and_decimal_to_etcd() {
        let answer = json!({"header": {"cluster_id": "1", "member_id": "10276657743932975437"},
                            "version": "3.4.23", "leader": "3"});
        assert_eq!(
            status(&answer),
            Status { member_id: "8e9e05c52164694d".into(), leader: "3".into(), version: "3.4.23".into() }
        );
        assert_eq!(
            move_leader_request("8e9e05c52164694d"),
            Some(json!({"targetID": "10276657743932975437"}))
        );
        assert_eq!(move_leader_request("x"), None);
    }

    #[test]
    fn a_remove_names_the_member_in_decimal() {
        assert_eq!(remove_request("8e9e05c52164694d"), Some(json!({"ID": "10276657743932975437"})));
        assert_eq!(remove_request("not-hex"), None);
    }

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
}
