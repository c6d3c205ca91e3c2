//! The socketioxide side: [`WasmAdapter`] is the `CoreAdapter` of every namespace. It
//! keeps socket and room state in socketioxide's local adapter — local delivery never
//! waits on the guest — and hands the cluster half of each operation to the guest.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Fuse, Select, StreamExt};
use socketioxide_core::adapter::errors::{AdapterError, BroadcastError};
use socketioxide_core::adapter::{
    AckStreamItem, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter,
    RemoteSocketData, Room, RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::{Sid, Str, Uid};

use super::adapter::Adapter;
use super::answers::RequestError;
use super::codec;
use super::guest::{GuestCall, GuestError};
use crate::capabilities::{LocalError, LocalNamespace};
use crate::runtime::SocketInfo;
use crate::runtime::bindings::BroadcastOpts;
use crate::runtime::bindings::wasio::adapter::requests::Answer;

/// An error of the wasm adapter, as socketioxide sees it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guest refused or failed the operation.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// A packet could not be encoded for the guest.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// A cluster request got no full answer.
    #[error(transparent)]
    Request(#[from] RequestError),
}

impl From<Error> for AdapterError {
    fn from(e: Error) -> Self {
        AdapterError(Box::new(e))
    }
}

/// The socketioxide adapter of one namespace, backed by the node's wasm guest.
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// let adapter = wasio::Adapter::builtin_local().await?;
/// let (_layer, io) = socketioxide::SocketIo::builder()
///     .with_config(adapter.socket_io_config())
///     .with_adapter::<wasio::WasmAdapter<_>>(adapter.clone())
///     .build_layer();
/// # Ok(()) }
/// ```
pub struct WasmAdapter<E> {
    local: CoreLocalAdapter<E>,
    adapter: Adapter,
    nsp: String,
}

impl<E: SocketEmitter> WasmAdapter<E> {
    fn relayed(&self, opts: &BroadcastOptions) -> bool {
        !opts.is_local(self.local.server_id())
    }
}

impl<E> DefinedAdapter for WasmAdapter<E> {}

/// Completes when the guest has opened the namespace.
pub struct InitRes(futures_util::future::BoxFuture<'static, Result<(), Error>>);

impl std::future::Future for InitRes {
    type Output = Result<(), Error>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(e) = self.await {
                tracing::error!("adapter failed to open a namespace: {e}");
            }
        });
    }
}

/// Acks of a broadcast: this node's clients and other nodes' clients, merged.
pub type AckStream<E> = Fuse<
    Select<
        <E as SocketEmitter>::AckStream,
        BoxStream<'static, AckStreamItem<<E as SocketEmitter>::AckError>>,
    >,
>;

impl<E: SocketEmitter> CoreAdapter<E> for WasmAdapter<E> {
    type Error = Error;
    type State = Adapter;
    type AckStream = AckStream<E>;
    type InitRes = InitRes;

    fn new(state: &Adapter, local: CoreLocalAdapter<E>) -> Self {
        let nsp = local.path().to_string();
        WasmAdapter {
            local,
            adapter: state.clone(),
            nsp,
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> InitRes {
        let weak: Weak<dyn LocalNamespace> =
            Arc::downgrade(&(self.clone() as Arc<dyn LocalNamespace>));
        self.adapter.node().namespaces.add(&self.nsp, weak);
        let fut = async move {
            let nsp = self.nsp.clone();
            self.adapter.call("open", GuestCall::Open { nsp }).await?;
            on_success();
            Ok(())
        };
        InitRes(Box::pin(fut))
    }

    async fn close(&self) -> Result<(), Error> {
        self.adapter.node().namespaces.remove(&self.nsp);
        Ok(())
    }

    async fn server_count(&self) -> Result<u16, Error> {
        let count = self.adapter.remote_server_count(&self.nsp).await?;
        Ok(count.min(u16::MAX as u32) as u16)
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let relay = self
            .relayed(&opts)
            .then(|| (codec::encode_packet(&packet), codec::opts_to_wit(&opts)));
        let local = self.local.broadcast(packet, opts);
        if let Some((encoded, wit_opts)) = relay {
            let packet = encoded.map_err(|e| AdapterError::from(Error::from(e)))?;
            let call = GuestCall::Broadcast {
                nsp: self.nsp.clone(),
                packet,
                opts: wit_opts,
            };
            self.adapter
                .call("broadcast", call)
                .await
                .map_err(|e| AdapterError::from(Error::from(e)))?;
        }
        local.map_err(BroadcastError::from)
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Error> {
        let timeout = timeout.unwrap_or_else(|| self.local.ack_timeout());
        let relay = self
            .relayed(&opts)
            .then(|| (codec::encode_packet(&packet), codec::opts_to_wit(&opts)));
        let (local, _count) = self.local.broadcast_with_ack(packet, opts, Some(timeout));
        let Some((encoded, wit_opts)) = relay else {
            return Ok(stream::select(local, stream::empty().boxed()).fuse());
        };
        let handle = self.adapter.node().requests.open();
        let call = GuestCall::BroadcastWithAck {
            nsp: self.nsp.clone(),
            id: handle.id,
            packet: encoded?,
            opts: wit_opts,
            timeout_ms: timeout.as_millis().min(u32::MAX as u128) as u32,
        };
        self.adapter.call("broadcast-with-ack", call).await?;
        let deadline = tokio::time::Instant::now() + timeout + self.adapter.request_grace();
        let remote = stream::unfold(handle, move |mut handle| async move {
            loop {
                let part = tokio::time::timeout_at(deadline, handle.next())
                    .await
                    .ok()??;
                match part {
                    Ok(Answer::Ack(bytes)) => match codec::decode_value(&bytes) {
                        Ok(v) => return Some(((Sid::ZERO, Ok(v)), handle)),
                        Err(e) => tracing::debug!("dropping an undecodable remote ack: {e}"),
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!("broadcast-with-ack ended early: {e}");
                        return None;
                    }
                }
            }
        });
        Ok(stream::select(local, remote.boxed()).fuse())
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        // The guest's copy is made only when the operation is relayed.
        let relay = self.relayed(&opts).then(|| {
            (
                codec::opts_to_wit(&opts),
                rooms.iter().map(|r| r.to_string()).collect(),
            )
        });
        let node = self.adapter.node();
        if node.namespaces.watches(&self.nsp) {
            let names: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
            node.rooms_joined(&self.nsp, &names);
        }
        self.local.add_sockets(opts, rooms);
        if let Some((opts, rooms)) = relay {
            self.adapter
                .call(
                    "add-sockets",
                    GuestCall::AddSockets {
                        nsp: self.nsp.clone(),
                        opts,
                        rooms,
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        // The guest's copy is made only when the operation is relayed.
        let relay = self.relayed(&opts).then(|| {
            (
                codec::opts_to_wit(&opts),
                rooms.iter().map(|r| r.to_string()).collect(),
            )
        });
        self.local.del_sockets(opts, rooms);
        if let Some((opts, rooms)) = relay {
            self.adapter
                .call(
                    "del-sockets",
                    GuestCall::DelSockets {
                        nsp: self.nsp.clone(),
                        opts,
                        rooms,
                    },
                )
                .await?;
        }
        Ok(())
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        let relay = self.relayed(&opts).then(|| codec::opts_to_wit(&opts));
        let local = self.local.disconnect_socket(opts);
        if let Some(opts) = relay {
            let call = GuestCall::DisconnectSockets {
                nsp: self.nsp.clone(),
                opts,
                close: false,
            };
            self.adapter
                .call("disconnect-sockets", call)
                .await
                .map_err(|e| AdapterError::from(Error::from(e)))?;
        }
        local.map_err(BroadcastError::Socket)
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Error> {
        let mut rooms = self.local.rooms(opts.clone());
        if self.relayed(&opts) && opts.sid.is_some() {
            // One remote socket's rooms (`RemoteSocket::rooms`): all-rooms requests name
            // no socket, so ask for that socket instead.
            let nodes = self
                .adapter
                .remote_sockets(&self.nsp, codec::opts_to_wit(&opts))
                .await?;
            let theirs = nodes.into_iter().flatten().flat_map(|s| s.rooms);
            rooms.extend(theirs.map(Room::Owned));
        } else if self.relayed(&opts) {
            let theirs = self
                .adapter
                .remote_rooms(&self.nsp, codec::opts_to_wit(&opts))
                .await?;
            rooms.extend(theirs.into_iter().map(Room::Owned));
        }
        Ok(rooms.into_iter().collect())
    }

    async fn fetch_sockets(&self, opts: BroadcastOptions) -> Result<Vec<RemoteSocketData>, Error> {
        let mut sockets = self.local.fetch_sockets(opts.clone());
        if self.relayed(&opts) {
            let nodes = self
                .adapter
                .remote_sockets(&self.nsp, codec::opts_to_wit(&opts))
                .await?;
            let ns = Str::from(self.nsp.clone());
            for list in nodes {
                // socketioxide can only name sockets with its own id format; others
                // (a Node.js node's) are left out of this typed view.
                sockets.extend(list.into_iter().filter_map(|s| {
                    Some(RemoteSocketData {
                        id: s.id.parse().ok()?,
                        server_id: s.server_id.parse().unwrap_or(Uid::ZERO),
                        ns: ns.clone(),
                    })
                }));
            }
        }
        Ok(sockets)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}

impl<E: SocketEmitter> LocalNamespace for WasmAdapter<E> {
    fn broadcast(&self, packet: &[u8], opts: &BroadcastOpts) -> Result<(), LocalError> {
        let packet = codec::decode_packet(packet, &self.nsp).map_err(invalid)?;
        // Socket errors (a client's buffer full, a closed socket) are per client and
        // must not fail the message for the others.
        if let Err(e) = self.local.broadcast(packet, codec::opts_from_wit(opts)) {
            tracing::debug!(nsp = %self.nsp, "remote broadcast: {} clients could not take it", e.len());
        }
        Ok(())
    }

    fn broadcast_with_ack(
        &self,
        packet: &[u8],
        opts: &BroadcastOpts,
        timeout: Option<Duration>,
    ) -> Result<(BoxStream<'static, Vec<u8>>, u32), LocalError> {
        let packet = codec::decode_packet(packet, &self.nsp).map_err(invalid)?;
        let (acks, count) =
            self.local
                .broadcast_with_ack(packet, codec::opts_from_wit(opts), timeout);
        let acks = acks.filter_map(|(_, ack)| async move { codec::encode_value(&ack.ok()?).ok() });
        Ok((acks.boxed(), count))
    }

    fn add_sockets(&self, opts: &BroadcastOpts, rooms: Vec<String>) {
        self.local.add_sockets(codec::opts_from_wit(opts), rooms);
    }

    fn del_sockets(&self, opts: &BroadcastOpts, rooms: Vec<String>) {
        self.local.del_sockets(codec::opts_from_wit(opts), rooms);
    }

    fn disconnect(&self, opts: &BroadcastOpts, _close: bool) -> Result<(), LocalError> {
        self.local
            .disconnect_socket(codec::opts_from_wit(opts))
            .map_err(|e| {
                LocalError::Failed(format!("{} sockets could not be disconnected", e.len()))
            })
    }

    fn fetch(&self, opts: &BroadcastOpts) -> Vec<SocketInfo> {
        let server_id = self.local.server_id().to_string();
        let inspect = self.adapter.node().hooks.inspector();
        self.local
            .fetch_sockets(codec::opts_from_wit(opts))
            .into_iter()
            .map(|s| {
                let (handshake, data) = inspect
                    .as_ref()
                    .and_then(|f| f(&self.nsp, s.id))
                    .unwrap_or_else(empty_details);
                SocketInfo {
                    id: s.id.to_string(),
                    server_id: server_id.clone(),
                    rooms: self
                        .local
                        .socket_rooms(s.id)
                        .into_iter()
                        .map(|r| r.to_string())
                        .collect(),
                    handshake,
                    data,
                }
            })
            .collect()
    }

    fn rooms(&self, opts: &BroadcastOpts) -> Vec<String> {
        self.local
            .rooms(codec::opts_from_wit(opts))
            .into_iter()
            .map(|r| r.to_string())
            .collect()
    }

    fn stats(&self) -> (usize, usize) {
        // No room and the broadcast flag: every socket (no flag would mean none).
        let mut all = BroadcastOptions::default();
        all.add_flag(socketioxide_core::adapter::BroadcastFlags::Broadcast);
        let sids: std::collections::HashSet<String> = self
            .local
            .sockets(all.clone())
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rooms = self.local.rooms(all);
        // A socket's own-id room is not a room anyone made.
        let named = rooms.iter().filter(|r| !sids.contains(r.as_ref())).count();
        (sids.len(), named)
    }
}

/// An empty handshake map and a nil `data`, for sockets nobody described.
fn empty_details() -> (Vec<u8>, Vec<u8>) {
    (vec![0x80], vec![0xc0])
}

fn invalid(e: codec::CodecError) -> LocalError {
    LocalError::Invalid(e.to_string())
}
