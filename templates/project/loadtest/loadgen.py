"""Load generator for this project's server: many concurrent clients, latency percentiles, progress.

    python loadtest/loadgen.py --connections 1000 --publishers 10 --rate 20 --duration 30

It reads the project's own settings (``src/<package>/settings.py`` with the ``WS_*`` environment,
as the server does): the URL, the auth mode and token sources, the per-IP connection cap, the
per-connection rate limit and the namespaces. Without ``--channel`` it load-tests a channel of the
first namespace whose clients may publish; when no namespace lets clients publish, the generator
publishes as the application's backend would: through the server API (``--api-url``, with a key
from ``--api-key`` or ``WS_API_KEYS``; the default when the server's broker is in-process), or
through the server's broker (``--broker-url``, which must be shared: Redis or NATS). Against a loopback server it spreads the connections over 127.0.0.x source addresses so
that the per-IP cap is not hit (elsewhere, raise ``WS_MAX_CONNECTIONS_PER_IP`` for the test), and
it adds publishers until each stays under the per-connection rate limit.

Opens ``--connections`` WebSockets (``--ramp`` per second, a JWT per connection when auth is on),
subscribes each to the channel, then ``--publishers`` publish ``--rate`` messages per second in
total for ``--duration`` seconds. It reports, live on stderr and at the end:

* publish -> delivery latency (every subscriber's copy is a sample; the payload carries the send
  time on this machine's monotonic clock, so run the generator on one host),
* publish -> ack round trips,
* connection errors, closes and lost deliveries (expected minus received after a drain).

It speaks wire protocol v1 with the ``websockets`` client the project already depends on. One
Python process tops out around 10^4-10^5 deliveries/s; run several (``--id-offset`` keeps user
ids apart) or bench/ of the wsforge repository for more. Exit status: 0, or 1 when connections
failed or deliveries were lost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import json
import math
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol


@dataclass
class Stats:
    """Counters and latency samples (nanoseconds) shared by every client task."""

    opened: int = 0
    failed: int = 0
    closed: int = 0
    published: int = 0
    acked: int = 0
    errors: int = 0
    delivered: int = 0
    delivery_ns: list[int] = field(default_factory=list)
    ack_ns: list[int] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    """``action: code`` of the error answers."""

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1


def percentiles(samples: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds (nearest rank)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(pct: float) -> float:
        return ordered[min(last, round(pct / 100 * last))] / 1e6

    return {"p50": at(50), "p90": at(90), "p99": at(99), "p99.9": at(99.9), "max": ordered[-1] / 1e6}


def make_token(secret: str, user: str, ttl_s: int, **claims: Any) -> str:
    import jwt

    body = {"sub": user, "exp": int(time.time()) + ttl_s, **{k: v for k, v in claims.items() if v}}
    return jwt.encode(body, secret, algorithm="HS256")


class PlanError(Exception):
    """The test cannot run as asked; the message says what to change (one line, exit status 2)."""


def project_settings() -> Any:
    """This project's ``Settings.from_env()``: the package named in ``pyproject.toml``, imported
    from the environment (``pip install -e .``) or from ``src/`` of this checkout."""
    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"][0].rsplit("/", 1)[-1]
    if str(root / "src") not in sys.path:
        sys.path.append(str(root / "src"))
    return importlib.import_module(f"{package}.settings").Settings.from_env()


@dataclass
class Plan:
    """What the run does, from the arguments and the project's settings."""

    url: str
    channel: str
    namespace: Any
    """The channel's NamespacePolicy (its ``options`` when publishing through the broker)."""
    via_broker: str | None
    """Broker URL the generator publishes through, or None: clients publish (or the API does)."""
    via_api: str | None
    """Server API base URL the generator publishes through (``POST /api/publish``), or None."""
    api_key: str
    present_as: str | None
    """How a token is presented (header, query, subprotocol, cookie); None without auth."""
    cookie_name: str
    claims: dict[str, Any]
    per_address: int
    """Connections per source address (the per-IP cap); 0: one address."""
    publishers: int


def make_plan(args: argparse.Namespace, settings: Any) -> Plan:
    """Choose channel, publishing path, token source and source addresses (see the docstring).

    Raises:
        PlanError: auth is on and no secret or token was given; no namespace can be published to.
    """
    sep = settings.channel_separator
    namespaces = {ns.name: ns for ns in settings.namespaces}
    if args.channel:
        namespace = namespaces.get(args.channel.partition(sep)[0])
        if namespace is None:
            raise PlanError(f"--channel {args.channel}: no such namespace (have {', '.join(namespaces)})")
        channel = args.channel
    else:
        shared = [ns for ns in settings.namespaces if ns.auth.value != "private"]
        publishing = [ns for ns in shared if ns.client_publish]
        if not shared:
            raise PlanError("every namespace is private (one user per channel): pass --channel")
        namespace = (publishing or shared)[0]
        channel = f"{namespace.name}{sep}loadtest"
    via_broker = via_api = None
    api_keys = tuple(getattr(settings, "api_keys", ()))  # only projects with the server API have it
    api_key = args.api_key or (api_keys[0] if api_keys else "")
    if not namespace.client_publish:
        in_process = (args.broker_url or settings.broker_url).startswith("memory:")
        if args.api_url or (in_process and not args.broker_url and api_key):
            if not api_key:
                raise PlanError("--api-url needs a key: pass --api-key or set WS_API_KEYS (the server's key)")
            api_host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host  # noqa: S104
            via_api = (args.api_url or f"http://{api_host}:{settings.api_port}").rstrip("/")
        else:
            via_broker = args.broker_url or settings.broker_url
            if in_process:
                with_api = " or, with the server API on, set WS_API_KEYS to the server's key" if hasattr(settings, "api_keys") else ""
                raise PlanError(
                    f"clients may not publish to {namespace.name}{sep}*, so the generator publishes as the "
                    "backend would, and the server's broker is in-process (memory://): start the server with "
                    "WS_BROKER_URL=redis://127.0.0.1:6379/0 and pass --broker-url redis://127.0.0.1:6379/0"
                    + with_api
                )
    present_as = None
    if settings.auth_mode != "none":
        if not (args.token or args.jwt_secret):
            raise PlanError("the server requires a JWT: pass --jwt-secret (or set WS_JWT_SECRET) or --token")
        order = ("header", "query", "subprotocol", "cookie")
        sources = list(settings.token_sources) + (["cookie"] if settings.auth_mode == "cookie" else [])
        present_as = next((s for s in order if s in sources), "query")
    host = urlsplit(args.url).hostname or ""
    per_address = 0
    cap = args.per_ip or settings.max_connections_per_ip
    if args.connections > cap:
        if host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
            per_address = cap
            if math.ceil(args.connections / cap) > 254:
                raise PlanError(f"{args.connections} connections need more than 254 source addresses at {cap} per IP")
        else:
            print(
                f"note: {args.connections} connections from one address, the server allows {cap} per IP: "
                "raise WS_MAX_CONNECTIONS_PER_IP on the server for the test",
                file=sys.stderr,
            )
    publishers = max(1, args.publishers)
    per_connection = settings.rate_per_s * 0.8  # headroom under the token bucket
    if not (via_broker or via_api) and args.rate / publishers > per_connection:
        publishers = min(args.connections, math.ceil(args.rate / per_connection))
        print(
            f"note: {args.publishers} publisher(s) at {args.rate:g}/s would exceed the server's "
            f"{settings.rate_per_s:g} messages/s per connection; using {publishers}",
            file=sys.stderr,
        )
    claims = {"aud": settings.jwt_audience, "iss": settings.jwt_issuer}
    return Plan(
        args.url, channel, namespace, via_broker, via_api, api_key, present_as, settings.cookie_name, claims,
        per_address, publishers,
    )  # fmt: skip


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"access_token": token})) if q)
    return urlunsplit(parts._replace(query=query))


class Client:
    """One simulated user: connects, subscribes, reads everything, optionally publishes."""

    def __init__(self, index: int, args: argparse.Namespace, stats: Stats, plan: Plan) -> None:
        self.index = index
        self.args = args
        self.stats = stats
        self.plan = plan
        self.ws: ClientConnection | None = None
        self.pending: dict[str, int] = {}
        self.subscribed = asyncio.Event()
        """Set when the subscribe was answered (:attr:`subscribe_ok` says whether it succeeded)."""
        self.subscribe_ok = False

    async def run(self, stop: asyncio.Event) -> None:
        args, stats, plan = self.args, self.stats, self.plan
        token = None
        if plan.present_as is None:
            pass
        elif args.token:
            token = args.token
        else:
            user = f"load-{args.id_offset + self.index}"
            token = make_token(args.jwt_secret, user, int(args.duration * 10 + 600), **plan.claims)
        url, headers, protocols = plan.url, {}, [Subprotocol("wsforge.v1.json")]
        if token is not None:
            if plan.present_as == "header":
                headers["Authorization"] = f"Bearer {token}"
            elif plan.present_as == "cookie":
                headers["Cookie"] = f"{plan.cookie_name}={token}"
            elif plan.present_as == "subprotocol":
                protocols.append(Subprotocol(f"wsforge.auth.{token}"))
            else:
                url = with_token(url, token)
        extra: dict[str, Any] = {}
        if plan.per_address:
            extra["local_addr"] = (f"127.0.0.{1 + self.index // plan.per_address}", 0)
        try:
            self.ws = await connect(
                url,
                additional_headers=headers,
                subprotocols=protocols,
                origin=Origin(args.origin) if args.origin else None,
                open_timeout=args.timeout,
                compression=None,
                max_queue=None,
                **extra,
            )
        except InvalidStatus as exc:
            stats.fail(f"HTTP {exc.response.status_code}")
            return
        except (OSError, TimeoutError) as exc:
            stats.fail(type(exc).__name__)
            return
        stats.opened += 1
        reader = asyncio.create_task(self.read())
        try:
            await self.request("subscribe", {})
            await asyncio.wait_for(self.subscribed.wait(), args.timeout)
            await stop.wait()
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            await asyncio.sleep(args.drain)  # deliveries still in flight when publishing stopped
            await self.ws.close()
            reader.cancel()

    async def request(self, action: str, payload: Any) -> None:
        assert self.ws is not None
        self.stats.published += action == "publish"
        rid = f"{action[0]}{self.index}-{len(self.pending)}-{time.monotonic_ns()}"
        self.pending[rid] = time.monotonic_ns()
        frame = {"v": 1, "type": "request", "action": action, "id": rid, "channel": self.plan.channel}
        if payload:
            frame["payload"] = payload
        await self.ws.send(orjson.dumps(frame).decode())

    async def read(self) -> None:
        assert self.ws is not None
        stats = self.stats
        try:
            async for raw in self.ws:
                now = time.monotonic_ns()
                msg = orjson.loads(raw)
                kind = msg.get("type")
                if kind == "event":
                    payload = msg.get("payload")
                    if isinstance(payload, dict) and "lt_ns" in payload:
                        stats.delivered += 1
                        stats.delivery_ns.append(now - payload["lt_ns"])
                elif kind in ("response", "error"):
                    sent = self.pending.pop(msg.get("id"), None)
                    if kind == "error":
                        stats.errors += 1
                        error = msg.get("error")
                        code = f"{msg.get('action')}: {error.get('code') if isinstance(error, dict) else error}"
                        stats.error_codes[code] = stats.error_codes.get(code, 0) + 1
                    elif sent is not None and msg.get("action") == "publish":
                        stats.acked += 1
                        stats.ack_ns.append(now - sent)
                    if msg.get("action") == "subscribe":
                        self.subscribe_ok = kind == "response"
                        self.subscribed.set()
        except ConnectionClosed:
            stats.closed += 1

    async def publish_loop(self, rate: float, stop: asyncio.Event) -> None:
        """Publish ``rate`` messages/s on a fixed schedule until ``stop``."""
        loop = asyncio.get_running_loop()
        interval, due = 1 / rate, loop.time()
        while not stop.is_set() and self.ws is not None:
            await self.request("publish", {"text": self.args.text, "lt_ns": time.monotonic_ns()})
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))


async def progress(stats: Stats, args: argparse.Namespace, started: float, stop: asyncio.Event) -> None:
    """One status line per second on stderr (a terminal gets it redrawn in place)."""
    tty = sys.stderr.isatty()
    while not stop.is_set():
        await asyncio.sleep(1)
        lat = percentiles(stats.delivery_ns[-50_000:])
        line = (
            f"{time.monotonic() - started:5.0f}s  conns {stats.opened}/{args.connections} "
            f"(failed {stats.failed}, closed {stats.closed})  published {stats.published}  "
            f"delivered {stats.delivered}  p50 {lat.get('p50', 0):.2f} ms  p99 {lat.get('p99', 0):.2f} ms"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)


async def broker_publish_loop(
    plan: Plan, args: argparse.Namespace, stats: Stats, rate: float, stop: asyncio.Event
) -> None:
    """The application's backend publishing through the broker (namespaces clients may not publish to)."""
    package = type(plan.namespace).__module__.rpartition(".")[0]
    broker = importlib.import_module(f"{package}.broker").create_broker(plan.via_broker, circuit_breaker=None)
    await broker.start(lambda message: None)
    try:
        loop = asyncio.get_running_loop()
        interval, due = 1 / rate, loop.time()
        while not stop.is_set():
            sent = time.monotonic_ns()
            try:
                await broker.publish(plan.channel, {"text": args.text, "lt_ns": sent}, plan.namespace.options)
            except Exception:  # the broker's own error type; counted, the run goes on
                stats.errors += 1
            else:
                stats.published += 1
                stats.acked += 1
                stats.ack_ns.append(time.monotonic_ns() - sent)
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))
    finally:
        await broker.aclose()


async def api_publish_loop(
    plan: Plan, args: argparse.Namespace, stats: Stats, rate: float, stop: asyncio.Event
) -> None:
    """The application's backend publishing through the server API (``POST /api/publish``), one
    keep-alive connection, paced like :func:`broker_publish_loop`; a non-200 answer is an error."""
    import aiohttp  # a dependency of projects with the server API only

    url, headers = f"{plan.via_api}/api/publish", {"X-API-Key": plan.api_key}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        loop = asyncio.get_running_loop()
        interval, due = 1 / rate, loop.time()
        while not stop.is_set():
            sent = time.monotonic_ns()
            body = {"channel": plan.channel, "data": {"text": args.text, "lt_ns": sent}}
            try:
                async with http.post(url, json=body, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, ValueError):
                stats.errors += 1
            else:
                if status == 200:
                    stats.published += 1
                    stats.acked += 1
                    stats.ack_ns.append(time.monotonic_ns() - sent)
                else:
                    stats.errors += 1
                    code = str(answer.get("error", {}).get("code", status)) if isinstance(answer, dict) else str(status)
                    stats.error_codes[code] = stats.error_codes.get(code, 0) + 1
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))


async def run(args: argparse.Namespace, settings: Any = None) -> dict[str, Any]:
    """One load test; ``settings`` defaults to the project's (:func:`project_settings`).

    Raises:
        PlanError: see :func:`make_plan`.
    """
    settings = settings if settings is not None else project_settings()
    if args.url is None:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104 - a bind address
        args.url = f"ws://{host}:{settings.port}{settings.path}"
    args.jwt_secret = args.jwt_secret or settings.jwt_key
    plan = make_plan(args, settings)
    stats = Stats()
    stop = asyncio.Event()
    started = time.monotonic()
    ticker = asyncio.create_task(progress(stats, args, started, stop))
    clients = [Client(i, args, stats, plan) for i in range(args.connections)]
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.create_task(client.run(stop)))
        if args.ramp and (i + 1) % max(1, int(args.ramp / 10)) == 0:
            await asyncio.sleep(0.1)
    waits = [asyncio.wait_for(c.subscribed.wait(), args.timeout) for c in clients]
    await asyncio.gather(*waits, return_exceptions=True)
    subscribed = sum(c.subscribe_ok for c in clients)
    load_started = time.monotonic()
    if plan.via_api:
        pub_tasks = [asyncio.create_task(api_publish_loop(plan, args, stats, args.rate, stop))]
    elif plan.via_broker:
        pub_tasks = [asyncio.create_task(broker_publish_loop(plan, args, stats, args.rate, stop))]
    else:
        publishers = [c for c in clients if c.subscribe_ok][: plan.publishers]
        rate = args.rate / max(1, len(publishers))
        pub_tasks = [asyncio.create_task(p.publish_loop(rate, stop)) for p in publishers]
    await asyncio.sleep(args.duration)
    stop.set()
    load_s = time.monotonic() - load_started
    await asyncio.gather(*pub_tasks, return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    await ticker
    expected = stats.published * subscribed
    return {
        "url": args.url,
        "channel": plan.channel,
        "published_by": "api" if plan.via_api else ("broker" if plan.via_broker else "clients"),
        "source_addresses": math.ceil(args.connections / plan.per_address) if plan.per_address else 1,
        "connections": {"requested": args.connections, "opened": stats.opened, "subscribed": subscribed,
                        "failed": stats.failed, "failures": stats.failures, "closed_early": stats.closed},
        "published": stats.published,
        "publish_rate": stats.published / load_s,
        "acked": stats.acked,
        "errors": stats.errors,
        "error_codes": stats.error_codes,
        "deliveries": {"expected": expected, "received": stats.delivered, "lost": max(0, expected - stats.delivered),
                       "rate": stats.delivered / load_s},
        "delivery_latency_ms": percentiles(stats.delivery_ns),
        "ack_latency_ms": percentiles(stats.ack_ns),
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="default: the project's WS_HOST / WS_PORT / WS_PATH")
    p.add_argument("--channel", default=None, help="default: <first namespace clients publish to>:loadtest")
    p.add_argument(
        "--broker-url", default=None, help="publish through this broker (default: the server's WS_BROKER_URL)"
    )
    p.add_argument(
        "--api-url", default=None, help="publish through this server API (default: WS_API_HOST/PORT when the broker is in-process)"
    )
    p.add_argument("--api-key", default="", help="server API key (default: the first of WS_API_KEYS)")
    p.add_argument("--per-ip", type=int, default=None, help="the server's per-IP cap (default: the project's)")
    p.add_argument("--connections", type=int, default=100)
    p.add_argument("--ramp", type=float, default=500, help="new connections per second (0: all at once)")
    p.add_argument("--publishers", type=int, default=1)
    p.add_argument("--rate", type=float, default=10, help="publishes per second, all publishers together")
    p.add_argument("--duration", type=float, default=10, help="seconds of publishing")
    p.add_argument("--drain", type=float, default=1, help="seconds to wait for in-flight deliveries")
    p.add_argument("--timeout", type=float, default=10, help="connect and subscribe timeout, seconds")
    p.add_argument(
        "--jwt-secret", default="", help="sign a token per connection (default: the server's secret from the environment)"
    )
    p.add_argument("--token", default="", help="one token for every connection instead")
    p.add_argument("--origin", default=None, help="Origin header, when the server checks it")
    p.add_argument("--id-offset", type=int, default=0, help="first user number (several generators)")
    p.add_argument("--text", default="x" * 64, help="message text")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c, d = result["connections"], result["deliveries"]
        print(
            f"connections: {c['opened']}/{c['requested']} opened, {c['failed']} failed {c['failures'] or ''}"
        )
        print(f"published:   {result['published']} ({result['publish_rate']:.1f}/s), acked {result['acked']}")
        print(f"deliveries:  {d['received']}/{d['expected']} ({d['rate']:.0f}/s), lost {d['lost']}")
        for name in ("delivery_latency_ms", "ack_latency_ms"):
            lat = result[name]
            print(f"{name:20} " + "  ".join(f"{k} {v:.2f}" for k, v in lat.items()))
    return 1 if result["connections"]["failed"] or result["deliveries"]["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
