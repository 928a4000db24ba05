"""Pure parts of the bench: wire dialects, statistics, the report (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import report
from stats import latency_summary, percentile
from wire import DIALECTS, delivery_time, is_delivery, publish_payload


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
