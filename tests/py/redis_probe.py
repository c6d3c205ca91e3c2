"""A python-socketio client for the Redis interop tests (tests/js/lib/redis-suite.js).

Usage: redis_probe.py URL NAMESPACE ROOM EVENT TIMEOUT_S

Connects to NAMESPACE over WebSocket, joins ROOM through the relay protocol, prints
{"ready": sid}, waits for EVENT, prints {"event": data} (bytes values as "<key>_hex"),
and exits 0; exits 1 when anything takes longer than TIMEOUT_S. One JSON object a line.
"""

import json
import sys
import threading

import socketio


def plain(value):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, (bytes, bytearray)):
                out[f"{k}_hex"] = bytes(v).hex()
            else:
                out[k] = plain(v)
        return out
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def main():
    url, nsp, room, event, timeout = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
    got = threading.Event()
    received = []
    sio = socketio.Client(reconnection=False)

    @sio.on(event, namespace=nsp)
    def on_event(data):
        received.append(data)
        got.set()

    sio.connect(url, namespaces=[nsp], transports=["websocket"], wait_timeout=timeout)
    try:
        res = sio.call("join", room, namespace=nsp, timeout=timeout)
        if not res or res.get("ok") is not True:
            print(json.dumps({"error": f"join failed: {res!r}"}), flush=True)
            return 1
        print(json.dumps({"ready": sio.get_sid(nsp)}), flush=True)
        if not got.wait(timeout):
            print(json.dumps({"error": f"no {event} within {timeout} s"}), flush=True)
            return 1
        print(json.dumps({"event": plain(received[0])}), flush=True)
        return 0
    finally:
        sio.disconnect()


if __name__ == "__main__":
    sys.exit(main())
