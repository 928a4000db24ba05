"""The client's reconnect policy: what a close or refusal means, and how long to wait.

Pure functions and one small class, no I/O (the clock and the random source are passed in), so
they are tested without an event loop. :class:`~.client.Client` takes them as constructor
arguments and :class:`~.client.Dialer` applies them between connections; ``client.py`` re-exports
every name, which stays the import path applications use.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Literal

__all__ = [
    "RETRYABLE_ERRORS",
    "Decision",
    "Reconnector",
    "backoff",
    "classify_close",
    "classify_error",
    "classify_status",
]

Decision = Literal["stop", "retry", "retry_later", "reauth"]
"""What to do after a connection ends: give up, reconnect, reconnect after a longer delay, or get
a new token first and then reconnect."""


def backoff(
    base_s: float,
    cap_s: float,
    jitter: Literal["full", "equal", "none"] = "full",
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Reconnect delays in seconds: exponential from ``base_s``, capped at ``cap_s``.

    With full jitter each delay is uniform in ``[0, min(cap, base * 2**n))``, which spreads a crowd
    of clients that lost the same server over the whole window instead of bringing them back in
    waves ("Exponential Backoff And Jitter", AWS architecture blog). Infinite; make a new one to
    start over.
    """
    for attempt in itertools.count():
        ceiling = min(cap_s, base_s * 2 ** min(attempt, 62))
        if jitter == "full":
            yield rng() * ceiling
        elif jitter == "equal":
            yield ceiling / 2 + rng() * ceiling / 2
        else:
            yield ceiling


_STOP_CODES = frozenset({1000, 1008, 4003, 4400})


def classify_close(code: int) -> Decision:
    """What the close code table of the contract (§3) tells a client to do.

    1000 (normal), 1008 (policy), 4003 (forbidden) and 4400 (protocol violations) mean the server
    does not want this client back as it is: reconnecting would only repeat the refusal. 1013 means
    overloaded: come back, but later. 4001 means the token expired. Everything else, including
    1006 (no close frame: the network dropped), is worth a reconnect with backoff.
    """
    if code in _STOP_CODES:
        return "stop"
    if code == 1013:
        return "retry_later"
    if code == 4001:
        return "reauth"
    return "retry"


def classify_status(status: int) -> Decision:
    """What an HTTP status refusing the upgrade tells a client to do.

    401 is "reauth": the client stops unless it has a ``token_provider`` that can supply a new
    token. 403 (origin), 400 (unknown subprotocol) and other 4xx would be refused again. 429 and
    503 are capacity refusals (per-IP and total connection caps): come back later. Other 5xx are
    treated as transient.
    """
    if status == 401:
        return "reauth"
    if status in (429, 503):
        return "retry_later"
    if status >= 500:
        return "retry"
    return "stop"


RETRYABLE_ERRORS = frozenset({"broker_unavailable", "rate_limited", "internal", "history_unavailable"})
"""Error codes that describe the server's state, not the request: the same request may succeed later."""


def classify_error(code: str) -> Literal["retry", "refused"]:
    """Is an ``error`` answer to a subscribe worth retrying, or a definitive refusal?

    ``broker_unavailable`` (an instance restarting while the broker is down), ``rate_limited``,
    ``internal`` and ``history_unavailable`` say nothing about the channel: the subscription stays
    wanted and is retried with the reconnect policy's delays. Anything else (``forbidden``,
    ``invalid_channel``, ``unauthorized``, ``too_many_subscriptions``, ...) would be refused
    again, so the subscription is dropped and the application is told.
    """
    return "retry" if code in RETRYABLE_ERRORS else "refused"


class Reconnector:
    """Turns connection outcomes into delays; no I/O, the clock is passed in.

    Call :meth:`opened` when a connection opens and :meth:`delay` when an attempt fails or a
    connection ends. The backoff starts over only after a connection stayed open for
    ``reset_after_s``: a server that accepts and then drops every connection at once must not be
    hammered at the base delay forever.
    """

    def __init__(
        self,
        delays: Callable[[], Iterator[float]],
        *,
        reset_after_s: float,
        retry_later_s: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._new_delays = delays
        self._rng = rng
        self._delays = delays()
        self._reset_after_s = reset_after_s
        self._retry_later_s = retry_later_s
        self._opened_at: float | None = None

    def opened(self, now: float) -> None:
        self._opened_at = now

    def delay(self, decision: Decision, now: float, retry_after_s: float | None = None) -> float:
        """Seconds to wait before the next attempt.

        ``retry_later`` waits the server's ``Retry-After`` (HTTP 429/503) plus the jittered
        backoff, or without one (close 1013) a random time in ``[retry_later_s / 2,
        retry_later_s)``, like the browser client: an overloaded server gets a long pause without
        every client coming back at the same instant.
        """
        if self._opened_at is not None and now - self._opened_at >= self._reset_after_s:
            self._delays = self._new_delays()
        self._opened_at = None
        delay = next(self._delays)
        if decision == "retry_later":
            if retry_after_s is None:
                return self._retry_later_s * (0.5 + 0.5 * self._rng())
            delay += retry_after_s
        return delay
