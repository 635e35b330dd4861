"""The official MCP conformance suite (@modelcontextprotocol/conformance 0.1.16) through the router.

``conformance server --suite all`` runs once per target, every target at the same time
(``everything-direct`` only when this file runs as a script, for the table):

- ``direct``: ``tests/servers/conformance.py`` (FastMCP, streamable HTTP), no router;
- ``router-http-backend`` / ``router-stdio-backend``: the router's HTTP front before that backend
  over streamable HTTP / over stdio, with ``namespace: ""`` so that the scenarios' fixed names
  (``test_simple_text``, ``test://static-text``, ...) reach it unchanged;
- ``everything-direct``: server-everything over streamable HTTP (bound to 127.0.0.1), no router;
- ``router-everything``: the router before server-everything (stdio, namespace ``everything``).

A scenario passes when its ``checks.json`` has a SUCCESS and no FAILURE or WARNING (the suite's
own baseline rule). The tests assert that everything the backend passes directly also passes
through the router, check by check, and that the name-independent scenarios pass through the
router before server-everything, except for the entries of ``tests/conformance/expected.json``
(each with its reason). An entry that starts passing fails the test too, so the list stays true.

``uv run python tests/test_conformance.py`` runs every target and rewrites
``tests/conformance/scenarios.md`` from the results and the reasons in ``expected.json``.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

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
    stale,
    suite_env,
    url_of,
)
from support import (
    EVERYTHING,
    NODE_BIN,
    child_env,
    fastmcp_server,
    free_port,
    spawn,
    write_config,
)

EXPECTED_FILE = HERE / "expected.json"
TABLE_FILE = HERE / "scenarios.md"
LOOPBACK_PRELOAD = HERE / "loopback.cjs"
# Two versions are installed (0.1.16 and, as the npm alias conformance-2026, 0.2.0-alpha.12):
# both name their binary `conformance`, so each is run by its own path, never via .bin.
CONFORMANCE = NODE_BIN.parent / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
SELECTION = ("--suite", "all")  # one run takes ~7 s on an idle machine

DIRECT = "direct"
ROUTER_HTTP = "router-http-backend"
ROUTER_STDIO = "router-stdio-backend"
EVERYTHING_DIRECT = "everything-direct"
ROUTER_EVERYTHING = "router-everything"
TARGETS = (DIRECT, ROUTER_HTTP, ROUTER_STDIO, EVERYTHING_DIRECT, ROUTER_EVERYTHING)
EVERYTHING_TARGETS = (EVERYTHING_DIRECT, ROUTER_EVERYTHING)
TITLES = {
    DIRECT: "backend direct",
    ROUTER_HTTP: "router → backend (HTTP)",
    ROUTER_STDIO: "router → backend (stdio)",
    EVERYTHING_DIRECT: "server-everything direct",
    ROUTER_EVERYTHING: "router → server-everything",
}
_LISTED = re.compile(r"^\s+- (?P<scenario>\S+)")


PACKAGE = "@modelcontextprotocol/conformance (0.1.16)"


def conformance_env() -> tuple[dict[str, str] | None, str]:
    """The environment for the 0.1.16 suite, or None and why not."""
    return suite_env(CONFORMANCE, PACKAGE)


def list_scenarios(env: dict[str, str]) -> list[str]:
    """The server scenarios of the installed suite (``conformance list --server``)."""
    out = list_output(CONFORMANCE, ["--server"], env)
    return [m["scenario"] for line in out.splitlines() if (m := _LISTED.match(line))]


# ------------------------------------------------------------------------------ targets


@contextlib.contextmanager
def start_targets(tmp: Path, names: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Start the backends and routers ``names`` need; yield each target's MCP URL."""
    with contextlib.ExitStack() as stack:
        backend_port = free_port()
        backend_url = f"http://127.0.0.1:{backend_port}/mcp"
        first: dict[str, AbstractContextManager[str]] = {}
        if DIRECT in names or ROUTER_HTTP in names:
            backend = spawn(
                fastmcp_server("conformance", "http", backend_port),
                ready_url=backend_url,
                timeout=60.0,
            )
            first[DIRECT] = url_of(backend, backend_url)
        if EVERYTHING_DIRECT in names:
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            env = child_env(PORT=str(port), NODE_OPTIONS=f"--require {LOOPBACK_PRELOAD}")
            everything = spawn(
                [str(EVERYTHING), "streamableHttp"], env=env, ready_url=url, timeout=60.0
            )
            first[EVERYTHING_DIRECT] = url_of(everything, url)
        urls = enter_concurrently(stack, first)

        backends: dict[str, dict[str, Any]] = {
            ROUTER_HTTP: {"name": "conformance", "url": backend_url, "namespace": ""},
            ROUTER_STDIO: {
                "name": "conformance",
                "command": sys.executable,
                "args": fastmcp_server("conformance", "stdio")[1:],
                "namespace": "",
                # each capability profile is a Python child of its own, slow on a busy machine
                "connect_timeout_seconds": 60,
            },
            ROUTER_EVERYTHING: {
                "name": "everything",
                "command": str(EVERYTHING),
                "args": ["stdio"],
                "namespace": "everything",
            },
        }
        routers = {
            name: router_url(write_config(tmp / f"{name}.yaml", [backend]))
            for name, backend in backends.items()
            if name in names
        }
        urls |= enter_concurrently(stack, routers)
        yield {name: urls[name] for name in names}


def run_targets(
    tmp: Path, names: tuple[str, ...], env: dict[str, str]
) -> dict[str, dict[str, Outcome]]:
    """Run the suite against every target at once; ``{target: {scenario: Outcome}}``."""
    with start_targets(tmp, names) as urls, ThreadPoolExecutor(len(urls)) as pool:
        futures = {
            name: pool.submit(run_suite, CONFORMANCE, SELECTION, url, tmp / name, env)
            for name, url in urls.items()
        }
        return {name: future.result() for name, future in futures.items()}


# ------------------------------------------------------------------------------ checks


def check_direct(
    results: Mapping[str, Outcome], scenarios: set[str], allowed: set[str]
) -> list[str]:
    """The backend passes every scenario but its expected failures."""
    failing = {s for s in scenarios if results.get(s, MISSING).status != "pass"} - allowed
    problems = ["fail directly:\n" + explain(results, failing)] if failing else []
    return problems + stale(results, allowed, DIRECT)


def check_required(
    routed: Mapping[str, Outcome], required: set[str], allowed: set[str], target: str
) -> list[str]:
    """Every required scenario but the expected failures passes."""
    failing = {s for s in required - allowed if routed.get(s, MISSING).status != "pass"}
    problems = ["fail through the router:\n" + explain(routed, failing)] if failing else []
    return problems + stale(routed, allowed, target)


# ------------------------------------------------------------------------------ tests

pytestmark = pytest.mark.timeout(300)


env, expected = module_fixtures(CONFORMANCE, PACKAGE, EXPECTED_FILE)


def test_expected_failures_name_known_scenarios_with_reasons(
    env: dict[str, str], expected: dict[str, Any]
) -> None:
    scenarios = set(list_scenarios(env))
    assert len(scenarios) == 32, f"the pinned suite lists 32 server scenarios: {scenarios}"
    assert set(expected["name_independent"]) <= scenarios
    problems = check_expected_file(expected, scenarios, TARGETS)
    assert not problems, problems


def test_conformance_suite_through_the_router(
    subtests: pytest.Subtests, env: dict[str, str], expected: dict[str, Any], tmp_path: Path
) -> None:
    """One suite run per target, all at once (one test, so xdist runs it once); a subtest each.

    - direct: the backend passes everything but its expected failures;
    - router before the backend (HTTP, stdio): passes what the backend passes directly;
    - router before server-everything: passes the name-independent scenarios.
    """
    names = (DIRECT, ROUTER_HTTP, ROUTER_STDIO) + (
        (ROUTER_EVERYTHING,) if EVERYTHING.exists() else ()
    )
    results = run_targets(tmp_path, names, env)
    failures: dict[str, dict[str, str]] = expected["expected_failures"]

    def allowed(target: str) -> set[str]:
        return set(failures.get(target, {}))

    direct = results[DIRECT]
    checks = {
        DIRECT: check_direct(direct, set(list_scenarios(env)), allowed(DIRECT)),
        ROUTER_HTTP: check_routed(direct, results[ROUTER_HTTP], allowed(ROUTER_HTTP), ROUTER_HTTP),
        ROUTER_STDIO: check_routed(
            direct, results[ROUTER_STDIO], allowed(ROUTER_STDIO), ROUTER_STDIO
        ),
    }
    if ROUTER_EVERYTHING in results:
        checks[ROUTER_EVERYTHING] = check_required(
            results[ROUTER_EVERYTHING],
            set(expected["name_independent"]),
            allowed(ROUTER_EVERYTHING),
            ROUTER_EVERYTHING,
        )
    for target, problems in checks.items():
        with subtests.test(msg=target):
            assert not problems, f"{target} ({TITLES[target]}):\n" + "\n".join(problems)


# ------------------------------------------------------------------------------ the table


def render_table(
    scenarios: list[str], results: Mapping[str, Mapping[str, Outcome]], expected: dict[str, Any]
) -> str:
    """tests/conformance/scenarios.md: every scenario on every target, and the reasons."""
    failures: dict[str, dict[str, str]] = expected["expected_failures"]
    name_independent = set(expected["name_independent"])
    targets = [t for t in TARGETS if t in results]
    lines = [
        "# MCP conformance suite through the router",
        "",
        f"`{expected['package']}`, `conformance server --suite {expected['suite']}`, one run per "
        "target. Generated by `uv run python tests/test_conformance.py` from the results and the "
        "reasons in `expected.json`; `tests/test_conformance.py` asserts the same.",
        "",
        "Targets: the FastMCP backend `tests/servers/conformance.py` directly and behind the "
        'router (`namespace: ""`, backend over streamable HTTP and over stdio); server-everything '
        "directly and behind the router (stdio, namespace `everything`). pass: no FAILURE and no "
        "WARNING check; WARN: warnings only; FAIL: a failed check. (expected): listed in "
        "`expected.json` with the reason below. NI: name-independent (must pass through the "
        "router before server-everything).",
        "",
        "| scenario | NI | " + " | ".join(TITLES[t] for t in targets) + " |",
        "| --- | --- | " + " | ".join("---" for _ in targets) + " |",
    ]
    for scenario in scenarios:
        cells = [
            cell(results[t].get(scenario, MISSING), scenario in failures.get(t, {}))
            for t in targets
        ]
        ni = "yes" if scenario in name_independent else ""
        lines.append(f"| {scenario} | {ni} | " + " | ".join(cells) + " |")
    lines += ["", *expected_failures_section(targets, TITLES, failures)]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    found, why = conformance_env()
    if found is None:
        print(f"cannot run the conformance suite: {why}", file=sys.stderr)
        return 2
    expected = load_json(EXPECTED_FILE)
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        results = run_targets(Path(tmp), TARGETS, found)
    TABLE_FILE.write_text(render_table(list_scenarios(found), results, expected))
    for target in TARGETS:
        passed = sorted(s for s, o in results[target].items() if o.status == "pass")
        print(f"{target}: {len(passed)}/{len(results[target])} pass")
    print(f"wrote {TABLE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
