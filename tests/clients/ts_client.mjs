// A TypeScript-SDK MCP client (@modelcontextprotocol/sdk, plain ESM, no build step).
//
// Usage: node ts_client.mjs '<spec JSON>'
//   spec = {"transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "..."}
//        | {"transport": "http", "url": "http://127.0.0.1:PORT/mcp"}
//   plus "calls": [{"name": "tool", "arguments": {...}}, ...]
//
// Connects, lists every tool (following nextCursor), makes each call in order and prints one
// JSON object on stdout: {serverInfo, capabilities, tools, calls}. A call that throws is
// reported as {"error": {"code", "message"}} in its slot instead of ending the run.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const spec = JSON.parse(process.argv[2] ?? "{}");

function transportFor(spec) {
  if (spec.transport === "stdio") {
    return new StdioClientTransport({
      command: spec.command,
      args: spec.args ?? [],
      env: { ...getDefaultEnvironment(), ...(spec.env ?? {}) },
      cwd: spec.cwd,
      stderr: "ignore",
    });
  }
  if (spec.transport === "http") {
    return new StreamableHTTPClientTransport(new URL(spec.url));
  }
  throw new Error(`unknown transport ${spec.transport}`);
}

const client = new Client({ name: "mcp-router-ts-test-client", version: "1.0.0" });
await client.connect(transportFor(spec));
try {
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor);
  const calls = [];
  for (const call of spec.calls ?? []) {
    try {
      calls.push(await client.callTool({ name: call.name, arguments: call.arguments ?? {} }));
    } catch (error) {
      calls.push({ error: { code: error.code ?? null, message: String(error.message ?? error) } });
    }
  }
  process.stdout.write(
    JSON.stringify({
      serverInfo: client.getServerVersion(),
      capabilities: client.getServerCapabilities() ?? null,
      tools,
      calls,
    }),
  );
} finally {
  await client.close();
}
