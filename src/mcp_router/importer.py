"""``mcp-router import``: turn an ``mcpServers`` JSON file into an equivalent backends.yaml.

Reads what Claude Desktop (``claude_desktop_config.json``), Claude Code (``.mcp.json``) and
Cursor (``mcp.json``) write: a top-level ``mcpServers`` mapping (VS Code's ``servers`` mapping
is accepted too) whose entries are stdio servers (``command``, ``args``, ``env``, ``cwd``) or
remote ones (``url``, ``headers``, ``type: http|streamable-http|sse``). The conversion is the
loader's own (:func:`mcp_router.config.mcp_servers_to_config`), so the YAML written loads back
to the same backends as the JSON would.

Secrets: by default values are copied literally (the YAML then works as is, like the JSON it
came from) and a warning names every env variable and header that is secret by the router's
own rule (:mod:`mcp_router.secrets`: a header value, unless a standard one such as ``Accept``;
an env value whose name looks secret, or that starts with an auth scheme), so the user can
move it out of the file. With ``env_refs=True`` those values are replaced by ``${VAR}``
references instead (env entries by ``${THEIR_OWN_NAME}``, headers by
``${<SERVER>_<HEADER>}``, keeping a ``Bearer`` prefix) and the warning lists the variables to
set. A literal ``$`` is written as ``$$`` so that ``${VAR}`` expansion keeps it; ``${VAR}``
references already present (Claude Code's ``.mcp.json`` supports them too) are kept.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mcp_router.config.errors import ConfigError
from mcp_router.config.loader import (
    expand_env,
    mcp_server_backend_names,
    mcp_servers_to_config,
    validation_problems,
)
from mcp_router.config.models import RouterConfig
from mcp_router.secrets import secret_header, secret_name

__all__ = ["ImportResult", "convert_mcp_servers", "import_file", "looks_secret"]

_VALID_REF_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_KNOWN_KEYS = frozenset(
    {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "disabled", "enabled"}
)
_SCHEMES = ("Bearer ", "Basic ", "Token ", "Bot ")


@dataclass
class ImportResult:
    """The YAML text, the validated config it loads to, and warnings for the user."""

    yaml_text: str
    config: RouterConfig
    warnings: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)  # ${VAR}s the YAML needs


def looks_secret(key: str, value: str, *, header: bool = False) -> bool:
    """Whether an env variable (or, with ``header=True``, a header) holds a secret.

    The router's own rule (:func:`mcp_router.secrets.secret_name` / ``secret_header``), so what
    the import moves out of the file is exactly what the router would hide in its output.
    A ``${VAR}`` reference is not a secret (its value is not in the file).
    """
    if not value or _VALID_REF_RE.fullmatch(value.strip()):
        return False
    if header:
        return secret_header(key)
    return secret_name(key) or value.startswith(_SCHEMES)


def _escape_dollars(value: str) -> str:
    """Double every ``$`` that is not part of a ``${VAR}`` / ``${VAR:-default}`` reference."""
    out: list[str] = []
    pos = 0
    for match in _VALID_REF_RE.finditer(value):
        out.append(value[pos : match.start()].replace("$", "$$"))
        out.append(match.group(0))
        pos = match.end()
    out.append(value[pos:].replace("$", "$$"))
    return "".join(out)


def _env_var_name(*parts: str) -> str:
    name = "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p).strip("_") for p in parts).upper()
    if not name or name[0].isdigit():
        name = "MCP_" + name
    return name


def _servers(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    for key in ("mcpServers", "servers"):
        servers = data.get(key)
        if isinstance(servers, Mapping):
            return servers
    raise ConfigError(
        source, [("mcpServers", "no 'mcpServers' mapping found (is this an MCP client config?)")]
    )


def convert_mcp_servers(
    data: Mapping[str, Any], *, source: str = "<mcpServers>", env_refs: bool = False
) -> ImportResult:
    """Convert a parsed ``mcpServers`` document; raises :class:`ConfigError` if it is invalid."""
    servers = _servers(data, source)
    warnings: list[str] = []
    variables: list[str] = []
    names = mcp_server_backend_names([str(key) for key in servers])
    for raw_name, entry in servers.items():
        name = names[str(raw_name)]
        if name != raw_name:
            warnings.append(f"server {raw_name!r} is imported as backend {name!r}")
        if isinstance(entry, Mapping):
            dropped = sorted(set(entry) - _KNOWN_KEYS)
            if dropped:
                warnings.append(
                    f"{name}: client-specific keys not carried over: {', '.join(dropped)}"
                )
    converted = mcp_servers_to_config({"mcpServers": servers}, source=source)

    backends: list[dict[str, Any]] = []
    for backend in converted["backends"]:
        out: dict[str, Any] = {"name": backend["name"]}
        for key in ("command", "args", "cwd", "url"):
            if key in backend:
                out[key] = backend[key]
        if "url" in backend:
            out["transport"] = backend.get("transport") or _url_transport(backend["url"])
        elif backend.get("transport") not in (None, "stdio"):
            out["transport"] = backend["transport"]
        for key in ("env", "headers"):
            values = backend.get(key)
            if not isinstance(values, Mapping) or not values:
                continue
            shaped: dict[str, Any] = {}
            for var, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value)
                if isinstance(value, str) and looks_secret(
                    str(var), value, header=key == "headers"
                ):
                    where = f"{backend['name']}.{key}.{var}"
                    if env_refs:
                        ref = (
                            _env_var_name(str(var))
                            if key == "env"
                            else _env_var_name(backend["name"], str(var))
                        )
                        prefix = next((s for s in _SCHEMES if value.startswith(s)), "")
                        text = f"{prefix}${{{ref}}}"
                        variables.append(ref)
                        warnings.append(f"{where}: secret replaced by ${{{ref}}}")
                        shaped[str(var)] = text
                        continue
                    warnings.append(
                        f"{where}: looks like a secret and is copied literally "
                        "(use --env-refs to write a ${VAR} reference instead)"
                    )
                shaped[str(var)] = _escape_dollars(text) if isinstance(value, str) else value
            out[key] = shaped
        if isinstance(out.get("args"), list):
            out["args"] = [_escape_dollars(a) if isinstance(a, str) else a for a in out["args"]]
        for key in ("command", "cwd", "url"):
            if isinstance(out.get(key), str):
                out[key] = _escape_dollars(out[key])
        if backend.get("enabled") is False:
            out["enabled"] = False
        backends.append(out)

    document: dict[str, Any] = {"backends": backends}
    config = _validate(document, source)
    header = f"# Imported from {source} by `mcp-router import`.\n"
    if variables:
        header += f"# Set these environment variables: {', '.join(sorted(set(variables)))}\n"
    text = header + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    return ImportResult(text, config, warnings, sorted(set(variables)))


def _url_transport(url: str) -> str:
    path = url.split("?", 1)[0].rstrip("/")
    return "sse" if path.endswith("/sse") else "http"


class _StandIns(dict[str, str]):
    """The real environment, with a harmless stand-in value for every variable it lacks."""

    def get(self, key: str, default: Any = None) -> str:  # type: ignore[override]
        return super().get(key, "unset")


def _validate(document: dict[str, Any], source: str) -> RouterConfig:
    expanded = expand_env(document, _StandIns(os.environ), source=source)
    try:
        return RouterConfig.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, expanded)) from None


def import_file(path: Path | str, *, env_refs: bool = False) -> ImportResult:
    """Read and convert an MCP client config file; raises :class:`ConfigError`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"cannot read file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ConfigError(source, [(where, f"JSON syntax error: {exc.msg}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(source, "top level must be a JSON object with 'mcpServers'")
    return convert_mcp_servers(data, source=source, env_refs=env_refs)
