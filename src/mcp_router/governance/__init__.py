"""Governance: who may use which name, an audit trail, and pinned tool definitions.

- :mod:`.identity` — the identity behind a request (token name, JWT subject and groups);
- :mod:`.policy` — ``policies:`` rules compiled into per-(identity, name) decisions;
- :mod:`.audit` — ``MCP_AUDIT_LOG``: one JSON line per routed request;
- :mod:`.pins` — canonical definition hashes and the pin store (a file; see ``PinStore``);
- :mod:`.core` — :class:`Governance`, the small API the gateway calls;
- :mod:`.middleware` — per-identity lists and policies on the ``router_*`` tools.

Layering: above ``config``/``settings``/``backends`` (it reads catalogs), below ``routing``
and ``gateway``, which call it through plain callables.
"""

from mcp_router.governance.core import Governance, PolicyDenied
from mcp_router.governance.identity import ANONYMOUS, LOCAL, Identity, current_identity
from mcp_router.governance.middleware import GovernanceMiddleware
from mcp_router.governance.pins import FilePinStore, PinState, PinStore
from mcp_router.governance.policy import Decision, Policy

__all__ = [
    "ANONYMOUS",
    "LOCAL",
    "Decision",
    "FilePinStore",
    "Governance",
    "GovernanceMiddleware",
    "Identity",
    "PinState",
    "PinStore",
    "Policy",
    "PolicyDenied",
    "current_identity",
]
