//! A native node: socketioxide 0.18.9 with socketioxide-redis (fred driver), serving the
//! same `join` and `publish` relay events as `wasio serve` (host/src/server.rs): `join` a
//! room or list of rooms (ack `{ok, rooms}`); `publish` emits `event` with `data` to the
//! namespace (or `room`) cluster-wide, `exceptSelf` skipping the sender, ack `{ok, count}`
//! with the number of this node's sockets it went to.

use axum::serve::ListenerExt;
use fred::types::RespVersion;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[arg(long)]
    port: u16,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Redis channel prefix.
    #[arg(long, default_value = "socket.io")]
    key: String,
    /// Packets queued per client before sends to it fail (wasio's default, so that both
    /// drop at the same point).
    #[arg(long, default_value_t = 4096)]
    max_buffer_size: usize,
    /// Set TCP_NODELAY on accepted connections (`wasio serve` does not, as of this crate).
    #[arg(long)]
    nodelay: bool,
}

type Ns = FredAdapter<Emitter>;

pub fn serve(args: NodeArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut config = fred::prelude::Config::from_url(&args.redis)?;
        config.version = RespVersion::RESP3;
        let client = fred::prelude::Builder::from_config(config).build_subscriber_client()?;
        let adapter = RedisAdapterCtr::new_with_fred_config(
            client,
            RedisAdapterConfig::new().with_prefix(args.key.clone()),
        )
        .await?;
        let (layer, io) = SocketIo::builder()
            .max_buffer_size(args.max_buffer_size)
            .with_adapter::<Ns>(adapter)
            .build_layer();
        io.ns("/", on_connect.with(register::<Ns>)).await?;
        let app = axum::Router::<()>::new().layer(layer);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        if args.nodelay {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).await?;
        } else {
            axum::serve(listener, app).await?;
        }
        Ok(())
    })
}

async fn on_connect() {}

/// Registers the relay's handlers in a middleware, as `wasio serve` does: socketioxide
/// sends the CONNECT packet before it runs the connect handler, so events a client emits
/// at once would otherwise be dropped (a `join` right after connecting never acked).
async fn register<A: Adapter>(socket: SocketRef<A>) -> Result<(), std::convert::Infallible> {
    socket.on("join", on_join::<A>);
    socket.on("publish", on_publish::<A>);
    Ok(())
}

async fn on_join<A: Adapter>(socket: SocketRef<A>, Data(arg): Data<Value>, ack: AckSender<A>) {
    let body = match rooms_of(&arg) {
        Ok(rooms) => {
            socket.join(rooms);
            let mut now: Vec<String> = socket.rooms().into_iter().map(|r| r.to_string()).collect();
            now.sort();
            json!({ "ok": true, "rooms": now })
        }
        Err(e) => json!({ "error": format!("join: {e}") }),
    };
    let _ = ack.send(&body);
}

async fn on_publish<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    Data(arg): Data<Value>,
    ack: AckSender<A>,
) {
    let body = match publish(&socket, &io, arg).await {
        Ok(count) => json!({ "ok": true, "count": count }),
        Err(e) => json!({ "error": format!("publish: {e}") }),
    };
    let _ = ack.send(&body);
}

fn rooms_of(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err("a room must be a non-empty string".to_string()),
            })
            .collect(),
        _ => Err("`room` must be a non-empty string or array of them".into()),
    }
}

async fn publish<A: Adapter>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    mut arg: Value,
) -> Result<usize, String> {
    let Some(fields) = arg.as_object_mut() else {
        return Err("expected an object {room?, event, data?, exceptSelf?}".into());
    };
    let event = match fields.get("event") {
        Some(Value::String(e)) if !e.is_empty() => e.clone(),
        _ => return Err("`event` is required".into()),
    };
    let data = fields.remove("data").unwrap_or(Value::Null);
    let rooms = match fields.get("room") {
        None | Some(Value::Null) => None,
        Some(v) => Some(rooms_of(v)?),
    };
    let except_self = fields
        .get("exceptSelf")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let all = io.of(socket.ns()).ok_or("namespace is gone")?;
    let op = match (rooms, except_self) {
        (Some(rooms), true) => socket.to(rooms),
        (Some(rooms), false) => all.to(rooms),
        (None, true) => socket.broadcast(),
        (None, false) => all,
    };
    // As wasio does: the sockets of this node it goes to.
    let count = op.clone().sockets().len();
    op.emit(&event, &data).await.map_err(|e| e.to_string())?;
    Ok(count)
}
