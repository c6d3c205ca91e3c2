//! TEST DOUBLE: publishes every broadcast on one channel, nothing more. It imports
//! `wasio:adapter/pubsub`, so the host must refuse it unless the config grants a
//! pub/sub datasource.

wit_bindgen::generate!({ path: "../../../wit", world: "pubsub-adapter" });

use exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use wasio::adapter::pubsub::{self, Mode};
use wasio::adapter::requests;
use wasio::adapter::types::Error;

struct PubSubUser;

impl Guest for PubSubUser {
    fn init(_: InitArgs) -> Result<AdapterInfo, Error> {
        Ok(AdapterInfo {
            name: "pubsub-user".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    fn open(nsp: String) -> Result<(), Error> {
        pubsub::subscribe(&format!("test#{nsp}#"), Mode::Classic).or(Ok(()))
    }
    fn close() -> Result<(), Error> {
        Ok(())
    }
    fn broadcast(nsp: String, packet: Vec<u8>, _: BroadcastOpts) -> Result<(), Error> {
        pubsub::publish(&format!("test#{nsp}#"), &packet, Mode::Classic)
    }
    fn broadcast_with_ack(
        _: String,
        id: u64,
        _: Vec<u8>,
        _: BroadcastOpts,
        _: u32,
    ) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn add_sockets(_: String, _: BroadcastOpts, _: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn del_sockets(_: String, _: BroadcastOpts, _: Vec<String>) -> Result<(), Error> {
        Ok(())
    }
    fn disconnect_sockets(_: String, _: BroadcastOpts, _: bool) -> Result<(), Error> {
        Ok(())
    }
    fn fetch_sockets(_: String, id: u64, _: BroadcastOpts) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn all_rooms(_: String, id: u64, _: BroadcastOpts) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn server_count(_: String, id: u64) -> Result<(), Error> {
        requests::finish(id, Ok(()));
        Ok(())
    }
    fn server_side_emit(_: String, id: Option<u64>, _: Vec<u8>) -> Result<(), Error> {
        if let Some(id) = id {
            requests::finish(id, Ok(()));
        }
        Ok(())
    }
    fn on_message(_: String, _: Option<String>, _: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn on_document(_: String, _: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }
    fn on_timer(_: u64) {}
    fn on_counts(_: u64, _: Result<Vec<u64>, Error>) {}
    fn on_local_ack(_: u64, _: Option<Vec<u8>>) {}
    fn on_server_side_ack(_: u64, _: Vec<u8>) {}
    fn on_connection(_: bool) {}
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
}

export!(PubSubUser);
