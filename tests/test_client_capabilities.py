"""What a client declares decides what the backend is told and which tools the client sees.

server-everything lists ``trigger-sampling-request`` / ``trigger-elicitation-request`` /
``trigger-url-elicitation`` / ``get-roots-list`` only to clients declaring sampling /
elicitation / roots. Behind a real router (HTTP front), SDK clients with different
capabilities, concurrently, must each list what a direct client with the same capabilities
lists (shared sessions: one per sampling/elicitation profile, never roots; ``per_client``: the
client's exact capabilities), and ``tests/servers/caps.py`` shows what the backend was told.
The router's initialize instructions carry each backend's own.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from mcp_router.backends.capabilities import DeclaringClient
from mcp_router.gateway.instructions import TOTAL_CHARS
from mcp_router.gateway.server import INSTRUCTIONS
from support import EVERYTHING, PYTHON, SERVERS, run_router, wait_until, write_config

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not EVERYTHING.exists(), reason="run `npm ci` for server-everything (package.json)"
    ),
]

SHARED, OWN = "every", "own"  # server-everything, shared sessions / session_mode: per_client
CAPS, CAPS_OWN = "caps", "capsown"  # tests/servers/caps.py, shared / per_client
PROFILES = {
    "none": set(),
    "sampling": {"sampling"},
    "elicitation": {"elicitation"},
    "all": {"sampling", "elicitation", "roots"},
}


@pytest.fixture(scope="module")
def router_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A router before server-everything and caps.py, each shared and per-client."""
    caps = [str(SERVERS / "caps.py")]
    config = write_config(
        tmp_path_factory.mktemp("caps") / "backends.yaml",
        [
            {"name": SHARED, "command": str(EVERYTHING), "args": ["stdio"]},
            {
                "name": OWN,
                "command": str(EVERYTHING),
                "args": ["stdio"],
                "session_mode": "per_client",
            },
            {"name": CAPS, "command": PYTHON, "args": caps},
            {"name": CAPS_OWN, "command": PYTHON, "args": caps, "session_mode": "per_client"},
        ],
    )
    # Each client opens more Python and Node sessions here; a loaded 2-core machine (the
    # suite runs two workers) starts them slower than the 10 s default.
    text = config.read_text()
    data = yaml.safe_load(text)
    for backend in data["backends"]:
        backend["connect_timeout_seconds"] = 60
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with run_router(config, timeout=60) as router:
        base = router.base
        yield f"{base}/mcp"


class Answers:
    """Callbacks answering sampling, elicitation and roots with this client's own name."""

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.sampled = 0

    async def sampling(self, _ctx: Any, _params: Any) -> types.CreateMessageResult:
        self.sampled += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled-by-{self.ident}"),
            model="test-model",
        )

    async def elicitation(self, _ctx: Any, _params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    async def roots(self, _ctx: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///{self.ident}")])

    def callbacks(self, declared: set[str]) -> dict[str, Any]:
        """The SDK client arguments that declare ``declared``."""
        kw: dict[str, Any] = {}
        if "sampling" in declared:
            kw["sampling_callback"] = self.sampling
        if "elicitation" in declared:
            kw["elicitation_callback"] = self.elicitation
        if "roots" in declared:
            kw["list_roots_callback"] = self.roots
        return kw


@contextlib.asynccontextmanager
async def direct_everything(declared: set[str]) -> AsyncIterator[Client]:
    """A client straight to server-everything declaring ``declared``."""
    params = StdioServerParameters(command=str(EVERYTHING), args=["stdio"])
    async with Client(params, mode="legacy", **Answers("direct").callbacks(declared)) as c:
        yield c


def names(tools: list[types.Tool], prefix: str) -> set[str]:
    return {t.name[len(prefix) + 1 :] for t in tools if t.name.startswith(f"{prefix}_")}


async def settled_list(c: Client, quiet: float = 2.0, limit: float = 60.0) -> list[types.Tool]:
    """The client's tool list once it stops changing: a profile's backend session opens in
    the background on the client's first list (lists never wait for a server to start), and
    its tools join the list when it is up (clients are sent list_changed)."""
    deadline = anyio.current_time() + limit
    last = (await c.list_tools()).tools
    stable_since = anyio.current_time()
    while anyio.current_time() - stable_since < quiet and anyio.current_time() < deadline:
        await anyio.sleep(0.25)
        now = (await c.list_tools()).tools
        if {t.name for t in now} != {t.name for t in last}:
            last, stable_since = now, anyio.current_time()
    return last


async def test_each_client_lists_what_a_direct_client_with_its_capabilities_lists(
    router_url: str,
) -> None:
    routed: dict[str, list[types.Tool]] = {}

    async def run(profile: str) -> None:
        kw = Answers(profile).callbacks(PROFILES[profile])
        async with Client(router_url, mode="legacy", **kw) as c:
            routed[profile] = await settled_list(c)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for profile in PROFILES:
                tg.start_soon(run, profile)
        for profile, declared in PROFILES.items():
            # per_client: the client's own session declares exactly what it declared
            async with direct_everything(declared) as d:
                exact = {t.name for t in (await d.list_tools()).tools}
            assert names(routed[profile], OWN) == exact, profile
            # shared: the session of its profile, which never declares roots
            async with direct_everything(declared - {"roots"}) as d:
                shared = {t.name for t in (await d.list_tools()).tools}
            assert names(routed[profile], SHARED) == shared, profile
    # the Inspector's case: a client declaring nothing sees none of the capability tools
    assert "trigger-sampling-request" not in names(routed["none"], SHARED)
    assert "trigger-sampling-request" in names(routed["sampling"], SHARED)
    assert "get-roots-list" in names(routed["all"], OWN)
    assert "get-roots-list" not in names(routed["all"], SHARED)


async def _declared(c: Client, backend: str) -> dict[str, Any]:
    result = await c.call_tool(f"{backend}_declared", {})
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)  # type: ignore[union-attr,no-any-return]


async def test_backends_are_told_exactly_what_their_session_declares(router_url: str) -> None:
    form_only = types.ClientCapabilities(
        elicitation=types.ElicitationCapability(form=types.FormElicitationCapability()),
        roots=types.RootsCapability(list_changed=False),
    )
    answers = Answers("exact")
    with anyio.fail_after(90):
        async with (
            DeclaringClient(
                router_url,
                mode="legacy",
                declared=form_only,
                elicitation_callback=answers.elicitation,
                list_roots_callback=answers.roots,
            ) as odd,
            Client(router_url, mode="legacy", **answers.callbacks(PROFILES["all"])) as full,
            Client(router_url, mode="legacy") as plain,
        ):
            # per_client: verbatim, sub-capabilities included
            assert await _declared(odd, CAPS_OWN) == form_only.model_dump(
                by_alias=True, mode="json", exclude_none=True
            )
            assert await _declared(plain, CAPS_OWN) == {}
            full_own = await _declared(full, CAPS_OWN)
            assert set(full_own) == {"sampling", "elicitation", "roots"}
            # shared: the profile's session: sampling/elicitation as declared, never roots
            assert set(await _declared(full, CAPS)) == {"sampling", "elicitation"}
            assert set(await _declared(odd, CAPS)) == {"elicitation"}
            assert await _declared(plain, CAPS) == {}


async def test_sampling_tool_reaches_the_client_that_declared_sampling_and_no_other(
    router_url: str,
) -> None:
    a, b = Answers("a"), Answers("b")
    with anyio.fail_after(90):
        async with (
            Client(router_url, mode="legacy", **a.callbacks({"sampling"})) as ca,
            Client(router_url, mode="legacy", **b.callbacks(set())) as cb,
        ):
            result = await ca.call_tool(
                f"{SHARED}_trigger-sampling-request", {"prompt": "hi", "maxTokens": 10}
            )
            assert not result.is_error, result.content
            assert "sampled-by-a" in result.content[0].text  # type: ignore[union-attr]
            # not listed to b, and not served to it either: its session never offered it
            refused = await cb.call_tool(f"{SHARED}_trigger-sampling-request", {"prompt": "hi"})
            assert refused.is_error
    assert a.sampled == 1 and b.sampled == 0


async def test_a_profile_session_that_cannot_start_falls_back_to_the_main_session_and_says_so(
    tmp_path: Path,
) -> None:
    """A stdio backend whose second process refuses to start: the main session is up, the
    session for clients declaring sampling never connects. A sampling client's call is still
    served (by the main session, which declares nothing), and the router's log says so,
    naming the backend, the profile and why."""
    marker = tmp_path / "started-once"
    script = (
        f"if [ -e {shlex.quote(str(marker))} ]; then echo 'no second start' >&2; exit 7; fi; "
        f"touch {shlex.quote(str(marker))}; "
        f"exec {shlex.quote(PYTHON)} {shlex.quote(str(SERVERS / 'caps.py'))}"
    )
    config = write_config(
        tmp_path / "once.yaml",
        [{"name": "once", "command": "sh", "args": ["-c", script], "connect_timeout_seconds": 30}],
    )
    log = tmp_path / "router.log"
    with run_router(config, log, timeout=60) as router:
        answers = Answers("fallback")
        with anyio.fail_after(90):
            async with Client(router.url, mode="legacy", **answers.callbacks({"sampling"})) as c:
                assert await _declared(c, "once") == {}  # served, by the main session

        def warned() -> str:
            lines = [line for line in log.read_text().splitlines() if "not connected" in line]
            return lines[0] if lines else ""

        line = wait_until(warned, 30, "the fallback warning")
    assert "WARNING" in line and "backend 'once'" in line, line
    assert "declaring sampling" in line and "main session" in line, line
    assert "7" in line, line  # why: the child's exit status


async def test_initialize_instructions_carry_each_backends_instructions(router_url: str) -> None:
    with anyio.fail_after(60):
        async with direct_everything(set()) as d, Client(router_url, mode="legacy") as c:
            own = d.session.initialize_result.instructions  # type: ignore[union-attr]
            text = c.session.initialize_result.instructions  # type: ignore[union-attr]
    assert own and text
    assert text.startswith(INSTRUCTIONS)
    assert f"## Backend '{SHARED}' (tools prefixed `{SHARED}_`)" in text
    assert own.strip()[:300] in text  # the backend's own words, verbatim (bounded length)
    assert len(text) <= TOTAL_CHARS + 200
    assert "## Backend 'caps'" not in text  # caps.py has no instructions: no empty section
