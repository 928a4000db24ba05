"""Step 3: the project's memory of earlier decisions.

People edit these YAML files between runs (``memory/<skill>/<project>.yaml``), so the store:

- validates every read against :class:`MemoryEntry` (the source of ``schemas/memory_entry.schema.json``)
  and reports ``file:line: field: problem``;
- never writes a file it could not read (an update starts with a successful read);
- writes atomically (temp file in the same directory, fsync, rename) and keeps the person's
  comments and key order (ruamel.yaml round trip), because a tool that eats comments teaches
  people not to edit its files.
"""

from __future__ import annotations

import copy
import io
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ._yaml import parse_mapping, read_input_text, validate
from .errors import MemoryStoreError
from .spec import ChannelAuth, NamespaceSpec

SKILL = "websocket-engineer"
SCHEMA_VERSION: Literal[1] = 1
MAX_LOG_ENTRIES = 200
"""Longest ``compliance`` list :meth:`YamlMemoryStore.append` keeps (step 5 keeps only the last run's)."""
MAX_HISTORY_ENTRIES = 20
"""Runs kept in ``history``: a short log, so the hand-edited conventions stay easy to find."""
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvelopeFields(_Model):
    v: str | None = None
    type: str | None = None
    action: str | None = None
    id: str | None = None
    channel: str | None = None
    payload: str | None = None
    seq: str | None = None
    ts: str | None = None
    sender: str | None = None
    error: str | None = None


class Conventions(_Model):
    """Team conventions that override step 2's decision tables. Every key is optional."""

    serialization: Literal["json", "msgpack", "protobuf"] | None = None
    channel_separator: str | None = Field(default=None, min_length=1, max_length=1)
    envelope_fields: EnvelopeFields | None = None
    preferred_broker: Literal["redis", "nats", "rabbitmq"] | None = None
    transport: Literal["websockets", "picows"] | None = None
    heartbeat_interval_s: float | None = Field(default=None, gt=0, le=300)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0, le=300)
    max_payload_bytes: int | None = Field(default=None, ge=128, le=64 * 1024 * 1024)
    rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    max_connections_per_ip: int | None = Field(default=None, ge=1)
    outbound_queue_size: int | None = Field(default=None, ge=1)
    jwt_algorithms: (
        list[Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]] | None
    ) = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    namespaces: list[NamespaceSpec] | None = None
    reconnect_cap_s: float | None = Field(default=None, gt=0, le=3600)
    server_api: bool | None = None
    """Render the HTTP server API (true) or not (false) whatever step 2's table says."""
    publisher: Literal["none", "broker", "http"] | None = None
    """The backend's publisher: the broker library, the API's HTTP client, or none. ``broker`` on
    the in-memory broker becomes ``http`` (a separate process cannot reach an in-process broker)."""
    hooks: list[Literal["connect", "subscribe", "publish", "disconnect"]] | None = Field(
        default=None, validate_default=True
    )
    """Event hooks to the application that are on (all are off otherwise)."""
    api_port: int | None = Field(default=None, ge=1, le=65535)
    """The server API's port (default 8766); the host stays loopback unless ``WS_API_HOST`` says otherwise."""
    workers_per_instance: int | None = Field(default=None, ge=1, le=256)
    """Server processes per instance, for teams that deploy on VMs or bare boxes rather than one
    process per pod (the instance count shrinks to match the planned cores)."""
    kubernetes: bool | None = None
    """Render Kubernetes manifests (true) or not (false) whatever the instance count says."""
    existing_app: Literal["none", "fastapi", "starlette", "django"] | None = None
    """The web application the team runs, when the answers file does not say (an answer wins)."""
    mount_in_app: bool | None = None
    """Mount the endpoint inside the existing app (true) or run it standalone beside it (false),
    whatever step 2's weighing of the load says."""
    client_protocol: Literal["native", "socketio"] | None = None
    """The protocol layer, when the answers file leaves it to step 2 (an answer wins)."""

    @field_validator("hooks")
    @classmethod
    def _hook_namespaces_need_the_subscribe_hook(cls, value: list[str] | None, info: ValidationInfo) -> Any:
        """A ``hook`` namespace leaves subscribe authorization to the app: without the hook nobody decides."""
        namespaces = info.data.get("namespaces") or []
        hooked = [ns.name for ns in namespaces if ns.auth == ChannelAuth.HOOK]
        if hooked and "subscribe" not in (value or []):
            raise ValueError(
                f"namespace(s) {', '.join(hooked)} have auth 'hook', which leaves subscribing to the "
                "application's subscribe hook: add subscribe to conventions.hooks, or give them another auth"
            )
        return None if value is None else list(dict.fromkeys(value))


class KnownIssue(_Model):
    id: str
    summary: str
    severity: Literal["info", "warning", "error"] = "warning"
    since: str | None = None
    source: Literal["user", "review"] = Field(
        default="user",
        description="review: recorded by step 5 for an unresolved error finding, removed once it passes; "
        "user: written by a person, never touched by wsforge.",
    )


class DecisionRecord(_Model):
    key: str
    value: Any
    rationale: str
    source: str


class ComplianceRecord(_Model):
    step: int = Field(ge=1, le=5)
    name: str
    at: str
    result: Literal["ok", "failed", "skipped"]
    detail: str = ""


class HistoryRecord(_Model):
    at: str
    event: str
    wsforge_version: str | None = None
    changes: list[str] = Field(default_factory=list)
    review: str | None = Field(default=None, description="Step 5's findings summary for the run.")


class MemoryEntry(_Model):
    """One project's memory for one skill."""

    schema_version: Literal[1] = SCHEMA_VERSION
    skill: str = SKILL
    project: str
    conventions: Conventions = Field(default_factory=Conventions)
    known_issues: list[KnownIssue] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list)
    scaling: dict[str, Any] = Field(default_factory=dict)
    answers: dict[str, Any] = Field(
        default_factory=dict, description="The last run's answers; defaults for the next wizard run."
    )
    message_schema: dict[str, Any] = Field(
        default_factory=dict,
        description="The wire contract deployed clients rely on (envelope, codecs, subprotocols, namespaces, "
        "each message's payload shape), written by step 5; the next run compares against it.",
    )
    versioning: dict[str, Any] = Field(
        default_factory=dict,
        description="The protocol versioning strategy: version, negotiation, what breaks clients.",
    )
    compliance: list[ComplianceRecord] = Field(
        default_factory=list, description="The last run's checklist (steps 1-5); older runs are in history."
    )
    history: list[HistoryRecord] = Field(
        default_factory=list, description=f"The last {MAX_HISTORY_ENTRIES} runs, oldest first."
    )

    _greenfield: bool = PrivateAttr(default=False)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def greenfield(self) -> bool:
        """True when no memory file existed: nothing earlier shapes this run."""
        return self._greenfield

    @property
    def path(self) -> Path | None:
        return self._path


class MemoryStore(Protocol):
    """Where skills keep what they learned about a project."""

    def get_skill_memory(self, skill: str, project: str) -> MemoryEntry:
        """The entry, or an empty greenfield one when none exists.

        Raises:
            MemoryStoreError: the entry exists but cannot be read or validated.
        """
        ...

    def update(self, skill: str, project: str, data: Mapping[str, Any]) -> MemoryEntry:
        """Replace the given top-level keys (mappings merge one level deep) and save atomically."""
        ...

    def append(
        self, skill: str, project: str, entry: Mapping[str, Any], *, section: str = "history"
    ) -> MemoryEntry:
        """Append ``entry`` to the list ``section`` (``history``, ``compliance``, ``known_issues``)."""
        ...


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _check_name(kind: str, value: str) -> str:
    if not _SAFE_NAME.match(value):
        raise MemoryStoreError(f"invalid {kind} name {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def _yaml() -> YAML:
    y = YAML()  # round-trip: keeps comments and order
    y.preserve_quotes = True  # a person's "quoted" strings stay quoted on rewrite
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 100
    return y


def _to_commented(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _to_commented(v)
        return out
    if isinstance(value, list | tuple):
        return CommentedSeq([_to_commented(v) for v in value])
    return value


def _merge_into(target: CommentedMap, key: str, value: Any) -> None:
    """Merge mappings one level deep so a person's other keys (and comments) survive.

    A value equal to what the file holds is left as it is, so its quoting and comments survive;
    a list keeps the existing node of every item that is unchanged.
    """
    current = target.get(key)
    if isinstance(current, CommentedMap) and isinstance(value, Mapping):
        for k, v in value.items():
            if (v is None and k in current) or (k in current and _same(current[k], v)):
                continue
            current[k] = _to_commented(v)
    elif isinstance(current, CommentedSeq) and isinstance(value, list | tuple):
        if not _same(current, value):
            target[key] = _reuse_items(current, value)
    elif key not in target or not _same(current, value):
        target[key] = _to_commented(value)


def _same(current: Any, value: Any) -> bool:
    return bool(_plain_data(current) == _plain_data(value))


def _plain_data(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_data(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def _reuse_items(current: CommentedSeq, value: list[Any] | tuple[Any, ...]) -> CommentedSeq:
    """A new list whose unchanged items are the file's own nodes (their quotes and comments)."""
    unused = list(current)
    out = CommentedSeq()
    for item in value:
        match = next((node for node in unused if _same(node, item)), None)
        if match is not None:
            unused.remove(match)
            out.append(match)
        else:
            out.append(_to_commented(item))
    return out


class YamlMemoryStore:
    """The default store: ``<root>/<skill>/<project>.yaml``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, skill: str, project: str) -> Path:
        return self.root / _check_name("skill", skill) / f"{_check_name('project', project)}.yaml"

    def get_skill_memory(self, skill: str, project: str) -> MemoryEntry:
        path = self.path(skill, project)
        if not path.exists():
            entry = MemoryEntry(skill=skill, project=project)
            entry._greenfield = True
            entry._path = path
            return entry
        entry = self._validate(path, self._read_text(path))
        if entry.skill != skill or entry.project != project:
            raise MemoryStoreError(
                f"{path}: holds skill {entry.skill!r} / project {entry.project!r}, expected {skill!r} / {project!r}"
            )
        entry._path = path
        return entry

    def validate_file(self, path: Path) -> MemoryEntry:
        """Validate any memory file (``wsforge memory validate``)."""
        return self._validate(path, self._read_text(path))

    def update(self, skill: str, project: str, data: Mapping[str, Any]) -> MemoryEntry:
        path = self.path(skill, project)
        doc = self._load_document(path, skill, project)
        for key, value in data.items():
            _merge_into(doc, key, value)
        return self._save(path, doc)

    def append(
        self, skill: str, project: str, entry: Mapping[str, Any], *, section: str = "history"
    ) -> MemoryEntry:
        path = self.path(skill, project)
        doc = self._load_document(path, skill, project)
        seq = doc.get(section)
        if seq is None:
            seq = CommentedSeq()
            doc[section] = seq
        if not isinstance(seq, list):
            raise MemoryStoreError(f"{path}: {section}: must be a list to append to")
        seq.append(_to_commented(dict(entry)))
        del seq[: len(seq) - len(_trimmed(section, list(seq)))]
        return self._save(path, doc)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _read_text(path: Path) -> str:
        return read_input_text(path, "memory file (left untouched)", MemoryStoreError)

    @staticmethod
    def _validate(path: Path, text: str) -> MemoryEntry:
        kept = " (file left untouched)"
        data, lines = parse_mapping(
            text, str(path), MemoryStoreError, shape="memory must be a mapping", note=kept
        )
        return validate(MemoryEntry, data, str(path), lines, MemoryStoreError, note=kept)

    def _load_document(self, path: Path, skill: str, project: str) -> CommentedMap:
        if not path.exists():
            doc = CommentedMap()
            doc["schema_version"] = SCHEMA_VERSION
            doc["skill"] = skill
            doc["project"] = project
            doc.yaml_set_start_comment(
                "wsforge memory. Edit `conventions` and `known_issues` freely; the next run honours them.\n"
                "Validate with: wsforge memory validate " + project
            )
            return doc
        text = self._read_text(path)
        self._validate(path, text)  # refuse to touch a file we could not read
        try:
            doc = _yaml().load(text)
        except YAMLError as exc:  # pragma: no cover - caught by _validate first
            raise MemoryStoreError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(doc, CommentedMap):
            raise MemoryStoreError(f"{path}:1: memory must be a mapping (file left untouched)")
        return doc

    def _save(self, path: Path, doc: CommentedMap) -> MemoryEntry:
        buffer = io.StringIO()
        _yaml().dump(doc, buffer)
        text = buffer.getvalue()
        entry = self._validate(path, text)  # never write something we could not read back
        atomic_write_text(path, text)
        entry._path = path
        return entry


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _trimmed(section: str, items: list[Any]) -> list[Any]:
    """The log sections keep only their newest entries (both stores trim the same way)."""
    limit = MAX_HISTORY_ENTRIES if section == "history" else MAX_LOG_ENTRIES
    if section in ("history", "compliance") and len(items) > limit:
        return items[len(items) - limit :]
    return items


class DictMemoryStore:
    """An in-memory store with the same contract, for tests and library use (not a mock).

    ``tests/unit/test_memory_contract.py`` runs one suite against this store and
    :class:`YamlMemoryStore`: names checked, mappings merged one level deep (a ``None`` value
    keeps what is there), logs trimmed, and an update that would not validate refused and not kept.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}

    def _key(self, skill: str, project: str) -> tuple[str, str]:
        return _check_name("skill", skill), _check_name("project", project)

    def get_skill_memory(self, skill: str, project: str) -> MemoryEntry:
        data = self._entries.get(self._key(skill, project))
        if data is None:
            entry = MemoryEntry(skill=skill, project=project)
            entry._greenfield = True
            return entry
        return MemoryEntry.model_validate(copy.deepcopy(data))

    def update(self, skill: str, project: str, data: Mapping[str, Any]) -> MemoryEntry:
        key = self._key(skill, project)
        merged = copy.deepcopy(self._entries.get(key) or {"skill": skill, "project": project})
        for name, value in copy.deepcopy(dict(data)).items():
            current = merged.get(name)
            if isinstance(current, dict) and isinstance(value, Mapping):
                for k, v in value.items():
                    if not (v is None and k in current):
                        current[k] = v
            else:
                merged[name] = value
        return self._store(key, merged)

    def append(
        self, skill: str, project: str, entry: Mapping[str, Any], *, section: str = "history"
    ) -> MemoryEntry:
        key = self._key(skill, project)
        current = copy.deepcopy(self._entries.get(key) or {"skill": skill, "project": project})
        items = current.get(section)
        if items is not None and not isinstance(items, list):
            raise MemoryStoreError(f"<memory {skill}/{project}>: {section}: must be a list to append to")
        current[section] = _trimmed(section, [*(items or []), copy.deepcopy(dict(entry))])
        return self._store(key, current)

    def _store(self, key: tuple[str, str], data: dict[str, Any]) -> MemoryEntry:
        """Validate, then keep: an entry that does not validate is refused and the old one stays."""
        where = f"<memory {key[0]}/{key[1]}>"
        entry = validate(MemoryEntry, copy.deepcopy(data), where, None, MemoryStoreError)
        self._entries[key] = data
        return entry
