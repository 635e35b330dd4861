"""What environment a stdio backend is started with (``inherit_env``, ``env_passthrough``, ``env``).

A real child (tests/servers/raw_stdio.py, through a real `Backend`) reports its environment.
By default it gets the documented allow-list (the SDK's base set plus TLS trust, proxies,
locale, time zone, temp and XDG folders) and never the router's own secrets; ``all`` passes
everything, ``none`` nothing; ``env_passthrough`` adds names or patterns; ``env`` wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from mcp_router.backends.backend import Backend
from mcp_router.backends.transports import DEFAULT_PASSTHROUGH
from mcp_router.config import ConfigError, load_config
from mcp_router.config.models import BackendConfig
from support import PYTHON, SERVERS

pytestmark = pytest.mark.timeout(60)

RAW = str(SERVERS / "raw_stdio.py")
ROUTER_ENV = {
    "SSL_CERT_FILE": "/etc/corp/ca.pem",
    "NODE_EXTRA_CA_CERTS": "/etc/corp/ca.pem",
    "HTTPS_PROXY": "http://proxy.corp:3128",
    "no_proxy": "localhost",
    "LC_ALL": "C.UTF-8",
    "TZ": "Europe/Paris",
    "XDG_CACHE_HOME": "/tmp/xdg-cache",
    "MCP_AUTH_TOKENS": "router-secret",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret",
    "DB_PASSWORD": "db-secret",
    "BASH_FUNC_x%%": "() { echo pwned; }",
}


@asynccontextmanager
async def child_env_of(
    monkeypatch: pytest.MonkeyPatch, **options: Any
) -> AsyncIterator[dict[str, str]]:
    for name, value in ROUTER_ENV.items():
        monkeypatch.setenv(name, value)
    config = BackendConfig(name="envy", command=PYTHON, args=[RAW], **options)
    backend = Backend(config, request_timeout=10)
    async with anyio.create_task_group() as tg:
        await tg.start(backend.run)
        assert await backend.wait_ready(30), backend.last_error
        result = await backend.call_tool("environment", {})
        assert isinstance(result.structured_content, dict)
        try:
            yield result.structured_content
        finally:
            await backend.stop()


async def test_by_default_a_child_gets_the_documented_allow_list_and_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with child_env_of(monkeypatch, env={"LOG_LEVEL": "debug"}) as env:
        for name in ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "HTTPS_PROXY", "no_proxy", "LC_ALL"):
            assert env[name] == ROUTER_ENV[name], name
        assert env["TZ"] == "Europe/Paris" and env["XDG_CACHE_HOME"] == "/tmp/xdg-cache"
        assert "PATH" in env and env["LOG_LEVEL"] == "debug"
        for secret in ("MCP_AUTH_TOKENS", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "BASH_FUNC_x%%"):
            assert secret not in env, secret
        # Nothing outside the allow-list (the interpreter may add a few of its own).
        extra = {k for k in env if k not in ROUTER_ENV and k != "LOG_LEVEL"}
        allowed = {k for k in extra if any(fnmatchcase(k, p) for p in DEFAULT_PASSTHROUGH)}
        assert extra == allowed, extra - allowed


async def test_env_passthrough_adds_names_and_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    async with child_env_of(monkeypatch, env_passthrough=["DB_PASSWORD", "AWS_*"]) as env:
        assert env["DB_PASSWORD"] == "db-secret"
        assert env["AWS_SECRET_ACCESS_KEY"] == "cloud-secret" and env["AWS_REGION"] == "eu-west-3"
        assert "MCP_AUTH_TOKENS" not in env


async def test_inherit_env_all_passes_everything_but_shell_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with child_env_of(monkeypatch, inherit_env="all") as env:
        assert env["MCP_AUTH_TOKENS"] == "router-secret" and env["DB_PASSWORD"] == "db-secret"
        assert "BASH_FUNC_x%%" not in env


async def test_inherit_env_none_passes_only_what_the_config_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = {"inherit_env": "none", "env": {"ONLY": "me"}, "env_passthrough": ["TZ"]}
    async with child_env_of(monkeypatch, **options) as env:
        assert {k: env[k] for k in ("ONLY", "TZ")} == {"ONLY": "me", "TZ": "Europe/Paris"}
        assert "PATH" not in env and "SSL_CERT_FILE" not in env and "HOME" not in env


@pytest.mark.parametrize(
    ("backend", "key", "message"),
    [
        ({"command": "x", "inherit_env": "some"}, "inherit_env", "'default', 'all' or 'none'"),
        ({"command": "x", "env_passthrough": ["A=B"]}, "env_passthrough", "not an environment"),
        ({"url": "http://h/mcp", "inherit_env": "all"}, "inherit_env", "stdio backends only"),
    ],
)
def test_bad_environment_options_name_the_key(
    tmp_path: Path, backend: dict[str, Any], key: str, message: str
) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text(yaml.safe_dump({"backends": [{"name": "b", **backend}]}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"backends[0].{key}" in text and message in text, text
