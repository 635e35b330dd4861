"""``session_mode: per_client``: each client gets its own backend session (here: process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from support import in_process_router, router_client, wait_until_async, write_config
from test_faults import call, process_alive, stdio_backend

pytestmark = pytest.mark.timeout(60)


async def test_per_client_mode_gives_each_client_its_own_backend_process(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "per_client.yaml",
        [stdio_backend("solo", session_mode="per_client")],
    )
    async with in_process_router(config) as router:
        async with router_client(router) as a, router_client(router) as b:
            first_a = await call(a, "solo_work", x=1)
            first_b = await call(b, "solo_work", x=2)
            again_a = await call(a, "solo_work", x=3)
            assert first_a.ok and first_b.ok and again_a.ok, (first_a.text, first_b.text)
            pid_a, pid_b = first_a.data["pid"], first_b.data["pid"]
            assert pid_a != pid_b  # two clients, two backend processes
            assert again_a.data["pid"] == pid_a  # a client keeps its own session

        # The clients left: their sessions (and processes) are closed.
        async def both_stopped() -> bool:
            return not process_alive(pid_a) and not process_alive(pid_b)

        await wait_until_async(
            both_stopped,
            15,
            "per-client backend processes to stop after their clients left",
        )


async def test_shared_mode_serves_every_client_from_one_backend_process(tmp_path: Path) -> None:
    config = write_config(tmp_path / "shared.yaml", [stdio_backend("solo")])
    async with (
        in_process_router(config) as router,
        router_client(router) as a,
        router_client(router) as b,
    ):
        first_a = await call(a, "solo_work", x=1)
        first_b = await call(b, "solo_work", x=2)
        assert first_a.ok and first_b.ok
        assert first_a.data["pid"] == first_b.data["pid"]


async def test_per_client_sessions_count_as_load_on_their_backend(tmp_path: Path) -> None:
    """Calls on clients' own sessions are the backend's load: ``max_in_flight`` holds across
    them and ``least_in_flight`` sees them (the backend reports them as in flight)."""
    config = write_config(
        tmp_path / "per_client_cap.yaml",
        [stdio_backend("solo", session_mode="per_client", max_in_flight=1)],
    )
    async with in_process_router(config) as router:
        backend = router.manager.backends["solo"]
        async with router_client(router) as a, router_client(router) as b:
            assert (await call(a, "solo_work", x=1)).ok  # open both sessions first
            assert (await call(b, "solo_work", x=2)).ok
            outcomes: list[Any] = []
            seen_in_flight: list[int] = []

            async def slow() -> None:
                outcomes.append(await call(a, "solo_slow", seconds=1.5))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await wait_until_async(
                    lambda: _true(backend.in_flight == 1), 10, "the slow call to be in flight"
                )
                seen_in_flight.append(backend.in_flight)
                capped = await call(b, "solo_work", x=3)
            assert seen_in_flight == [1]
            assert not capped.ok
            assert "max_in_flight=1" in capped.text and "backend 'solo'" in capped.text
            assert outcomes and outcomes[0].ok
            assert backend.in_flight == 0


async def _true(value: bool) -> bool:
    return value
