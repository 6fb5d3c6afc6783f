//! The HTTP API as a whole: [`Api`] (the router, with its hot route answered
//! beside it), and [`serve`], which accepts connections and drains them on
//! shutdown. The handlers live in `kv` and `functions`.

use crate::app::{App, Scope};
use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::Router;
use axum::http::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use squall_scheduler::Functions;
use squall_store::Handle;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How the HTTP listener treats its connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Connections open at once; one more is answered 503 and closed.
    pub max_clients: usize,
    /// From a connection's start, or the end of its last response, to the
    /// end of the next request's headers: an idle keep-alive connection,
    /// or one that sends its headers too slowly, is closed after it.
    pub header_timeout: Duration,
    /// For a request's whole body, from the end of its headers: a body
    /// still unfinished then is answered 408 `body_timeout`.
    pub body_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_clients: 10_000,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// What a connection over the client limit reads before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 85\r\n\r\n{\"error\":{\"code\":\"max_clients\",\"message\":\"max number of clients reached; try again\"}}";

/// The HTTP API: the router, except for its hot route, invoking a function,
/// which is answered without it (no routing table, no extractors, no copy
/// of the headers); every request is counted and timed.
#[derive(Clone)]
pub struct Api {
    router: Router,
    app: App,
    max_body: usize,
    body_timeout: Duration,
    /// Who may do what: every route but `/healthz` asks for a bearer
    /// token when the node has credentials.
    access: Arc<Access>,
    /// Answer only requests addressed to a loopback name (an open node on
    /// loopback: a web page whose name was made to resolve to 127.0.0.1
    /// must not reach it).
    loopback_hosts_only: bool,
}

impl Api {
    /// `max_body` is the limit on key bodies (function components and inputs
    /// have their own limits). `ready` is the node's say on readiness:
    /// `/readyz` answers ready while it is true and the store takes writes,
    /// and 503 with the reason otherwise (`/healthz` answers regardless).
    pub fn new(
        store: Handle,
        functions: Functions,
        metrics: Arc<Metrics>,
        max_body: usize,
        ready: watch::Receiver<bool>,
    ) -> Api {
        let app = App { store, metrics, functions, ready, snapshots: Arc::default() };
        let body_timeout = HttpOptions::default().body_timeout;
        let access = Arc::new(Access::new(None, Vec::new(), false).expect("no users"));
        Api { router: router(&app, max_body), app, max_body, body_timeout, access, loopback_hosts_only: false }
    }

    /// The same API, with these users: unless the node is open, every
    /// request but `GET /healthz` needs a user's secret as a bearer token
    /// (`Authorization: Bearer TOKEN`, else 401 `unauthorized`) and works
    /// only in its namespaces (else 403 `forbidden`).
    pub fn with_access(mut self, access: Arc<Access>) -> Api {
        self.access = access;
        self
    }

    /// The same API, answering only requests whose `Host` is a loopback
    /// name or address (`localhost`, `127.0.0.1`, `[::1]`), or that have none:
    /// for an open node, against DNS rebinding.
    pub fn with_loopback_hosts_only(mut self, only: bool) -> Api {
        self.loopback_hosts_only = only;
        self
    }

    /// The same API, with request bodies cut off `body_timeout` after
    /// their headers.
    pub fn with_body_timeout(mut self, body_timeout: Duration) -> Api {
        self.body_timeout = body_timeout;
        self
    }

    /// The most body bytes `req`'s route takes, for a request that sends a
    /// body to a route that reads one (a PUT or a POST): a request
    /// declaring more is answered 413 before any of its body is read.
    fn body_limit<B>(&self, req: &Request<B>) -> Option<usize> {
        if req.method() != Method::PUT && req.method() != Method::POST {
            return None;
        }
        let input = self.app.functions.settings().max_input;
        let segments: Vec<&str> = req.uri().path().trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["v1", "kv", ..] => Some(self.max_body),
            ["v1", "functions", name, "invoke"] | ["v1", "dags", name, "invoke"] if !name.is_empty() => Some(input),
            ["v1", "functions", name] if !name.is_empty() => Some(crate::functions::MAX_COMPONENT_BYTES),
            ["v1", "dags", name] if !name.is_empty() => Some(crate::dags::MAX_DAG_BYTES),
            ["v1", "jobs"] => Some(crate::jobs::MAX_JOB_BYTES),
            ["v1", "snapshots", ..] => Some(crate::snapshots::MAX_SNAPSHOT_BYTES),
            _ => None,
        }
    }

    /// `req` with its [`Scope`]: who sent it (its bearer token's user) and
    /// the namespace it works in (`/v1/ns/NS/...`, the path then read
    /// without that part; else the user's own), once the user may work
    /// there and do what it asks; or the answer refusing it.
    fn admit<B>(&self, mut req: Request<B>) -> Result<Request<B>, Box<Response>> {
        let refuse = |e: ApiError| Box::new(e.into_response());
        if self.loopback_hosts_only && !loopback_host(req.headers().get(hyper::header::HOST)) {
            return Err(refuse(forbidden(
                "this node has no credentials, so it answers only requests addressed to a loopback name (Host: \
                 localhost, 127.0.0.1 or [::1]); give it a token to serve other names"
                    .into(),
            )));
        }
        let user = match self.access.anonymous() {
            Some(user) => user,
            None => match self.access.bearer(req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes())) {
                Some(user) => user,
                None => return Err(Box::new(unauthorized())),
            },
        };
        let (ns, rest) = match req.uri().path().strip_prefix("/v1/ns/").and_then(|p| p.split_once('/')) {
            Some((ns, rest)) => (ns.to_string(), Some(format!("/v1/{rest}"))),
            None => (user.home().to_string(), None),
        };
        squall_scheduler::check_namespace(&ns).map_err(|e| refuse(e.into()))?;
        if !user.may_use(&ns) {
            return Err(refuse(forbidden(format!("the user {:?} may not use the namespace {ns:?}", user.name))));
        }
        if let Some(path) = rest {
            let target = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            *req.uri_mut() = target.parse().map_err(|_| refuse(crate::error::bad_request("bad path".into())))?;
        }
        let path = req.uri().path();
        if path == "/metrics" && !user.is_admin() {
            return Err(refuse(forbidden(
                "the node's metrics name every namespace's functions: only a user of every namespace may read them"
                    .into(),
            )));
        }
        let deploys = matches!(*req.method(), Method::PUT | Method::DELETE) && {
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            matches!(segments.as_slice(), ["v1", "functions" | "dags", name] if !name.is_empty())
        };
        if deploys && !user.deploy {
            return Err(refuse(forbidden(format!(
                "the user {:?} may not deploy or remove functions and DAGs",
                user.name
            ))));
        }
        req.extensions_mut().insert(Scope::new(&ns));
        Ok(req)
    }

    /// Answers one request, counted and timed.
    pub async fn handle(&self, req: Request<Incoming>) -> Response {
        let started = Instant::now();
        let resp = self.respond(req).await;
        let metrics = &self.app.metrics;
        metrics.http_requests.fetch_add(1, Ordering::Relaxed);
        if resp.status().is_client_error() || resp.status().is_server_error() {
            metrics.http_errors.fetch_add(1, Ordering::Relaxed);
        }
        metrics.http_latency.observe(started.elapsed());
        resp
    }

    async fn respond(&self, req: Request<Incoming>) -> Response {
        let req = if req.uri().path() == "/healthz" {
            req
        } else {
            match self.admit(req) {
                Ok(req) => req,
                Err(resp) => return *resp,
            }
        };
        let declared =
            req.headers().get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let limit = self.body_limit(&req);
        let req = req.map(|body| crate::body::Deadline::new(body, self.body_timeout));
        match (declared.zip(limit), invoke_target(&req)) {
            (Some((n, limit)), _) if n > limit as u64 => {
                let mut resp = ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body declares {n} bytes; {} takes at most {limit}", req.uri().path()),
                )
                .into_response();
                // The body is not read: the connection cannot carry another request.
                resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
                resp
            }
            (_, Some(name)) => crate::functions::invoke_request(&self.app, name, req).await,
            (_, None) => {
                let mut router = self.router.clone();
                match tower_service::Service::call(&mut router, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        }
    }
}

/// Whether a `Host` header names this machine's loopback (or is absent).
fn loopback_host(host: Option<&hyper::header::HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else { return host.is_none() };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// 401 `unauthorized`, with the scheme to use.
fn unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this node asks for a token: send Authorization: Bearer TOKEN (squall's commands read SQUALL_TOKEN)"
            .to_string(),
    )
    .into_response();
    resp.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
    resp
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// NAME, if this is `POST /v1/functions/NAME/invoke` with a NAME that needs
/// no decoding (any other request goes through the router, which has the
/// same route).
fn invoke_target<B>(req: &Request<B>) -> Option<String> {
    if req.method() != Method::POST {
        return None;
    }
    let name = req.uri().path().strip_prefix("/v1/functions/")?.strip_suffix("/invoke")?;
    (!name.is_empty() && !name.contains(['/', '%'])).then(|| name.to_string())
}

fn router(app: &App, max_body: usize) -> Router {
    crate::kv::routes(max_body)
        .merge(crate::functions::routes(app))
        .merge(crate::dags::routes(app))
        .merge(crate::jobs::routes())
        .merge(crate::triggers::routes())
        .merge(crate::snapshots::routes())
        // After the merge, so the functions' routes answer a wrong method
        // with the same JSON error as the others.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone())
}

/// Serves the HTTP API until `stop` turns true, then lets in-flight requests
/// finish (each connection closes after its current response) and returns
/// once every connection has closed.
///
/// Connections are accepted here and each is served on a shard thread, round
/// robin, like Redis connections: its key operations run in place when the
/// key is that shard's, and an invocation it starts runs on that thread when
/// the function has no data elsewhere, so a warm call crosses no thread.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Handle,
    api: Api,
    opts: HttpOptions,
    tls: Option<crate::tls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let api = Arc::new(api.with_body_timeout(opts.body_timeout));
    // A TLS client could not read a plain-text refusal: it is only closed.
    let refusal = if tls.is_some() { b"".as_slice() } else { REFUSAL };
    let admit = crate::listen::Admit { max_clients: opts.max_clients, refusal, what: "HTTP" };
    crate::listen::serve(listener, &store, admit, stop.clone(), |std| {
        let (api, stop, tls) = (api.clone(), stop.clone(), tls.clone());
        async move {
            // Registering the socket here puts it on this shard's event loop.
            let Ok(stream) = tokio::net::TcpStream::from_std(std) else { return };
            match tls {
                None => connection(TokioIo::new(stream), api, opts, stop).await,
                Some(tls) => {
                    if let Some(stream) = crate::tls::accept(&tls, stream).await {
                        connection(TokioIo::new(stream), api, opts, stop).await;
                    }
                }
            }
        }
    })
    .await;
}

/// Serves one connection's requests until it closes, or until `stop` (then
/// it finishes the request under way).
async fn connection<I>(io: I, api: Arc<Api>, opts: HttpOptions, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {method} {}; see /v1/kv/KEY, /v1/functions, /healthz, /readyz, /metrics", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::loopback_host;
    use hyper::header::HeaderValue;

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:7700",
            "127.0.0.1:7700",
            "127.0.0.2",
            "[::1]:7700",
            "[::1]",
            "a.localhost",
            "LOCALHOST.",
        ] {
            assert!(loopback_host(Some(&HeaderValue::from_static(ok))), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7700",
            "10.0.0.1:7700",
            "localhost.evil.example",
            "[::2]:1",
            "127.0.0.1.nip.io",
        ] {
            assert!(!loopback_host(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(loopback_host(None));
    }
}
