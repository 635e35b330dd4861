"""Process-level settings read from ``MCP_*`` environment variables (pydantic-settings).

The optional override fields (``default_strategy`` ... ``health_check_timeout``) default to
``None``; when set they override the matching value of the YAML configuration
(see :func:`mcp_router.config.apply_overrides`). ``.env`` files are never read.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_router.config.errors import ConfigError, format_key_path

__all__ = [
    "ENV_PREFIX",
    "JWT_ALGORITHMS",
    "LOG_LEVELS",
    "RouterSettings",
    "load_settings",
    "named_tokens",
    "split_token_item",
]

ENV_PREFIX = "MCP_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JWT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
    "Ed448",
    "HS256",
    "HS384",
    "HS512",
)
_PEM_MARKER = "-----BEGIN "


def _split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (comma-separated env values)."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


class RouterSettings(BaseSettings):
    """Router process settings; every field ``x`` is read from the env var ``MCP_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=None,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
    )

    backends_config: str | None = None
    transport: Literal["stdio", "http", "sse"] = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Front security. Bearer tokens come from the environment or a file, never from the YAML.
    auth_tokens: str | None = None  # comma-separated; a "name=token" item names its client
    auth_token_file: str | None = None  # one token per line; blank lines and "#" comments skipped
    jwt_jwks_uri: str | None = None
    jwt_public_key: str | None = None  # PEM text, or a path to a PEM file (HS*: the secret)
    jwt_issuer: str | None = None  # comma-separated: any of them is accepted
    jwt_audience: str | None = None  # comma-separated: any of them is accepted
    jwt_required_scopes: str | None = None  # comma-separated: all are required
    jwt_algorithm: str = "RS256"
    # /metrics holds names and counts, no secrets; scrapers usually sit on a private network.
    metrics_require_auth: bool = False
    allowed_hosts: str | None = None  # extra Host header values (comma-separated, globs)
    allowed_origins: str | None = None  # extra browser Origins (comma-separated, globs)
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    # Front limits (HTTP front; stdio has one client). What a client gets when it hits one is in
    # README.md's settings table. 64 KiB of request line + headers is 4-8x what nginx (32 KiB)
    # and Node (16 KiB) accept, room for large JWTs and cookies, and a flood of it costs nothing.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)  # until the headers' blank line
    max_sessions: int = Field(default=1000, ge=1)  # open streamable-HTTP sessions, all clients
    max_sessions_per_client: int = Field(default=100, ge=1)  # per token/JWT subject, else per IP
    session_idle_seconds: float = Field(default=600.0, gt=0)  # no request in flight that long
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)  # SIGTERM: in-flight calls finish
    otlp_endpoint: str | None = None  # else OTEL_EXPORTER_OTLP_ENDPOINT; unset = no tracing
    # Seals the multi-round-trip `requestState` the router hands 2026-07-28 clients (AES-GCM,
    # via the SDK's RequestStateBoundary). Unset: a key generated per process, so a state is
    # valid only on the replica that issued it; a replica set shares one key.
    state_key: str | None = Field(default=None, repr=False)
    # Shared state for a replica set (redis:// or rediss://, Redis 7 / Valkey). Unset: every
    # piece of client state stays in this process, as for one machine. Holds a password: never
    # logged or shown unredacted (repr=False; logs go through mcp_router.secrets).
    state_url: str | None = Field(default=None, repr=False)
    # This replica's name in logs, router_list_backends and /status; default hostname-pid.
    replica_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # What a backend may send (backends/transports): one JSON-RPC message at most
    # max_message_bytes (every transport; 16 MiB holds a 10 MiB image base64-encoded with
    # room to spare, while one message at the limit costs the router ~5x it in memory while it
    # parses), stdio stderr lines cut at backend_stderr_line_bytes and logged at most
    # backend_stderr_lines_per_second per backend (bursts of backend_stderr_burst).
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    backend_stderr_line_bytes: int = Field(default=8 * 1024, ge=80)
    backend_stderr_lines_per_second: float = Field(default=50.0, gt=0)
    backend_stderr_burst: int = Field(default=200, ge=1)
    watch_config: bool = True  # reload the config file when it changes (SIGHUP always works)
    config_poll_interval: float = Field(default=1.0, gt=0)
    # Governance (who may use what; see mcp_router.governance): the audit trail, the pinned
    # tool definitions, and which JWT claim holds a client's groups.
    audit_log: str | None = None  # a file path (appended to), or "-" for stderr
    pins_file: str | None = None  # default: $XDG_STATE_HOME/mcp-router/pins.json
    jwt_groups_claim: str = "groups"

    # Overrides of the YAML config (None = not set; env wins over the file when set).
    default_strategy: Literal["path", "capability", "fallback"] | None = None
    enable_namespaces: bool | None = None
    namespace_separator: str | None = None
    cache_ttl: float | None = None
    request_timeout: float | None = None
    max_retries: int | None = None
    retry_backoff: float | None = None
    max_backoff: float | None = None
    health_check_interval: float | None = None
    health_check_timeout: float | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            level = value.strip().upper()
            if level == "WARN":
                level = "WARNING"
            if level not in LOG_LEVELS:
                raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
            return level
        return value

    @field_validator("auth_tokens")
    @classmethod
    def _check_tokens(cls, value: str | None) -> str | None:
        # Set but holding no token would silently leave the endpoint open.
        if value is not None and not _split_list(value):
            raise ValueError("is set but holds no token (comma-separated bearer tokens)")
        if value is not None:
            named_tokens(_split_list(value))  # duplicate names are an error
        return value

    @field_validator("auth_token_file")
    @classmethod
    def _check_token_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"token file {value!r} does not exist or is not a file")
        try:
            tokens = read_token_file(path)
        except OSError as exc:
            raise ValueError(f"token file {value!r} cannot be read: {exc.strerror}") from None
        if not tokens:
            raise ValueError(f"token file {value!r} holds no token (one per line)")
        return value

    @field_validator("jwt_algorithm")
    @classmethod
    def _check_algorithm(cls, value: str) -> str:
        if value not in JWT_ALGORITHMS:
            raise ValueError(
                f"unsupported JWT algorithm {value!r}; one of {', '.join(JWT_ALGORITHMS)}"
            )
        return value

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str | None, info: Any) -> str | None:
        # The URL is never quoted back: it may hold the store's password.
        if value is None or not value.strip():
            return None
        scheme = urlparse(value.strip()).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"must be a redis://, rediss:// or unix:// URL (got scheme {scheme!r})"
            )
        if not info.data.get("state_key"):
            raise ValueError(
                "a replica set must share one MCP_STATE_KEY: set it (the same secret on every "
                "replica) together with MCP_STATE_URL"
            )
        return value.strip()

    @field_validator("jwt_jwks_uri")
    @classmethod
    def _check_jwks_uri(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_jwt(self) -> RouterSettings:
        problems: list[tuple[str, str]] = []
        symmetric = self.jwt_algorithm.startswith("HS")
        if self.jwt_jwks_uri and self.jwt_public_key:
            problems.append(
                ("jwt_public_key", "set MCP_JWT_PUBLIC_KEY or MCP_JWT_JWKS_URI, not both")
            )
        elif self.jwt_jwks_uri and symmetric:
            problems.append(
                (
                    "jwt_algorithm",
                    f"{self.jwt_algorithm} uses a shared secret: a JWKS URI needs RS/PS/ES/EdDSA",
                )
            )
        elif self.jwt_public_key and _PEM_MARKER not in self.jwt_public_key:
            path = Path(self.jwt_public_key).expanduser()
            if not path.is_file() and not symmetric:
                problems.append(
                    ("jwt_public_key", "is neither PEM text nor the path of an existing file")
                )
        if self.metrics_require_auth and not self.auth_enabled:
            problems.append(
                (
                    "metrics_require_auth",
                    "needs MCP_AUTH_TOKENS, MCP_AUTH_TOKEN_FILE or a JWT key to check tokens",
                )
            )
        if not self.jwt_enabled:
            for name in ("jwt_issuer", "jwt_audience", "jwt_required_scopes"):
                if getattr(self, name):
                    problems.append(
                        (name, "has no effect without MCP_JWT_JWKS_URI or MCP_JWT_PUBLIC_KEY")
                    )
        if problems:
            raise ValidationError.from_exception_data(
                "RouterSettings",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message), loc=(field,), input=None
                    )
                    for field, message in problems
                ],
            )
        return self

    @model_validator(mode="after")
    def _check_token_names(self) -> RouterSettings:
        if self.auth_token_file:
            try:
                _ = self.auth_token_items
            except ValueError as exc:  # a name used in both MCP_AUTH_TOKENS and the file
                raise ValidationError.from_exception_data(
                    "RouterSettings",
                    [
                        InitErrorDetails(
                            type=PydanticCustomError("value_error", str(exc)),
                            loc=("auth_token_file",),
                            input=None,
                        )
                    ],
                ) from None
        return self

    @property
    def auth_token_list(self) -> list[str]:
        """Accepted static bearer tokens: ``MCP_AUTH_TOKENS`` plus ``MCP_AUTH_TOKEN_FILE``.

        The token values only (``name=`` prefixes removed): what must never be logged.
        """
        return [token for _name, token in self.auth_token_items]

    @property
    def auth_token_items(self) -> list[tuple[str, str]]:
        """``(identity name, token)`` for every accepted static token, in order.

        Items are ``name=token`` or a bare token, which is named by its position
        (``static-1``, ``static-2``, ...; ``MCP_AUTH_TOKENS`` first, then the token file).
        """
        items = _split_list(self.auth_tokens)
        if self.auth_token_file:
            items += [
                t
                for t in read_token_file(Path(self.auth_token_file).expanduser())
                if t not in items
            ]
        return named_tokens(items)

    @property
    def jwt_enabled(self) -> bool:
        """Whether JWT bearer tokens are accepted (a JWKS URI or a key is set)."""
        return bool(self.jwt_jwks_uri or self.jwt_public_key)

    @property
    def auth_enabled(self) -> bool:
        """Whether the MCP endpoint requires a bearer token."""
        return bool(self.auth_tokens or self.auth_token_file or self.jwt_enabled)

    @property
    def jwt_issuer_list(self) -> list[str]:
        """Accepted ``iss`` values."""
        return _split_list(self.jwt_issuer)

    @property
    def jwt_audience_list(self) -> list[str]:
        """Accepted ``aud`` values."""
        return _split_list(self.jwt_audience)

    @property
    def jwt_scope_list(self) -> list[str]:
        """Scopes every JWT must carry."""
        return _split_list(self.jwt_required_scopes)

    @property
    def allowed_host_list(self) -> list[str]:
        """Host header values accepted besides localhost, 127.0.0.1, ::1 and the bound address."""
        return _split_list(self.allowed_hosts)

    @property
    def allowed_origin_list(self) -> list[str]:
        """Browser Origins accepted besides same-origin and loopback ones."""
        return _split_list(self.allowed_origins)

    @classmethod
    def env_var(cls, field_name: str) -> str:
        """The environment variable that sets ``field_name`` (``port`` -> ``MCP_PORT``)."""
        return f"{ENV_PREFIX}{field_name.upper()}"


def read_token_file(path: Path) -> list[str]:
    """Tokens in a token file: one per line; blank lines and ``#`` comments are skipped."""
    tokens: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.strip()
        if token and not token.startswith("#") and token not in tokens:
            tokens.append(token)
    return tokens


_TOKEN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$")


def split_token_item(item: str) -> tuple[str | None, str]:
    """``"alice=s3cret"`` -> ``("alice", "s3cret")``; a bare token -> ``(None, token)``.

    An item is named when the text before its first ``=`` is a valid name (a letter, then
    letters, digits, ``_ . @ -``) and the rest is a token that does not itself start with
    ``=``: so base64 padding (``abc==``) stays a bare token.
    """
    name, sep, token = item.partition("=")
    if sep and token and not token.startswith("=") and _TOKEN_NAME_RE.match(name):
        return name, token
    return None, item


def named_tokens(items: list[str]) -> list[tuple[str, str]]:
    """Name every token item (see :func:`split_token_item`); a name used twice is an error."""
    named: list[tuple[str, str]] = []
    seen: set[str] = set()
    for position, item in enumerate(items, start=1):
        name, token = split_token_item(item)
        name = name or f"static-{position}"
        if name in seen:
            raise ValueError(f"token name {name!r} is used twice (names must be unique)")
        seen.add(name)
        named.append((name, token))
    return named


def _cli_option(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def load_settings(**cli_overrides: Any) -> RouterSettings:
    """Read settings from the environment; keyword values that are not ``None`` win over env.

    Raises :class:`ConfigError` (source ``"environment"``, or ``"command line"`` when only
    command-line values are wrong) naming the variable or option for any invalid value.
    """
    unknown = sorted(set(cli_overrides) - set(RouterSettings.model_fields))
    if unknown:
        raise TypeError(f"load_settings() got unknown setting(s): {', '.join(unknown)}")
    given = {key: value for key, value in cli_overrides.items() if value is not None}
    try:
        return RouterSettings(**given)
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        from_env = False
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            field = str(loc[0]) if loc else ""
            if field in given:
                key = _cli_option(field)
            else:
                from_env = True
                key = RouterSettings.env_var(field) if field else ENV_PREFIX + "*"
            if len(loc) > 1:
                key += f" ({format_key_path(loc[1:])})"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] != "value_error" and "input" in error and field not in given:
                message += f" (got {error['input']!r})"
            problems.append((key, message))
        raise ConfigError("environment" if from_env else "command line", problems) from None
