//! `createAdapter` of `@socket.io/redis-adapter` 8.3: channels per namespace —
//! broadcasts on `prefix#nsp#` (or `prefix#nsp#room#` for a single room, all
//! PSUBSCRIBEd as `prefix#nsp#*`), requests on `prefix-request#nsp#`, answers on
//! `prefix-response#nsp#` or the requester's own `prefix-response#nsp#uid#`.

use rmpv::Value;
use wasio_cluster_node::convert::{decode as decode_value, encode, strings};
use wasio_cluster_node::{Backend, Envelope, In, Op, Part, Response, RoomsOp};

use crate::bindings::wasio::adapter::pubsub::{self, Mode};
use crate::options::Options;
use crate::transport::Transport;
use crate::wire::{self, Fields, kind};
use wasio_cluster_node::bindings::wasio::adapter::types::Error;

/// The classic protocol, for the node whose uid is `uid`.
pub struct Classic {
    opts: Options,
    uid: String,
}

impl Classic {
    pub fn new(opts: Options, uid: String) -> Classic {
        Classic { opts, uid }
    }
}

impl Backend for Classic {
    fn open(&mut self, nsp: &str) -> Result<(), Error> {
        subscribe(&self.opts, nsp, &self.uid)
    }
    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        publish(&self.opts, nsp, &self.uid, op)
    }
    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error> {
        reply(&self.opts, nsp, response)
    }
    /// Every node of `nsp` subscribes to its request channel, so its subscriber count
    /// is the node count.
    fn count_nodes(&mut self, nsp: &str, ticket: u64) -> Result<(), Error> {
        pubsub::count_subscribers(&[request_channel(&self.opts, nsp)], Mode::Classic, ticket)
    }
}

impl Transport for Classic {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn decode(&self, channel: &str, payload: &[u8]) -> Result<Envelope, String> {
        decode(&self.opts, channel, payload)
    }
}

fn broadcast_channel(o: &Options, nsp: &str) -> String {
    format!("{}#{nsp}#", o.prefix)
}

fn request_channel(o: &Options, nsp: &str) -> String {
    format!("{}-request#{nsp}#", o.prefix)
}

fn response_channel(o: &Options, nsp: &str) -> String {
    format!("{}-response#{nsp}#", o.prefix)
}

fn subscribe(o: &Options, nsp: &str, uid: &str) -> Result<(), Error> {
    pubsub::psubscribe(&format!("{}*", broadcast_channel(o, nsp)))?;
    pubsub::subscribe(&request_channel(o, nsp), Mode::Classic)?;
    pubsub::subscribe(&response_channel(o, nsp), Mode::Classic)?;
    pubsub::subscribe(
        &format!("{}{uid}#", response_channel(o, nsp)),
        Mode::Classic,
    )
}

fn publish(o: &Options, nsp: &str, uid: &str, op: Op) -> Result<(), Error> {
    let (channel, bytes) = match op {
        // Never sent: a node of this protocol counts the others without heartbeats.
        Op::InitialHeartbeat | Op::Heartbeat => return Ok(()),
        Op::Broadcast {
            packet,
            opts,
            request_id: None,
        } => {
            let mut channel = broadcast_channel(o, nsp);
            if let [room] = opts.rooms.as_slice() {
                channel.push_str(room);
                channel.push('#');
            }
            (channel, wire::encode_broadcast(uid, &packet, &opts))
        }
        Op::Broadcast {
            packet,
            opts,
            request_id: Some(id),
        } => {
            let mut encoded_opts = Vec::new();
            opts.encode(&mut encoded_opts);
            let bytes = wire::map([
                ("uid", uid.into()),
                ("requestId", id.as_str().into()),
                ("type", kind::BROADCAST.into()),
                ("packet", decode_value(&packet)),
                ("opts", decode_value(&encoded_opts)),
            ]);
            (request_channel(o, nsp), bytes)
        }
        Op::Rooms { op, opts } => {
            let targets = Value::Map(vec![
                ("rooms".into(), strings(&opts.rooms)),
                ("except".into(), strings(&opts.except)),
            ]);
            let bytes = match &op {
                RoomsOp::Join(rooms) | RoomsOp::Leave(rooms) => {
                    let ty = if matches!(op, RoomsOp::Join(_)) {
                        kind::REMOTE_JOIN
                    } else {
                        kind::REMOTE_LEAVE
                    };
                    wire::map([
                        ("uid", uid.into()),
                        ("type", ty.into()),
                        ("opts", targets),
                        ("rooms", strings(rooms)),
                    ])
                }
                RoomsOp::Disconnect(close) => wire::map([
                    ("uid", uid.into()),
                    ("type", kind::REMOTE_DISCONNECT.into()),
                    ("opts", targets),
                    ("close", (*close).into()),
                ]),
            };
            (request_channel(o, nsp), bytes)
        }
        // Always a REMOTE_FETCH: this node never asks for ids alone.
        Op::Fetch {
            request_id, opts, ..
        } => (
            request_channel(o, nsp),
            wire::map([
                ("uid", uid.into()),
                ("requestId", request_id.as_str().into()),
                ("type", kind::REMOTE_FETCH.into()),
                (
                    "opts",
                    Value::Map(vec![
                        ("rooms".into(), strings(&opts.rooms)),
                        ("except".into(), strings(&opts.except)),
                    ]),
                ),
            ]),
        ),
        Op::AllRooms { request_id } => (
            request_channel(o, nsp),
            wire::map([
                ("uid", uid.into()),
                ("requestId", request_id.as_str().into()),
                ("type", kind::ALL_ROOMS.into()),
            ]),
        ),
        Op::Emit { request_id, data } => {
            let data = decode_value(&data);
            let bytes = match request_id {
                Some(id) => wire::map([
                    ("uid", uid.into()),
                    ("requestId", id.as_str().into()),
                    ("type", kind::SERVER_SIDE_EMIT.into()),
                    ("data", data),
                ]),
                None => wire::map([
                    ("uid", uid.into()),
                    ("type", kind::SERVER_SIDE_EMIT.into()),
                    ("data", data),
                ]),
            };
            (request_channel(o, nsp), bytes)
        }
    };
    pubsub::publish(&channel, &bytes, Mode::Classic)
}

/// Answers go where Node.js sends them: server-side-emit acks always on the shared
/// response channel; the rest on the requester's own one with
/// `publishOnSpecificResponseChannel`.
fn reply(o: &Options, nsp: &str, r: Response) -> Result<(), Error> {
    let (requester, request_id) = (r.requester, r.request_id);
    let shared = response_channel(o, nsp);
    let specific = if o.specific_response_channel {
        format!("{shared}{requester}#")
    } else {
        shared.clone()
    };
    let rid = || Value::from(request_id);
    let (channel, bytes) = match r.part {
        Part::Sockets(list) => (
            specific,
            wire::map([("requestId", rid()), ("sockets", Value::Array(list))]),
        ),
        Part::SocketIds(ids) => (
            specific,
            wire::map([("requestId", rid()), ("sockets", strings(&ids))]),
        ),
        Part::Rooms(rooms) => (
            specific,
            wire::map([("requestId", rid()), ("rooms", strings(&rooms))]),
        ),
        Part::EmitAck(v) => (
            shared,
            wire::map([
                ("type", kind::SERVER_SIDE_EMIT.into()),
                ("requestId", rid()),
                ("data", v),
            ]),
        ),
        Part::ClientCount(n) => (
            specific,
            wire::map([
                ("type", kind::BROADCAST_CLIENT_COUNT.into()),
                ("requestId", rid()),
                ("clientCount", n.into()),
            ]),
        ),
        Part::Ack(v) => (
            specific,
            wire::map([
                ("type", kind::BROADCAST_ACK.into()),
                ("requestId", rid()),
                ("packet", v),
            ]),
        ),
    };
    pubsub::publish(&channel, &bytes, Mode::Classic)
}

/// What arrived on one of our channels.
fn decode(o: &Options, channel: &str, payload: &[u8]) -> Result<Envelope, String> {
    let response = format!("{}-response#", o.prefix);
    let request = format!("{}-request#", o.prefix);
    if channel.starts_with(&response) {
        return Ok(Envelope {
            uid: String::new(),
            nsp: String::new(),
            body: decode_response(payload)?,
        });
    }
    if let Some(rest) = channel.strip_prefix(&request) {
        let nsp = rest.strip_suffix('#').ok_or("not a request channel")?;
        return decode_request(nsp, payload);
    }
    let b = wire::decode_broadcast(payload).map_err(|e| e.to_string())?;
    if !channel.starts_with(&broadcast_channel(o, &b.nsp)) {
        return Err(format!(
            "a packet of {} on another namespace's channel",
            b.nsp
        ));
    }
    Ok(Envelope {
        uid: b.uid,
        nsp: b.nsp,
        body: In::Op(Op::Broadcast {
            packet: b.packet,
            opts: b.opts,
            request_id: None,
        }),
    })
}

fn decode_request(nsp: &str, payload: &[u8]) -> Result<Envelope, String> {
    let f = Fields::decode(payload).map_err(|e| e.to_string())?;
    let need_id = || f.request_id().ok_or("no `requestId`");
    let e = |e: wasio_cluster_protocol::DecodeError| e.to_string();
    let ty = f.ty().ok_or("no integer `type`")?;
    let op = match ty {
        kind::SOCKETS => Op::Fetch {
            request_id: need_id()?,
            opts: wasio_cluster_protocol::Opts {
                rooms: f.strings("rooms").map_err(e)?,
                ..Default::default()
            },
            ids_only: true,
        },
        kind::ALL_ROOMS => Op::AllRooms {
            request_id: need_id()?,
        },
        kind::REMOTE_JOIN | kind::REMOTE_LEAVE | kind::REMOTE_DISCONNECT => {
            let (opts, rooms) = if f.get("opts").is_some() {
                (f.opts().map_err(e)?, f.strings("rooms").map_err(e)?)
            } else {
                // The pre-8 form names one socket (`sid`) and one `room`.
                let sid = f.str("sid").ok_or("no `opts` nor `sid`")?;
                let opts = wasio_cluster_protocol::Opts {
                    rooms: vec![sid.to_string()],
                    ..Default::default()
                };
                (
                    opts,
                    f.str("room")
                        .map(|r| vec![r.to_string()])
                        .unwrap_or_default(),
                )
            };
            let op = match ty {
                kind::REMOTE_JOIN => RoomsOp::Join(rooms),
                kind::REMOTE_LEAVE => RoomsOp::Leave(rooms),
                _ => RoomsOp::Disconnect(f.get("close").and_then(Value::as_bool).unwrap_or(false)),
            };
            Op::Rooms { op, opts }
        }
        kind::REMOTE_FETCH => Op::Fetch {
            request_id: need_id()?,
            opts: f.opts().map_err(e)?,
            ids_only: false,
        },
        kind::SERVER_SIDE_EMIT => {
            let data = match f.get("data") {
                Some(v @ Value::Array(_)) => encode(v),
                _ => return Err("server-side emit `data` must be an array".into()),
            };
            Op::Emit {
                request_id: f.request_id(),
                data,
            }
        }
        kind::BROADCAST => {
            let packet = match f.get("packet") {
                Some(v @ Value::Map(_)) => encode(v),
                _ => return Err("broadcast `packet` must be a map".into()),
            };
            Op::Broadcast {
                packet,
                opts: f.opts().map_err(e)?,
                request_id: Some(need_id()?),
            }
        }
        other => return Err(format!("unknown request type {other}")),
    };
    Ok(Envelope {
        uid: f.str("uid").unwrap_or_default().to_string(),
        nsp: nsp.to_string(),
        body: In::Op(op),
    })
}

fn decode_response(payload: &[u8]) -> Result<In, String> {
    let f = Fields::decode(payload).map_err(|e| e.to_string())?;
    let Some(request_id) = f.request_id() else {
        return Err("a response without `requestId`".into());
    };
    let part = match (f.ty(), f.get("sockets"), f.get("rooms")) {
        (Some(kind::BROADCAST_CLIENT_COUNT), ..) => Part::ClientCount(
            f.get("clientCount")
                .and_then(Value::as_u64)
                .ok_or("no `clientCount`")?,
        ),
        (Some(kind::BROADCAST_ACK), ..) => {
            Part::Ack(f.get("packet").cloned().unwrap_or(Value::Nil))
        }
        (Some(kind::SERVER_SIDE_EMIT), ..) => {
            Part::EmitAck(f.get("data").cloned().unwrap_or(Value::Nil))
        }
        (_, Some(Value::Array(items)), _) => {
            if items.iter().all(Value::is_str) {
                Part::SocketIds(
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                )
            } else {
                Part::Sockets(items.clone())
            }
        }
        (_, _, Some(_)) => Part::Rooms(f.strings("rooms").map_err(|e| e.to_string())?),
        // The answer of the pre-8 single-socket join/leave/disconnect: nothing to add.
        _ => return Ok(In::Ignore),
    };
    Ok(In::Part { request_id, part })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options::parse("{}").unwrap()
    }

    #[test]
    fn emitter_requests_decode() {
        // What @socket.io/redis-emitter 5.1 publishes for `socketsJoin` and `serverSideEmit`.
        let env = decode(
            &opts(),
            "socket.io-request#/#",
            br#"{"type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}"#,
        )
        .unwrap();
        assert_eq!(env.nsp, "/");
        assert!(
            matches!(env.body, In::Op(Op::Rooms { op: RoomsOp::Join(ref r), .. }) if r == &["b".to_string()])
        );
        let env = decode(
            &opts(),
            "socket.io-request#/chat#",
            br#"{"uid":"emitter","type":6,"data":["ev",1]}"#,
        )
        .unwrap();
        assert_eq!((env.uid.as_str(), env.nsp.as_str()), ("emitter", "/chat"));
        assert!(matches!(
            env.body,
            In::Op(Op::Emit {
                request_id: None,
                ..
            })
        ));
    }

    #[test]
    fn responses_are_matched_by_kind() {
        let p = decode(
            &opts(),
            "socket.io-response#/#",
            br#"{"requestId":"r","rooms":["a"]}"#,
        )
        .unwrap();
        assert!(matches!(
            p.body,
            In::Part {
                part: Part::Rooms(_),
                ..
            }
        ));
        let p = decode(
            &opts(),
            "socket.io-response#/#",
            br#"{"type":8,"requestId":"r","clientCount":3}"#,
        )
        .unwrap();
        assert!(matches!(
            p.body,
            In::Part {
                part: Part::ClientCount(3),
                ..
            }
        ));
        assert!(decode(&opts(), "socket.io-response#/#", br#"{"rooms":[]}"#).is_err());
    }

    #[test]
    fn foreign_and_malformed_are_errors() {
        assert!(decode(&opts(), "socket.io-request#/#", b"\xc1").is_err());
        assert!(
            decode(
                &opts(),
                "socket.io-request#/#",
                br#"{"type":42,"requestId":"x"}"#
            )
            .is_err()
        );
        assert!(decode(&opts(), "socket.io#/#", b"garbage").is_err());
    }
}
