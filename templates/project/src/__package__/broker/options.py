"""Configuration shared by the networked brokers (Redis, NATS); no I/O."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .base import ChannelOptions

DURABLE_DEFAULT_HISTORY = 10_000
"""Kept messages for a durable channel that sets no ``history_size``: replay needs *some* bound."""

URL_OPTIONS = ("prefix", "presence_ttl_s", "channel_ttl_s", "op_timeout_s")


def split_url_options(url: str) -> tuple[str, dict[str, str]]:
    """Take the adapter's options out of the URL query (``?presence_ttl_s=10&prefix=app``).

    They are deployment configuration like the address itself, so ``WS_BROKER_URL`` carries them;
    the client library never sees them.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in URL_OPTIONS}
    rest = [(k, v) for k, v in query if k not in URL_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def kept_messages(options: ChannelOptions) -> int:
    """How many messages a channel keeps for replay."""
    if options.history_size > 0:
        return options.history_size
    return DURABLE_DEFAULT_HISTORY if options.durable else 0
