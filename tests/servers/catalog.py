"""A FastMCP test backend with a large, realistic catalog: 200 varied tools.

``python tests/servers/catalog.py --transport stdio|http|sse --port N``

190 tools come from 19 service domains (GitHub issues, calendar events, e-mail, Kubernetes
pods, invoices, ...) times 10 actions (list, get, create, update, delete, search, ...), each
with a domain-specific description and parameters; 10 more are one-off utilities with
distinctive vocabulary (currency conversion, IBAN validation, QR codes, cron parsing, ...).
Every tool answers with its own name and the arguments it got, so a test can tell which tool
ran. :data:`DISTINCTIVE` lists the utilities with a query that should find each one.
"""

from __future__ import annotations

import json
from typing import Any

from fastmcp import FastMCP
from fastmcp.tools.base import Tool, ToolResult
from serving import parser, serve

# domain -> (noun, plural, system, {parameter: (json type, description)})
DOMAINS: dict[str, tuple[str, str, str, dict[str, tuple[str, str]]]] = {
    "github": (
        "issue",
        "issues",
        "a GitHub repository",
        {
            "repo": ("string", "owner/name of the repository"),
            "title": ("string", "issue title"),
            "labels": ("array", "label names"),
        },
    ),
    "jira": (
        "ticket",
        "tickets",
        "a Jira project",
        {
            "project_key": ("string", "Jira project key, e.g. OPS"),
            "summary": ("string", "one-line summary"),
            "assignee": ("string", "user to assign"),
        },
    ),
    "calendar": (
        "event",
        "events",
        "the user's calendar",
        {
            "start_time": ("string", "ISO 8601 start"),
            "end_time": ("string", "ISO 8601 end"),
            "attendees": ("array", "e-mail addresses of the attendees"),
        },
    ),
    "email": (
        "message",
        "messages",
        "the mailbox",
        {
            "to": ("array", "recipient addresses"),
            "subject": ("string", "subject line"),
            "body": ("string", "plain-text body"),
        },
    ),
    "slack": (
        "post",
        "posts",
        "a Slack channel",
        {
            "channel": ("string", "channel name or id"),
            "text": ("string", "message text"),
            "thread_ts": ("string", "parent thread timestamp"),
        },
    ),
    "files": (
        "file",
        "files",
        "the shared drive",
        {
            "path": ("string", "file path"),
            "content": ("string", "file content"),
            "recursive": ("boolean", "descend into folders"),
        },
    ),
    "db": (
        "row",
        "rows",
        "a PostgreSQL table",
        {
            "table": ("string", "table name"),
            "where": ("string", "SQL filter expression"),
            "columns": ("array", "columns to return"),
        },
    ),
    "crm": (
        "contact",
        "contacts",
        "the CRM",
        {
            "company": ("string", "company name"),
            "phone": ("string", "phone number"),
            "owner": ("string", "account owner"),
        },
    ),
    "billing": (
        "invoice",
        "invoices",
        "the billing system",
        {
            "customer_id": ("string", "customer identifier"),
            "amount": ("number", "total amount"),
            "due_date": ("string", "payment due date"),
        },
    ),
    "k8s": (
        "pod",
        "pods",
        "a Kubernetes cluster",
        {
            "namespace": ("string", "Kubernetes namespace"),
            "selector": ("string", "label selector"),
            "container": ("string", "container name"),
        },
    ),
    "monitoring": (
        "alert",
        "alerts",
        "the monitoring system",
        {
            "severity": ("string", "critical, warning or info"),
            "service": ("string", "affected service"),
            "runbook_url": ("string", "link to the runbook"),
        },
    ),
    "docs": (
        "document",
        "documents",
        "the knowledge base",
        {
            "space": ("string", "wiki space"),
            "title": ("string", "page title"),
            "markdown": ("string", "page body in Markdown"),
        },
    ),
    "analytics": (
        "report",
        "reports",
        "the analytics warehouse",
        {
            "metric": ("string", "metric name, e.g. daily_active_users"),
            "period": ("string", "time range"),
            "group_by": ("array", "dimensions"),
        },
    ),
    "storage": (
        "object",
        "objects",
        "an S3 bucket",
        {
            "bucket": ("string", "bucket name"),
            "key": ("string", "object key"),
            "content_type": ("string", "MIME type"),
        },
    ),
    "hr": (
        "employee",
        "employees",
        "the HR directory",
        {
            "department": ("string", "department"),
            "manager": ("string", "manager's name"),
            "start_date": ("string", "first working day"),
        },
    ),
    "inventory": (
        "product",
        "products",
        "the warehouse inventory",
        {
            "sku": ("string", "stock keeping unit"),
            "quantity": ("integer", "units in stock"),
            "warehouse": ("string", "warehouse code"),
        },
    ),
    "shipping": (
        "shipment",
        "shipments",
        "the carrier",
        {
            "tracking_number": ("string", "carrier tracking number"),
            "carrier": ("string", "UPS, FedEx or DHL"),
            "destination": ("string", "delivery address"),
        },
    ),
    "support": (
        "case",
        "cases",
        "the customer support desk",
        {
            "customer_email": ("string", "customer's e-mail"),
            "priority": ("string", "low, normal, high or urgent"),
            "channel": ("string", "phone, chat or e-mail"),
        },
    ),
    "ci": (
        "pipeline",
        "pipelines",
        "the CI server",
        {
            "branch": ("string", "git branch"),
            "commit_sha": ("string", "commit to build"),
            "workflow": ("string", "workflow file"),
        },
    ),
}

# action -> (description template, extra parameters)
ACTIONS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "list": ("List {plural} in {system}, newest first.", {"limit": ("integer", "page size")}),
    "get": ("Get one {noun} from {system} by id, with all its fields.", {"id": ("string", "id")}),
    "create": ("Create a new {noun} in {system}.", {}),
    "update": ("Update fields of an existing {noun} in {system}.", {"id": ("string", "id")}),
    "delete": ("Delete a {noun} from {system} permanently.", {"id": ("string", "id")}),
    "search": (
        "Full-text search over {plural} in {system}.",
        {"query": ("string", "search terms")},
    ),
    "archive": ("Archive a {noun} in {system} so it is hidden but kept.", {"id": ("string", "id")}),
    "export": (
        "Export {plural} from {system} as CSV.",
        {"format": ("string", "csv or json")},
    ),
    "count": ("Count the {plural} in {system} matching a filter.", {}),
    "watch": (
        "Subscribe to changes of {plural} in {system} via a webhook.",
        {"webhook_url": ("string", "callback URL")},
    ),
}

# name -> (description, parameters, a query that should find it first)
DISTINCTIVE: dict[str, tuple[str, dict[str, tuple[str, str]], str]] = {
    "convert_currency": (
        "Convert a monetary amount between currencies (EUR, USD, GBP, JPY) at today's "
        "exchange rate.",
        {
            "amount": ("number", "amount"),
            "from_currency": ("string", "ISO 4217 code"),
            "to_currency": ("string", "ISO 4217 code"),
        },
        "convert euros to dollars exchange rate",
    ),
    "validate_iban": (
        "Check that an IBAN bank account number is well formed and its checksum is right.",
        {"iban": ("string", "the IBAN")},
        "is this IBAN valid",
    ),
    "generate_qr_code": (
        "Render text or a URL as a QR code PNG image.",
        {"data": ("string", "text to encode"), "size": ("integer", "pixels")},
        "make a QR code for a link",
    ),
    "parse_cron_expression": (
        "Explain a crontab schedule expression in plain words and list its next run times.",
        {"expression": ("string", "e.g. '*/5 * * * *'")},
        "what does this cron schedule mean",
    ),
    "geocode_address": (
        "Turn a street address into latitude and longitude coordinates.",
        {"address": ("string", "postal address")},
        "latitude longitude of a street address",
    ),
    "transcribe_audio": (
        "Transcribe speech in an audio recording (mp3, wav) to text.",
        {"audio_url": ("string", "URL of the recording"), "language": ("string", "BCP 47")},
        "speech to text from an mp3 recording",
    ),
    "detect_language": (
        "Detect which human language a piece of text is written in.",
        {"text": ("string", "the text")},
        "which language is this text written in",
    ),
    "lookup_dns_record": (
        "Resolve DNS records (A, AAAA, MX, TXT, CNAME) of a domain name.",
        {"domain": ("string", "domain name"), "record_type": ("string", "A, MX, TXT, ...")},
        "MX records of a domain",
    ),
    "compute_sha256": (
        "Compute the SHA-256 hash digest of a string, in hex.",
        {"text": ("string", "input")},
        "sha256 hash of a string",
    ),
    "weather_forecast": (
        "Weather forecast (temperature, rain, wind) for the next days at a place.",
        {"city": ("string", "city name"), "days": ("integer", "1 to 7")},
        "will it rain tomorrow in Paris",
    ),
}


def _schema(params: dict[str, tuple[str, str]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, (kind, description) in params.items():
        prop: dict[str, Any] = {"type": kind, "description": description}
        if kind == "array":
            prop["items"] = {"type": "string"}
        properties[name] = prop
    return {"type": "object", "properties": properties}


class EchoTool(Tool):
    """Answers with its own name and its arguments (JSON)."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=json.dumps({"tool": self.name, "arguments": arguments}))


def catalog() -> list[tuple[str, str, dict[str, Any]]]:
    """Every tool as ``(name, description, input schema)``: 200 of them."""
    tools: list[tuple[str, str, dict[str, Any]]] = []
    for domain, (noun, plural, system, params) in DOMAINS.items():
        for action, (template, extra) in ACTIONS.items():
            target = plural if action in ("list", "search", "export", "count", "watch") else noun
            name = f"{domain}_{action}_{target}"
            description = template.format(noun=noun, plural=plural, system=system)
            tools.append((name, description, _schema({**extra, **params})))
    for name, (description, params, _query) in DISTINCTIVE.items():
        tools.append((name, description, _schema(params)))
    return tools


def create_server() -> FastMCP:
    """The 200-tool server."""
    mcp = FastMCP(name="catalog", version="1.0.0", dereference_schemas=False)
    for name, description, schema in catalog():
        mcp.add_tool(EchoTool(name=name, description=description, parameters=schema))
    return mcp


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__).parse_args(argv)
    serve(create_server(), args)


if __name__ == "__main__":
    main()
