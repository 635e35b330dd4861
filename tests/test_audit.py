"""The audit trail (``MCP_AUDIT_LOG``): one JSON line per routed request, end to end.

A real router process with two named tokens in front of the FastMCP backend
tests/servers/mutable.py; the audit file is read back after allowed, denied, failed (tool
error) and timed-out calls, and after a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from opsupport import bearer_client
from support import fastmcp_server, free_port, run_router, spawn

ALICE, BOB = "tok-alice-audit-1a2b3c", "tok-bob-audit-4d5e6f"
SECRETS = ("s3cr3t-text-value", "s3cr3t-reason-value", "s3cr3t-denied-value")
STARTUP = 120.0  # seconds a process may take to start on a loaded machine


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(900)
def test_audit_lines_for_allowed_denied_and_failed_calls_hold_no_values_or_tokens(
    tmp_path: Path,
) -> None:
    audit = tmp_path / "audit" / "calls.jsonl"
    port = free_port()
    config = tmp_path / "backends.yaml"
    backend = {"name": "mut", "url": f"http://127.0.0.1:{port}/mcp", "timeout_seconds": 1}
    policies = {"rules": [{"identities": ["bob"], "deny": ["mut_fail", "mut_sleep"]}]}
    config.write_text(
        yaml.safe_dump({"backends": [backend], "policies": policies, "routing": {"pinning": "off"}})
    )
    env = {
        "MCP_AUTH_TOKENS": f"alice={ALICE},bob={BOB}",
        "MCP_AUDIT_LOG": str(audit),
        "MCP_LOG_LEVEL": "DEBUG",  # the access log names the caller too; never its token
    }
    with (
        (tmp_path / "mutable.log").open("w") as err,
        spawn(
            fastmcp_server("mutable", "http", port),
            ready_url=f"http://127.0.0.1:{port}/",
            stderr=err,
            timeout=STARTUP,
        ),
    ):
        with run_router(config, tmp_path / "router-1.log", env=env, timeout=STARTUP) as router:

            async def calls() -> None:
                async with (
                    bearer_client(router.url, ALICE) as alice,
                    bearer_client(router.url, BOB) as bob,
                ):
                    ok = await alice.call_tool("mut_target", {"text": SECRETS[0]})
                    assert not ok.is_error
                    failed = await alice.call_tool("mut_fail", {"reason": SECRETS[1]})
                    assert failed.is_error
                    denied = await bob.call_tool("mut_fail", {"reason": SECRETS[2]})
                    assert denied.is_error and "access denied" in denied.content[0].text  # type: ignore[union-attr]
                    timed_out = await alice.call_tool("mut_sleep", {"seconds": 5})
                    assert timed_out.is_error

            anyio.run(calls)
            router_log = router.stderr()

        lines = _lines(audit)
        by_outcome = {(line["identity"], line["outcome"]): line for line in lines}
        assert [(line["identity"], line["name"], line["outcome"]) for line in lines] == [
            ("alice", "mut_target", "success"),
            ("alice", "mut_fail", "tool_error"),
            ("bob", "mut_fail", "denied"),
            ("alice", "mut_sleep", "error"),
        ]
        success = by_outcome[("alice", "success")]
        assert success["method"] == "tools/call" and success["backend"] == "mut"
        assert success["argument_keys"] == ["text"] and success["session"]
        assert success["duration_ms"] > 0 and success["time"].endswith("Z")
        denied = by_outcome[("bob", "denied")]
        assert denied["backend"] is None and denied["argument_keys"] == ["reason"]
        assert 'policies.rules[0] denies "mut_fail"' in denied["reason"]
        assert by_outcome[("alice", "error")]["argument_keys"] == ["seconds"]
        assert "tool mut_target -> mut: success in" in router_log
        assert "ms by alice" in router_log
        text = audit.read_text()
        for secret in (*SECRETS, ALICE, BOB):
            assert secret not in text
        # (at DEBUG the MCP libraries log request bodies; tokens still never appear)
        assert ALICE not in router_log and BOB not in router_log

        # The file survives a restart: new lines are appended.
        with run_router(config, tmp_path / "router-2.log", env=env, timeout=STARTUP) as router:

            async def one_more() -> None:
                async with bearer_client(router.url, BOB) as bob:
                    assert not (await bob.call_tool("mut_target", {"text": "again"})).is_error

            anyio.run(one_more)
    lines = _lines(audit)
    assert len(lines) == 5
    assert (lines[-1]["identity"], lines[-1]["outcome"]) == ("bob", "success")
