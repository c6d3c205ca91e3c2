"""wasio relay as seen from python-socketio, a second client implementation.

Run:  WASIO_BIN=/path/to/wasio .venv/bin/pytest -q tests/py
Every wait is bounded; a broken server fails the test instead of hanging it.
"""

import queue
import time
import uuid

import pytest
import socketio

from wasio_server import serve

TIMEOUT = 5.0

CONFIG = """\
[server]
port = 0
namespaces = ["/", "/dyn/{*rest}"]

[adapter]
wasm = "builtin:local"

[limits]
deadline_ms = 100
memory_mib = 64
"""


@pytest.fixture(scope="module")
def server():
    """One wasio server for the module: yields its base URL."""
    with serve(CONFIG) as node:
        yield node.url


class Client:
    """A python-socketio client on one namespace that records every event it receives."""

    def __init__(self, url, nsp, transport):
        self.nsp = nsp
        self.events = queue.Queue()
        self.received = []  # (event, data) in arrival order, filled by take()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._on_any, namespace=nsp)
        self.sio.connect(url, namespaces=[nsp], transports=[transport], wait_timeout=TIMEOUT)

    def _on_any(self, event, *args):
        self.events.put((event, args[0] if args else None, len(args)))

    def call(self, event, data):
        return self.sio.call(event, data, namespace=self.nsp, timeout=TIMEOUT)

    def take(self, event, pred=lambda d: True):
        """Returns the data of the next `event` satisfying pred (keeping everything seen)."""
        for ev, data, _ in self.received:
            if ev == event and pred(data):
                return data
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} within {TIMEOUT}s on {self.nsp}; got {self.received!r}"[:2000])
            try:
                ev, data, n = self.events.get(timeout=left)
            except queue.Empty:
                continue
            self.received.append((ev, data, n))
            if ev == event and pred(data):
                return data

    def data(self, event):
        return [d for ev, d, _ in self.received if ev == event]

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass


def fence(publisher, receivers):
    """Publishes a unique __fence to the namespace and waits until every receiver has it: after
    this, each receiver's `received` holds everything earlier (acked) publishes gave it."""
    token = uuid.uuid4().hex
    res = publisher.call("publish", {"event": "__fence", "data": token})
    assert res and res.get("ok") is True, res
    for r in receivers:
        r.take("__fence", lambda d: d == token)


@pytest.fixture
def clients(server, request):
    made = []

    def make(n, nsp, transport):
        for _ in range(n):
            made.append(Client(server, nsp, transport))
        return made[-n:]

    yield make
    for c in made:
        c.close()


def user_rooms(res, client):
    sid = client.sio.get_sid(client.nsp)
    return [r for r in res["rooms"] if r != sid]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_join_publish_and_acks(clients, transport):
    nsp = f"/dyn/py-{uuid.uuid4().hex[:8]}"
    a, b, c = clients(3, nsp, transport)

    res = a.call("join", ["room", "other"])
    assert res["ok"] is True
    assert user_rooms(res, a) == ["other", "room"]
    assert b.call("join", "room")["ok"] is True

    # To the room: both members, the sender included, and not c.
    res = a.call("publish", {"room": "room", "event": "msg", "data": {"text": "hi", "n": 1}})
    assert res == {"ok": True, "count": 2}
    assert a.take("msg") == {"text": "hi", "n": 1}
    assert b.take("msg") == {"text": "hi", "n": 1}

    # exceptSelf.
    res = a.call("publish", {"room": "room", "event": "msg2", "data": "x", "exceptSelf": True})
    assert res == {"ok": True, "count": 1}
    assert b.take("msg2") == "x"

    fence(c, [a, b, c])
    assert c.data("msg") == [] and c.data("msg2") == []
    assert a.data("msg2") == []

    # leave.
    res = b.call("leave", "room")
    assert res["ok"] is True and user_rooms(res, b) == []
    assert a.call("publish", {"room": "room", "event": "m3", "data": 3}) == {"ok": True, "count": 1}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_bytes_data(clients, transport):
    nsp = f"/dyn/py-{uuid.uuid4().hex[:8]}"
    a, b = clients(2, nsp, transport)
    assert b.call("join", "bin")["ok"] is True
    blob = bytes(range(256)) * 64
    data = {"name": "blob", "raw": blob, "nested": [b"\x00\xff", {"deep": b"abc"}]}
    res = a.call("publish", {"room": "bin", "event": "file", "data": data})
    assert res == {"ok": True, "count": 1}
    got = b.take("file")
    assert got["name"] == "blob"
    assert isinstance(got["raw"], bytes) and got["raw"] == blob
    assert got["nested"][0] == b"\x00\xff"
    assert got["nested"][1]["deep"] == b"abc"

    # bytes as the whole data, to the whole namespace.
    res = a.call("publish", {"event": "raw", "data": b"\x01\x02\x03"})
    assert res == {"ok": True, "count": 2}
    assert a.take("raw") == b"\x01\x02\x03"
    assert b.take("raw") == b"\x01\x02\x03"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_errors(clients, transport):
    nsp = f"/dyn/py-{uuid.uuid4().hex[:8]}"
    (a,) = clients(1, nsp, transport)
    for bad in [42, "", ["ok", 1], None]:
        res = a.call("join", bad)
        assert isinstance(res.get("error"), str), f"join {bad!r}: {res!r}"
    for bad in [{"data": 1}, {"event": 1}, {"event": "disconnect"}, {"event": "x", "room": 3}]:
        res = a.call("publish", bad)
        assert isinstance(res.get("error"), str), f"publish {bad!r}: {res!r}"
    fence(a, [a])
    assert [ev for ev, _, _ in a.received if ev != "__fence"] == []
