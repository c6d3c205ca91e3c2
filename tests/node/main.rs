//! `wasio-test-node`: what `wasio serve` serves (the relay protocol, `/healthz`), plus an
//! `/ops` namespace through which a test drives cluster operations on this node, with
//! socketioxide's and wasio's public API only. The interop tests (tests/js, `redis-*`)
//! run it beside Node.js socket.io servers on one Redis.
//!
//! Usage: `wasio-test-node --config FILE --port N --name NAME`
//!
//! Every `/ops` event takes one object and answers through its ack with `{ok: true, ...}`
//! or `{error}`; see tests/js/README.md for the list. Server-side emits received by this
//! node are recorded and pushed to every `/ops` client as `serverSideEmitted`
//! `{node, nsp, args}`; when the emitter waits for an ack, this node answers with its
//! name (unless told to hold its acks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rmpv::Value as Mp;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide_core::Sid;
use wasio::testing::Ns;
use wasio::{Config, ServerSideEvent};

/// The node's state, shared by the `/ops` handlers.
struct Node {
    name: String,
    adapter: wasio::Adapter,
    io: SocketIo<Ns>,
    /// Server-side emits received, in arrival order.
    received: Mutex<Vec<Mp>>,
    /// While set, server-side emits that want an ack get none (a node that never answers).
    hold_acks: AtomicBool,
}

static NODE: OnceLock<Arc<Node>> = OnceLock::new();

fn node() -> &'static Arc<Node> {
    NODE.get().expect("node state is set before serving")
}

struct Args {
    config: PathBuf,
    port: u16,
    name: String,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut config, mut port, mut name) = (None, None, None);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
            "--name" => name = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config FILE is required")?,
        port: port.unwrap_or(0),
        name: name.unwrap_or_else(|| "wasio".into()),
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = parse_args().map_err(|e| {
        anyhow::anyhow!("{e}\nusage: wasio-test-node --config FILE --port N --name NAME")
    })?;
    let mut config = Config::load(Some(&args.config), std::env::vars())?;
    config.server.port = args.port;
    let adapter = wasio::Adapter::load(config.adapter_options()).await?;
    let (router, io) = wasio::testing::app(adapter.clone(), &config.server).await?;

    // fetch-sockets answers carry the handshake the host records, and a `data` of ours:
    // `{node}`, as the Node.js test node sets `socket.data`.
    let base = wasio::testing::inspector(io.clone());
    let mut data = Vec::new();
    rmpv::encode::write_value(
        &mut data,
        &Mp::Map(vec![(Mp::from("node"), Mp::from(args.name.as_str()))]),
    )?;
    adapter.set_socket_inspector(Arc::new(move |nsp: &str, sid: Sid| {
        base(nsp, sid).map(|(handshake, _)| (handshake, data.clone()))
    }));

    let state = Arc::new(Node {
        name: args.name.clone(),
        adapter: adapter.clone(),
        io: io.clone(),
        received: Mutex::new(Vec::new()),
        hold_acks: AtomicBool::new(false),
    });
    NODE.set(state)
        .map_err(|_| anyhow::anyhow!("node state set twice"))?;
    adapter.on_server_side_emit(Arc::new(on_server_side_emit));
    io.ns("/ops", on_ops_connect).await?;

    let addr = SocketAddr::new(config.server.host, config.server.port);
    let name = args.name.clone();
    let bound = move |a: SocketAddr| eprintln!("wasio-test-node {name} listening on http://{a}");
    let res = wasio::testing::serve(router, addr, None, bound, shutdown_signal()).await;
    adapter.close().await;
    res
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Another node's `serverSideEmit`: record it, tell the `/ops` clients, answer the ack.
fn on_server_side_emit(ev: ServerSideEvent) {
    let n = node();
    let args = match ev.data {
        Mp::Array(items) => items,
        other => vec![other],
    };
    let record = Mp::Map(vec![
        (Mp::from("node"), Mp::from(n.name.as_str())),
        (Mp::from("nsp"), Mp::from(ev.nsp.as_str())),
        (Mp::from("args"), Mp::Array(args)),
    ]);
    n.received.lock().unwrap().push(record.clone());
    if let Some(ops) = n.io.of("/ops") {
        tokio::spawn(async move {
            let _ = ops.local().emit("serverSideEmitted", &record).await;
        });
    }
    if let Some(ack) = ev.ack
        && !n.hold_acks.load(Ordering::SeqCst)
    {
        ack(vec![Mp::from(n.name.as_str())]);
    }
}

async fn on_ops_connect(socket: SocketRef<Ns>) {
    for op in [
        "info",
        "broadcast",
        "broadcastWithAck",
        "fetchSockets",
        "localSockets",
        "allRooms",
        "serverCount",
        "socketsJoin",
        "socketsLeave",
        "disconnectSockets",
        "serverSideEmit",
        "holdServerSideAcks",
        "received",
    ] {
        socket.on(
            op,
            async move |TryData(arg): TryData<Mp>, ack: AckSender<Ns>| {
                let arg = arg.unwrap_or(Mp::Nil);
                let res = match run_op(op, &arg).await {
                    Ok(v) => v,
                    Err(e) => Mp::Map(vec![(Mp::from("error"), Mp::from(e))]),
                };
                let _ = ack.send(&res);
            },
        );
    }
}

/// A field of an op's argument object.
fn field<'a>(arg: &'a Mp, key: &str) -> Option<&'a Mp> {
    arg.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_nil())
}

fn str_field(arg: &Mp, key: &str) -> Result<Option<String>, String> {
    match field(arg, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or(format!("`{key}` must be a string")),
    }
}

/// A room name or a list of them; absent = empty.
fn rooms_field(arg: &Mp, key: &str) -> Result<Vec<String>, String> {
    match field(arg, key) {
        None => Ok(vec![]),
        Some(Mp::Array(items)) => items
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_string)
                    .ok_or(format!("`{key}` must hold strings"))
            })
            .collect(),
        Some(v) => v
            .as_str()
            .map(|s| vec![s.to_string()])
            .ok_or(format!("`{key}` must be a string or an array of strings")),
    }
}

fn ok(mut fields: Vec<(Mp, Mp)>) -> Mp {
    fields.insert(0, (Mp::from("ok"), Mp::from(true)));
    Mp::Map(fields)
}

/// The namespace's broadcast operator with the `rooms` / `except` targets of `arg`.
fn target(arg: &Mp) -> Result<socketioxide::operators::BroadcastOperators<Ns>, String> {
    let nsp = str_field(arg, "nsp")?.unwrap_or_else(|| "/".into());
    let mut op = node()
        .io
        .of(&nsp)
        .ok_or(format!("no namespace {nsp} on this node"))?;
    let rooms = rooms_field(arg, "rooms")?;
    if !rooms.is_empty() {
        op = op.within(rooms);
    }
    let except = rooms_field(arg, "except")?;
    if !except.is_empty() {
        op = op.except(except);
    }
    if matches!(field(arg, "local"), Some(Mp::Boolean(true))) {
        op = op.local();
    }
    Ok(op)
}

fn timeout_field(arg: &Mp, default_ms: u64) -> Duration {
    Duration::from_millis(
        field(arg, "timeoutMs")
            .and_then(Mp::as_u64)
            .unwrap_or(default_ms),
    )
}

async fn run_op(op: &str, arg: &Mp) -> Result<Mp, String> {
    let n = node();
    match op {
        "info" => Ok(ok(vec![
            (Mp::from("name"), Mp::from(n.name.as_str())),
            (Mp::from("kind"), Mp::from("wasio")),
            (Mp::from("nodeId"), Mp::from(n.adapter.node_id())),
        ])),
        "broadcast" => {
            let event = str_field(arg, "event")?.ok_or("`event` is required")?;
            let data = field(arg, "data").cloned().unwrap_or(Mp::Nil);
            target(arg)?
                .emit(&event, &data)
                .await
                .map_err(|e| format!("broadcast: {e}"))?;
            Ok(ok(vec![]))
        }
        "broadcastWithAck" => {
            let event = str_field(arg, "event")?.ok_or("`event` is required")?;
            let data = field(arg, "data").cloned().unwrap_or(Mp::Nil);
            let timeout = timeout_field(arg, 2000);
            let started = Instant::now();
            let acks = target(arg)?
                .timeout(timeout)
                .emit_with_ack::<_, Mp>(&event, &data)
                .await
                .map_err(|e| format!("broadcastWithAck: {e}"))?;
            let (mut responses, mut errors) = (vec![], vec![]);
            let mut acks = std::pin::pin!(acks);
            while let Some((_sid, res)) = acks.next().await {
                match res {
                    Ok(v) => responses.push(v),
                    Err(e) => errors.push(Mp::from(e.to_string())),
                }
            }
            let elapsed = started.elapsed();
            // socketioxide's ack stream ends when every client answered (this node's and,
            // through the guest, the others') or at the timeout, which it does not report
            // for remote clients: it is `complete` when it ended before the timeout.
            let complete = errors.is_empty() && elapsed < timeout;
            Ok(ok(vec![
                (Mp::from("responses"), Mp::Array(responses)),
                (Mp::from("errors"), Mp::Array(errors)),
                (Mp::from("complete"), Mp::from(complete)),
                (Mp::from("elapsedMs"), Mp::from(elapsed.as_millis() as u64)),
            ]))
        }
        "fetchSockets" => {
            let nsp = str_field(arg, "nsp")?.unwrap_or_else(|| "/".into());
            let (rooms, except) = (rooms_field(arg, "rooms")?, rooms_field(arg, "except")?);
            let sockets = n
                .adapter
                .fetch_sockets(&nsp, &rooms, &except)
                .await
                .map_err(|e| format!("fetchSockets: {e:#}"))?;
            let decode = |b: &[u8]| rmpv::decode::read_value(&mut &b[..]).unwrap_or(Mp::Nil);
            let out = sockets
                .iter()
                .map(|s| {
                    Mp::Map(vec![
                        (Mp::from("id"), Mp::from(s.id.as_str())),
                        (Mp::from("serverId"), Mp::from(s.server_id.as_str())),
                        (Mp::from("rooms"), rooms_mp(&s.rooms)),
                        (Mp::from("handshake"), decode(&s.handshake)),
                        (Mp::from("data"), decode(&s.data)),
                    ])
                })
                .collect();
            Ok(ok(vec![(Mp::from("sockets"), Mp::Array(out))]))
        }
        "localSockets" => {
            let sockets = target(arg)?.local().sockets();
            let out = sockets
                .iter()
                .map(|s| {
                    Mp::Map(vec![
                        (Mp::from("id"), Mp::from(s.id.to_string())),
                        (Mp::from("rooms"), rooms_mp(s.rooms())),
                    ])
                })
                .collect();
            Ok(ok(vec![(Mp::from("sockets"), Mp::Array(out))]))
        }
        "allRooms" => {
            let nsp = str_field(arg, "nsp")?.unwrap_or_else(|| "/".into());
            let rooms = n
                .adapter
                .all_rooms(&nsp)
                .await
                .map_err(|e| format!("allRooms: {e:#}"))?;
            Ok(ok(vec![(Mp::from("rooms"), rooms_mp(rooms))]))
        }
        "serverCount" => {
            let nsp = str_field(arg, "nsp")?.unwrap_or_else(|| "/".into());
            let count = n
                .adapter
                .server_count(&nsp)
                .await
                .map_err(|e| format!("serverCount: {e:#}"))?;
            Ok(ok(vec![(Mp::from("count"), Mp::from(count))]))
        }
        "socketsJoin" | "socketsLeave" => {
            let rooms = rooms_field(arg, "room")?;
            if rooms.is_empty() {
                return Err("`room` is required".into());
            }
            let t = target(arg)?;
            let res = if op == "socketsJoin" {
                t.join(rooms).await
            } else {
                t.leave(rooms).await
            };
            res.map_err(|e| format!("{op}: {e}"))?;
            Ok(ok(vec![]))
        }
        "disconnectSockets" => {
            target(arg)?
                .disconnect()
                .await
                .map_err(|e| format!("disconnectSockets: {e}"))?;
            Ok(ok(vec![]))
        }
        "serverSideEmit" => {
            let nsp = str_field(arg, "nsp")?.unwrap_or_else(|| "/".into());
            let Some(Mp::Array(args)) = field(arg, "args").cloned() else {
                return Err("`args` must be [event, ...args]".into());
            };
            if matches!(field(arg, "ack"), Some(Mp::Boolean(true))) {
                // wasio hands each node's ack arguments; socket.io's callback gets one
                // value per node (an ack takes one argument there): the first.
                let first = |acks: Vec<Mp>| -> Mp {
                    Mp::Array(
                        acks.into_iter()
                            .map(|args| match args {
                                Mp::Array(mut a) if !a.is_empty() => a.swap_remove(0),
                                other => other,
                            })
                            .collect(),
                    )
                };
                match n.adapter.server_side_emit_with_ack(&nsp, args).await {
                    Ok(acks) => Ok(ok(vec![(Mp::from("responses"), first(acks))])),
                    // As socket.io's `(err, responses)`: the error and what came.
                    Err(e) => match e.downcast::<wasio::PartialAcks>() {
                        Ok(partial) => Ok(Mp::Map(vec![
                            (Mp::from("error"), Mp::from(partial.message)),
                            (Mp::from("responses"), first(partial.responses)),
                        ])),
                        Err(e) => Err(format!("serverSideEmit: {e:#}")),
                    },
                }
            } else {
                n.adapter
                    .server_side_emit(&nsp, args)
                    .await
                    .map_err(|e| format!("serverSideEmit: {e:#}"))?;
                Ok(ok(vec![]))
            }
        }
        "holdServerSideAcks" => {
            let hold = matches!(field(arg, "hold"), Some(Mp::Boolean(true)));
            n.hold_acks.store(hold, Ordering::SeqCst);
            Ok(ok(vec![]))
        }
        "received" => {
            let events = n.received.lock().unwrap().clone();
            Ok(ok(vec![(Mp::from("events"), Mp::Array(events))]))
        }
        other => Err(format!("unknown op {other}")),
    }
}

fn rooms_mp<R: ToString>(rooms: impl IntoIterator<Item = R>) -> Mp {
    let mut rooms: Vec<String> = rooms.into_iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms.dedup();
    Mp::Array(rooms.into_iter().map(Mp::from).collect())
}
