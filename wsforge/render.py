"""Step 4: spec -> files (pure plan + render), then the writer of a fresh project.

:func:`plan_files` decides which template becomes which path (pure). :func:`render_project`
renders every file in memory (Jinja2 with StrictUndefined, deterministic), then formats Python
with ruff so templates need not fight the formatter. :func:`write_project` renders into a temp
directory beside the target and moves it into place, so a failure leaves nothing half-written.

It is one of the writers the pipeline ends with (:class:`~wsforge.workflow.FreshWriter`); the
others write elsewhere: :func:`~wsforge.update.project.apply_plan` merges into an existing
project, the memory store and :mod:`~wsforge.reports` write memory and the design documents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ._resources import templates_dir
from .errors import TargetExistsError, TemplateError
from .spec import ArchitectureSpec, Codec, ScalingStrategy, dump_spec

PACKAGE_SEGMENT = "__package__"
TEMPLATE_SUFFIX = ".jinja"
MANIFEST = ".wsforge/manifest.json"
PRISTINE_DIR = ".wsforge/pristine"
"""The last render's bytes, one file per sha256 of the manifest: the base of ``wsforge regenerate``."""
SPEC_FILE = "wsforge.yaml"

Condition = Callable[[ArchitectureSpec], bool]


def _browser(spec: ArchitectureSpec) -> bool:
    return "browser" in [e.value for e in spec.requirements.client_environments]


def _uses_redis(spec: ArchitectureSpec) -> bool:
    return spec.scaling.strategy in (ScalingStrategy.REDIS_PUBSUB, ScalingStrategy.REDIS_STREAMS)


def _uses_nats(spec: ArchitectureSpec) -> bool:
    return spec.scaling.strategy == ScalingStrategy.NATS


def _uses_rabbitmq(spec: ArchitectureSpec) -> bool:
    return spec.scaling.strategy == ScalingStrategy.RABBITMQ


def _protobuf(spec: ArchitectureSpec) -> bool:
    """Protocol Buffers is offered (it then leads): the ``.proto``, its generated types, the codec."""
    return Codec.PROTOBUF in spec.protocol.codecs


def _socketio(spec: ArchitectureSpec) -> bool:
    """Step 2 serves Socket.IO clients beside the native protocol (``spec.socketio``)."""
    return spec.socketio.enabled


def _loadtest_needs_redis(spec: ArchitectureSpec) -> bool:
    """The README's load test publishes through a Redis the in-process broker cannot stand in for:
    a single instance whose shared namespaces clients may not publish to, and no server API (the
    load generator then publishes as the backend would, through a broker another process can reach;
    with the API it publishes through that)."""
    if spec.scaling.strategy != ScalingStrategy.SINGLE or spec.server_api.enabled:
        return False  # a scaled-out project has its broker; the server API is the backend's front door
    shared = [ns for ns in spec.channels.namespaces if ns.auth.value != "private"]
    return bool(shared) and not any(ns.client_publish for ns in shared)


def _ships_redis(spec: ArchitectureSpec) -> bool:
    return _uses_redis(spec) or _loadtest_needs_redis(spec)


def _kubernetes(spec: ArchitectureSpec) -> bool:
    """Step 2 (or memory) chose Kubernetes for the planned instances: ``deploy/kubernetes/``."""
    return spec.deploy.kubernetes


def _kubernetes_over_a_broker(spec: ArchitectureSpec) -> bool:
    """Pods that share a broker: what a HorizontalPodAutoscaler may add to, and what the development
    overlay's broker is for (the in-memory broker cannot span pods)."""
    return spec.deploy.kubernetes and spec.scaling.strategy != ScalingStrategy.SINGLE


def _ships_remote_broker(spec: ArchitectureSpec) -> bool:
    """A networked broker adapter is rendered, and with it the circuit breaker every one runs behind."""
    return _ships_redis(spec) or _uses_nats(spec) or _uses_rabbitmq(spec)


def _mounted(spec: ArchitectureSpec) -> bool:
    """Step 2 mounts the endpoint in the team's ASGI or Django app (``spec.host``)."""
    return spec.host.mounted


def _mounted_asgi(spec: ArchitectureSpec) -> bool:
    """Mounted in a FastAPI or Starlette app (``host_app/app.py`` is the example host)."""
    return spec.host.mounted and spec.host.app.value in ("fastapi", "starlette")


def _mounted_django(spec: ArchitectureSpec) -> bool:
    return spec.host.mounted and spec.host.app.value == "django"


# Optional files: relative template path (before rendering, without .jinja) -> when it exists.
CONDITIONAL_FILES: dict[str, Condition] = {
    "src/__package__/transport/picows.py": lambda s: s.transport.value == "picows",
    "tests/test_picows_frames.py": lambda s: s.transport.value == "picows",
    "tests/test_browser_e2e.py": _browser,
    # Two server processes on a real broker: only when the project scales out over one.
    "tests/test_multi_instance.py": lambda s: s.scaling.strategy.value != "single",
    # Broker adapters: only the one the spec scales out over (a later `regenerate` that changes the
    # broker adds the new one). Redis also serves a load test that must publish from outside.
    "src/__package__/broker/redis.py": _ships_redis,
    "src/__package__/broker/nats.py": _uses_nats,
    "src/__package__/broker/rabbitmq.py": _uses_rabbitmq,
    # The circuit breaker: around every networked broker, and around each hook to the application.
    "src/__package__/broker/breaker.py": lambda s: _ships_remote_broker(s) or s.hooks.any_enabled(),
    "tests/test_broker_health.py": _ships_remote_broker,
    # Reconnect storms against the Redis adapter's batching (its round trips are Redis's to count).
    "tests/test_subscribe_storm.py": _ships_redis,
    # The application's front door (server API, publisher library, hooks): step 2 decides each.
    "src/__package__/control.py": lambda s: s.server_api.enabled or s.publisher.kind.value == "broker",
    "src/__package__/api.py": lambda s: s.server_api.enabled,
    "src/__package__/api_client.py": lambda s: s.server_api.enabled,
    "openapi.yaml": lambda s: s.server_api.enabled,
    "tests/test_server_api.py": lambda s: s.server_api.enabled,
    "tests/test_api_multi_instance.py": lambda s: (
        s.server_api.enabled and s.scaling.strategy.value != "single"
    ),
    "src/__package__/publisher.py": lambda s: s.publisher.kind.value == "broker",
    "tests/test_publisher.py": lambda s: s.publisher.kind.value == "broker",
    "src/__package__/hooks.py": lambda s: s.hooks.any_enabled(),
    "tests/test_hooks.py": lambda s: s.hooks.any_enabled(),
    # Kubernetes manifests (every file under deploy/kubernetes/, see CONDITIONAL_DIRS) and their
    # tests; within them, what depends on more than the choice of Kubernetes.
    "tests/test_kubernetes.py": _kubernetes,
    "deploy/kubernetes/hpa.yaml": _kubernetes_over_a_broker,
    "deploy/kubernetes/service-api.yaml": lambda s: _kubernetes(s) and s.server_api.enabled,
    "deploy/kubernetes/networkpolicy.yaml": lambda s: _kubernetes(s) and s.server_api.enabled,
    "deploy/kubernetes/dev/kustomization.yaml": _kubernetes_over_a_broker,
    "deploy/kubernetes/dev/redis.yaml": lambda s: _kubernetes(s) and _uses_redis(s),
    "deploy/kubernetes/dev/nats.yaml": lambda s: _kubernetes(s) and _uses_nats(s),
    "deploy/kubernetes/dev/rabbitmq.yaml": lambda s: _kubernetes(s) and _uses_rabbitmq(s),
    # Socket.IO (issue 24): the second protocol face of the same core, and its tests.
    "src/__package__/socketio/__init__.py": _socketio,
    "src/__package__/socketio/admission.py": _socketio,
    "src/__package__/socketio/attachments.py": _socketio,
    "src/__package__/socketio/bridge.py": _socketio,
    "src/__package__/socketio/packets.py": _socketio,
    "src/__package__/socketio/session.py": _socketio,
    "src/__package__/socketio/polling.py": _socketio,
    "src/__package__/socketio/recovery.py": _socketio,
    "tests/test_socketio.py": _socketio,
    "tests/test_socketio_polling.py": _socketio,
    "tests/test_socketio_binary.py": _socketio,
    "tests/test_socketio_recovery.py": _socketio,
    "tests/test_socketio_demo.py": _socketio,
    "tests/test_socketio_upgrade.py": _socketio,
    # Mounted in the team's app (issue 26): the ASGI adapter and its public entry, the example host
    # app of each kind, and their tests (uvicorn, third-party clients, two processes on the broker).
    "src/__package__/transport/asgi.py": _mounted,
    "src/__package__/asgi.py": _mounted,
    "src/__package__/django_support.py": _mounted_django,
    "tests/test_asgi.py": _mounted_asgi,
    "tests/test_django.py": _mounted_django,
    "host_app/app.py": _mounted_asgi,
    # Protocol Buffers (issue 25): the codec module, its types' generator script and its tests; the
    # .proto is under proto/ (CONDITIONAL_DIRS) and its Python types are compiled at render time
    # (compile_proto).
    "src/__package__/protobuf_codec.py": _protobuf,
    "scripts/gen_proto.py": _protobuf,
    "tests/test_protobuf_codec.py": _protobuf,
    "tests/test_protobuf_client.py": _protobuf,
    "static/protobuf.js": _protobuf,
    "static/protobuf.d.ts": _protobuf,
    "tests/protobuf_npm.py": _protobuf,
    "tests/test_protobuf_browser.py": lambda s: _protobuf(s) and _browser(s),
    "tests/js/protobuf_live.mjs": _protobuf,
}

# Optional directories: every file below the folder exists only when its condition holds (and
# its own CONDITIONAL_FILES entry, if it has one).
CONDITIONAL_DIRS: dict[str, Condition] = {
    "deploy/kubernetes/": _kubernetes,
    "host_app/": _mounted,
    "host_app/django_site/": _mounted_django,
    "proto/": _protobuf,
}

# Files that are never part of a generated project.
IGNORED_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", "artifacts"}


@dataclass(frozen=True)
class PlannedFile:
    path: str
    """Path inside the generated project (POSIX)."""
    template: str
    """Template path relative to ``templates/project``; empty for generated-in-code files."""
    rendered: bool


def _output_path(template_rel: str, package: str) -> str:
    parts = [package if part == PACKAGE_SEGMENT else part for part in template_rel.split("/")]
    out = "/".join(parts)
    return out[: -len(TEMPLATE_SUFFIX)] if out.endswith(TEMPLATE_SUFFIX) else out


def plan_files(spec: ArchitectureSpec, root: Path | None = None) -> list[PlannedFile]:
    """Every file the project will hold, sorted, with the template behind it."""
    root = root or templates_dir() / "project"
    planned = [PlannedFile(SPEC_FILE, "", False)]
    for path in sorted(root.rglob("*")):
        if path.is_dir() or any(part in IGNORED_NAMES for part in path.relative_to(root).parts):
            continue
        rel = path.relative_to(root).as_posix()
        key = rel[: -len(TEMPLATE_SUFFIX)] if rel.endswith(TEMPLATE_SUFFIX) else rel
        condition = CONDITIONAL_FILES.get(key)
        if condition is not None and not condition(spec):
            continue
        if any(key.startswith(folder) and not holds(spec) for folder, holds in CONDITIONAL_DIRS.items()):
            continue
        planned.append(PlannedFile(_output_path(rel, spec.package), rel, rel.endswith(TEMPLATE_SUFFIX)))
    if _protobuf(spec):  # protoc's output of the rendered .proto (compile_proto), no template of its own
        planned.extend(PlannedFile(path.format(package=spec.package), "", False) for path in PROTO_OUTPUTS)
    return sorted(planned, key=lambda f: f.path)


def template_context(spec: ArchitectureSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    return {
        "spec": data,
        "requirements": data["requirements"],
        "project": spec.project,
        "package": spec.package,
        "wsforge_version": spec.wsforge_version,
        "codecs": [c.value for c in spec.protocol.codecs],
        "msgpack_first": spec.protocol.codecs[0] == Codec.MSGPACK,
        "uses_redis": _uses_redis(spec),
        "uses_nats": _uses_nats(spec),
        # What is rendered, which may be more than what is used (see CONDITIONAL_FILES).
        "ships_redis": _ships_redis(spec),
        "ships_nats": _uses_nats(spec),
        "uses_rabbitmq": _uses_rabbitmq(spec),
        "ships_rabbitmq": _uses_rabbitmq(spec),
        "protobuf": _protobuf(spec),
        "protobuf_first": spec.protocol.codecs[0] == Codec.PROTOBUF,
        "socketio": _socketio(spec),
        "ships_remote_broker": _ships_remote_broker(spec),
        "browser": _browser(spec),
        "mounted": _mounted(spec),
        "host_app": spec.host.app.value,
    }


def jinja_environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - we render source code, not HTML for a browser
    )
    env.filters["pyrepr"] = repr
    env.filters["tojson_compact"] = lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True)
    env.filters["show"] = show_value
    return env


def show_value(value: Any, nested: bool = False) -> str:
    """A spec value as the documents show it: ``a, b`` for lists, ``k=v`` for mappings, floats
    without a trailing ``.0``. The README and the design documents (``_macros.jinja``'s ``show``)
    both use it, so one value reads the same everywhere."""
    if value is None:
        return "none"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict):
        return ", ".join(f"{k}={show_value(v, True)}" for k, v in sorted(value.items()))
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        inner = ", ".join(show_value(v, True) if nested else show_value(v) for v in value)
        return f"[{inner}]" if nested else inner
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_project(spec: ArchitectureSpec, root: Path | None = None) -> dict[str, bytes]:
    """Render every planned file in memory: ``{path: content}``.

    Raises:
        TemplateError: naming the template and the missing or failing value.
    """
    root = root or templates_dir() / "project"
    env = jinja_environment(root)
    context = template_context(spec)
    files: dict[str, bytes] = {}
    generated: dict[str, bytes] = {}
    if _protobuf(spec):
        # Compiled first: the project's pyproject requires the protobuf runtime its gencode names.
        source = PROTO_SOURCE.format(package=spec.package)
        template = PROTO_SOURCE.format(package=PACKAGE_SEGMENT) + TEMPLATE_SUFFIX
        proto = env.get_template(template).render(context)
        generated = compile_proto({source: proto.encode()}, spec.package)
        context["protobuf_runtime"] = gencode_version(generated)
    for planned in plan_files(spec, root):
        if planned.path == SPEC_FILE:
            files[SPEC_FILE] = dump_spec(spec).encode()
        elif not planned.template:
            continue  # generated in code: compile_proto's output, added below
        elif planned.rendered:
            try:
                text = env.get_template(planned.template).render(context)
            except jinja2.UndefinedError as exc:
                raise TemplateError(f"templates/project/{planned.template}: {exc.message}") from exc
            except jinja2.TemplateError as exc:
                line = getattr(exc, "lineno", None)
                raise TemplateError(f"templates/project/{planned.template}:{line or '?'}: {exc}") from exc
            files[planned.path] = text.encode()
        else:
            files[planned.path] = (root / planned.template).read_bytes()
    files.update(generated)
    return _format_python(files)


PROTO_SOURCE = "proto/{package}/wire.proto"
"""The rendered .proto (CONDITIONAL_DIRS ``proto/``); protoc makes :data:`PROTO_OUTPUTS` of it."""
PROTO_OUTPUTS = ("src/{package}/wire_pb2.py", "src/{package}/wire_pb2.pyi")


def proto_command(package: str) -> list[str]:
    """protoc's arguments, run from the project root: the generated ``scripts/gen_proto.py`` runs
    the same, so a user who edits the .proto gets what a fresh render would give."""
    return ["-Iproto", "--python_out=src", "--pyi_out=src", PROTO_SOURCE.format(package=package)]


def gencode_version(generated: Mapping[str, bytes]) -> str:
    """The protobuf runtime version protoc's Python output requires at least (its header says it;
    the module refuses an older runtime at import)."""
    for path, content in generated.items():
        if path.endswith("_pb2.py"):
            for line in content.decode().splitlines():
                if line.startswith("# Protobuf Python Version:"):
                    return line.split(":", 1)[1].strip()
    raise TemplateError("protoc's output names no protobuf runtime version")


def compile_proto(files: Mapping[str, bytes], package: str) -> dict[str, bytes]:
    """The Python types of the rendered .proto, by the official compiler (``grpcio-tools``' protoc).

    Rendered, not written by hand and not compiled at the project's run time: a project then needs
    only the ``protobuf`` runtime, and the output is deterministic for one grpcio-tools version
    (the manifest and ``wsforge regenerate`` compare bytes).

    Raises:
        TemplateError: protoc refused the rendered .proto (a template bug), or is not installed.
    """
    source = PROTO_SOURCE.format(package=package)
    with tempfile.TemporaryDirectory(prefix="wsforge-protoc-") as tmp:
        base = Path(tmp)
        (base / source).parent.mkdir(parents=True)
        (base / source).write_bytes(files[source])
        (base / "src").mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", *proto_command(package)],
            cwd=base,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise TemplateError(
                f"protoc failed on {source}: {result.stderr.strip() or result.stdout.strip()}"
            )
        out = base / "src"
        return {
            f"src/{path.relative_to(out).as_posix()}": path.read_bytes()
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }


def _format_python(files: dict[str, bytes]) -> dict[str, bytes]:
    """Run ``ruff format`` over the rendered Python so output is stable and lint-clean."""
    py = {path: content for path, content in files.items() if path.endswith(".py")}
    if not py:
        return files
    with tempfile.TemporaryDirectory(prefix="wsforge-fmt-") as tmp:
        base = Path(tmp)
        for path, content in py.items():
            target = base / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        config = files.get("pyproject.toml")
        if config is not None:
            (base / "pyproject.toml").write_bytes(config)
        result = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--quiet", "."],
            cwd=base,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise TemplateError(
                f"rendered Python does not parse: {result.stderr.strip() or result.stdout.strip()}"
            )
        formatted = dict(files)
        for path in py:
            formatted[path] = (base / path).read_bytes()
    return formatted


def manifest(files: Mapping[str, bytes], spec: ArchitectureSpec) -> dict[str, Any]:
    return {
        "wsforge_version": spec.wsforge_version,
        "project": spec.project,
        "files": {path: hashlib.sha256(content).hexdigest() for path, content in sorted(files.items())},
    }


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def write_project(
    files: Mapping[str, bytes], target: Path, spec: ArchitectureSpec, *, force: bool = False
) -> None:
    """Write the rendered files under ``target`` atomically.

    A fresh target is rendered in a temp directory beside it and renamed into place. With
    ``force`` an existing project is updated file by file (each an atomic rename); files the
    user added are left alone.

    Raises:
        TargetExistsError: ``target`` exists, is not empty and ``force`` is false.
    """
    target = target.resolve()
    exists = target.exists() and not _is_empty_dir(target)
    if exists and not force:
        raise TargetExistsError(f"{target} exists and is not empty; use --force to write into it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.wsforge-", dir=target.parent))
    try:
        all_files = dict(files)
        all_files[MANIFEST] = (json.dumps(manifest(files, spec), indent=2, sort_keys=True) + "\n").encode()
        for content in files.values():
            all_files[f"{PRISTINE_DIR}/{hashlib.sha256(content).hexdigest()}"] = content
        for path, content in all_files.items():
            out = staging / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(content)
            if path.endswith((".sh",)) or path.startswith("bin/"):
                out.chmod(0o755)
        if not target.exists() or _is_empty_dir(target):
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
            return
        for path in all_files:
            dest = target / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / path, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
