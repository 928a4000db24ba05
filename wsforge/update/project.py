"""A generated project on disk: read its last render (``.wsforge/``), write a merge plan into it.

Reading happens before anything is decided and never writes. :func:`apply_plan` is the only
writer; it writes each file atomically, then the pristine copies, then the manifest *last*, so
an interrupted run is simply re-run: files already written now equal the new render and plan
as ``unchanged``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._yaml import parse_mapping, read_input_text
from ..errors import SpecError, UserError
from ..render import MANIFEST, PRISTINE_DIR, SPEC_FILE
from .merge import REJ_SUFFIX, Action, FilePlan, MergeFn, git_merge_file, has_markers
from .spec_edits import sync_text


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class ProjectState:
    """What regenerate knows about a project before it designs anything."""

    root: Path
    manifest: dict[str, Any]
    base: dict[str, bytes]
    """The last render, ``{path: bytes}``; a path whose pristine copy is missing is absent here."""
    missing_base: set[str]
    """Paths the manifest lists but whose pristine copy is gone (and the file was changed)."""
    design_base: dict[str, Any]
    """The spec wsforge designed last time, before your hand edits: the base for finding them."""
    spec_text: str
    spec_data: dict[str, Any]
    spec_lines: dict[tuple[str, ...], int]
    working: dict[str, bytes] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)

    @property
    def spec_path(self) -> Path:
        return self.root / SPEC_FILE


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a directory where wsforge generates a file") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from exc


def read_state(root: Path) -> ProjectState:
    """Read the manifest, the pristine copies and ``wsforge.yaml``; write nothing.

    Raises:
        UserError: not a wsforge project, or its ``.wsforge/manifest.json`` is damaged.
        SpecError: ``wsforge.yaml`` is missing or is not valid YAML (file, line).
    """
    manifest_path = root / MANIFEST
    raw = _read_bytes(manifest_path)
    if raw is None:
        raise UserError(
            f"{root}: not a wsforge project ({MANIFEST} is missing); create one with `wsforge new`"
        )
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{manifest_path}: damaged manifest ({exc}); restore it from version control"
        ) from exc
    spec_path = root / SPEC_FILE
    spec_bytes = _read_bytes(spec_path)
    if spec_bytes is None:
        raise SpecError(f"{spec_path}: missing; restore it (regenerate designs from it)")
    spec_text = read_input_text(spec_path, "spec", SpecError)
    data, lines = parse_mapping(spec_text, str(spec_path), SpecError, shape="spec must be a mapping")

    state = ProjectState(root, manifest, {}, set(), {}, spec_text, data, lines)
    pristine = root / PRISTINE_DIR
    for path, digest in sorted(files.items()):
        working = _read_bytes(root / path)
        if working is not None:
            state.working[path] = working
        blob = _read_bytes(pristine / str(digest))
        if blob is None and working is not None and sha256(working) == digest:
            blob = working  # untouched since the render: it *is* the pristine copy
        if blob is None or sha256(blob) != digest:
            state.missing_base.add(path)
        else:
            state.base[path] = blob
    design = manifest.get("design")
    design_blob = (
        _read_bytes(pristine / str(design)) if isinstance(design, str) else state.base.get(SPEC_FILE)
    )
    try:
        loaded = yaml.safe_load(design_blob) if design_blob is not None else None
    except yaml.YAMLError:
        loaded = None
    # Without the last design every field would look hand-edited; fall back to "no hand edits".
    state.design_base = loaded if isinstance(loaded, dict) else dict(data)
    for path in manifest.get("conflicts", []):
        if has_markers(state.working.get(path)) or (root / (path + REJ_SUFFIX)).exists():
            state.unresolved.add(path)
    return state


def read_working(state: ProjectState, paths: Iterable[str]) -> None:
    """Add the working bytes of ``paths`` the manifest did not list (files new in this render)."""
    for path in paths:
        if path not in state.working:
            content = _read_bytes(state.root / path)
            if content is not None:
                state.working[path] = content


def plan_spec_file(state: ProjectState, new: bytes, target: dict[str, Any], merge: MergeFn) -> FilePlan:
    """``wsforge.yaml`` is merged by meaning, never left in conflict: the new spec already holds
    your hand edits, so the file must end up saying exactly ``target``.

    First a line merge (keeps your layout and comments byte for byte); if that overlaps or does
    not read back as ``target``, a round-trip YAML update of your file (keeps comments); if even
    that fails, the plain new file, with yours saved beside it as ``wsforge.yaml.orig``.
    """
    base = state.base.get(SPEC_FILE)
    working = state.spec_text.encode()
    if working == new:
        return FilePlan(SPEC_FILE, Action.UNCHANGED, "already up to date", base, new, working)
    if working == base:
        return FilePlan(SPEC_FILE, Action.UPDATE, "only wsforge changed it", base, new, working, new)
    if base is not None:
        outcome = merge(working, base, new)
        if outcome.conflicts:
            # Your side of an overlap is right whenever the result still says ``target``.
            outcome = git_merge_file(working, base, new, favor_yours=True)
        if outcome.conflicts == 0 and _reads_as(outcome.content, target):
            if outcome.content == working:
                return FilePlan(
                    SPEC_FILE,
                    Action.UNCHANGED,
                    "your edits already say what the new spec says",
                    base,
                    new,
                    working,
                )
            return FilePlan(
                SPEC_FILE,
                Action.MERGE,
                "your hand edits kept; the new decisions merged in",
                base,
                new,
                working,
                outcome.content,
            )
    synced = sync_text(state.spec_text, target)
    if synced is None:
        return FilePlan(
            SPEC_FILE,
            Action.MERGE,
            f"rewritten from the new spec; your version (comments) is in {SPEC_FILE}.orig",
            base,
            new,
            working,
            new,
            (SPEC_FILE + ".orig", working),
        )
    if synced.encode() == working:
        return FilePlan(
            SPEC_FILE, Action.UNCHANGED, "your edits already say what the new spec says", base, new, working
        )
    return FilePlan(
        SPEC_FILE,
        Action.MERGE,
        "your hand edits and comments kept; the new decisions applied",
        base,
        new,
        working,
        synced.encode(),
    )


def _reads_as(content: bytes, target: dict[str, Any]) -> bool:
    try:
        return bool(yaml.safe_load(content) == target)
    except yaml.YAMLError:
        return False


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def _atomic_write(path: Path, content: bytes, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else (0o755 if executable else 0o644)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _executable(path: str) -> bool:
    return path.endswith(".sh") or path.startswith("bin/")


def needs_writing(
    state: ProjectState, plans: Iterable[FilePlan], manifest: Mapping[str, Any], blobs: Mapping[str, bytes]
) -> bool:
    """False when the project already is what this run would leave: then nothing is written."""
    if any(plan.touches for plan in plans):
        return True
    if manifest_bytes(manifest) != _read_bytes(state.root / MANIFEST):
        return True
    pristine = state.root / PRISTINE_DIR
    return any(not (pristine / digest).is_file() for digest in blobs)


def apply_plan(
    state: ProjectState, plans: Iterable[FilePlan], manifest: Mapping[str, Any], blobs: Mapping[str, bytes]
) -> None:
    """Write the plan: files, side files, deletions, then the pristine copies, then the manifest."""
    root = state.root
    for plan in plans:
        if plan.write is not None:
            _atomic_write(root / plan.path, plan.write, executable=_executable(plan.path))
        if plan.extra is not None:
            _atomic_write(root / plan.extra[0], plan.extra[1])
        if plan.action == Action.DELETE:
            target = root / plan.path
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    pristine = root / PRISTINE_DIR
    pristine.mkdir(parents=True, exist_ok=True)
    for digest, content in blobs.items():
        if not (pristine / digest).is_file():
            _atomic_write(pristine / digest, content)
    for stale in pristine.iterdir():
        if stale.is_file() and stale.name not in blobs:
            stale.unlink()
    _atomic_write(root / MANIFEST, manifest_bytes(manifest))
