"""Protocol Buffers beside JSON and MessagePack (issue 25): bytes per message and server CPU per
delivery, for the chat and IoT examples.

    python bench/codec_bench.py                  # render both examples, measure, print a Markdown table
    python bench/codec_bench.py --quick          # smaller sizes, one repeat: checks that it runs

Each example is rendered from this checkout so that it offers all three codecs (chat with memory
convention ``serialization: protobuf``; iot-telemetry picks protobuf by step 2's table, rendered
without memory so it stays on Redis Streams, run here on the in-process broker). One server serves
every codec, so the codecs are compared on the same code path:

- bytes: the frames the project's own ``protocol`` module builds for the example payload (a
  ``message`` event as every subscriber receives it, the publish request, its ack);
- server CPU per delivery: the server's CPU time (its main thread, ``/proc/<pid>/schedstat``) from the
  first publish until every subscriber holds every message, divided by the deliveries. ``S``
  subscribers of one channel on the codec under test, one publisher on the same codec sending ``M``
  messages with at most ``W`` unacknowledged. The loaded side runs in this process (another core
  when there is one); repeats alternate the codec order and the median is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "codec"
SECRET = "bench-secret-bench-secret-bench-secret-0123"  # noqa: S105 - a throwaway key for loopback servers
CODECS = ("json", "msgpack", "protobuf")
EXAMPLES = {
    # name: (answers file, memory conventions, example payload)
    "chat": (
        "chat.yaml",
        {"serialization": "protobuf"},
        {"text": "Deploy is green, merging the release branch in five minutes", "reply_to": 1812},
    ),
    "iot": (
        "iot-telemetry.yaml",
        {},
        {
            "device": "sensor-004217",
            "temp_c": 21.5,
            "rh": 48,
            "battery": 0.87,
            "fw": "2.4.1",
            "at": 1733580000123,
        },
    ),
}


def render(name: str) -> Path:
    """The example rendered once into bench/.work/codec/<name> (kept between runs)."""
    answers, conventions, _ = EXAMPLES[name]
    target = WORK / name
    if (target / "pyproject.toml").exists():
        return target
    WORK.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((REPO / "examples" / answers).read_text())
    if conventions:
        memory = WORK / "memory" / "websocket-engineer" / f"{data['project_name']}.yaml"
        memory.parent.mkdir(parents=True, exist_ok=True)
        memory.write_text(
            yaml.safe_dump(
                {"project": data["project_name"], "skill": "websocket-engineer", "conventions": conventions}
            )
        )
    wsforge = Path(sys.executable).parent / "wsforge"
    subprocess.run(
        [
            str(wsforge),
            "new",
            "--answers",
            str(REPO / "examples" / answers),
            "--non-interactive",
            "--output",
            str(target),
        ],
        cwd=WORK,
        check=True,
        capture_output=True,
    )
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of the server's main thread so far, with nanosecond precision (``/proc/<pid>/schedstat``;
    ``/proc/<pid>/stat`` counts 10 ms ticks). The event loop runs every delivery on that thread."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


# --- run inside one project's environment (``--measure``) ------------------------------------------


def sizes(package: str, payload: Any) -> dict[str, dict[str, int]]:
    protocol = __import__(f"{package}.protocol", fromlist=["protocol"])
    frames = {
        "message event": protocol.event(
            "message", "room:general", payload, seq=48213, ts=1733580000123, sender="user-1842"
        ),
        "publish request": {
            "v": 1,
            "type": "request",
            "id": "17",
            "action": "publish",
            "channel": "room:general",
            "payload": payload,
            "msg_id": "c0a8-17",
        },
        "publish ack": protocol.response(
            "17", "publish", {"seq": 48213}, 1733580000123, channel="room:general"
        ),
    }
    return {
        kind: {codec: len(protocol.encode(protocol.Codec(codec), frame)) for codec in CODECS}
        for kind, frame in frames.items()
    }


async def one_pass(
    package: str,
    url: str,
    channel: str,
    codec: str,
    subs: int,
    messages: int,
    window: int,
    pid: int,
    payload: Any,
) -> float:
    """Server CPU seconds for ``messages`` publishes delivered to ``subs`` subscribers."""
    import jwt
    from websockets.asyncio.client import connect

    protocol = __import__(f"{package}.protocol", fromlist=["protocol"])
    chosen = protocol.Codec(codec)

    def token(user: str) -> str:
        return jwt.encode({"sub": user, "exp": time.time() + 3600}, SECRET, algorithm="HS256")

    async def open_one(user: str) -> Any:
        return await connect(
            url,
            subprotocols=[chosen.subprotocol],
            additional_headers={"Authorization": f"Bearer {token(user)}"},
            max_size=None,
            compression=None,
        )

    async def request(ws: Any, rid: str, action: str, body: Any = None) -> None:
        frame = {"v": 1, "type": "request", "id": rid, "action": action, "channel": channel}
        if body is not None:
            frame["payload"] = body
        await ws.send(protocol.encode(chosen, frame), text=chosen.is_text)

    sockets = [await open_one(f"sub-{i}") for i in range(subs)]
    publisher = await open_one("publisher")
    for i, ws in enumerate(sockets):
        await request(ws, f"s{i}", "subscribe")
        await ws.recv()  # the subscribe response
    done = [0]
    finished = asyncio.Event()

    marker = max(payload, key=len).encode()  # in the payload's bytes in every codec; not in presence events

    async def drain(ws: Any) -> None:
        got = 0
        while got < messages:
            frame = await ws.recv()
            got += (marker in frame) if isinstance(frame, bytes) else (marker.decode() in frame)
        done[0] += 1
        if done[0] == subs:
            finished.set()

    readers = [asyncio.create_task(drain(ws)) for ws in sockets]
    before = cpu_seconds(pid)
    in_flight = asyncio.Semaphore(window)

    async def acks() -> None:
        for _ in range(messages):
            await publisher.recv()
            in_flight.release()

    ack_reader = asyncio.create_task(acks())
    for n in range(messages):
        await in_flight.acquire()
        await request(publisher, f"p{n}", "publish", payload)
    try:
        async with asyncio.timeout(120):
            await finished.wait()
            await ack_reader
    except TimeoutError:
        raise RuntimeError(
            f"{codec}: {done[0]} of {subs} subscribers got all {messages} messages in 120 s"
        ) from None
    spent = cpu_seconds(pid) - before
    for task in readers:
        task.cancel()
    for ws in [*sockets, publisher]:
        await ws.close()
    return spent


def measure(project: Path, name: str, subs: int, messages: int, window: int, repeats: int) -> dict[str, Any]:
    spec = yaml.safe_load((project / "wsforge.yaml").read_text())
    package = spec["package"]
    sys.path.insert(0, str(project / "src"))
    payload = EXAMPLES[name][2]
    settings_mod = __import__(f"{package}.settings", fromlist=["settings"])
    namespace = next(
        ns for ns in settings_mod.Settings().namespaces if ns.client_publish and ns.auth.value != "private"
    )
    channel = f"{namespace.name}{settings_mod.Settings().channel_separator}bench"
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "WS_HOST": "127.0.0.1",
        "WS_PORT": str(port),
        "WS_BROKER_URL": "memory://",
        "WS_JWT_ALGORITHMS": "HS256",
        spec["auth"]["secret_env"]: SECRET,
        "WS_RATE_PER_S": "1000000",
        "WS_RATE_BURST": "1000000",
        "WS_MAX_CONNECTIONS_PER_IP": "100000",
        "WS_MAX_HANDSHAKES_PER_IP": "100000",
        # Nothing dropped or closed for being slow: every message reaches every subscriber, so the
        # pass measures delivery, not the backpressure policy.
        "WS_OUTBOUND_QUEUE_SIZE": "1000000",
        "WS_MAX_BUFFERED_BYTES": str(1 << 30),
        "WS_LOG_LEVEL": "WARNING",
        "WS_WORKERS": "1",
    }
    server = subprocess.Popen([sys.executable, "-m", package], env=env, cwd=project, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(
                        f"server did not start: {server.stderr.read().decode()[-2000:] if server.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        url = f"ws://127.0.0.1:{port}{spec['protocol']['path']}"
        cpu: dict[str, list[float]] = {codec: [] for codec in CODECS}
        for r in range(repeats):
            order = CODECS if r % 2 == 0 else tuple(reversed(CODECS))
            for codec in order:
                spent = asyncio.run(
                    one_pass(package, url, channel, codec, subs, messages, window, server.pid, payload)
                )
                cpu[codec].append(spent)
                print(f"{name} {codec}: {spent:.3f} s", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    deliveries = subs * messages
    return {
        "example": name,
        "package": package,
        "transport": spec["transport"],
        "payload_json_bytes": len(json.dumps(payload, separators=(",", ":"))),
        "bytes": sizes(package, payload),
        "cpu_us_per_delivery": {c: 1e6 * statistics.median(v) / deliveries for c, v in cpu.items()},
        "runs": {c: [round(x, 3) for x in v] for c, v in cpu.items()},
        "subscribers": subs,
        "messages": messages,
        "window": window,
        "repeats": repeats,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| example | measure | json | msgpack | protobuf |", "|---|---|---|---|---|"]
    for res in results:
        for kind, by_codec in res["bytes"].items():
            lines.append(
                f"| {res['example']} | bytes, {kind} | " + " | ".join(str(by_codec[c]) for c in CODECS) + " |"
            )
        cpu = res["cpu_us_per_delivery"]
        lines.append(
            f"| {res['example']} | server CPU µs per delivery | "
            + " | ".join(f"{cpu[c]:.2f}" for c in CODECS)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--subscribers", type=int, default=None)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--window", type=int, default=32, help="publishes in flight")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--measure", nargs=2, metavar=("PROJECT", "EXAMPLE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    subs = args.subscribers or (20 if args.quick else 100)
    messages = args.messages or (100 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.measure:
        project, name = args.measure
        print(json.dumps(measure(Path(project), name, subs, messages, args.window, repeats)))
        return 0
    results = []
    for name in EXAMPLES:
        project = render(name)
        command = [
            sys.executable,
            __file__,
            "--measure",
            str(project),
            name,
            "--subscribers",
            str(subs),
            "--messages",
            str(messages),
            "--window",
            str(args.window),
            "--repeats",
            str(repeats),
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(table(results))
    print()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
