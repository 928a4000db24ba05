"""One bounded probe per weakness. Each returns what it sent, what came back and a verdict.

Probes only talk to the URL the user gave, open at most two connections at a time, send a bounded
number of frames and never wait longer than the deadlines in :class:`ProbeOptions`. They assume
nothing about the server's protocol beyond RFC 6455; where an application message is needed
they send a wsforge v1 ``ping`` request, which other servers simply treat as text.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from ..review.model import Criterion, Rule, Severity
from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ProbeConnectionError,
    RawWebSocket,
    encode_frame,
    open_connection,
)

FORGED_ORIGIN = "https://attacker.wsforge-probe.invalid"
BOGUS_SUBPROTOCOL = "wsforge-probe.unsupported"
RATE_CLOSE_CODES = frozenset({1008, 1013, 4008, 4029})
NOT_APPLICABLE_EIO = (
    "not applicable: an Engine.IO / Socket.IO endpoint drops frames that are not Engine.IO packets, "
    "so replies cannot show a flood or a slow reader"
)


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    WARN = "warn"
    """Not a weakness for every server, but worth a look (reported as a note)."""
    SKIP = "skip"
    ERROR = "error"
    """The probe could not reach a conclusion (reported as a warning)."""


@dataclass(slots=True)
class ProbeOptions:
    """What to probe and how hard. Every count and deadline here bounds the probe."""

    url: str
    token: str | None = None
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    origin: str | None = None
    subprotocols: list[str] = field(default_factory=list)
    """Offered by the legitimate connections (some servers refuse clients that offer none)."""
    timeout_s: float = 5.0
    """Deadline for one handshake or one expected answer."""
    ping_wait_s: float = 30.0
    """How long to stay idle waiting for the server's own ping."""
    oversize_bytes: int = 4 * 1024 * 1024 + 1
    flood_count: int = 500
    slow_reader_frames: int = 2000
    slow_reader_bytes: int = 1024
    """Filler per request of the slow reader."""
    control_flood_count: int = 50_000
    """Pings of 125 bytes sent without reading (about 6.5 MB each way)."""
    fragment_count: int = 100_000
    """Empty continuation frames in the fragment bomb (6 bytes each on the wire)."""
    xff_max_connections: int = 64
    """Connections opened to find a per-IP cap before trying a spoofed X-Forwarded-For."""
    engine_io: bool = False
    """Set by the runner when the endpoint speaks Engine.IO / Socket.IO (checks that rely on
    replies to a wsforge request are then not applicable)."""

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or self.jwt_secret)

    def claims(self, *, exp_offset_s: int = 300) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"sub": "wsforge-probe", "iat": now, "exp": now + exp_offset_s}
        if self.jwt_audience:
            claims["aud"] = self.jwt_audience
        if self.jwt_issuer:
            claims["iss"] = self.jwt_issuer
        return claims

    def valid_token(self) -> str | None:
        if self.token:
            return self.token
        if self.jwt_secret:
            import jwt

            return jwt.encode(self.claims(), self.jwt_secret, algorithm=self.jwt_algorithm)
        return None


@dataclass(slots=True)
class ProbeResult:
    name: str
    rule_id: str
    verdict: Verdict
    sent: str
    received: str
    detail: str = ""
    seconds: float = 0.0
    severity: Severity | None = None
    """Overrides the rule's severity for this run (e.g. auth is only an error when expected)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule_id": self.rule_id,
            "verdict": self.verdict.value,
            "sent": self.sent,
            "received": self.received,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


ProbeFunc = Callable[[ProbeOptions], Awaitable[ProbeResult]]


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    rule: Rule
    run: ProbeFunc
    budget: Callable[[ProbeOptions], float] = field(default=lambda o: 6 * o.timeout_s)
    """Hard upper bound on the probe's duration; past it the runner cancels it."""


PROBES: list[Probe] = []


def probe(
    name: str,
    rule_id: str,
    criterion: Criterion,
    severity: Severity,
    title: str,
    *,
    why: str,
    fix: str,
    budget: Callable[[ProbeOptions], float] | None = None,
) -> Callable[[ProbeFunc], ProbeFunc]:
    def register(func: ProbeFunc) -> ProbeFunc:
        rule = Rule(rule_id, criterion, severity, title, why, fix, check=lambda spec: iter(()))
        PROBES.append(Probe(name, rule, func, budget or (lambda o: 6 * o.timeout_s)))
        return func

    return register


def _result(
    name: str, verdict: Verdict, sent: str, received: str, detail: str = "", **kw: Any
) -> ProbeResult:
    rule_id = next(p.rule.rule_id for p in PROBES if p.name == name)
    return ProbeResult(name, rule_id, verdict, sent, received, detail, **kw)


async def connect(
    opts: ProbeOptions,
    *,
    token: str | bool | None = True,
    origin: str | bool | None = True,
    subprotocols: list[str] | None = None,
    rcvbuf: int | None = None,
    headers: dict[str, str] | None = None,
) -> RawWebSocket:
    """Connect as a well-behaved client unless told otherwise (``token=None`` sends none)."""
    headers = dict(headers or {})
    bearer = opts.valid_token() if token is True else token
    if isinstance(bearer, str):
        headers["Authorization"] = f"Bearer {bearer}"
    sent_origin = opts.origin if origin is True else origin
    if isinstance(sent_origin, str):
        headers["Origin"] = sent_origin
    offered = opts.subprotocols if subprotocols is None else subprotocols
    return await open_connection(
        opts.url, headers=headers, subprotocols=offered, timeout=opts.timeout_s, rcvbuf=rcvbuf
    )


def ping_request(index: int, payload: Any = None) -> bytes:
    message: dict[str, Any] = {"v": 1, "type": "request", "action": "ping", "id": f"probe-{index}"}
    if payload is not None:
        message["payload"] = payload
    return json.dumps(message, separators=(",", ":")).encode()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def unsigned_token(opts: ProbeOptions) -> str:
    """An ``alg: none`` JWT carrying the claims of the user's token (or plausible ones)."""
    claims = opts.claims()
    if opts.token and opts.token.count(".") == 2:
        try:
            padded = opts.token.split(".")[1] + "=" * (-len(opts.token.split(".")[1]) % 4)
            claims = {**json.loads(base64.urlsafe_b64decode(padded)), "exp": claims["exp"]}
        except (ValueError, UnicodeDecodeError):
            pass
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


async def _handshake_refused(
    opts: ProbeOptions, name: str, sent: str, *, fail_severity: Severity | None = None, **connect_kw: Any
) -> ProbeResult:
    ws = await connect(opts, **connect_kw)
    try:
        answer = ws.handshake.describe()
        if ws.handshake.accepted:
            return _result(
                name, Verdict.FAIL, sent, answer, "the server opened the WebSocket", severity=fail_severity
            )
        return _result(name, Verdict.PASS, sent, answer)
    finally:
        await ws.close_transport()


async def _opened(opts: ProbeOptions, **connect_kw: Any) -> RawWebSocket:
    ws = await connect(opts, **connect_kw)
    if not ws.handshake.accepted:
        await ws.close_transport()
        raise ProbeConnectionError(f"a well-formed handshake was refused: {ws.handshake.describe()}")
    return ws


def _frame_text(opcode: int, payload: bytes) -> str:
    if opcode == OP_CLOSE:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        return f"close {code} {payload[2:].decode('utf-8', 'replace')!r}"
    names = {OP_TEXT: "text", OP_BINARY: "binary", OP_PING: "ping", OP_PONG: "pong"}
    return f"{names.get(opcode, hex(opcode))} {payload[:80]!r}"


# --- security -----------------------------------------------------------------------------------


@probe(
    "no-credentials",
    "WSF-PRB-001",
    Criterion.SECURITY,
    Severity.ERROR,
    "Handshake without credentials accepted",
    why="A server that opens a socket for a client with no token lets anyone read what it "
    "pushes. Authentication belongs in the HTTP upgrade, before the socket opens (401).",
    fix="Verify a token at the upgrade (Authorization header, subprotocol, query or cookie) and answer 401.",
)
async def probe_no_credentials(opts: ProbeOptions) -> ProbeResult:
    severity = None if opts.has_credentials else Severity.WARNING
    result = await _handshake_refused(
        opts,
        "no-credentials",
        "upgrade request with no Authorization, no token",
        fail_severity=severity,
        token=None,
    )
    if result.verdict == Verdict.FAIL and not opts.has_credentials:
        result.detail += "; no --token/--jwt-secret given, so anonymous access may be intended"
    return result


@probe(
    "expired-token",
    "WSF-PRB-002",
    Criterion.SECURITY,
    Severity.ERROR,
    "Expired token accepted",
    why="A token whose exp has passed must not open a socket: otherwise a leaked or revoked "
    "token works forever.",
    fix="Require and check exp (with a small leeway) when verifying the token.",
)
async def probe_expired_token(opts: ProbeOptions) -> ProbeResult:
    if not opts.jwt_secret:
        return _result("expired-token", Verdict.SKIP, "", "", "needs --jwt-secret to sign an expired token")
    import jwt

    expired = jwt.encode(opts.claims(exp_offset_s=-3600), opts.jwt_secret, algorithm=opts.jwt_algorithm)
    return await _handshake_refused(
        opts, "expired-token", "token signed correctly, exp one hour ago", token=expired
    )


@probe(
    "alg-none-token",
    "WSF-PRB-003",
    Criterion.SECURITY,
    Severity.ERROR,
    "Unsigned (alg: none) token accepted",
    why="A JWT with alg none carries no signature; accepting it lets anyone claim any identity.",
    fix="Pin the accepted algorithms (algorithms=[...]) and never allow none.",
)
async def probe_alg_none(opts: ProbeOptions) -> ProbeResult:
    if not opts.has_credentials:
        return _result(
            "alg-none-token", Verdict.SKIP, "", "", "needs --token or --jwt-secret (auth not expected)"
        )
    return await _handshake_refused(
        opts, "alg-none-token", "JWT with header alg=none and an empty signature", token=unsigned_token(opts)
    )


@probe(
    "forged-origin",
    "WSF-PRB-004",
    Criterion.SECURITY,
    Severity.ERROR,
    "Foreign Origin accepted",
    why="Browsers send the page's Origin and attach the user's cookies; a server that accepts any "
    "Origin can be driven by any web page the user visits (cross-site WebSocket hijacking).",
    fix="Check Origin against an exact allowlist at the upgrade and answer 403.",
)
async def probe_forged_origin(opts: ProbeOptions) -> ProbeResult:
    return await _handshake_refused(
        opts, "forged-origin", f"valid credentials, Origin: {FORGED_ORIGIN}", origin=FORGED_ORIGIN
    )


@probe(
    "oversized-message",
    "WSF-PRB-006",
    Criterion.SECURITY,
    Severity.ERROR,
    "Oversized message accepted",
    why="Without a payload cap one client can make the server buffer megabytes per message and "
    "exhaust its memory.",
    fix="Set a maximum message size (websockets max_size) and close with 1009 above it.",
)
async def probe_oversized(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = f"one text message of {opts.oversize_bytes} bytes"
    try:
        try:
            await ws.send_frame(OP_TEXT, b"a" * opts.oversize_bytes)
        except (ConnectionError, OSError):
            return _result("oversized-message", Verdict.PASS, sent, "connection cut while sending")
        try:
            frame = await ws.wait_close(opts.timeout_s)
        except ProbeConnectionError:
            replies = [f for f in ws.received if f.opcode in (OP_TEXT, OP_BINARY)]
            got = f"{len(replies)} data frame(s), connection still open"
            return _result("oversized-message", Verdict.FAIL, sent, got, "the message was accepted")
        if frame is None:
            return _result("oversized-message", Verdict.PASS, sent, "TCP closed without a close frame")
        code = frame.close_code
        verdict = Verdict.PASS if code == 1009 else Verdict.WARN
        detail = "" if code == 1009 else "closed, but RFC 6455 says 1009 (message too big)"
        return _result("oversized-message", verdict, sent, _frame_text(frame.opcode, frame.payload), detail)
    finally:
        await ws.close_transport()


@probe(
    "message-flood",
    "WSF-PRB-007",
    Criterion.SECURITY,
    Severity.ERROR,
    "Message flood not rate limited",
    why="A client that sends hundreds of messages at once should be slowed down (rate_limited) "
    "or disconnected; otherwise one client can monopolise the dispatch loop and fan-out.",
    fix="Add a per-connection token bucket; answer rate_limited, then close (4008) repeat offenders.",
)
async def probe_flood(opts: ProbeOptions) -> ProbeResult:
    sent = f"{opts.flood_count} wsforge ping requests back to back"
    if opts.engine_io:
        return _result("message-flood", Verdict.SKIP, sent, "", NOT_APPLICABLE_EIO)
    ws = await _opened(opts)
    try:
        for index in range(opts.flood_count):
            ws.write_frame_nowait(OP_TEXT, ping_request(index))
        try:
            await ws.writer.drain()
        except (ConnectionError, OSError):
            return _result("message-flood", Verdict.PASS, sent, "connection cut while flooding")
        data = limited = 0
        while data < opts.flood_count:
            try:
                frame = await ws.recv_frame(opts.timeout_s)
            except ProbeConnectionError as exc:
                if "closed" in str(exc):
                    return _result("message-flood", Verdict.PASS, sent, f"{data} replies, then TCP closed")
                break
            if frame.opcode == OP_CLOSE:
                code = frame.close_code
                verdict = Verdict.PASS if code in RATE_CLOSE_CODES else Verdict.WARN
                return _result(
                    "message-flood",
                    verdict,
                    sent,
                    f"{data} replies, then {_frame_text(OP_CLOSE, frame.payload)}",
                )
            if frame.opcode in (OP_TEXT, OP_BINARY):
                data += 1
                if b"rate" in frame.payload.lower():
                    limited += 1
        if limited:
            return _result(
                "message-flood", Verdict.PASS, sent, f"{data} replies, {limited} of them rate-limit errors"
            )
        return _result(
            "message-flood",
            Verdict.FAIL,
            sent,
            f"{data} replies, none limited, connection open",
            "no rate limit seen",
        )
    finally:
        await ws.close_transport()


# --- protocol integrity -------------------------------------------------------------------------


@probe(
    "unsupported-subprotocol",
    "WSF-PRB-005",
    Criterion.INTEGRITY,
    Severity.WARNING,
    "Unsupported subprotocol handled wrongly",
    why="A client that offers only protocols the server does not speak will misparse every "
    "message. The server must refuse (400) or at least not claim a subprotocol it did not agree to.",
    fix="Refuse upgrades whose Sec-WebSocket-Protocol lists only unknown protocols (HTTP 400).",
)
async def probe_subprotocol(opts: ProbeOptions) -> ProbeResult:
    ws = await connect(opts, subprotocols=[BOGUS_SUBPROTOCOL])
    sent = f"Sec-WebSocket-Protocol: {BOGUS_SUBPROTOCOL}"
    try:
        answer = ws.handshake.describe()
        if not ws.handshake.accepted:
            return _result("unsupported-subprotocol", Verdict.PASS, sent, answer)
        chosen = ws.handshake.headers.get("sec-websocket-protocol")
        if chosen == BOGUS_SUBPROTOCOL:
            return _result(
                "unsupported-subprotocol", Verdict.FAIL, sent, answer, "echoed a protocol it cannot speak"
            )
        if chosen:
            return _result(
                "unsupported-subprotocol", Verdict.FAIL, sent, answer, "selected a protocol not offered"
            )
        return _result(
            "unsupported-subprotocol",
            Verdict.WARN,
            sent,
            answer,
            "accepted without a subprotocol (RFC 6455 allows it; the client cannot tell what it speaks)",
        )
    finally:
        await ws.close_transport()


@probe(
    "invalid-utf8",
    "WSF-PRB-008",
    Criterion.INTEGRITY,
    Severity.WARNING,
    "Invalid UTF-8 in a text frame not rejected",
    why="RFC 6455 requires closing with 1007 on a text frame that is not UTF-8; a server that "
    "passes it on hands undecodable data to every subscriber and its own parsers.",
    fix="Use a conformant WebSocket library (websockets checks UTF-8) and do not disable the check.",
)
async def probe_invalid_utf8(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = 'text frame {"x":"\\xff\\xfe"} (bytes ff fe are not UTF-8)'
    try:
        await ws.send_frame(OP_TEXT, b'{"x":"\xff\xfe"}')
        try:
            frame = await ws.wait_close(opts.timeout_s)
        except ProbeConnectionError:
            return _result(
                "invalid-utf8", Verdict.FAIL, sent, "connection still open", "the frame was accepted"
            )
        if frame is None:
            return _result(
                "invalid-utf8", Verdict.WARN, sent, "TCP closed without a close frame", "expected close 1007"
            )
        verdict = Verdict.PASS if frame.close_code == 1007 else Verdict.WARN
        return _result("invalid-utf8", verdict, sent, _frame_text(frame.opcode, frame.payload))
    finally:
        await ws.close_transport()


# --- resilience ---------------------------------------------------------------------------------


@probe(
    "ping-pong",
    "WSF-PRB-009",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Ping not answered with a pong",
    why="Clients detect dead servers and half-open connections by pinging; a server that does "
    "not answer looks dead and gets reconnected to in loops.",
    fix="Answer ping frames with a pong carrying the same payload (every conformant library does).",
)
async def probe_ping_pong(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = "ping frame b'wsforge-probe'"
    try:
        await ws.send_frame(OP_PING, b"wsforge-probe")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.timeout_s
        while (remaining := deadline - loop.time()) > 0:
            try:
                frame = await ws.recv_frame(remaining)
            except ProbeConnectionError as exc:
                return _result("ping-pong", Verdict.FAIL, sent, str(exc))
            if frame.opcode == OP_PONG and frame.payload == b"wsforge-probe":
                return _result("ping-pong", Verdict.PASS, sent, _frame_text(frame.opcode, frame.payload))
        return _result("ping-pong", Verdict.FAIL, sent, f"no pong within {opts.timeout_s:g} s")
    finally:
        await ws.close_transport()


@probe(
    "server-heartbeat",
    "WSF-PRB-010",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Server sends no heartbeat",
    why="A server that never pings cannot tell a dead peer from a quiet one: connections of "
    "vanished clients keep their slots and queues, and idle connections are cut by proxies at 60 s.",
    fix="Enable server pings (websockets ping_interval ~20 s, ping_timeout ~20 s).",
    budget=lambda o: o.ping_wait_s + 2 * o.timeout_s,
)
async def probe_server_heartbeat(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = f"nothing; stayed idle up to {opts.ping_wait_s:g} s"
    started = time.monotonic()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.ping_wait_s
        while (remaining := deadline - loop.time()) > 0:
            try:
                frame = await ws.recv_frame(remaining)
            except ProbeConnectionError as exc:
                if "closed" in str(exc):
                    return _result(
                        "server-heartbeat", Verdict.WARN, sent, "closed while idle, without a ping"
                    )
                break
            if frame.opcode == OP_PING:
                await ws.send_frame(OP_PONG, frame.payload)
                return _result(
                    "server-heartbeat", Verdict.PASS, sent, f"ping after {time.monotonic() - started:.1f} s"
                )
        return _result(
            "server-heartbeat",
            Verdict.FAIL,
            sent,
            f"no ping within {opts.ping_wait_s:g} s",
            "raise --ping-wait if the server's interval is longer",
        )
    finally:
        await ws.close_transport()


@probe(
    "close-handshake",
    "WSF-PRB-011",
    Criterion.RESILIENCE,
    Severity.WARNING,
    "Close handshake not completed",
    why="Clients decide whether to reconnect from the close code; a server that drops TCP "
    "instead of answering the close frame leaves them guessing (1006) and retrying needlessly.",
    fix="Answer a close frame with a close frame (echo the code), then close TCP.",
)
async def probe_close(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = "close 1000 'probe done'"
    try:
        await ws.send_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"probe done")
        try:
            frame = await ws.wait_close(opts.timeout_s)
        except ProbeConnectionError as exc:
            return _result("close-handshake", Verdict.FAIL, sent, str(exc))
        if frame is None:
            return _result("close-handshake", Verdict.FAIL, sent, "TCP closed without a close frame (1006)")
        verdict = Verdict.PASS if frame.close_code == 1000 else Verdict.WARN
        return _result("close-handshake", verdict, sent, _frame_text(frame.opcode, frame.payload))
    finally:
        await ws.close_transport()


@probe(
    "slow-reader",
    "WSF-PRB-012",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "A slow reader stalls other clients",
    why="When one client stops reading, its replies must queue (bounded) or it must be "
    "disconnected; a server that blocks on that client's socket delays everyone else.",
    fix="Give each connection a bounded outbound queue and a policy (drop, coalesce, disconnect 4009).",
)
async def probe_slow_reader(opts: ProbeOptions) -> ProbeResult:
    """Measure the server, not the replies: another connection's ping round trip and request
    latency while one connection sends without reading, and whether the server closes it."""
    size = opts.slow_reader_bytes
    sent = (
        f"{opts.slow_reader_frames} requests of {size} bytes on a connection that never reads, "
        "then a ping and a request on another"
    )
    if opts.engine_io:
        return _result("slow-reader", Verdict.SKIP, sent, "", NOT_APPLICABLE_EIO)
    answers_requests = await _answers_request(opts)
    before = await _ping_rtt(opts)
    slow = await _opened(opts, rcvbuf=4096)
    try:
        filler = "x" * size
        frames = (encode_frame(OP_TEXT, ping_request(i, filler)) for i in range(opts.slow_reader_frames))
        written, state = await _write_unread(slow, frames, opts)
        await asyncio.sleep(min(1.0, opts.timeout_s / 5))
        during = await _ping_rtt(opts)
        served = await _answers_request(opts, label="still-there")
        other = f"other connection: ping {_ms(before)} before, {_ms(during)} during"
        if answers_requests and not served:
            return _result(
                "slow-reader",
                Verdict.FAIL,
                sent,
                f"{other}; no reply to a request within {opts.timeout_s:g} s",
            )
        if before is not None and during is None:
            return _result("slow-reader", Verdict.FAIL, sent, f"{other}: the server stalled")
        replies, data, closed = await _read_back(slow, opts)
        if state == "cut" or closed:
            return _result("slow-reader", Verdict.PASS, sent, f"{other}; slow connection {closed or 'cut'}")
        if not answers_requests:
            return _result(
                "slow-reader",
                Verdict.WARN,
                sent,
                f"{other}; slow connection still open",
                "the server does not reply to messages, so stalls are invisible",
            )
        held = f"{replies} replies ({data / 1e6:.1f} MB) waiting for a reader that read nothing"
        if state == "drained" and written and replies >= 0.9 * written and data > 8_000_000:
            return _result(
                "slow-reader",
                Verdict.WARN,
                sent,
                f"{other}; {held}",
                "every request was read and answered while the client read nothing: past the kernel's "
                "buffers the server holds those replies in memory (bound its outbound queue)",
            )
        return _result("slow-reader", Verdict.PASS, sent, f"{other}; slow connection open; {held}")
    finally:
        await slow.close_transport()


def _ms(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds * 1000:.0f} ms"


async def _ping_rtt(opts: ProbeOptions) -> float | None:
    """Seconds from a ping to its pong on a fresh connection; None without a pong in time."""
    ws = await connect(opts)
    try:
        if not ws.handshake.accepted:
            return None
        started = time.perf_counter()
        await ws.send_frame(OP_PING, b"rtt")
        while True:
            try:
                frame = await ws.recv_frame(opts.timeout_s)
            except ProbeConnectionError:
                return None
            if frame.opcode == OP_PONG and frame.payload == b"rtt":
                return time.perf_counter() - started
            if frame.opcode == OP_CLOSE:
                return None
    finally:
        await ws.close_transport()


async def _write_unread(
    ws: RawWebSocket, frames: Any, opts: ProbeOptions, chunk: int = 500
) -> tuple[int, str]:
    """Write ``frames`` without reading, ``chunk`` at a time. Returns how many were written and
    ``"cut"`` (the server closed or reset us), ``"stalled"`` (it stopped reading: our writes
    waited ``timeout_s`` in all) or ``"drained"`` (it took everything)."""
    written = 0
    waited = 0.0
    batch: list[bytes] = []
    transport = ws.writer.transport
    for data in [*frames, None]:
        if data is not None:
            batch.append(data)
            if len(batch) < chunk:
                continue
        if not batch:
            break
        if transport.is_closing():
            return written, "cut"
        ws.writer.write(b"".join(batch))
        written += len(batch)
        batch = []
        started = time.monotonic()
        try:
            await asyncio.wait_for(ws.writer.drain(), 0.05)
        except TimeoutError:
            waited += time.monotonic() - started
            if waited > opts.timeout_s:
                return written, "stalled"
        except (ConnectionError, OSError):
            return written, "cut"
    try:
        await asyncio.wait_for(ws.writer.drain(), max(0.05, opts.timeout_s - waited))
    except TimeoutError:
        return written, "stalled"
    except (ConnectionError, OSError):
        return written, "cut"
    return written, "drained"


async def _read_back(
    ws: RawWebSocket, opts: ProbeOptions, *, opcode: int | None = None
) -> tuple[int, int, str]:
    """Read what the server kept for us: (frames of ``opcode`` or data frames, their bytes, how it
    ended: "" still open, else "closed <code>" / "dropped"). Bounded by 2 x timeout_s, and ends
    after 1 s without a frame."""
    count = size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * opts.timeout_s
    wanted = (opcode,) if opcode is not None else (OP_TEXT, OP_BINARY)
    while (remaining := deadline - loop.time()) > 0:
        try:
            frame = await ws.recv_frame(min(1.0, remaining))
        except ProbeConnectionError as exc:
            return count, size, "dropped" if "closed" in str(exc) else ""
        if frame.opcode == OP_CLOSE:
            return count, size, f"closed {frame.close_code}"
        if frame.opcode in wanted:
            count += 1
            size += len(frame.payload)
    return count, size, ""


async def _answers_request(opts: ProbeOptions, label: str = "probe") -> bool:
    """True when a fresh connection gets any data frame back for one request within the timeout."""
    ws = await _opened(opts)
    try:
        await ws.send_frame(OP_TEXT, ping_request(0, label))
        while True:
            try:
                frame = await ws.recv_frame(opts.timeout_s)
            except ProbeConnectionError:
                return False
            if frame.opcode in (OP_TEXT, OP_BINARY):
                return True
            if frame.opcode == OP_CLOSE:
                return False
    finally:
        await ws.close_transport()


@probe(
    "reconnect-after-drop",
    "WSF-PRB-013",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Reconnect after a server-side close fails",
    why="After the server drops a connection the client reconnects at once; a server that keeps "
    "the old connection's slot or state refuses or stalls the new one.",
    fix="Release per-connection state (caps, presence, subscriptions) as soon as a connection closes.",
)
async def probe_reconnect(opts: ProbeOptions) -> ProbeResult:
    ws = await _opened(opts)
    sent = "invalid UTF-8 to make the server close, then 3 reconnects with a ping each"
    try:
        await ws.send_frame(OP_TEXT, b"\xff")
        try:
            frame = await ws.wait_close(opts.timeout_s)
            dropped = "server closed" + (f" ({frame.close_code})" if frame else "")
        except ProbeConnectionError:
            dropped = "server did not close; the probe closed instead"
    finally:
        await ws.close_transport()
    for attempt in range(1, 4):
        again = await connect(opts)
        try:
            if not again.handshake.accepted:
                return _result(
                    "reconnect-after-drop",
                    Verdict.FAIL,
                    sent,
                    f"{dropped}; reconnect {attempt}: {again.handshake.describe()}",
                )
            await again.send_frame(OP_PING, b"again")
            try:
                while (await again.recv_frame(opts.timeout_s)).opcode != OP_PONG:
                    pass
            except ProbeConnectionError as exc:
                return _result(
                    "reconnect-after-drop", Verdict.FAIL, sent, f"{dropped}; reconnect {attempt}: {exc}"
                )
        finally:
            await again.close_transport()
    return _result("reconnect-after-drop", Verdict.PASS, sent, f"{dropped}; 3 reconnects answered")


@probe(
    "control-flood",
    "WSF-PRB-014",
    Criterion.RESILIENCE,
    Severity.ERROR,
    "Ping flood from a client that does not read is answered without limit",
    why="A WebSocket library answers every ping with a pong, usually without waiting for the socket "
    "to drain. A client that pings as fast as it can and never reads makes the server queue pongs "
    "without end (hundreds of MB in seconds) and slows every other client.",
    fix="Give control frames a per-connection budget (skip pongs or close 4008 past it) and cut a "
    "connection whose write buffer passes a bound, whatever the frames in it.",
    budget=lambda o: 8 * o.timeout_s,
)
async def probe_control_flood(opts: ProbeOptions) -> ProbeResult:
    count = opts.control_flood_count
    sent = f"{count} pings of 125 bytes without reading, then a ping on another connection"
    before = await _ping_rtt(opts)
    flood = await _opened(opts, rcvbuf=4096)
    try:
        ping = encode_frame(OP_PING, b"p" * 125)
        written, state = await _write_unread(flood, (ping for _ in range(count)), opts)
        during = await _ping_rtt(opts)
        other = f"other connection: ping {_ms(before)} before, {_ms(during)} during"
        pongs, _, closed = await _read_back(flood, opts, opcode=OP_PONG)
    finally:
        await flood.close_transport()
    if state == "cut" or closed:
        return _result(
            "control-flood",
            Verdict.PASS,
            sent,
            f"{pongs} pongs, then {closed or 'cut while sending'}; {other}",
        )
    if before is not None and (during is None or during > opts.timeout_s):
        return _result("control-flood", Verdict.FAIL, sent, other, "the flood stalled other clients")
    if state == "stalled":
        return _result(
            "control-flood", Verdict.PASS, sent, f"the server stopped reading after {written} pings; {other}"
        )
    if written and pongs >= 0.9 * written:
        return _result(
            "control-flood",
            Verdict.FAIL,
            sent,
            f"{pongs} pongs for {written} pings, connection open; {other}",
            f"the server queued a pong for every ping ({pongs * 127 / 1e6:.1f} MB) for a client that read nothing",
        )
    return _result(
        "control-flood", Verdict.PASS, sent, f"{pongs} pongs for {written} pings (the rest skipped); {other}"
    )


@probe(
    "fragment-bomb",
    "WSF-PRB-015",
    Criterion.SECURITY,
    Severity.ERROR,
    "Message in unlimited fragments accepted",
    why="A size cap that counts bytes does not stop a message of 100,000 empty continuation frames: "
    "each costs the server bookkeeping and a callback, and the message never ends.",
    fix="Bound the number of fragments per message as well as the assembled size; close with 1009.",
    budget=lambda o: 6 * o.timeout_s,
)
async def probe_fragment_bomb(opts: ProbeOptions) -> ProbeResult:
    count = opts.fragment_count
    sent = f"a text message in {count + 2} frames: '{{', {count} empty continuations, '}}'"
    ws = await _opened(opts)
    try:
        head = [encode_frame(OP_TEXT, b"{", fin=False)]
        empty = encode_frame(OP_CONT, b"", fin=False)
        frames = [*head, *(empty for _ in range(count)), encode_frame(OP_CONT, b"}")]
        _, state = await _write_unread(ws, frames, opts, chunk=2000)
        if state == "cut":
            return _result("fragment-bomb", Verdict.PASS, sent, "connection cut while sending")
        try:
            frame = await ws.wait_close(opts.timeout_s)
        except ProbeConnectionError:
            return _result(
                "fragment-bomb",
                Verdict.FAIL,
                sent,
                "connection still open",
                f"a message of {count + 2} frames was accepted",
            )
        if frame is None:
            return _result("fragment-bomb", Verdict.PASS, sent, "TCP closed without a close frame")
        verdict = Verdict.PASS if frame.close_code in (1009, 1008, 1002) else Verdict.WARN
        return _result("fragment-bomb", verdict, sent, _frame_text(frame.opcode, frame.payload))
    finally:
        await ws.close_transport()


@probe(
    "origin-equals-host",
    "WSF-PRB-016",
    Criterion.SECURITY,
    Severity.ERROR,
    "Origin equal to the Host header accepted",
    why="Treating Origin == Host as same-origin lets a DNS-rebinding page in: evil.example resolves "
    "to the server, and the browser sends Origin http://evil.example:port with Host evil.example:port.",
    fix="Check Origin against the allowlist only; list the origins of pages the server serves itself.",
)
async def probe_origin_equals_host(opts: ProbeOptions) -> ProbeResult:
    parts = urlsplit(opts.url)
    host = f"rebind.wsforge-probe.invalid:{parts.port or (443 if parts.scheme == 'wss' else 80)}"
    origin = f"{'https' if parts.scheme == 'wss' else 'http'}://{host}"
    return await _handshake_refused(
        opts,
        "origin-equals-host",
        f"valid credentials, Host: {host}, Origin: {origin}",
        origin=origin,
        headers={"Host": host},
    )


@probe(
    "forwarded-for-spoof",
    "WSF-PRB-017",
    Criterion.SECURITY,
    Severity.ERROR,
    "Per-IP limit keyed on a client-written X-Forwarded-For",
    why="A server that takes the client address from X-Forwarded-For as the client wrote it (the "
    "left-most entry, or any entry when its peer is not a proxy it trusts) lets one client pose as "
    "any number of addresses: per-IP connection caps and rate limits stop nothing.",
    fix="Read X-Forwarded-For only from configured proxies (a CIDR list), take the right-most "
    "untrusted hop, and make the edge proxy overwrite the header instead of appending to it.",
    budget=lambda o: 4 * o.timeout_s + 0.2 * o.xff_max_connections,
)
async def probe_forwarded_for_spoof(opts: ProbeOptions) -> ProbeResult:
    spoofed = "203.0.113.77"
    sent = f"connections until one is refused (at most {opts.xff_max_connections}), then one with X-Forwarded-For: {spoofed}"
    opened: list[RawWebSocket] = []
    try:
        refusal = ""
        for _ in range(opts.xff_max_connections):
            ws = await connect(opts)
            opened.append(ws)
            if not ws.handshake.accepted:
                refusal = ws.handshake.describe()
                break
        if not refusal:
            return _result(
                "forwarded-for-spoof",
                Verdict.SKIP,
                sent,
                f"{len(opened)} accepted",
                "no per-IP cap seen to test",
            )
        accepted = len(opened) - 1
        ws = await connect(opts, headers={"X-Forwarded-For": spoofed})
        opened.append(ws)
        got = f"{accepted} accepted, then {refusal}; with the spoofed header: {ws.handshake.describe()}"
        if ws.handshake.accepted:
            return _result(
                "forwarded-for-spoof",
                Verdict.FAIL,
                sent,
                got,
                "a header the client wrote lifted the per-IP cap",
            )
        return _result("forwarded-for-spoof", Verdict.PASS, sent, got)
    finally:
        for ws in opened:
            await ws.close_transport()
