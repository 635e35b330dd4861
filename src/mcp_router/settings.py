"""Process-level settings read from ``MCP_*`` environment variables (pydantic-settings).

The optional override fields (``default_strategy`` ... ``health_check_timeout``) default to
``None``; when set they override the matching value of the YAML configuration
(see :func:`mcp_router.config.apply_overrides`). ``.env`` files are never read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_router.config.errors import ConfigError, format_key_path

__all__ = ["ENV_PREFIX", "LOG_LEVELS", "RouterSettings", "load_settings"]

ENV_PREFIX = "MCP_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    auth_tokens: str | None = None

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

    @property
    def auth_token_list(self) -> list[str]:
        """The accepted bearer tokens from ``MCP_AUTH_TOKENS`` (comma-separated), if any."""
        if not self.auth_tokens:
            return []
        return [token.strip() for token in self.auth_tokens.split(",") if token.strip()]

    @classmethod
    def env_var(cls, field_name: str) -> str:
        """The environment variable that sets ``field_name`` (``port`` -> ``MCP_PORT``)."""
        return f"{ENV_PREFIX}{field_name.upper()}"


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
