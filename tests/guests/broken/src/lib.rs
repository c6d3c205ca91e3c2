//! TEST DOUBLE: a correct cluster adapter (wasio-cluster-node over the classic pub/sub,
//! in the cluster message family) with at most one bug, chosen by `{"bug": …}` in its
//! options, so that the kit's tests can show each row catches the bug it is for:
//!
//! - `"none"` (default): no bug; it passes every row.
//! - `"one-namespace"`: delivers what other nodes send in any namespace to `/`.
//! - `"miscount"`: counts one node too many, so a request waits for an answer that never
//!   comes and is never finished: the host's deadline ends it, with every real answer.
//! - `"fragile"`: reads a message that is not MessagePack as JSON and traps on what a
//!   Python or JS binding cannot lower (a lone surrogate, nesting past 1000 levels).

#[allow(clippy::all)]
mod bindings {
    // Three directories below the root, where `generate!` assumes two.
    wasio_cluster_node::generate!("pubsub-adapter", "../../../wit");
}

use bindings::exports::wasio::adapter::guest::{AdapterInfo, Guest, InitArgs};
use bindings::wasio::adapter::pubsub::{self, Mode};
use wasio_cluster_node::bindings::wasio::adapter::types::Error;
use wasio_cluster_node::{
    Backend, BroadcastOpts, Node, Op, Response, RoomsOp, Settings, Slot, family, with, with_quiet,
};
use wasio_cluster_protocol::Message;

#[derive(Clone, Copy, PartialEq)]
enum Bug {
    None,
    OneNamespace,
    Miscount,
    Fragile,
}

thread_local! {
    static NODE: Slot<Pubsub> = const { Slot::new(None) };
}

struct Pubsub {
    uid: String,
    bug: Bug,
}

fn channel(nsp: &str) -> String {
    format!("broken#{nsp}#")
}

impl Pubsub {
    fn message(&self, nsp: &str, body: wasio_cluster_protocol::Body) -> Vec<u8> {
        Message {
            uid: self.uid.clone(),
            nsp: nsp.to_string(),
            body,
        }
        .encode()
    }
}

impl Backend for Pubsub {
    fn open(&mut self, nsp: &str) -> Result<(), Error> {
        pubsub::subscribe(&channel(nsp), Mode::Classic)?;
        pubsub::subscribe(&format!("{}{}#", channel(nsp), self.uid), Mode::Classic)
    }
    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        let bytes = self.message(nsp, family::body(op));
        pubsub::publish(&channel(nsp), &bytes, Mode::Classic)
    }
    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error> {
        let to = format!("{}{}#", channel(nsp), response.requester);
        let Some(body) = family::response(response) else {
            return Ok(());
        };
        pubsub::publish(&to, &self.message(nsp, body), Mode::Classic)
    }
    fn count_nodes(&mut self, nsp: &str, ticket: u64) -> Result<(), Error> {
        pubsub::count_subscribers(&[channel(nsp)], Mode::Classic, ticket)
    }
}

/// The `"fragile"` bug: what a binding that cannot lower a value does, a trap.
fn trap_on_hostile(payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let lone_surrogate = [
        "\\ud8", "\\ud9", "\\uda", "\\udb", "\\udc", "\\udd", "\\ude", "\\udf",
    ]
    .iter()
    .any(|s| text.to_ascii_lowercase().contains(s));
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in payload {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        deepest = deepest.max(depth);
    }
    if lone_surrogate || deepest > 1000 {
        panic!("cannot lower this value to the host");
    }
}

struct Broken;

impl Guest for Broken {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        let bug = match args.options.trim() {
            "" | "{}" => Bug::None,
            o if o.contains("\"none\"") => Bug::None,
            o if o.contains("\"one-namespace\"") => Bug::OneNamespace,
            o if o.contains("\"miscount\"") => Bug::Miscount,
            o if o.contains("\"fragile\"") => Bug::Fragile,
            o => return Err(Error::Invalid(format!("unknown bug in {o}"))),
        };
        let settings = Settings {
            // Past the host's deadline, so that a request this node never finishes is
            // ended by the host.
            requests_timeout: if bug == Bug::Miscount { 30_000 } else { 5_000 },
            heartbeat: None,
        };
        let uid = args.node_id;
        let backend = Box::new(Pubsub {
            uid: uid.clone(),
            bug,
        });
        NODE.set(Some(Node::new(backend, uid, settings)));
        Ok(AdapterInfo {
            name: "broken".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    // Written out, not `forward_to_node!`, for the one function the `miscount` bug
    // changes (`on-counts`).
    fn open(nsp: String) -> Result<(), Error> {
        with(&NODE, |n| n.open(nsp))
    }
    fn close() -> Result<(), Error> {
        with(&NODE, |n| n.close())
    }
    fn broadcast(nsp: String, packet: Vec<u8>, opts: BroadcastOpts) -> Result<(), Error> {
        with(&NODE, |n| n.broadcast(&nsp, packet, &opts))
    }
    fn broadcast_with_ack(
        nsp: String,
        id: u64,
        packet: Vec<u8>,
        opts: BroadcastOpts,
        timeout_ms: u32,
    ) -> Result<(), Error> {
        with(&NODE, |n| {
            n.broadcast_with_ack(&nsp, id, packet, &opts, timeout_ms)
        })
    }
    fn add_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        with(&NODE, |n| n.rooms_op(&nsp, RoomsOp::Join(rooms), &opts))
    }
    fn del_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        with(&NODE, |n| n.rooms_op(&nsp, RoomsOp::Leave(rooms), &opts))
    }
    fn disconnect_sockets(nsp: String, opts: BroadcastOpts, close: bool) -> Result<(), Error> {
        with(&NODE, |n| {
            n.rooms_op(&nsp, RoomsOp::Disconnect(close), &opts)
        })
    }
    fn fetch_sockets(nsp: String, id: u64, opts: BroadcastOpts) -> Result<(), Error> {
        with(&NODE, |n| n.fetch_sockets(&nsp, id, &opts))
    }
    fn all_rooms(nsp: String, id: u64, _: BroadcastOpts) -> Result<(), Error> {
        with(&NODE, |n| n.all_rooms(&nsp, id))
    }
    fn server_count(nsp: String, id: u64) -> Result<(), Error> {
        with(&NODE, |n| n.server_count(&nsp, id))
    }
    fn server_side_emit(nsp: String, id: Option<u64>, data: Vec<u8>) -> Result<(), Error> {
        with(&NODE, |n| n.server_side_emit(&nsp, id, data))
    }
    fn on_timer(id: u64) {
        with_quiet(&NODE, |n| n.on_timer(id))
    }
    fn on_local_ack(handle: u64, ack: Option<Vec<u8>>) {
        with_quiet(&NODE, |n| n.on_local_ack(handle, ack))
    }
    fn on_server_side_ack(handle: u64, data: Vec<u8>) {
        with_quiet(&NODE, |n| n.on_server_side_ack(handle, data))
    }
    fn on_counts(ticket: u64, counts: Result<Vec<u64>, Error>) {
        with_quiet(&NODE, |n| {
            let counts = match n.backend().bug {
                Bug::Miscount => counts.map(|c| c.into_iter().map(|k| k + 1).collect()),
                _ => counts,
            };
            n.on_counts(ticket, counts)
        })
    }

    fn on_message(
        _channel: String,
        _pattern: Option<String>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        with(&NODE, |n| {
            let bug = n.backend().bug;
            let m = match Message::decode(&payload) {
                Ok(m) => m,
                Err(e) => {
                    if bug == Bug::Fragile {
                        trap_on_hostile(&payload);
                    }
                    return Err(Error::Invalid(e.to_string()));
                }
            };
            let mut env = family::envelope(m);
            if bug == Bug::OneNamespace && !env.nsp.is_empty() {
                env.nsp = "/".into();
            }
            n.on_message(env)
        })
    }
    fn on_document(_: String, _: Vec<u8>) -> Result<(), Error> {
        Err(Error::Invalid("no collection".into()))
    }
    fn on_rooms(_: String, _: Vec<String>) {}
    fn on_connection(up: bool) {
        with_quiet(&NODE, |n| n.on_connection(up))
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Broken with_types_in bindings);
