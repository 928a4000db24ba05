"""Three-way file merge planning: last pristine render (base), new render, the user's tree.

Pure apart from :func:`git_merge_file`, which runs ``git merge-file`` on temp files (the text
merge people already trust and know how to resolve). Every decision is one :class:`FilePlan`
row, so ``--dry-run`` prints exactly what a real run would do.

The rules, per path (``b`` base, ``n`` new render, ``w`` working tree; ``None`` = absent):

====================  ==========================  ============================================
situation             action                      why
====================  ==========================  ============================================
b=None, w=None        create                      new file in this render
w == n                unchanged                   already what wsforge would write
w == b, n != b        update                      only wsforge changed it
w != b, n == b        keep                        only you changed it
w, n both != b        merge / conflict            both changed it: line merge; overlaps conflict
b=None, w != n        conflict                    you created a file wsforge now generates
n=None, w == b        delete                      no longer generated and untouched
n=None, w != b        keep                        no longer generated but you changed it
w=None, n == b        keep                        you deleted it and wsforge did not change it
w=None, n != b        conflict                    you deleted it, wsforge changed it
====================  ==========================  ============================================
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

YOURS = "yours"
BASE = "last generated"
THEIRS = "wsforge"
CONFLICT_START = f"<<<<<<< {YOURS}".encode()
CONFLICT_END = f">>>>>>> {THEIRS}".encode()
REJ_SUFFIX = ".rej"
NEW_SUFFIX = ".wsforge-new"
"""Beside a binary file both sides changed: wsforge's version (there are no lines to mark up)."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    KEEP = "keep"
    MERGE = "merge"
    CONFLICT = "conflict"
    DELETE = "delete"
    UNCHANGED = "unchanged"


class ConflictStyle(StrEnum):
    INLINE = "inline"
    """Write the merged file with ``<<<<<<< yours`` / ``>>>>>>> wsforge`` markers (git's style)."""
    REJ = "rej"
    """Leave your file as it is and write wsforge's change beside it as ``<path>.rej`` (a patch)."""


@dataclass(frozen=True)
class MergeOutcome:
    content: bytes
    conflicts: int


MergeFn = Callable[[bytes, bytes, bytes], MergeOutcome]
"""``(yours, base, theirs) -> merged``; conflicts > 0 when the result holds markers."""


@dataclass(frozen=True)
class FilePlan:
    """What happens to one path, and the bytes it takes."""

    path: str
    action: Action
    reason: str
    base: bytes | None
    new: bytes | None
    working: bytes | None
    write: bytes | None = None
    """Bytes to write at ``path``; ``None`` leaves it as it is (or deletes it on ``delete``)."""
    extra: tuple[str, bytes] | None = None
    """A side file to write: ``(path, bytes)`` -- a ``.rej`` patch or a ``.wsforge-new`` copy."""

    @property
    def touches(self) -> bool:
        return self.write is not None or self.extra is not None or self.action == Action.DELETE


def is_binary(*contents: bytes | None) -> bool:
    return any(c is not None and b"\0" in c[:8192] for c in contents)


def unified_diff(
    old: bytes | None, new: bytes | None, path: str, *, old_label: str = "a", new_label: str = "b"
) -> str:
    """A ``git diff``-like patch from ``old`` to ``new`` (``None`` = absent)."""
    if is_binary(old, new):
        return f"Binary file {path} differs\n" if old != new else ""
    a = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    b = (new or b"").decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(
        a,
        b,
        fromfile=f"{old_label}/{path}" if old is not None else "/dev/null",
        tofile=f"{new_label}/{path}" if new is not None else "/dev/null",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def git_merge_file(yours: bytes, base: bytes, theirs: bytes, *, favor_yours: bool = False) -> MergeOutcome:
    """Line-level three-way merge with ``git merge-file`` (no repository needed).

    ``favor_yours`` resolves overlaps with your lines (``--ours``); only for callers that check
    the result themselves. Falls back to :func:`whole_file_merge` when git is not installed, so
    the result is never a silent pick of one side.
    """
    git = shutil.which("git")
    if git is None:
        return whole_file_merge(yours, base, theirs)
    with tempfile.TemporaryDirectory(prefix="wsforge-merge-") as tmp:
        paths = []
        for name, content in (("yours", yours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(content)
            paths.append(str(path))
        result = subprocess.run(
            [
                git,
                "merge-file",
                "-p",
                *(["--ours"] if favor_yours else []),
                "-L",
                YOURS,
                "-L",
                BASE,
                "-L",
                THEIRS,
                *paths,
            ],
            capture_output=True,
            check=False,
        )
    if result.returncode < 0 or result.returncode > 127:
        raise RuntimeError(f"git merge-file failed: {result.stderr.decode(errors='replace').strip()}")
    return MergeOutcome(result.stdout, result.returncode)


def whole_file_merge(yours: bytes, base: bytes, theirs: bytes) -> MergeOutcome:
    """The no-git fallback: identical sides merge, anything else is one conflict over the file."""
    if yours == theirs or theirs == base:
        return MergeOutcome(yours, 0)
    if yours == base:
        return MergeOutcome(theirs, 0)

    def block(text: bytes) -> bytes:
        return text if not text or text.endswith(b"\n") else text + b"\n"

    content = CONFLICT_START + b"\n" + block(yours) + b"=======\n" + block(theirs) + CONFLICT_END + b"\n"
    return MergeOutcome(content, 1)


def has_markers(content: bytes | None) -> bool:
    return content is not None and CONFLICT_START in content and CONFLICT_END in content


def _conflict(
    path: str,
    reason: str,
    base: bytes | None,
    new: bytes | None,
    working: bytes | None,
    style: ConflictStyle,
    merge: MergeFn,
) -> FilePlan:
    if is_binary(base, new, working):
        extra = (path + NEW_SUFFIX, new) if new is not None else None
        return FilePlan(
            path,
            Action.CONFLICT,
            reason + "; binary: wsforge's version is beside it",
            base,
            new,
            working,
            None,
            extra,
        )
    if style == ConflictStyle.REJ:
        patch = unified_diff(base, new, path).encode()
        return FilePlan(
            path,
            Action.CONFLICT,
            reason + f"; wsforge's change is in {path}{REJ_SUFFIX}",
            base,
            new,
            working,
            None,
            (path + REJ_SUFFIX, patch),
        )
    outcome = merge(working or b"", base or b"", new or b"")
    return FilePlan(
        path, Action.CONFLICT, reason + "; resolve the conflict markers", base, new, working, outcome.content
    )


def plan_file(
    path: str,
    base: bytes | None,
    new: bytes | None,
    working: bytes | None,
    *,
    style: ConflictStyle = ConflictStyle.INLINE,
    merge: MergeFn = git_merge_file,
) -> FilePlan:
    """One row of the table in this module's docstring."""
    if new is not None and working == new:
        return FilePlan(path, Action.UNCHANGED, "already up to date", base, new, working)
    if new is None:
        if base is None or working is None:
            return FilePlan(path, Action.UNCHANGED, "not generated", base, new, working)
        if working == base:
            return FilePlan(path, Action.DELETE, "no longer generated and unmodified", base, new, working)
        return FilePlan(
            path, Action.KEEP, "no longer generated, but you changed it: kept", base, new, working
        )
    if base is None:
        if working is None:
            return FilePlan(path, Action.CREATE, "new in this render", base, new, working, new)
        return _conflict(
            path, "you created this file and wsforge now generates it", base, new, working, style, merge
        )
    if working is None:
        if new == base:
            return FilePlan(
                path, Action.KEEP, "you deleted it; wsforge did not change it", base, new, working
            )
        return _conflict(path, "you deleted it and wsforge changed it", base, new, working, style, merge)
    if working == base:
        return FilePlan(path, Action.UPDATE, "only wsforge changed it", base, new, working, new)
    if new == base:
        return FilePlan(path, Action.KEEP, "only you changed it", base, new, working)
    if is_binary(base, new, working):
        return _conflict(path, "you and wsforge both changed it", base, new, working, style, merge)
    outcome = merge(working, base, new)
    if outcome.conflicts == 0:
        return FilePlan(
            path,
            Action.MERGE,
            "you and wsforge both changed it; merged cleanly",
            base,
            new,
            working,
            outcome.content,
        )
    return _conflict(
        path,
        f"you and wsforge both changed it; {outcome.conflicts} overlapping change(s)",
        base,
        new,
        working,
        style,
        merge,
    )


def plan_merge(
    base: Mapping[str, bytes],
    new: Mapping[str, bytes],
    working: Mapping[str, bytes],
    *,
    style: ConflictStyle = ConflictStyle.INLINE,
    merge: MergeFn = git_merge_file,
    unresolved: Iterable[str] = (),
) -> list[FilePlan]:
    """A :class:`FilePlan` for every path in ``base`` or ``new``, sorted by path.

    Args:
        working: the user's current bytes for those paths (absent = file missing).
        unresolved: paths left in conflict by the last run that still hold markers (or a ``.rej``);
            they stay conflicts, so the exit status keeps saying so until they are resolved.
    """
    pending = set(unresolved)
    plans = []
    for path in sorted(set(base) | set(new)):
        plan = plan_file(path, base.get(path), new.get(path), working.get(path), style=style, merge=merge)
        if path in pending and plan.action in (Action.KEEP, Action.UNCHANGED):
            plan = FilePlan(
                path,
                Action.CONFLICT,
                "conflict from the last regenerate is not resolved yet",
                plan.base,
                plan.new,
                plan.working,
            )
        plans.append(plan)
    return plans
