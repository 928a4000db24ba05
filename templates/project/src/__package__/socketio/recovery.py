"""Socket.IO connection state recovery (v4.6+): ``pid`` and ``offset`` over the core's ``since_seq``.

What ``socket.io-client`` does: the CONNECT answer ``40{"sid", "pid"}`` gives it a private session
id; every event whose last argument is a string sets its ``_lastOffset``; when it reconnects after
a lost transport it sends CONNECT with ``{...auth, pid, offset}`` and sets ``socket.recovered``
when the answer carries the same ``pid``. The server must then deliver what the client missed,
nothing twice.

How this server does it, on the core's own sequence numbers:

* **Offsets.** A ``message`` event with a ``seq`` carries ``"<channel> <seq>"`` as last argument
  (``bridge.py``): derived from the event, so one packet still serves every subscriber.
* **What the client got.** A seq names one channel, so each link keeps a ring of the offsets it
  wrote, in order (:data:`RING_SIZE`, created with the first message): the entries after the
  client's offset are what it did not get. The ring starts with the offset the client connected
  with (None on a first connection), so a client that got nothing since still matches.
* **Record.** When a connection ends without the client leaving (its transport dropped, Engine.IO
  CLOSE without a Socket.IO DISCONNECT first, or no pong in time), a :class:`Record` is kept under
  its pid for ``socketio_recovery_s``: the user, the socket id, per channel where to resume if
  nothing after the offset is on it (the session's last seq, lowered for events still queued,
  never written) and the channel's epoch, and the ring. A client DISCONNECT (``41``), a refused
  token or a close the server decided (token expired, slow consumer, bad packets, shutdown) keeps
  none. A CONNECT naming the pid of a connection still open (a half-open TCP the server has not
  noticed yet) takes the record from it and closes it.
* **Resuming.** A CONNECT with a known pid, the same user (the token is verified again) and an
  offset found in the ring is answered with the same pid and socket id; the session then
  subscribes to every recorded channel *through the core* with ``since_seq``: authorization,
  hooks, presence, retention and ``resync`` behave as for any subscribe, and the replayed events
  are the missed ones. Those subscribes carry no ack id, so their responses send nothing; a
  refusal arrives as an ``error`` event. Records are single-use, expire, and are bounded in number
  and size (oldest dropped). Anything else (unknown or expired pid, another user, an offset no
  longer in the ring) is answered with a new pid: ``socket.recovered`` is false and the client
  resubscribes with ``since_seq`` as without recovery.

Records live in this instance only: a client that reconnects to another instance (after a
shutdown, or without sticky sessions) is not recovered.
"""

from __future__ import annotations

import secrets
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from ..protocol import Fields

if TYPE_CHECKING:
    from ..server import Connection
    from .bridge import Bridge
    from .session import SocketIOLink

RING_SIZE: Final = 256
"""Offsets a link remembers: a client with more messages than this written but not received when
its transport dropped cannot be recovered (it resubscribes with ``since_seq``)."""
MAX_RECORDS: Final = 10_000
MAX_RECORD_ENTRIES: Final = 500_000
"""Ring entries and channels held by all records together: 8 bytes each, plus the offset strings
(one per broadcast, shared by its subscribers; about 60 bytes when every message goes to one
client): at most some 34 MB. The oldest records go first past either bound."""
MAX_PID: Final = 64
MAX_OFFSET: Final = 200
"""Longer ``pid``/``offset`` values in a CONNECT are not ours: the connection starts afresh."""


def new_pid() -> str:
    """An unguessable private session id (the socket id is public, the pid is not)."""
    return secrets.token_urlsafe(16)


def connect_answer(sid: str, pid: str | None) -> bytes:
    """Socket.IO CONNECT answered on ``/``, with the pid when recovery is on."""
    body: dict[str, str] = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
    return b"40" + orjson.dumps(body)


def claimed(auth: Any) -> tuple[str, str | None] | None:
    """The ``(pid, offset)`` a CONNECT's auth payload asks to resume, when well-formed."""
    if not isinstance(auth, dict):
        return None
    pid, offset = auth.get("pid"), auth.get("offset")
    if type(pid) is not str or not 0 < len(pid) <= MAX_PID:
        return None
    if offset is not None and (type(offset) is not str or len(offset) > MAX_OFFSET):
        return None
    return pid, offset


@dataclass(slots=True)
class Record:
    """A dropped connection's state, kept until it is resumed or expires."""

    user: str | None
    sid: str
    expires: float
    positions: dict[str, tuple[int, str | None]]
    """Channel -> (seq to resume after when nothing after the offset is on it, epoch)."""
    ring: tuple[str | None, ...]
    """Offsets written, oldest first; the first is where the link started when nothing dropped out."""

    @property
    def size(self) -> int:
        return len(self.ring) + len(self.positions)

    def resume(self, offset: str | None) -> dict[str, tuple[int, str | None]] | None:
        """Channel -> (since_seq, epoch) for a client whose last offset is ``offset``; None when
        the offset is not in the ring (it dropped out, or was never ours)."""
        ring = self.ring
        try:
            start = ring.index(offset)  # the first: replaying one event twice beats losing one
        except ValueError:
            return None
        since = dict(self.positions)
        for entry in ring[start + 1 :]:
            if entry is None:
                continue
            channel, _, seq = entry.rpartition(" ")
            known = since.get(channel)
            if known is not None and seq.isdigit() and int(seq) - 1 < known[0]:
                since[channel] = (int(seq) - 1, known[1])
        return since


def resubscriptions(bridge: Bridge, resume: dict[str, tuple[int, str | None]]) -> list[bytes]:
    """The core's subscribe requests that resume each channel. Their ids are not digits, as for
    an emit without ack: the responses send nothing, a refusal is an ``error`` event."""
    requests = []
    for n, (channel, (since_seq, epoch)) in enumerate(resume.items()):
        payload: dict[str, Any] = {"since_seq": since_seq}
        if epoch:
            payload["epoch"] = epoch
        request = bridge.request(["subscribe", {"channel": channel, "payload": payload}], f"r{n}")
        if type(request) is bytes:
            requests.append(request)
    return requests


def positions(
    subscriptions: dict[str, int], epochs: dict[str, str], queued: Iterable[bytes], fields: Fields
) -> dict[str, tuple[int, str | None]]:
    """Where each channel resumes when the client got everything written: the session's last
    seq, lowered below any ``message`` still queued for the connection (never written)."""
    resume = {channel: (seq, epochs.get(channel)) for channel, seq in subscriptions.items()}
    for data in queued:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if type(obj) is not dict or obj.get(fields.type) != "event" or obj.get(fields.action) != "message":
            continue
        channel, seq = obj.get(fields.channel), obj.get(fields.seq)
        if type(channel) is not str or type(seq) is not int:
            continue
        known = resume.get(channel)
        if known is not None and seq - 1 < known[0]:
            resume[channel] = (seq - 1, known[1])
    return resume


class Recovery:
    """The recovery records of one server, and its live links by pid (this instance only)."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.clock = clock
        """Monotonic seconds (the event loop's clock)."""
        self._records: OrderedDict[str, Record] = OrderedDict()
        self._entries = 0
        self.live: weakref.WeakValueDictionary[str, SocketIOLink] = weakref.WeakValueDictionary()
        """pid -> the open link that has it (a link also removes itself when it ends)."""

    def __len__(self) -> int:
        return len(self._records)

    @property
    def entries(self) -> int:
        """Ring entries and channels held by the records (what :data:`MAX_RECORD_ENTRIES` bounds)."""
        return self._entries

    def keep(self, pid: str, record: Record) -> None:
        """Remember ``record`` under ``pid`` (replacing an older one), within the bounds."""
        self._expire()
        old = self._records.pop(pid, None)
        if old is not None:
            self._entries -= old.size
        self._records[pid] = record
        self._entries += record.size
        while len(self._records) > MAX_RECORDS or self._entries > MAX_RECORD_ENTRIES:
            _, dropped = self._records.popitem(last=False)
            self._entries -= dropped.size

    def take(self, pid: str, user: str | None) -> Record | None:
        """The record of ``pid`` for ``user``, removed (single use); from the live link that still
        has the pid when there is one (it is handed over, and the caller closes it). None: unknown,
        expired, or another user's (then left in place: a stolen pid cannot burn it)."""
        self._expire()
        link = self.live.get(pid)
        if link is not None:
            if link.user != user:
                return None
            del self.live[pid]
            return link.take_over()
        record = self._records.get(pid)
        if record is None or record.user != user:
            return None
        del self._records[pid]
        self._entries -= record.size
        return record

    def snapshot(
        self, conn: Connection, user: str | None, sid: str, ring: tuple[str | None, ...], fields: Fields
    ) -> Record:
        """The record of a link's session (``conn``) whose client may come back: where each
        channel resumes, from the session's own bookkeeping (channel -> last seq queued, its
        epochs) and what is still queued, never written."""
        session = conn.session
        queued = [data for _, data in conn.outbox._items]
        resume = positions(session._subscriptions, session._epochs, queued, fields)
        return Record(user, sid, self.clock() + self.window_s, resume, ring)

    def _expire(self) -> None:
        now = self.clock()
        records = self._records
        while records:
            pid, oldest = next(iter(records.items()))
            if oldest.expires > now:
                break
            del records[pid]
            self._entries -= oldest.size
