//! The notifications of a `@socket.io/postgres-adapter` 0.5 cluster: every message of
//! a namespace is notified on `channelPrefix#nsp`, as JSON text when it holds no binary
//! and stays under `payloadThreshold` bytes; otherwise its MessagePack goes into the
//! attachments table and the notification is the header `{uid, type, attachmentId}`.
//! Answers go on the same channel; the requester reads them by request id.

use rmpv::Value;
use wasio_cluster_node::bindings::wasio::adapter::timers;
use wasio_cluster_node::{Backend, Envelope, Op, Response, family};
use wasio_cluster_protocol::{Body, Message, json, read_any};

use crate::bindings::wasio::adapter::notify;
use crate::options::Options;
use wasio_cluster_node::bindings::wasio::adapter::types::Error;

/// The channels of the node whose uid is `uid` (one for all namespaces, as
/// `createAdapter`'s client).
pub struct Channels {
    opts: Options,
    uid: String,
    /// The timer of the next cleanup of the attachments table.
    cleanup: Option<u64>,
}

impl Channels {
    pub fn new(opts: Options, uid: String) -> Channels {
        Channels {
            opts,
            uid,
            cleanup: None,
        }
    }

    fn channel(&self, nsp: &str) -> String {
        format!("{}#{nsp}", self.opts.channel_prefix)
    }

    /// Notifies one message of this node in `nsp`.
    fn send(&self, nsp: &str, body: Body) -> Result<(), Error> {
        let kind = body.message_type() as u8;
        let bytes = Message {
            uid: self.uid.clone(),
            nsp: nsp.to_string(),
            body,
        }
        .encode();
        let channel = self.channel(nsp);
        match json::from_msgpack(&bytes) {
            Some(text) if text.len() < self.opts.payload_threshold => {
                notify::notify(&channel, &text)
            }
            // Binary, or too long for a notification: by reference, as Node.js does.
            _ => {
                let header = serde_json::json!({"uid": self.uid, "type": kind}).to_string();
                notify::notify_attached(&channel, &header, &self.opts.table_name, &bytes)
            }
        }
    }

    /// Reads a notification (JSON), or an attachment the host read in its place
    /// (MessagePack). Malformed ones are errors (the host drops and counts them).
    pub fn decode(&self, channel: &str, payload: &[u8]) -> Result<Envelope, Error> {
        let invalid = |e: String| Error::Invalid(format!("notification on {channel}: {e}"));
        let mut value = read_any(payload).map_err(|e| invalid(e.to_string()))?;
        // The emitter names no namespace: its channel does.
        if let Value::Map(fields) = &mut value
            && !fields.iter().any(|(k, _)| k.as_str() == Some("nsp"))
            && let Some(nsp) = channel.strip_prefix(&format!("{}#", self.opts.channel_prefix))
        {
            fields.push((Value::from("nsp"), Value::from(nsp)));
        }
        let msg = Message::from_value(value).map_err(|e| invalid(e.to_string()))?;
        Ok(family::envelope(msg))
    }

    fn schedule_cleanup(&mut self) {
        self.cleanup = Some(timers::start(self.opts.cleanup_interval));
    }
}

impl Backend for Channels {
    /// Listens to the namespace's channel; the first namespace also starts the cleanup.
    fn open(&mut self, nsp: &str) -> Result<(), Error> {
        notify::listen(&self.channel(nsp), Some(&self.opts.table_name))?;
        if self.cleanup.is_none() {
            self.schedule_cleanup();
        }
        Ok(())
    }

    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        self.send(nsp, family::body(op))
    }

    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error> {
        match family::response(response) {
            Some(body) => self.send(nsp, body),
            None => Ok(()),
        }
    }

    /// Deletes the attachments older than `cleanupInterval`, as every Node.js node does.
    fn on_timer(&mut self, timer: u64) {
        if self.cleanup == Some(timer) {
            let _ = notify::clean(&self.opts.table_name, self.opts.cleanup_interval);
            self.schedule_cleanup();
        }
    }
}
