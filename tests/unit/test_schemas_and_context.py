"""Schemas equal the models; the knowledge index validates; the context provider works."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from wsforge._resources import schemas_dir
from wsforge.context import PackagedContextProvider
from wsforge.errors import UserError
from wsforge.schemas import dump, model_schemas

from ..conftest import EXAMPLES, REPO


@pytest.mark.parametrize("name", sorted(model_schemas()))
def test_schema_files_equal_models(name: str) -> None:
    """schemas/*.json are exactly what the models export (run `python -m wsforge.schemas` after a change)."""
    assert (schemas_dir() / name).read_text() == dump(model_schemas()[name])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate_against_requirements_schema(path) -> None:  # type: ignore[no-untyped-def]
    """Editors using the JSON Schema accept the examples too."""
    schema = json.loads((schemas_dir() / "requirements.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_example_memory_validates() -> None:
    """The documented example memory in examples/sample-run/memory/ is valid."""
    schema = json.loads((schemas_dir() / "memory_entry.schema.json").read_text())
    files = list((REPO / "examples" / "sample-run" / "memory").rglob("*.yaml"))
    assert files
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_context_index_has_every_use_case() -> None:
    """Every use case the wizard offers has knowledge behind it."""
    from wsforge.requirements import UseCase

    index = PackagedContextProvider().get_index("websocket")
    assert set(index["use_cases"]) == {u.value for u in UseCase}


def test_unknown_domain_is_a_user_error() -> None:
    """Asking for knowledge that does not exist is a clear error."""
    with pytest.raises(UserError, match="no domain knowledge"):
        PackagedContextProvider().get_index("mqtt")
