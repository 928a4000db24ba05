"""Socket.IO packet encode/decode: python-engineio / python-socketio's ``Packet`` classes against the
generated project's own ``socketio/packets.py`` (issue 24 asks for the library where it fits).

    python bench/socketio_packets.py PROJECT_DIR     # a project rendered with client_protocol: socketio

Prints microseconds per call (``timeit``, best of 3) for one request EVENT decoded and one
``message`` event encoded, the two packets on every request and every broadcast.
"""

from __future__ import annotations

import importlib
import sys
import timeit
from pathlib import Path
from typing import Any

import orjson
from engineio import packet as engine_packet  # type: ignore[import-untyped]
from socketio import packet as socket_packet  # type: ignore[import-untyped]

FRAME = '4217["publish",{"channel":"room:lobby","payload":{"text":"hello there","n":12}}]'
EVENT = {"channel": "room:lobby", "payload": {"text": "hello there", "n": 12}, "ts": 1796658128299, "seq": 42}
CALLS = 200_000


class OrjsonModule:
    """The ``json`` shape the libraries accept in place of the stdlib module."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


def per_call_us(work: Any) -> float:
    return min(timeit.repeat(work, number=CALLS, repeat=3)) / CALLS * 1e6


def main() -> None:
    project = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(project / "src"))
    package = next(
        p.name for p in sorted((project / "src").iterdir()) if (p / "socketio" / "packets.py").exists()
    )
    own = importlib.import_module(f"{package}.socketio.packets")

    def library_decode() -> Any:
        return socket_packet.Packet(encoded_packet=engine_packet.Packet(encoded_packet=FRAME).data)

    def library_encode() -> Any:
        inner = socket_packet.Packet(socket_packet.EVENT, data=["message", EVENT]).encode()
        return engine_packet.Packet(engine_packet.MESSAGE, data=inner).encode()

    rows = {
        "library decode (stdlib json)": per_call_us(library_decode),
        "library encode (stdlib json)": per_call_us(library_encode),
        "own decode_socket": per_call_us(lambda: own.decode_socket(FRAME[1:])),
        "own encode_event": per_call_us(lambda: own.encode_event("message", EVENT)),
    }
    socket_packet.Packet.json = engine_packet.Packet.json = OrjsonModule
    rows["library decode (orjson)"] = per_call_us(library_decode)
    rows["library encode (orjson)"] = per_call_us(library_encode)
    for name, micros in rows.items():
        print(f"{name}: {micros:.2f} us")


if __name__ == "__main__":
    main()
