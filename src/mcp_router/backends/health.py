"""Active health checks: an MCP ping (plus an optional HTTP GET) per backend, on a timer.

Each backend with ``health_check.enabled`` gets a probe every ``interval_seconds``: an MCP
``ping`` on its live session with ``timeout_seconds``, then, when ``health_check.endpoint`` is
set, an HTTP GET of it (an absolute URL, or a path resolved against the backend's URL; any
status below 400 is healthy). The outcome is stored in ``Backend.last_probe``.

How probes feed the circuit breaker (DESIGN.md, "Health and circuit breakers"):

* **No session.** A backend whose session is gone and whose reconnection has failed (it is in
  backoff), or has hung past its connect timeout, has its breaker forced OPEN with the reason.
  Each such probe restarts the breaker's timeout, so the circuit cannot go HALF_OPEN (and
  waste trial calls) before a session exists again. A session that is being re-opened (a
  backend restart, a stdio child respawning) is left alone: forcing the circuit open then
  would keep a backend that is back within a second out of service for a whole breaker
  timeout. Calls that fail meanwhile still count, as usual.
* **CLOSED.** A failed probe is recorded as one failure, exactly like a failed call, so
  ``failure_threshold`` consecutive failures (probes and calls together) open the circuit. A
  successful probe records nothing: a ping proves the session is alive, not that calls work,
  and it must not reset the failure count of calls that time out on a backend whose tools
  hang while its pings still answer.
* **OPEN.** Probes run (the management view shows them) but record nothing.
* **HALF_OPEN.** Probes take trial slots only to undo what probes did, and only when idle: when
  the circuit was last opened by the health checker (no session, failed probes) *and* no real
  call is running on the backend. Then a successful probe counts as a successful trial, so a
  backend that came back is closed again after ``half_open_attempts`` probes even when no
  client is calling it; a failed one re-opens the circuit. When real calls opened the circuit
  (timeouts, invalid answers), a ping is no evidence that they work again, so only real trial
  calls decide. And while real calls are running, the trial slots are theirs: probes never
  hold a slot a real call could have had, so they cannot starve real trials.

The checker runs for the life of the server (started in the router's supervisor task group)
and stops cleanly with `stop()`. Probes never allocate sessions or clients: the ping uses the
backend's persistent session and every GET shares one HTTP client.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable

import anyio
import httpx2
from mcp.shared.exceptions import MCPError

from mcp_router.backends.backend import Backend, BackendState, ProbeResult
from mcp_router.backends.transports import router_error_kind
from mcp_router.errors import BackendError
from mcp_router.resilience.circuit_breaker import CircuitState

__all__ = ["HealthChecker", "resolve_endpoint"]

logger = logging.getLogger("mcp_router.health")

# Bound on a whole probe beyond its configured timeouts: a ping's clock starts only once the
# request is written, and a backend that stopped reading its stdin never lets the write finish.
_GUARD_MARGIN = 1.0
# Scheduling tick bounds: a quarter of the shortest interval, within these.
_MIN_TICK = 0.02
_MAX_TICK = 1.0


def resolve_endpoint(backend: Backend) -> str | None:
    """The absolute URL of the backend's health endpoint, or None when there is none."""
    endpoint = backend.config.health_check.endpoint
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    if backend.config.url is None:
        return None  # a path needs a base URL; a stdio backend has none
    return str(httpx2.URL(backend.config.url).join(endpoint))


class HealthChecker:
    """Probes every backend with health checks enabled, until stopped.

    ``backends`` returns the current backends; it is read again on every scheduling tick, so
    backends added or replaced at runtime (config reload) are picked up and removed ones are
    forgotten.
    """

    def __init__(self, backends: Callable[[], Iterable[Backend]]) -> None:
        self._source = backends
        self._scope: anyio.CancelScope | None = None
        self._stopped = False
        self._http: httpx2.AsyncClient | None = None
        self._due: dict[Backend, float] = {}  # next probe time (anyio clock)
        self._running: set[Backend] = set()
        # breaker.opened_at of the last opening the checker itself caused, per backend.
        self._opened_by_probe: dict[Backend, float | None] = {}
        self._gone_since: dict[Backend, float] = {}

    async def run(self) -> None:
        """Probe until `stop()` (or cancellation)."""
        if self._stopped:
            return
        with anyio.CancelScope() as scope:
            self._scope = scope
            try:
                async with anyio.create_task_group() as tg:
                    while True:  # noqa: ASYNC110 - a timer that starts due probes, not a poll
                        await anyio.sleep(self._schedule(tg))
            finally:
                self._scope = None
                if self._http is not None:
                    with anyio.CancelScope(shield=True):
                        await self._http.aclose()
                    self._http = None

    def stop(self) -> None:
        """Stop probing (safe before, during or after `run()`)."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    def _schedule(self, tg: anyio.abc.TaskGroup) -> float:
        """Start the probes that are due; return how long to sleep until the next tick."""
        now = anyio.current_time()
        current = [b for b in self._source() if b.config.health_check.enabled]
        shortest = _MAX_TICK * 4
        for backend in current:
            interval = backend.config.health_check.interval_seconds
            shortest = min(shortest, interval)
            due = self._due.get(backend)
            if due is None:
                self._first_seen(backend)
                # Spread the first probes so many backends are not pinged in the same instant.
                self._due[backend] = now + interval * random.uniform(0.1, 0.5)
            elif now >= due and backend not in self._running:
                self._running.add(backend)
                tg.start_soon(self._probe_and_reschedule, backend)
        if len(self._due) > len(current):
            keep = set(current)
            for table in (self._due, self._opened_by_probe, self._gone_since):
                for gone in [b for b in table if b not in keep]:
                    del table[gone]
        return min(_MAX_TICK, max(_MIN_TICK, shortest / 4))

    def _first_seen(self, backend: Backend) -> None:
        hc = backend.config.health_check
        if hc.endpoint and resolve_endpoint(backend) is None:
            logger.warning(
                "backend '%s': health_check.endpoint %r is a path but the backend has no URL "
                "to resolve it against; only MCP ping is used",
                backend.name,
                hc.endpoint,
            )

    async def _probe_and_reschedule(self, backend: Backend) -> None:
        started = anyio.current_time()
        try:
            await self.probe(backend)
        except Exception:  # a bug in one probe must not end health checking
            logger.exception("health probe of backend '%s' failed unexpectedly", backend.name)
        finally:
            self._running.discard(backend)
            if backend in self._due:
                self._due[backend] = started + backend.config.health_check.interval_seconds

    # ------------------------------------------------------------------ one probe

    async def probe(self, backend: Backend) -> ProbeResult:
        """Probe one backend now, record the result and feed its breaker."""
        hc = backend.config.health_check
        if backend.state is BackendState.STOPPED:
            return self._record(backend, ProbeResult(False, None, time.time(), "stopped"))
        if not backend.has_session:
            return self._no_session(backend, hc.interval_seconds)
        self._gone_since.pop(backend, None)

        permit = None
        breaker = backend.breaker
        state = breaker.state
        if state is CircuitState.CLOSED:
            permit = breaker.acquire()
        elif state is CircuitState.HALF_OPEN and self._may_trial(backend):
            permit = breaker.acquire()  # None when the trial slots are taken

        error: str | None = None
        latency: float | None = None
        timeout = hc.timeout_seconds
        with anyio.move_on_after(2 * timeout + _GUARD_MARGIN) as guard:
            start = time.perf_counter()
            try:
                try:
                    latency = await backend.ping(timeout)
                except MCPError as exc:
                    if router_error_kind(exc.error) is not None:
                        raise
                    # It answered, if only with an error (a server without ping): it is alive.
                    latency = (time.perf_counter() - start) * 1000
                url = resolve_endpoint(backend)
                if url is not None:
                    error = await self._get(backend, url, timeout)
            except BackendError as exc:
                error = exc.reason
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        if guard.cancelled_caught:
            error = f"no answer within {timeout:g}s (health probe)"

        result = ProbeResult(error is None, None if error else latency, time.time(), error)
        self._record(backend, result)
        if permit is None:
            return result
        if error is None:
            if permit.is_trial:
                permit.success()
            else:
                permit.release()  # a ping does not prove that calls work: record nothing
        else:
            before = breaker.state
            permit.failure(f"health probe failed: {error}")
            if before is not CircuitState.OPEN and breaker.state is CircuitState.OPEN:
                self._opened_by_probe[backend] = breaker.opened_at
                logger.warning(
                    "backend '%s': circuit opened by failing health probes: %s",
                    backend.name,
                    error,
                )
        return result

    def _no_session(self, backend: Backend, interval: float) -> ProbeResult:
        reason = backend.unavailable_reason()
        result = self._record(backend, ProbeResult(False, None, time.time(), reason))
        now = anyio.current_time()
        since = self._gone_since.setdefault(backend, now)
        if backend.in_backoff or now - since >= interval + backend.config.connect_timeout_seconds:
            # Down for real (a reconnection failed, or one has hung past its connect timeout):
            # keep calls away until a session exists again, and say why.
            backend.breaker.force_open(f"no session: {reason}")
            self._opened_by_probe[backend] = backend.breaker.opened_at
        return result

    def _may_trial(self, backend: Backend) -> bool:
        """Whether a probe may use a HALF_OPEN trial slot (see the module docstring)."""
        opened_by_probe = self._opened_by_probe.get(backend)
        return (
            opened_by_probe is not None
            and opened_by_probe == backend.breaker.opened_at
            and backend.in_flight == 0
        )

    async def _get(self, backend: Backend, url: str, timeout: float) -> str | None:
        if self._http is None:
            self._http = httpx2.AsyncClient()  # one for every probe, made on first need
        try:
            response = await self._http.get(
                url, headers=dict(backend.config.headers), timeout=timeout
            )
        except httpx2.TimeoutException:
            return f"GET {url}: no answer within {timeout:g}s"
        except httpx2.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}: {exc}"
        if response.status_code >= 400:
            return f"GET {url}: HTTP {response.status_code}"
        return None

    @staticmethod
    def _record(backend: Backend, result: ProbeResult) -> ProbeResult:
        previous = backend.last_probe
        backend.last_probe = result
        if previous is not None and previous.ok != result.ok:
            if result.ok:
                logger.info("backend '%s': health probe ok again", backend.name)
            else:
                logger.warning("backend '%s': health probe failed: %s", backend.name, result.error)
        return result
