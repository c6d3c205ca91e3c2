//! The single-node adapter: there are no other nodes, so every relay is a no-op and
//! every cluster request is answered at once (the host adds this node's own part).

wit_bindgen::generate!({ path: "../../wit", world: "local-adapter" });

use exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use wasio::adapter::requests::{self, Answer};
use wasio::adapter::types::Error;

struct Local;

impl Guest for Local {
    fn init(_args: InitArgs) -> Result<AdapterInfo, Error> {
        Ok(AdapterInfo {
            name: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    fn open(_nsp: String) -> Result<(), Error> {
        Ok(())
    }
    fn close() -> Result<(), Error> {
        Ok(())
    }
    fn broadcast(_nsp: String, _packet: Vec<u8>, _opts: BroadcastOpts) -> Result<(), Error> {
        Ok(())
    }
    fn broadcast_with_ack(
        _nsp: String,
        id: u64,
        _packet: Vec<u8>,
        _opts: BroadcastOpts,
        _timeout_ms: u32,
    ) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn add_sockets(_nsp: String, _opts: BroadcastOpts, _rooms: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn del_sockets(_nsp: String, _opts: BroadcastOpts, _rooms: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn disconnect_sockets(_nsp: String, _opts: BroadcastOpts, _close: bool) -> Result<(), Error> {
        Ok(())
    }
    fn fetch_sockets(_nsp: String, id: u64, _opts: BroadcastOpts) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn all_rooms(_nsp: String, id: u64, _opts: BroadcastOpts) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn server_count(_nsp: String, id: u64) -> Result<(), Error> {
        requests::reply(id, &Answer::ServerCount(1));
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn server_side_emit(_nsp: String, id: Option<u64>, _data: Vec<u8>) -> Result<(), Error> {
        if let Some(id) = id {
            requests::finish(id, Ok(()));
        }
        Ok(())
    }
    fn on_message(
        _channel: String,
        _pattern: Option<String>,
        _payload: Vec<u8>,
    ) -> Result<(), Error> {
        Ok(())
    }
    fn on_document(_collection: String, _document: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn on_timer(_id: u64) {}
    fn on_counts(_ticket: u64, _counts: Result<Vec<u64>, Error>) {}
    fn on_local_ack(_handle: u64, _ack: Option<Vec<u8>>) {}
    fn on_server_side_ack(_handle: u64, _data: Vec<u8>) {}
    fn on_connection(_up: bool) {}
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
}

export!(Local);
