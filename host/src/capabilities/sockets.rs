//! `wasio:adapter/sockets`: the guest acting on this node's sockets on behalf of other
//! nodes. Everything is local and immediate; acks come back later as events.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Event, HostState};
use crate::runtime::bindings::wasio::adapter::sockets::Host;
use crate::runtime::bindings::wasio::adapter::types::{BroadcastOpts, Error, SocketInfo};

/// Why an action on local sockets failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The packet or the options could not be read.
    #[error("{0}")]
    Invalid(String),
    /// The sockets could not be acted on.
    #[error("{0}")]
    Failed(String),
}

impl From<LocalError> for Error {
    fn from(e: LocalError) -> Error {
        match e {
            LocalError::Invalid(m) => Error::Invalid(m),
            LocalError::Failed(m) => Error::Other(m),
        }
    }
}

/// One namespace's sockets on this node, as the guest may act on them. Implemented by
/// the socketioxide bridge; packets and acks are in the contract's MessagePack form.
pub trait LocalNamespace: Send + Sync {
    /// Delivers `packet` to the matching local sockets.
    fn broadcast(&self, packet: &[u8], opts: &BroadcastOpts) -> Result<(), LocalError>;
    /// Delivers with acks: a stream of each client's ack (MessagePack array) and how
    /// many clients were targeted.
    fn broadcast_with_ack(
        &self,
        packet: &[u8],
        opts: &BroadcastOpts,
        timeout: Option<Duration>,
    ) -> Result<(BoxStream<'static, Vec<u8>>, u32), LocalError>;
    /// Makes the matching local sockets join `rooms`.
    fn add_sockets(&self, opts: &BroadcastOpts, rooms: Vec<String>);
    /// Makes the matching local sockets leave `rooms`.
    fn del_sockets(&self, opts: &BroadcastOpts, rooms: Vec<String>);
    /// Disconnects the matching local sockets.
    fn disconnect(&self, opts: &BroadcastOpts, close: bool) -> Result<(), LocalError>;
    /// The matching local sockets, with handshake and data.
    fn fetch(&self, opts: &BroadcastOpts) -> Vec<SocketInfo>;
    /// The rooms of the matching local sockets.
    fn rooms(&self, opts: &BroadcastOpts) -> Vec<String>;
    /// How many local sockets, and rooms other than the sockets' own-id ones.
    fn stats(&self) -> (usize, usize);
}

/// A `serverSideEmit` from another node, handed to this node's handler.
pub struct ServerSideEvent {
    /// The namespace it was emitted in.
    pub nsp: String,
    /// `[event, ...args]`.
    pub data: rmpv::Value,
    /// Present when the emitter waits for an ack: call it once with the answer.
    pub ack: Option<Box<dyn FnOnce(Vec<rmpv::Value>) + Send>>,
}

/// What runs on this node when another node does `serverSideEmit`.
pub type ServerSideHandler = Arc<dyn Fn(ServerSideEvent) + Send + Sync>;

/// Describes a local socket for fetch-sockets answers: (handshake, data), both
/// MessagePack; `None` when the socket is gone.
pub type SocketInspector =
    Arc<dyn Fn(&str, socketioxide_core::Sid) -> Option<(Vec<u8>, Vec<u8>)> + Send + Sync>;

impl HostState {
    /// Namespace `nsp`'s sockets, to act on; none for a swapped-out adapter.
    fn local(&self, nsp: &str) -> Option<Arc<dyn LocalNamespace>> {
        if self.muted() {
            return None;
        }
        self.node.namespaces.get(nsp)
    }
}

impl Host for HostState {
    fn broadcast(
        &mut self,
        nsp: String,
        packet: Vec<u8>,
        opts: BroadcastOpts,
    ) -> wasmtime::Result<Result<(), Error>> {
        // A swapped-out adapter draining its requests delivers nothing: the new one does.
        let Some(ns) = self.local(&nsp) else {
            return Ok(Ok(()));
        };
        Ok(ns.broadcast(&packet, &opts).map_err(Error::from))
    }

    fn broadcast_with_ack(
        &mut self,
        nsp: String,
        packet: Vec<u8>,
        opts: BroadcastOpts,
        timeout_ms: Option<u32>,
        handle: u64,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let generation = self.generation;
        let node = self.node.clone();
        let Some(ns) = self.local(&nsp) else {
            node.push(Event::LocalAck {
                generation,
                handle,
                ack: None,
            });
            return Ok(Ok(0));
        };
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let (mut acks, count) = match ns.broadcast_with_ack(&packet, &opts, timeout) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        tokio::spawn(async move {
            while let Some(ack) = acks.next().await {
                node.push(Event::LocalAck {
                    generation,
                    handle,
                    ack: Some(ack),
                });
            }
            node.push(Event::LocalAck {
                generation,
                handle,
                ack: None,
            });
        });
        Ok(Ok(count))
    }

    fn add_sockets(
        &mut self,
        nsp: String,
        opts: BroadcastOpts,
        rooms: Vec<String>,
    ) -> wasmtime::Result<()> {
        if let Some(ns) = self.local(&nsp) {
            ns.add_sockets(&opts, rooms);
        }
        Ok(())
    }

    fn del_sockets(
        &mut self,
        nsp: String,
        opts: BroadcastOpts,
        rooms: Vec<String>,
    ) -> wasmtime::Result<()> {
        if let Some(ns) = self.local(&nsp) {
            ns.del_sockets(&opts, rooms);
        }
        Ok(())
    }

    fn disconnect(
        &mut self,
        nsp: String,
        opts: BroadcastOpts,
        close: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        let Some(ns) = self.local(&nsp) else {
            return Ok(Ok(()));
        };
        Ok(ns.disconnect(&opts, close).map_err(Error::from))
    }

    fn fetch(&mut self, nsp: String, opts: BroadcastOpts) -> wasmtime::Result<Vec<SocketInfo>> {
        Ok(self
            .node
            .namespaces
            .get(&nsp)
            .map(|ns| ns.fetch(&opts))
            .unwrap_or_default())
    }

    fn rooms(&mut self, nsp: String, opts: BroadcastOpts) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .node
            .namespaces
            .get(&nsp)
            .map(|ns| ns.rooms(&opts))
            .unwrap_or_default())
    }

    fn watch_rooms(&mut self, nsp: String) -> wasmtime::Result<()> {
        if self.muted() {
            return Ok(());
        }
        self.node.namespaces.watch(&nsp);
        let all = BroadcastOpts {
            flags: Default::default(),
            rooms: vec![],
            except: vec![],
            sid: None,
            server_id: None,
        };
        let rooms = self
            .node
            .namespaces
            .get(&nsp)
            .map(|ns| ns.rooms(&all))
            .unwrap_or_default();
        // For this instance: during a swap it is not yet the one serving.
        self.node.push(Event::Rooms {
            generation: Some(self.generation),
            nsp,
            rooms,
        });
        Ok(())
    }

    fn server_side_emit(
        &mut self,
        nsp: String,
        data: Vec<u8>,
        handle: Option<u64>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let data = match rmpv::decode::read_value(&mut &data[..]) {
            Ok(v @ rmpv::Value::Array(_)) => v,
            Ok(_) => {
                return Ok(Err(Error::Invalid(
                    "server-side emit data must be an array".into(),
                )));
            }
            Err(e) => return Ok(Err(Error::Invalid(format!("server-side emit data: {e}")))),
        };
        if self.muted() {
            return Ok(Ok(()));
        }
        let Some(handler) = self.node.hooks.server_side_handler() else {
            tracing::debug!(%nsp, "serverSideEmit from another node, but no handler is set");
            return Ok(Ok(()));
        };
        let ack = handle.map(|handle| {
            let node = self.node.clone();
            let generation = self.generation;
            Box::new(move |args: Vec<rmpv::Value>| {
                let mut data = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = rmpv::encode::write_value(&mut data, &rmpv::Value::Array(args));
                node.push(Event::ServerSideAck {
                    generation,
                    handle,
                    data,
                });
            }) as Box<dyn FnOnce(Vec<rmpv::Value>) + Send>
        });
        handler(ServerSideEvent { nsp, data, ack });
        Ok(Ok(()))
    }
}
