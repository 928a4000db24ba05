"""Domain knowledge for step 2, behind the ``ContextProvider`` interface.

The knowledge is data (``wsforge/knowledge/<domain>.yaml``), validated against
``schemas/context_metadata.schema.json`` when loaded, so a bad edit fails loudly instead of
quietly changing every generated project.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import jsonschema
import yaml

from ._resources import knowledge_file, schemas_dir
from .errors import UserError


class ContextProvider(Protocol):
    """Supplies domain knowledge by name."""

    def get_index(self, domain: str) -> dict[str, Any]:
        """The knowledge index for ``domain`` (e.g. ``"websocket"``)."""
        ...


class PackagedContextProvider:
    """Reads the knowledge shipped inside wsforge."""

    def get_index(self, domain: str) -> dict[str, Any]:
        path = knowledge_file(domain)
        if not path.is_file():
            raise UserError(f"no domain knowledge for {domain!r}")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = json.loads((schemas_dir() / "context_metadata.schema.json").read_text(encoding="utf-8"))
        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "<root>"
            raise UserError(f"{path}: {where}: {exc.message}") from exc
        return dict(data)


KNOWLEDGE_DOMAIN = "websocket"
"""The domain step 2 asks its ``ContextProvider`` for."""


def packaged_knowledge() -> dict[str, Any]:
    """The knowledge index shipped inside wsforge: what :func:`~wsforge.architecture.design` uses
    when it is called without one (library use, tests)."""
    return PackagedContextProvider().get_index(KNOWLEDGE_DOMAIN)
