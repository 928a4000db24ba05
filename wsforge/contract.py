"""The wire contract deployed clients depend on, as data memory can keep and compare.

Step 5 stores :func:`message_contract` (envelope, codecs, subprotocols, which messages each channel
namespace carries and every message's payload shape, read from the rendered ``asyncapi.yaml``)
and :func:`versioning_strategy` in memory. The next run compares its own contract with the stored
one (:func:`breaking_changes`): step 3 names what a memory or answer change would break, and the
review rule ``WSF-MEM-002`` flags it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .spec import ArchitectureSpec

__all__ = ["breaking_changes", "message_contract", "versioning_strategy"]

_CLIENT_SENDS = ("Request",)
"""Message names ending so are sent by clients; the rest (responses, events, errors) by the server."""


def message_contract(spec: ArchitectureSpec, asyncapi_text: str | None = None) -> dict[str, Any]:
    """What a deployed client relies on. ``messages`` only when the AsyncAPI document is given."""
    contract: dict[str, Any] = {
        "protocol_version": spec.protocol.version,
        "subprotocols": list(spec.protocol.subprotocols),
        "codecs": [codec.value for codec in spec.protocol.codecs],
        "envelope": spec.envelope.model_dump(mode="json"),
        "namespaces": {
            ns.name: {
                "client_publish": ns.client_publish,
                "presence": ns.presence,
                "history": ns.history_size > 0,
            }
            for ns in spec.channels.namespaces
        },
        "channel_separator": spec.channels.separator,
    }
    if asyncapi_text is not None:
        document = yaml.safe_load(asyncapi_text) or {}
        messages = (document.get("components") or {}).get("messages") or {}
        contract["messages"] = {
            name: _shape(message.get("payload") or {}) for name, message in sorted(messages.items())
        }
    return contract


def _shape(schema: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{dotted field: type}``; a required field's type ends with ``!``."""
    out: dict[str, str] = {}
    required = set(schema.get("required") or ())
    for name, prop in (schema.get("properties") or {}).items():
        key = f"{prefix}{name}"
        mark = "!" if name in required else ""
        if not isinstance(prop, Mapping):
            out[key] = "any" + mark
        elif "$ref" in prop:
            out[key] = str(prop["$ref"]).rsplit("/", 1)[-1] + mark
        elif "const" in prop:
            out[key] = f"const {prop['const']}" + mark
        elif prop.get("type") == "object" and prop.get("properties"):
            out[key] = "object" + mark
            out.update(_shape(prop, key + "."))
        else:
            kind = prop.get("type") or ("oneOf" if "oneOf" in prop else "any")
            out[key] = (" | ".join(kind) if isinstance(kind, list) else str(kind)) + mark
    return out


def versioning_strategy(spec: ArchitectureSpec) -> dict[str, Any]:
    """How the protocol evolves, as the generated server implements it."""
    version = spec.protocol.version
    return {
        "protocol_version": version,
        "negotiation": f"subprotocol wsforge.v{version}.<codec> ({', '.join(spec.protocol.subprotocols)})",
        "unknown_fields": "ignored by server and clients, so adding an optional field is compatible",
        "unknown_version": "answered with an unsupported_version error, never a crash",
        "breaking_change_policy": (
            f"renaming or removing a field, codec, namespace or message breaks deployed v{version} "
            f"clients: ship it as v{version + 1} (a new subprotocol) served next to v{version} "
            "until the old clients are gone"
        ),
    }


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(spec key, what breaks)`` for every change from ``old`` that a deployed client would notice.

    Adding things (a codec, a namespace, an optional request field, a response field) is
    compatible; removing or renaming them, a new required request field or a type change is not.
    Message shapes are compared only when both contracts have them.
    """
    found: list[tuple[str, str]] = []
    if not old:
        return found
    old_v, new_v = old.get("protocol_version"), new.get("protocol_version")
    if old_v is not None and old_v != new_v:
        found.append(
            ("protocol.version", f"protocol version {old_v} -> {new_v}: v{old_v} clients are refused")
        )
    for sub in old.get("subprotocols") or []:
        if sub not in (new.get("subprotocols") or []):
            found.append(
                ("protocol.subprotocols", f"subprotocol {sub} removed: clients offering only it fail")
            )
    for codec in old.get("codecs") or []:
        if codec not in (new.get("codecs") or []):
            found.append(("protocol.codecs", f"codec {codec} removed"))
    old_env, new_env = old.get("envelope") or {}, new.get("envelope") or {}
    for field, wire in old_env.items():
        if field in new_env and new_env[field] != wire:
            found.append(
                (
                    "envelope." + field,
                    f"envelope field {field} renamed on the wire: {wire} -> {new_env[field]}",
                )
            )
    if old.get("channel_separator") and old.get("channel_separator") != new.get("channel_separator"):
        found.append(
            (
                "channels.separator",
                f"channel separator {old['channel_separator']!r} -> {new.get('channel_separator')!r}",
            )
        )
    old_ns, new_ns = old.get("namespaces") or {}, new.get("namespaces") or {}
    for name, caps in old_ns.items():
        if name not in new_ns:
            found.append(("channels.namespaces", f"namespace {name} removed"))
            continue
        for cap, enabled in caps.items():
            if enabled and not new_ns[name].get(cap, False):
                found.append(("channels.namespaces", f"namespace {name}: {cap} no longer allowed"))
    old_msgs, new_msgs = old.get("messages"), new.get("messages")
    if old_msgs and new_msgs is not None:
        found.extend(("protocol", text) for text in _message_changes(old_msgs, new_msgs))
    return found


def _message_changes(old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]) -> list[str]:
    changes: list[str] = []
    for name, fields in old.items():
        if name not in new:
            changes.append(f"message {name} removed")
            continue
        now = new[name]
        client_sends = name.endswith(_CLIENT_SENDS)
        for field, kind in fields.items():
            if field not in now:
                if not client_sends:
                    changes.append(f"{name}.{field} no longer sent")
                continue
            if kind.rstrip("!") != now[field].rstrip("!"):
                changes.append(f"{name}.{field} type {kind.rstrip('!')} -> {now[field].rstrip('!')}")
            elif client_sends and now[field].endswith("!") and not kind.endswith("!"):
                changes.append(f"{name}.{field} now required")
            elif not client_sends and kind.endswith("!") and not now[field].endswith("!"):
                changes.append(f"{name}.{field} no longer always sent")
        if client_sends:
            changes.extend(
                f"{name}.{field} added as required"
                for field, kind in now.items()
                if field not in fields and kind.endswith("!")
            )
    return changes
