"""Running the official MCP conformance suite (``@modelcontextprotocol/conformance``) against
several targets at once and comparing them, for ``test_conformance.py`` (0.1.16, the 2025-11-25
suite) and ``test_conformance_2026.py`` (0.2.0-alpha.12, the frozen 2026-07-28 requirements).

Each file keeps its own targets, its scenario list and its table; what they share is here:

- :func:`run_suite` runs ``conformance server`` (one installed version, by path) against a URL
  and :func:`parse_results` reads its ``checks.json`` files into :class:`Outcome` s;
- :func:`enter_concurrently` starts backends and routers in parallel;
- :func:`check_routed` is the comparison "what passes directly passes through the router,
  scenario by scenario and check by check", with :func:`explain` for its messages;
- :func:`expected_failures_section` renders the reasons of an ``expected*.json``.

A scenario passes when its ``checks.json`` has a SUCCESS and no FAILURE or WARNING (the suite's
own baseline rule).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import MIN_NODE, NODE_BIN, child_env, kill_group, node22_dir, run_router

HERE = Path(__file__).resolve().parent / "conformance"

# conformance names each result folder server-<scenario>-<ISO timestamp with : and . as ->
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


# ------------------------------------------------------------------------------ environment


def suite_env(cli: Path, package: str) -> tuple[dict[str, str] | None, str]:
    """The environment for the suite at ``cli`` (its Node first on PATH), or None and why."""
    if not cli.exists():
        return None, f"run `npm ci`: package.json pins {package}"
    found = node22_dir()
    if found is None:
        return None, f"Node >= {MIN_NODE} not found: run `npm ci` (package.json pins node@22)"
    path = os.pathsep.join([str(found), str(NODE_BIN), os.environ.get("PATH", "")])
    return child_env(PATH=path), ""


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def module_fixtures(cli: Path, package: str, expected_file: Path) -> tuple[Any, Any]:
    """The ``env`` fixture (the suite's environment; skips when it is not installed) and the
    ``expected`` fixture (the expected-failures file) of one conformance test module."""

    @pytest.fixture(scope="module")
    def env() -> dict[str, str]:
        found, why = suite_env(cli, package)
        if found is None:
            pytest.skip(why)
        return found

    @pytest.fixture(scope="module")
    def expected() -> dict[str, Any]:
        return load_json(expected_file)

    return env, expected


def check_expected_file(
    expected: Mapping[str, Any], scenarios: set[str], targets: Sequence[str]
) -> list[str]:
    """Every expected failure names a known target and one of ``scenarios``, with a reason."""
    problems = []
    failures: Mapping[str, Mapping[str, Any]] = expected["expected_failures"]
    problems += [f"unknown target {target!r}" for target in set(failures) - set(targets)]
    for target, entries in failures.items():
        for scenario, reason in entries.items():
            if scenario not in scenarios:
                problems.append(f"{target}: {scenario!r} is not one of the scenarios")
            if not (isinstance(reason, str) and reason.strip()):
                problems.append(f"{target}/{scenario}: no reason")
    return problems


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Outcome:
    """One scenario's result: ``pass``, ``warn`` (warnings, no failure) or ``fail``."""

    status: str
    successes: frozenset[str]
    problems: tuple[str, ...]


MISSING = Outcome("fail", frozenset(), ("no checks.json: the scenario did not run",))
Results = Mapping[str, Outcome]


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


def list_output(cli: Path, args: Sequence[str], env: dict[str, str]) -> str:
    """What ``conformance list ARGS`` prints."""
    return subprocess.run(
        [str(cli), "list", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout


def run_suite(
    cli: Path,
    selection: Sequence[str],
    url: str,
    out: Path,
    env: dict[str, str],
    timeout: float = 150.0,
) -> dict[str, Outcome]:
    """``conformance server --url URL SELECTION`` (``--suite all``, ``--requirements R``);
    results (and the console log) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(cli), "server", "--url", url, *selection, "-o", str(out)]
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
            proc.wait(timeout=timeout)  # exit status 1 just means some scenario failed
        finally:
            kill_group(proc)
    return parse_results(out)


# ------------------------------------------------------------------------------ targets


def enter_concurrently(
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
def url_of(cm: AbstractContextManager[Any], url: str) -> Iterator[str]:
    """``cm`` (a started process) as a context manager that yields ``url``."""
    with cm:
        yield url


@contextlib.contextmanager
def router_url(config: Path, log: Path | None = None) -> Iterator[str]:
    """A router over HTTP with ``config``; yields its MCP URL."""
    with run_router(config, log, timeout=60.0) as router:
        yield router.url


# ------------------------------------------------------------------------------ checks


def explain(results: Results, scenarios: set[str]) -> str:
    lines = []
    for scenario in sorted(scenarios):
        outcome = results.get(scenario, MISSING)
        lines.append(f"  {scenario} [{outcome.status}]")
        lines.extend(f"      {p}" for p in outcome.problems)
    return "\n".join(lines)


def stale(results: Results, allowed: set[str], target: str) -> list[str]:
    """Expected failures that pass now: they must leave the expected-failures file."""
    passing = sorted(s for s in allowed if results.get(s, MISSING).status == "pass")
    return [f"pass now, remove from the expected failures [{target}]: {passing}"] if passing else []


# Checks that succeed only when a POST is answered with an SSE stream. The router answers with
# application/json when nothing streams before the result (the spec lets a server choose when
# the client accepts both); the scenario then reports INFO ("SSE streaming is optional").
# A FAILURE or WARNING there still fails the scenario (see `lost` below).
SSE_ONLY_CHECKS = frozenset({"server-sse-streams-functional"})


def check_routed(direct: Results, routed: Results, allowed: set[str], target: str) -> list[str]:
    """What passes directly passes through the router, scenario by scenario and check by check."""
    problems = []
    lost = {
        s
        for s, o in direct.items()
        if o.status == "pass" and routed.get(s, MISSING).status != "pass"
    } - allowed
    if lost:
        problems.append("pass directly, not through the router:\n" + explain(routed, lost))
    lost_checks = {
        s: sorted(missing)
        for s, o in direct.items()
        if s not in allowed
        and (missing := o.successes - routed.get(s, MISSING).successes - SSE_ONLY_CHECKS)
    }
    if lost_checks:
        problems.append(f"checks that succeed directly, not through the router: {lost_checks}")
    return problems + stale(routed, allowed, target)


# ------------------------------------------------------------------------------ tables


def cell(outcome: Outcome, expected_failure: bool) -> str:
    text = {"pass": "pass", "warn": "WARN", "fail": "FAIL"}[outcome.status]
    return f"{text} (expected)" if expected_failure else text


def expected_failures_section(
    targets: Sequence[str], titles: Mapping[str, str], failures: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """The "Expected failures" lines of a scenarios table: each target's reasons."""
    lines = ["## Expected failures", ""]
    for target in targets:
        entries = failures.get(target, {})
        if not entries:
            continue
        lines += [f"### `{target}`: {titles[target]}", ""]
        lines += [f"- **{scenario}**: {reason}" for scenario, reason in sorted(entries.items())]
        lines.append("")
    return lines
