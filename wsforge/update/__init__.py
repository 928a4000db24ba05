"""Regenerate a project without losing the user's code (what ``copier update`` does, for wsforge).

::

    state  = read_state(project)                      # .wsforge/ pristine render + wsforge.yaml
    plans  = plan_merge(state.base, new_render, state.working)   # pure: one FilePlan per path
    apply_plan(state, plans, manifest, blobs)         # the writer; manifest written last

:class:`~wsforge.update.run.MergeWriter` is the pipeline's writer around that (import it and
``run_regenerate`` from :mod:`wsforge.update.run`: this package does not import the pipeline, so
the run record can name a merge plan). ``merge`` holds the per-file rules, ``spec_edits`` how hand
edits of ``wsforge.yaml`` win over memory and tables.
"""

from .merge import Action, ConflictStyle, FilePlan, git_merge_file, plan_file, plan_merge, unified_diff
from .project import ProjectState, apply_plan, read_state

__all__ = [
    "Action",
    "ConflictStyle",
    "FilePlan",
    "ProjectState",
    "apply_plan",
    "git_merge_file",
    "plan_file",
    "plan_merge",
    "read_state",
    "unified_diff",
]
