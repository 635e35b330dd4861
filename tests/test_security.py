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
from collections.abc import Callable
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
from support import child_env, free_port, run_router, write_config

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


def test_static_tokens_and_no_credential_leak(headers_url: str, tmp_path: Path) -> None:
    closed_port = free_port()  # nothing listens there: the backend is down
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# clients\n{FILE_TOKEN}\n\n")
    config = write_config(
        tmp_path / "backends.yaml",
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
    env = {
        "OPS_API_KEY": API_KEY,
        "OPS_BT": BACKEND_TOKEN,
        "OPS_QT": QUERY_TOKEN,
        "MCP_AUTH_TOKENS": ENV_TOKEN,
        "MCP_AUTH_TOKEN_FILE": str(token_file),
        "MCP_LOG_LEVEL": "DEBUG",
    }
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        # No token, another scheme, a wrong token: 401 with a Bearer challenge.
        for headers in ({}, {"Authorization": "Basic Zm9vOmJhcg=="}):
            r = httpx2.post(router.url, json=_init_body(), headers={**MCP_HEADERS, **headers})
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
        r = httpx2.post(
            router.url,
            json=_init_body(),
            headers={**MCP_HEADERS, "Authorization": "Bearer not-a-token"},
        )
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        # Liveness, readiness and (by default) metrics stay open.
        assert httpx2.get(f"{router.base}/health").status_code == 200
        assert httpx2.get(f"{router.base}/ready").status_code == 200
        assert httpx2.get(f"{router.base}/metrics").status_code == 200

        async def clients() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with bearer_client(router.url, FILE_TOKEN) as client:
                out["file_token_tools"] = [t.name for t in (await client.list_tools()).tools]
            async with bearer_client(
                router.url,
                ENV_TOKEN,
                headers={"Cookie": COOKIE, "X-Client-Secret": "client-only-value"},
            ) as client:
                seen = await client.call_tool("hdr_request_headers", {})
                out["seen"] = seen.structured_content
                out["list"] = result_json(await client.call_tool("router_list_backends", {}))
                out["down"] = result_json(
                    await client.call_tool("router_get_backend_health", {"backend_name": "down"})
                )
                out["hdr"] = result_json(
                    await client.call_tool("router_get_backend_health", {"backend_name": "hdr"})
                )
            return out

        out = anyio.run(clients)
        assert "hdr_request_headers" in out["file_token_tools"]
        seen = out["seen"]
        # The backend gets its own configured headers (secrets from ${ENV}) ...
        assert seen["x-api-key"] == API_KEY
        assert seen["authorization"] == f"Bearer {BACKEND_TOKEN}"
        # ... and nothing of the client's: not its token, cookies or other headers.
        assert "cookie" not in seen
        assert "x-client-secret" not in seen
        assert ENV_TOKEN not in json.dumps(seen)
        for view in (out["list"], out["down"], out["hdr"]):
            for secret in (API_KEY, BACKEND_TOKEN, QUERY_TOKEN):
                assert secret not in view
        assert "token=***" in out["down"]  # the URL is shown, its token is not

        # Concurrency cap: one call in flight on 'capped', the others fail at once, clearly.
        async def concurrent_holds() -> list[Any]:
            async with (
                bearer_client(router.url, ENV_TOKEN) as c1,
                bearer_client(router.url, ENV_TOKEN) as c2,
                bearer_client(router.url, ENV_TOKEN) as c3,
            ):
                results: list[Any] = [None, None, None]

                async def hold(i: int, client: Any) -> None:
                    try:
                        results[i] = await client.call_tool("capped_hold", {"seconds": 1.0})
                    except MCPError as exc:
                        results[i] = exc

                async with anyio.create_task_group() as tg:
                    for i, client in enumerate((c1, c2, c3)):
                        tg.start_soon(hold, i, client)
                return results

        started = time.monotonic()
        results = anyio.run(concurrent_holds)
        errors = [r for r in results if isinstance(r, MCPError)]
        assert len(errors) == 2, results
        for error in errors:
            assert "backend 'capped'" in str(error)
            assert "max_in_flight=1" in str(error)
        assert time.monotonic() - started < 10

        log = router.stderr()
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


def test_jwt_auth_protected_metrics_and_rate_limit(headers_url: str, tmp_path: Path) -> None:
    keys = RSAKeyPair.generate()
    other = RSAKeyPair.generate()
    key_file = tmp_path / "jwt.pem"
    key_file.write_text(keys.public_key)
    issuer, audience = "https://issuer.example.com", "mcp-router"
    config = write_config(tmp_path / "backends.yaml", [{"name": "hdr", "url": headers_url}])
    env = {
        "MCP_JWT_PUBLIC_KEY": str(key_file),
        "MCP_JWT_ISSUER": issuer,
        "MCP_JWT_AUDIENCE": audience,
        "MCP_JWT_REQUIRED_SCOPES": "mcp:use",
        "MCP_METRICS_REQUIRE_AUTH": "true",
        "MCP_RATE_LIMIT_PER_SECOND": "0.2",
        "MCP_RATE_LIMIT_BURST": "6",
    }

    def token(pair: RSAKeyPair = keys, **overrides: Any) -> str:
        claims: dict[str, Any] = {
            "subject": "alice",
            "issuer": issuer,
            "audience": audience,
            "scopes": ["mcp:use"],
        }
        claims.update(overrides)
        return pair.create_token(**claims)

    good = token()
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        rejected = {
            "wrong audience": token(audience="someone-else"),
            "wrong issuer": token(issuer="https://evil.example.com"),
            "missing scope": token(scopes=["other"]),
            "expired": token(expires_in_seconds=-60),
            "wrong key": token(pair=other),
            "not a JWT": "definitely-not-a-jwt",
        }
        for why, bad in rejected.items():
            r = httpx2.post(
                router.url,
                json=_init_body(),
                headers={**MCP_HEADERS, "Authorization": f"Bearer {bad}"},
            )
            assert r.status_code == 401, why
            assert r.headers["www-authenticate"].startswith("Bearer"), why

        # /metrics wants a token here; /health and /ready do not.
        r = httpx2.get(f"{router.base}/metrics")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert (
            httpx2.get(f"{router.base}/metrics", headers={"Authorization": "Bearer x"}).status_code
            == 401
        )
        assert httpx2.get(f"{router.base}/health").status_code == 200
        assert httpx2.get(f"{router.base}/ready").status_code == 200

        async def calls() -> tuple[list[Any], list[Any]]:
            alice: list[Any] = []
            async with bearer_client(router.url, good) as client:
                for _ in range(8):  # burst 6 (initialize counted), then 0.2/s: some must fail
                    try:
                        alice.append(await client.call_tool("hdr_ping_text", {"text": "hi"}))
                    except MCPError as exc:
                        alice.append(exc)
            # Another identity has a bucket of its own.
            bob: list[Any] = []
            async with bearer_client(router.url, token(subject="bob")) as client:
                bob.append(await client.call_tool("hdr_ping_text", {"text": "bob"}))
            return alice, bob

        alice, bob = anyio.run(calls)
        ok = [r for r in alice if not isinstance(r, MCPError)]
        limited = [r for r in alice if isinstance(r, MCPError)]
        assert ok and ok[0].content[0].text == "hi"
        assert limited, "the rate limit never applied"
        assert all("rate limit exceeded" in str(e) and "0.2 requests/s" in str(e) for e in limited)
        assert bob[0].content[0].text == "bob"

        samples = scrape(router.base, good)
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


def test_host_origin_body_limit_and_fuzzed_bodies(headers_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "backends.yaml", [{"name": "hdr", "url": headers_url}])
    env = {
        "MCP_MAX_REQUEST_BYTES": "4096",
        "MCP_ALLOWED_HOSTS": "router.example.internal",
        "MCP_ALLOWED_ORIGINS": "https://app.example.com",
    }
    with run_router(config, tmp_path / "router.log", env=child_env(**env)) as router:
        port = router.base.rsplit(":", 1)[1]
        # DNS rebinding: a foreign Host gets 421, on every path; loopback names are fine.
        for path in ("/mcp", "/health"):
            r = httpx2.post(
                f"{router.base}{path}",
                json=_init_body(),
                headers={**MCP_HEADERS, "Host": "evil.example.com"},
            )
            assert r.status_code == 421, path
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"router.example.internal:{port}"):
            r = httpx2.post(router.url, json=_init_body(), headers={**MCP_HEADERS, "Host": host})
            assert r.status_code == 200, host
        # A foreign browser Origin gets 403; an allowed one passes.
        r = httpx2.post(
            router.url,
            json=_init_body(),
            headers={**MCP_HEADERS, "Origin": "http://evil.example.com"},
        )
        assert r.status_code == 403
        r = httpx2.post(
            router.url,
            json=_init_body(),
            headers={**MCP_HEADERS, "Origin": "https://app.example.com"},
        )
        assert r.status_code == 200

        # Body limit: declared and streamed (chunked, no Content-Length) bodies.
        big = b"x" * 10_000
        assert httpx2.post(router.url, content=big, headers=MCP_HEADERS).status_code == 413
        chunks = (big[i : i + 1000] for i in range(0, len(big), 1000))
        assert httpx2.post(router.url, content=chunks, headers=MCP_HEADERS).status_code == 413

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
