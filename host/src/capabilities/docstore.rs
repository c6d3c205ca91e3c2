//! `wasio:adapter/docstore`. The loader refuses a guest importing it unless the config
//! grants a MongoDB datasource; until a connector is attached every call says so.

use crate::runtime::HostState;
use crate::runtime::bindings::wasio::adapter::docstore::{Feed, Host};
use crate::runtime::bindings::wasio::adapter::types::Error;

fn denied() -> Error {
    Error::Denied("no MongoDB datasource is attached to this adapter".into())
}

impl Host for HostState {
    fn watch(
        &mut self,
        _collection: String,
        _feed: Feed,
        _ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
    fn insert(
        &mut self,
        _collection: String,
        _document: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(denied()))
    }
}
