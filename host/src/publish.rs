//! `POST /api/publish`: back ends in any language emit to clients without a Socket.IO
//! client. Guarded by `server.api_key` (off without one); the emit goes through the
//! adapter, so it reaches the whole cluster, Node.js nodes included.
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
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;

use crate::server::Ns;

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// Default `/`.
    namespace: Option<String>,
    /// A room or a list of rooms; absent: every socket of the namespace.
    room: Option<Rooms>,
    /// Sockets in these rooms are left out.
    except: Option<Rooms>,
    event: String,
    /// The event's one argument; absent: none.
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Rooms {
    One(String),
    Many(Vec<String>),
}

impl Rooms {
    fn list(self, field: &str) -> Result<Vec<String>, String> {
        let list = match self {
            Rooms::One(r) => vec![r],
            Rooms::Many(l) => l,
        };
        if list.is_empty() || list.iter().any(String::is_empty) {
            return Err(format!(
                "`{field}` must be a non-empty room name or list of them"
            ));
        }
        Ok(list)
    }
}

#[derive(Clone)]
struct Api {
    io: SocketIo<Ns>,
    key: Option<Arc<str>>,
}

/// The publish route on `io`; `key` None turns it off (404 saying how to turn it on).
pub fn router(io: SocketIo<Ns>, key: Option<&str>) -> Router {
    let state = Api {
        io,
        key: key.map(Into::into),
    };
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
    let Some(key) = &api.key else {
        return error(
            StatusCode::NOT_FOUND,
            "the publish API is off: set server.api_key (or WASIO_SERVER__API_KEY)",
        );
    };
    match given_key(&headers) {
        Some(k) if crate::admin::same_secret(k.as_bytes(), key.as_bytes()) => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (Authorization: Bearer KEY or X-API-Key: KEY)",
            );
        }
    }
    let req: PublishBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    match emit(&api.io, req).await {
        Ok(count) => Json(json!({ "ok": true, "local_count": count })).into_response(),
        Err((status, msg)) => error(status, msg),
    }
}

/// Emits `req`; the number of this node's sockets it targeted.
async fn emit(io: &SocketIo<Ns>, req: PublishBody) -> Result<usize, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    if req.event.is_empty() || crate::server::RESERVED.contains(&req.event.as_str()) {
        return Err(bad(format!(
            "`event` `{}` cannot be published (empty or reserved by socket.io)",
            req.event
        )));
    }
    let nsp = req.namespace.unwrap_or_else(|| "/".into());
    let Some(mut op) = io.of(nsp.as_str()) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no namespace `{nsp}` on this node"),
        ));
    };
    if let Some(rooms) = req.room {
        op = op.to(rooms.list("room").map_err(bad)?);
    }
    if let Some(except) = req.except {
        op = op.except(except.list("except").map_err(bad)?);
    }
    let count = op.clone().local().sockets().len();
    let sent = match &req.data {
        Some(data) => op.emit(&req.event, data).await,
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
