"""JSON Schema (draft 2020-12) of the YAML config, generated from the pydantic models.

``mcp-router schema`` prints it; ``config/backends.schema.json`` is the shipped copy (a test
checks that it equals :func:`config_schema`). Editors that speak the YAML language server pick
it up from the first line of a config file::

    # yaml-language-server: $schema=./backends.schema.json

The schema describes the file as written, before ``${VAR}`` expansion: it accepts what the
loader accepts (numbers and booleans where a string is expected, ``null`` for an empty list or
mapping) and rejects unknown keys like the loader does. Cross-field rules (duplicate backend
names, ``fallback_to`` targets, exactly one of ``command``/``url``) are checked by the loader
only, except "exactly one of command/url", which the schema states too.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from mcp_router.config import models
from mcp_router.config.models import RouterConfig

__all__ = ["SCHEMA_DIALECT", "SCHEMA_ID", "config_schema", "config_schema_text"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://mcp-router.invalid/schemas/backends.schema.json"
"""A stable identifier, not a download location (the schema ships with the package)."""

# Descriptions shown by editors on hover, by model and field.
_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "RouterConfig": {
        "routing": "Router-wide settings; every key is optional and also settable by env (MCP_*).",
        "backends": "The MCP servers behind the router.",
    },
    "RoutingConfig": {
        "default_strategy": "Routing strategy when no route matches (MCP_DEFAULT_STRATEGY).",
        "enable_namespace_prefixing": "Expose names as <namespace><separator><name> "
        "(MCP_ENABLE_NAMESPACES).",
        "namespace_separator": "Separator between namespace and name (MCP_NAMESPACE_SEPARATOR).",
        "capability_cache_ttl_seconds": "Accepted for compatibility and has no effect: catalogs "
        "are re-listed when a backend sends list_changed or reconnects (MCP_CACHE_TTL).",
        "request_timeout_seconds": "Per-request timeout unless a backend sets timeout_seconds "
        "(MCP_REQUEST_TIMEOUT).",
        "load_balancing": "How calls are spread within a replica group.",
        "retry": "Retry policy on one backend (MCP_MAX_RETRIES, MCP_RETRY_BACKOFF, "
        "MCP_MAX_BACKOFF).",
        "tool_discovery": "'all' lists every tool; 'search' lists only pinned_tools plus "
        "router_search_tools and router_call_tool (for very large catalogs).",
        "pinned_tools": "Glob patterns on exposed tool names that stay listed in 'search' mode.",
    },
    "BackendConfig": {
        "name": "Unique backend name.",
        "transport": "stdio, http (streamable HTTP) or sse; inferred from command/url when "
        "absent (a URL path ending in /sse means sse).",
        "command": "Executable of a stdio backend (set this or url).",
        "args": "Arguments of the stdio command.",
        "env": "Extra environment variables of the stdio process.",
        "cwd": "Working directory of the stdio process.",
        "url": "URL of an http or sse backend (set this or command).",
        "headers": "HTTP headers sent to an http/sse backend, e.g. Authorization.",
        "namespace": "Prefix of exposed names (default: the backend name); '' for no prefix. "
        "Backends sharing a namespace form one replica group.",
        "priority": "Lower numbers are tried first.",
        "enabled": "false keeps the backend configured but not started.",
        "timeout_seconds": "Request timeout of this backend "
        "(null: routing.request_timeout_seconds).",
        "connect_timeout_seconds": "Limit on start-up plus MCP handshake.",
        "routes": "Routing rules: glob patterns on tool names and their strategy.",
        "health_check": "Active health probing (MCP ping, optional HTTP endpoint).",
        "circuit_breaker": "Circuit breaker thresholds.",
        "tools": "Tool shaping: include/exclude globs, renames and description overrides, all "
        "keyed by the backend's own tool names.",
    },
    "ToolShapingConfig": {
        "include": "Glob patterns on original tool names; when set, only matching tools are "
        "exposed.",
        "exclude": "Glob patterns on original tool names that are never exposed (nor callable).",
        "rename": "Original tool name -> new name (then namespaced as usual).",
        "descriptions": "Original tool name -> description shown to clients instead.",
    },
}


class _ConfigSchemaGenerator(GenerateJsonSchema):
    """Widens fields whose before-validators accept more than the field type says."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        function = schema["function"].get("function")
        if function is models._scalar_to_str:
            return {"type": ["string", "number", "boolean"]}
        if function in (models._none_to_empty_list, models._none_to_empty_dict):
            return {"anyOf": [inner, {"type": "null"}]}
        return inner


def _annotate(schema: dict[str, Any]) -> None:
    defs: dict[str, Any] = schema.get("$defs", {})
    for model, fields in _DESCRIPTIONS.items():
        target = schema if model == "RouterConfig" else defs.get(model)
        if target is None:
            continue
        props = target.get("properties", {})
        for field_name, text in fields.items():
            if field_name in props:
                props[field_name]["description"] = text
    backend = defs.get("BackendConfig")
    if backend is not None:
        # exactly one of command (stdio) or url (http/sse), as the loader requires
        backend["oneOf"] = [
            {"required": ["command"], "not": {"required": ["url"]}},
            {"required": ["url"], "not": {"required": ["command"]}},
        ]


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``backends.yaml``."""
    generated = RouterConfig.model_json_schema(
        mode="validation", schema_generator=_ConfigSchemaGenerator
    )
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "mcp-router backends configuration",
    }
    schema.update(generated)
    schema["title"] = "mcp-router backends configuration"
    _annotate(schema)
    return schema


def config_schema_text() -> str:
    """:func:`config_schema` as the text shipped in ``config/backends.schema.json``."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
