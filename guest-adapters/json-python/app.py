"""A wasio cluster adapter in Python: the `wasio-json` protocol over Redis pub/sub.

The protocol is guest-adapters/json-protocol.md; Rust and JavaScript adapters speak it
too, so one cluster may mix them. Build: `bash build.sh OUT.wasm` (componentize-py).

The host calls the `Guest` methods below, one at a time. Nothing here blocks: a request
that needs other nodes publishes a message, and the answers arrive later as
`on_message` calls, which pass them on to the host with `requests.reply`.
"""

import base64
import json
import json.scanner

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.guest import AdapterInfo
from wit_world.imports import log, pubsub, requests, sockets, timers
from wit_world.imports.types import (
    BroadcastFlags,
    BroadcastOpts,
    Error_Invalid,
    Error_Timeout,
    SocketInfo,
)

CLASSIC = pubsub.Mode.CLASSIC
FLAGS = {"local": BroadcastFlags.LOCAL, "broadcast": BroadcastFlags.BROADCAST, "volatile": BroadcastFlags.VOLATILE}
# Answer type -> the request type it answers.
ANSWERS = {"sockets": "fetch", "rooms-reply": "rooms", "emit-ack": "emit", "count": "broadcast-ack", "ack": "broadcast-ack"}


class State:
    """Everything this instance remembers (module-level: the host may make a new `Guest` per call)."""

    def __init__(self):
        self.uid = ""  # this node (init-args.node-id)
        self.prefix = "wasio-json"
        self.requests_timeout = 5000
        self.channels = {}  # subscribed channel -> its namespace
        self.pending = {}  # request id -> Request, while waiting for other nodes
        self.counting = set()  # server-count request ids waiting for `on_counts`
        self.timers = {}  # timer id -> request id
        self.handles = {}  # our handle -> (nsp, requester uid, rid) of another node's request we answer
        self.next_handle = 0


S = State()


class Request:
    """One request of ours to the other nodes."""

    def __init__(self, kind, timeout_ms):
        self.kind = kind  # a request `type`: fetch, rooms, emit, broadcast-ack
        self.expected = None  # other nodes to wait for, once count-subscribers answered
        self.nodes = set()  # uids of the nodes that answered (that sent `count`, for acks)
        self.clients = 0  # broadcast-ack: sum of the nodes' client counts
        self.acks = 0  # broadcast-ack: client acks received
        self.timer = timers.start(timeout_ms)


class Bad(Exception):
    """A malformed message: `on_message` answers `invalid`."""


def invalid(message):
    return Err(Error_Invalid(message))


# --- JSON and base64 on the wire -------------------------------------------------------

# json's C decoder recurses on the guest's small stack: a message nested some 1000 deep
# would trap the instance. One with many brackets takes the pure-Python decoder, which
# raises RecursionError instead (a few hundred brackets are far from the trap).
MANY_BRACKETS = 256
deep_decoder = json.JSONDecoder()
deep_decoder.scan_once = json.scanner.py_make_scanner(deep_decoder)


def decode(payload):
    text = payload.decode()
    if text.count("[") + text.count("{") > MANY_BRACKETS:
        return deep_decoder.decode(text)
    return json.loads(text)


def field(obj, key, kind, optional=False):
    """`obj[key]`, checked to be a `kind` (absent or null allowed when `optional`)."""
    if not isinstance(obj, dict):
        raise Bad(f"expected an object holding `{key}`")
    value = obj.get(key)
    if value is None and optional:
        return None
    if key not in obj:
        raise Bad(f"missing `{key}`")
    # bool is an int in Python.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Bad(f"`{key}` is not a {kind.__name__}")
    if kind is str:
        unicode(value)
    return value


def unicode(s):
    """Raises ValueError for a lone surrogate (JSON allows "\\ud800"): it cannot cross to the host."""
    s.encode()


def strings(obj, key):
    items = field(obj, key, list)
    if not all(isinstance(s, str) for s in items):
        raise Bad(f"`{key}` is not a list of strings")
    for s in items:
        unicode(s)
    return items


def uint(obj, key, bits):
    value = field(obj, key, int)
    if not 0 <= value < 1 << bits:
        raise Bad(f"`{key}` is out of range")
    return value


def blob(obj, key):
    return base64.b64decode(field(obj, key, str), validate=True)


def b64(data):
    return base64.b64encode(data).decode()


def opts_to_wire(o):
    return {
        "rooms": o.rooms,
        "except": o.except_,
        "flags": {name: flag in o.flags for name, flag in FLAGS.items()},
        "sid": o.sid,
        "serverId": o.server_id,
    }


def opts_from_wire(msg):
    o = field(msg, "opts", dict)
    wire_flags = field(o, "flags", dict)
    flags = BroadcastFlags(0)
    for name, flag in FLAGS.items():
        if field(wire_flags, name, bool):
            flags |= flag
    return BroadcastOpts(
        flags,
        strings(o, "rooms"),
        strings(o, "except"),
        field(o, "sid", str, optional=True),
        field(o, "serverId", str, optional=True),
    )


def socket_to_wire(s):
    return {"id": s.id, "serverId": s.server_id, "rooms": s.rooms, "handshake": b64(s.handshake), "data": b64(s.data)}


def socket_from_wire(s):
    return SocketInfo(field(s, "id", str), field(s, "serverId", str), strings(s, "rooms"), blob(s, "handshake"), blob(s, "data"))


# --- channels and publishing -----------------------------------------------------------


def all_nodes(nsp):
    return f"{S.prefix}#{nsp}#"


def node_channel(nsp, uid):
    return f"{S.prefix}#{nsp}#{uid}#"


def publish(channel, nsp, kind, **fields):
    msg = {"v": 1, "uid": S.uid, "nsp": nsp, "type": kind, **fields}
    pubsub.publish(channel, json.dumps(msg, separators=(",", ":")).encode(), CLASSIC)


def answer(nsp, requester, kind, **fields):
    """Publishes an answer to another node's request; a failure only loses that answer."""
    try:
        publish(node_channel(nsp, requester), nsp, kind, **fields)
    except Err as e:
        log.log(log.Level.WARN, f"answer {kind} to {requester} not sent: {e.value}")


def relay(nsp, kind, opts, **fields):
    if BroadcastFlags.LOCAL not in opts.flags:
        publish(all_nodes(nsp), nsp, kind, opts=opts_to_wire(opts), **fields)


def new_handle(nsp, requester, rid):
    S.next_handle += 1
    S.handles[S.next_handle] = (nsp, requester, rid)
    return S.next_handle


# --- requests to the other nodes -------------------------------------------------------


def start(nsp, rid, kind, timeout_ms, **fields):
    """Publishes request `rid`, then waits for as many answers as there are other nodes."""
    publish(all_nodes(nsp), nsp, kind, rid=rid, **fields)
    S.pending[rid] = req = Request(kind, timeout_ms)
    S.timers[req.timer] = rid
    count_nodes(nsp, rid)


def count_nodes(nsp, rid):
    """Asks how many nodes subscribe to the namespace; the count comes to `on_counts`."""
    try:
        pubsub.count_subscribers([all_nodes(nsp)], CLASSIC, rid)
    except Err as e:
        end(rid, e)


def end(rid, outcome):
    req = S.pending.pop(rid, None)
    if req is not None:
        timers.cancel(req.timer)
        S.timers.pop(req.timer, None)
    requests.finish(rid, outcome)


def end_if_done(rid):
    req = S.pending[rid]
    if req.expected is not None and len(req.nodes) >= req.expected and req.acks >= req.clients:
        end(rid, Ok(None))


def on_answer(sender, kind, msg):
    rid = field(msg, "rid", int)
    if kind == "sockets":
        part = requests.Answer_Sockets([socket_from_wire(s) for s in field(msg, "sockets", list)])
    elif kind == "rooms-reply":
        part = requests.Answer_Rooms(strings(msg, "rooms"))
    elif kind == "emit-ack":
        part = requests.Answer_ServerAck(blob(msg, "data"))
    elif kind == "count":
        part = requests.Answer_ClientCount(uint(msg, "count", 32))
    else:
        part = requests.Answer_Ack(blob(msg, "data"))
    req = S.pending.get(rid)
    if req is None or req.kind != ANSWERS[kind]:
        return  # finished, timed out, or not ours
    requests.reply(rid, part)
    if kind == "ack":
        req.acks += 1
    else:
        req.nodes.add(sender)
        if kind == "count":
            req.clients += part.value
    end_if_done(rid)


# --- what other nodes ask of this one --------------------------------------------------


def on_request(nsp, sender, kind, msg):
    if kind == "broadcast":
        sockets.broadcast(nsp, blob(msg, "packet"), opts_from_wire(msg))
    elif kind == "join":
        sockets.add_sockets(nsp, opts_from_wire(msg), strings(msg, "rooms"))
    elif kind == "leave":
        sockets.del_sockets(nsp, opts_from_wire(msg), strings(msg, "rooms"))
    elif kind == "disconnect":
        sockets.disconnect(nsp, opts_from_wire(msg), field(msg, "close", bool))
    elif kind == "fetch":
        found = sockets.fetch(nsp, opts_from_wire(msg))
        answer(nsp, sender, "sockets", rid=field(msg, "rid", int), sockets=[socket_to_wire(s) for s in found])
    elif kind == "rooms":
        found = sockets.rooms(nsp, opts_from_wire(msg))
        answer(nsp, sender, "rooms-reply", rid=field(msg, "rid", int), rooms=found)
    elif kind == "emit":
        data, rid = blob(msg, "data"), field(msg, "rid", int, optional=True)
        handle = None if rid is None else new_handle(nsp, sender, rid)
        try:
            sockets.server_side_emit(nsp, data, handle)
        except Err:
            S.handles.pop(handle, None)
            raise
    else:  # broadcast-ack
        rid, packet, opts = field(msg, "rid", int), blob(msg, "packet"), opts_from_wire(msg)
        handle = new_handle(nsp, sender, rid)
        try:
            count = sockets.broadcast_with_ack(nsp, packet, opts, uint(msg, "timeout", 32), handle)
        except Err:
            S.handles.pop(handle)
            raise
        # Before any ack: the requester adds this node's clients to what it waits for.
        answer(nsp, sender, "count", rid=rid, count=count)


REQUESTS = {"broadcast", "join", "leave", "disconnect", "fetch", "rooms", "emit", "broadcast-ack"}


class Guest(exports.Guest):
    def init(self, args):
        try:
            options = json.loads(args.options)
        except ValueError as e:
            raise invalid(f"options are not JSON: {e}")
        for key, value in options.items():
            if key == "prefix":
                if not isinstance(value, str):
                    raise invalid(f"option `prefix` must be a string, not {value!r}")
                S.prefix = value
            elif key == "requestsTimeout":
                if type(value) is not int or not 0 < value < 1 << 32:
                    raise invalid(f"option `requestsTimeout` must be milliseconds (1 to 2^32-1), not {value!r}")
                S.requests_timeout = value
            else:
                raise invalid(f"unknown option `{key}` (known: prefix, requestsTimeout)")
        S.uid = args.node_id
        return AdapterInfo("json-python", "0.1.0")

    def open(self, nsp):
        for channel in (all_nodes(nsp), node_channel(nsp, S.uid)):
            pubsub.subscribe(channel, CLASSIC)
            S.channels[channel] = nsp

    def close(self):
        failed = None
        for channel in S.channels:
            try:
                pubsub.unsubscribe(channel, CLASSIC)
            except Err as e:
                failed = e
        S.channels.clear()
        if failed:
            raise failed

    def broadcast(self, nsp, packet, opts):
        relay(nsp, "broadcast", opts, packet=b64(packet))

    def add_sockets(self, nsp, opts, rooms):
        relay(nsp, "join", opts, rooms=rooms)

    def del_sockets(self, nsp, opts, rooms):
        relay(nsp, "leave", opts, rooms=rooms)

    def disconnect_sockets(self, nsp, opts, close):
        relay(nsp, "disconnect", opts, close=close)

    def broadcast_with_ack(self, nsp, id, packet, opts, timeout_ms):
        start(nsp, id, "broadcast-ack", timeout_ms, packet=b64(packet), opts=opts_to_wire(opts), timeout=timeout_ms)

    def fetch_sockets(self, nsp, id, opts):
        start(nsp, id, "fetch", S.requests_timeout, opts=opts_to_wire(opts))

    def all_rooms(self, nsp, id, opts):
        start(nsp, id, "rooms", S.requests_timeout, opts=opts_to_wire(opts))

    def server_side_emit(self, nsp, id, data):
        if id is None:
            publish(all_nodes(nsp), nsp, "emit", data=b64(data))
        else:
            start(nsp, id, "emit", S.requests_timeout, data=b64(data))

    def server_count(self, nsp, id):
        # No message: the subscriber count is the answer.
        pubsub.count_subscribers([all_nodes(nsp)], CLASSIC, id)
        S.counting.add(id)

    def on_counts(self, ticket, counts):
        if ticket in S.counting:
            S.counting.discard(ticket)
            if isinstance(counts, Ok):
                requests.reply(ticket, requests.Answer_ServerCount(counts.value[0]))
            requests.finish(ticket, Ok(None) if isinstance(counts, Ok) else counts)
        elif ticket in S.pending:
            if isinstance(counts, Err):
                end(ticket, counts)
            else:
                S.pending[ticket].expected = counts.value[0] - 1  # every node but this one
                end_if_done(ticket)

    def on_timer(self, id):
        rid = S.timers.pop(id, None)
        req = S.pending.get(rid)
        if req is not None:
            got = f"{len(req.nodes)} of {req.expected if req.expected is not None else '?'} nodes"
            end(rid, Err(Error_Timeout(f"{req.kind} request {rid}: {got} answered in time")))

    def on_message(self, channel, pattern, payload):
        try:
            msg = decode(payload)
            if field(msg, "v", int) != 1:
                raise Bad(f"protocol version {msg['v']}, not 1")
            sender, nsp, kind = field(msg, "uid", str), field(msg, "nsp", str), field(msg, "type", str)
            if kind not in REQUESTS and kind not in ANSWERS:
                raise Bad(f"unknown type {kind!r}")
            if sender == S.uid or nsp != S.channels.get(channel):
                return  # our own message, or another namespace's
            if kind in ANSWERS:
                on_answer(sender, kind, msg)
            else:
                on_request(nsp, sender, kind, msg)
        except (Bad, ValueError, RecursionError) as e:
            raise invalid(f"message on {channel}: {e}")

    def on_local_ack(self, handle, ack):
        if ack is None:
            S.handles.pop(handle, None)
        elif handle in S.handles:
            nsp, requester, rid = S.handles[handle]
            answer(nsp, requester, "ack", rid=rid, data=b64(ack))

    def on_server_side_ack(self, handle, data):
        if handle in S.handles:
            nsp, requester, rid = S.handles.pop(handle)
            answer(nsp, requester, "emit-ack", rid=rid, data=b64(data))

    # Not used by this adapter: no docstore, no per-room channels, and the host replays
    # the subscriptions itself after a reconnect.
    def on_document(self, collection, document):
        pass

    def on_rooms(self, nsp, rooms):
        pass

    def on_connection(self, up):
        pass
