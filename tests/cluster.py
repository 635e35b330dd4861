"""Process helpers for replica-set tests: a real Redis, a real HAProxy, N router replicas.

- :func:`redis_server` — Debian ``redis-server`` on a free loopback port, no persistence;
  yields its ``redis://`` URL (a ``password`` turns on ``requirepass``);
- :func:`haproxy` — HAProxy in ``mode http``, ``balance roundrobin`` re-balancing every
  request (``option httpclose``, ``http-reuse never``), ``option redispatch`` +
  ``retries 2`` for a dead server, requests logged to ``haproxy-PORT.log``; every response
  names the replica that served it in ``X-Served-By`` (the server name, which the replica
  helpers set to MCP_REPLICA_ID);
- :func:`replica_set` — N routers over HTTP sharing one config and one state URL.

Each helper kills what it started, process group included.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from support import RouterProcess, child_env, free_port, run_router, spawn, wait_until

REDIS_SERVER = shutil.which("redis-server")
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
STATE_KEY = "replica-set-shared-state-key-for-tests-0123456789"


def redis_ping(port: int, password: str | None = None) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:``port`` (raw RESP, no client library)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(
    port: int | None = None, *, password: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """A throw-away redis-server; yields (URL, process). Same ``port`` again restarts it."""
    assert REDIS_SERVER, "redis-server is not installed (Debian package redis-server)"
    port = port or free_port()
    cmd = [
        REDIS_SERVER,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    if password:
        cmd += ["--requirepass", password]
    with spawn(cmd) as proc:
        wait_until(lambda: redis_ping(port, password), 10, "redis-server answers PING")
        auth = f":{password}@" if password else ""
        yield f"redis://{auth}127.0.0.1:{port}/0", proc


def haproxy_config(port: int, servers: Mapping[str, int]) -> str:
    """An HAProxy config: round robin per request over ``servers`` (name -> port)."""
    lines = [
        "global",
        "    maxconn 512",
        "    log stderr format raw local0",
        "defaults",
        "    log global",
        "    option httplog",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    option redispatch",
        "    retries 2",
        # One request per client connection, as in deploy/haproxy.cfg: on a reused
        # connection HAProxy answers a replica's death with a silent close (haproxy#2375,
        # for the client to retry), which the mcp SDK Client does not survive.
        "    option httpclose",
        "    http-reuse never",
        "frontend front",
        f"    bind 127.0.0.1:{port}",
        "    default_backend routers",
        "backend routers",
        "    balance roundrobin",
        "    http-response set-header X-Served-By %s",
    ]
    lines += [f"    server {name} 127.0.0.1:{p}" for name, p in servers.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def haproxy(servers: Mapping[str, int], workdir: Path) -> Iterator[str]:
    """HAProxy in front of ``servers``; yields its base URL (``http://127.0.0.1:N``)."""
    assert HAPROXY, "haproxy is not installed (Debian package haproxy)"
    port = free_port()
    cfg = workdir / f"haproxy-{port}.cfg"
    cfg.write_text(haproxy_config(port, servers))
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with spawn(
        [HAPROXY, "-db", "-f", str(cfg)], stderr=(workdir / f"haproxy-{port}.log").open("wb")
    ):
        wait_until(lambda: _listening(port), 10, "haproxy listens")
        yield f"http://127.0.0.1:{port}"


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def replica_env(replica_id: str, state_url: str | None, **extra: str) -> dict[str, str]:
    """A replica's environment: the shared state URL and key, its own MCP_REPLICA_ID."""
    env = child_env(MCP_REPLICA_ID=replica_id, MCP_STATE_KEY=STATE_KEY, **extra)
    if state_url is not None:
        env["MCP_STATE_URL"] = state_url
    return env


@contextlib.contextmanager
def replica(
    config: Path, replica_id: str, state_url: str | None, log: Path, **extra: str
) -> Iterator[RouterProcess]:
    """One router replica over HTTP (ready once /ready says 200)."""
    with run_router(
        config, log, env=replica_env(replica_id, state_url, **extra), timeout=90
    ) as router:
        yield router


@contextlib.contextmanager
def replica_set(
    config: Path, state_url: str, workdir: Path, count: int = 3, **extra: str
) -> Iterator[dict[str, RouterProcess]]:
    """``count`` replicas (``r0``, ``r1``...) sharing ``config`` and ``state_url``."""
    with contextlib.ExitStack() as stack:
        routers = {
            f"r{i}": stack.enter_context(
                replica(config, f"r{i}", state_url, workdir / f"r{i}.log", **extra)
            )
            for i in range(count)
        }
        yield routers


def port_of(router: RouterProcess) -> int:
    """The port a router process listens on."""
    return int(router.base.rsplit(":", 1)[1])
