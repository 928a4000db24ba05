"""How a protobuf envelope should carry schemaless payloads (issue 25): ``google.protobuf.Struct``
against one JSON document or one MessagePack document in a ``bytes`` field.

    python bench/protobuf_payload.py            # prints a Markdown table (sizes, µs per encode/decode)

For the chat and IoT example payloads of ``codec_bench.py``: the payload's bytes in each form, and
the CPU time to go from the Python dict to bytes and back (the server decodes every publish to
check it and encodes it once per codec for fan-out). Best of 5 rounds of ``timeit``; also whether
a 64-bit integer survives the trip.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import orjson
from codec_bench import EXAMPLES
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

BIG = 2**53 + 1


def struct_encode(payload: dict[str, Any]) -> bytes:
    message = Struct()
    message.update(payload)
    return message.SerializeToString()


def struct_decode(data: bytes) -> dict[str, Any]:
    return json_format.MessageToDict(Struct.FromString(data))


FORMS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
    "Struct": (struct_encode, struct_decode),
    "JSON bytes (orjson)": (orjson.dumps, orjson.loads),
    "MessagePack bytes": (
        lambda p: msgpack.packb(p, use_bin_type=True),
        lambda b: msgpack.unpackb(b, raw=False),
    ),
}


def best_us(fn: Any, arg: Any, number: int = 20_000) -> float:
    return min(timeit.repeat(lambda: fn(arg), number=number, repeat=5)) / number * 1e6


def main() -> int:
    print("| example | form | bytes | encode µs | decode µs | 2**53+1 exact |")
    print("|---|---|---|---|---|---|")
    for name, (_, _, payload) in EXAMPLES.items():
        for form, (encode, decode) in FORMS.items():
            data = encode(payload)
            exact = decode(encode({"n": BIG}))["n"] == BIG
            print(
                f"| {name} | {form} | {len(data)} | {best_us(encode, payload):.2f} | {best_us(decode, data):.2f} | {'yes' if exact else 'no'} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
