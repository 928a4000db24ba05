"""Rate limits, payload caps and connection caps. No I/O; every clock value is an argument.

The server asks these objects questions ("may this frame pass at ``now``?") and acts on the
answers (send ``rate_limited``, close with 4008, refuse the handshake with 429/503).
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens. Returns 0.0 when allowed, else the seconds until it would be."""
        # Plain comparisons, not max()/min(): this runs for every frame of every connection.
        tokens = self._tokens
        if now > self._stamp:
            tokens += (now - self._stamp) * self._rate
            if tokens > self._burst:
                tokens = self._burst
            self._stamp = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return 0.0
        self._tokens = tokens
        return (cost - tokens) / self._rate


class Verdict(enum.Enum):
    ALLOW = "allow"
    REJECT = "reject"
    """Answer with an error but keep the connection."""
    CLOSE = "close"
    """Too many violations: close the connection."""


@dataclass(frozen=True, slots=True)
class RateDecision:
    verdict: Verdict
    retry_after_ms: int = 0


_ALLOWED: Final = RateDecision(Verdict.ALLOW)
"""Shared: the answer for almost every frame, immutable, so not built per call."""


class RateGuard:
    """A per-connection token bucket that turns repeated violations into a close (4008)."""

    __slots__ = ("_bucket", "_max_violations", "violations")

    def __init__(self, rate: float, burst: int, max_violations: int, now: float) -> None:
        self._bucket = TokenBucket(rate, burst, now)
        self._max_violations = max_violations
        self.violations = 0

    @property
    def bucket(self) -> TokenBucket:
        """Take from it for every frame; only a refusal (a wait above 0.0) needs :meth:`judge`,
        so an allowed frame costs one call."""
        return self._bucket

    def judge(self, wait: float) -> RateDecision:
        """The decision for a frame that had to wait ``wait`` seconds (``bucket.take(now)``; 0.0: allowed)."""
        if wait == 0.0:
            return _ALLOWED
        self.violations += 1
        verdict = Verdict.CLOSE if self.violations >= self._max_violations else Verdict.REJECT
        return RateDecision(verdict, max(1, math.ceil(wait * 1000)))


class StrikeCounter:
    """Counts protocol violations (bad frames); :meth:`strike` is True when the limit is reached."""

    __slots__ = ("_limit", "count")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.count = 0

    def strike(self) -> bool:
        self.count += 1
        return self.count >= self._limit


class Refusal(enum.Enum):
    """Why a handshake is refused before the socket opens, with its HTTP status."""

    PER_IP = 429
    TOTAL = 503

    @property
    def reason(self) -> str:
        return "too_many_connections_per_ip" if self is Refusal.PER_IP else "server_full"


class ConnectionLimiter:
    """Connection caps, per client IP and in total.

    :meth:`reserve` before accepting a handshake and :meth:`release` exactly once when that
    connection is gone (or the handshake failed).
    """

    def __init__(self, max_per_ip: int, max_total: int) -> None:
        self._max_per_ip = max_per_ip
        self._max_total = max_total
        self._per_ip: dict[str, int] = {}
        self.total = 0

    def check(self, ip: str) -> Refusal | None:
        if self.total >= self._max_total:
            return Refusal.TOTAL
        if self._per_ip.get(ip, 0) >= self._max_per_ip:
            return Refusal.PER_IP
        return None

    def reserve(self, ip: str) -> Refusal | None:
        """Count one connection from ``ip`` unless a cap is reached."""
        refusal = self.check(ip)
        if refusal is None:
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
            self.total += 1
        return refusal

    def release(self, ip: str) -> None:
        if _take_one(self._per_ip, ip):
            self.total -= 1

    def count(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)


class HandshakeGate:
    """Caps on TCP connections that have not finished the WebSocket handshake, per IP and in total.

    :class:`ConnectionLimiter` only counts admitted connections; without this, sockets that never
    send an upgrade request (or send it byte by byte) would use up file descriptors unchecked.
    :meth:`enter` when a TCP connection arrives (False: cut it at once), :meth:`leave` exactly once
    when it is admitted, refused or gone.
    """

    def __init__(self, max_per_ip: int, max_total: int) -> None:
        self._max_per_ip = max_per_ip
        self._max_total = max_total
        self._per_ip: dict[str, int] = {}
        self.total = 0

    def enter(self, ip: str | None) -> Refusal | None:
        """Count one; ``ip`` None (a trusted proxy, carrying many clients) counts only in the total."""
        if self.total >= self._max_total:
            return Refusal.TOTAL
        if ip is not None:
            count = self._per_ip.get(ip, 0)
            if count >= self._max_per_ip:
                return Refusal.PER_IP
            self._per_ip[ip] = count + 1
        self.total += 1
        return None

    def leave(self, ip: str | None) -> None:
        if ip is not None and not _take_one(self._per_ip, ip):
            return
        if self.total > 0:
            self.total -= 1


def _take_one(counts: dict[str, int], ip: str) -> bool:
    """Decrement ``ip``'s count, dropping the key at zero; False when it held none (a double release)."""
    count = counts.get(ip, 0)
    if count <= 0:
        return False
    if count == 1:
        del counts[ip]
    else:
        counts[ip] = count - 1
    return True


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """``("10.0.0.0/8", "127.0.0.1")`` as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def trusted_address(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address per-IP limits count: ``peer`` unless it is a trusted proxy.

    Behind trusted proxies, ``X-Forwarded-For`` (every header, in order) is read from the right:
    each proxy appends the address it got the request from, so the right-most entry that is not a
    trusted proxy is the client as the outermost trusted proxy saw it. Entries to its left were
    written by the client and are never used; a malformed entry ends the walk at the last proxy.
    """
    if not trusted or not trusted_address(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # no trusted proxy writes that: the client did, so stop at the last proxy
        if not trusted_address(hop, trusted):
            return hop
        peer = hop
    return peer
