"""YAML helpers that remember where each key was, so errors can name a line."""

from __future__ import annotations

from typing import Any

import yaml


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records the 1-based line of every mapping key."""


def load_yaml_with_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse ``text`` and return the data and ``{key path: line}``.

    Raises:
        ValueError: ``"<line>: <problem>"`` for malformed YAML.
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
    if node is None:
        return None, {}
    lines: dict[tuple[str, ...], int] = {}
    _collect(node, (), lines)
    data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    return data, lines


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
