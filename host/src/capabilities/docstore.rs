//! `wasio:adapter/docstore`, on the node's MongoDB link. The loader refuses a guest
//! importing it unless the config grants a MongoDB datasource.

use std::sync::Arc;

use super::HostState;
use crate::datasource::mongo::{self, MongoDocStore};
use crate::runtime::bindings::wasio::adapter::docstore::{Feed, Host, Setup};
use crate::runtime::bindings::wasio::adapter::types::Error;

impl HostState {
    fn docstore(&self) -> Result<Arc<MongoDocStore>, Error> {
        self.links.docstore.clone().ok_or_else(|| {
            Error::Denied("no MongoDB datasource is attached to this adapter".into())
        })
    }
}

impl Host for HostState {
    fn watch(
        &mut self,
        collection: String,
        feed: Feed,
        setup: Setup,
    ) -> wasmtime::Result<Result<(), Error>> {
        if self.muted() {
            return Ok(Ok(()));
        }
        let feed = match feed {
            Feed::ChangeStream(filter) => {
                match mongodb::bson::Document::from_reader(filter.as_slice()) {
                    Ok(f) => mongo::Feed::ChangeStream(f),
                    Err(e) => {
                        return Ok(Err(Error::Invalid(format!(
                            "change-stream filter is not a BSON document: {e}"
                        ))));
                    }
                }
            }
            Feed::Tail => mongo::Feed::Tail,
        };
        let setup = match setup {
            Setup::Capped(size) => mongo::Setup::Capped(size),
            Setup::Ttl(seconds) => mongo::Setup::Ttl(seconds),
        };
        Ok(self
            .docstore()
            .and_then(|l| l.watch(collection, feed, setup).map_err(Error::from)))
    }

    fn insert(
        &mut self,
        collection: String,
        document: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if self.muted() {
            return Ok(Ok(()));
        }
        let sent = self
            .docstore()
            .and_then(|l| l.insert(collection, &document).map_err(Error::from));
        if sent.is_ok() {
            self.traffic
                .messages_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(sent)
    }
}
