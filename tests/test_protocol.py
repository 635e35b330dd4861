"""Protocol fidelity through the router, proven with real MCP clients (issue 4).

Backend ``proto`` (tests/servers/protocol.py) sits behind a router whose front is streamable
HTTP; every test runs with the backend over streamable HTTP and over stdio (``backend``
parameter). Each client declares sampling, elicitation and roots callbacks that answer with the
client's own id, a logging callback and a message handler, so every relayed message can be
traced to the client it reached.

What is proven (DESIGN.md, "Data flow"): notifications and server-to-client requests a backend
raises during a call reach the client that made the call and no other; subscriptions,
completions, list changes and cancellation pass through; a stateless (2026-07-28) client gets a
clear error, not a hang, when the backend asks for sampling.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from support import PYTHON, SERVERS, RouterProcess, wait_until_async, write_config

# the test itself is bounded; shared processes are bounded by their own start/stop timeouts
pytestmark = [
    pytest.mark.timeout(20, func_only=True),
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

NS = "proto"
WATCHED = "proto://watched"  # as the backend names it
WATCHED_EXPOSED = "proto://proto/watched"  # as the router exposes it
TEMPLATE_EXPOSED = "proto://proto/items/{id}"
QUIET = 0.4  # how long to wait for a notification that must NOT arrive
STEP = 15.0  # bound on a whole client conversation
WAIT = 5.0  # bound on waiting for one expected message


# ------------------------------------------------------------------------------- clients


@dataclass
class Probe:
    """A client identity: answers server-to-client requests with its own id, records the rest."""

    ident: str
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)  # prompt texts this client was asked
    elicited: list[str] = field(default_factory=list)
    roots_asked: int = 0
    sample_delay: float = 0.0

    @property
    def answer(self) -> str:
        return f"answer-from-{self.ident}"

    @property
    def elicit_answer(self) -> str:
        return f"elicited-by-{self.ident}"

    @property
    def root(self) -> str:
        return f"file:///roots/{self.ident}"

    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content if params.messages else None
        self.sampled.append(getattr(content, "text", str(content)))
        if self.sample_delay:
            await anyio.sleep(self.sample_delay)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.answer),
            model=f"model-{self.ident}",
        )

    async def on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicited.append(getattr(params, "message", ""))
        return types.ElicitResult(action="accept", content={"value": self.elicit_answer})

    async def on_roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri=self.root, name=self.ident)])

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    async def on_message(self, message: Any) -> None:
        self.messages.append(message)

    def client(self, url: str, mode: str = "legacy") -> Client:
        return Client(
            url,
            mode=mode,
            sampling_callback=self.on_sampling,
            elicitation_callback=self.on_elicitation,
            list_roots_callback=self.on_roots,
            logging_callback=self.on_log,
            message_handler=self.on_message,
            cache=None,
        )

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    def log_texts(self) -> list[str]:
        return [_log_text(p.data) for p in self.logs]


def _log_text(data: Any) -> str:
    if isinstance(data, dict) and "msg" in data:
        return str(data["msg"])
    return str(data)


@contextlib.asynccontextmanager
async def connected(url: str, *probes: Probe, mode: str = "legacy") -> AsyncIterator[list[Client]]:
    """Connect one client per probe, all at the same time."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(p.client(url, mode)) for p in probes]
            yield clients
    except BaseExceptionGroup as group:  # the SDK's task groups wrap a failed assertion
        leaf = _sole(group)
        if leaf is None:
            raise
        raise leaf from None


def _sole(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The single leaf exception of a (nested) group, if there is exactly one."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def outcome(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    """(is_error, text) of a call: a JSON-RPC error counts as an error with its message."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as exc:
        return True, exc.error.message
    return bool(result.is_error), text_of(result)


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def proto_http_url(start_server: Callable[..., str]) -> str:
    """Backend ``proto`` over streamable HTTP."""
    return start_server("protocol", "http")


@pytest.fixture(scope="module", params=["http", "stdio"])
def backend(request: pytest.FixtureRequest) -> str:
    """How the router reaches backend ``proto``."""
    return str(request.param)


@pytest.fixture(scope="module")
def router_url(
    backend: str,
    request: pytest.FixtureRequest,
    module_tmp: Path,
    start_router: Callable[..., RouterProcess],
) -> str:
    """The router's /mcp URL, with ``proto`` behind it over ``backend``."""
    if backend == "http":
        entry: dict[str, Any] = {"name": NS, "url": request.getfixturevalue("proto_http_url")}
    else:
        entry = {
            "name": NS,
            "command": PYTHON,
            "args": [str(SERVERS / "protocol.py"), "--transport", "stdio"],
        }
    # Its tools ask with server-to-client requests only (FastMCP's imperative API), which a
    # 2026-07-28 connection cannot carry: spoken to in that era it would fail for 2026-07-28
    # clients as it does directly. `era: legacy` has the router translate for them (rounds).
    entry["era"] = "legacy"
    config = write_config(module_tmp / f"proto-{backend}.yaml", [entry])
    return start_router(config).url


# ------------------------------------------------------------------------------- progress


async def test_progress_reaches_only_its_caller(router_url: str) -> None:
    """4 concurrent callers: each gets exactly its own 5 progress notifications."""
    probes = [Probe(f"p{i}") for i in range(4)]
    received: dict[str, list[str | None]] = {p.ident: [] for p in probes}
    results: dict[str, str] = {}
    with anyio.fail_after(STEP):
        async with connected(router_url, *probes) as clients:

            async def run(probe: Probe, client: Client) -> None:
                async def on_progress(
                    progress: float, total: float | None, msg: str | None
                ) -> None:
                    received[probe.ident].append(msg)

                result = await client.call_tool(
                    f"{NS}_progress",
                    {"tag": probe.ident, "steps": 5, "delay": 0.05},
                    progress_callback=on_progress,
                )
                results[probe.ident] = text_of(result)

            async with anyio.create_task_group() as tg:
                for probe, client in zip(probes, clients, strict=True):
                    tg.start_soon(run, probe, client)
            await anyio.sleep(QUIET)  # let any stray notification land
    for probe in probes:
        tag = probe.ident
        assert results[tag] == f"{tag} done"
        assert sorted(m or "" for m in received[tag]) == [f"{tag}:{i}" for i in range(1, 6)], (
            f"client {tag} got progress {received[tag]}"
        )
        stray = [
            n.params.message
            for n in probe.of_type(types.ProgressNotification)
            if not (n.params.message or "").startswith(f"{tag}:")
        ]
        assert not stray, f"client {tag} received other clients' progress: {stray}"


# ------------------------------------------------------------------------------- sampling


async def test_sampling_single_call(router_url: str) -> None:
    """One call: the backend's sampling request reaches the caller; its answer is the result."""
    probe, idle = Probe("solo"), Probe("idle")
    with anyio.fail_after(STEP):
        async with connected(router_url, probe, idle) as (client, _):
            failed, text = await outcome(client, f"{NS}_ask_sample", {"tag": "solo-q"})
    assert not failed, text
    assert text == probe.answer
    assert probe.sampled == ["solo-q"]
    assert idle.sampled == []


async def test_sampling_concurrent_callers_get_their_own_answers(
    router_url: str, backend: str
) -> None:
    """4 concurrent callers, each answering with its own id.

    Over HTTP every call must get its own client's answer. Over stdio the router cannot tell
    which call a backend request belongs to when several are in flight: each call either gets
    its own answer or the router's clear "cannot relay ... session_mode: per_client" error.
    Never, on any transport, another client's answer.
    """
    probes = [Probe(f"s{i}", sample_delay=0.2) for i in range(4)]
    outcomes: dict[str, tuple[bool, str]] = {}
    with anyio.fail_after(STEP):
        async with connected(router_url, *probes) as clients:

            async def run(probe: Probe, client: Client) -> None:
                outcomes[probe.ident] = await outcome(
                    client, f"{NS}_ask_sample", {"tag": f"q-{probe.ident}"}
                )

            async with anyio.create_task_group() as tg:
                for probe, client in zip(probes, clients, strict=True):
                    tg.start_soon(run, probe, client)
    answers = {p.answer for p in probes}
    for probe in probes:
        failed, text = outcomes[probe.ident]
        foreign = [a for a in answers - {probe.answer} if a in text]
        assert not foreign, f"client {probe.ident} got another client's answer: {text}"
        assert set(probe.sampled) <= {f"q-{probe.ident}"}, (
            f"client {probe.ident} was asked to sample for another call: {probe.sampled}"
        )
        if backend == "http" or not failed:
            assert not failed, f"client {probe.ident}: {text}"
            assert text == probe.answer
            assert probe.sampled == [f"q-{probe.ident}"]
        else:
            assert "cannot relay" in text and "per_client" in text, (
                f"client {probe.ident}: unclear error: {text}"
            )


# ------------------------------------------------------------------------------- elicitation, roots


async def test_elicitation_answer_comes_back(router_url: str) -> None:
    probe, idle = Probe("el"), Probe("idle")
    with anyio.fail_after(STEP):
        async with connected(router_url, probe, idle) as (client, _):
            failed, text = await outcome(client, f"{NS}_ask_elicit", {"tag": "color"})
    assert not failed, text
    assert text == probe.elicit_answer
    assert probe.elicited == ["value for color?"]
    assert idle.elicited == []


async def test_roots_answer_comes_back(router_url: str) -> None:
    probe, idle = Probe("ro"), Probe("idle")
    with anyio.fail_after(STEP):
        async with connected(router_url, probe, idle) as (client, _):
            failed, text = await outcome(client, f"{NS}_ask_roots", {})
    assert not failed, text
    assert text == probe.root
    assert probe.roots_asked == 1
    assert idle.roots_asked == 0


# ------------------------------------------------------------------------------- logging


async def test_logging_reaches_caller_only_and_respects_level(router_url: str) -> None:
    """setLevel info: an info message reaches the caller only (an idle client that asked for
    debug gets nothing); a debug message is dropped for the caller."""
    caller, idle = Probe("caller"), Probe("idle")
    tag = uuid.uuid4().hex[:8]
    with anyio.fail_after(STEP):
        async with connected(router_url, caller, idle) as (client, idle_client):
            await client.set_logging_level("info")
            await idle_client.set_logging_level("debug")

            failed, text = await outcome(
                client, f"{NS}_log", {"tag": f"{tag}-info", "level": "info"}
            )
            assert not failed, text
            await wait_until_async(
                lambda: f"{tag}-info" in caller.log_texts(), WAIT, "the caller gets its info log"
            )

            failed, text = await outcome(
                client, f"{NS}_log", {"tag": f"{tag}-debug", "level": "debug"}
            )
            assert not failed, text
            # a later message proves the earlier one had its chance to arrive
            failed, text = await outcome(
                client, f"{NS}_log", {"tag": f"{tag}-warn", "level": "warning"}
            )
            assert not failed, text
            await wait_until_async(
                lambda: f"{tag}-warn" in caller.log_texts(), WAIT, "the caller gets its warning"
            )
            await anyio.sleep(QUIET)
    caller_logs = [t for t in caller.log_texts() if t.startswith(tag)]
    assert caller_logs == [f"{tag}-info", f"{tag}-warn"], (
        f"caller (level info) got {caller_logs}; debug must be dropped"
    )
    leaked = [t for t in idle.log_texts() if t.startswith(tag)]
    assert not leaked, f"an idle client received the caller's log messages: {leaked}"


# ------------------------------------------------------------------------------- completions


async def test_completions_pass_through(router_url: str) -> None:
    with anyio.fail_after(STEP):
        async with connected(router_url, Probe("c")) as (client,):
            assert client.server_capabilities.completions is not None
            templates = await client.list_resource_templates()
            assert TEMPLATE_EXPOSED in [t.uri_template for t in templates.resource_templates]
            prompt = await client.complete(
                types.PromptReference(type="ref/prompt", name=f"{NS}_greet"),
                {"name": "name", "value": "al"},
            )
            template = await client.complete(
                types.ResourceTemplateReference(type="ref/resource", uri=TEMPLATE_EXPOSED),
                {"name": "id", "value": "1"},
            )
    assert prompt.completion.values == ["alice", "albert"]
    assert template.completion.values == ["100", "101"]


# ------------------------------------------------------------------------------- subscriptions


def _updated(probe: Probe) -> list[str]:
    return [n.params.uri for n in probe.of_type(types.ResourceUpdatedNotification)]


async def test_subscription_updates_reach_subscribers_only(router_url: str) -> None:
    subscriber, other = Probe("sub"), Probe("other")
    with anyio.fail_after(STEP):
        async with connected(router_url, subscriber, other) as (client, other_client):
            assert client.server_capabilities.resources is not None
            assert client.server_capabilities.resources.subscribe
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource(WATCHED_EXPOSED)

            failed, text = await outcome(other_client, f"{NS}_touch", {"uri": WATCHED})
            assert not failed, text
            await wait_until_async(
                lambda: _updated(subscriber), WAIT, f"resources/updated (backend said: {text})"
            )
            await anyio.sleep(QUIET)
            assert _updated(subscriber) == [WATCHED_EXPOSED]
            assert _updated(other) == [], "a client that did not subscribe was notified"

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.unsubscribe_resource(WATCHED_EXPOSED)
            failed, text = await outcome(other_client, f"{NS}_touch", {"uri": WATCHED})
            assert not failed, text
            await anyio.sleep(QUIET)
    assert _updated(subscriber) == [WATCHED_EXPOSED], "notified after unsubscribing"
    assert _updated(other) == []


# ------------------------------------------------------------------------------- list_changed


async def test_tool_added_at_runtime_is_announced_and_callable(router_url: str) -> None:
    """The backend adds a tool: every connected client (not only the caller) hears of it."""
    probe, bystander = Probe("lc"), Probe("bystander")
    name = f"dyn_{uuid.uuid4().hex[:8]}"
    exposed = f"{NS}_{name}"

    def announced(p: Probe) -> bool:
        return bool(p.of_type(types.ToolListChangedNotification))

    with anyio.fail_after(STEP):
        async with connected(router_url, probe, bystander) as (client, other):
            before = await client.list_tools()
            assert exposed not in [t.name for t in before.tools]
            await other.list_tools()  # the bystander has talked to the router, then idles
            failed, text = await outcome(client, f"{NS}_add_tool", {"name": name})
            assert not failed, text
            await wait_until_async(
                lambda: announced(probe), WAIT, "tools/list_changed reaches the caller"
            )
            await wait_until_async(
                lambda: announced(bystander), WAIT, "tools/list_changed reaches the other client"
            )
            listed = await client.list_tools()
            assert exposed in [t.name for t in listed.tools], (
                "the tool was announced but is not listed right after the announcement"
            )
            failed, text = await outcome(client, exposed, {})
    assert not failed, text
    assert text == f"{name} ok"


# ------------------------------------------------------------------------------- cancellation


async def test_cancellation_reaches_the_backend(router_url: str, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{uuid.uuid4().hex[:6]}"
    with anyio.fail_after(STEP):
        async with connected(router_url, Probe("cx")) as (client,):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await client.call_tool(f"{NS}_wait_cancel", {"marker": str(marker)})

                tg.start_soon(call)
                await wait_until_async(marker.exists, WAIT, "the call reaches the backend")
                tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled
            await wait_until_async(
                lambda: marker.read_text() == "cancelled", 5.0, "the backend sees the cancellation"
            )
            # the front session still works after a cancelled call
            failed, text = await outcome(client, f"{NS}_progress", {"tag": "after", "steps": 1})
    assert not failed and text == "after done", text


# ------------------------------------------------------------------------------- modern era


async def test_modern_client_answers_backend_sampling_through_an_input_round(
    router_url: str,
) -> None:
    """A 2026-07-28 client gets the legacy backend's mid-call sampling request as an
    InputRequiredResult round (the SDK client answers it with its callback and retries), and
    its answer reaches the backend."""
    probe = Probe("modern")
    with anyio.fail_after(STEP):
        async with connected(router_url, probe, mode="2026-07-28") as (client,):
            assert client.protocol_version == "2026-07-28"
            failed, text = await outcome(client, f"{NS}_ask_sample", {"tag": "m"})
    assert not failed, text
    assert probe.answer in text
