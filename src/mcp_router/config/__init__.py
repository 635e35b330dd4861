"""Router configuration: YAML schema, loading with ``${VAR}`` expansion, env overrides."""

from mcp_router.config.errors import ConfigError, format_key_path
from mcp_router.config.loader import (
    DEFAULT_CONFIG_PATH,
    apply_overrides,
    default_config,
    expand_env,
    load_config,
    load_effective_config,
    mcp_servers_to_config,
    resolve_config_path,
    validation_problems,
)
from mcp_router.config.models import (
    DEFAULT_SOURCE,
    BackendConfig,
    CircuitBreakerConfig,
    HealthCheckConfig,
    LoadBalancing,
    RetryConfig,
    RouterConfig,
    RouteRule,
    RoutingConfig,
    RoutingStrategy,
    Transport,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_SOURCE",
    "BackendConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "HealthCheckConfig",
    "LoadBalancing",
    "RetryConfig",
    "RouteRule",
    "RouterConfig",
    "RoutingConfig",
    "RoutingStrategy",
    "Transport",
    "apply_overrides",
    "default_config",
    "expand_env",
    "format_key_path",
    "load_config",
    "load_effective_config",
    "mcp_servers_to_config",
    "resolve_config_path",
    "validation_problems",
]
