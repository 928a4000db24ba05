"""Read the files people hand to wsforge, and YAML that remembers where each key was.

Every file wsforge reads as input (answers, memory, ``wsforge.yaml``, review targets, the agent
config) goes through :func:`read_input_text` and, when YAML, :func:`load_yaml_with_lines`, so a
hostile or broken file gives one line naming the file and the problem instead of a traceback:
not UTF-8, larger than :data:`MAX_INPUT_BYTES`, nested deeper than :data:`MAX_DEPTH`, an alias that
refers to itself, or aliases that expand past :data:`MAX_NODES` values ("billion laughs").

The readers of answers, specs, memory, a project's ``wsforge.yaml`` and review targets share one
sequence: :func:`read_mapping` (read -> parse with lines -> check it is a mapping) and
:func:`validate` (pydantic -> ``file:line: field: problem`` via :func:`format_validation_error`);
:func:`load_model` is both.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from .errors import UserError

Lines = dict[tuple[str, ...], int]
"""``{key path: 1-based line}`` of a YAML document."""

M = TypeVar("M", bound=BaseModel)

MAX_INPUT_BYTES = 1024 * 1024
"""Largest input file read. Answers, memory and specs are a few kilobytes; a bigger file is a mistake."""

MAX_NODES = 100_000
"""Largest number of values a YAML document may hold once its aliases are expanded."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted in a YAML document."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records the 1-based line of every mapping key."""


def read_input_text(path: Path, what: str, error: type[UserError] = UserError) -> str:
    """Read ``path`` as UTF-8 text of at most :data:`MAX_INPUT_BYTES`.

    Args:
        what: what the file is, for the message (``"answers file"``, ``"memory"``).
        error: the :class:`UserError` subclass to raise.

    Raises:
        UserError: (as ``error``) ``"<path>: <problem>"``: unreadable, too large or not UTF-8.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise error(
            f"{path}: {what} is larger than {MAX_INPUT_BYTES:,} bytes; wsforge reads no bigger input files"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc


def load_yaml_with_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse ``text`` and return the data and ``{key path: line}``.

    Raises:
        ValueError: ``"<line>: <problem>"`` for malformed YAML, a recursive alias, nesting deeper
            than :data:`MAX_DEPTH` or more than :data:`MAX_NODES` values after alias expansion.
    """
    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context_mark", None)
        if context is not None and context.line + 1 != line:
            problem += f" ({getattr(exc, 'context', None) or 'started'} at line {context.line + 1})"
        raise ValueError(f"{line}: invalid YAML: {problem}") from exc
    except RecursionError as exc:
        raise ValueError(f"1: YAML nested deeper than {MAX_DEPTH} levels") from exc
    if node is None:
        return None, {}
    _check_shape(node)
    lines: dict[tuple[str, ...], int] = {}
    _collect(node, (), lines)
    data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    return data, lines


def _check_shape(root: yaml.Node) -> None:
    """Refuse recursive aliases, deep nesting and alias expansion past :data:`MAX_NODES`.

    Counts values as if every alias were expanded (an alias's target counted once per use), with
    each node's expanded size memoised, so a "billion laughs" document is refused after a few
    thousand steps instead of being walked.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_nodes:
            raise ValueError(f"{line}: recursive alias: a value contains itself")
        if depth > MAX_DEPTH:
            raise ValueError(f"{line}: YAML nested deeper than {MAX_DEPTH} levels")
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        open_nodes.add(key)
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise ValueError(f"{line}: aliases expand to more than {MAX_NODES:,} values (an alias bomb?)")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _collect(node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            first = lines.get((*path, key))
            if first is not None:
                # PyYAML keeps the last value silently: a hand-edit that repeats a key would lose
                # the first one without a word. Say which key, where both are.
                where = ".".join((*path, key))
                raise ValueError(f"{line}: duplicate key {where!r} (first at line {first})")
            lines[(*path, key)] = line
            _collect(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, str(index))] = item.start_mark.line + 1
            _collect(item, (*path, str(index)), lines)


def locate(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """The line of the longest known prefix of ``loc``."""
    for end in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def parse_mapping(
    text: str,
    source: str,
    error: type[UserError],
    *,
    shape: str = "must be a mapping",
    note: str = "",
    empty_ok: bool = False,
) -> tuple[dict[str, Any], Lines]:
    """Parse ``text`` (from ``source``) into a mapping and the line of each key.

    Args:
        shape: the message when the document is not a mapping (``"spec must be a mapping"``).
        note: appended to every message (``" (file left untouched)"``).
        empty_ok: an empty document is ``{}`` instead of an error.

    Raises:
        UserError: (as ``error``) ``"<source>:<line>: <problem><note>"``.
    """
    try:
        data, lines = load_yaml_with_lines(text)
    except ValueError as exc:
        raise error(f"{source}:{exc}{note}") from exc
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{source}:1: {shape}{note}")
    return data, lines


def read_mapping(
    path: Path,
    error: type[UserError],
    *,
    what: str,
    shape: str = "",
    note: str = "",
    empty_ok: bool = False,
) -> tuple[dict[str, Any], Lines]:
    """:func:`read_input_text` then :func:`parse_mapping`: a YAML file that must hold a mapping."""
    text = read_input_text(path, what, error)
    return parse_mapping(
        text, str(path), error, shape=shape or f"{what} must be a mapping", note=note, empty_ok=empty_ok
    )


def validate(
    model: type[M],
    data: Any,
    source: str,
    lines: Lines | None,
    error: type[UserError],
    *,
    prefix: str = "",
    note: str = "",
    suggest: bool = True,
) -> M:
    """``model.model_validate(data)``, a failure reported as ``file:line: field: problem``.

    Args:
        prefix, note: put before and after the message.
        suggest: name the closest known key for an unknown one.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(exc, source, lines, model if suggest else None)
        raise error(prefix + message + note) from exc


def load_model(path: Path, model: type[M], error: type[UserError], *, what: str) -> tuple[M, Lines]:
    """Read, check, validate: the whole sequence for a file that holds one ``model``."""
    data, lines = read_mapping(path, error, what=what)
    return validate(model, data, str(path), lines, error), lines


def format_validation_error(
    exc: ValidationError,
    source: str,
    lines: dict[tuple[str, ...], int] | None,
    model: type[BaseModel] | None = None,
) -> str:
    """One line per problem: ``file:line: field: message``.

    With ``model`` (the model that was validated), an unknown key names its closest known key
    (``serialisation`` -> ``did you mean 'serialization'?``). pydantic's ``Value error, `` prefix is
    dropped: the message is the validator's own sentence.
    """
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        field = ".".join(loc) or "<root>"
        line = locate(lines, loc) if lines else None
        where = f"{source}:{line}" if line else source
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            known = _known_keys(model, err["loc"][:-1]) if model is not None else []
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6) if loc else []
            if close:
                msg += f"; did you mean {close[0]!r}?"
        elif err["type"] == "missing":
            msg = "required answer is missing"
        parts.append(f"{where}: {field}: {msg}")
    return "; ".join(parts)


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found by following ``loc`` from ``model`` (lists, optionals)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
