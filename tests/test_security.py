"""Front security: bearer auth (static tokens, JWT), no credential leakage, Host/Origin checks,
body limit, rate limits and concurrency caps, and malformed JSON-RPC bodies (fuzzed).

Every router is a real process on 127.0.0.1; backends are real FastMCP servers over HTTP.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey
from mcp.shared.exceptions import MCPError

from mcp_router.config import ConfigError
from mcp_router.gateway.auth import FrontAuth, StaticBearerVerifier
from mcp_router.settings import load_settings
from opsupport import bearer_client, result_json, sample, scrape
from support import RouterProcess, child_env, free_port, run_router, write_config

API_KEY = "sk-ops-api-key-7f3a9c"
BACKEND_TOKEN = "backend-token-5e1d2b"
QUERY_TOKEN = "query-token-9a8b7c"
ENV_TOKEN = "client-env-token-4c3b2a"
FILE_TOKEN = "client-file-token-1f2e3d"
COOKIE = "sid=client-cookie-6d5c4b"

MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
}


@pytest.fixture(scope="module")
def headers_url(start_server: Callable[..., str]) -> str:
    """A backend whose ``request_headers`` tool reports the headers it received."""
    return start_server("headers", "http")


def _init_body(request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }


def _rpc_messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages in a streamable-HTTP response (plain JSON or SSE events)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [
            json.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip()
        ]
    if not response.content:
        return []
    data = response.json()
    return data if isinstance(data, list) else [data]


# ----------------------------------------------------------------------------- static tokens


@pytest.fixture(scope="module")
def token_router(headers_url: str, module_tmp: Path) -> Iterator[RouterProcess]:
    """A router with static client tokens (env and file), DEBUG logs, and three backends whose
    config holds secrets: ``hdr`` (secret headers), ``capped`` (max_in_flight 1) and ``down``
    (nothing listens; a token in its URL query)."""
    closed_port = free_port()
    token_file = module_tmp / "tokens"
    token_file.write_text(f"# clients\n{FILE_TOKEN}\n\n")
    config = write_config(
        module_tmp / "tokens.yaml",
        [
            {
                "name": "hdr",
                "url": headers_url,
                "headers": {"X-Api-Key": "${OPS_API_KEY}", "Authorization": "Bearer ${OPS_BT}"},
                "connect_timeout_seconds": 2,
            },
            {
                "name": "capped",
                "url": headers_url,
                "max_in_flight": 1,
                "connect_timeout_seconds": 2,
            },
            {
                "name": "down",
                "url": f"http://127.0.0.1:{closed_port}/mcp?token=${{OPS_QT}}",
                "connect_timeout_seconds": 2,
            },
        ],
    )
    env = child_env(
        OPS_API_KEY=API_KEY,
        OPS_BT=BACKEND_TOKEN,
        OPS_QT=QUERY_TOKEN,
        MCP_AUTH_TOKENS=ENV_TOKEN,
        MCP_AUTH_TOKEN_FILE=str(token_file),
        MCP_LOG_LEVEL="DEBUG",
    )
    with run_router(config, module_tmp / "tokens-router.log", env=env) as router:
        yield router


@pytest.mark.parametrize(
    "authorization", [None, "Basic Zm9vOmJhcg==", "Bearer not-a-token"], ids=str
)
def test_a_request_without_a_valid_token_gets_401_with_a_bearer_challenge(
    token_router: RouterProcess, authorization: str | None
) -> None:
    headers = {**MCP_HEADERS, **({"Authorization": authorization} if authorization else {})}
    r = httpx2.post(token_router.url, json=_init_body(), headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    if authorization == "Bearer not-a-token":
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_probes_and_metrics_need_no_token_by_default(
    token_router: RouterProcess, path: str
) -> None:
    assert httpx2.get(f"{token_router.base}{path}").status_code == 200


async def test_a_token_from_the_token_file_is_accepted(token_router: RouterProcess) -> None:
    async with bearer_client(token_router.url, FILE_TOKEN) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
    assert "hdr_request_headers" in tools


async def _headers_seen_by_the_backend(router: RouterProcess) -> dict[str, Any]:
    client_headers = {"Cookie": COOKIE, "X-Client-Secret": "client-only-value"}
    async with bearer_client(router.url, ENV_TOKEN, headers=client_headers) as client:
        seen = await client.call_tool("hdr_request_headers", {})
    assert seen.structured_content is not None
    return seen.structured_content


async def test_a_backend_gets_its_configured_secret_headers(token_router: RouterProcess) -> None:
    seen = await _headers_seen_by_the_backend(token_router)
    assert seen["x-api-key"] == API_KEY
    assert seen["authorization"] == f"Bearer {BACKEND_TOKEN}"


async def test_a_backend_gets_nothing_of_the_clients_headers(token_router: RouterProcess) -> None:
    seen = await _headers_seen_by_the_backend(token_router)
    assert "cookie" not in seen
    assert "x-client-secret" not in seen
    assert ENV_TOKEN not in json.dumps(seen)


async def _management_views(router: RouterProcess) -> dict[str, str]:
    async with bearer_client(router.url, ENV_TOKEN) as client:
        health = "router_get_backend_health"
        return {
            "list": result_json(await client.call_tool("router_list_backends", {})),
            "down": result_json(await client.call_tool(health, {"backend_name": "down"})),
            "hdr": result_json(await client.call_tool(health, {"backend_name": "hdr"})),
        }


async def test_management_tools_show_no_backend_secret(token_router: RouterProcess) -> None:
    views = await _management_views(token_router)
    for name, view in views.items():
        for secret in (API_KEY, BACKEND_TOKEN, QUERY_TOKEN):
            assert secret not in view, name
    assert "token=***" in views["down"]  # the URL is shown, its token is not


async def test_max_in_flight_fails_the_extra_concurrent_calls_at_once(
    token_router: RouterProcess,
) -> None:
    async with (
        bearer_client(token_router.url, ENV_TOKEN) as c1,
        bearer_client(token_router.url, ENV_TOKEN) as c2,
        bearer_client(token_router.url, ENV_TOKEN) as c3,
    ):
        results: list[Any] = [None, None, None]

        async def hold(i: int, client: Any) -> None:
            results[i] = await client.call_tool("capped_hold", {"seconds": 1.0})

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i, client in enumerate((c1, c2, c3)):
                tg.start_soon(hold, i, client)
    # As every routing failure of a tool call: an isError result naming the backend.
    errors = [r.content[0].text for r in results if r.is_error]
    assert len(errors) == 2, results
    for error in errors:
        assert "backend 'capped'" in error
        assert "max_in_flight=1" in error
    assert time.monotonic() - started < 10


async def test_debug_logs_hold_no_secret(token_router: RouterProcess) -> None:
    await _headers_seen_by_the_backend(token_router)  # client secrets on the wire...
    await _management_views(token_router)  # ...and backend secrets in the answers
    async with bearer_client(token_router.url, FILE_TOKEN) as client:
        await client.list_tools()
    log = token_router.stderr()
    assert "DEBUG" in log  # it did log at DEBUG, where request details show up
    for secret in (API_KEY, BACKEND_TOKEN, QUERY_TOKEN, ENV_TOKEN, FILE_TOKEN, COOKIE):
        assert secret not in log, secret


def test_sse_front_requires_a_token(headers_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "backends.yaml", [{"name": "hdr", "url": headers_url}])
    env = {"MCP_AUTH_TOKENS": ENV_TOKEN}
    with run_router(
        config, tmp_path / "router.log", transport="sse", env=child_env(**env)
    ) as router:
        sse = f"{router.base}/sse"
        r = httpx2.get(sse, headers={"Accept": "text/event-stream"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        auth = {"Accept": "text/event-stream", "Authorization": f"Bearer {ENV_TOKEN}"}
        with httpx2.stream("GET", sse, headers=auth, timeout=5) as stream:
            assert stream.status_code == 200
        assert httpx2.get(f"{router.base}/health").status_code == 200


# ----------------------------------------------------------------------------- JWT


ISSUER, AUDIENCE = "https://issuer.example.com", "mcp-router"
JWT_KEYS = RSAKeyPair.generate()


def jwt_token(pair: RSAKeyPair = JWT_KEYS, **overrides: Any) -> str:
    """A JWT the ``jwt_router`` accepts, unless ``overrides`` change that."""
    claims: dict[str, Any] = {
        "subject": "alice",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "scopes": ["mcp:use"],
    }
    claims.update(overrides)
    return pair.create_token(**claims)


@pytest.fixture(scope="module")
def jwt_router(headers_url: str, module_tmp: Path) -> Iterator[RouterProcess]:
    """A router verifying JWTs (public key, issuer, audience, scope), with ``/metrics`` behind
    auth and a per-client rate limit of burst 6, then 0.2 requests/s."""
    key_file = module_tmp / "jwt.pem"
    key_file.write_text(JWT_KEYS.public_key)
    config = write_config(module_tmp / "jwt.yaml", [{"name": "hdr", "url": headers_url}])
    env = child_env(
        MCP_JWT_PUBLIC_KEY=str(key_file),
        MCP_JWT_ISSUER=ISSUER,
        MCP_JWT_AUDIENCE=AUDIENCE,
        MCP_JWT_REQUIRED_SCOPES="mcp:use",
        MCP_METRICS_REQUIRE_AUTH="true",
        MCP_RATE_LIMIT_PER_SECOND="0.2",
        MCP_RATE_LIMIT_BURST="6",
    )
    with run_router(config, module_tmp / "jwt-router.log", env=env) as router:
        yield router


BAD_JWTS: dict[str, Callable[[], str]] = {
    "wrong audience": lambda: jwt_token(audience="someone-else"),
    "wrong issuer": lambda: jwt_token(issuer="https://evil.example.com"),
    "missing scope": lambda: jwt_token(scopes=["other"]),
    "expired": lambda: jwt_token(expires_in_seconds=-60),
    "wrong key": lambda: jwt_token(pair=RSAKeyPair.generate()),
    "not a JWT": lambda: "definitely-not-a-jwt",
}


@pytest.mark.parametrize("why", list(BAD_JWTS))
def test_a_bad_jwt_gets_401(jwt_router: RouterProcess, why: str) -> None:
    r = httpx2.post(
        jwt_router.url,
        json=_init_body(),
        headers={**MCP_HEADERS, "Authorization": f"Bearer {BAD_JWTS[why]()}"},
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_metrics_can_require_a_token_while_probes_stay_open(jwt_router: RouterProcess) -> None:
    r = httpx2.get(f"{jwt_router.base}/metrics")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    bad = {"Authorization": "Bearer x"}
    assert httpx2.get(f"{jwt_router.base}/metrics", headers=bad).status_code == 401
    good = {"Authorization": f"Bearer {jwt_token()}"}
    assert httpx2.get(f"{jwt_router.base}/metrics", headers=good).status_code == 200
    assert httpx2.get(f"{jwt_router.base}/health").status_code == 200
    assert httpx2.get(f"{jwt_router.base}/ready").status_code == 200


async def test_the_rate_limit_applies_per_identity_and_is_counted(
    jwt_router: RouterProcess,
) -> None:
    carol: list[Any] = []
    async with bearer_client(jwt_router.url, jwt_token(subject="carol")) as client:
        for _ in range(8):  # burst 6 (initialize counted), then 0.2/s: some must fail
            try:
                carol.append(await client.call_tool("hdr_ping_text", {"text": "hi"}))
            except MCPError as exc:
                carol.append(exc)
    # Another identity has a bucket of its own.
    async with bearer_client(jwt_router.url, jwt_token(subject="dave")) as client:
        dave = await client.call_tool("hdr_ping_text", {"text": "dave"})

    ok = [r for r in carol if not isinstance(r, MCPError)]
    limited = [r for r in carol if isinstance(r, MCPError)]
    assert ok and ok[0].content[0].text == "hi"
    assert limited, "the rate limit never applied"
    assert all("rate limit exceeded" in str(e) and "0.2 requests/s" in str(e) for e in limited)
    assert dave.content[0].text == "dave"  # type: ignore[union-attr]
    samples = scrape(jwt_router.base, jwt_token())
    assert sample(samples, "mcp_router_rate_limited_total") == len(limited)


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MCP_AUTH_TOKENS": " , "}, "MCP_AUTH_TOKENS: is set but holds no token"),
        ({"MCP_AUTH_TOKEN_FILE": "/nonexistent/tokens"}, "MCP_AUTH_TOKEN_FILE: token file"),
        ({"MCP_JWT_ISSUER": "x"}, "MCP_JWT_ISSUER: has no effect without"),
        (
            {"MCP_JWT_JWKS_URI": "https://a.example/jwks", "MCP_JWT_PUBLIC_KEY": "k"},
            "not both",
        ),
        ({"MCP_JWT_PUBLIC_KEY": "/nonexistent.pem"}, "neither PEM text nor the path"),
        ({"MCP_METRICS_REQUIRE_AUTH": "true"}, "MCP_METRICS_REQUIRE_AUTH: needs"),
        ({"MCP_RATE_LIMIT_PER_SECOND": "0"}, "MCP_RATE_LIMIT_PER_SECOND"),
    ],
)
def test_bad_security_settings_are_named(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("MCP_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


async def test_static_verifier_keeps_digests_only() -> None:
    verifier = StaticBearerVerifier(["alpha-token", "beta-token"])
    assert "alpha-token" not in json.dumps(verifier.tokens)
    accepted = await verifier.verify_token("alpha-token")
    assert accepted is not None and accepted.client_id.startswith("static-")
    assert await verifier.verify_token("alpha-tokenX") is None
    verifier.set_tokens(["gamma-token"])
    assert await verifier.verify_token("alpha-token") is None
    assert await verifier.verify_token("gamma-token") is not None


# ----------------------------------------------------------------------------- open front

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_methods = st.sampled_from(
    ["initialize", "tools/call", "tools/list", "resources/read", "prompts/get", "ping", "nope/x"]
)
_bad_ids = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


_bodies = st.one_of(
    st.binary(max_size=120),  # mostly not JSON at all
    _scalars.map(_dump),  # JSON, but not a message
    st.lists(_values, min_size=1, max_size=3).map(_dump),  # arrays of junk
    st.dictionaries(st.text(max_size=8), _values, max_size=4)
    .filter(lambda d: "method" not in d)
    .map(_dump),  # objects that are no message
    st.fixed_dictionaries(  # wrong protocol version
        {
            "jsonrpc": st.sampled_from(["1.0", "3.0", 2, None, ""]),
            "id": st.integers(),
            "method": _methods,
        }
    ).map(_dump),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": _bad_ids, "method": _methods}).map(
        _dump
    ),
    st.fixed_dictionaries(  # method of the wrong type
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(),
            "method": st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.none(),
        }
    ).map(_dump),
    st.fixed_dictionaries(  # params of the wrong type
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(),
            "method": _methods.filter(lambda m: m not in ("ping", "tools/list")),
            "params": _scalars | st.lists(_scalars, max_size=3),
        }
    ).map(_dump),
    st.fixed_dictionaries(  # tools/call with a bad name or arguments
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(min_value=1),
            "method": st.just("tools/call"),
            "params": st.fixed_dictionaries(
                {"name": _scalars.filter(lambda v: not isinstance(v, str)), "arguments": _values}
            ),
        }
    ).map(_dump),
    st.tuples(st.integers(min_value=1, max_value=60)).map(
        lambda cut: _dump(_init_body())[: cut[0]]
    ),  # truncated JSON
)


def _is_notification(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    if not isinstance(message, dict) or "method" not in message:
        return False
    request_id = message.get("id")
    return isinstance(request_id, bool) or not isinstance(request_id, str | int)


def _is_error_response(body: bytes, response: httpx2.Response) -> bool:
    """4xx, or a JSON-RPC error for every message; a notification may only be accepted (202).

    JSON-RPC never answers a notification, not even with an error, and MCP ignores unknown
    ones: 202 with no body is the right answer to one. The SDK also takes a message whose
    ``id`` is not a string or number (``false``, ``{}``) for a notification and ignores it.
    """
    if 400 <= response.status_code < 500:
        return True
    if response.status_code >= 500:
        return False
    if response.status_code == 202 and not response.content:
        return _is_notification(body)
    messages = _rpc_messages(response)
    return bool(messages) and all("error" in m for m in messages)


@pytest.fixture(scope="module")
def open_router(headers_url: str, module_tmp: Path) -> Iterator[RouterProcess]:
    """A router without auth, a 4 KiB body limit, one extra allowed Host and Origin."""
    config = write_config(module_tmp / "open.yaml", [{"name": "hdr", "url": headers_url}])
    env = child_env(
        MCP_MAX_REQUEST_BYTES="4096",
        MCP_ALLOWED_HOSTS="router.example.internal",
        MCP_ALLOWED_ORIGINS="https://app.example.com",
    )
    with run_router(config, module_tmp / "open-router.log", env=env) as router:
        yield router


@pytest.mark.parametrize("path", ["/mcp", "/health"])
def test_a_foreign_host_gets_421(open_router: RouterProcess, path: str) -> None:
    # DNS rebinding: a page on evil.example.com that resolves to 127.0.0.1
    r = httpx2.post(
        f"{open_router.base}{path}",
        json=_init_body(),
        headers={**MCP_HEADERS, "Host": "evil.example.com"},
    )
    assert r.status_code == 421


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "router.example.internal"])
def test_loopback_names_and_allowed_hosts_are_served(open_router: RouterProcess, host: str) -> None:
    port = open_router.base.rsplit(":", 1)[1]
    headers = {**MCP_HEADERS, "Host": f"{host}:{port}"}
    assert httpx2.post(open_router.url, json=_init_body(), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"), [("http://evil.example.com", 403), ("https://app.example.com", 200)]
)
def test_a_foreign_origin_gets_403_and_an_allowed_one_is_served(
    open_router: RouterProcess, origin: str, status: int
) -> None:
    headers = {**MCP_HEADERS, "Origin": origin}
    assert httpx2.post(open_router.url, json=_init_body(), headers=headers).status_code == status


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413(open_router: RouterProcess, streamed: bool) -> None:
    big = b"x" * 10_000
    content: Any = (big[i : i + 1000] for i in range(0, len(big), 1000)) if streamed else big
    assert httpx2.post(open_router.url, content=content, headers=MCP_HEADERS).status_code == 413


def test_fuzzed_bodies_get_errors_and_the_router_keeps_serving(open_router: RouterProcess) -> None:
    router = open_router
    # A session, so some fuzzed requests reach the MCP layer rather than the session check.
    init = httpx2.post(router.url, json=_init_body(), headers=MCP_HEADERS)
    session = init.headers["mcp-session-id"]
    httpx2.post(
        router.url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**MCP_HEADERS, "Mcp-Session-Id": session},
    )
    http = httpx2.Client(timeout=10)
    seen: list[int] = []

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        body=_bodies,
        with_session=st.booleans(),
        version=st.sampled_from([None, "2025-11-25", "2026-07-28", "garbage"]),
    )
    def check(body: bytes, with_session: bool, version: str | None) -> None:
        headers = dict(MCP_HEADERS)
        if with_session:
            headers["Mcp-Session-Id"] = session
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        response = http.post(router.url, content=body, headers=headers)
        seen.append(response.status_code)
        why = (body, response.status_code, response.text[:300])
        assert _is_error_response(body, response), why
        assert router.proc.poll() is None

    try:
        check()
    finally:
        http.close()
    assert len(seen) >= 100
    assert router.proc.poll() is None

    async def normal_call() -> str:
        async with bearer_client(router.url) as client:
            result = await client.call_tool("hdr_ping_text", {"text": "still fine"})
            return result.content[0].text

    assert anyio.run(normal_call) == "still fine"
    assert httpx2.get(f"{router.base}/health").status_code == 200


async def test_jwks_uri_verification(tmp_path: Path) -> None:
    """JWTs checked against keys fetched from a JWKS endpoint (key rotation by ``kid``)."""
    keys = RSAKeyPair.generate()
    jwks = {"keys": [{**RSAKey.import_key(keys.public_key).as_dict(), "kid": "k1", "use": "sig"}]}
    body = json.dumps(jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = load_settings(
            jwt_jwks_uri=f"http://127.0.0.1:{server.server_address[1]}/jwks.json",
            jwt_audience="mcp-router",
        )
        auth = FrontAuth(settings)
        good = keys.create_token(audience="mcp-router", kid="k1")
        accepted = await auth.verify_header(f"Bearer {good}")
        assert accepted is not None and accepted.subject == "fastmcp-user"
        assert (
            await auth.verify_header(f"Bearer {keys.create_token(audience='x', kid='k1')}") is None
        )
        other = RSAKeyPair.generate().create_token(audience="mcp-router", kid="k1")
        assert await auth.verify_header(f"Bearer {other}") is None
        assert await auth.verify_header(None) is None
        assert await auth.verify_header(f"Basic {good}") is None
    finally:
        server.shutdown()
        server.server_close()


def test_token_file_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("first-token-aaaa\n")
    for key in list(os.environ):
        if key.startswith("MCP_"):
            monkeypatch.delenv(key)
    auth = FrontAuth(load_settings(auth_token_file=str(token_file)))
    assert auth.static is not None
    verify = auth.static.verify_token

    assert anyio.run(verify, "first-token-aaaa") is not None
    assert auth.reload_token_file() is False  # unchanged
    token_file.write_text("second-token-bbbb\nthird-token-cccc\n")
    os.utime(token_file, (time.time() + 5, time.time() + 5))
    assert auth.reload_token_file() is True
    assert anyio.run(verify, "first-token-aaaa") is None
    assert anyio.run(verify, "third-token-cccc") is not None
    token_file.write_text("# emptied by mistake\n")
    os.utime(token_file, (time.time() + 10, time.time() + 10))
    assert auth.reload_token_file() is False  # an empty file keeps the previous tokens
    assert anyio.run(verify, "second-token-bbbb") is not None
