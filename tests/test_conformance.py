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
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import (
    EVERYTHING,
    MIN_NODE,
    NODE_BIN,
    child_env,
    fastmcp_server,
    free_port,
    kill_group,
    node22_dir,
    run_router,
    spawn,
    write_config,
)

HERE = Path(__file__).resolve().parent / "conformance"
EXPECTED_FILE = HERE / "expected.json"
TABLE_FILE = HERE / "scenarios.md"
LOOPBACK_PRELOAD = HERE / "loopback.cjs"
# Two versions are installed (0.1.16 and, as the npm alias conformance-2026, 0.2.0-alpha.12):
# both name their binary `conformance`, so each is run by its own path, never via .bin.
CONFORMANCE = NODE_BIN.parent / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
SUITE_TIMEOUT = 150.0  # one `conformance server --suite all` takes ~7 s on an idle machine

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

# conformance names each result folder server-<scenario>-<ISO timestamp with : and . as ->
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")
_LISTED = re.compile(r"^\s+- (?P<scenario>\S+)")


# ------------------------------------------------------------------------------ environment


def conformance_env() -> tuple[dict[str, str] | None, str]:
    """The environment for ``conformance`` (its Node first on PATH), or None and why not."""
    if not CONFORMANCE.exists():
        return None, "run `npm ci`: package.json pins @modelcontextprotocol/conformance"
    found = node22_dir()
    if found is None:
        return None, f"Node >= {MIN_NODE} not found: run `npm ci` (package.json pins node@22)"
    path = os.pathsep.join([str(found), str(NODE_BIN), os.environ.get("PATH", "")])
    return child_env(PATH=path), ""


def load_expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXPECTED_FILE.read_text())
    return data


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Outcome:
    """One scenario's result: ``pass``, ``warn`` (warnings, no failure) or ``fail``."""

    status: str
    successes: frozenset[str]
    problems: tuple[str, ...]


MISSING = Outcome("fail", frozenset(), ("no checks.json: the scenario did not run",))


def outcome_of(checks: list[dict[str, Any]]) -> Outcome:
    statuses = [c.get("status") for c in checks]
    problems = tuple(
        f"{c.get('id')}: {c.get('status')} {c.get('errorMessage') or c.get('description', '')}"
        for c in checks
        if c.get("status") in ("FAILURE", "WARNING")
    )
    successes = frozenset(str(c.get("id")) for c in checks if c.get("status") == "SUCCESS")
    if "FAILURE" in statuses:
        status = "fail"
    elif "WARNING" in statuses or not successes:
        status = "warn"
    else:
        status = "pass"
    return Outcome(status, successes, problems)


def parse_results(out: Path) -> dict[str, Outcome]:
    """Every scenario result under a ``conformance server -o`` folder."""
    results: dict[str, Outcome] = {}
    for checks_file in sorted(out.glob("*/checks.json")):
        m = _RESULT_DIR.match(checks_file.parent.name)
        if m is None:
            continue
        try:
            checks = json.loads(checks_file.read_text())
        except (OSError, ValueError) as exc:
            results[m["scenario"]] = Outcome("fail", frozenset(), (f"unreadable: {exc}",))
            continue
        results[m["scenario"]] = outcome_of(checks)
    return results


def list_scenarios(env: dict[str, str]) -> list[str]:
    """The server scenarios of the installed suite (``conformance list --server``)."""
    out = subprocess.run(
        [str(CONFORMANCE), "list", "--server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return [m["scenario"] for line in out.splitlines() if (m := _LISTED.match(line))]


def run_suite(url: str, out: Path, env: dict[str, str]) -> dict[str, Outcome]:
    """Run every server scenario against ``url``; results (and the console log) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(CONFORMANCE), "server", "--url", url, "--suite", "all", "-o", str(out)]
    with (out / "console.txt").open("w") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=SUITE_TIMEOUT)  # exit status 1 just means some scenario failed
        finally:
            kill_group(proc)
    return parse_results(out)


# ------------------------------------------------------------------------------ targets


def _enter_concurrently(
    stack: contextlib.ExitStack, cms: Mapping[str, AbstractContextManager[str]]
) -> dict[str, str]:
    """Enter context managers in parallel (process start-ups); their exits go on ``stack``."""
    if not cms:
        return {}
    with ThreadPoolExecutor(len(cms)) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in cms.items()}
    values: dict[str, str] = {}
    error: BaseException | None = None
    for name, future in futures.items():
        try:
            values[name] = future.result()
        except BaseException as exc:
            error = error or exc
            continue
        stack.push(cms[name])
    if error is not None:
        raise error
    return values


@contextlib.contextmanager
def _url_of(cm: AbstractContextManager[Any], url: str) -> Iterator[str]:
    with cm:
        yield url


@contextlib.contextmanager
def _router_url(config: Path) -> Iterator[str]:
    with run_router(config, timeout=60.0) as router:
        yield router.url


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
            first[DIRECT] = _url_of(backend, backend_url)
        if EVERYTHING_DIRECT in names:
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            env = child_env(PORT=str(port), NODE_OPTIONS=f"--require {LOOPBACK_PRELOAD}")
            everything = spawn(
                [str(EVERYTHING), "streamableHttp"], env=env, ready_url=url, timeout=60.0
            )
            first[EVERYTHING_DIRECT] = _url_of(everything, url)
        urls = _enter_concurrently(stack, first)

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
            name: _router_url(write_config(tmp / f"{name}.yaml", [backend]))
            for name, backend in backends.items()
            if name in names
        }
        urls |= _enter_concurrently(stack, routers)
        yield {name: urls[name] for name in names}


def run_targets(
    tmp: Path, names: tuple[str, ...], env: dict[str, str]
) -> dict[str, dict[str, Outcome]]:
    """Run the suite against every target at once; ``{target: {scenario: Outcome}}``."""
    with start_targets(tmp, names) as urls, ThreadPoolExecutor(len(urls)) as pool:
        futures = {name: pool.submit(run_suite, url, tmp / name, env) for name, url in urls.items()}
        return {name: future.result() for name, future in futures.items()}


# ------------------------------------------------------------------------------ checks


def _explain(results: Mapping[str, Outcome], scenarios: set[str]) -> str:
    lines = []
    for scenario in sorted(scenarios):
        outcome = results.get(scenario, MISSING)
        lines.append(f"  {scenario} [{outcome.status}]")
        lines.extend(f"      {p}" for p in outcome.problems)
    return "\n".join(lines)


def _stale(results: Mapping[str, Outcome], allowed: set[str], target: str) -> list[str]:
    """Expected failures that pass now: they must leave expected.json."""
    passing = sorted(s for s in allowed if results.get(s, MISSING).status == "pass")
    return [f"pass now, remove from expected.json [{target}]: {passing}"] if passing else []


def check_direct(
    results: Mapping[str, Outcome], scenarios: set[str], allowed: set[str]
) -> list[str]:
    """The backend passes every scenario but its expected failures."""
    failing = {s for s in scenarios if results.get(s, MISSING).status != "pass"} - allowed
    problems = ["fail directly:\n" + _explain(results, failing)] if failing else []
    return problems + _stale(results, allowed, DIRECT)


# Checks that succeed only when a POST is answered with an SSE stream. The router answers with
# application/json when nothing streams before the result (the spec lets a server choose when
# the client accepts both); the scenario then reports INFO ("SSE streaming is optional").
# A FAILURE or WARNING there still fails the scenario (see `lost` below).
SSE_ONLY_CHECKS = frozenset({"server-sse-streams-functional"})


def check_routed(
    direct: Mapping[str, Outcome], routed: Mapping[str, Outcome], allowed: set[str], target: str
) -> list[str]:
    """What passes directly passes through the router, scenario by scenario and check by check."""
    problems = []
    lost = {
        s
        for s, o in direct.items()
        if o.status == "pass" and routed.get(s, MISSING).status != "pass"
    } - allowed
    if lost:
        problems.append("pass directly, not through the router:\n" + _explain(routed, lost))
    lost_checks = {
        s: sorted(missing)
        for s, o in direct.items()
        if s not in allowed
        and (missing := o.successes - routed.get(s, MISSING).successes - SSE_ONLY_CHECKS)
    }
    if lost_checks:
        problems.append(f"checks that succeed directly, not through the router: {lost_checks}")
    return problems + _stale(routed, allowed, target)


def check_required(
    routed: Mapping[str, Outcome], required: set[str], allowed: set[str], target: str
) -> list[str]:
    """Every required scenario but the expected failures passes."""
    failing = {s for s in required - allowed if routed.get(s, MISSING).status != "pass"}
    problems = ["fail through the router:\n" + _explain(routed, failing)] if failing else []
    return problems + _stale(routed, allowed, target)


# ------------------------------------------------------------------------------ tests

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    found, why = conformance_env()
    if found is None:
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return load_expected()


def test_expected_failures_name_known_scenarios_with_reasons(
    env: dict[str, str], expected: dict[str, Any]
) -> None:
    scenarios = set(list_scenarios(env))
    assert len(scenarios) == 32, f"the pinned suite lists 32 server scenarios: {scenarios}"
    assert set(expected["name_independent"]) <= scenarios
    assert set(expected["expected_failures"]) <= set(TARGETS)
    for target, entries in expected["expected_failures"].items():
        for scenario, reason in entries.items():
            assert scenario in scenarios, f"{target}: unknown scenario {scenario!r}"
            assert isinstance(reason, str) and reason.strip(), f"{target}/{scenario}: no reason"


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


def _cell(outcome: Outcome, expected_failure: bool) -> str:
    text = {"pass": "pass", "warn": "WARN", "fail": "FAIL"}[outcome.status]
    return f"{text} (expected)" if expected_failure else text


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
            _cell(results[t].get(scenario, MISSING), scenario in failures.get(t, {}))
            for t in targets
        ]
        ni = "yes" if scenario in name_independent else ""
        lines.append(f"| {scenario} | {ni} | " + " | ".join(cells) + " |")
    lines += ["", "## Expected failures", ""]
    for target in targets:
        entries = failures.get(target, {})
        if not entries:
            continue
        lines += [f"### `{target}`: {TITLES[target]}", ""]
        lines += [f"- **{scenario}**: {reason}" for scenario, reason in sorted(entries.items())]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    found, why = conformance_env()
    if found is None:
        print(f"cannot run the conformance suite: {why}", file=sys.stderr)
        return 2
    expected = load_expected()
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
