//! The admin API, on a listener of its own: the running adapter's status, hot swap
//! (by path, built-in name or uploaded component), rollback, the access policy's status
//! and hot swap (by path or upload), and the overview, each
//! request carrying `Authorization: Bearer TOKEN`; and, open to whoever reaches the
//! listener, `/metrics` (Prometheus) and the admin page (`/admin`, which asks for the
//! token). Also the small HTTP client `wasio adapter` uses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::overview::History;
use super::reload::{Node, NodeError, SwapRequest, Wasm};
use crate::cluster::SwapError;

/// Largest uploaded component.
const BODY_LIMIT: usize = 64 << 20;

#[derive(Clone)]
struct Admin {
    node: Arc<Node>,
    token: Arc<str>,
    history: Arc<History>,
}

/// The admin routes for `node`, guarded by `token`. Starts sampling the connection
/// history the page shows.
pub fn router(node: Arc<Node>, token: &str) -> Router {
    let history = History::spawn(&node, node.history_interval());
    let state = Admin {
        node,
        token: token.into(),
        history,
    };
    let guarded = Router::new()
        .route("/admin/adapter", get(status).post(swap))
        .route("/admin/adapter/rollback", post(rollback))
        .route("/admin/policy", get(policy_status).post(policy_swap))
        .route("/admin/overview", get(overview))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin route") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    // Read-only and secret-free: scrapers and browsers reach them without the token.
    let open = Router::new()
        .route("/metrics", get(metrics))
        .route("/admin", get(page));
    open.merge(guarded).with_state(state)
}

async fn metrics(State(admin): State<Admin>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::prometheus::render(
            admin.node.adapter(),
            admin.node.gate(),
            &admin.node.policy().status(),
            admin.node.failed_handshakes(),
        ),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../static/admin.html"),
    )
        .into_response()
}

async fn overview(State(admin): State<Admin>) -> Response {
    Json(super::overview::overview(&admin.node, &admin.history).await).into_response()
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

async fn auth(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same_secret(t.trim().as_bytes(), admin.token.as_bytes()) => next.run(req).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer TOKEN)",
        ),
    }
}

/// Compares digests, not the strings: the time taken tells nothing about the token,
/// its length included.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn status(State(admin): State<Admin>) -> Response {
    Json(admin.node.adapter().status()).into_response()
}

/// The JSON form of a swap.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    /// A path (relative to the config file's directory) or `builtin:NAME`.
    wasm: String,
    /// Absent: keep the running adapter's; `null`: none.
    #[serde(default, deserialize_with = "present")]
    datasource: Option<Option<String>>,
    options: Option<serde_json::Value>,
}

/// Tells a `null` field (`Some(None)`) from an absent one (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Query of an upload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// A `[datasources.NAME]`; empty for none; absent keeps the running adapter's.
    datasource: Option<String>,
    /// Label of the upload (`upload:NAME`); default: the start of its sha256.
    name: Option<String>,
}

async fn swap(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let req = match content_type(&headers).as_str() {
        "application/json" => match serde_json::from_slice::<SwapBody>(&body) {
            Ok(b) => SwapRequest {
                wasm: Wasm::Path(b.wasm),
                datasource: b.datasource,
                options: b.options,
            },
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
        },
        "application/wasm" | "application/octet-stream" => {
            let Query(q) = match query {
                Ok(q) => q,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
            };
            upload(q, body)
        }
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type `{other}`: send application/json {{\"wasm\": ...}} or the component as application/wasm"
                ),
            );
        }
    };
    report(admin.node.swap(req, "admin API").await)
}

fn upload(q: UploadQuery, body: Bytes) -> SwapRequest {
    SwapRequest {
        wasm: upload_wasm(q.name, body),
        datasource: q.datasource.map(|d| Some(d).filter(|d| !d.is_empty())),
        options: None,
    }
}

/// An uploaded component, labelled `upload:NAME` (default: the start of its sha256).
fn upload_wasm(name: Option<String>, body: Bytes) -> Wasm {
    let name: String = name
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect())
        .unwrap_or_else(|| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&body);
            digest[..6].iter().map(|b| format!("{b:02x}")).collect()
        });
    Wasm::Upload {
        label: format!("upload:{name}"),
        bytes: Arc::new(body.to_vec()),
    }
}

async fn policy_status(State(admin): State<Admin>) -> Response {
    Json(admin.node.policy().status()).into_response()
}

/// The JSON form of a policy swap.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySwapBody {
    /// A path (relative to the config file's directory).
    wasm: String,
    /// The policy's `init` options; absent keeps the running policy's.
    options: Option<serde_json::Value>,
}

/// Query of a policy upload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyUploadQuery {
    /// Label of the upload (`upload:NAME`); default: the start of its sha256.
    name: Option<String>,
}

/// `POST /admin/policy`: by path (JSON `{"wasm", "options"}`) or upload
/// (`application/wasm`), as the adapter's swap. 422 when the policy is refused.
async fn policy_swap(
    State(admin): State<Admin>,
    headers: HeaderMap,
    query: Result<Query<PolicyUploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let (wasm, options) = match content_type(&headers).as_str() {
        "application/json" => match serde_json::from_slice::<PolicySwapBody>(&body) {
            Ok(b) => (Wasm::Path(b.wasm), b.options),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
        },
        "application/wasm" | "application/octet-stream" => match query {
            Ok(Query(q)) => (upload_wasm(q.name, body), None),
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        },
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type `{other}`: send application/json {{\"wasm\": ...}} or the component as application/wasm"
                ),
            );
        }
    };
    match admin.node.swap_policy(wasm, options, "admin API").await {
        Ok(status) => Json(status).into_response(),
        Err(NodeError::BadRequest(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

/// The media type of a request, lower case, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

async fn rollback(State(admin): State<Admin>) -> Response {
    report(admin.node.rollback("admin API").await)
}

fn report(result: Result<crate::cluster::SwapReport, NodeError>) -> Response {
    match result {
        Ok(r) => Json(r).into_response(),
        Err(NodeError::BadRequest(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(NodeError::Policy(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(NodeError::Swap(e)) => {
            let status = match &e {
                SwapError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                SwapError::Datasource(_) => StatusCode::BAD_GATEWAY,
                SwapError::NoPrevious => StatusCode::CONFLICT,
            };
            error(status, e)
        }
    }
}

/// Serves the admin API on `listener` until `stop` turns true, over `tls` when given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<super::tls::Tls>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    super::server::serve_on(listener, router, tls, stopped).await
}

/// A request to an admin API at `base` (`http://HOST:PORT`): the status and the JSON
/// answer (`{"error": ...}` included). Plain HTTP/1.1, one connection per request.
#[cfg(any(test, feature = "testing"))]
pub async fn call(
    base: &str,
    token: &str,
    method: &str,
    path_and_query: &str,
    body: Option<(&str, Vec<u8>)>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    call_over(base, None, token, method, path_and_query, body).await
}

/// [`call`], also to an `https://HOST:PORT` base, whose certificate `trust` verifies
/// (the public roots without it).
pub async fn call_over(
    base: &str,
    trust: Option<Arc<rustls::ClientConfig>>,
    token: &str,
    method: &str,
    path_and_query: &str,
    body: Option<(&str, Vec<u8>)>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use anyhow::Context;
    let (tls, authority) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
        (Some(a), _) => (false, a),
        (_, Some(a)) => (true, a),
        _ => anyhow::bail!("admin URL `{base}`: expected http://HOST:PORT or https://HOST:PORT"),
    };
    let authority = authority.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot reach the admin API at {base}"))?;
    let request = Outgoing {
        base,
        authority,
        token,
        method,
        path_and_query,
        body,
    };
    if !tls {
        return exchange(stream, request).await;
    }
    let trust = match trust {
        Some(t) => t,
        None => Arc::new(super::tls::client_config(&[])?),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("admin URL `{base}`: `{host}` is no host name"))?;
    let stream = tokio_rustls::TlsConnector::from(trust)
        .connect(name, stream)
        .await
        .with_context(|| format!("admin API at {base}: TLS handshake"))?;
    exchange(stream, request).await
}

/// One admin request, as [`exchange`] sends it.
struct Outgoing<'a> {
    base: &'a str,
    authority: &'a str,
    token: &'a str,
    method: &'a str,
    path_and_query: &'a str,
    body: Option<(&'a str, Vec<u8>)>,
}

async fn exchange<S>(stream: S, r: Outgoing<'_>) -> anyhow::Result<(u16, serde_json::Value)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use anyhow::Context;
    use http_body_util::{BodyExt, Full};
    let Outgoing {
        base,
        authority,
        token,
        method,
        path_and_query,
        body,
    } = r;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(|| format!("admin API at {base}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, authority)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let payload = match body {
        Some((content_type, bytes)) => {
            req = req.header(header::CONTENT_TYPE, content_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let req = req
        .body(Full::new(payload))
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("admin API at {base}: {method} {path_and_query}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("admin API at {base}: reading the answer"))?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| json!({ "error": format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)) }),
    );
    Ok((status, value))
}
