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
    if base.scheme_str().is_some_and(|s| s != "http") {
        bail!("only http:// node URLs are supported, not '{node}'");
    }
    let authority =
        base.authority().ok_or_else(|| anyhow!("'{node}' has no host: use a URL like http://127.0.0.1:7700"))?;
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot reach the node at {node} (is `squall up` running there?)"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path_and_query).header(hyper::header::HOST, authority.as_str());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    // A node that asks for a token gets the one in SQUALL_TOKEN.
    if let Some(token) = std::env::var("SQUALL_TOKEN").ok().filter(|t| !t.is_empty()) {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body))?;
    let resp = sender.send_request(req).await.with_context(|| format!("request to {node} failed"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Response { status, headers, body })
}
