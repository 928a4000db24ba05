"""Fan-out to Socket.IO subscribers that upgraded from long-polling vs ones that connected on WebSocket.

    python bench/socketio_upgrade.py PROJECT_DIR [--subscribers 100] [--messages 1000] [--rate 500]

PROJECT_DIR is a project rendered with ``client_protocol: socketio`` (e.g. the market-feed case).
The server runs in a child process (``WS_TRANSPORT`` from the environment, picows by default;
memory broker, auth off) and publishes ``--messages`` events to one ``feed:`` channel at
``--rate`` per second through its in-process :class:`Publisher`; the subscribers are python-socketio
``AsyncClient``s in this process, first all on ``transports=["polling", "websocket"]`` (socket.io-client's
default: a polling handshake, then the upgrade), then all on ``["websocket"]``. Printed per mode:
the server's CPU seconds during the publishing (``/proc/<pid>/stat`` utime+stime), CPU microseconds
per delivered message, whether every subscriber got every message, and the server's dropped-message
count so far (``feed:`` namespaces coalesce: a subscriber that falls behind loses older messages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import socketio  # type: ignore[import-untyped]

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


SERVER = """
import asyncio, importlib, sys
sys.path.insert(0, sys.argv[1] + "/src")
package = sys.argv[2]
settings_mod = importlib.import_module(package + ".settings")
server_mod = importlib.import_module(package + ".server")
publisher_mod = importlib.import_module(package + ".publisher")

async def main() -> None:
    settings = settings_mod.Settings.from_env()
    server = server_mod.Server(settings)
    await server.start()
    print(server.port, flush=True)
    publisher = publisher_mod.Publisher(settings, broker=server.broker)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        channel, count, rate = line.decode().split()
        gap = 1 / float(rate)
        start = loop.time()
        for n in range(int(count)):
            await publisher.publish(channel, {"n": n})
            delay = start + (n + 1) * gap - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.5)  # the last writes
        print("done", sum(server.metrics.dropped.values()), flush=True)
    await server.stop()

asyncio.run(main())
"""


async def run_mode(
    port: int, proc: asyncio.subprocess.Process, transports: list[str], args: argparse.Namespace, channel: str
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}"
    clients: list[socketio.AsyncClient] = []
    counts = [0] * args.subscribers
    in_order = [True] * args.subscribers
    everyone = asyncio.Event()
    expected = args.messages

    def handler(i: int) -> Any:
        def on_message(first: Any, *_: Any) -> None:
            if first["payload"]["n"] != counts[i]:
                in_order[i] = False
            counts[i] += 1
            if counts[i] == expected and all(c >= expected for c in counts):
                everyone.set()

        return on_message

    for i in range(args.subscribers):
        client = socketio.AsyncClient(reconnection=False)
        client.on("message", handler(i))
        await client.connect(url, transports=transports, wait_timeout=30)
        clients.append(client)
    await asyncio.sleep(1.0)  # every upgrade done (python-socketio upgrades right after connecting)
    modes = {c.transport() for c in clients}
    for client in clients:
        await client.call("subscribe", {"channel": channel}, timeout=30)
    assert proc.stdin is not None and proc.stdout is not None
    before, started = cpu_seconds(proc.pid), time.perf_counter()
    proc.stdin.write(f"{channel} {args.messages} {args.rate}\n".encode())
    await proc.stdin.drain()
    done, dropped_total = (await proc.stdout.readline()).split()
    assert done == b"done"
    with contextlib.suppress(TimeoutError):  # counted below as what did not arrive
        await asyncio.wait_for(everyone.wait(), 60)
    cpu, wall = cpu_seconds(proc.pid) - before, time.perf_counter() - started
    for client in clients:
        await client.disconnect()
    delivered = sum(counts)
    return {
        "transports": ",".join(transports),
        "final transport": ",".join(sorted(modes)),
        "server cpu s": round(cpu, 2),
        "wall s": round(wall, 2),
        "cpu us/delivery": round(cpu / max(delivered, 1) * 1e6, 2),
        "delivered": f"{delivered}/{args.subscribers * args.messages}",
        "in order": all(in_order),
        "server drops so far": int(dropped_total),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project", type=Path)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    project = args.project.resolve()
    package = next(p.name for p in (project / "src").iterdir() if (p / "server.py").exists())
    env = dict(os.environ)
    env.setdefault("WS_TRANSPORT", "picows")
    env.update(
        WS_HOST="127.0.0.1",
        WS_PORT="0",
        WS_WORKERS="1",
        WS_BROKER_URL="memory://",
        WS_AUTH_MODE="none",
        WS_ALLOW_MISSING_ORIGIN="true",
        WS_MAX_CONNECTIONS_PER_IP="100000",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(project), package,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    port = int((await proc.stdout.readline()).strip())
    print(f"server pid {proc.pid} port {port} transport {env['WS_TRANSPORT']}")
    try:
        for repeat in range(args.repeats):
            for transports in (["polling", "websocket"], ["websocket"]):
                result = await run_mode(port, proc, transports, args, f"feed:bench{repeat}{len(transports)}")
                print(result, flush=True)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()


if __name__ == "__main__":
    asyncio.run(main())
