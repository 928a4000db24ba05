"""Hand edits of ``wsforge.yaml``: find them, lay them over a fresh design, say what changed and why.

Which wins, when you edit ``wsforge.yaml`` *and* memory or the tables say otherwise:

- A field you changed by hand in ``wsforge.yaml`` wins. The spec is your intent for *this*
  project; memory conventions are team-wide defaults and the tables are wsforge's defaults. The
  decision row for the field then says ``source: requirement``, "edited by hand", and what
  wsforge would have chosen.
- "Changed by hand" means: differs from what wsforge designed last time (kept in
  ``.wsforge/``). A field you never touched follows memory and the tables.
- To hand a field back to wsforge, delete its line: a missing key is re-filled by the design.
  A namespace removed from ``channels.namespaces`` stays removed; one you add stays.
- ``requirements`` are not overlaid: they are step 1's answers and feed the design itself.
  ``decisions``, ``known_issues``, ``use_cases``, ``wsforge_version``, ``project`` and ``package``
  are derived, and edits to them are replaced.

Everything here is pure: data in, data out.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter

DERIVED = frozenset(
    {
        "requirements",
        "decisions",
        "known_issues",
        "use_cases",
        "wsforge_version",
        "spec_version",
        "project",
        "package",
    }
)


class _Missing:
    """An absent key or item (a singleton, also through ``copy.deepcopy``)."""

    def __repr__(self) -> str:
        return "<absent>"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


MISSING: Any = _Missing()
# A decision key that names a field by another name.
ALIASES = {"protocol.codecs": "serialization"}


@dataclass(frozen=True)
class Item:
    """A path step into a list of mappings keyed by their ``name`` (namespaces)."""

    name: str

    def __str__(self) -> str:
        return f"[{self.name}]"


Path = tuple[str | Item, ...]


@dataclass(frozen=True)
class Edit:
    path: Path
    old: Any
    new: Any
    """``MISSING`` when a named item was removed."""

    @property
    def dotted(self) -> str:
        return dotted(self.path)


@dataclass(frozen=True)
class Change:
    """One spec field that differs from the last render, and the reason."""

    path: str
    old: Any
    new: Any
    cause: str

    def __str__(self) -> str:
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)} ({self.cause})"


def dotted(path: Path) -> str:
    out = ""
    for step in path:
        out += str(step) if isinstance(step, Item) else (f".{step}" if out else step)
    return out


def _short(value: Any) -> str:
    if value is MISSING:
        return "(none)"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


def _keyed(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value)
    )


def diff(
    old: Any, new: Any, path: Path = (), *, removals: bool = True, skip: frozenset[str] = DERIVED
) -> list[Edit]:
    """Leaf-level differences from ``old`` to ``new``.

    Mappings recurse; lists of named mappings recurse by name; other lists are one value. A key
    present in ``old`` but absent in ``new`` is *not* an edit (see the module docstring), unless
    ``removals`` and it is a named list item. Top-level keys in ``skip`` are not compared.
    """
    out: list[Edit] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for key, value in new.items():
            if not path and key in skip:
                continue
            if key in old:
                out += diff(old[key], value, (*path, key), removals=removals)
            else:
                out.append(Edit((*path, key), MISSING, value))
        return out
    if _keyed(old) and _keyed(new):
        before = {v["name"]: v for v in old}
        after = {v["name"]: v for v in new}
        for name, value in after.items():
            if name in before:
                out += diff(before[name], value, (*path, Item(name)), removals=removals)
            else:
                out.append(Edit((*path, Item(name)), MISSING, value))
        if removals:
            out += [
                Edit((*path, Item(name)), value, MISSING)
                for name, value in before.items()
                if name not in after
            ]
        return out
    if old != new:
        out.append(Edit(path, old, new))
    return out


def _get(data: Any, path: Path) -> Any:
    for step in path:
        if isinstance(step, Item):
            if not isinstance(data, list):
                return MISSING
            data = next((v for v in data if isinstance(v, dict) and v.get("name") == step.name), MISSING)
        elif isinstance(data, dict):
            data = data.get(step, MISSING)
        else:
            return MISSING
        if data is MISSING:
            return MISSING
    return data


def _set(root: Any, path: Path, value: Any, source: Any) -> None:
    """Set ``path`` in ``root``; when a parent is missing, copy it whole from ``source``."""
    data = root
    for depth, step in enumerate(path[:-1]):
        nxt = _get(data, (step,))
        if nxt is MISSING or not isinstance(nxt, dict | list):
            _set(root, path[: depth + 1], copy.deepcopy(_get(source, path[: depth + 1])), source)
            return
        data = nxt
    last = path[-1]
    if isinstance(last, Item):
        index = next((i for i, v in enumerate(data) if v.get("name") == last.name), None)
        if value is MISSING:
            if index is not None:
                del data[index]
        elif index is None:
            data.append(value)
        else:
            data[index] = value
    else:
        data[last] = value


def overlay(
    designed: dict[str, Any], user_edits: list[Edit], user_spec: dict[str, Any]
) -> tuple[dict[str, Any], list[Edit]]:
    """Apply ``user_edits`` on top of ``designed`` (a ``model_dump(mode="json")``).

    Returns the new spec data and the edits that actually override the design (an edit equal to
    what wsforge designs anyway is not an override). Decision rows are updated for each override.
    """
    result = copy.deepcopy(designed)
    overrides = []
    for edit in user_edits:
        wsforge_value = _get(designed, edit.path)
        if wsforge_value == edit.new:
            continue
        _set(result, edit.path, copy.deepcopy(edit.new), user_spec)
        overrides.append(Edit(edit.path, wsforge_value, edit.new))
    _record_decisions(result, overrides)
    return result, overrides


def _record_decisions(spec: dict[str, Any], overrides: list[Edit]) -> None:
    rows: list[dict[str, Any]] = spec.setdefault("decisions", [])
    for edit in overrides:
        key = edit.dotted
        value = edit.new
        if key in ALIASES and isinstance(value, list) and value:
            key, value = ALIASES[key], value[0]
        row = next((r for r in rows if r.get("key") == key), None)
        was = f"wsforge's choice was {_short(edit.old)}" + (f": {row['rationale']}" if row else ".")
        rationale = f"edited by hand in wsforge.yaml; a hand edit wins over memory conventions and decision tables ({was})"
        new_row = {
            "key": key,
            "value": None if value is MISSING else value,
            "rationale": rationale,
            "source": "requirement",
        }
        if row is None:
            rows.append(new_row)
        else:
            row.update(new_row)


def _decision_for(path: str, decisions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    for alias, key in ALIASES.items():
        if path == alias or path.startswith(alias + "."):
            return decisions.get(key)
    best = None
    for key, row in decisions.items():
        if (path == key or path.startswith(key + ".") or path.startswith(key + "[")) and (
            best is None or len(key) > len(best["key"])
        ):
            best = row
    return best


def explain(
    old: dict[str, Any],
    new: dict[str, Any],
    overrides: list[Edit],
    convention_keys: dict[str, str],
    *,
    requirements_source: str = "wsforge.yaml",
) -> list[Change]:
    """Every field that differs between the last spec and the new one, with its cause.

    Causes, first match wins: a hand edit in ``wsforge.yaml``; a memory convention (named by its
    key in ``conventions``); a changed requirement; the decision tables (of this wsforge version).
    """
    changes = [
        Change(f"requirements.{e.dotted}", e.old, e.new, f"requirement changed in {requirements_source}")
        for e in diff(old.get("requirements", {}), new.get("requirements", {}), skip=frozenset())
    ]
    hand = {e.dotted for e in overrides}
    conventions_by_key: dict[str, list[str]] = {}
    for name, key in convention_keys.items():
        conventions_by_key.setdefault(key, []).append(name)
    decisions = {r["key"]: r for r in new.get("decisions", []) if isinstance(r, dict) and "key" in r}
    requirements_changed = bool(changes)
    versions = (old.get("wsforge_version"), new.get("wsforge_version"))
    for edit in diff(old, new):
        path = edit.dotted
        if path in hand or any(path.startswith(h + ".") or path.startswith(h + "[") for h in hand):
            cause = "edited by hand in wsforge.yaml"
        else:
            row = _decision_for(path, decisions)
            if row is not None and row.get("source") == "memory":
                names = conventions_by_key.get(row["key"], [])
                cause = "memory " + (
                    ", ".join(f"conventions.{n}" for n in names) if names else f"convention for {row['key']}"
                )
            elif requirements_changed:
                cause = "decision tables, after the requirement change"
            elif versions[0] != versions[1]:
                cause = f"decision tables of wsforge {versions[1]} (was {versions[0]})"
            else:
                cause = "decision tables"
        changes.append(Change(path, edit.old, edit.new, cause))
    return changes


# -- wsforge.yaml text: keep the person's comments --------------------------------------------


class _NullRepresenter(RoundTripRepresenter):
    """Writes ``null`` as wsforge's own ``dump_spec`` does (a subclass: ruamel's registry is global)."""


_NullRepresenter.add_representer(
    type(None), lambda r, _d: r.represent_scalar("tag:yaml.org,2002:null", "null")
)


def _rt_yaml() -> YAML:
    y = YAML()
    y.indent(mapping=2, sequence=2, offset=0)
    y.width = 100
    y.preserve_quotes = True
    y.Representer = _NullRepresenter
    return y


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _plain(v)
        return out
    if isinstance(value, list):
        return CommentedSeq([_plain(v) for v in value])
    return value


def _sync(node: Any, target: Any) -> Any:
    """Make ``node`` (ruamel round-trip data) equal to ``target``, reusing nodes to keep comments."""
    if isinstance(node, CommentedMap) and isinstance(target, dict):
        for key in [k for k in node if k not in target]:
            del node[key]
        for key, value in target.items():
            node[key] = _sync(node[key], value) if key in node else _plain(value)
        return node
    if (
        isinstance(node, CommentedSeq)
        and _keyed(target)
        and all(isinstance(v, CommentedMap) and "name" in v for v in node)
    ):
        by_name = {v["name"]: v for v in node}
        items = [_sync(by_name[t["name"]], t) if t["name"] in by_name else _plain(t) for t in target]
        if [id(v) for v in node] != [id(v) for v in items]:
            node[:] = items
        return node
    if isinstance(node, CommentedSeq) and isinstance(target, list) and len(node) == len(target):
        for i, value in enumerate(target):
            node[i] = _sync(node[i], value)
        return node
    if (
        not isinstance(node, dict | list)
        and node == target
        and isinstance(node, bool) == isinstance(target, bool)
    ):
        return node
    return _plain(target)


def sync_text(user_text: str, target: dict[str, Any]) -> str | None:
    """``user_text`` (a hand-edited ``wsforge.yaml``) changed to say ``target``, comments kept.

    Returns ``None`` when the result would not read back as ``target``; the caller then writes
    the plain rendering.
    """
    y = _rt_yaml()
    try:
        doc = y.load(user_text)
    except Exception:  # any parse problem: fall back to the plain rendering
        return None
    if not isinstance(doc, CommentedMap):
        return None
    _sync(doc, target)
    buffer = io.StringIO()
    y.dump(doc, buffer)
    text = buffer.getvalue()
    if yaml.safe_load(text) != target:
        return None
    return text
