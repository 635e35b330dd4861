"""One secret model (``mcp_router.secrets``): what is secret, and that it is hidden everywhere.

The end-to-end test runs a real router (text and JSON logs) in front of two leaky backends
(``tests/servers/leaky.py``): an HTTP one whose URL has userinfo, ``?api_key=``, ``&sig=`` and a
secret path segment, with a 6-character ``${DB_PASSWORD}`` in a header; and a stdio one whose
env holds ``${DB_PASSWORD}``, ``${GH_PAT}`` under a plain name and a ``${DATABASE_URL}`` with a
password, and which writes them to stderr, onto the wire and into its tool errors. The secrets
must appear in none of: the router's log, the management tools, tool error texts, ``/status``,
``/status.json``, ``/metrics``; and what is not secret must still show.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp.exceptions import ResourceError, ToolError
from mcp.shared.exceptions import MCPError

from mcp_router import secrets
from mcp_router.backends.manager import BackendManager
from mcp_router.config import ConfigError, load_config
from mcp_router.config.models import RouterConfig
from mcp_router.gateway.metrics import RouterMetrics
from mcp_router.gateway.redaction import redacted_error
from mcp_router.logs import JsonFormatter
from mcp_router.routing.forwarder import CallRecord
from mcp_router.settings import RouterSettings
from opsupport import bearer_client, result_json
from support import PYTHON, SERVERS, child_env, free_port, run_router, spawn, write_config

pytestmark = pytest.mark.timeout(120)

# ----------------------------------------------------------------------------- the predicate


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("DB_PASSWORD", True),
        ("GH_PAT", True),
        ("GITHUB_PERSONAL_ACCESS_TOKEN", True),
        ("OPENAI_API_KEY", True),
        ("apiKey", True),
        ("X-Amz-Signature", True),
        ("X-Amz-Credential", True),
        ("SESSION_COOKIE", True),
        # every credential query parameter the router hides
        *[
            (param, True)
            for param in (
                "token",
                "key",
                "api_key",
                "apikey",
                "api-key",
                "API_KEY",
                "secret",
                "client_secret",
                "password",
                "passwd",
                "pwd",
                "auth",
                "access_token",
                "access-token",
                "refresh_token",
                "sig",
                "signature",
                "session",
            )
        ],
        ("LOG_LEVEL", False),
        ("KEYBOARD_LAYOUT", False),
        ("PATH", False),
        ("DATABASE_URL", False),  # its value is a secret when it came from ${...}
        ("page", False),
        ("signal", False),
        ("monkey", False),
    ],
)
def test_secret_name_predicate(name: str, secret: bool) -> None:
    assert secrets.secret_name(name) is secret


def test_secret_headers_are_all_but_the_standard_ones() -> None:
    assert secrets.secret_header("X-Tenant")
    assert secrets.secret_header("Authorization")
    assert not secrets.secret_header("Accept")
    assert not secrets.secret_header("content-type")


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "segments", "shown"),
    [
        ("https://u:p@h.example/mcp", (), "https://***@h.example/mcp"),
        ("https://tok@h.example/mcp", (), "https://***@h.example/mcp"),
        (
            "https://h/mcp?api_key=a&apikey=b&api-key=c&page=2",
            (),
            "https://h/mcp?api_key=***&apikey=***&api-key=***&page=2",
        ),
        (
            "https://h/mcp?client_secret=x&access-token=y&sig=z&Signature=w",
            (),
            "https://h/mcp?client_secret=***&access-token=***&sig=***&Signature=***",
        ),
        ("https://h/mcp?TOKEN=1&session=2&q=3", (), "https://h/mcp?TOKEN=***&session=***&q=3"),
        ("https://h/mcp#access_token=abc&x=1", (), "https://h/mcp#access_token=***&x=1"),
        ("https://h/hooks/T01/XyZ/mcp", (3,), "https://h/hooks/T01/***/mcp"),
        ("https://h/hooks/T01/XyZ/", (-1,), "https://h/hooks/T01/***/"),
        ("https://h/a/b/c", (1, -1), "https://h/***/b/***"),
        ("https://h/mcp?flag&empty=", (), "https://h/mcp?flag&empty="),
        ("http://127.0.0.1:8001/mcp", (), "http://127.0.0.1:8001/mcp"),
    ],
)
def test_redact_url(url: str, segments: tuple[int, ...], shown: str) -> None:
    assert secrets.redact_url(url, segments) == shown


def test_secret_path_segments_are_validated(tmp_path: Path) -> None:
    def load(backend: dict[str, Any]) -> RouterConfig:
        return load_config(write_config(tmp_path / "b.yaml", [{"name": "x", **backend}]))

    assert load({"url": "https://h/a/b", "secret_path_segments": [2]}).backends[0]
    for backend, problem in [
        ({"url": "https://h/a/b", "secret_path_segments": [3]}, "it has 2; use 1..2"),
        ({"url": "https://h/a/b", "secret_path_segments": [0]}, "0 is not a path segment"),
        ({"url": "https://h/", "secret_path_segments": [-1]}, "it has 0"),
        ({"command": "x", "secret_path_segments": [1]}, "needs 'url'"),
        ({"url": "https://h/a", "secret_path_segments": ["last"]}, "valid integer"),
    ]:
        with pytest.raises(ConfigError) as info:
            load(backend)
        text = str(info.value)
        assert "backends[0].secret_path_segments" in text, text
        assert problem in text, text


# ----------------------------------------------------------------------------- the secret set


def test_loader_records_expanded_values_but_not_defaults(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "b.yaml",
        [
            {
                "name": "x",
                "command": "run",
                "args": ["--db", "${DATABASE_URL}", "--level", "${LEVEL:-info}"],
                "env": {"GITHUB": "${GH_PAT}"},
            }
        ],
    )
    environ = {"DATABASE_URL": "postgres://app:pw@db/app", "GH_PAT": "ghp_123456"}
    config = load_config(path, environ=environ)
    assert config.expanded_env == environ  # LEVEL came from its default: not recorded


def test_config_secrets_cover_every_source() -> None:
    config = RouterConfig.model_validate(
        {
            "backends": [
                {
                    "name": "web",
                    "url": "https://svc:pw-1234@h.example/hooks/HOOKSEG99/mcp?token=q&page=2",
                    "secret_path_segments": [2],
                    "headers": {
                        "Authorization": "Bearer hdr-tok-9",
                        "X-Tenant": "tenant-777",
                        "Accept": "application/json",
                    },
                    "health_check": {"endpoint": "https://h.example/health?sig=sig-value-1"},
                },
                {
                    "name": "files",
                    "command": "x",
                    "args": ["--db", "postgres://app:arg-pw-55@db/app"],
                    "env": {"API_TOKEN": "env-tok-1111", "LOG_LEVEL": "debug-level"},
                },
            ]
        }
    )
    config.expanded_env = {"GH_PAT": "ghp_abcdef", "PORT": "8080"}
    settings = RouterSettings(auth_tokens="front-token-1")
    found = secrets.config_secrets(config, secrets.front_secrets(settings))
    basic = base64.b64encode(b"svc:pw-1234").decode()
    assert {
        "ghp_abcdef",
        "pw-1234",
        basic,
        "HOOKSEG99",
        "Bearer hdr-tok-9",
        "hdr-tok-9",
        "tenant-777",
        "sig-value-1",
        "arg-pw-55",
        "env-tok-1111",
        "front-token-1",
    } <= found.values
    assert "debug-level" not in found.values  # not a secret-looking name
    assert "application/json" not in found.values  # a standard header
    assert not {"8080", "q", "svc", "2"} & found.values  # too short to hide in free text
    web = config.backends[0].url
    assert found.urls[web] == "https://***@h.example/hooks/***/mcp?token=***&page=2"
    # ... but the too-short ${PORT} gets no warning: its name does not say it is a credential
    assert found.too_short == ()


def test_hs_jwt_secret_from_a_file_is_a_secret(tmp_path: Path) -> None:
    key = tmp_path / "hs.key"
    key.write_text("hs-shared-secret-value\n")
    settings = RouterSettings(  # type: ignore[call-arg]
        jwt_public_key=str(key), jwt_algorithm="HS256"
    )
    values = [v for _, v in secrets.front_secrets(settings)]
    assert "hs-shared-secret-value\n" in values
    found = secrets.config_secrets(RouterConfig(), secrets.front_secrets(settings))
    assert "hs-shared-secret-value" in found.values


@pytest.fixture
def installed() -> Iterator[Any]:
    """Install secrets for the test only: ``installed(config)``."""
    owners: list[object] = []

    def install(config: RouterConfig) -> secrets.SecretSet:
        owner = object()
        owners.append(owner)
        return secrets.install(owner, config)

    yield install
    for owner in owners:
        secrets.uninstall(owner)


def _config(**backend: Any) -> RouterConfig:
    return RouterConfig.model_validate({"backends": [{"name": "b", "command": "x", **backend}]})


def test_redact_hides_known_values_longest_first_in_every_encoding(installed: Any) -> None:
    installed(_config(env={"SECRET_A": "abc123xyz", "SECRET_B": "abc123xyz-longer", "K": "x"}))
    assert secrets.redact("a abc123xyz-longer b abc123xyz c") == "a *** b *** c"
    installed(_config(env={"DB_PASSWORD": 'q"uo\\te-pw', "API_KEY": "sp ace/&pw"}))
    assert secrets.redact(json.dumps({"v": 'q"uo\\te-pw'})) == '{"v": "***"}'
    assert secrets.redact("u=sp%20ace%2F%26pw") == "u=***"


def test_many_values_sharing_prefixes_are_each_replaced_whole(installed: Any) -> None:
    values = {f"SECRET_{i}": v for i, v in enumerate(["abcdef1", "abcdef12", "abcdxx99", "zzz999"])}
    installed(_config(env=values))
    assert secrets.redact("abcdef12 abcdef1 abcdxx99 abcdef zzz999z") == "*** *** *** abcdef ***z"


def test_json_log_lines_stay_valid_json(installed: Any) -> None:
    installed(_config(env={"DB_PASSWORD": 'q"uo\\te-pw'}))
    record = logging.LogRecord(
        "t",
        logging.INFO,
        __file__,
        1,
        "%s %s",
        ('pw q"uo\\te-pw', 'url "http://a:b@h/?token=x\\"y'),
        None,
    )
    line = JsonFormatter().format(record)
    assert json.loads(line)["message"] == 'pw *** url "http://***@h/?token=***\\"y'


def test_redact_finds_credentials_by_structure_whatever_their_length() -> None:
    text = (
        "GET http://a:b@h/x?api_key=k&sig=s&page=2 failed; retry "
        "https://h/y?access-token=t; header Authorization: Bearer eyJhbGciOi.x.y; "
        "Basic dXNlcjpwYXNz; basic authentication"
    )
    assert secrets.redact(text) == (
        "GET http://***@h/x?api_key=***&sig=***&page=2 failed; retry "
        "https://h/y?access-token=***; header Authorization: Bearer ***; "
        "Basic ***; basic authentication"
    )


def test_short_secrets_are_not_replaced_in_text_and_are_warned_about(
    installed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mcp_router.secrets"):
        found = installed(_config(env={"DB_PASSWORD": "abc12"}, headers={"X-K": "sixsix"}))
    assert "sixsix" in found.values and "abc12" not in found.values
    assert secrets.redact("abc12 sixsix") == "abc12 ***"
    assert "backends.b.env.DB_PASSWORD is shorter than 6 characters" in caplog.text
    assert "abc12" not in caplog.text


def test_two_routers_never_unhide_each_others_secrets(installed: Any) -> None:
    owner = object()
    secrets.install(owner, _config(env={"TOKEN": "first-router-1"}))
    installed(_config(env={"TOKEN": "second-router-2"}))
    assert secrets.redact("first-router-1 second-router-2") == "*** ***"
    secrets.install(owner, _config(env={"TOKEN": "first-router-3"}))  # a reload replaces
    assert secrets.redact("first-router-1 first-router-3") == "first-router-1 ***"
    secrets.uninstall(owner)
    assert secrets.redact("first-router-3 second-router-2") == "first-router-3 ***"


def test_errors_to_clients_are_copied_redacted(installed: Any) -> None:
    installed(_config(env={"TOKEN": "err-secret-1"}))
    tool = redacted_error(ToolError("backend 'b': refused err-secret-1"))
    assert isinstance(tool, ToolError) and str(tool) == "backend 'b': refused ***"
    rpc = redacted_error(MCPError(-32603, "boom err-secret-1", {"why": "err-secret-1"}))
    assert isinstance(rpc, MCPError) and rpc.error.message == "boom ***"
    assert rpc.error.data == {"why": "***"}
    assert redacted_error(ToolError("nothing to hide")) is None

    class Custom(ResourceError):
        def __init__(self, uri: str, why: str) -> None:
            super().__init__(f"{uri}: {why}")

    custom = redacted_error(Custom("data://x", "err-secret-1"))
    assert isinstance(custom, ResourceError) and str(custom) == "data://x: ***"


def test_metric_labels_never_carry_a_secret(installed: Any) -> None:
    installed(_config(env={"TOKEN": "label-secret-1"}))
    metrics = RouterMetrics(BackendManager(RouterConfig()))
    metrics.observe(
        CallRecord("resource", "data://x?token=abc&id=label-secret-1", "b", "success", 1)
    )
    body, _ = metrics.render()
    text = body.decode()
    assert "label-secret-1" not in text and "token=abc" not in text
    # a name no catalog lists never becomes a label (bounded series): "<unknown>"
    assert 'name="<unknown>"' in text


# ----------------------------------------------------------------------------- end to end

DB_PASSWORD = "Qz7p2x"  # 6 characters: the shortest secret hidden in free text
GH_PAT = "ghp_AbCdEf123456"
DB_URL_PASSWORD = "Pg5ecret9"
DATABASE_URL = f"postgres://app:{DB_URL_PASSWORD}@db.internal:5432/app"
API_KEY = "qk-LITERAL-77"
SIG = "Zq9"  # short, in a URL: hidden by position
PATH_SECRET = "HkS3cretSeg"
HEALTH_TOKEN = "ht-LITERAL-55"
ALL_SECRETS = (
    DB_PASSWORD,
    GH_PAT,
    DB_URL_PASSWORD,
    DATABASE_URL,
    API_KEY,
    f"sig={SIG}",
    PATH_SECRET,
    HEALTH_TOKEN,
    base64.b64encode(f"svc:{DB_PASSWORD}".encode()).decode(),
)


def _leak_config(tmp_path: Path, port: int, path: str) -> Path:
    return write_config(
        tmp_path / "backends.yaml",
        [
            {
                "name": "web",
                "url": f"http://svc:${{DB_PASSWORD}}@127.0.0.1:{port}{path}"
                f"?api_key={API_KEY}&sig={SIG}&page=7",
                "secret_path_segments": [2],
                "headers": {"X-Db-Password": "${DB_PASSWORD}"},
                "health_check": {
                    "interval_seconds": 1,
                    "endpoint": f"http://127.0.0.1:{port}/healthz?token={HEALTH_TOKEN}",
                },
                "circuit_breaker": {"failure_threshold": 2},
            },
            {
                "name": "db",
                "command": PYTHON,
                "args": [str(SERVERS / "leaky.py"), "--transport", "stdio"],
                "env": {
                    "DB_PASSWORD": "${DB_PASSWORD}",
                    "GITHUB_VALUE": "${GH_PAT}",
                    "DATABASE_URL": "${DATABASE_URL}",
                    "LOG_LEVEL": "debug-visible",
                },
                "connect_timeout_seconds": 30,
            },
        ],
    )


async def _drive(url: str) -> dict[str, str]:
    out: dict[str, str] = {}
    async with bearer_client(url) as client:
        deadline = time.monotonic() + 60
        while "db_leak" not in {t.name for t in (await client.list_tools()).tools}:
            assert time.monotonic() < deadline, "the stdio backend never connected"
            await anyio.sleep(0.2)
        out["web_ok"] = result_json(await client.call_tool("web_ok", {}))
        out["web_leak"] = result_json(await client.call_tool("web_leak", {}))
        out["db_leak"] = result_json(await client.call_tool("db_leak", {}))
        await client.call_tool("web_break_now", {})
        for i in range(3):  # errors of the router's own: unavailable, then circuit open
            out[f"web_broken_{i}"] = result_json(await client.call_tool("web_ok", {}))
        await anyio.sleep(1.5)  # a failed health probe
        out["list"] = result_json(await client.call_tool("router_list_backends", {}))
        for name in ("web", "db"):
            out[f"health_{name}"] = result_json(
                await client.call_tool("router_get_backend_health", {"backend_name": name})
            )
        out["routing"] = result_json(
            await client.call_tool("router_get_routing_info", {"tool_name": "web_ok"})
        )
    return out


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_appear_in_no_output_of_a_real_router(tmp_path: Path, log_format: str) -> None:
    port = free_port()
    path = f"/hooks/{PATH_SECRET}/mcp"
    server = [PYTHON, str(SERVERS / "leaky.py"), "--port", str(port), "--path", path]
    env = {
        "DB_PASSWORD": DB_PASSWORD,
        "GH_PAT": GH_PAT,
        "DATABASE_URL": DATABASE_URL,
        "MCP_LOG_FORMAT": log_format,
        "MCP_LOG_LEVEL": "DEBUG",  # where libraries say the most
    }
    with spawn(server, env=child_env(), ready_url=f"http://127.0.0.1:{port}/healthz"):
        config = _leak_config(tmp_path, port, path)
        with run_router(config, tmp_path / "router.log", env=env, timeout=60) as router:
            out = anyio.run(_drive, router.url)
            out["status"] = httpx2.get(f"{router.base}/status", timeout=10).text
            out["status.json"] = httpx2.get(f"{router.base}/status.json", timeout=10).text
            out["metrics"] = httpx2.get(f"{router.base}/metrics", timeout=10).text
            router.wait_log("leaky stderr:")
            out["log"] = router.stderr()

    for where, text in out.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret!r} shown in {where}"

    # What is not secret still shows, and the secrets' places are visibly masked.
    assert "fine" in out["web_ok"]
    web_leak = json.loads(out["web_leak"])
    assert web_leak["isError"] is True
    assert web_leak["content"][0]["text"] == (
        "refused: unknown session for /hooks/***/mcp?api_key=***&sig=***&page=7; "
        "authorization=Basic ***; x-db-password=***"
    )
    db_leak = json.loads(out["db_leak"])["content"][0]["text"]
    assert db_leak == (
        "cannot open the database: DB_PASSWORD=*** GITHUB_VALUE=*** DATABASE_URL=*** "
        "LOG_LEVEL=debug-visible"
    )
    broken = json.loads(out["web_broken_2"])
    assert broken["isError"] is True
    assert "mcp-router: no healthy backend for tool 'web_ok': backend 'web'" in out["web_broken_2"]
    health = json.loads(out["health_web"])["structuredContent"]
    assert health["url"] == f"http://***@127.0.0.1:{port}/hooks/***/mcp?api_key=***&sig=***&page=7"
    assert health["health_check"]["endpoint"] == f"http://127.0.0.1:{port}/healthz?token=***"
    assert health["circuit_breaker"]["last_failure_reason"]
    db = json.loads(out["health_db"])["structuredContent"]
    assert db["last_invalid_message"] is not None
    assert "DB_PASSWORD=***" in db["last_invalid_message"]
    assert "LOG_LEVEL=debug-visible" in db["last_invalid_message"]
    assert '"web"' in out["list"] and '"db"' in out["list"]
    assert "web_ok" in out["routing"]
    status = json.loads(out["status.json"])
    assert {b["name"] for b in status["backends"]} == {"web", "db"}
    assert any(b["recent_errors"] for b in status["backends"])
    assert "<script>" in out["status"]
    assert 'backend="web"' in out["metrics"] and 'name="web_leak"' in out["metrics"]
    log = out["log"]
    assert "DB_PASSWORD=*** GITHUB_VALUE=*** DATABASE_URL=*** LOG_LEVEL=debug-visible" in log
    if log_format == "json":
        assert all(json.loads(line) for line in log.splitlines() if line.strip())


def test_a_reload_hides_the_new_configs_secrets(tmp_path: Path) -> None:
    port = free_port()
    server = [PYTHON, str(SERVERS / "leaky.py"), "--port", str(port), "--path", "/mcp"]

    def backends(password: str) -> list[dict[str, Any]]:
        return [
            {
                "name": "web",
                "url": f"http://127.0.0.1:{port}/mcp",
                "headers": {"X-Db-Password": password},
            }
        ]

    async def leak(url: str) -> str:
        async with bearer_client(url) as client:
            return result_json(await client.call_tool("web_leak", {}))

    with spawn(server, env=child_env(), ready_url=f"http://127.0.0.1:{port}/healthz"):
        config = write_config(tmp_path / "backends.yaml", backends("first-pass-1"))
        env = {"MCP_CONFIG_POLL_INTERVAL": "0.2"}
        with run_router(config, tmp_path / "router.log", env=env, timeout=60) as router:
            before = anyio.run(leak, router.url)
            write_config(config, backends("second-pass-2"))
            router.wait_log("config reloaded", timeout=30)
            after = anyio.run(leak, router.url)
            log = router.stderr()
    assert "x-db-password=***" in before and "first-pass-1" not in before
    assert "x-db-password=***" in after, after
    assert "second-pass-2" not in after and "second-pass-2" not in log
