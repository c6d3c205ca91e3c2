//! `POST /api/publish`: back ends in any language emit to clients without a Socket.IO
//! client. Guarded by `server.api_key` (may publish anywhere) and `[[server.api_keys]]`
//! (each limited to some namespaces and rooms); off without any. The emit goes through
//! the adapter, so it reaches the whole cluster, Node.js nodes included.
//!
//! ```text
//! curl -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' \
//!      -d '{"room": "news", "event": "headline", "data": {"title": "..."}}' \
//!      http://HOST:3000/api/publish
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use rmpv::Value as Mp;
use serde_json::{Value, json};
use socketioxide::SocketIo;

use super::request::{Asker, Publish};
use super::server::Ns;
use crate::auth::{Patterns, Rights};
use crate::config::ServerConfig;

#[derive(Clone)]
struct Api {
    io: SocketIo<Ns>,
    /// Each key and where it may publish; empty turns the API off.
    keys: Arc<[(String, Rights)]>,
}

/// The publish route on `io` for `server`'s keys; without any it answers 404 saying
/// how to turn it on.
pub fn router(io: SocketIo<Ns>, server: &ServerConfig) -> Router {
    let anywhere = || Rights {
        namespaces: Patterns::new(["*"]),
        join: Patterns::default(),
        publish: Patterns::new(["*"]),
    };
    let keys = server
        .api_key
        .iter()
        .map(|k| (k.clone(), anywhere()))
        .chain(server.api_keys.iter().map(|k| {
            let rights = Rights {
                namespaces: Patterns::new(k.namespaces.clone()),
                join: Patterns::default(),
                publish: Patterns::new(k.rooms.clone()),
            };
            (k.key.clone(), rights)
        }))
        .collect();
    let state = Api { io, keys };
    Router::new()
        .route("/api/publish", post(publish))
        .with_state(state)
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// The key a request carries: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn given_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

async fn publish(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if api.keys.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "the publish API is off: set server.api_key (or WASIO_SERVER__API_KEY) or [[server.api_keys]]",
        );
    }
    let given = given_key(&headers).unwrap_or("");
    // Every key is compared (in constant time each), so the answer's timing does not
    // tell which one nearly matched.
    let mut rights = None;
    for (key, r) in api.keys.iter() {
        if super::admin::same_secret(given.as_bytes(), key.as_bytes()) && rights.is_none() {
            rights = Some(r);
        }
    }
    let Some(rights) = rights.filter(|_| !given.is_empty()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (Authorization: Bearer KEY or X-API-Key: KEY)",
        );
    };
    let req = match serde_json::from_slice::<Value>(&body) {
        Ok(b) => rmpv::ext::to_value(b)
            .map_err(|e| e.to_string())
            .and_then(|b| Publish::parse(b, Asker::Api)),
        Err(e) => Err(e.to_string()),
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let nsp = req.namespace.as_deref().unwrap_or("/");
    if !rights.namespaces.allows(nsp) {
        return error(
            StatusCode::FORBIDDEN,
            format!("this API key may not publish in namespace `{nsp}`"),
        );
    }
    if let Some(why) = rights.publish_refused(req.rooms.as_deref()) {
        return error(StatusCode::FORBIDDEN, format!("this API key: {why}"));
    }
    match emit(&api.io, req).await {
        Ok(count) => Json(json!({ "ok": true, "local_count": count })).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

/// Emits `req`; the number of this node's sockets it targeted.
async fn emit(io: &SocketIo<Ns>, req: Publish) -> Result<usize, (StatusCode, String)> {
    let nsp = req.namespace.unwrap_or_else(|| "/".into());
    let Some(mut op) = io.of(nsp.as_str()) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no namespace `{nsp}` on this node"),
        ));
    };
    if let Some(rooms) = req.rooms {
        op = op.to(rooms);
    }
    if let Some(except) = req.except {
        op = op.except(except);
    }
    let count = op.clone().local().sockets().len();
    let sent = match &req.data {
        Some(data) => op.emit(&req.event, data as &Mp).await,
        // An empty tuple is spread into no arguments (`()` would be one `null`).
        None => op.emit(&req.event, &[(); 0]).await,
    };
    match sent {
        Ok(()) => Ok(count),
        // Some of this node's clients could not take it (buffer full, closing); the
        // rest of the cluster did get it.
        Err(socketioxide::BroadcastError::Socket(failed)) => Ok(count.saturating_sub(failed.len())),
        Err(e) => Err((StatusCode::BAD_GATEWAY, format!("publish: {e}"))),
    }
}
