"""The frozen 2026-07-28 conformance requirements (@modelcontextprotocol/conformance
0.2.0-alpha.12, ``conformance server --requirements 2026-07-28``) through the router.

One suite run per target, all at the same time:

- ``direct``: ``tests/servers/conformance2026.py`` (FastMCP, streamable HTTP), no router;
- ``router-http-backend`` / ``router-stdio-backend``: the router's HTTP front before that
  backend over streamable HTTP / over stdio, ``namespace: ""`` so the scenarios' fixed names
  reach it unchanged;
- ``router-sse-backend``: the router before the same backend over SSE, which always negotiates
  2025-11-25: a legacy-only backend, whose mid-call questions the router turns into
  ``InputRequiredResult`` rounds for the 2026-07-28 client (``gateway/rounds.py``).

Scored are the 37 server scenarios the revision requires (``conformance list --server
--requirements 2026-07-28``); the extension (tasks) and pending scenarios are run and shown in
the table, never scored. A scenario passes when its ``checks.json`` has a SUCCESS and no
FAILURE or WARNING. The test asserts that the backend passes every required scenario directly
and that each router target passes what it passes directly, scenario by scenario and check by
check, except for the entries of ``tests/conformance/expected-2026.json`` (each with its
reason); an entry that starts passing fails the test too, so the list stays true.

``uv run python tests/test_conformance_2026.py`` runs every target and rewrites
``tests/conformance/scenarios-2026.md``.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from conformance_suite import (
    HERE,
    MISSING,
    Outcome,
    cell,
    check_expected_file,
    check_routed,
    enter_concurrently,
    expected_failures_section,
    explain,
    list_output,
    load_json,
    module_fixtures,
    router_url,
    run_suite,
    suite_env,
    url_of,
)
from support import NODE_BIN, fastmcp_server, free_port, spawn, write_config

pytestmark = [pytest.mark.xdist_group("conformance2026"), pytest.mark.timeout(300)]

EXPECTED_FILE = HERE / "expected-2026.json"
TABLE_FILE = HERE / "scenarios-2026.md"
# The npm alias conformance-2026 = @modelcontextprotocol/conformance@0.2.0-alpha.12; run by
# path (0.1.16 installs a binary of the same name).
CONFORMANCE = NODE_BIN.parent / "conformance-2026" / "dist" / "index.js"
REVISION = "2026-07-28"
# one run takes ~3 s directly, ~10 s through a router on an idle machine
SELECTION = ("--requirements", REVISION)

DIRECT = "direct"
ROUTER_HTTP = "router-http-backend"
ROUTER_STDIO = "router-stdio-backend"
ROUTER_SSE = "router-sse-backend"
TARGETS = (DIRECT, ROUTER_HTTP, ROUTER_STDIO, ROUTER_SSE)
ROUTED = (ROUTER_HTTP, ROUTER_STDIO, ROUTER_SSE)
TITLES = {
    DIRECT: "backend direct",
    ROUTER_HTTP: "router → backend (HTTP)",
    ROUTER_STDIO: "router → backend (stdio)",
    ROUTER_SSE: "router → legacy backend (SSE)",
}

_SCENARIO = re.compile(r"^\s+- (?P<scenario>\S+)(?: \[(?P<side>\w+)\])?")


# ------------------------------------------------------------------------------ the suite


def list_scenarios(env: dict[str, str]) -> tuple[list[str], list[str]]:
    """(required server scenarios, server scenarios run but not scored) of the revision."""
    out = list_output(CONFORMANCE, ["--server", *SELECTION], env)
    required: list[str] = []
    unscored: list[str] = []
    section = ""
    for line in out.splitlines():
        if line.startswith("Server scenarios"):
            section = "required"
        elif line.startswith("Client scenarios"):
            section = ""
        elif line.startswith("Run and reported, but never scored"):
            section = "unscored"
        elif (m := _SCENARIO.match(line)) is not None:
            if section == "required":
                required.append(m["scenario"])
            elif section == "unscored" and m["side"] == "server":
                unscored.append(m["scenario"])
    return required, unscored


PACKAGE = "conformance-2026 (0.2.0-alpha.12)"


def conformance_env() -> tuple[dict[str, str] | None, str]:
    """The environment for the 0.2.0-alpha.12 suite, or None and why not."""
    return suite_env(CONFORMANCE, PACKAGE)


# ------------------------------------------------------------------------------ targets


@contextlib.contextmanager
def start_targets(tmp: Path) -> Iterator[dict[str, str]]:
    """Start the backends (two over HTTP, one over SSE; the stdio one is the router's child)
    and the three routers; yield each target's MCP URL."""
    with contextlib.ExitStack() as stack:
        # One backend process per target: the list-change hooks change a process's lists, and
        # one target's changes must not be another's.
        direct_port, http_port, sse_port = free_port(), free_port(), free_port()
        direct_url = f"http://127.0.0.1:{direct_port}/mcp"
        http_url = f"http://127.0.0.1:{http_port}/mcp"
        sse_url = f"http://127.0.0.1:{sse_port}/sse"
        backends: dict[str, AbstractContextManager[str]] = {
            DIRECT: url_of(
                spawn(
                    fastmcp_server("conformance2026", "http", direct_port),
                    ready_url=direct_url,
                    timeout=60.0,
                ),
                direct_url,
            ),
            "http": url_of(
                spawn(
                    fastmcp_server("conformance2026", "http", http_port),
                    ready_url=http_url,
                    timeout=60.0,
                ),
                http_url,
            ),
            # The SSE stream never ends; its message endpoint answers a GET at once (405).
            "sse": url_of(
                spawn(
                    fastmcp_server("conformance2026", "sse", sse_port),
                    ready_url=f"http://127.0.0.1:{sse_port}/messages/",
                    timeout=60.0,
                ),
                sse_url,
            ),
        }
        urls = enter_concurrently(stack, backends)
        configs: dict[str, dict[str, Any]] = {
            ROUTER_HTTP: {"name": "conformance", "url": http_url, "namespace": ""},
            ROUTER_STDIO: {
                "name": "conformance",
                "command": sys.executable,
                "args": fastmcp_server("conformance2026", "stdio")[1:],
                "namespace": "",
                # A Python child starts slowly on a loaded machine (over 10 s seen with a
                # load of 8 on 2 cores); each capability profile is a child of its own.
                "connect_timeout_seconds": 60,
            },
            ROUTER_SSE: {
                "name": "conformance",
                "url": sse_url,
                "transport": "sse",
                "namespace": "",
            },
        }
        routers = {
            name: router_url(write_config(tmp / f"{name}.yaml", [backend]), tmp / f"{name}.log")
            for name, backend in configs.items()
        }
        urls |= enter_concurrently(stack, routers)
        with ThreadPoolExecutor(len(ROUTED) * len(PROFILES)) as pool:
            for future in [
                pool.submit(open_profile_session, urls[name], caps)
                for name in ROUTED
                for caps in PROFILES
            ]:
                future.result()
        yield {name: urls[name] for name in TARGETS}


# The capability profiles the suite's requests declare (backends/capabilities.py: one shared
# backend session each, opened on first use; the profile that declares nothing is the main
# session). Over stdio each is a new child process, which takes seconds on a loaded machine,
# longer than the suite's per-request windows (600 ms for one server-stateless probe, 10 s
# otherwise): the test opens them before the suite, so that the suite measures the protocol,
# not process start-up.
PROFILES: tuple[dict[str, Any], ...] = (
    {"sampling": {}},
    {"elicitation": {}},
    {"sampling": {}, "elicitation": {}},
)


def open_profile_session(url: str, capabilities: dict[str, Any]) -> None:
    """One 2026-07-28 tools/call declaring ``capabilities``: the router opens (and waits for)
    the backend session of that capability profile. The tool asks only for what its session
    declared, so a question in the answer shows that the profile's own session served it."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "test_input_required_result_capabilities",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": REVISION,
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            },
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": REVISION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "test_input_required_result_capabilities",
    }
    answer = httpx2.post(url, json=body, headers=headers, timeout=90.0)
    assert answer.status_code == 200, f"{url} {capabilities}: {answer.status_code} {answer.text}"
    assert '"resultType":"input_required"' in answer.text, f"{url} {capabilities}: {answer.text}"


def run_targets(
    tmp: Path,
    env: dict[str, str],
    again: Callable[[dict[str, dict[str, Outcome]]], list[str]] | None = None,
) -> dict[str, dict[str, Outcome]]:
    """Run the suite against every target at once; ``{target: {scenario: Outcome}}``.

    ``again`` names the targets to run once more, one at a time, after the concurrent run:
    some checks allow a request 600 ms (streamed frames of a tools/call), which four suites at
    once on a 2-core machine can exceed. The second, unloaded run decides; a real difference
    shows in both.
    """
    with start_targets(tmp) as urls, ThreadPoolExecutor(len(urls)) as pool:
        futures = {
            name: pool.submit(run_suite, CONFORMANCE, SELECTION, url, tmp / name, env)
            for name, url in urls.items()
        }
        results = {name: future.result() for name, future in futures.items()}
        for name in again(results) if again is not None else []:
            results[name] = run_suite(
                CONFORMANCE, SELECTION, urls[name], tmp / f"{name}-again", env
            )
        return results


# ------------------------------------------------------------------------------ tests


env, expected = module_fixtures(CONFORMANCE, PACKAGE, EXPECTED_FILE)


def test_expected_failures_name_required_scenarios_with_reasons(
    env: dict[str, str], expected: dict[str, Any]
) -> None:
    required, unscored = list_scenarios(env)
    assert len(required) == 37, f"the frozen {REVISION} requirements list 37: {required}"
    assert any(s.startswith("tasks-") for s in unscored), unscored
    problems = check_expected_file(expected, set(required), TARGETS)
    assert not problems, problems


def test_2026_requirements_through_the_router_equal_direct(
    subtests: pytest.Subtests, env: dict[str, str], expected: dict[str, Any], tmp_path: Path
) -> None:
    """The backend passes all 37 directly; each router target (HTTP, stdio, legacy SSE backend)
    passes what it passes directly, but for the listed expected failures."""
    required, _ = list_scenarios(env)
    failures: dict[str, dict[str, str]] = expected["expected_failures"]

    def differing(results: dict[str, dict[str, Outcome]]) -> list[str]:
        direct = {s: o for s, o in results[DIRECT].items() if s in required}
        if any(direct.get(s, MISSING).status != "pass" for s in required):
            return [DIRECT, *ROUTED]
        return [
            target
            for target in ROUTED
            if check_routed(
                direct,
                {s: o for s, o in results[target].items() if s in required},
                set(failures.get(target, {})),
                target,
            )
        ]

    results = run_targets(tmp_path, env, again=differing)
    direct = {s: o for s, o in results[DIRECT].items() if s in required}

    with subtests.test(msg=DIRECT):
        failing = {s for s in required if direct.get(s, MISSING).status != "pass"}
        assert not failing, "fail directly:\n" + explain(direct, failing)
    for target in ROUTED:
        with subtests.test(msg=target):
            routed = {s: o for s, o in results[target].items() if s in required}
            problems = check_routed(direct, routed, set(failures.get(target, {})), target)
            assert not problems, f"{target} ({TITLES[target]}):\n" + "\n".join(problems)


# ------------------------------------------------------------------------------ the table


def render_table(
    required: list[str],
    unscored: list[str],
    results: Mapping[str, Mapping[str, Outcome]],
    expected: dict[str, Any],
) -> str:
    """tests/conformance/scenarios-2026.md: every scenario on every target, and the reasons."""
    failures: dict[str, dict[str, str]] = expected["expected_failures"]
    header = "| scenario | " + " | ".join(TITLES[t] for t in TARGETS) + " |"
    rule = "| --- | " + " | ".join("---" for _ in TARGETS) + " |"

    def rows(scenarios: list[str], scored: bool) -> list[str]:
        out = []
        for scenario in scenarios:
            cells = [
                cell(results[t].get(scenario, MISSING), scored and scenario in failures.get(t, {}))
                for t in TARGETS
            ]
            out.append(f"| {scenario} | " + " | ".join(cells) + " |")
        return out

    passed = {
        t: sum(1 for s in required if results[t].get(s, MISSING).status == "pass") for t in TARGETS
    }
    lines = [
        f"# MCP {REVISION} conformance requirements through the router",
        "",
        f"`{expected['package']}`, `conformance server --requirements {REVISION}`, one run per "
        "target. Generated by `uv run python tests/test_conformance_2026.py` from the results "
        "and the reasons in `expected-2026.json`; `tests/test_conformance_2026.py` asserts the "
        "same.",
        "",
        "Targets: the FastMCP backend `tests/servers/conformance2026.py` directly (streamable "
        'HTTP) and behind the router (`namespace: ""`) over streamable HTTP, over stdio and over '
        "SSE (a legacy-only backend: SSE always negotiates 2025-11-25). pass: no FAILURE and no "
        "WARNING check; WARN: warnings only; FAIL: a failed check. (expected): listed in "
        "`expected-2026.json` with the reason below.",
        "",
        "## Required scenarios (scored)",
        "",
        "Passing: " + ", ".join(f"{TITLES[t]} {passed[t]}/{len(required)}" for t in TARGETS) + ".",
        "",
        header,
        rule,
        *rows(required, True),
        "",
        "## Run, not scored (extension: tasks; pending)",
        "",
        "Neither the backend nor the router implements the tasks extension (SEP-2663): "
        "`server/discover` advertises no `io.modelcontextprotocol/tasks`, task-supporting "
        "calls run synchronously and `tasks/*` methods answer -32601.",
        "",
        header,
        rule,
        *rows(unscored, False),
        "",
        *expected_failures_section(TARGETS, TITLES, failures),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    found, why = conformance_env()
    if found is None:
        print(f"cannot run the conformance suite: {why}", file=sys.stderr)
        return 2
    expected = load_json(EXPECTED_FILE)
    required, unscored = list_scenarios(found)
    with tempfile.TemporaryDirectory(prefix="conformance-2026-") as tmp:
        results = run_targets(Path(tmp), found)
    TABLE_FILE.write_text(render_table(required, unscored, results, expected))
    for target in TARGETS:
        passed = sum(1 for s in required if results[target].get(s, MISSING).status == "pass")
        print(f"{target}: {passed}/{len(required)} pass")
    print(f"wrote {TABLE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
