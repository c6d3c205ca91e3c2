//! `wasio:adapter/notify`, on the node's PostgreSQL link. The loader refuses a guest
//! importing it unless the config grants a PostgreSQL datasource.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::HostState;
use crate::datasource::LinkError;
use crate::datasource::postgres::PostgresLink;
use crate::runtime::bindings::wasio::adapter::notify::Host;
use crate::runtime::bindings::wasio::adapter::types::Error;

impl HostState {
    fn postgres(&self) -> Result<Arc<PostgresLink>, Error> {
        self.links.notify.clone().ok_or_else(|| {
            Error::Denied("no PostgreSQL datasource is attached to this adapter".into())
        })
    }

    /// Runs `op` on the link, unless the adapter is muted (a swapped-out instance
    /// draining its requests leaves the link alone); `sends` counts it as outgoing.
    fn on_postgres(
        &mut self,
        sends: bool,
        op: impl FnOnce(&PostgresLink) -> Result<(), LinkError>,
    ) -> wasmtime::Result<Result<(), Error>> {
        if self.muted() {
            return Ok(Ok(()));
        }
        let done = self.postgres().and_then(|l| op(&l).map_err(Error::from));
        if sends && done.is_ok() {
            self.traffic.messages_out.fetch_add(1, Relaxed);
        }
        Ok(done)
    }
}

impl Host for HostState {
    fn listen(
        &mut self,
        channel: String,
        attachments: Option<String>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.on_postgres(false, |l| l.listen(channel, attachments))
    }

    fn unlisten(&mut self, channel: String) -> wasmtime::Result<Result<(), Error>> {
        self.on_postgres(false, |l| l.unlisten(channel))
    }

    fn notify(&mut self, channel: String, payload: String) -> wasmtime::Result<Result<(), Error>> {
        self.on_postgres(true, |l| l.notify(channel, payload))
    }

    fn notify_attached(
        &mut self,
        channel: String,
        header: String,
        table: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.on_postgres(true, |l| {
            l.notify_attached(channel, &header, table, payload)
        })
    }

    fn clean(&mut self, table: String, older_than_ms: u32) -> wasmtime::Result<Result<(), Error>> {
        self.on_postgres(false, |l| l.clean(table, older_than_ms))
    }
}
