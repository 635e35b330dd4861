"""A raw stdio MCP server (stdlib only: starts in milliseconds) that misbehaves on request.

``python tests/servers/raw_stdio.py`` speaks newline-delimited JSON-RPC by hand, so it can
send what no framework would. Tools (all take ``bytes``, an int):

- ``echo(text)``: answers at once (the "other backend" whose latency is measured);
- ``big_result(bytes)``: a valid result whose text is ``bytes`` long, on one line;
- ``stdout_flood(bytes)``: ``bytes`` of garbage on stdout with no newline, then nothing;
- ``stderr_flood(bytes)``: ``bytes`` on stderr with no newline, then a normal answer;
- ``stderr_lines(count)``: ``count`` short stderr lines, then a normal answer;
- ``environment()``: the process environment, as structured content;
- ``pdeathsig()``: this process's parent-death signal (Linux ``PR_GET_PDEATHSIG``);
- ``spawn_grandchild()``: starts a grandchild (``sleep``-like python loop that ignores
  SIGTERM and stdin) in the same process group and returns its pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

TOOLS = [
    "echo",
    "big_result",
    "stdout_flood",
    "stderr_flood",
    "stderr_lines",
    "environment",
    "spawn_grandchild",
    "pdeathsig",
]
CHUNK = 1 << 20
out = sys.stdout.buffer
err = sys.stderr.buffer


def send(message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def text_result(request_id: Any, text: str, structured: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False}
    if structured is not None:
        result["structuredContent"] = structured
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def write_bytes(stream: Any, size: int) -> None:
    block = b"x" * CHUNK
    left = size
    while left > 0:
        stream.write(block[: min(left, CHUNK)])
        left -= CHUNK
    stream.flush()


def call(request_id: Any, name: str, args: dict[str, Any]) -> None:
    size = int(args.get("bytes", 0))
    if name == "echo":
        send(text_result(request_id, str(args.get("text", ""))))
    elif name == "big_result":
        head = json.dumps(text_result(request_id, "@"))
        before, after = head.split("@")
        out.write(before.encode())
        write_bytes(out, size)
        out.write(after.encode() + b"\n")
        out.flush()
    elif name == "stdout_flood":
        write_bytes(out, size)  # and never a newline, never an answer
    elif name == "stderr_flood":
        write_bytes(err, size)
        send(text_result(request_id, "flooded"))
    elif name == "stderr_lines":
        err.write(b"".join(b"line %d\n" % i for i in range(int(args.get("count", 0)))))
        err.flush()
        send(text_result(request_id, "logged"))
    elif name == "environment":
        send(text_result(request_id, "env", dict(os.environ)))
    elif name == "spawn_grandchild":
        code = (
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "while True: time.sleep(1)\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        send(text_result(request_id, str(child.pid), {"pid": child.pid, "me": os.getpid()}))
    elif name == "pdeathsig":
        import ctypes

        signum = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(signum), 0, 0, 0)  # PR_GET_PDEATHSIG
        send(text_result(request_id, str(signum.value), {"signal": signum.value}))
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": name}})


def main() -> None:
    schema = {"type": "object", "additionalProperties": True}
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        message = json.loads(raw)
        method, request_id = message.get("method"), message.get("id")
        if request_id is None:
            continue  # notifications
        if method == "initialize":
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "protocolVersion": message["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "raw", "version": "1"},
                    },
                }
            )
        elif method == "tools/list":
            tools = [{"name": n, "inputSchema": schema} for n in TOOLS]
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools}})
        elif method == "tools/call":
            params = message["params"]
            call(request_id, params["name"], params.get("arguments") or {})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": method}})


if __name__ == "__main__":
    main()
