//! [`Op`], [`Response`] and [`In`] as the cluster message family of `socket.io-adapter`
//! (`wasio-cluster-protocol`'s [`Body`]), for the backends that speak it: sharded
//! Redis, MongoDB, and next Postgres and Redis Streams. Where the bytes go is the
//! backend's business.

use wasio_cluster_protocol::{Body, Message, Opts};

use crate::convert::{decode, encode};
use crate::messages::{Envelope, In, Op, Part, Response, RoomsOp};

/// What this node publishes, as a message body.
pub fn body(op: Op) -> Body {
    match op {
        Op::InitialHeartbeat => Body::InitialHeartbeat,
        Op::Heartbeat => Body::Heartbeat,
        Op::Broadcast {
            packet,
            opts,
            request_id,
        } => Body::Broadcast {
            packet,
            request_id,
            opts,
        },
        Op::Rooms { op, opts } => match op {
            RoomsOp::Join(rooms) => Body::SocketsJoin { opts, rooms },
            RoomsOp::Leave(rooms) => Body::SocketsLeave { opts, rooms },
            RoomsOp::Disconnect(close) => Body::DisconnectSockets { opts, close },
        },
        // The family has no ids-only fetch: every socket travels whole.
        Op::Fetch {
            request_id, opts, ..
        } => Body::FetchSockets { opts, request_id },
        // The family has no all-rooms request: every node's sockets answer it, and the
        // node unites their rooms (Node.js nodes answer a fetch too).
        Op::AllRooms { request_id } => Body::FetchSockets {
            opts: Opts::default(),
            request_id,
        },
        Op::Emit { request_id, data } => Body::ServerSideEmit {
            request_id,
            packet: data,
        },
    }
}

/// This node's answer, as a message body; `None` for the parts only the classic Redis
/// protocol has.
pub fn response(r: Response) -> Option<Body> {
    let request_id = r.request_id.to_string();
    Some(match r.part {
        Part::Sockets(list) => Body::FetchSocketsResponse {
            request_id,
            sockets: list.iter().map(encode).collect(),
        },
        Part::EmitAck(v) => Body::ServerSideEmitResponse {
            request_id,
            packet: encode(&v),
        },
        Part::ClientCount(n) => Body::BroadcastClientCount {
            request_id,
            client_count: n,
        },
        Part::Ack(v) => Body::BroadcastAck {
            request_id,
            packet: encode(&v),
        },
        Part::SocketIds(_) | Part::Rooms(_) => return None,
    })
}

/// A received message, for the node.
pub fn envelope(m: Message) -> Envelope {
    let part = |request_id: String, part| In::Part { request_id, part };
    let body = match m.body {
        Body::InitialHeartbeat => In::Op(Op::InitialHeartbeat),
        Body::Heartbeat => In::Op(Op::Heartbeat),
        // What socket.io-adapter does on ADAPTER_CLOSE (forget the node at once) wasio
        // leaves to the heartbeat timeout.
        Body::AdapterClose => In::Ignore,
        Body::Broadcast {
            packet,
            request_id,
            opts,
        } => In::Op(Op::Broadcast {
            packet,
            opts,
            request_id,
        }),
        Body::SocketsJoin { opts, rooms } => In::Op(Op::Rooms {
            op: RoomsOp::Join(rooms),
            opts,
        }),
        Body::SocketsLeave { opts, rooms } => In::Op(Op::Rooms {
            op: RoomsOp::Leave(rooms),
            opts,
        }),
        Body::DisconnectSockets { opts, close } => In::Op(Op::Rooms {
            op: RoomsOp::Disconnect(close),
            opts,
        }),
        Body::FetchSockets { opts, request_id } => In::Op(Op::Fetch {
            request_id,
            opts,
            ids_only: false,
        }),
        Body::ServerSideEmit { request_id, packet } => In::Op(Op::Emit {
            request_id,
            data: packet,
        }),
        Body::FetchSocketsResponse {
            request_id,
            sockets,
        } => part(
            request_id,
            Part::Sockets(sockets.iter().map(|s| decode(s)).collect()),
        ),
        Body::ServerSideEmitResponse { request_id, packet } => {
            part(request_id, Part::EmitAck(decode(&packet)))
        }
        Body::BroadcastClientCount {
            request_id,
            client_count,
        } => part(request_id, Part::ClientCount(client_count)),
        Body::BroadcastAck { request_id, packet } => part(request_id, Part::Ack(decode(&packet))),
    };
    Envelope {
        uid: m.uid,
        nsp: m.nsp,
        body,
    }
}

#[cfg(test)]
mod tests {
    use rmpv::Value;

    use super::*;

    fn through_the_wire(op: Op) -> In {
        let sent = Message {
            uid: "u".into(),
            nsp: "/".into(),
            body: body(op),
        };
        let env = envelope(Message::decode(&sent.encode()).unwrap());
        assert_eq!((env.uid.as_str(), env.nsp.as_str()), ("u", "/"));
        env.body
    }

    #[test]
    fn what_a_node_sends_reads_back() {
        let opts = Opts::for_operation(&["r".into()], &[], None, false, false, Some(9));
        let packet = encode(&Value::Map(vec![("type".into(), 2.into())]));
        for op in [
            Op::Broadcast {
                packet,
                opts: opts.clone(),
                request_id: Some("q".into()),
            },
            Op::Rooms {
                op: RoomsOp::Disconnect(true),
                opts,
            },
            Op::Emit {
                request_id: None,
                data: encode(&Value::Array(vec!["e".into()])),
            },
            Op::InitialHeartbeat,
            Op::Heartbeat,
        ] {
            assert_eq!(through_the_wire(op.clone()), In::Op(op));
        }
        assert_eq!(
            through_the_wire(Op::AllRooms {
                request_id: "q".into()
            }),
            In::Op(Op::Fetch {
                request_id: "q".into(),
                opts: Opts::default(),
                ids_only: false,
            }),
            "all-rooms is a fetch of every socket"
        );
    }

    #[test]
    fn answers_read_back() {
        let socket = Value::Map(vec![("id".into(), "s".into())]);
        for part in [
            Part::Sockets(vec![socket]),
            Part::EmitAck(Value::from("ok")),
            Part::ClientCount(3),
            Part::Ack(Value::from(123)),
        ] {
            let sent = Message {
                uid: "u".into(),
                nsp: "/".into(),
                body: response(Response {
                    requester: "r",
                    request_id: "q",
                    part: part.clone(),
                })
                .unwrap(),
            };
            let back = envelope(Message::decode(&sent.encode()).unwrap()).body;
            assert_eq!(
                back,
                In::Part {
                    request_id: "q".into(),
                    part
                }
            );
        }
        let classic_only = Response {
            requester: "r",
            request_id: "q",
            part: Part::Rooms(vec![]),
        };
        assert_eq!(response(classic_only), None);
    }
}
