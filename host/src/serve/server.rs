//! The standalone server: Socket.IO on axum with the relay protocol (`join`, `leave`,
//! `publish`) in every namespace, `/healthz`, and the demo page at `/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use rmpv::Value as Mp;
use serde_json::json;
use socketioxide::BroadcastError;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::{SocketIo, TransportType};
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::request::{Asker, Publish, room_list};
use super::shutdown::Draining;
use crate::auth::{Connecting, Gate, Grant, Meter, Over, limits};
use crate::cluster::{Adapter, WasmAdapter};
use crate::config::{ServerConfig, Transport};

/// The adapter type of the standalone server's namespaces.
pub type Ns = WasmAdapter<socketioxide::adapter::Emitter>;

/// The axum app (Socket.IO included) for `adapter`, an open relay within
/// `server.limits`, and the `SocketIo` handle.
pub async fn app(
    adapter: Adapter,
    server: &ServerConfig,
) -> anyhow::Result<(Router, SocketIo<Ns>)> {
    app_gated(adapter, server, Arc::new(Gate::open(server.limits.clone()))).await
}

/// [`app`] with `gate` deciding who may connect, join and publish.
pub async fn app_gated(
    adapter: Adapter,
    server: &ServerConfig,
    gate: Arc<Gate>,
) -> anyhow::Result<(Router, SocketIo<Ns>)> {
    // A WebSocket message is read whole before its size can be checked: room for a
    // publish over `max_publish_bytes` (answered with an error ack), bounded all the same.
    let ws_max = (server.max_payload as usize).max(8 * server.limits.max_publish_bytes);
    let builder = SocketIo::builder()
        .with_config(adapter.socket_io_config())
        .max_buffer_size(server.max_buffer_size)
        .max_payload(server.max_payload)
        .ws_max_message_size(ws_max)
        .ping_interval(Duration::from_millis(server.ping_interval_ms))
        .ping_timeout(Duration::from_millis(server.ping_timeout_ms))
        .connect_timeout(Duration::from_millis(server.connect_timeout_ms))
        // socketioxide matches the path without its trailing slash.
        .req_path(server.path.trim_end_matches('/').to_string());
    let builder = match server.transports.as_slice() {
        [Transport::Polling] => builder.transports([TransportType::Polling]),
        [Transport::Websocket] => builder.transports([TransportType::Websocket]),
        _ => builder,
    };
    let (layer, io) = builder.with_adapter::<Ns>(adapter.clone()).build_layer();
    // Handlers are registered in a middleware, which runs before socketioxide sends the
    // CONNECT acknowledgement: a client that emits the moment it is connected cannot
    // race its first events past handler registration.
    let relay = {
        let adapter = adapter.clone();
        move |socket: SocketRef<Ns>, io: SocketIo<Ns>, auth: TryData<Mp>| {
            let (adapter, gate) = (adapter.clone(), gate.clone());
            async move { register_relay(socket, io, auth, adapter, gate).await }
        }
    };
    for nsp in &server.namespaces {
        if nsp.contains('{') {
            io.dyn_ns(nsp.clone(), on_connect.with(relay.clone()))
                .map_err(|e| anyhow::anyhow!("key `server.namespaces`: `{nsp}`: {e}"))?;
        } else {
            io.ns(nsp.clone(), on_connect.with(relay.clone())).await?;
        }
    }
    adapter.set_socket_inspector(super::handshake::inspector(io.clone()));

    let health_adapter = adapter.clone();
    let router = Router::new()
        .route("/", get(index))
        .route("/socket.io.min.js", get(client_bundle))
        .route(
            "/healthz",
            get(move |d: Option<Extension<Draining>>| health(health_adapter.clone(), d)),
        )
        .merge(super::publish::router(io.clone(), server))
        .layer(layer)
        .layer(cors(&server.cors));
    Ok((router, io))
}

/// Serves `router` on `addr` until `shutdown` completes, over `tls` when given;
/// returns the bound address through `bound` as soon as it listens.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    tls: Option<Arc<super::tls::Tls>>,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    bound(listener.local_addr()?);
    serve_on(listener, router, tls, shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes, over `tls` when given.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<Arc<super::tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(tls) = tls {
        return super::tls::serve(listener, router, tls, shutdown).await;
    }
    // Small frames go out at once (as Node.js does): with Nagle on, fan-out of small
    // broadcasts waits on delayed ACKs (measured: 7x fewer deliveries at 100 clients).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods(tower_http::cors::Any)
        .allow_headers(tower_http::cors::Any);
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(tower_http::cors::Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../static/index.html"),
    )
}

async fn client_bundle() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/javascript")],
        include_str!("../../static/socket.io.min.js"),
    )
}

/// 503 `{"status": "draining", ...}` once a shutdown began (the router carries a
/// [`Draining`] extension when served by `wasio serve`), so a load balancer stops routing here.
async fn health(adapter: Adapter, draining: Option<Extension<Draining>>) -> impl IntoResponse {
    let draining = draining.is_some_and(|Extension(d)| d.get());
    let (code, status) = if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    let current = adapter.status().current;
    (
        code,
        Json(json!({
            "status": status,
            "node_id": adapter.node_id(),
            "adapter": {
                "name": current.name,
                "version": current.version,
                "source": current.source,
                "sha256": current.sha256,
            },
            "guest": adapter.metrics().to_json(),
            "datasource": adapter.datasource_status(),
        })),
    )
}

async fn on_connect(socket: SocketRef<Ns>) {
    tracing::debug!(sid = %socket.id, ns = socket.ns(), "connected");
}

/// A refused connect: socket.io sends the client `connect_error` with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

async fn register_relay(
    socket: SocketRef<Ns>,
    io: SocketIo<Ns>,
    TryData(auth): TryData<Mp>,
    adapter: Adapter,
    gate: Arc<Gate>,
) -> Result<(), Refused> {
    let auth = auth.unwrap_or(Mp::Map(vec![]));
    let grant = {
        let json = serde_json::to_value(&auth).unwrap_or_default();
        let parts = socket.req_parts();
        let req = Connecting {
            namespace: socket.ns(),
            auth: &json,
            parts,
        };
        gate.connect(req).await.map_err(|why| {
            tracing::debug!(sid = %socket.id, ns = socket.ns(), "connect refused: {why}");
            Refused(why)
        })?
    };
    socket.extensions.insert(Arc::new(grant));
    super::handshake::record(&socket, auth);
    // As in socket.io, a socket is in the room of its own id: other nodes (Node.js ones
    // too) address a single socket that way.
    let own = [socket.id.to_string()];
    adapter.rooms_joined(socket.ns(), &own);
    socket.join(own);
    let (lane, ops) = Lane::new();
    socket.extensions.insert(lane);
    tokio::spawn(run_lane(socket.clone(), io, adapter, gate, ops));
    // Dropping the lane ends its worker (which holds the socket).
    socket.on_disconnect(async |s: SocketRef<Ns>| {
        s.extensions.remove::<Lane>();
    });
    socket.on(
        "join",
        async |seq: InOrder, TryData(arg): TryData<Mp>, ack: AckSender<Ns>| {
            seq.submit(Op::Join(arg.map_err(|e| e.to_string()), ack))
        },
    );
    socket.on(
        "leave",
        async |seq: InOrder, TryData(arg): TryData<Mp>, ack: AckSender<Ns>| {
            seq.submit(Op::Leave(arg.map_err(|e| e.to_string()), ack))
        },
    );
    socket.on(
        "publish",
        async |seq: InOrder, TryData(arg): TryData<Mp>, ack: AckSender<Ns>| {
            let size = seq.size;
            seq.submit(Op::Publish(arg.map_err(|e| e.to_string()), ack, size))
        },
    );
    Ok(())
}

/// A relay request of one socket.
enum Op {
    Join(Result<Mp, String>, AckSender<Ns>),
    Leave(Result<Mp, String>, AckSender<Ns>),
    /// With the event's size as received, in bytes.
    Publish(Result<Mp, String>, AckSender<Ns>, usize),
}

/// One socket's relay requests, applied in the order the socket sent them.
///
/// socketioxide runs every event handler in a task of its own, so two events of one
/// socket can run out of order (a `publish` before the `join` sent just before it).
/// Extractors, though, run in arrival order: [`InOrder`] numbers each event there,
/// and one worker per socket applies them by number.
#[derive(Clone)]
struct Lane {
    next: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<(u64, Op)>,
}

impl Lane {
    fn new() -> (Lane, mpsc::UnboundedReceiver<(u64, Op)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Lane {
                next: Arc::default(),
                tx,
            },
            rx,
        )
    }
}

/// The arrival number of an event, taken as it is extracted, and its size.
struct InOrder {
    seq: u64,
    size: usize,
    lane: Lane,
}

impl InOrder {
    fn submit(self, op: Op) {
        // The worker is gone only when the socket is: nothing to answer then.
        let _ = self.lane.tx.send((self.seq, op));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the socket has no relay lane")]
struct NoLane;

impl FromMessageParts<Ns> for InOrder {
    type Error = NoLane;
    fn from_message_parts(
        s: &Arc<socketioxide::socket::Socket<Ns>>,
        value: &mut socketioxide::handler::Value,
        _: &Option<i64>,
    ) -> Result<Self, NoLane> {
        let lane = s.extensions.get::<Lane>().ok_or(NoLane)?;
        let seq = lane.next.fetch_add(1, Ordering::Relaxed);
        let size = match value {
            socketioxide::handler::Value::Str(text, bins) => {
                text.len() + bins.iter().flatten().map(|b| b.len()).sum::<usize>()
            }
            socketioxide::handler::Value::Bytes(b) => b.len(),
        };
        Ok(InOrder { seq, size, lane })
    }
}

/// What a socket's lane works with.
struct Relay {
    socket: SocketRef<Ns>,
    io: SocketIo<Ns>,
    adapter: Adapter,
    gate: Arc<Gate>,
    grant: Arc<Grant>,
    meter: Meter,
    /// Rooms this socket is in, as its last join or leave left it.
    held_rooms: usize,
}

/// The lane ends with its socket: the rooms it held are released.
impl Drop for Relay {
    fn drop(&mut self) {
        super::memory::released(self.held_rooms);
    }
}

async fn run_lane(
    socket: SocketRef<Ns>,
    io: SocketIo<Ns>,
    adapter: Adapter,
    gate: Arc<Gate>,
    mut ops: mpsc::UnboundedReceiver<(u64, Op)>,
) {
    let grant = socket.extensions.get::<Arc<Grant>>().unwrap_or_default();
    let meter = Meter::new(&gate.limits());
    let mut relay = Relay {
        socket,
        io,
        adapter,
        gate,
        grant,
        meter,
        held_rooms: 0,
    };
    let mut next = 0u64;
    let mut early = BTreeMap::new();
    while let Some((seq, op)) = ops.recv().await {
        early.insert(seq, op);
        while let Some(op) = early.remove(&next) {
            next += 1;
            let over = match op {
                Op::Join(arg, ack) => relay.join(arg, ack).await,
                Op::Leave(arg, ack) => relay.leave(arg, ack),
                Op::Publish(arg, ack, size) => relay.publish(arg, ack, size).await,
            };
            if over && relay.gate.limits().disconnect {
                tracing::debug!(sid = %relay.socket.id, "over a limit: disconnecting");
                let _ = relay.socket.clone().disconnect();
                return;
            }
        }
    }
}

fn reply(ack: AckSender<Ns>, body: serde_json::Value) {
    // A client that asked for no ack gets none; nothing to report.
    let _ = ack.send(&body);
}

fn sorted_rooms(socket: &SocketRef<Ns>) -> Vec<String> {
    let own = socket.id.to_string();
    let mut rooms: Vec<String> = socket
        .rooms()
        .into_iter()
        .map(|r| r.to_string())
        .filter(|r| *r != own)
        .collect();
    rooms.sort();
    rooms
}

impl Relay {
    /// Answers an over-limit request and counts it; true tells the lane it was over.
    fn over(&self, what: &str, over: Over, ack: AckSender<Ns>) -> bool {
        self.gate.counters.limit_hit(over.limit);
        reply(
            ack,
            json!({ "error": format!("{what}: {}", over.message), "limit": over.limit.name() }),
        );
        true
    }

    async fn join(&mut self, arg: Result<Mp, String>, ack: AckSender<Ns>) -> bool {
        let rooms = match arg.and_then(|a| room_list(&a)) {
            Ok(rooms) => rooms,
            Err(e) => {
                reply(ack, json!({ "error": format!("join: {e}") }));
                return false;
            }
        };
        let limits = self.gate.limits();
        if let Err(over) = limits::names(&limits, &rooms) {
            return self.over("join", over, ack);
        }
        let current = self.socket.rooms();
        let mut new: Vec<&String> = rooms
            .iter()
            .filter(|r| !current.iter().any(|c| c == r.as_str()))
            .collect();
        new.dedup();
        // The socket's own-id room is not counted.
        if let Err(over) = limits::room_count(&limits, current.len().saturating_sub(1), new.len()) {
            return self.over("join", over, ack);
        }
        let id = self.socket.id.to_string();
        let view = self.grant.view(&id, self.socket.ns());
        if let Err(why) = self.gate.join(&view, &self.grant, &rooms).await {
            reply(ack, json!({ "error": format!("join: {why}") }));
            return false;
        }
        self.adapter.rooms_joined(self.socket.ns(), &rooms);
        self.socket.join(rooms);
        let now = sorted_rooms(&self.socket);
        self.held_rooms = now.len();
        reply(ack, json!({ "ok": true, "rooms": now }));
        false
    }

    fn leave(&mut self, arg: Result<Mp, String>, ack: AckSender<Ns>) -> bool {
        let rooms = match arg.and_then(|a| room_list(&a)) {
            Ok(rooms) => rooms,
            Err(e) => {
                reply(ack, json!({ "error": format!("leave: {e}") }));
                return false;
            }
        };
        if let Err(over) = limits::names(&self.gate.limits(), &rooms) {
            return self.over("leave", over, ack);
        }
        self.socket.leave(rooms);
        let now = sorted_rooms(&self.socket);
        super::memory::released(self.held_rooms.saturating_sub(now.len()));
        self.held_rooms = now.len();
        reply(ack, json!({ "ok": true, "rooms": now }));
        false
    }

    async fn publish(&mut self, arg: Result<Mp, String>, ack: AckSender<Ns>, size: usize) -> bool {
        let limits = self.gate.limits();
        if let Err(over) = limits::publish_size(&limits, size) {
            return self.over("publish", over, ack);
        }
        if let Err(over) = self.meter.take(&limits, std::time::Instant::now()) {
            return self.over("publish", over, ack);
        }
        let req = match arg.and_then(|a| Publish::parse(a, Asker::Socket)) {
            Ok(req) => req,
            Err(e) => {
                reply(ack, json!({ "error": format!("publish: {e}") }));
                return false;
            }
        };
        let id = self.socket.id.to_string();
        let view = self.grant.view(&id, self.socket.ns());
        if let Err(why) = self
            .gate
            .publish(&view, &self.grant, req.rooms.as_deref(), &req.event, size)
            .await
        {
            reply(ack, json!({ "error": format!("publish: {why}") }));
            return false;
        }
        emit(&self.socket, &self.io, req, ack).await;
        false
    }
}

async fn emit(socket: &SocketRef<Ns>, io: &SocketIo<Ns>, req: Publish, ack: AckSender<Ns>) {
    let Some(all) = io.of(socket.ns()) else {
        return reply(ack, json!({ "error": "publish: namespace is gone" }));
    };
    let op = match (req.rooms, req.except_self) {
        (Some(rooms), true) => socket.to(rooms),
        (Some(rooms), false) => all.to(rooms),
        (None, true) => socket.broadcast(),
        (None, false) => all,
    };
    let count = op.clone().sockets().len();
    match op.emit(&req.event, &req.data.unwrap_or(Mp::Nil)).await {
        Ok(()) => reply(ack, json!({ "ok": true, "count": count })),
        // Clients whose buffer was full (or that just closed) did not get it; the
        // others did.
        Err(BroadcastError::Socket(failed)) => reply(
            ack,
            json!({
                "error": format!("publish: {} clients could not take it (buffer full or closed)", failed.len()),
                "count": count.saturating_sub(failed.len()),
            }),
        ),
        Err(e) => reply(
            ack,
            json!({ "error": format!("publish: {e}"), "count": count }),
        ),
    }
}
