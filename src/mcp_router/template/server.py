"""The bundled demo MCP server, ``mcp-server``.

A small but complete MCP server built with FastMCP: a handful of tools (plain text, structured
output, progress reporting, tool errors), static resources, a resource template and two prompts.
The router's built-in default config runs it as a stdio backend (``python -m mcp_router.template``)
so that ``mcp-router`` is useful on a fresh machine; it also serves as a test backend.

Logging goes to stderr only: over stdio, stdout carries the protocol.
"""

import argparse
import copy
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.context import Context
from mcp.types import ToolAnnotations
from typing_extensions import TypedDict

from mcp_router import __version__

__all__ = [
    "MAX_SLOW_ECHO_SECONDS",
    "SERVER_NAME",
    "SERVER_VERSION",
    "WordCount",
    "build_parser",
    "create_server",
    "main",
]

SERVER_NAME = "mcp-server"
"""The server name announced in the MCP handshake."""

SERVER_VERSION = __version__
"""The server version announced in the MCP handshake."""

MAX_SLOW_ECHO_SECONDS = 30.0
"""Upper bound for ``slow_echo``'s delay."""

_PROGRESS_STEP_SECONDS = 0.1

_INSTRUCTIONS = (
    "Demo MCP server bundled with mcp-router. Tools: echo, add, word_count, current_time, "
    "slow_echo (reports progress), fail (always returns a tool error). Resources: demo://readme, "
    "demo://config and the template demo://greeting/{name}. Prompts: summarize, code_review."
)

_README = f"""# {SERVER_NAME}

The demo MCP server bundled with **mcp-router** (version {SERVER_VERSION}).

mcp-router runs it as a stdio backend when no configuration is given, so a fresh installation
exposes something useful. It is also a convenient backend for tests and experiments.

## Tools
- `echo(text)` - returns the text unchanged.
- `add(a, b)` - adds two numbers (structured output `{{"result": number}}`).
- `word_count(text)` - counts words, characters and lines (structured output).
- `current_time(timezone="UTC")` - the current time in an IANA timezone, ISO 8601.
- `slow_echo(text, seconds=1.0)` - echoes after a delay, reporting progress every 0.1 s.
- `fail(message)` - always fails with a tool error (`isError: true`).

## Resources
- `demo://readme` - this document.
- `demo://config` - the server's name and version as JSON.
- `demo://greeting/{{name}}` - a greeting for `name`.

## Prompts
- `summarize(text, style="brief")`
- `code_review(code, language="python")`

Run it yourself: `mcp-server` (stdio) or `mcp-server --transport http --port 8000`.
"""

_SUMMARY_STYLES = {
    "brief": "in one or two sentences",
    "detailed": "in a few well-structured paragraphs that keep every important detail",
    "bullets": "as a short bulleted list of the key points",
}

logger = logging.getLogger(__name__)


class WordCount(TypedDict):
    """Result of ``word_count``."""

    words: int
    characters: int
    lines: int


def _resolve_timezone(name: str) -> tzinfo:
    """The tzinfo for an IANA name; ``UTC`` works even without a tz database."""
    if name.strip().upper() in {"UTC", "Z", "ETC/UTC"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ToolError(
            f"Unknown timezone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
            "'America/New_York'."
        ) from exc


def create_server() -> FastMCP:
    """Build a fresh instance of the demo server with all its tools, resources and prompts."""
    mcp = FastMCP(name=SERVER_NAME, version=SERVER_VERSION, instructions=_INSTRUCTIONS)

    @mcp.tool(
        title="Echo",
        output_schema=None,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def echo(text: str) -> str:
        """Return the given text unchanged. Useful to test connectivity and routing.

        Args:
            text: The text to echo back.
        """
        return text

    @mcp.tool(
        title="Add numbers",
        annotations=ToolAnnotations(
            read_only_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def add(a: float, b: float) -> float:
        """Add two numbers and return their sum (structured result: {"result": sum}).

        Args:
            a: The first addend.
            b: The second addend.
        """
        return a + b

    @mcp.tool(
        title="Count words",
        annotations=ToolAnnotations(
            read_only_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def word_count(text: str) -> WordCount:
        """Count the words, characters and lines of a text.

        Words are whitespace-separated tokens; lines are counted as the text's line breaks
        would display them (an empty text has 0 lines).

        Args:
            text: The text to analyse.
        """
        return WordCount(
            words=len(text.split()),
            characters=len(text),
            lines=len(text.splitlines()),
        )

    @mcp.tool(
        title="Current time",
        output_schema=None,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def current_time(timezone: str = "UTC") -> str:
        """Return the current date and time in ISO 8601 format for an IANA timezone.

        Args:
            timezone: An IANA timezone name such as "UTC", "Europe/Paris" or "Asia/Tokyo".
        """
        tz = _resolve_timezone(timezone)
        return datetime.now(tz).isoformat()

    @mcp.tool(
        title="Slow echo",
        output_schema=None,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def slow_echo(text: str, ctx: Context, seconds: float = 1.0) -> str:
        """Return the text after waiting, reporting progress every 0.1 seconds.

        Useful to test progress notifications, timeouts and cancellation.

        Args:
            text: The text to echo back.
            seconds: How long to wait before answering (0 to 30 seconds).
        """
        if not math.isfinite(seconds):
            raise ToolError("seconds must be a finite number")
        duration = min(max(seconds, 0.0), MAX_SLOW_ECHO_SECONDS)
        steps = math.ceil(round(duration / _PROGRESS_STEP_SECONDS, 6))
        start = time.monotonic()
        for step in range(1, steps + 1):
            target = min(step * _PROGRESS_STEP_SECONDS, duration)
            await anyio.sleep(max(0.0, start + target - time.monotonic()))
            await ctx.report_progress(
                progress=step, total=steps, message=f"{target:g}s of {duration:g}s"
            )
        return text

    @mcp.tool(
        title="Always fail",
        output_schema=None,
        annotations=ToolAnnotations(
            read_only_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def fail(message: str) -> None:
        """Always fail with a tool error carrying the given message (an isError result).

        Useful to test how clients and routers handle tool errors.

        Args:
            message: The error message to return.
        """
        raise ToolError(message)

    @mcp.resource(
        "demo://readme",
        name="readme",
        title="About this server",
        description="What this demo server is and what it offers.",
        mime_type="text/markdown",
    )
    async def readme() -> str:
        return _README

    @mcp.resource(
        "demo://config",
        name="config",
        title="Server configuration",
        description="The server's name and version, as JSON.",
        mime_type="application/json",
    )
    async def config() -> str:
        return json.dumps({"name": SERVER_NAME, "version": SERVER_VERSION})

    @mcp.resource(
        "demo://greeting/{name}",
        name="greeting",
        title="Greeting",
        description="A friendly greeting for the given name.",
        mime_type="text/plain",
    )
    async def greeting(name: str) -> str:
        return f"Hello, {name}!"

    @mcp.prompt(title="Summarize text")
    def summarize(text: str, style: str = "brief") -> str:
        """Ask the model to summarize a text.

        Args:
            text: The text to summarize.
            style: "brief" (default), "detailed" or "bullets"; any other value is used as-is.
        """
        how = _SUMMARY_STYLES.get(style.strip().lower(), f"in a {style} style")
        return f"Summarize the following text {how}.\n\n---\n{text}\n---"

    @mcp.prompt(title="Review code")
    def code_review(code: str, language: str = "python") -> str:
        """Ask the model to review a piece of code.

        Args:
            code: The code to review.
            language: The programming language of the code.
        """
        return (
            f"Please review the following {language} code. Point out bugs, security issues, "
            "unclear naming and missing error handling, and suggest concrete improvements.\n\n"
            f"```{language.lower()}\n{code}\n```"
        )

    return mcp


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``mcp-server``."""
    parser = argparse.ArgumentParser(
        prog="mcp-server",
        description="The demo MCP server bundled with mcp-router.",
    )
    parser.add_argument(
        "--transport",
        choices=("stdio", "http", "sse"),
        default="stdio",
        help="transport to serve (default: stdio)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address for http/sse")
    parser.add_argument("--port", type=int, default=8000, help="port for http/sse (default 8000)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log level (logs go to stderr)",
    )
    return parser


def _uvicorn_log_config(level: str) -> dict[str, Any]:
    """Uvicorn's logging config with every handler (access log included) on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config.get("handlers", {}).values():
        handler["stream"] = "ext://sys.stderr"
    for logger_config in config.get("loggers", {}).values():
        logger_config["level"] = level
    return cast(dict[str, Any], config)


def main(argv: list[str] | None = None) -> None:
    """Run the demo server (``mcp-server``); stdio by default, or HTTP/SSE on host:port."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = create_server()
    transport = cast(Literal["stdio", "http", "sse"], args.transport)
    try:
        if transport == "stdio":
            server.run("stdio", show_banner=False, log_level=args.log_level)
        else:
            logger.info("serving %s on %s:%s", transport, args.host, args.port)
            server.run(
                transport,
                show_banner=False,
                host=args.host,
                port=args.port,
                log_level=args.log_level,
                uvicorn_config={"log_config": _uvicorn_log_config(args.log_level)},
            )
    except KeyboardInterrupt:
        pass
