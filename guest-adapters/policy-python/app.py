"""A wasio access policy in Python (wit/policy/policy.wit, world `access-policy`).

The host asks it before a client connects, joins rooms or publishes; each answer is
allow or deny with a reason the client is told. An exception that escapes here is a
denial too (the host starts a fresh instance), so inputs are checked, not trusted.

The rules come from `[auth] policy_options`, every key optional:
{"require": "user", "deny_rooms": ["secret*", "ops"], "deny_events": ["forbidden"]}.
Edit `authorize_connect`, `authorize_join` and `authorize_publish` to make it yours.

Build: `bash build.sh OUT.wasm` (componentize-py).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.policy import Decision_Allow, Decision_Deny, PolicyInfo
from wit_world.imports import log

NAME = "wasio-policy-python"
VERSION = "0.1.0"
# json's C decoder recurses on the guest's small stack: text nested very deep would
# trap the instance, so an auth with this many brackets counts as unparsable.
MAX_BRACKETS = 256


class Rules:
    """The options `init` was given (module-level: the host may make a new `Policy` per call)."""

    require = None  # a key the handshake's `auth` must hold as a non-empty string
    deny_rooms = []  # rooms no one may join or publish to: `name` exactly, or `prefix*`
    deny_events = []  # events no one may publish


R = Rules()


def well_formed(s):
    """Whether `s` can go back to the host: a lone surrogate cannot be lowered (a trap)."""
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def string_option(options, key):
    """`options[key]` as a string; absent or null is None, another type an error."""
    value = options.get(key)
    if value is not None and not (isinstance(value, str) and well_formed(value)):
        raise Err(f"options.{key} must be a string")
    return value


def list_option(options, key):
    """`options[key]` as a list of strings; absent or null is empty, another type an error."""
    value = options.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and well_formed(v) for v in value):
        raise Err(f"options.{key} must be a list of strings")
    return value


def parse_object(text):
    """`text` as a JSON object, or {} when it is not one (never raises)."""
    if text.count("[") + text.count("{") > MAX_BRACKETS:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def reserved(rooms):
    """The first of `rooms` a `deny_rooms` entry matches (`prefix*`, else exact), or None."""
    for room in rooms:
        for p in R.deny_rooms:
            if room.startswith(p[:-1]) if p.endswith("*") else room == p:
                return room
    return None


class Policy(exports.Policy):
    def init(self, options):
        try:
            options = json.loads(options)
        except ValueError as e:
            raise Err(f"options: not JSON: {e}")
        if not isinstance(options, dict):
            raise Err("options: not a JSON object")
        # Unknown keys are ignored; a known key of the wrong type is refused.
        R.require = string_option(options, "require")
        R.deny_rooms = list_option(options, "deny_rooms")
        R.deny_events = list_option(options, "deny_events")
        log.log(
            log.Level.INFO,
            f"require auth.{R.require or '(nothing)'}, {len(R.deny_rooms)} reserved room patterns, "
            f"{len(R.deny_events)} denied events",
        )
        return PolicyInfo(NAME, VERSION)

    def authorize_connect(self, request):
        if R.require is None:
            return Decision_Allow()
        # Unparsable or not an object: the key is missing, not a trap.
        value = parse_object(request.auth).get(R.require)
        if isinstance(value, str) and value:
            return Decision_Allow()
        return Decision_Deny(f"auth.{R.require} is missing")

    def authorize_join(self, socket, rooms):
        room = reserved(rooms)
        return Decision_Deny(f"room {room} is reserved") if room is not None else Decision_Allow()

    def authorize_publish(self, socket, rooms, event, size):
        if event in R.deny_events:
            return Decision_Deny(f"event {event} is not allowed")
        # None is the whole namespace: no room to check.
        room = reserved(rooms or [])
        return Decision_Deny(f"room {room} is reserved") if room is not None else Decision_Allow()
