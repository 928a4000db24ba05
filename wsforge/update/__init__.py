"""Regenerate a project without losing the user's code (what ``copier update`` does, for wsforge).

::

    state  = read_state(project)                      # .wsforge/ pristine render + wsforge.yaml
    plans  = plan_merge(state.base, new_render, state.working)   # pure: one FilePlan per path
    apply_plan(state, plans, manifest, blobs)         # the only writer; manifest written last

:func:`~wsforge.update.run.run_regenerate` runs steps 1-5 around that. ``merge`` holds the
per-file rules, ``spec_edits`` how hand edits of ``wsforge.yaml`` win over memory and tables.
"""

from .merge import Action, ConflictStyle, FilePlan, git_merge_file, plan_file, plan_merge, unified_diff
from .project import ProjectState, apply_plan, read_state
from .run import RegenerateResult, run_regenerate

__all__ = [
    "Action",
    "ConflictStyle",
    "FilePlan",
    "ProjectState",
    "RegenerateResult",
    "apply_plan",
    "git_merge_file",
    "plan_file",
    "plan_merge",
    "read_state",
    "run_regenerate",
    "unified_diff",
]
