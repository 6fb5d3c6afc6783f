//! A small HTTP/1.1 client for talking to a node (hyper, one connection per call).

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Turns an API error ([`squall_api::ErrorBody`]) into an error.
    pub fn ok(self) -> Result<Response> {
        if self.status.is_success() {
            return Ok(self);
        }
        match serde_json::from_slice::<squall_api::ErrorBody>(&self.body) {
            Ok(body) => Err(body.error.into()),
            Err(_) => bail!("the node answered {}: {}", self.status, String::from_utf8_lossy(&self.body)),
        }
    }

    /// The body as one of the API's types.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the node answered with JSON this squall does not understand (is it another version?): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Percent-encodes a key for a URL path (slashes stay: keys may contain them).
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a value for a URL query.
pub fn encode_query(value: &str) -> String {
    encode_path(value).replace('/', "%2F")
}

pub async fn call(node: &str, method: Method, path_and_query: &str, body: Bytes) -> Result<Response> {
    call_with(node, method, path_and_query, &[], body).await
}

/// Like [`call`], with extra request headers.
pub async fn call_with(
    node: &str,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<Response> {
    let base: hyper::Uri = node.parse().with_context(|| format!("'{node}' is not a URL like http://127.0.0.1:7700"))?;
    let tls = match base.scheme_str() {
        None | Some("http") => false,
        Some("https") => true,
        Some(_) => bail!("only http:// and https:// node URLs are supported, not '{node}'"),
    };
    let authority =
        base.authority().ok_or_else(|| anyhow!("'{node}' has no host: use a URL like http://127.0.0.1:7700"))?;
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(if tls { 443 } else { 80 }));
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the node at {node} (is `squall up` running there?)"))?;
    // SQUALL_NAMESPACE picks the namespace of every /v1 request.
    let scoped =
        match (std::env::var("SQUALL_NAMESPACE").ok().filter(|n| !n.is_empty()), path_and_query.strip_prefix("/v1/")) {
            (Some(ns), Some(rest)) => format!("/v1/ns/{ns}/{rest}"),
            _ => path_and_query.to_string(),
        };
    let mut req = Request::builder().method(method).uri(scoped).header(hyper::header::HOST, authority.as_str());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    // A node that asks for a token gets the one in SQUALL_TOKEN.
    if let Some(token) = std::env::var("SQUALL_TOKEN").ok().filter(|t| !t.is_empty()) {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body))?;
    if tls {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("'{host}' cannot name a TLS server"))?;
        let stream = tls_connector()?.connect(name, stream).await.with_context(|| {
            format!("TLS with the node at {node} failed (does SQUALL_CACERT hold its certificate?)")
        })?;
        exchange(TokioIo::new(stream), req, node).await
    } else {
        exchange(TokioIo::new(stream), req, node).await
    }
}

/// Sends `req` over a fresh connection `io` and reads the whole answer.
async fn exchange<I>(io: I, req: Request<Full<Bytes>>, node: &str) -> Result<Response>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.with_context(|| format!("request to {node} failed"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Response { status, headers, body })
}

/// A TLS client trusting the certificates in the PEM file `SQUALL_CACERT`
/// (a node's self-signed certificate, or the authority that signed it).
fn tls_connector() -> Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = std::env::var_os("SQUALL_CACERT")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow!("an https:// node needs SQUALL_CACERT: a PEM file of the certificates to trust"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(&path).with_context(|| format!("cannot read SQUALL_CACERT {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("SQUALL_CACERT {} is not PEM", path.display()))?;
        roots.add(cert).with_context(|| format!("SQUALL_CACERT {} holds a bad certificate", path.display()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}
