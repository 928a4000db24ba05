"""Pure parts of the bench: wire dialects, statistics, the report (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import report
from rfc6455 import (
    BINARY,
    PING,
    TEXT,
    FrameReader,
    MarkerCounter,
    ProtocolError,
    StampReader,
    encode_frame,
    handshake_request,
    parse_handshake_response,
)
from stats import latency_summary, percentile
from wire import DELIVERY_MARKER, DIALECTS, FILLER, delivery_time, is_delivery, publish_payload


def test_wsforge_publish_is_an_envelope_v1_request() -> None:
    """The raw peers and the generated server read the same request."""
    frame = orjson.loads(DIALECTS["wsforge"].publish("chat:bench", 7, {"t": 1}))
    assert {k: frame[k] for k in ("v", "type", "action", "id", "channel")} == {
        "v": 1,
        "type": "request",
        "action": "publish",
        "id": "p7",
        "channel": "chat:bench",
    }


def test_delivery_time_reads_the_publishers_timestamp() -> None:
    """A delivered event is recognised and its ``t`` read without a JSON parse."""
    event = orjson.dumps({"type": "event", "seq": 3, "payload": publish_payload(123456789)})
    assert (is_delivery(event), delivery_time(event)) == (True, 123456789)
    assert (is_delivery(b'{"type":"response","id":"p1"}'), delivery_time(b"{}")) == (False, -1)


def test_socketio_dialect_joins_the_namespace_and_answers_pings() -> None:
    """Engine.IO open -> ``40``; namespace ack -> ready; ping ``2`` -> pong ``3``."""
    sio = DIALECTS["socketio"]
    assert sio.on_open(b'0{"sid":"x","pingInterval":25000}') == (False, b"40")
    assert sio.on_open(b'40{"sid":"y"}') == (True, None)
    assert sio.control_reply(b"2") == b"3"
    assert sio.subscribe("c", 1) == b'421["subscribe",{"channel":"c"}]'


def test_percentiles_pick_nearest_rank() -> None:
    """p50 of 1..101 is 51; an empty sample gives NaN, not an exception."""
    values = [float(v) for v in range(1, 102)]
    assert percentile(values, 50) == 51.0
    assert percentile([], 50) != percentile([], 50)


def test_latency_summary_reports_milliseconds_and_a_cdf() -> None:
    """Samples are nanoseconds; the summary is in milliseconds with a CDF grid for plots."""
    summary = latency_summary([1_000_000] * 99 + [50_000_000])
    assert (summary["p50_ms"], summary["max_ms"], summary["n"]) == (1.0, 50.0, 100)
    cdf = summary["cdf_ms"]
    assert isinstance(cdf, list) and cdf[-1] == [100.0, 50.0]


def _fake_results(fanout_rate: dict[str, float]) -> dict[str, object]:
    def fan(rate: float) -> dict[str, object]:
        lat = latency_summary([500_000, 700_000, 900_000])
        return {
            "saturated": {"deliveries_per_s": rate, "per_server_cpu_s": rate * 1.1, "server_cpu_pct": 90,
                          "core_busy_pct": [99, 60], "loadgen_cpu_pct": 60, "undelivered_after_drain": 0},
            "latency": [{"load": 0.5, "all": lat, "undelivered_after_drain": 0},
                        {"load": "slow", "all": lat, "undelivered_after_drain": 0}],
        }  # fmt: skip

    names = list(fanout_rate)
    return {
        "command": "python bench/run.py --quick",
        "quick": True,
        "repeats": 1,
        "started": "20260101T000000Z",
        "environment": report.environment(),
        "subjects": [{"name": n, "title": n.upper(), "dialect": "wsforge"} for n in names],
        "workloads": [{"name": "fanout-1000", "title": "Fan-out", "notes": []}],
        "runs": [
            {"workload": "fanout-1000", "pass": "main", "subject": n, "repeat": 0, "result": fan(r)}
            for n, r in fanout_rate.items()
        ],
    }


def test_report_writes_tables_ratios_targets_and_a_png(tmp_path: Path) -> None:
    """The generated server is the reference; ratios > 1 mean it is ahead."""
    data = _fake_results({"wsforge": 200_000.0, "picows": 100_000.0, "ws-node": 50_000.0})
    text = report.write(json.loads(json.dumps(data)), tmp_path).read_text()
    assert "| fanout-1000 | deliveries/s (saturated) | 2.00x | 4.00x |" in text
    assert "| fanout-1000 | deliveries per server-CPU-second | 2x picows | 2.00x met |" in text
    assert "| fanout-1000 | deliveries per server-CPU-second | 3x ws-node | 4.00x met |" in text
    assert (tmp_path / "plots" / "fanout-1000.png").read_bytes().startswith(b"\x89PNG")


def test_report_without_the_generated_server_leaves_targets_pending(tmp_path: Path) -> None:
    """Peers alone are compared with the first one; targets wait for the generated subject."""
    text = report.write(_fake_results({"picows": 100_000.0, "ws-node": 50_000.0}), tmp_path).read_text()
    assert "| fanout-1000 | deliveries/s (saturated) | 2.00x |" in text
    assert "_Not evaluated: the generated server was not part of this run._" in text


def test_targets_show_each_repeats_comparison_beside_the_median(tmp_path: Path) -> None:
    """With several repeats, a target cell also lists the comparison within each repeat."""
    data = _fake_results({"wsforge": 200_000.0, "picows": 100_000.0})
    runs = data["runs"]
    assert isinstance(runs, list)
    for repeat, ours in ((1, 150_000.0), (2, 300_000.0)):
        for run in list(runs[:2]):
            again = json.loads(json.dumps(run))
            again["repeat"] = repeat
            if again["subject"] == "wsforge":
                again["result"]["saturated"]["per_server_cpu_s"] = ours * 1.1
            runs.append(again)
    data["repeats"] = 3
    text = report.write(json.loads(json.dumps(data)), tmp_path).read_text()
    assert (
        "| fanout-1000 | deliveries per server-CPU-second | 2x picows | 2.00x met (2.00x / 1.50x / 3.00x) |"
        in text
    )
    assert "the same comparison within each repeat" in text


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked frame as a server writes it, in the shortest length encoding."""
    n = len(payload)
    first = bytes(((0x80 if fin else 0) | opcode,))
    if n < 126:
        return first + bytes((n,)) + payload
    if n < 1 << 16:
        return first + bytes((126,)) + n.to_bytes(2, "big") + payload
    return first + bytes((127,)) + n.to_bytes(8, "big") + payload


def test_frame_reader_takes_all_three_length_encodings_split_anywhere() -> None:
    """7-bit, 16-bit and 64-bit lengths, several frames per read, and reads cut at every byte."""
    messages = [(TEXT, b"a" * 5), (TEXT, b"b" * 300), (BINARY, b"c" * 70_000), (PING, b"p")]
    stream = b"".join(_server_frame(op, body) for op, body in messages)
    assert list(FrameReader().feed(stream)) == messages
    for cut in range(0, len(stream), 997):
        reader = FrameReader()
        got = list(reader.feed(stream[:cut])) + list(reader.feed(stream[cut:]))
        assert got == messages and reader.pending == b""


def test_frame_reader_reassembles_fragments_around_a_ping() -> None:
    """A fragmented text message comes out whole; a ping between its fragments comes out first."""
    stream = _server_frame(TEXT, b"hel", fin=False) + _server_frame(PING, b"") + _server_frame(0x0, b"lo")
    assert list(FrameReader().feed(stream)) == [(PING, b""), (TEXT, b"hello")]


@pytest.mark.parametrize(
    "frame",
    [b"\x81\x81abcdx", b"\xc1\x01x", b"\x83\x01x", b"\x09\x00", b"\x80\x01x"],
    ids=["masked", "rsv1", "reserved-opcode", "fragmented-ping", "orphan-continuation"],
)
def test_frame_reader_refuses_what_a_server_must_not_send(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(FrameReader().feed(frame))


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    """RFC 6455 §5.3: the mask bit is set and XOR with the key gives the payload back."""
    for body in (b"", b"x" * 125, b"y" * 126, b"z" * 65_536):
        frame = encode_frame(TEXT, body)
        code = frame[1] & 0x7F
        header = 4 if code == 126 else 10 if code == 127 else 2
        assert frame[0] == 0x81 and frame[1] & 0x80
        key, masked = frame[header : header + 4], frame[header + 4 :]
        assert bytes(b ^ key[i % 4] for i, b in enumerate(masked)) == body


def test_handshake_checks_the_accept_value() -> None:
    request, accept = handshake_request("127.0.0.1", 9, "/ws?x=1")
    assert request.startswith(b"GET /ws?x=1 HTTP/1.1\r\n") and b"Sec-WebSocket-Version: 13" in request
    parse_handshake_response(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " + accept, accept)
    with pytest.raises(ProtocolError):
        parse_handshake_response(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope", accept)
    with pytest.raises(ConnectionRefusedError):
        parse_handshake_response(b"HTTP/1.1 403 Forbidden", accept)


def test_marker_counter_counts_each_delivery_once_however_reads_are_cut() -> None:
    """Every split of a stream of events, including inside the marker, gives the exact count."""
    event = orjson.dumps({"type": "event", "seq": 1, "payload": publish_payload(123)})
    stream = b"".join(_server_frame(TEXT, event) for _ in range(7)) + _server_frame(TEXT, b'{"ts":1}')
    assert stream.count(DELIVERY_MARKER) == 7
    for size in (1, 2, 3, 4, 5, 64, len(stream)):
        counter = MarkerCounter(DELIVERY_MARKER)
        assert sum(counter.feed(stream[i : i + size]) for i in range(0, len(stream), size)) == 7


def test_stamp_reader_reads_each_send_time_once_however_reads_are_cut() -> None:
    """Every split of a stream, inside the marker or the digits, gives each whole number once."""
    times = [7, 123, 1_700_000_000_123_456_789, 42, 18_446_744_073_709_551_615, 9]
    stream = b"".join(
        _server_frame(TEXT, orjson.dumps({"type": "event", "seq": i, "payload": publish_payload(t)}))
        for i, t in enumerate(times)
    ) + _server_frame(TEXT, b'{"type":"response","ts":5}')
    for size in (1, 2, 3, 4, 5, 7, 23, 24, 25, 64, len(stream)):
        reader = StampReader(DELIVERY_MARKER)
        read = [t for i in range(0, len(stream), size) for t in reader.feed(stream[i : i + size])]
        assert read == times, size
    assert StampReader(DELIVERY_MARKER).feed(b'{"t":12') == []  # not yet known to be whole
    with pytest.raises(ValueError):
        StampReader(b"")


def test_the_request_template_is_the_publish_it_stands_for() -> None:
    """The formatted request/ack frame is byte for byte what ``publish`` serialises."""
    wsforge = DIALECTS["wsforge"]
    assert wsforge.request("room:rr1", 42) == wsforge.publish("room:rr1", 42, {"text": FILLER})


def test_the_ping_template_is_the_protocols_ping() -> None:
    """``reqrep --action ping`` sends envelope v1's ping; the Socket.IO dialect has none."""
    assert orjson.loads(DIALECTS["wsforge"].ping(7) or b"") == {
        "v": 1,
        "type": "request",
        "action": "ping",
        "id": "p7",
    }
    assert DIALECTS["socketio"].ping(7) is None


def test_a_request_only_peer_sits_out_the_fanout_and_socketio_the_ping() -> None:
    """run.py skips the pairs that cannot run: the minimal peer never delivers, Socket.IO has no ping."""
    from run import takes_part
    from subjects import PEERS
    from workloads import build

    workloads = build(quick=True)
    assert not takes_part(PEERS["picows-json"], workloads["fanout-100"])
    assert takes_part(PEERS["picows-json"], workloads["reqrep-ping"])
    assert not takes_part(PEERS["socketio"], workloads["reqrep-ping"])
    assert takes_part(PEERS["socketio"], workloads["reqrep"])
