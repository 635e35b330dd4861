"""Who may use what: per-identity policies, end to end.

Two FastMCP backends (``alpha``, ``beta``: tests/servers/basic.py over HTTP), one router
process with two named static tokens (alice, bob) and JWTs signed by a test key (carol, in
group ``analysts``). The router runs in search mode with every tool pinned, so the plain
lists and ``router_search_tools`` / ``router_call_tool`` are covered by the same process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_router.config import ConfigError
from mcp_router.config.models import PoliciesConfig, RouterConfig
from mcp_router.gateway.auth import StaticBearerVerifier
from mcp_router.gateway.server import build_router
from mcp_router.governance import Identity, Policy
from mcp_router.settings import RouterSettings, load_settings, split_token_item
from opsupport import bearer_client
from support import fastmcp_server, run_router

ALICE, BOB = "tok-alice-5f4e3d", "tok-bob-9c8b7a"
ISSUER, AUDIENCE = "https://issuer.test", "mcp-router"
STARTUP = 120.0  # seconds a process may take to start on a loaded machine

POLICIES: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {
            "name": "alice",
            "identities": ["alice"],
            "allow": ["alpha_*", "basic://alpha/*", "router_*"],
            "deny": ["alpha_explode"],
        },
        {
            "name": "analysts",
            "identities": ["group:analysts"],
            "allow": ["beta_*", "basic://beta/*", "router_search_tools", "router_call_tool"],
            "deny": ["beta_create_order"],
        },
        {"identities": ["bob"], "allow": ["alpha_whoami", "router_list_backends"]},
    ],
}


@pytest.fixture(scope="module")
def backends(start_server: Callable[..., str]) -> list[dict[str, Any]]:
    """The two backends, as config entries."""
    return [
        {"name": "alpha", "url": start_server("basic", "http", name="alpha")},
        {"name": "beta", "url": start_server("basic", "http", name="beta")},
    ]


def _write(path: Path, backends: list[dict[str, Any]], policies: dict[str, Any]) -> Path:
    routing = {"tool_discovery": "search", "pinned_tools": ["*"], "pinning": "off"}
    data = {"routing": routing, "backends": backends, "policies": policies}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _text(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _names(client: Client) -> dict[str, set[str]]:
    return {
        "tools": {t.name for t in (await client.list_tools()).tools},
        "prompts": {p.name for p in (await client.list_prompts()).prompts},
        "resources": {str(r.uri) for r in (await client.list_resources()).resources},
        "templates": {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        },
    }


@pytest.mark.timeout(900)
def test_lists_calls_reads_prompts_and_search_follow_each_identity(
    backends: list[dict[str, Any]], tmp_path: Path
) -> None:
    keys = RSAKeyPair.generate()
    (tmp_path / "jwt.pem").write_text(keys.public_key)
    carol = keys.create_token(
        subject="carol",
        issuer=ISSUER,
        audience=AUDIENCE,
        additional_claims={"groups": ["analysts", "staff"]},
    )
    config = _write(tmp_path / "backends.yaml", backends, POLICIES)
    env = {
        "MCP_AUTH_TOKENS": f"alice={ALICE},bob={BOB}",
        "MCP_JWT_PUBLIC_KEY": str(tmp_path / "jwt.pem"),
        "MCP_JWT_ISSUER": ISSUER,
        "MCP_JWT_AUDIENCE": AUDIENCE,
        "MCP_CONFIG_POLL_INTERVAL": "0.5",
    }
    with run_router(config, tmp_path / "router.log", env=env, timeout=STARTUP) as router:

        async def scenario() -> None:
            async with (
                bearer_client(router.url, ALICE) as alice,
                bearer_client(router.url, BOB) as bob,
                bearer_client(router.url, carol) as analyst,
            ):
                # ---- lists, per identity
                a = await _names(alice)
                assert {"alpha_whoami", "alpha_lookup", "router_search_tools"} <= a["tools"]
                assert "alpha_explode" not in a["tools"]  # denied inside an allowed glob
                assert not {n for n in a["tools"] if n.startswith("beta_")}
                assert a["prompts"] == {"alpha_greet", "alpha_review"}
                assert a["resources"] and all(
                    u.startswith("basic://alpha/") for u in a["resources"]
                )
                assert a["templates"] == {"basic://alpha/items/{id}"}

                b = await _names(bob)
                assert b["tools"] == {"alpha_whoami", "router_list_backends"}
                assert b["prompts"] == b["resources"] == b["templates"] == set()

                c = await _names(analyst)
                assert "beta_whoami" in c["tools"] and "beta_create_order" not in c["tools"]
                assert not {n for n in c["tools"] if n.startswith("alpha_")}
                assert "router_get_routing_info" not in c["tools"]
                assert c["templates"] == {"basic://beta/items/{id}"}

                # ---- calls: allowed, denied by a rule's deny, denied by the default
                ok = await alice.call_tool("alpha_whoami", {})
                assert not ok.is_error and _text(ok) == "alpha"
                denied = await alice.call_tool("alpha_explode", {"reason": "x"})
                assert denied.is_error
                assert _text(denied) == (
                    "mcp-router: access denied: 'alice' may not use tool 'alpha_explode' "
                    '(policies.rules[0] ("alice") denies "alpha_explode")'
                )
                denied = await alice.call_tool("beta_whoami", {})
                assert denied.is_error
                assert "(policies.default is deny)" in _text(denied)
                assert "analysts" not in _text(denied)  # never another identity's rules
                denied = await analyst.call_tool("alpha_whoami", {})
                assert denied.is_error and "'carol' may not use tool 'alpha_whoami'" in _text(
                    denied
                )
                assert not (await analyst.call_tool("beta_whoami", {})).is_error

                # ---- a denied name looks exactly like an unknown one where names are shown
                hidden = await alice.call_tool(
                    "router_get_routing_info", {"tool_name": "beta_stats"}
                )
                unknown = await alice.call_tool("router_get_routing_info", {"tool_name": "zz_nope"})
                assert hidden.is_error and unknown.is_error
                assert _text(hidden).replace("beta_stats", "X") == _text(unknown).replace(
                    "zz_nope", "X"
                )

                # ---- reads, prompts, completions
                read = await alice.read_resource("basic://alpha/items/7")
                assert '"owner": "alpha"' in read.contents[0].text  # type: ignore[union-attr]
                with pytest.raises(MCPError, match="'alice' may not use resource 'basic://beta/"):
                    await alice.read_resource("basic://beta/readme")
                prompt = await analyst.get_prompt("beta_greet", {"who": "Ann"})
                assert prompt.messages
                with pytest.raises(MCPError, match="may not use prompt 'alpha_greet'"):
                    await analyst.get_prompt("alpha_greet", {"who": "Ann"})
                with pytest.raises(MCPError, match="may not use completion of 'beta_greet'"):
                    await alice.complete(
                        types.PromptReference(type="ref/prompt", name="beta_greet"),
                        {"name": "who", "value": "A"},
                    )

                # ---- search mode: search never reveals a denied tool; call_tool refuses it
                found = await analyst.call_tool("router_search_tools", {"query": "whoami name"})
                names = [r["name"] for r in found.structured_content["results"]]  # type: ignore[index]
                assert "beta_whoami" in names and "alpha_whoami" not in names
                total = found.structured_content["total_tools"]  # type: ignore[index]
                assert total == len([n for n in c["tools"] if not n.startswith("router_")])
                via = await analyst.call_tool(
                    "router_call_tool", {"name": "alpha_whoami", "arguments": {}}
                )
                assert via.is_error and "'carol' may not use tool 'alpha_whoami'" in _text(via)
                via = await analyst.call_tool(
                    "router_call_tool", {"name": "beta_whoami", "arguments": {}}
                )
                assert not via.is_error and _text(via) == "beta"

                # ---- a reload changes what bob may use, on his open session
                policies = yaml.safe_load(yaml.safe_dump(POLICIES))
                policies["rules"][2]["allow"].append("beta_whoami")
                start = len(router.stderr())
                _write(config, backends, policies)
                router.wait_log("policies updated", timeout=60, start=start)
                deadline = time.monotonic() + 30
                while "beta_whoami" not in (await _names(bob))["tools"]:
                    assert time.monotonic() < deadline, "bob never saw the reloaded policy"
                    await anyio.sleep(0.2)
                again = await bob.call_tool("beta_whoami", {})
                assert not again.is_error and _text(again) == "beta"

        anyio.run(scenario)
        log = router.stderr()
        # identities are named in the log; the tokens never are
        assert "refused for 'alice'" in log and "refused for 'carol'" in log
        assert ALICE not in log and BOB not in log and carol not in log


def test_first_deciding_rule_wins_and_globs_cover_names_and_uris() -> None:
    policy = Policy(PoliciesConfig.model_validate(POLICIES))
    alice = Identity("alice")
    analyst = Identity("carol", frozenset({"analysts"}), kind="jwt")
    anyone = Identity("local", kind="local")
    assert policy.allows(alice, "alpha_stats")
    assert not policy.allows(alice, "alpha_explode")
    assert policy.allows(alice, "basic://alpha/items/{id}")
    assert not policy.allows(alice, "basic://beta/readme")
    assert policy.allows(analyst, "beta_lookup") and not policy.allows(analyst, "alpha_lookup")
    assert not policy.allows(anyone, "alpha_stats")  # default deny
    # a rule that matches the identity but not the name does not decide: the next rules do
    everyone = Policy(
        PoliciesConfig.model_validate(
            {
                "default": "deny",
                "rules": [
                    {"identities": ["alice"], "deny": ["*_delete_*"]},
                    {"identities": ["*"], "allow": ["*"]},
                ],
            }
        )
    )
    assert not everyone.allows(alice, "db_delete_row")
    assert everyone.allows(alice, "db_get_row")
    assert everyone.allows(anyone, "db_delete_row")
    decision = everyone.decide(alice, "db_delete_row")
    assert decision.explain() == 'policies.rules[0] denies "*_delete_*"'


def test_token_items_are_named_and_bare_tokens_named_by_position() -> None:
    assert split_token_item("alice=s3cret") == ("alice", "s3cret")
    assert split_token_item("YWJjZA==") == (None, "YWJjZA==")  # base64 padding: a bare token
    assert split_token_item("=x") == (None, "=x")
    settings = RouterSettings(auth_tokens="alice=a-token, bare-token ,bob=b-token")
    assert settings.auth_token_items == [
        ("alice", "a-token"),
        ("static-2", "bare-token"),
        ("bob", "b-token"),
    ]
    assert settings.auth_token_list == ["a-token", "bare-token", "b-token"]  # values only
    with pytest.raises(ConfigError, match="token name 'alice' is used twice"):
        load_settings(auth_tokens="alice=one,alice=two")


async def test_static_token_carries_its_name_as_identity() -> None:
    verifier = StaticBearerVerifier([("alice", "a-token"), ("bob", "b-token")])
    token = await verifier.verify_token("a-token")
    assert token is not None and token.client_id == "alice" and token.subject == "alice"
    assert "a-token" not in str(verifier.tokens)


@pytest.mark.timeout(300)
async def test_in_process_client_is_local_and_subscriptions_follow_policies() -> None:
    """Without HTTP (stdio, in memory) the client is ``local``; a denied resource is not
    listed and cannot be subscribed to, while the others can."""
    cmd = fastmcp_server("protocol", "stdio")
    config = RouterConfig.model_validate(
        {
            "backends": [
                # generous: a loaded machine can take long to start a Python child
                {"name": "proto", "command": cmd[0], "args": cmd[1:], "connect_timeout_seconds": 90}
            ],
            "routing": {"pinning": "off"},
            "policies": {"rules": [{"identities": ["local"], "deny": ["proto://proto/watched"]}]},
        }
    )
    router = build_router(config, load_settings())
    await router.start()
    try:
        async with Client(router.server._mcp_server, mode="legacy") as client:
            uris = {str(r.uri) for r in (await client.list_resources()).resources}
            assert "proto://proto/watched" not in uris
            with pytest.raises(MCPError, match="'local' may not use subscription to 'proto://"):
                await client.subscribe_resource("proto://proto/watched")
            with pytest.raises(MCPError, match="'local' may not use resource 'proto://proto/"):
                await client.read_resource("proto://proto/watched")
            read = await client.read_resource("proto://proto/items/3")
            assert read.contents
    finally:
        await router.stop(force=True)
