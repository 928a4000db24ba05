"""The generated server's recorder (redaction, rotation) and `wsforge replay` against it."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.probe.conftest import SECRET, generated_server
from tests.probe.servers import UNIT
from wsforge.cli import main
from wsforge.probe.replay import load_recording, replay

REPO = Path(__file__).resolve().parents[2]
ORIGIN = "http://localhost:8000"


def _recorder_module() -> ModuleType:
    path = REPO / "templates" / "project" / "src" / "__package__" / "recorder.py"
    spec = importlib.util.spec_from_file_location("wsforge_test_recorder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")


async def _chat(url: str) -> str:
    """One scripted session: subscribe, publish twice, refresh the token. Returns the token used."""
    token = _token("alice")
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, origin=ORIGIN) as ws:  # type: ignore[arg-type]
        requests = [
            {"v": 1, "type": "request", "action": "subscribe", "id": "1", "channel": "room:lobby"},
            {
                "v": 1,
                "type": "request",
                "action": "publish",
                "id": "2",
                "channel": "room:lobby",
                "payload": {"t": "hi"},
            },
            {
                "v": 1,
                "type": "request",
                "action": "publish",
                "id": "3",
                "channel": "room:lobby",
                "payload": {"t": "yo"},
            },
            {"v": 1, "type": "request", "action": "auth.refresh", "id": "4", "payload": {"token": token}},
        ]
        for request in requests:
            await ws.send(json.dumps(request))
            await asyncio.sleep(0.05)
        ids: set[str] = set()
        while len(ids) < len(requests):
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))
            if reply.get("type") in ("response", "error"):
                ids.add(reply["id"])
    return token


def test_recorder_redacts_and_rotates(tmp_path: Path) -> None:
    """Secret fields and JWT-looking strings never reach the file; it rotates at max_bytes."""
    recorder_module = _recorder_module()
    path = tmp_path / "rec" / "flows.jsonl"
    recorder = recorder_module.Recorder(
        path, max_bytes=400, backups=2, redact_fields=frozenset({"card"}), clock=lambda: 1.0
    )
    token = _token("bob")
    recorder.opened("c1", "bob", "wsforge.v1.json")
    for index in range(10):
        frame = {"id": str(index), "payload": {"token": token, "card": "4111", "note": f"Bearer {token}"}}
        recorder.inbound("c1", json.dumps(frame).encode())
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["flows.jsonl", "flows.jsonl.1", "flows.jsonl.2"]
    text = "".join(p.read_text(encoding="utf-8") for p in path.parent.iterdir())
    assert token not in text and "4111" not in text
    assert all(p.stat().st_size <= 400 for p in path.parent.iterdir())
    line = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert line["frame"]["payload"] == {
        "token": "[redacted]",
        "card": "[redacted]",
        "note": "Bearer [redacted]",
    }


def test_recorder_filters_by_channel_and_connection(tmp_path: Path) -> None:
    """Only the configured namespaces and connections are written."""
    recorder = _recorder_module().Recorder.from_env(
        {
            "WS_RECORD_PATH": str(tmp_path / "r.jsonl"),
            "WS_RECORD_CHANNELS": "room",
            "WS_RECORD_CONNECTIONS": "alice",
        }
    )
    assert recorder is not None
    recorder.opened("c1", "alice", None)
    recorder.opened("c2", "bob", None)
    recorder.inbound("c1", b'{"channel":"room:a"}')
    recorder.inbound("c1", b'{"channel":"user:alice"}')
    recorder.inbound("c2", b'{"channel":"room:a"}')
    events = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["conn"], e["dir"]) for e in events] == [("c1", "open"), ("c1", "in")]
    assert _recorder_module().Recorder.from_env({}) is None


def test_record_then_replay_matches(chat_project: Path, tmp_path: Path) -> None:
    """A session recorded on one server replays on a fresh one with identical answers."""
    recording = tmp_path / "flows.jsonl"
    with generated_server(chat_project, SECRET, WS_RECORD_PATH=str(recording)) as url:
        token = asyncio.run(_chat(url))
    text = recording.read_text(encoding="utf-8")
    assert token not in text and "[redacted]" in text
    directions = [json.loads(line)["dir"] for line in text.splitlines()]
    assert directions[0] == "open" and directions[-1] == "close"
    assert directions.count("in") == 4

    sessions = load_recording(recording)
    assert len(sessions) == 1 and sessions[0].user == "alice"
    with generated_server(chat_project, SECRET) as url:
        result = asyncio.run(
            replay(sessions, url, speed=20, jwt_secret=SECRET, origin=ORIGIN, settle_s=2 * UNIT)
        )
        assert result.errors == []
        assert result.differences == []
        assert result.frames_expected == result.frames_received
    with generated_server(chat_project, SECRET) as url:
        args = ["replay", str(recording), url, "--as-fast", "--jwt-secret", SECRET, "--origin", ORIGIN]
        assert main(args) == 0
        # The channel now holds the replayed messages, so a second replay sees other seqs.
        assert main(args) == 3


def test_replay_reports_where_answers_differ(chat_project: Path, tmp_path: Path) -> None:
    """Against a server configured differently (tiny payload cap) the first differing frame is shown."""
    recording = tmp_path / "flows.jsonl"
    with generated_server(chat_project, SECRET, WS_RECORD_PATH=str(recording)) as url:
        asyncio.run(_chat(url))
    with generated_server(chat_project, SECRET, WS_AUTH_MODE="none") as url:
        sessions = load_recording(recording)
        result = asyncio.run(replay(sessions, url, speed=None, origin=ORIGIN, settle_s=2 * UNIT))
        assert len(result.differences) == 1
        assert main(["replay", str(recording), url, "--as-fast", "--origin", ORIGIN, "--format", "json"]) == 3


def test_unreadable_recording_is_a_user_error(tmp_path: Path) -> None:
    """A line that is not a recorder event names the file and line (exit 1)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1, "conn": "c", "dir": "in", "frame": {}}\nnot json\n', encoding="utf-8")
    assert main(["replay", str(bad), "ws://127.0.0.1:9/ws"]) == 1


@pytest.mark.parametrize("value", [{"ts": 1, "epoch": "x", "a": [{"ts": 2, "b": 1}]}])
def test_normalize_drops_volatile_keys(value: dict[str, object]) -> None:
    """Timestamps and epochs never count as differences."""
    from wsforge.probe.replay import normalize

    assert normalize(value) == {"a": [{"b": 1}]}


async def _two_clients(url: str) -> None:
    """alice and bob: alice subscribes, bob subscribes (alice sees him join), alice publishes, alice leaves."""
    origin = Origin(ORIGIN)
    alice = await connect(
        url, additional_headers={"Authorization": f"Bearer {_token('alice')}"}, origin=origin
    )
    bob = await connect(url, additional_headers={"Authorization": f"Bearer {_token('bob')}"}, origin=origin)

    async def receive(ws: ClientConnection, frames: int) -> None:
        for _ in range(frames):
            await asyncio.wait_for(ws.recv(), 5 * UNIT)

    async def request(ws: ClientConnection, frame: dict[str, object], answers: int) -> None:
        await ws.send(json.dumps(frame))
        await receive(ws, answers)

    subscribe = {"v": 1, "type": "request", "action": "subscribe", "id": "1", "channel": "room:lobby"}
    await request(alice, subscribe, 1)
    await request(bob, subscribe, 1)
    await receive(alice, 1)  # alice's presence.join for bob
    publish = {
        "v": 1,
        "type": "request",
        "action": "publish",
        "id": "2",
        "channel": "room:lobby",
        "payload": {"t": "hi"},
    }
    await request(alice, publish, 2)  # its message event and its response
    await receive(bob, 1)  # the message event
    await alice.close()
    await receive(bob, 1)  # bob's presence.leave for alice
    await bob.close()


def test_two_clients_replay_on_a_restarted_server_without_differences(
    chat_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cross-session order is kept (bob's subscribe is answered seq 0, after alice's), at pace and --as-fast."""
    recording = tmp_path / "flows.jsonl"
    with generated_server(chat_project, SECRET, WS_RECORD_PATH=str(recording)) as url:
        asyncio.run(_two_clients(url))
    sessions = load_recording(recording)
    assert sorted(s.user or "" for s in sessions) == ["alice", "bob"]
    common = ["--jwt-secret", SECRET, "--origin", ORIGIN, "--settle", str(2 * UNIT)]
    for pace in ([], ["--as-fast"]):
        with generated_server(chat_project, SECRET) as url:  # the same server, restarted
            capsys.readouterr()
            assert main(["replay", str(recording), url, *pace, *common]) == 0, capsys.readouterr().out
            out = capsys.readouterr().out
            assert "2 session(s), 3 frame(s) sent, 7/7 answer(s), 0 session(s) differ" in out, out


def test_two_clients_replay_still_reports_a_real_divergence(
    chat_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A recording whose server answered differently (here: the message text) is reported, exit 3."""
    recording = tmp_path / "flows.jsonl"
    with generated_server(chat_project, SECRET, WS_RECORD_PATH=str(recording)) as url:
        asyncio.run(_two_clients(url))
    lines = recording.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    bob = next(e["conn"] for e in events if e["dir"] == "open" and e["user"] == "bob")
    for event in events:
        frame = event.get("frame") or {}
        if event["conn"] == bob and event["dir"] == "out" and frame.get("action") == "message":
            frame["payload"] = {"t": "what bob saw in production"}
    recording.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    with generated_server(chat_project, SECRET) as url:
        args = ["replay", str(recording), url, "--as-fast", "--jwt-secret", SECRET, "--origin", ORIGIN]
        assert main([*args, "--format", "json"]) == 3
    result = json.loads(capsys.readouterr().out)
    [difference] = result["differences"]
    assert difference["conn"] == bob
    assert difference["expected"]["payload"] == {"t": "what bob saw in production"}
    assert difference["got"]["payload"] == {"t": "hi"}
