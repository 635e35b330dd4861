"""Loading the router configuration: file discovery, ``${VAR}`` expansion, validation, overrides.

Every failure is a :class:`ConfigError` naming the source, the key path and the problem; no
traceback ever reaches the user for a bad configuration.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from mcp_router.config.errors import ConfigError, format_key_path
from mcp_router.config.models import (
    BACKEND_NAME_PATTERN,
    DEFAULT_SOURCE,
    BackendConfig,
    RouterConfig,
)

if TYPE_CHECKING:
    from mcp_router.settings import RouterSettings

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "apply_overrides",
    "default_config",
    "expand_env",
    "load_config",
    "load_effective_config",
    "mcp_servers_to_config",
    "resolve_config_path",
    "validation_problems",
]

logger = logging.getLogger("mcp_router.config")

DEFAULT_CONFIG_PATH = Path("config") / "backends.yaml"
"""Looked up relative to the current directory when no config path is given."""

ENVIRONMENT_SOURCE = "environment"

_Loc = tuple[str | int, ...]

# ---------------------------------------------------------------------------------------------
# ${VAR} expansion
# ---------------------------------------------------------------------------------------------

_EXPANSION_RE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_VAR_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def _expand_string(
    value: str,
    environ: Mapping[str, str],
    loc: _Loc,
    problems: list[tuple[str, str]],
    expanded: dict[str, str] | None = None,
) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        body = match.group(1)
        if body is None:
            problems.append(
                (format_key_path(loc), "unterminated '${' (write '$$' for a literal '$')")
            )
            return token
        parsed = _VAR_RE.match(body)
        if parsed is None:
            problems.append(
                (
                    format_key_path(loc),
                    f"invalid variable reference {token!r}: use ${{NAME}} or ${{NAME:-default}} "
                    "(write '$$' for a literal '$')",
                )
            )
            return token
        name, default = parsed.group(1), parsed.group(2)
        current = environ.get(name)
        if current and expanded is not None:
            expanded[name] = current  # a default is written in the file: not recorded
        if default is not None:
            return current if current else default
        if current is None:
            problems.append(
                (
                    format_key_path(loc),
                    f"environment variable {name} is not set "
                    f"(use ${{{name}:-default}} to give a default)",
                )
            )
            return token
        return current

    if "$" not in value:
        return value
    return _EXPANSION_RE.sub(replace, value)


def _expand_node(
    node: Any,
    environ: Mapping[str, str],
    loc: _Loc,
    problems: list[tuple[str, str]],
    expanded: dict[str, str] | None = None,
) -> Any:
    if isinstance(node, str):
        return _expand_string(node, environ, loc, problems, expanded)
    if isinstance(node, dict):
        return {
            key: _expand_node(value, environ, (*loc, str(key)), problems, expanded)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _expand_node(item, environ, (*loc, index), problems, expanded)
            for index, item in enumerate(node)
        ]
    return node


def expand_env(
    data: Any,
    environ: Mapping[str, str] | None = None,
    *,
    source: str = "",
    expanded: dict[str, str] | None = None,
) -> Any:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$$`` in every string value of ``data``.

    Mapping keys are left untouched. ``${VAR:-default}`` uses the default when ``VAR`` is unset
    or empty; an unset ``${VAR}`` is an error. Raises :class:`ConfigError` listing every problem.
    ``expanded``, when given, receives every variable substituted from the environment and its
    value (the router treats all of them as secrets, see :mod:`mcp_router.secrets`).
    """
    env = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    result = _expand_node(data, env, (), problems, expanded)
    if problems:
        raise ConfigError(source or "<config>", problems)
    return result


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class _StrictSafeLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys in a mapping instead of keeping the last one."""


def _construct_mapping_no_duplicates(
    loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            continue
        if key in seen:
            first = seen[key].start_mark
            raise yaml.constructor.ConstructorError(
                f"first defined at line {first.line + 1}",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = key_node
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    return mapping


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping_no_duplicates,
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and mark is exc.problem_mark:
            problem = f"{problem} ({exc.context})"
        raise ConfigError(source, [(where, f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [("", f"YAML syntax error: {exc}")]) from None


def _parse_json(text: str, source: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(source, [(where, f"JSON syntax error: {exc.msg}")]) from None


# ---------------------------------------------------------------------------------------------
# mcpServers (Claude Desktop / .mcp.json / Cursor) import
# ---------------------------------------------------------------------------------------------

_MCP_SERVER_TYPES: dict[str, str] = {
    "stdio": "stdio",
    "sse": "sse",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
}

_MCP_SERVER_COPIED_KEYS = ("command", "args", "env", "cwd", "url", "headers")
_BACKEND_NAME_RE = re.compile(BACKEND_NAME_PATTERN)
_NOT_BACKEND_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def mcp_server_backend_names(keys: Sequence[str]) -> dict[str, str]:
    """The backend name of each ``mcpServers`` key (same order): one rule for ``--config`` and
    ``mcp-router import``. A valid name is kept; otherwise each run of characters a backend
    name cannot hold (a space, ``/``, ``:``...) becomes ``-`` (``"my server"`` ->
    ``"my-server"``), a name that does not start with a letter or digit gets a ``server-``
    prefix, and a name taken already gets ``-2``, ``-3``...
    """
    taken = {raw for raw in keys if _BACKEND_NAME_RE.match(raw)}  # valid keys keep their name
    names: dict[str, str] = {}
    for raw in keys:
        if _BACKEND_NAME_RE.match(raw):
            names[raw] = raw
            continue
        name = _NOT_BACKEND_NAME_CHARS.sub("-", raw).strip("-._")
        if not name or not name[0].isalnum():
            name = "server" + (f"-{name}" if name else "")
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        names[raw] = name
    return names


def mcp_servers_to_config(
    data: Mapping[str, Any], *, source: str = "<mcpServers>"
) -> dict[str, Any]:
    """Convert an ``{"mcpServers": {...}}`` document into router config data (unvalidated).

    Each entry becomes a backend named after its key (made a valid backend name by
    :func:`mcp_server_backend_names`): ``command``/``args``/``env``/``cwd`` for
    stdio servers, ``url``/``headers`` for remote ones; ``type``/``transport`` ``"sse"`` becomes
    transport ``sse``, ``"http"``/``"streamable-http"`` becomes ``http``; ``disabled: true``
    becomes ``enabled: false``. Client-specific keys (``autoApprove``, ...) are dropped. A
    top-level ``routing`` mapping is carried over. Raises :class:`ConfigError` on a malformed
    document.
    """
    servers = data.get("mcpServers")
    if not isinstance(servers, Mapping):
        raise ConfigError(source, [("mcpServers", "must be a mapping of server name to server")])
    backends: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    backend_names = mcp_server_backend_names([str(key) for key in servers])
    for name, entry in servers.items():
        if not isinstance(entry, Mapping):
            problems.append(
                (f"mcpServers.{name}", f"must be a mapping, got {type(entry).__name__}")
            )
            continue
        backend: dict[str, Any] = {"name": backend_names[str(name)]}
        for key in _MCP_SERVER_COPIED_KEYS:
            if key in entry and entry[key] is not None:
                backend[key] = entry[key]
        kind = entry.get("type", entry.get("transport"))
        if kind is not None:
            normalised = _MCP_SERVER_TYPES.get(str(kind).strip().lower())
            if normalised is None:
                problems.append(
                    (
                        f"mcpServers.{name}.type",
                        f"unknown server type {kind!r} "
                        "(expected stdio, http, streamable-http or sse)",
                    )
                )
                continue
            backend["transport"] = normalised
        if entry.get("disabled") is True or entry.get("enabled") is False:
            backend["enabled"] = False
        backends.append(backend)
    if problems:
        raise ConfigError(source, problems)
    result: dict[str, Any] = {"backends": backends}
    if "routing" in data:
        result["routing"] = data["routing"]
    return result


# ---------------------------------------------------------------------------------------------
# Validation errors -> key paths
# ---------------------------------------------------------------------------------------------


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """Find the model class inside ``annotation`` (through Annotated, Optional, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(args[0])
    if origin in (typing.Union, types.UnionType, list, dict):
        candidates = args[-1:] if origin is dict else args
        for arg in candidates:
            found = _unwrap_model(arg)
            if found is not None:
                return found
    return None


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that holds the key at ``loc`` (``loc`` excludes that key itself)."""
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap_model(field.annotation)
    return current


# Error types whose message already says what the value was (or where it is irrelevant).
_NO_INPUT_ECHO = frozenset(
    {
        "value_error",
        "assertion_error",
        "duplicate_backend",
        "invalid_fallback",
        "missing_fallback_to",
        "transport_mismatch",
    }
)


def _problem_message(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    kind = error["type"]
    message = str(error["msg"])
    loc = tuple(error["loc"])
    if kind == "extra_forbidden" and loc:
        model = _model_at(root, loc[:-1])
        key = str(loc[-1])
        if model is not None:
            allowed = list(model.model_fields)
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown key {key!r}{hint} (allowed: {', '.join(allowed)})"
        return f"unknown key {key!r}"
    if kind == "missing":
        return "required key is missing"
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind not in _NO_INPUT_ECHO and "input" in error:
        value = error["input"]
        if value is None or isinstance(value, str | int | float | bool):
            message += f" (got {value!r})"
    return message


def validation_problems(
    exc: ValidationError,
    data: Any = None,
    *,
    root: type[BaseModel] = RouterConfig,
    rename: Callable[[_Loc], _Loc] | None = None,
) -> list[tuple[str, str]]:
    """Convert a pydantic ``ValidationError`` into ``(key_path, message)`` pairs.

    ``data`` (the validated input) lets a backend's problems mention its name; ``rename`` maps
    a location to the location a user sees in the file (used for ``mcpServers`` JSON).
    """
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc: _Loc = tuple(error["loc"])
        message = _problem_message(error, root)
        backend_name = _backend_name(data, loc)
        shown = rename(loc) if rename is not None else loc
        if backend_name is not None and rename is None:
            message += f" (backend {backend_name!r})"
        problems.append((format_key_path(shown), message))
    return problems


def _backend_name(data: Any, loc: _Loc) -> str | None:
    if len(loc) < 2 or loc[0] != "backends" or not isinstance(loc[1], int):
        return None
    if not isinstance(data, Mapping):
        return None
    backends = data.get("backends")
    if not isinstance(backends, list) or not 0 <= loc[1] < len(backends):
        return None
    entry = backends[loc[1]]
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and entry["name"]:
        return str(entry["name"])
    return None


def _validate(data: Any, source: str, rename: Callable[[_Loc], _Loc] | None = None) -> RouterConfig:
    try:
        config = RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, data, rename=rename)) from None
    config.source = source
    return config


# ---------------------------------------------------------------------------------------------
# Public loading API
# ---------------------------------------------------------------------------------------------


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> RouterConfig:
    """Load, expand and validate a YAML (or JSON) config file.

    An empty file gives a config with default routing and no backends. A ``.json`` file is
    parsed as JSON; if its top level has ``mcpServers`` it is converted with
    :func:`mcp_servers_to_config`. ``environ`` (default ``os.environ``) feeds ``${VAR}``
    expansion. Raises :class:`ConfigError` on any problem.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "is a directory, not a config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"not valid UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(source, f"cannot read file: {exc.strerror or exc}") from None

    is_json = path.suffix.lower() == ".json"
    data = _parse_json(text, source) if is_json else _parse_yaml(text, source)
    if data is None:
        config = RouterConfig()
        config.source = source
        return config
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            f"top level must be a mapping with 'routing' and 'backends' keys, "
            f"got {_describe_type(data)}",
        )

    expanded: dict[str, str] = {}
    data = expand_env(data, environ, source=source, expanded=expanded)

    if "mcpServers" in data:
        converted = mcp_servers_to_config(data, source=source)
        names = [str(key) for key in data["mcpServers"]]  # problems name the keys in the file
        for key, backend in zip(names, converted["backends"], strict=True):
            if backend["name"] != key:
                logger.warning("%s: server %r runs as backend %r", source, key, backend["name"])

        def rename(loc: _Loc) -> _Loc:
            if (
                len(loc) >= 2
                and loc[0] == "backends"
                and isinstance(loc[1], int)
                and 0 <= loc[1] < len(names)
            ):
                return ("mcpServers", names[loc[1]], *loc[2:])
            return loc

        config = _validate(converted, source, rename)
    else:
        config = _validate(data, source)
    config.expanded_env = expanded
    return config


def _describe_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def default_config() -> RouterConfig:
    """The built-in config: the bundled demo server (``mcp_router.template``) over stdio."""
    config = RouterConfig(
        backends=[
            BackendConfig(
                name="demo",
                transport="stdio",
                command=sys.executable,
                args=["-m", "mcp_router.template"],
                namespace="demo",
            )
        ]
    )
    config.source = DEFAULT_SOURCE
    return config


def resolve_config_path(
    explicit: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
) -> Path | None:
    """Decide which config file to load; ``None`` means the built-in default config.

    Order: ``explicit`` (must exist), else ``MCP_BACKENDS_CONFIG`` from ``environ`` (must
    exist), else ``config/backends.yaml`` under ``cwd`` (default: the current directory) if it
    exists, else ``None``.
    """
    env = os.environ if environ is None else environ
    chosen: str | os.PathLike[str] | None = explicit
    if chosen is None or str(chosen) == "":
        chosen = env.get("MCP_BACKENDS_CONFIG") or None
    base = Path.cwd() if cwd is None else cwd
    if chosen is not None:
        path = Path(chosen).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.exists():
            raise ConfigError(str(chosen), "file not found")
        if path.is_dir():
            raise ConfigError(str(chosen), "is a directory, not a config file")
        return path if cwd is not None else Path(chosen).expanduser()
    candidate = base / DEFAULT_CONFIG_PATH
    if candidate.is_file():
        return candidate if cwd is not None else DEFAULT_CONFIG_PATH
    return None


# ---------------------------------------------------------------------------------------------
# Environment overrides
# ---------------------------------------------------------------------------------------------

# settings field -> key path inside "routing"
_ROUTING_OVERRIDES: dict[str, tuple[str, ...]] = {
    "default_strategy": ("default_strategy",),
    "enable_namespaces": ("enable_namespace_prefixing",),
    "namespace_separator": ("namespace_separator",),
    "cache_ttl": ("capability_cache_ttl_seconds",),
    "request_timeout": ("request_timeout_seconds",),
    "max_retries": ("retry", "max_attempts"),
    "retry_backoff": ("retry", "backoff_multiplier"),
    "max_backoff": ("retry", "max_backoff_seconds"),
}

# settings field -> key inside every backend's "health_check"
_HEALTH_OVERRIDES: dict[str, str] = {
    "health_check_interval": "interval_seconds",
    "health_check_timeout": "timeout_seconds",
}


def _env_var(field: str) -> str:
    return f"MCP_{field.upper()}"


def apply_overrides(config: RouterConfig, settings: RouterSettings) -> RouterConfig:
    """Return ``config`` with every explicitly set ``MCP_*`` override applied (env wins).

    Only settings in ``settings.model_fields_set`` with a non-``None`` value count. The result
    is re-validated; an invalid value raises :class:`ConfigError` with source ``"environment"``
    and the env var name as key. ``source`` is preserved. ``config`` itself is not modified.
    """
    chosen = {
        field: getattr(settings, field)
        for field in (*_ROUTING_OVERRIDES, *_HEALTH_OVERRIDES)
        if field in settings.model_fields_set and getattr(settings, field) is not None
    }
    if not chosen:
        return config

    data = config.model_dump()
    owners: dict[_Loc, str] = {}
    for field, value in chosen.items():
        if field in _ROUTING_OVERRIDES:
            target = data["routing"]
            keys = _ROUTING_OVERRIDES[field]
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
            owners[("routing", *keys)] = _env_var(field)
        else:
            key = _HEALTH_OVERRIDES[field]
            for index, backend in enumerate(data["backends"]):
                backend["health_check"][key] = value
                owners[("backends", index, "health_check", key)] = _env_var(field)

    try:
        updated = RouterConfig.model_validate(data)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for error in exc.errors(include_url=False):
            loc: _Loc = tuple(error["loc"])
            message = _problem_message(error, RouterConfig)
            owner = owners.get(loc)
            if owner is None:
                problems.append((format_key_path(loc), message))
                continue
            entry = (owner, message)
            if entry not in problems:
                problems.append(entry)
        raise ConfigError(ENVIRONMENT_SOURCE, problems) from None
    updated.source = config.source
    updated.expanded_env = config.expanded_env
    return updated


def load_effective_config(
    settings: RouterSettings,
    *,
    explicit_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> RouterConfig:
    """The config the router runs with: file (or built-in default) plus env overrides.

    The file is ``explicit_path``, else ``settings.backends_config``, else
    ``config/backends.yaml`` if present, else the built-in :func:`default_config`.
    """
    explicit = explicit_path if explicit_path is not None else settings.backends_config
    path = resolve_config_path(explicit, environ, cwd=cwd)
    config = default_config() if path is None else load_config(path, environ=environ)
    return apply_overrides(config, settings)
