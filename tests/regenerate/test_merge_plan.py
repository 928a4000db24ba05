"""The per-file merge rules (pure): one test per row of the table in ``wsforge.update.merge``."""

from __future__ import annotations

import os
import shutil

import pytest

from wsforge.update.merge import (
    Action,
    ConflictStyle,
    git_merge_file,
    has_markers,
    plan_file,
    plan_merge,
    whole_file_merge,
)

BASE = b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n"
THEIRS = BASE.replace(b"two", b"TWO")  # wsforge changed line 2
YOURS = BASE.replace(b"six", b"SIX")  # you changed line 6
OVERLAP = BASE.replace(b"two", b"2")  # you changed line 2 too

# git is on every CI machine: there a missing git fails instead of skipping.
needs_git = pytest.mark.skipif(
    shutil.which("git") is None and os.environ.get("CI") != "true",
    reason="git merge-file is the merge backend",
)


def test_new_file_is_created() -> None:
    """In the new render only: create it."""
    plan = plan_file("a.py", None, THEIRS, None)
    assert (plan.action, plan.write) == (Action.CREATE, THEIRS)


def test_file_equal_to_new_render_is_unchanged() -> None:
    """Already what wsforge would write: nothing to do."""
    assert plan_file("a.py", BASE, THEIRS, THEIRS).action == Action.UNCHANGED
    assert not plan_file("a.py", BASE, BASE, BASE).touches


def test_untouched_file_is_updated() -> None:
    """Only wsforge changed it: take the new render."""
    plan = plan_file("a.py", BASE, THEIRS, BASE)
    assert (plan.action, plan.write) == (Action.UPDATE, THEIRS)


def test_file_only_you_changed_is_kept() -> None:
    """Only you changed it: leave it."""
    plan = plan_file("a.py", BASE, BASE, YOURS)
    assert (plan.action, plan.write) == (Action.KEEP, None)


@needs_git
def test_both_changed_apart_merge_cleanly() -> None:
    """Both changed, different lines: one file with both changes."""
    plan = plan_file("a.py", BASE, THEIRS, YOURS)
    assert plan.action == Action.MERGE
    assert plan.write == BASE.replace(b"two", b"TWO").replace(b"six", b"SIX")


@needs_git
def test_overlapping_changes_conflict_with_markers() -> None:
    """Both changed the same line: git-style markers with both sides."""
    plan = plan_file("a.py", BASE, THEIRS, OVERLAP)
    assert plan.action == Action.CONFLICT
    assert plan.write is not None and has_markers(plan.write)
    assert b"<<<<<<< yours\n2\n=======\nTWO\n>>>>>>> wsforge\n" in plan.write


def test_overlapping_changes_rej_style_leaves_your_file() -> None:
    """--conflict rej: nothing written over your file; the patch goes beside it."""
    plan = plan_file("a.py", BASE, THEIRS, OVERLAP, style=ConflictStyle.REJ)
    assert (plan.action, plan.write) == (Action.CONFLICT, None)
    assert plan.extra is not None and plan.extra[0] == "a.py.rej"
    assert b"-two\n+TWO\n" in plan.extra[1]


def test_file_you_created_where_wsforge_now_generates_one_conflicts() -> None:
    """No base, both sides have different content: never silently overwritten."""
    plan = plan_file("a.py", None, THEIRS, YOURS, merge=whole_file_merge)
    assert plan.action == Action.CONFLICT
    assert plan.write is not None and YOURS in plan.write and THEIRS in plan.write


def test_obsolete_untouched_file_is_deleted_and_changed_one_kept() -> None:
    """No longer generated: removed only if unmodified."""
    assert plan_file("a.py", BASE, None, BASE).action == Action.DELETE
    plan = plan_file("a.py", BASE, None, YOURS)
    assert (plan.action, plan.write) == (Action.KEEP, None)


def test_file_you_deleted() -> None:
    """Deleted and unchanged upstream: stays deleted; changed upstream: a conflict."""
    assert plan_file("a.py", BASE, BASE, None).action == Action.KEEP
    plan = plan_file("a.py", BASE, THEIRS, None, merge=whole_file_merge)
    assert plan.action == Action.CONFLICT
    assert plan.write is not None and THEIRS in plan.write


def test_binary_conflict_puts_wsforge_version_beside_yours() -> None:
    """No lines to mark up: yours stays, wsforge's goes to <path>.wsforge-new."""
    plan = plan_file("logo.png", b"\0base", b"\0new", b"\0yours")
    assert (plan.action, plan.write) == (Action.CONFLICT, None)
    assert plan.extra == ("logo.png.wsforge-new", b"\0new")


def test_whole_file_merge_without_git() -> None:
    """The no-git fallback never picks a side silently."""
    assert whole_file_merge(BASE, BASE, THEIRS).content == THEIRS
    assert whole_file_merge(YOURS, BASE, BASE).content == YOURS
    outcome = whole_file_merge(YOURS, BASE, THEIRS)
    assert outcome.conflicts == 1 and has_markers(outcome.content)


@needs_git
def test_git_merge_file_favor_yours_resolves_overlaps() -> None:
    """Used only for wsforge.yaml, whose result is checked against the new spec."""
    outcome = git_merge_file(OVERLAP, BASE, THEIRS, favor_yours=True)
    assert (outcome.conflicts, outcome.content) == (0, OVERLAP)


def test_plan_merge_covers_every_path_and_keeps_unresolved_conflicts() -> None:
    """Sorted rows for every path in base or new; a conflict left last time stays one until resolved."""
    marked = b"<<<<<<< yours\nx\n=======\ny\n>>>>>>> wsforge\n"
    plans = plan_merge(
        {"b.py": BASE, "gone.py": BASE, "c.py": BASE},
        {"b.py": BASE, "a.py": THEIRS, "c.py": BASE},
        {"b.py": marked, "gone.py": BASE, "c.py": YOURS},
        unresolved={"b.py"},
    )
    assert [(p.path, p.action) for p in plans] == [
        ("a.py", Action.CREATE),
        ("b.py", Action.CONFLICT),
        ("c.py", Action.KEEP),
        ("gone.py", Action.DELETE),
    ]
