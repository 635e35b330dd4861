"""The JSON Schema of backends.yaml: generated from the models, shipped, valid, in agreement.

Regenerate the shipped copy after changing the config models with:
``uv run mcp-router schema -o config/backends.schema.json``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mcp_router.config import load_config
from mcp_router.config.schema import SCHEMA_DIALECT, config_schema, config_schema_text
from support import PYTHON, ROOT, child_env

SHIPPED = ROOT / "config" / "backends.schema.json"
EXAMPLE = ROOT / "config" / "backends.yaml.example"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_shipped_schema_is_up_to_date() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == config_schema_text(), (
        "config/backends.schema.json is stale: run "
        "`uv run mcp-router schema -o config/backends.schema.json`"
    )


def test_schema_is_draft_2020_12() -> None:
    schema = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["additionalProperties"] is False
    assert {"BackendConfig", "RoutingConfig", "ToolShapingConfig"} <= set(schema["$defs"])


def test_cli_prints_the_schema() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "mcp_router.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env(),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == config_schema_text()


def test_example_references_and_satisfies_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./backends.schema.json"
    assert _errors(validator, yaml.safe_load(text)) == []
    load_config(EXAMPLE)  # and the loader agrees


def test_schema_accepts_what_the_loader_accepts(
    validator: jsonschema.Draft202012Validator, tmp_path: Path
) -> None:
    doc = {
        "routing": {"tool_discovery": "search", "pinned_tools": ["gh_*"], "retry": None},
        "backends": [
            {"name": "a", "command": "x", "args": ["--port", 8080, True], "env": {"N": 1}},
            {"name": "b", "url": "https://h/mcp", "headers": None, "routes": None},
            {
                "name": "c",
                "url": "https://h/sse",
                "tools": {"exclude": ["x*"], "rename": {"a": "b"}, "descriptions": {"b": "B"}},
            },
        ],
    }
    assert _errors(validator, doc) == []
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(doc))
    load_config(path)
    assert _errors(validator, {}) == []
    assert _errors(validator, {"routing": None, "backends": None}) == []


@pytest.mark.parametrize(
    "doc",
    [
        {"backend": []},  # typo at the top
        {"routing": {"tool_discovery": "some"}},
        {"backends": [{"name": "a", "comand": "x"}]},  # typo in a backend
        {"backends": [{"name": "a"}]},  # neither command nor url
        {"backends": [{"name": "a", "command": "x", "url": "https://h"}]},  # both
        {"backends": [{"name": "-a", "command": "x"}]},  # bad name
        {"backends": [{"name": "a", "command": "x", "tools": {"hide": ["y"]}}]},
        {"backends": [{"name": "a", "command": "x", "priority": "high"}]},
        {"backends": [{"name": "a", "command": "x", "circuit_breaker": {"failure_threshold": 0}}]},
    ],
)
def test_schema_rejects_what_the_loader_rejects(
    validator: jsonschema.Draft202012Validator, tmp_path: Path, doc: dict[str, Any]
) -> None:
    assert _errors(validator, doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match=r"bad\.yaml"):
        load_config(path)
