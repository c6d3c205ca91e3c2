"""Auth on wasio serve as python-socketio sees it: a JWT in `auth`, refusals as connect
errors, claims deciding joins and publishes (the JS suite covers the rest)."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
import socketio

from wasio_server import serve

SECRET = "a-test-secret-of-32-bytes-------"
TIMEOUT = 5.0

CONFIG = f"""\
[server]
port = 0

[adapter]
wasm = "builtin:local"

[auth.jwt]
secret = "{SECRET}"
audience = "wasio-py"
"""


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(rights, secret=SECRET, **claims):
    """An HS256 JWT signed here with the standard library (independent of the server's crate)."""
    body = {"sub": "py", "aud": "wasio-py", "exp": int(time.time()) + 600, "wasio": rights, **claims}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(body).encode())
    sig = hmac.new(secret.encode(), f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64(sig)}"


@pytest.fixture(scope="module")
def server():
    with serve(CONFIG) as node:
        yield node.url


def client(url, tok, transport):
    sio = socketio.Client(reconnection=False)
    sio.connect(url, auth={"token": tok}, transports=[transport], wait_timeout=TIMEOUT)
    return sio


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_token_claims_decide(server, transport):
    room = f"py-{uuid.uuid4().hex[:8]}"
    sio = client(server, token({"join": [f"{room}*"], "publish": [room]}), transport)
    try:
        assert sio.call("join", room, timeout=TIMEOUT)["ok"] is True
        refused = sio.call("join", "elsewhere", timeout=TIMEOUT)
        assert "forbidden: the token does not grant joining `elsewhere`" in refused["error"]
        assert sio.call("publish", {"room": room, "event": "e", "data": 1}, timeout=TIMEOUT) == {"ok": True, "count": 1}
        refused = sio.call("publish", {"event": "e", "data": 2}, timeout=TIMEOUT)
        assert "whole namespace is not allowed" in refused["error"]
    finally:
        sio.disconnect()


@pytest.mark.parametrize(
    "tok,why",
    [
        (None, "no token"),
        (token({}, exp=int(time.time()) - 60), "token expired"),
        (token({}, aud="other"), "wrong token audience"),
        (token({}, secret="not-the-secret-not-the-secret---"), "invalid token signature"),
    ],
)
def test_refused_tokens(server, tok, why):
    sio = socketio.Client(reconnection=False)
    # The refusal's message arrives as the namespace's connect_error event.
    errors = []
    sio.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(server, auth={"token": tok} if tok else None, transports=["websocket"], wait_timeout=TIMEOUT)
    assert any(why in str(e) for e in errors), errors
    sio.disconnect()
