"""Pydantic models for the router configuration file (``config/backends.yaml``).

Every model forbids unknown keys, so a typo in the file is reported instead of being ignored.
Cross-field rules that concern one location (for example a duplicate backend name) are raised as
``ValidationError`` details carrying that location, so the loader can name the exact key path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "BACKEND_NAME_PATTERN",
    "DEFAULT_SOURCE",
    "NAMESPACE_PATTERN",
    "BackendConfig",
    "CircuitBreakerConfig",
    "HealthCheckConfig",
    "InheritEnv",
    "LoadBalancing",
    "PinningMode",
    "PoliciesConfig",
    "PolicyRule",
    "RateLimitConfig",
    "RetryConfig",
    "RouteRule",
    "RouterConfig",
    "RoutingConfig",
    "RoutingStrategy",
    "ToolDiscovery",
    "ToolShapingConfig",
    "Transport",
]

BACKEND_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
_SEPARATOR_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_NOT_NAMESPACE_CHAR_RE = re.compile(r"[^A-Za-z0-9_-]")

DEFAULT_SOURCE = "<built-in default>"

RoutingStrategy = Literal["path", "capability", "fallback"]
LoadBalancing = Literal["round_robin", "least_in_flight"]
# The router's own tools are named ``router_*``; no backend may expose a name there.
RESERVED_NAMESPACE = "router"
# The names, defined once: the routing engine validates against these same tuples.
ROUTING_STRATEGIES: tuple[str, ...] = get_args(RoutingStrategy)
LOAD_BALANCING_MODES: tuple[str, ...] = get_args(LoadBalancing)
Transport = Literal["stdio", "http", "sse"]
# Which protocol eras the router may speak with a backend: "auto" probes 2026-07-28
# (server/discover) and uses it for 2026-07-28 clients; "legacy" keeps the handshake era only.
ProtocolEra = Literal["auto", "legacy"]
"""The resolved backend transport (``streamable-http`` is normalised to ``http``)."""
InheritEnv = Literal["default", "all", "none"]
"""What a stdio backend gets from the router's environment (see ``BackendConfig``)."""
_ENV_NAME_RE = re.compile(r"^[A-Za-z_*?\[][A-Za-z0-9_*?\[\]!-]*$")
ToolDiscovery = Literal["all", "search"]
"""``all``: list every tool; ``search``: list pinned tools plus router_search_tools/call_tool."""
PinningMode = Literal["off", "warn", "enforce"]
"""What a changed tool/prompt/template definition does: nothing, a warning, or quarantine."""


def _none_to_empty_list(value: Any) -> Any:
    """Treat an explicit YAML null (``args:`` with nothing after it) as an empty list."""
    return [] if value is None else value


def _none_to_empty_dict(value: Any) -> Any:
    """Treat an explicit YAML null as an empty mapping (so sub-models take their defaults)."""
    return {} if value is None else value


def _scalar_to_str(value: Any) -> Any:
    """Accept YAML numbers and booleans where a string is expected (``args: [--port, 8080]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


_ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
_StrList = Annotated[list[_ScalarStr], BeforeValidator(_none_to_empty_list)]
_StrMap = Annotated[dict[str, _ScalarStr], BeforeValidator(_none_to_empty_dict)]


def _location_error(
    title: str, loc: tuple[str | int, ...], error_type: str, message: str, value: Any
) -> ValidationError:
    """Build a ValidationError pointing at ``loc`` (relative to the model being validated)."""
    return ValidationError.from_exception_data(
        title,
        [InitErrorDetails(type=PydanticCustomError(error_type, message), loc=loc, input=value)],
    )


class RetryConfig(BaseModel):
    """Retry policy for calls that may safely be repeated on the same backend."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    max_backoff_seconds: float = Field(default=10.0, gt=0)
    initial_backoff_seconds: float = Field(default=0.1, ge=0)


class RateLimitConfig(BaseModel):
    """Per-client request rate limit on the front (token bucket); off unless a rate is set.

    A client is its bearer token's identity, else its MCP session, else its IP address.
    ``MCP_RATE_LIMIT_PER_SECOND`` / ``MCP_RATE_LIMIT_BURST`` override these values.
    """

    model_config = ConfigDict(extra="forbid")

    requests_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)  # default: twice the rate, at least 1


class RouteRule(BaseModel):
    """A routing rule of a backend: a glob on tool names and how matching calls are routed."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(min_length=1)
    strategy: RoutingStrategy = "path"
    fallback_to: str | None = None

    @model_validator(mode="after")
    def _fallback_needs_target(self) -> RouteRule:
        if self.strategy == "fallback" and not self.fallback_to:
            raise _location_error(
                "RouteRule",
                ("fallback_to",),
                "missing_fallback_to",
                "strategy 'fallback' requires fallback_to (the name of another backend)",
                self.fallback_to,
            )
        return self


class HealthCheckConfig(BaseModel):
    """Active health probing of one backend (MCP ping, plus an optional HTTP GET endpoint)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_seconds: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    endpoint: str | None = None


class CircuitBreakerConfig(BaseModel):
    """Circuit breaker thresholds of one backend."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    timeout_seconds: float = Field(default=60.0, gt=0)
    half_open_attempts: int = Field(default=3, ge=1)


class ToolShapingConfig(BaseModel):
    """Which tools of one backend are exposed, under which names and with which descriptions.

    Every key refers to the backend's own (original) tool names. ``include`` and ``exclude`` are
    glob patterns (``fnmatch``, case-sensitive): a tool is exposed when it matches some
    ``include`` pattern (or ``include`` is empty) and no ``exclude`` pattern. ``rename`` maps an
    original name to the name used instead of it before namespacing (``{ns}_{new}``);
    ``descriptions`` replaces the description clients see. Calls still reach the backend under
    the original name.
    """

    model_config = ConfigDict(extra="forbid")

    include: _StrList = Field(default_factory=list)
    exclude: _StrList = Field(default_factory=list)
    rename: _StrMap = Field(default_factory=dict)
    descriptions: _StrMap = Field(default_factory=dict)

    @field_validator("rename")
    @classmethod
    def _check_rename(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for original, new in value.items():
            if not new.strip():
                raise ValueError(f"rename of {original!r}: the new name must not be empty")
            if new in seen:
                raise ValueError(
                    f"rename: {seen[new]!r} and {original!r} are both renamed to {new!r}"
                )
            seen[new] = original
        return value

    @property
    def is_identity(self) -> bool:
        """True when this shaping changes nothing (every tool exposed as the backend lists it)."""
        return not (self.include or self.exclude or self.rename or self.descriptions)


class BackendConfig(BaseModel):
    """One MCP server behind the router: a stdio command or an HTTP/SSE URL.

    After validation ``transport`` is always set to ``"stdio"``, ``"http"`` or ``"sse"``
    (inferred from ``command`` / ``url`` when absent; ``"streamable-http"`` becomes ``"http"``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=BACKEND_NAME_PATTERN)
    transport: Literal["stdio", "http", "streamable-http", "sse"] | None = None
    command: str | None = None
    args: _StrList = Field(default_factory=list)
    env: _StrMap = Field(default_factory=dict)
    # stdio: what comes from the router's environment. "default": a documented allow-list
    # (base set, TLS trust, proxies, locale, TZ, temp and XDG dirs; see the README); "all":
    # everything (the router's secrets too); "none": nothing. env_passthrough adds names or
    # fnmatch patterns; `env` is applied last.
    inherit_env: InheritEnv = "default"
    env_passthrough: _StrList = Field(default_factory=list)
    cwd: str | None = None
    url: str | None = None
    headers: _StrMap = Field(default_factory=dict)
    # Path segments of `url` that are credentials (1-based; -1 = the last one), hidden wherever
    # the URL is shown or logged, e.g. a webhook-style https://host/hooks/T01/SECRET -> [-1].
    secret_path_segments: Annotated[list[int], BeforeValidator(_none_to_empty_list)] = Field(
        default_factory=list
    )
    namespace: str | None = None
    priority: int = 100
    enabled: bool = True
    timeout_seconds: float | None = Field(default=None, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # Concurrent requests this backend may have in flight; beyond it a call fails at once with
    # an error naming the backend and the cap (None = no cap).
    max_in_flight: int | None = Field(default=None, ge=1)
    # "per_client": every client gets its own session with this backend (for backends that
    # keep per-client state, and so that sampling/elicitation always find their caller).
    session_mode: Literal["shared", "per_client"] = "shared"
    # "auto": a backend that speaks 2026-07-28 (HTTP, stdio; SSE never does) serves 2026-07-28
    # clients in that era (their InputRequiredResults pass through); "legacy": every client is
    # served over the handshake-era session (the router turns mid-call requests into rounds).
    era: ProtocolEra = "auto"
    # Resource reads are forwarded only for URIs the backend listed or that match one of its
    # templates; true also forwards any other URI in this backend's namespace (a backend
    # whose resources cannot all be listed). Off by default: a client-chosen URI must not
    # reach a backend that never offered it (e.g. a URL fetcher asked for a metadata address).
    allow_unlisted_uris: bool = False
    routes: Annotated[list[RouteRule], BeforeValidator(_none_to_empty_list)] = Field(
        default_factory=list
    )
    health_check: Annotated[HealthCheckConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=HealthCheckConfig
    )
    circuit_breaker: Annotated[CircuitBreakerConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=CircuitBreakerConfig
    )
    tools: Annotated[ToolShapingConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=ToolShapingConfig
    )
    # Overrides routing.pinning for this backend's definitions (None: the router-wide mode).
    pinning: PinningMode | None = None

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str | None) -> str | None:
        if value and not _NAMESPACE_RE.match(value):
            raise ValueError(
                f"namespace {value!r} must match {NAMESPACE_PATTERN} "
                '(letters, digits, "_" and "-"), or be "" for no prefix'
            )
        return value

    @field_validator("env_passthrough")
    @classmethod
    def _check_passthrough(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME_RE.match(name):
                raise ValueError(
                    f"env_passthrough: {name!r} is not an environment variable name or "
                    "pattern (letters, digits, _ and the wildcards * ? [...])"
                )
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("command must not be empty")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url must be an absolute http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_secret_path_segments(self) -> BackendConfig:
        if not self.secret_path_segments:
            return self
        problem = None
        if self.url is None:
            problem = "secret_path_segments needs 'url' (positions of path segments in it)"
        else:
            core = urlparse(self.url).path.strip("/")
            count = len(core.split("/")) if core else 0
            for position in self.secret_path_segments:
                if position == 0 or abs(position) > count:
                    problem = (
                        f"secret_path_segments: {position} is not a path segment of url "
                        f"(it has {count}; use 1..{count}, or -1 for the last)"
                    )
                    break
        if problem is not None:
            raise _location_error(
                "BackendConfig",
                ("secret_path_segments",),
                "value_error",
                problem,
                self.secret_path_segments,
            )
        return self

    @model_validator(mode="after")
    def _resolve_transport(self) -> BackendConfig:
        if self.command is not None and self.url is not None:
            raise ValueError(
                "set exactly one of 'command' (stdio backend) or 'url' (http/sse backend), not both"
            )
        if self.command is None and self.url is None:
            raise ValueError(
                "set exactly one of 'command' (stdio backend) or 'url' (http/sse backend)"
            )
        transport = self.transport
        if transport == "streamable-http":
            transport = "http"
        if transport is None:
            if self.command is not None:
                transport = "stdio"
            else:
                assert self.url is not None
                path = urlparse(self.url).path.rstrip("/")
                transport = "sse" if path.endswith("/sse") else "http"
        elif transport == "stdio" and self.url is not None:
            raise _location_error(
                "BackendConfig",
                ("transport",),
                "transport_mismatch",
                "transport 'stdio' needs 'command', but 'url' is set",
                self.transport,
            )
        elif transport in ("http", "sse") and self.command is not None:
            raise _location_error(
                "BackendConfig",
                ("transport",),
                "transport_mismatch",
                f"transport {self.transport!r} needs 'url', but 'command' is set",
                self.transport,
            )
        if transport != "stdio" and (self.inherit_env != "default" or self.env_passthrough):
            key = "inherit_env" if self.inherit_env != "default" else "env_passthrough"
            raise _location_error(
                "BackendConfig",
                (key,),
                "stdio_only",
                f"{key} applies to stdio backends only (they start a process), not {transport}",
                getattr(self, key),
            )
        self.transport = transport
        return self

    @property
    def resolved_transport(self) -> Transport:
        """The transport after inference and normalisation: ``stdio``, ``http`` or ``sse``
        (the key of `backends.transports.TRANSPORTS`)."""
        transport = self.transport
        if transport is None:
            return "stdio" if self.command is not None else "http"
        if transport == "streamable-http":
            return "http"
        return transport

    @property
    def effective_namespace(self) -> str:
        """The prefix of this backend's exposed names; ``""`` means no prefix.

        Defaults to the backend name. A name containing characters a namespace may not hold
        (``.``) has them replaced by ``_`` so the prefix is always a valid tool-name part.
        """
        if self.namespace is not None:
            return self.namespace
        if _NAMESPACE_RE.match(self.name):
            return self.name
        return _NOT_NAMESPACE_CHAR_RE.sub("_", self.name)


class RoutingConfig(BaseModel):
    """Router-wide routing, naming, timeout and retry settings."""

    model_config = ConfigDict(extra="forbid")

    default_strategy: RoutingStrategy = "capability"
    enable_namespace_prefixing: bool = True
    namespace_separator: str = "_"
    capability_cache_ttl_seconds: float = Field(default=300.0, ge=0)
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    # A 2026-07-28 client asked for input (InputRequiredResult) has this long to retry before
    # the call is cancelled on the backend.
    input_timeout_seconds: float = Field(default=300.0, gt=0)
    load_balancing: LoadBalancing = "least_in_flight"
    retry: Annotated[RetryConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=RetryConfig
    )
    rate_limit: Annotated[RateLimitConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=RateLimitConfig
    )
    tool_discovery: ToolDiscovery = "all"
    pinned_tools: _StrList = Field(default_factory=list)
    # Page tools/resources/prompts lists with cursors, this many per page (None: one page).
    list_page_size: int | None = Field(default=None, ge=1)
    # Pinned definitions (see mcp_router.governance.pins): what a backend changing a tool,
    # prompt or template definition at run time does; per-backend ``pinning`` overrides it.
    pinning: PinningMode = "warn"
    # A definition never seen before: "allow" pins it and serves it at once; "approve" holds
    # it (under enforce) until `mcp-router pins approve` like a changed one.
    pinning_new: Literal["allow", "approve"] = "allow"

    @field_validator("namespace_separator")
    @classmethod
    def _check_separator(cls, value: str) -> str:
        if not _SEPARATOR_RE.match(value):
            raise ValueError(
                'namespace_separator must be non-empty and use only letters, digits, "_" and "-" '
                f"(exposed tool names allow nothing else), got {value!r}"
            )
        return value


class PolicyRule(BaseModel):
    """Who (``identities``) may use (``allow``) or not (``deny``) which names.

    ``identities``: static-token names, JWT subjects, ``group:NAME`` or ``"*"`` (anyone).
    ``allow`` / ``deny``: globs (``fnmatch``, case-sensitive) over exposed tool and prompt
    names, resource URIs and resource URI templates. A rule decides for a name only when the
    identity matches and the name matches one of its globs (``deny`` checked first); rules
    are tried in order and the first that decides wins.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None  # shown in denial errors; default "policies.rules[N]"
    identities: Annotated[list[_ScalarStr], Field(min_length=1)]
    allow: _StrList = Field(default_factory=list)
    deny: _StrList = Field(default_factory=list)

    @field_validator("identities")
    @classmethod
    def _check_identities(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip() or item.strip() == "group:":
                raise ValueError(f'identity {item!r} is empty (a name, group:NAME or "*")')
        return value

    @field_validator("allow", "deny")
    @classmethod
    def _check_globs(cls, value: list[str]) -> list[str]:
        if any(not glob for glob in value):
            raise ValueError("a glob must not be empty")
        return value

    @model_validator(mode="after")
    def _needs_globs(self) -> PolicyRule:
        if not self.allow and not self.deny:
            raise ValueError("a rule needs at least one 'allow' or 'deny' glob")
        return self


class PoliciesConfig(BaseModel):
    """Per-identity access to the catalog: rules in order, then ``default``."""

    model_config = ConfigDict(extra="forbid")

    default: Literal["allow", "deny"] = "allow"
    rules: Annotated[list[PolicyRule], BeforeValidator(_none_to_empty_list)] = Field(
        default_factory=list
    )


class RouterConfig(BaseModel):
    """The whole router configuration: routing settings plus the list of backends.

    ``source`` (not a field) records where the configuration came from: a file path or
    ``"<built-in default>"``.
    """

    model_config = ConfigDict(extra="forbid")

    routing: Annotated[RoutingConfig, BeforeValidator(_none_to_empty_dict)] = Field(
        default_factory=RoutingConfig
    )
    backends: Annotated[list[BackendConfig], BeforeValidator(_none_to_empty_list)] = Field(
        default_factory=list
    )
    # Who may see and use which names (None: everyone may use everything).
    policies: PoliciesConfig | None = None

    _source: str = PrivateAttr(default=DEFAULT_SOURCE)
    _expanded_env: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> str:
        """Where this configuration was loaded from (file path or ``<built-in default>``)."""
        return self._source

    @source.setter
    def source(self, value: str) -> None:
        self._source = value

    @property
    def expanded_env(self) -> dict[str, str]:
        """Variable -> value of every ``${VAR}`` the loader substituted (all are secrets)."""
        return self._expanded_env

    @expanded_env.setter
    def expanded_env(self, value: dict[str, str]) -> None:
        self._expanded_env = dict(value)

    @model_validator(mode="after")
    def _check_cross_references(self) -> RouterConfig:
        details: list[InitErrorDetails] = []
        first_index: dict[str, int] = {}
        for index, backend in enumerate(self.backends):
            if backend.name in first_index:
                details.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "duplicate_backend",
                            f"duplicate backend name {backend.name!r} "
                            f"(already used by backends[{first_index[backend.name]}])",
                        ),
                        loc=("backends", index, "name"),
                        input=backend.name,
                    )
                )
            else:
                first_index[backend.name] = index
        separator = self.routing.namespace_separator
        for index, backend in enumerate(self.backends):
            namespace = backend.effective_namespace
            if self.routing.enable_namespace_prefixing and (
                namespace == RESERVED_NAMESPACE
                or namespace.startswith(RESERVED_NAMESPACE + separator)
            ):
                where = "namespace" if backend.namespace is not None else "name"
                details.append(
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "reserved_namespace",
                            f"backend {backend.name!r} would expose names starting with "
                            f"'{RESERVED_NAMESPACE}{separator}', which are reserved for the "
                            "router's own tools; give it another namespace "
                            f"(e.g. namespace: {'up_' + namespace})",
                        ),
                        loc=("backends", index, where),
                        input=getattr(backend, where),
                    )
                )
        known = ", ".join(sorted(first_index)) or "none"
        for index, backend in enumerate(self.backends):
            for route_index, route in enumerate(backend.routes):
                target = route.fallback_to
                if target is None:
                    continue
                if target not in first_index:
                    message = f"fallback_to names unknown backend {target!r} (known: {known})"
                elif target == backend.name:
                    message = f"fallback_to must name another backend, not {target!r} itself"
                else:
                    continue
                details.append(
                    InitErrorDetails(
                        type=PydanticCustomError("invalid_fallback", message),
                        loc=("backends", index, "routes", route_index, "fallback_to"),
                        input=target,
                    )
                )
        if details:
            raise ValidationError.from_exception_data("RouterConfig", details)
        return self

    def backend(self, name: str) -> BackendConfig | None:
        """Return the backend called ``name``, or ``None``."""
        for backend in self.backends:
            if backend.name == name:
                return backend
        return None
