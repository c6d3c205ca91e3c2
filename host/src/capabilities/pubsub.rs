//! `wasio:adapter/pubsub`. The loader refuses a guest importing it unless the config
//! grants a pub/sub datasource; until a connector is attached every call says so.

use crate::runtime::HostState;
use crate::runtime::bindings::wasio::adapter::pubsub::{Host, Mode};
use crate::runtime::bindings::wasio::adapter::types::Error;

fn denied() -> Error {
    Error::Denied("no pub/sub datasource is attached to this adapter".into())
}

impl Host for HostState {
    fn publish(
        &mut self,
        _channel: String,
        _payload: Vec<u8>,
        _mode: Mode,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
    fn subscribe(&mut self, _channel: String, _mode: Mode) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
    fn psubscribe(&mut self, _pattern: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
    fn unsubscribe(
        &mut self,
        _channel: String,
        _mode: Mode,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
    fn count_subscribers(
        &mut self,
        _channels: Vec<String>,
        _mode: Mode,
        _ticket: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
}
