"""Every example's generated ``asyncapi.yaml`` passes the real AsyncAPI tooling, and the other
project-level documents (README, .env.example, Dockerfile) match the generated code.

The AsyncAPI CLI (``@asyncapi/cli``, Node) is installed with npm into a cache directory the first
time (about two minutes) and reused afterwards. Without Node/npm or a reachable npm registry the
validation tests skip on a developer machine and FAIL under ``CI=true``, where a silent skip would
hide a broken template. The structural tests below need no Node at all.
"""

from __future__ import annotations

import ast
import fcntl
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wsforge.architecture import design
from wsforge.memory import Conventions, MemoryEntry
from wsforge.render import render_project
from wsforge.requirements import load_requirements
from wsforge.spec import ArchitectureSpec

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SOCKETIO = "+socketio"
"""Suffix of a document variant whose project also serves Socket.IO clients (memory convention
``client_protocol: socketio``): no example asks for it, the matrix's chat-msgpack and market-feed do."""
DOCUMENTS = [
    *EXAMPLES,
    REPO / "examples" / f"chat.yaml{SOCKETIO}",
    REPO / "examples" / f"market-feed.yaml{SOCKETIO}",
]
CLI_PACKAGE = "@asyncapi/cli@4.1.1"
"""Pinned: the CLI's rule set changes between releases, and a template must not break overnight."""
INSTALL_TIMEOUT_S = 900
VALIDATE_TIMEOUT_S = 120


def _cache_dir() -> Path:
    configured = os.environ.get("WSFORGE_NODE_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "wsforge-node"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"AsyncAPI CLI unavailable under CI: {reason}")
    pytest.skip(f"AsyncAPI CLI unavailable: {reason}")


@pytest.fixture(scope="session")
def asyncapi_cli() -> Path:
    """Path of the ``asyncapi`` executable, installing the pinned CLI on first use.

    pytest-xdist's workers share the cache directory: the first one installs under an exclusive
    lock while the others wait, and the install counts as done only once its marker is written
    (a half-installed ``node_modules`` has the binary already)."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _installed(cache)


def _installed(cache: Path) -> Path:
    binary = cache / "node_modules" / ".bin" / "asyncapi"
    done = cache / f".installed-{CLI_PACKAGE.replace('/', '_')}"
    if binary.exists() and done.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("node and npm are not installed")
    assert npm is not None
    if not (cache / "package.json").exists():
        (cache / "package.json").write_text('{"name": "wsforge-node-cache", "private": true}\n')
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", CLI_PACKAGE],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"npm install {CLI_PACKAGE} took longer than {INSTALL_TIMEOUT_S} s")
    if proc.returncode != 0 or not binary.exists():
        _unavailable(f"npm install {CLI_PACKAGE} failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    # Without this every run tries to send anonymous metrics and prints the failure.
    subprocess.run([str(binary), "config", "analytics", "--disable"], capture_output=True, timeout=60)
    done.write_text(CLI_PACKAGE + "\n")
    return binary


def _validate(cli: Path, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cli), "validate", "--fail-severity", "warn", str(document)],
        capture_output=True,
        text=True,
        timeout=VALIDATE_TIMEOUT_S,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )


@functools.cache
def _spec(example: Path) -> ArchitectureSpec:
    if example.name.endswith(SOCKETIO):
        answers = example.with_name(example.name.removesuffix(SOCKETIO))
        req = load_requirements(answers)
        memory = MemoryEntry(project=req.project_name, conventions=Conventions(client_protocol="socketio"))
        return design(req, memory)
    return design(load_requirements(example))


def _stem(example: Path) -> str:
    stem = example.name.removesuffix(SOCKETIO).removesuffix(".yaml")
    return stem + SOCKETIO if example.name.endswith(SOCKETIO) else stem


@functools.cache
def _files(example: Path) -> dict[str, str]:
    """The rendered project, once per example (rendering runs ruff format: seconds, not ms)."""
    return {path: data.decode() for path, data in render_project(_spec(example)).items()}


def _asyncapi_text(example: Path) -> str:
    return _files(example)["asyncapi.yaml"]


@pytest.mark.slow  # the Node AsyncAPI CLI (installed with npm on first use)
@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_generated_asyncapi_validates(example: Path, asyncapi_cli: Path, tmp_path: Path) -> None:
    """`asyncapi validate` finds no error or warning in the example's generated document."""
    document = tmp_path / "asyncapi.yaml"
    document.write_text(_asyncapi_text(example))
    result = _validate(asyncapi_cli, document)
    assert result.returncode == 0, f"{example.name}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow  # the Node AsyncAPI CLI (installed with npm on first use)
def test_validator_rejects_a_broken_document(asyncapi_cli: Path, tmp_path: Path) -> None:
    """The harness can fail: a dangling message reference is reported as an error."""
    data = yaml.safe_load(_asyncapi_text(REPO / "examples" / "chat.yaml"))
    del data["components"]["messages"]["PingRequest"]
    document = tmp_path / "asyncapi.yaml"
    document.write_text(yaml.safe_dump(data, sort_keys=False))
    result = _validate(asyncapi_cli, document)
    assert result.returncode != 0
    assert "PingRequest" in result.stdout + result.stderr


# --- structure, without Node ---------------------------------------------------------------------


def _document(example: Path) -> tuple[ArchitectureSpec, dict[str, Any]]:
    return _spec(example), yaml.safe_load(_asyncapi_text(example))


@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_every_namespace_is_a_parameterized_channel(example: Path) -> None:
    """One channel per namespace, addressed `<ns><sep>{name}`, plus the socket itself."""
    spec, doc = _document(example)
    sep = spec.channels.separator
    expected = {ns.name: f"{ns.name}{sep}{{name}}" for ns in spec.channels.namespaces}
    expected["connection"] = spec.protocol.path
    if spec.socketio.enabled:
        expected["socketio"] = "/"  # Socket.IO's main namespace, on the socketio server
    assert expected == {name: channel["address"] for name, channel in doc["channels"].items()}


@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_channel_messages_follow_namespace_policy(example: Path) -> None:
    """Publish, presence and history messages appear exactly where the namespace enables them."""
    spec, doc = _document(example)
    for ns in spec.channels.namespaces:
        messages = set(doc["channels"][ns.name]["messages"])
        assert ns.client_publish == ("publishRequest" in messages), ns.name
        assert ns.presence == ("presenceJoin" in messages), ns.name
        assert (ns.history_size > 0) == ("historyRequest" in messages), ns.name
        # resync is sent on every namespace: a resume on one without history gets `no_history`.
        assert {"subscribeRequest", "message", "resync", "error"} <= messages


@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_every_request_operation_declares_its_reply(example: Path) -> None:
    """Each `receive` operation names the response and the error that answer it."""
    _, doc = _document(example)
    for name, operation in doc["operations"].items():
        if operation["action"] == "receive":
            replies = [m["$ref"].rsplit("/", 1)[-1] for m in operation["reply"]["messages"]]
            if name.startswith("socketio_"):  # the acknowledgement's argument: the result, or {error}
                assert replies == [name.removeprefix("socketio_") + "Ack", "ackError"], name
                continue
            assert replies[-1] == "error", name
            assert replies[0].endswith("Response"), name


@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_envelope_uses_the_specs_wire_names(example: Path) -> None:
    """Message schemas spell envelope fields the way the spec's envelope maps them."""
    spec, doc = _document(example)
    env = spec.envelope
    event = doc["components"]["messages"]["MessageEvent"]["payload"]
    assert {env.v, env.type, env.action, env.channel, env.payload, env.seq, env.ts, env.sender} <= set(
        event["properties"]
    )
    assert spec.auth.mode == "none" or doc["servers"]["local"]["security"]


@pytest.mark.parametrize("example", DOCUMENTS, ids=_stem)
def test_socketio_face_is_documented_exactly_when_served(example: Path) -> None:
    """A Socket.IO project documents its server, the main namespace's channel with every event
    the bridge maps (socketio/bridge.py) and an ack for each request; a native-only one none of it."""
    spec, doc = _document(example)
    own = [name for name in doc["components"]["messages"] if name.startswith("SocketIO")]
    if not spec.socketio.enabled:
        assert "socketio" not in doc["servers"] and "socketio" not in doc["channels"] and own == []
        return
    assert doc["servers"]["socketio"]["pathname"] == spec.socketio.path
    for name, channel in doc["channels"].items():
        server = "socketio" if name == "socketio" else "local"
        assert channel["servers"] == [{"$ref": f"#/servers/{server}"}], name
    query = doc["channels"]["socketio"]["bindings"]["ws"]["query"]
    assert query["properties"]["EIO"]["const"] == "4" and query["required"] == ["EIO", "transport"]
    messages = doc["components"]["messages"]
    listed = [ref["$ref"].rsplit("/", 1)[-1] for ref in doc["channels"]["socketio"]["messages"].values()]
    assert sorted(listed) == sorted(own)
    namespaces = spec.channels.namespaces
    requests = {"subscribe", "unsubscribe", "rpc", "ping"}
    requests |= {"publish"} if any(ns.client_publish for ns in namespaces) else set()
    requests |= {"presence"} if any(ns.presence for ns in namespaces) else set()
    requests |= {"history"} if any(ns.history_size for ns in namespaces) else set()
    requests |= {"auth.refresh"} if spec.auth.mode != "none" else set()
    events = {"message", "resync", "error"}
    events |= {"presence.join", "presence.leave"} if any(ns.presence for ns in namespaces) else set()
    if spec.server_api.enabled or spec.publisher.kind == "broker":
        events |= {"subscription.added", "subscription.removed"}
    acked = {messages[name]["name"] for name in own if "x-ack" in messages[name]}
    assert acked == requests
    acks = {f"{r}.ack" for r in requests} | {"ack.error"}
    assert {messages[name]["name"] for name in own} == requests | events | acks


# --- the other project-level files: README, .env.example, Dockerfile ------------------------------
# (kept here, next to the AsyncAPI checks, because they are the same kind of promise: the generated
# documentation says what the generated code does.)

_WS_VAR = re.compile(r"\bWS_[A-Z0-9_]+\b")


def _rendered(example: Path) -> tuple[ArchitectureSpec, dict[str, str]]:
    return _spec(example), _files(example)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_readme_and_env_example_document_every_environment_variable(example: Path) -> None:
    """Every WS_* variable the server code reads appears in README.md and .env.example."""
    spec, files = _rendered(example)
    code = "\n".join(text for path, text in files.items() if path.startswith("src/") and path.endswith(".py"))
    variables = set(_WS_VAR.findall(code)) | {spec.auth.secret_env}
    assert variables, "no WS_* variables found in the generated code"
    for name in ("README.md", ".env.example"):
        missing = sorted(v for v in variables if v not in files[name])
        assert missing == [], f"{name} does not mention {missing}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_readme_quickstart_is_two_commands(example: Path) -> None:
    """The quickstart is one command that installs and runs the server and one that runs the tests."""
    spec, files = _rendered(example)
    section = files["README.md"].split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    commands = [block.strip() for block in blocks]
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    assert commands[0].endswith(f".venv/bin/python -m {spec.package}")
    assert commands[1] == ".venv/bin/pytest"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_readme_python_example_compiles(example: Path) -> None:
    """The Python client example in the README is valid Python importing the real package."""
    spec, files = _rendered(example)
    (snippet,) = re.findall(r"```python\n(.*?)```", files["README.md"], flags=re.S)
    ast.parse(snippet)
    assert f"from {spec.package}.client import Client" in snippet


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_dockerfile_runs_the_package_unprivileged_with_a_healthcheck(example: Path) -> None:
    """python:3.11-slim base, a non-root USER before CMD, a HEALTHCHECK on /healthz."""
    spec, files = _rendered(example)
    lines = [line.strip() for line in files["Dockerfile"].splitlines()]
    assert "FROM python:3.11-slim" in lines
    user = next(i for i, line in enumerate(lines) if line.startswith("USER "))
    cmd = max(i for i, line in enumerate(lines) if line.startswith("CMD "))  # not HEALTHCHECK's
    assert lines[user] != "USER root" and user < cmd
    assert f'CMD ["python", "-m", "{spec.package}"]' == lines[cmd]
    healthcheck = files["Dockerfile"].split("HEALTHCHECK", 1)[1].split("\nCMD", 1)[0]
    assert "/healthz" in healthcheck
    for path in ("pyproject.toml", "README.md", "static"):
        assert any(path in line for line in lines if line.startswith("COPY ")), path


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_dockerfile_compiles_the_throughput_projects(example: Path) -> None:
    """A builder stage makes the wheel, compiled with mypyc by default when step 2 chose picows."""
    spec, files = _rendered(example)
    lines = [line.strip() for line in files["Dockerfile"].splitlines()]
    default = "true" if spec.transport == "picows" else "false"
    assert next(line for line in lines if line.startswith("ARG ")) == f"ARG MYPYC={default}"
    assert [line for line in lines if line.startswith("FROM ")] == [
        "FROM python:3.11-slim AS build",
        "FROM python:3.11-slim",
    ]
    assert 'RUN HATCH_BUILD_HOOK_ENABLE_MYPYC="$MYPYC" pip wheel --no-deps --wheel-dir /wheels .' in lines
    assert "COPY --from=build /wheels /wheels" in lines
