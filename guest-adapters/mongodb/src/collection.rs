//! The collection a `@socket.io/mongo-adapter` 0.4 cluster shares: every message is a
//! document inserted in it, read by every other node, through a change stream or by
//! tailing a capped collection.

use bson::{Bson, Document};
use wasio_cluster_node::{Backend, Envelope, Op, Response, family};
use wasio_cluster_protocol::bson::from_bson;
use wasio_cluster_protocol::{Body, Message};

use crate::bindings::wasio::adapter::docstore;
use crate::options::{Feed, Options};
use wasio_cluster_node::bindings::wasio::adapter::types::Error;

/// `SESSION` in the Node.js MongoDB adapter (connection state recovery), where the
/// cluster family has `ADAPTER_CLOSE`: nothing for this node to act on.
const SESSION: i32 = 13;

/// Rooms (targeted and excepted) one operation may name: a document naming more is
/// taken for malformed, rather than spending the call's deadline on it.
const MAX_ROOMS: usize = 10_000;

/// The collection, for the node whose uid is `uid` (one for all namespaces, as
/// `createAdapter`'s `uid`).
pub struct Collection {
    opts: Options,
    uid: String,
    watching: bool,
}

impl Collection {
    pub fn new(opts: Options, uid: String) -> Collection {
        Collection {
            opts,
            uid,
            watching: false,
        }
    }

    /// Inserts one message of this node in `nsp`.
    fn insert(&self, nsp: &str, body: Body) -> Result<(), Error> {
        let mut doc = Message {
            uid: self.uid.clone(),
            nsp: nsp.to_string(),
            body,
        }
        .to_document();
        if self.opts.created_at {
            doc.insert("createdAt", bson::DateTime::now());
        }
        docstore::insert(&self.opts.collection, &bson_bytes(&doc))
    }

    /// Reads a document from the collection; `None` when it holds nothing for a node.
    /// Malformed ones are errors (the host drops and counts them).
    pub fn decode(&self, document: &[u8]) -> Result<Option<Envelope>, Error> {
        let named = rooms_named(document)?;
        if named > MAX_ROOMS {
            return Err(Error::Invalid(format!(
                "document names {named} rooms, more than {MAX_ROOMS}"
            )));
        }
        let raw = Document::from_reader(document)
            .map_err(|e| Error::Invalid(format!("document is not BSON: {e}")))?;
        if raw.get_i32("type") == Ok(SESSION) {
            return Ok(None);
        }
        let msg = Message::from_value(
            from_bson(&Bson::Document(raw)).map_err(|e| Error::Invalid(e.to_string()))?,
        )
        .map_err(|e| Error::Invalid(format!("document: {e}")))?;
        Ok(Some(family::envelope(msg)))
    }
}

impl Backend for Collection {
    /// Starts reading the collection, once for all namespaces.
    fn open(&mut self, _nsp: &str) -> Result<(), Error> {
        if self.watching {
            return Ok(());
        }
        let feed = match self.opts.feed {
            // Everything but our own documents (the Node.js adapter's filter).
            Feed::ChangeStream => docstore::Feed::ChangeStream(bson_bytes(
                &bson::doc! {"fullDocument.uid": {"$ne": &self.uid}},
            )),
            Feed::Capped => docstore::Feed::Tail,
        };
        let setup = match self.opts.ttl_seconds {
            Some(seconds) => docstore::Setup::Ttl(seconds),
            None => docstore::Setup::Capped(self.opts.capped_size),
        };
        docstore::watch(&self.opts.collection, &feed, setup)?;
        self.watching = true;
        Ok(())
    }

    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        self.insert(nsp, family::body(op))
    }

    /// Answers are documents like the rest: the requester reads them by request id.
    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error> {
        match family::response(response) {
            Some(body) => self.insert(nsp, body),
            None => Ok(()),
        }
    }
}

/// How many rooms `data.opts` names (targeted and excepted), read without decoding the
/// document, so that an oversized one costs little.
fn rooms_named(document: &[u8]) -> Result<usize, Error> {
    let raw = bson::RawDocument::from_bytes(document)
        .map_err(|e| Error::Invalid(format!("document is not BSON: {e}")))?;
    let Ok(opts) = raw
        .get_document("data")
        .and_then(|data| data.get_document("opts"))
    else {
        return Ok(0);
    };
    let count = |key: &str| opts.get_array(key).map_or(0, |a| a.into_iter().count());
    Ok(count("rooms") + count("except"))
}

fn bson_bytes(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a document into a Vec fails only past BSON's nesting limits, which the
    // host's MessagePack values cannot reach; an empty result is refused by the host.
    let _ = doc.to_writer(&mut out);
    out
}
