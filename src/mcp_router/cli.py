"""Command-line entry points: ``mcp-router`` (run, check) and ``mcp-server`` (the demo server)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

from mcp_router import secrets
from mcp_router.config import ConfigError, load_effective_config
from mcp_router.config.models import RouterConfig
from mcp_router.logs import configure_logging
from mcp_router.settings import RouterSettings, load_settings

logger = logging.getLogger("mcp_router")

EXIT_CONFIG = 2
# `check` waits this long for a backend by default: a first `npx -y` start downloads the
# package (often longer than the 10 s connect timeout that suits a running router).
CHECK_TIMEOUT = 120.0


def _router_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-router",
        description="One MCP endpoint in front of many MCP servers.",
    )
    parser.add_argument("--config", help="backends YAML/JSON (env MCP_BACKENDS_CONFIG)")
    parser.add_argument(
        "--transport", choices=["stdio", "http", "sse"], help="front transport (env MCP_TRANSPORT)"
    )
    parser.add_argument("--host", help="bind address for http/sse (env MCP_HOST)")
    parser.add_argument("--port", type=int, help="port for http/sse (env MCP_PORT)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (env MCP_LOG_LEVEL)")
    parser.add_argument(
        "--state-url", help="redis://... shared by a replica set (env MCP_STATE_URL)"
    )
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser(
        "check", help="validate the config, connect to every backend, print the catalog"
    )
    check.add_argument("--config", dest="check_config", help="backends YAML/JSON")
    check.add_argument("--json", action="store_true", help="print the catalog as JSON")
    check.add_argument(
        "--timeout",
        type=float,
        default=CHECK_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for each backend to connect (default {CHECK_TIMEOUT:g}: enough "
        "for a first `npx -y` / `uvx` start that downloads its package; a backend's longer "
        "connect_timeout_seconds is kept)",
    )
    imp = sub.add_parser(
        "import",
        help="convert a Claude Desktop / Claude Code / Cursor mcpServers JSON file to YAML",
        description="Convert an mcpServers JSON file (claude_desktop_config.json, .mcp.json, "
        "Cursor's mcp.json) into an equivalent backends.yaml. Values are copied literally; "
        "env variables and headers that look secret are reported on stderr (or, with "
        "--env-refs, written as ${VAR} references).",
    )
    imp.add_argument("path", help="the JSON file to import")
    imp.add_argument("-o", "--output", help="write the YAML here instead of stdout")
    imp.add_argument(
        "--env-refs",
        action="store_true",
        help="write secret-looking env/header values as ${VAR} references",
    )
    schema = sub.add_parser(
        "schema", help="print the JSON Schema (draft 2020-12) of the YAML config"
    )
    schema.add_argument("-o", "--output", help="write the schema here instead of stdout")
    pins = sub.add_parser(
        "pins",
        help="pinned tool/prompt/template definitions: list pending changes, approve them",
        description="Backends' definitions are pinned the first time the router sees them "
        "(MCP_PINS_FILE). A later change waits here for approval (routing.pinning).",
    )
    pins_sub = pins.add_subparsers(dest="pins_command", required=True)
    pins_list = pins_sub.add_parser("list", help="show every pending change with a diff")
    pins_list.add_argument("--config", dest="check_config", help="backends YAML/JSON")
    pins_list.add_argument("--json", action="store_true", help="print as JSON")
    pins_approve = pins_sub.add_parser("approve", help="accept pending definitions")
    pins_approve.add_argument("--config", dest="check_config", help="backends YAML/JSON")
    pins_approve.add_argument("names", nargs="*", help="exposed names (or backend:name)")
    pins_approve.add_argument("--all", action="store_true", help="approve every pending change")
    return parser


def _load(args: argparse.Namespace) -> tuple[RouterSettings, RouterConfig]:
    settings = load_settings(
        backends_config=getattr(args, "check_config", None) or args.config,
        transport=args.transport,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        state_url=getattr(args, "state_url", None),
    )
    return settings, load_effective_config(settings)


def router_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``mcp-router``."""
    args = _router_parser().parse_args(argv)
    if args.command == "import":
        raise SystemExit(_import(args.path, args.output, args.env_refs))
    if args.command == "schema":
        raise SystemExit(_schema(args.output))
    try:
        settings, config = _load(args)
    except ConfigError as exc:
        # The config is not loaded, so only what is secret by position (URL userinfo,
        # ?token= values) can be hidden in a problem that quotes a value.
        print(f"mcp-router: invalid configuration\n{secrets.redact(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "check":
        if args.timeout <= 0:
            print("mcp-router check: --timeout must be more than 0 seconds", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG)
        raise SystemExit(anyio.run(_check, config, settings, args.json, args.timeout))
    if args.command == "pins":
        raise SystemExit(_pins(args, settings))
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(_serve, config, settings, backend_options=_loop_options())


def _loop_options() -> dict[str, Any]:
    """uvloop when it is installed: a faster event loop for a process that is all I/O."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


async def _serve(config: RouterConfig, settings: RouterSettings) -> None:
    from mcp_router.gateway.server import build_router

    router = build_router(config, settings)
    logger.info(
        "mcp-router %s: replica %s, config %s, %d backends, front transport %s",
        router.server.version,
        settings.replica_id,
        config.source,
        len(router.manager.backends),
        settings.transport,
    )
    if settings.transport == "stdio":
        await _serve_stdio(router)
        return
    from mcp_router.gateway.http import serve_http

    await serve_http(router)


async def _serve_stdio(router: Any) -> None:
    """The stdio front; SIGTERM/SIGINT drain it, then stop the backends and exit.

    The first signal starts a drain: requests in flight get up to
    ``MCP_SHUTDOWN_GRACE_SECONDS`` to finish and be answered; then every backend (children
    and their process groups) is stopped. A second signal skips what is left of the grace.
    The process exits once the backends are stopped (when stdin is not a pipe, the SDK reads it
    in a thread that a signal cannot interrupt, so the server is not unwound normally).
    """
    from mcp_router.gateway.stdio_front import run_stdio

    lifecycle = router.lifecycle
    grace = router.settings.shutdown_grace_seconds

    async def stop_and_exit() -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await router.stop(force=True)
        logging.shutdown()
        os._exit(0)

    async def drain_and_exit(signum: int) -> None:
        lifecycle.begin_drain()
        logger.info(
            "signal %d: draining %d request(s) in flight, up to %g s (MCP_SHUTDOWN_GRACE_SECONDS)",
            signum,
            lifecycle.busy,
            grace,
        )
        if await lifecycle.wait_idle(grace):
            await anyio.sleep(0.25)  # the last answers are on their way to stdout
            logger.info("drained: stopping the backends and exiting")
        else:
            logger.warning(
                "grace period over with %d request(s) in flight: stopping the backends",
                lifecycle.busy,
            )
        await stop_and_exit()

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                draining = False
                async for signum in signals:
                    if draining:
                        logger.info("signal %d again: stopping now", signum)
                        await stop_and_exit()
                    draining = True
                    tg.start_soon(drain_and_exit, signum)

            tg.start_soon(on_signal)
            # FastMCP's stdio runner, on asyncio pipes instead of a thread per message.
            await run_stdio(router.server)
            tg.cancel_scope.cancel()


def _with_connect_timeout(config: RouterConfig, timeout: float) -> RouterConfig:
    """The config with every backend's connect timeout raised to at least ``timeout``."""
    backends = [
        b.model_copy(update={"connect_timeout_seconds": max(b.connect_timeout_seconds, timeout)})
        for b in config.backends
    ]
    raised = config.model_copy(update={"backends": backends})
    raised.source = config.source
    return raised


def _down_reason(backend: Any, timeout: float) -> str:
    """Why a backend is not connected, with what to do about it."""
    why = backend.last_error
    exit_code = backend.last_exit_code
    if why is None:
        why = f"no answer within {timeout:g}s"
    if exit_code is not None and str(exit_code) not in why:
        why += f" (exit code {exit_code})"
    if exit_code is not None or "exited" in why or "killed" in why:
        return f"{why}; run its command by hand to see why it stops (its stderr is logged above)"
    if "within" in why or "timed out" in why.lower():
        return (
            f"{why}; a first `npx -y` / `uvx` start downloads the package: run "
            f"`mcp-router check --timeout {max(2 * timeout, 300):g}`, and give the backend "
            "`connect_timeout_seconds` long enough for the running router"
        )
    return why


async def _check(
    config: RouterConfig, settings: RouterSettings, as_json: bool, timeout: float = CHECK_TIMEOUT
) -> int:
    from mcp_router.backends.manager import BackendManager
    from mcp_router.backends.transports import TransportLimits
    from mcp_router.gateway.management import backend_summary

    manager = BackendManager(
        _with_connect_timeout(config, timeout), TransportLimits.from_settings(settings)
    )
    secrets.install(manager, config, settings)  # the check's output and logs are redacted too
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        # A little over the connect timeout, so that a first attempt that times out has
        # recorded why before the wait ends.
        await manager.start(tg, startup_timeout=timeout + 2)
        elapsed = time.monotonic() - started
        problems = {
            b.name: _down_reason(b, timeout)
            for b in manager.backends.values()
            if b.state.value != "connected"
        }
        summary: dict[str, Any] = {
            "config": config.source,
            "timeout_seconds": timeout,
            "elapsed_seconds": round(elapsed, 2),
            "backends": [backend_summary(b) for b in manager.backends.values()],
            "problems": problems,
            "tools": [
                {"name": name, "group": t.namespace, "original": t.original_name}
                for name, t in manager.index.tools.items()
            ],
            "prompts": sorted(manager.index.prompts),
            "resources": sorted(manager.index.resources),
            "resource_templates": sorted(manager.index.templates),
        }
        await manager.stop()
        tg.cancel_scope.cancel()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_check(summary, manager)
    if problems:
        print(
            f"\nerror: {len(problems)} backend(s) not reachable: {', '.join(problems)}",
            file=sys.stderr,
        )
        for name, reason in problems.items():
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    return 0


def _pins(args: argparse.Namespace, settings: RouterSettings) -> int:
    from mcp_router.governance.commands import pins_approve, pins_list, pins_store

    store = pins_store(settings)
    try:
        if args.pins_command == "list":
            return pins_list(store, as_json=args.json)
        return pins_approve(store, args.names, approve_all=args.all)
    except (OSError, ValueError) as exc:
        print(f"mcp-router pins: {exc}", file=sys.stderr)
        return 1


def _write_output(text: str, output: str | None) -> int:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"mcp-router: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _import(path: str, output: str | None, env_refs: bool) -> int:
    from mcp_router.importer import import_file

    try:
        result = import_file(path, env_refs=env_refs)
    except ConfigError as exc:
        print(f"mcp-router: cannot import\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    status = _write_output(result.yaml_text, output)
    if status == 0:
        where = output or "stdout"
        print(
            f"imported {len(result.config.backends)} backend(s) from {path} to {where}",
            file=sys.stderr,
        )
    return status


def _schema(output: str | None) -> int:
    from mcp_router.config.schema import config_schema_text

    return _write_output(config_schema_text(), output)


def _print_check(summary: dict[str, Any], manager: Any) -> None:
    print(f"config: {summary['config']}")
    print("backends:")
    for b in summary["backends"]:
        problem = summary["problems"].get(b["name"], "")
        status = "ok" if not problem else f"DOWN ({problem.split('; ')[0]})"
        print(
            f"  {b['name']:<20} {b['transport']:<6} namespace={b['namespace']!r:<12} "
            f"tools={b['tools']:<4} resources={b['resources']:<4} prompts={b['prompts']:<4} "
            f"{status}"
        )
    print("tools:")
    for name, entry in manager.index.tools.items():
        group = manager.groups[entry.group].members
        served_by = [b.name for b in group if b.serves_tool(entry.original_name)]
        print(f"  {name:<40} -> {', '.join(served_by)} ({entry.original_name})")
    for kind in ("prompts", "resources", "resource_templates"):
        if summary[kind]:
            print(f"{kind}:")
            for item in summary[kind]:
                print(f"  {item}")


def server_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``mcp-server`` (the bundled demo MCP server)."""
    from mcp_router.template.server import main

    main(list(argv) if argv is not None else None)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    router_main()
