"""Step 5's design documents, rendered from real specs with the production Jinja setup.

Specs come from :func:`wsforge.architecture.design` on the shipped examples (and once with team
conventions in memory); the context is built by :func:`wsforge.reports.report_context` from a real
:class:`~wsforge.workflow.RunResult`. The assertions are on content and structure, not snapshots:
every decision key, every namespace, every error and close code of the runtime contract, every
``WS_*`` variable of the generated settings, a well-formed Mermaid block and well-formed tables.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from wsforge._resources import templates_dir
from wsforge.architecture import design
from wsforge.memory import SKILL, Conventions, DictMemoryStore, EnvelopeFields, KnownIssue, MemoryEntry
from wsforge.render import jinja_environment, plan_files
from wsforge.reports import COMPONENTS, report_context
from wsforge.requirements import load_requirements
from wsforge.spec import ArchitectureSpec
from wsforge.workflow import RunResult

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CONTRACT = (REPO / "docs" / "runtime-contract.md").read_text(encoding="utf-8")
SETTINGS_TEMPLATE = (REPO / "templates" / "project" / "src" / "__package__" / "settings.py.jinja").read_text(
    encoding="utf-8"
)


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


# Codes are the backticked words, except the ``(+`retry_after_ms`)`` note after rate_limited.
CONTRACT_ERROR_CODES = re.findall(r"(?<!\+)`([a-z_]+)`", _section(CONTRACT, "### Error codes"))
CONTRACT_CLOSE_CODES = [
    int(c) for c in re.findall(r"^\| (\d{4}) \|", _section(CONTRACT, "### Close codes"), re.M)
]
CONTRACT_ACTIONS = ["subscribe", "unsubscribe", "publish", "presence", "history", "ping", "auth.refresh"]
CONTRACT_EVENTS = ["message", "presence.join", "presence.leave", "resync"]
SETTINGS_ENV_VARS = sorted(set(re.findall(r'"(WS_[A-Z_]+)"', SETTINGS_TEMPLATE)))


def test_the_contract_parses_into_what_the_reports_must_cover() -> None:
    # Guards the parsing above: an edit to the contract's layout must not empty these lists.
    assert len(CONTRACT_ERROR_CODES) >= 14 and "rate_limited" in CONTRACT_ERROR_CODES
    assert "retry_after_ms" not in CONTRACT_ERROR_CODES
    assert CONTRACT_CLOSE_CODES[:2] == [1000, 1001] and 4400 in CONTRACT_CLOSE_CODES
    assert "WS_BROKER_URL" in SETTINGS_ENV_VARS and len(SETTINGS_ENV_VARS) >= 20


# --- building real specs and contexts ------------------------------------------------------------


def _memory_with_conventions(project: str) -> MemoryEntry:
    store = DictMemoryStore()
    return store.update(
        SKILL,
        project,
        {
            "conventions": Conventions(
                serialization="msgpack",
                channel_separator=".",
                envelope_fields=EnvelopeFields(type="kind", action="op", payload="data", seq="n"),
                preferred_broker="redis",
                heartbeat_interval_s=20,
                reconnect_cap_s=60,
            ).model_dump(mode="json", exclude_none=True),
            "known_issues": [
                KnownIssue(
                    id="KI-7", summary="proxy drops idle sockets after 30 s", severity="warning"
                ).model_dump(mode="json")
            ],
        },
    )


def _run(example: str, memory: MemoryEntry | None = None) -> RunResult:
    requirements = load_requirements(EXAMPLES / f"{example}.yaml")
    if memory is None:
        memory = DictMemoryStore().get_skill_memory(SKILL, requirements.project_name)
        spec = design(requirements)
    else:
        spec = design(requirements, memory)
    files = {planned.path: b"" for planned in plan_files(spec)}
    return RunResult(requirements, spec, memory, files, Path("/nonexistent") / spec.project, checklist=[])


CASES: dict[str, tuple[str, bool]] = {
    "chat": ("chat", False),
    "market-feed": ("market-feed", False),
    "public-ticker": ("public-ticker", False),
    "iot-telemetry": ("iot-telemetry", False),
    "collaboration+memory": ("collaboration", True),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, RunResult]:
    out = {}
    for case, (example, with_memory) in CASES.items():
        project = load_requirements(EXAMPLES / f"{example}.yaml").project_name
        out[case] = _run(example, _memory_with_conventions(project) if with_memory else None)
    return out


def _render(result: RunResult, component: str, context: dict[str, Any] | None = None) -> str:
    env = jinja_environment(templates_dir() / "reports")
    return env.get_template(f"{component}.md.jinja").render(context or report_context(result))


@pytest.fixture(scope="module")
def docs(runs: dict[str, RunResult]) -> dict[tuple[str, str], str]:
    return {
        (case, component): _render(run, component) for case, run in runs.items() for component in COMPONENTS
    }


def _table_rows(text: str, header_first_cell: str) -> list[list[str]]:
    """The body rows of the first table whose header starts with ``| <header_first_cell> |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_first_cell} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


# --- structure, for every document -----------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("case", list(CASES))
def test_document_structure(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str, component: str
) -> None:
    text = docs[(case, component)]
    project = runs[case].spec.project
    lines = text.splitlines()

    assert lines[0].startswith("# ") and project in lines[0]
    assert sum(1 for line in lines if line.startswith("# ")) == 1, "exactly one H1"
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n\n" not in text, "no runs of blank lines"
    assert not [line for line in lines if line != line.rstrip()], "no trailing whitespace"
    for leftover in ("{{ ", " }}", "{%", "%}", "{#", "#}", "Undefined"):
        assert leftover not in text

    fences = [line for line in lines if line.startswith("```")]
    assert len(fences) % 2 == 0, "code fences are balanced"

    # Every table: header, separator, rows, all with the same number of cells.
    in_fence = False
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            in_fence = not in_fence
        if not in_fence and lines[i].startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            width = len(_cells(lines[i]))
            assert re.fullmatch(r"\|(---\|)+", lines[i + 1]), f"separator after {lines[i]!r}"
            assert len(_cells(lines[i + 1])) == width
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                assert len(_cells(lines[j])) == width, f"row {lines[j]!r} has not {width} cells"
                j += 1
            i = j
            continue
        i += 1


@pytest.mark.parametrize("component", COMPONENTS)
def test_documents_are_deterministic(runs: dict[str, RunResult], component: str) -> None:
    run = runs["collaboration+memory"]
    first = _render(run, component)
    context = report_context(run)
    context["files"] = list(reversed(context["files"]))
    context["memory"]["conventions"] = dict(reversed(list(context["memory"]["conventions"].items())))
    assert _render(run, component, context) == first
    assert _render(_run("collaboration", _memory_with_conventions(run.spec.project)), component) == first


# --- architecture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_architecture_lists_every_decision(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    spec = runs[case].spec
    rows = _table_rows(docs[(case, "architecture")], "key")
    assert [row[0] for row in rows] == [f"`{d.key}`" for d in spec.decisions]
    assert [row[3] for row in rows] == [d.source.value for d in spec.decisions]
    for row, decision in zip(rows, spec.decisions, strict=True):
        assert row[2] == decision.rationale.replace("\n", " ").replace("|", "\\|")


@pytest.mark.parametrize("case", list(CASES))
def test_architecture_mermaid_topology(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    spec = runs[case].spec
    text = docs[(case, "architecture")]
    blocks = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    block = blocks[0]
    lines = [line.strip() for line in block.splitlines()]
    assert lines[0] == "flowchart LR"
    assert sum(line.startswith("subgraph ") for line in lines) == sum(line == "end" for line in lines) == 3
    assert "clients -->" in block and "lb --> instance_1" in block and "broker --- namespaces" in block
    assert f"{spec.scaling.instances} instance(s)" in block
    for env in spec.requirements.client_environments:
        assert f'["{env.value}"]' in block
    for ns in spec.channels.namespaces:
        assert f'["{ns.name}{spec.channels.separator}*' in block
    # Node labels are quoted, so names with ':' or '.' cannot break the syntax.
    for line in lines:
        if "[" in line and not line.startswith(("subgraph", "clients", "lb -->")):
            assert re.search(r'\["|\[\("', line), line
    if spec.scaling.instances > 3:
        assert f"… instance {spec.scaling.instances}" in block


def test_architecture_capacity_section(docs: dict[tuple[str, str], str], runs: dict[str, RunResult]) -> None:
    spec = runs["market-feed"].spec
    rows = dict((row[0], row[1]) for row in _table_rows(docs[("market-feed", "architecture")], "figure"))
    assert rows["instances"] == str(spec.scaling.instances)
    assert rows["connections per instance (capacity)"] == f"{spec.scaling.connections_per_instance:,}"
    assert (
        rows["deliveries per second after fan-out (expected)"]
        == f"{spec.scaling.expected_deliveries_per_second:,}"
    )
    load = (
        100
        * spec.requirements.concurrent_connections
        / (spec.scaling.instances * spec.scaling.connections_per_instance)
    )
    assert rows["connection load at peak"] == f"{load:.0f} % of capacity"


def test_architecture_greenfield_says_so(docs: dict[tuple[str, str], str]) -> None:
    text = docs[("chat", "architecture")]
    assert "Greenfield: there was no memory for this project" in text
    assert "Conventions applied" not in text


def test_architecture_shows_memory_influence(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult]
) -> None:
    run = runs["collaboration+memory"]
    text = docs[("collaboration+memory", "architecture")]
    assert "Greenfield" not in text
    conventions = dict((row[0], row[1]) for row in _table_rows(text, "convention"))
    assert set(conventions) == {f"`{k}`" for k in run.memory.conventions.model_dump(exclude_none=True)}
    assert conventions["`channel_separator`"] == "."
    assert conventions["`envelope_fields`"] == "action=op, payload=data, seq=n, type=kind"
    memory_keys = [d.key for d in run.spec.decisions if d.source.value == "memory"]
    assert memory_keys, "the conventions must have overridden something"
    line = next(line for line in text.splitlines() if line.startswith("Decisions taken from memory"))
    for key in memory_keys:
        assert f"`{key}`" in line
    assert "**KI-7** (warning): proxy drops idle sockets after 30 s" in text


# --- protocol --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_protocol_covers_the_contract(docs: dict[tuple[str, str], str], case: str) -> None:
    text = docs[(case, "protocol")]
    error_rows = [row[0] for row in _table_rows(text, "code")]
    assert error_rows == [f"`{code}`" for code in CONTRACT_ERROR_CODES]
    close_rows = [row[0] for row in _table_rows(_section(text, "## Close codes"), "code")]
    assert close_rows == [str(code) for code in CONTRACT_CLOSE_CODES]
    for action in CONTRACT_ACTIONS:
        assert f"### {action}\n" in text
    assert "### rpc.&lt;name&gt;" in text
    for event in CONTRACT_EVENTS:
        assert f"| `{event}` |" in text
    for status in ("400", "401", "403", "429", "503"):
        assert f"| {status} |" in text


@pytest.mark.parametrize("case", list(CASES))
def test_protocol_subprotocols_and_namespaces(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    spec = runs[case].spec
    text = docs[(case, "protocol")]
    rows = _table_rows(text, "preference")
    assert [row[1] for row in rows] == [f"`{s}`" for s in spec.protocol.subprotocols]
    assert [row[2] for row in rows] == [c.value for c in spec.protocol.codecs]
    namespaces = [row[0] for row in _table_rows(text, "namespace")]
    assert namespaces == [f"`{ns.name}{spec.channels.separator}*`" for ns in spec.channels.namespaces]


def test_protocol_uses_the_envelope_wire_names(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult]
) -> None:
    spec: ArchitectureSpec = runs["collaboration+memory"].spec
    assert spec.envelope.type == "kind" and spec.envelope.seq == "n"
    text = docs[("collaboration+memory", "protocol")]
    wire = {row[0]: row[1] for row in _table_rows(text, "field")}
    for logical, name in spec.envelope.model_dump().items():
        assert wire[logical] == f"`{name}`"
    assert "action, payload, seq, type renamed by a team convention in memory" in text
    examples = "\n".join(re.findall(r"```json\n(.*?)```", text, re.S))
    assert '"kind": "request"' in examples and '"op": "publish"' in examples and '"n": 45' in examples
    assert '"type":' not in examples and '"action":' not in examples
    assert f'"{spec.channels.namespaces[0].name}.lobby"' in examples

    plain = docs[("chat", "protocol")]
    assert "renamed by a team convention" not in plain
    assert '"type": "request"' in plain


def test_protocol_without_auth(docs: dict[tuple[str, str], str], runs: dict[str, RunResult]) -> None:
    assert runs["public-ticker"].spec.auth.mode == "none"
    text = docs[("public-ticker", "protocol")]
    assert "Authentication is off" in text
    assert "Authorization: Bearer" not in text


def test_protocol_json_examples_parse(docs: dict[tuple[str, str], str]) -> None:
    import json

    for (_, component), text in docs.items():
        if component != "protocol":
            continue
        for block in re.findall(r"```json\n(.*?)```", text, re.S):
            for line in block.strip().splitlines():
                assert isinstance(json.loads(line), dict)


# --- server ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_server_lists_the_real_modules_and_settings(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    run = runs[case]
    text = docs[(case, "server")]
    prefix = f"src/{run.spec.package}/"
    expected = sorted(p[len(prefix) :] for p in run.files if p.startswith(prefix) and p.endswith(".py"))
    assert expected, "the plan has package modules"
    assert [row[0] for row in _table_rows(text, "module")] == [f"`{m}`" for m in expected]
    configuration = _section(text, "## Configuration")
    for var in [*SETTINGS_ENV_VARS, run.spec.auth.secret_env]:
        assert f"`{var}`" in configuration, var
    backpressure = _table_rows(_section(text, "## Backpressure"), "namespace")
    assert [(row[0], row[1]) for row in backpressure] == [
        (f"`{ns.name}`", f"`{ns.backpressure.value}`") for ns in run.spec.channels.namespaces
    ]
    for endpoint in ("/healthz", "/readyz", "/metrics"):
        assert f"`GET {endpoint}`" in text
    assert f"ping every {run.spec.heartbeat.interval_s:g} s" in text
    assert f"{run.spec.shutdown.grace_s:g} s (`WS_SHUTDOWN_GRACE_S`)" in text


def test_server_masks_broker_credentials(runs: dict[str, RunResult]) -> None:
    run = runs["market-feed"]
    scaling = run.spec.scaling.model_copy(update={"broker_url": "redis://user:s3cret@redis.internal:6379/0"})
    spec = run.spec.model_copy(update={"scaling": scaling})
    masked = RunResult(run.requirements, spec, run.memory, run.files, run.target, checklist=[])
    for component in COMPONENTS:
        text = _render(masked, component)
        assert "s3cret" not in text
    assert "redis://***@redis.internal:6379/0" in _render(masked, "server")


# --- client ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_client_reconnect_numbers_and_close_codes(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    spec = runs[case].spec
    text = docs[(case, "client")]
    policy = dict((row[0], row[1]) for row in _table_rows(text, "setting"))
    assert policy["base delay"] == f"{spec.reconnect.base_s:g} s"
    assert policy["cap"] == f"{spec.reconnect.cap_s:g} s"
    assert policy["jitter"] == f"`{spec.reconnect.jitter}`"
    assert policy["reset after a connection stayed up for"] == f"{spec.reconnect.reset_after_s:g} s"
    assert policy["offline queue"] == f"{spec.reconnect.offline_queue_size:,} entries"

    ceilings = _table_rows(text, "attempt")[0][1:]
    expected = []
    n = 0
    while True:
        value = min(spec.reconnect.cap_s, spec.reconnect.base_s * 2**n)
        expected.append(f"{value:g} s")
        n += 1
        if value >= spec.reconnect.cap_s:
            break
    assert ceilings == expected

    close_codes = [int(row[0]) for row in _table_rows(_section(text, "## Close codes"), "code")]
    assert set(CONTRACT_CLOSE_CODES) <= set(close_codes)
    decisions = {int(row[0]): row[2] for row in _table_rows(_section(text, "## Close codes"), "code")}
    assert {code for code, d in decisions.items() if d == "stop"} == {1000, 1008, 4003, 4400}
    assert decisions[1013] == "retry later" and decisions[4001] == "reauth"


def test_client_reconnect_cap_from_memory(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult]
) -> None:
    assert runs["collaboration+memory"].spec.reconnect.cap_s == 60
    assert "| cap | 60 s |" in docs[("collaboration+memory", "client")]


def test_client_notes_when_no_browser_is_required(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult]
) -> None:
    for case, run in runs.items():
        browser = "browser" in [e.value for e in run.spec.requirements.client_environments]
        assert ("name no browser clients" in docs[(case, "client")]) is not browser


# --- testing and alternatives (issue 20 item 14) ---------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_architecture_lists_what_step_2_rejected(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    """Every alternative the spec records is a row of "Alternatives considered"; transport, broker
    strategy and serialization always have some."""
    spec = runs[case].spec
    rows = _table_rows(_section(docs[(case, "architecture")], "## Alternatives considered"), "decision")
    shown = {(row[0].strip("`"), row[2]) for row in rows}
    recorded = {(d.key, option) for d in spec.decisions for option in d.alternatives}
    assert recorded == shown
    with_alternatives = {d.key for d in spec.decisions if d.alternatives}
    assert {"transport", "scaling.strategy"} <= with_alternatives
    assert "serialization" in with_alternatives or case == "collaboration+memory"  # a convention decided it


@pytest.mark.parametrize("case", list(CASES))
def test_documents_say_how_the_system_is_tested(
    docs: dict[tuple[str, str], str], runs: dict[str, RunResult], case: str
) -> None:
    """A Testing section in each design document; the test modules it names are generated files,
    and the architecture document covers the generated tests, the load test, probe and replay."""
    generated = {Path(path).stem for path in runs[case].files if path.startswith("tests/")}
    for component in ("architecture", "server", "client", "protocol"):
        section = _section(docs[(case, component)], "## Testing")
        named = set(re.findall(r"`(?:tests/)?(test_[a-z_]+)(?:\.py)?`", section))
        assert named and named <= generated, (component, named - generated)
    architecture = _section(docs[(case, "architecture")], "## Testing")
    for needle in (
        "pytest",
        "loadtest/loadgen.py",
        "wsforge probe",
        "wsforge replay",
        "WS_RECORD_PATH",
        "CI=true",
    ):
        assert needle in architecture, needle


# --- the application's front door (issue 22) ----------------------------------------------------

CURL = 'curl -sS -X POST http://127.0.0.1:8766/api/publish -H "X-API-Key: $KEY"'


def _front_door_run(conventions: dict[str, Any]) -> RunResult:
    memory = DictMemoryStore().update(SKILL, "chat-demo", {"conventions": conventions})
    return _run("chat", memory)


@pytest.mark.parametrize(
    ("case", "channel", "library"),
    [
        ("public-ticker", "feed:lobby", False),
        ("market-feed", "feed:lobby", True),
        ("chat", "user:alice", False),
    ],
)
def test_server_document_shows_a_backend_publishing_end_to_end(
    docs: dict[tuple[str, str], str], case: str, channel: str, library: bool
) -> None:
    """The API's calls, keys, security model and failure modes, then curl, the library, the client."""
    text = docs[(case, "server")]
    api = _section(text, "## Server API: your backend's front door")
    for phrase in ("X-API-Key", "WS_API_KEYS", "rotation", "hmac.compare_digest", "127.0.0.1:8766"):
        assert phrase in text, phrase
    for method in (
        "publish",
        "broadcast",
        "presence",
        "presence_stats",
        "history",
        "disconnect",
        "channels",
        "batch",
    ):
        assert f"| `{method}`" in api or f"`{method}` /" in api, method
    assert "| 503 | `broker_unavailable` |" in api and "Never a silent 200" in text
    end_to_end = _section(text, "## Publishing from your backend, end to end")
    assert CURL in end_to_end and f'"channel":"{channel}"' in end_to_end
    assert "ApiClient(" in end_to_end
    assert ("async with Publisher.from_env() as pub:" in end_to_end) is library
    if library:
        assert "## Publisher library" in text
    else:
        assert "process cannot reach it" in _section(text, "## API client")
    # backend snippets must not be run by the project's snippet test as subscribers
    assert "```python" not in end_to_end


def test_client_documents_only_publish_where_the_policy_allows(docs: dict[tuple[str, str], str]) -> None:
    """No client.publish to a namespace clients may not publish to; server-push projects point to the API."""
    for (case, component), text in docs.items():
        if component != "client":
            continue
        spec = design(load_requirements(EXAMPLES / f"{CASES[case][0]}.yaml"))
        closed = [ns.name for ns in spec.channels.namespaces if not ns.client_publish]
        for channel in re.findall(r"\.publish\(\"([^\"]+)\"", text):
            assert channel.split(":")[0].split(".")[0] not in closed, (case, channel)
        if closed and spec.server_api.enabled:
            assert "through the server API" in text and "Publishing\nfrom your backend" in text, case
    ticker = docs[("public-ticker", "client")]
    assert ".publish(" not in ticker and "`feed:*`" in ticker


def test_no_api_sections_when_memory_turns_the_api_off() -> None:
    run = _front_door_run({"server_api": False})
    server = _render(run, "server")
    assert "## Server API" not in server and "WS_API_KEYS" not in server
    assert "no server API" in _render(run, "client")
    assert "no server API" in _render(run, "architecture")


def test_hooks_section_with_each_hook_its_policy_and_the_breaker() -> None:
    run = _front_door_run(
        {
            "hooks": ["connect", "subscribe", "publish", "disconnect"],
            "namespaces": [{"name": "support", "auth": "hook"}],
        }
    )
    text = _section(_render(run, "server"), "## Event hooks to your application")
    for name in ("CONNECT", "SUBSCRIBE", "PUBLISH", "DISCONNECT"):
        assert f"`WS_HOOK_{name}_URL` | 250 ms" in text, name
    assert text.count("fails closed") == 3 and "fire-and-forget" in text
    assert "circuit breaker" in text and "Namespace `support` has `auth: hook`" in text
    architecture = _render(run, "architecture")
    assert 'app["your application (hooks)"]' in architecture
    assert "event hooks: connect, subscribe, publish, disconnect" in architecture


def test_architecture_shows_derived_publishers_and_the_backend(docs: dict[tuple[str, str], str]) -> None:
    chat = docs[("chat", "architecture")]
    assert "| `publishers` | browser, mobile (derived: not answered) |" in chat
    assert 'backend["your backend"]' in chat
    ticker = docs[("public-ticker", "architecture")]
    assert "| `publishers` | backend |" in ticker  # answered in the example
    assert 'backend -.->|"publisher library"| broker' in docs[("market-feed", "architecture")]


def test_architecture_has_a_deployment_section_fed_by_the_spec(docs: dict[tuple[str, str], str]) -> None:
    """Workers, where the instances run, resources and drain timing, with step 2's reasons (issue 23)."""
    scaled = _section(docs[("iot-telemetry", "architecture")], "## Deployment")
    assert "Kubernetes: `deploy/kubernetes/`" in scaled
    rows = {row[0]: row[1] for row in _table_rows(scaled, "deployment")}
    assert rows["server processes"].startswith("8 instance(s) x 1 worker(s) = 8")
    assert "no CPU limit" in rows["resources per pod"] and "request = limit" in rows["resources per pod"]
    assert rows["replicas"].startswith("8 to 24 ")
    assert "preStop 5 s" in rows["drain"] and "SIGKILL at 20 s" in rows["drain"]
    for key in (
        "scaling.workers",
        "deploy.kubernetes",
        "deploy.resources",
        "deploy.lifecycle",
        "deploy.autoscaling",
    ):
        assert f"- `{key}`: " in scaled
    single = _section(docs[("chat", "architecture")], "## Deployment")
    assert "Docker Compose" in single and "preStop" not in single and "resync" in single
