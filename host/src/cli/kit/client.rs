//! A small Socket.IO v4 client over WebSocket (text packets only), enough for the
//! conformance kit: connect to a namespace, emit with an ack, receive events, answer the
//! server's ack requests with the client's own id, and notice a disconnect.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the server sent this client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An event: its name and first argument (`null` without one).
    Event(String, Value),
    /// The ack of one of our emits.
    Ack(u64, Value),
    /// The server disconnected this socket (or the connection closed).
    Disconnected,
}

/// One connected client.
pub struct Client {
    /// The socket's id on the server.
    pub sid: String,
    /// `"{nsp},"` outside `/`, empty in `/`.
    prefix: String,
    out: mpsc::UnboundedSender<String>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    next_ack: u64,
}

impl Client {
    /// Connects to `addr` and to its `/` namespace.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        Client::connect_to(addr, "/").await
    }

    /// Connects to `addr` and to its namespace `nsp`.
    pub async fn connect_to(addr: SocketAddr, nsp: &str) -> anyhow::Result<Client> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        // Packets outside `/` carry their namespace before the body: `42/other,…`.
        let prefix: String = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting {url}"))?;
        let sid = loop {
            let Some(msg) = ws.next().await else {
                bail!("{url} closed during the handshake")
            };
            let Message::Text(t) = msg? else { continue };
            match t.as_str() {
                t if t.starts_with('0') => ws.send(Message::text(format!("40{prefix}"))).await?,
                t if t.starts_with(&format!("40{prefix}")) => {
                    let v: Value =
                        serde_json::from_str(&t[2 + prefix.len()..]).context("CONNECT packet")?;
                    break v["sid"].as_str().unwrap_or_default().to_string();
                }
                "2" => ws.send(Message::text("3")).await?,
                t => bail!("unexpected packet during the handshake: {t}"),
            }
        };
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let (deliver, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reply = out.clone();
        let me = sid.clone();
        let ours = prefix.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                match parse(&t, &ours) {
                    Some(Packet::Ping) => {
                        let _ = reply.send("3".into());
                    }
                    Some(Packet::Event { id, event, arg }) => {
                        if let Some(id) = id {
                            let ack = Value::from(vec![me.clone()]);
                            let _ = reply.send(format!("43{ours}{id}{ack}"));
                        }
                        let _ = deliver.send(Incoming::Event(event, arg));
                    }
                    Some(Packet::Ack { id, arg }) => {
                        let _ = deliver.send(Incoming::Ack(id, arg));
                    }
                    Some(Packet::Disconnect) => break,
                    None => {}
                }
            }
            let _ = deliver.send(Incoming::Disconnected);
        });
        Ok(Client {
            sid,
            prefix,
            out,
            inbox,
            next_ack: 0,
        })
    }

    /// Emits `event` with `arg` and waits for the server's ack (its first argument).
    pub async fn emit_with_ack(&mut self, event: &str, arg: Value) -> anyhow::Result<Value> {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = Value::from(vec![Value::from(event), arg]);
        self.out
            .send(format!("42{}{id}{packet}", self.prefix))
            .map_err(|_| anyhow::anyhow!("the connection is closed"))?;
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Incoming::Ack(got, v)) if got == id => return Ok(v),
                Some(Incoming::Disconnected) | None => bail!("no ack for `{event}`"),
                Some(_) => {}
            }
        }
    }

    /// The next thing the server sent, waiting `wait` at most.
    pub async fn next(&mut self, wait: Duration) -> Option<Incoming> {
        tokio::time::timeout(wait, self.inbox.recv())
            .await
            .ok()
            .flatten()
    }
}

enum Packet {
    Ping,
    Event {
        id: Option<u64>,
        event: String,
        arg: Value,
    },
    Ack {
        id: u64,
        arg: Value,
    },
    Disconnect,
}

/// Reads an Engine.IO text frame holding a Socket.IO packet of the namespace whose
/// packets start with `prefix` (empty for `/`); a packet of another namespace is none.
fn parse(frame: &str, prefix: &str) -> Option<Packet> {
    if frame == "2" {
        return Some(Packet::Ping);
    }
    let sio = frame.strip_prefix('4')?;
    let (kind, rest) = sio.split_at_checked(1)?;
    let rest = rest.strip_prefix(prefix)?;
    if prefix.is_empty() && rest.starts_with('/') {
        return None;
    }
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let id = rest[..digits].parse().ok();
    let body: Value = serde_json::from_str(&rest[digits..]).unwrap_or(Value::Null);
    let first = |v: &Value, i: usize| v.get(i).cloned().unwrap_or(Value::Null);
    match kind {
        "1" => Some(Packet::Disconnect),
        "2" => Some(Packet::Event {
            id,
            event: body.get(0)?.as_str()?.to_string(),
            arg: first(&body, 1),
        }),
        "3" => Some(Packet::Ack {
            id: id?,
            arg: first(&body, 0),
        }),
        _ => None,
    }
}
