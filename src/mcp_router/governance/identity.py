"""Who is asking: the identity behind the current MCP request.

- a static bearer token (``MCP_AUTH_TOKENS`` / ``MCP_AUTH_TOKEN_FILE``) is named ``alice`` for
  an ``alice=...`` item, ``static-N`` for the N-th bare token;
- a JWT's identity is its ``sub``; its groups come from the claim ``MCP_JWT_GROUPS_CLAIM``
  (default ``groups``: a list of strings, or one string of names separated by spaces/commas);
- no token over HTTP (the front has no authentication): ``anonymous``;
- stdio (no HTTP request at all): ``local``, the user who started the router.

Only names are kept: the token itself never leaves the access token it came in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from fastmcp.server.dependencies import get_access_token, get_context, get_http_request

__all__ = [
    "ANONYMOUS",
    "LOCAL",
    "STATIC_TOKEN_CLAIM",
    "Identity",
    "current_identity",
    "current_session",
]

IdentityKind = Literal["token", "jwt", "anonymous", "local"]
STATIC_TOKEN_CLAIM = "mcp_router_token_name"  # set by gateway.auth.StaticBearerVerifier
_GROUP_SPLIT_RE = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Identity:
    """A client as policies see it: a name and the groups it belongs to."""

    name: str
    groups: frozenset[str] = frozenset()
    kind: IdentityKind = "token"

    def __str__(self) -> str:
        return self.name


ANONYMOUS = Identity("anonymous", kind="anonymous")
"""An HTTP client of a router without authentication."""
LOCAL = Identity("local", kind="local")
"""The stdio client: whoever started the router process."""


def _groups(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(g for g in _GROUP_SPLIT_RE.split(value) if g)
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(g) for g in value if isinstance(g, str | int) and str(g))
    return frozenset()


def current_identity(groups_claim: str = "groups") -> Identity:
    """The identity of the request being served (see the module docstring for the rules)."""
    token = get_access_token()
    if token is None:
        try:
            get_http_request()
        except RuntimeError:
            return LOCAL
        return ANONYMOUS
    claims = token.claims or {}
    static_name = claims.get(STATIC_TOKEN_CLAIM)
    if isinstance(static_name, str):
        return Identity(static_name, kind="token")
    subject = token.subject or claims.get("sub") or token.client_id
    return Identity(str(subject), _groups(claims.get(groups_claim)), kind="jwt")


def current_session() -> str | None:
    """The MCP session of the request being served (None when it has none)."""
    try:
        session = get_http_request().headers.get("mcp-session-id")
    except RuntimeError:
        session = None
    if session:
        return session
    try:
        return get_context().session_id
    except (RuntimeError, AttributeError):
        return None
