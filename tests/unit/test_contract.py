"""What counts as a change that breaks deployed clients (wsforge.contract)."""

from __future__ import annotations

from typing import Any

from wsforge.contract import breaking_changes

BASE: dict[str, Any] = {
    "protocol_version": 1,
    "subprotocols": ["wsforge.v1.json"],
    "codecs": ["json"],
    "envelope": {"type": "type", "payload": "payload"},
    "namespaces": {"room": {"client_publish": True, "presence": True, "history": True}},
    "channel_separator": ":",
    "messages": {
        "PublishRequest": {"action": "const publish!", "payload": "object!", "payload.text": "string!"},
        "PublishResponse": {"seq": "integer!", "ts": "number"},
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_same_contract_breaks_nothing() -> None:
    """Equal contracts, or no recorded contract at all (greenfield), give no changes."""
    assert breaking_changes(BASE, BASE) == []
    assert breaking_changes({}, BASE) == []


def test_additions_are_compatible() -> None:
    """A new codec, namespace, optional request field or response field breaks no one."""
    messages = {
        "PublishRequest": {**BASE["messages"]["PublishRequest"], "payload.mentions": "array"},
        "PublishResponse": {**BASE["messages"]["PublishResponse"], "duplicate": "boolean"},
        "HistoryRequest": {"action": "const history!"},
    }
    new = _with(
        codecs=["json", "msgpack"],
        subprotocols=["wsforge.v1.json", "wsforge.v1.msgpack"],
        namespaces={
            **BASE["namespaces"],
            "dm": {"client_publish": True, "presence": False, "history": False},
        },
        messages=messages,
    )
    assert breaking_changes(BASE, new) == []


def test_removals_renames_and_new_requirements_break() -> None:
    """Each kind of breaking change is named with the spec key it concerns."""
    messages = {
        "PublishRequest": {**BASE["messages"]["PublishRequest"], "payload.nonce": "string!"},
        "PublishResponse": {"seq": "string!"},
    }
    new = _with(
        codecs=["msgpack"],
        subprotocols=["wsforge.v1.msgpack"],
        envelope={"type": "t", "payload": "payload"},
        namespaces={"room": {"client_publish": False, "presence": True, "history": True}},
        messages=messages,
    )
    assert breaking_changes(BASE, new) == [
        ("protocol.subprotocols", "subprotocol wsforge.v1.json removed: clients offering only it fail"),
        ("protocol.codecs", "codec json removed"),
        ("envelope.type", "envelope field type renamed on the wire: type -> t"),
        ("channels.namespaces", "namespace room: client_publish no longer allowed"),
        ("protocol", "PublishRequest.payload.nonce added as required"),
        ("protocol", "PublishResponse.seq type integer -> string"),
        ("protocol", "PublishResponse.ts no longer sent"),
    ]


def test_message_shapes_are_compared_only_when_both_sides_have_them() -> None:
    """Step 3 compares the spec-level contract (no rendered AsyncAPI yet): no false 'removed' claims."""
    spec_only = {key: value for key, value in BASE.items() if key != "messages"}
    assert breaking_changes(BASE, spec_only) == []
