"""Front-door security: bearer-token authentication and per-client rate limiting.

Authentication uses FastMCP's own providers, so ``/mcp`` and ``/sse`` answer a missing or bad
token with 401 and a ``WWW-Authenticate: Bearer`` challenge before any MCP message is parsed:

- static bearer tokens from ``MCP_AUTH_TOKENS`` (comma-separated) and/or ``MCP_AUTH_TOKEN_FILE``
  (one per line), never from the YAML config;
- JWTs verified by FastMCP's ``JWTVerifier`` (JWKS URI or public key, issuer, audience, scopes).

With both configured, a token is accepted when either accepts it (FastMCP's ``MultiAuth``).

Rate limiting is a FastMCP middleware with one token bucket per client, where a client is its
token's identity, else its MCP session, else its IP address. The buckets are FastMCP's
``TokenBucketRateLimiter`` in the process, or, with ``MCP_STATE_URL``, shared by every replica in
Redis (:class:`mcp_router.state.rate_limit.SharedTokenBucket`, which fails open when Redis is
unreachable).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastmcp.server.auth import AuthProvider, MultiAuth
from fastmcp.server.auth.auth import AccessToken
from fastmcp.server.auth.providers.jwt import JWTVerifier, StaticTokenVerifier
from fastmcp.server.dependencies import get_access_token, get_http_request
from fastmcp.server.middleware import Middleware, MiddlewareContext
from fastmcp.server.middleware.rate_limiting import RateLimitError, TokenBucketRateLimiter

from mcp_router.config.models import RouterConfig
from mcp_router.governance.identity import STATIC_TOKEN_CLAIM
from mcp_router.settings import RouterSettings
from mcp_router.state.rate_limit import SharedTokenBucket

logger = logging.getLogger("mcp_router.auth")

_PEM_MARKER = "-----BEGIN "
# Past this many distinct clients the least recently seen bucket is dropped (memory bound).
_MAX_BUCKETS = 10_000


# RFC 7235: the scheme (case-insensitive), then one or more spaces or tabs, then the token.
_BEARER = re.compile(r"bearer[ \t]+([^ \t].*?)[ \t]*", re.IGNORECASE | re.DOTALL)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    if not authorization:
        return None
    match = _BEARER.fullmatch(authorization)
    return match.group(1) if match else None


def client_identity(scope: dict[str, Any]) -> str:
    """Who opens a session, for per-client limits: JWT subject, token identity, or address.

    Read from the ASGI scope after authentication: static tokens are known by their digest's
    client id (never the token itself), JWTs by their ``sub``; unauthenticated clients by IP.
    """
    user = scope.get("user")
    token = getattr(user, "access_token", None)
    if token is not None:
        subject = (token.claims or {}).get("sub")
        if subject:
            return f"sub:{subject}"
        return f"token:{token.client_id}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StaticBearerVerifier(StaticTokenVerifier):
    """FastMCP's static-token verifier, keyed by token digest.

    The table holds SHA-256 digests only, so the plain tokens are not kept in memory, and a
    lookup's timing depends on the digest of what the client sent, not on the tokens. Each
    token carries an identity name (``alice`` for ``alice=...``; ``static-N`` for the N-th
    bare token): the access token's ``client_id`` and ``sub`` claim, shown in logs and audit
    lines instead of the token.
    """

    def __init__(self, tokens: Sequence[str | tuple[str, str]]) -> None:
        super().__init__(tokens={})
        self.set_tokens(tokens)

    def set_tokens(self, tokens: Sequence[str | tuple[str, str]]) -> None:
        """Replace the accepted tokens (token-file rotation): bare tokens or (name, token)."""
        table: dict[str, dict[str, Any]] = {}
        for position, item in enumerate(tokens, start=1):
            name, token = item if isinstance(item, tuple) else (f"static-{position}", item)
            table[_digest(token)] = {"client_id": name, "scopes": []}
        self.tokens = table

    async def verify_token(self, token: str) -> AccessToken | None:
        """Accept ``token`` when its digest is one of the configured tokens' digests."""
        data = self.tokens.get(_digest(token))
        if data is None:
            return None
        name = data["client_id"]
        return AccessToken(
            token=token,
            client_id=name,
            scopes=[],
            subject=name,
            claims={"sub": name, STATIC_TOKEN_CLAIM: name},
        )


class FrontAuth:
    """The configured authentication: the FastMCP provider plus what may be reloaded."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.static: StaticBearerVerifier | None = None
        self.jwt: JWTVerifier | None = None
        tokens = settings.auth_token_items
        if tokens:
            self.static = StaticBearerVerifier(tokens)
        if settings.jwt_enabled:
            self.jwt = _jwt_verifier(settings)
        self.provider: AuthProvider | None
        if self.static is not None and self.jwt is not None:
            self.provider = MultiAuth(verifiers={"static": self.static, "jwt": self.jwt})
        else:
            self.provider = self.static or self.jwt
        self._token_file_stamp = _stamp(settings.auth_token_file)

    def describe(self) -> str:
        """What is accepted, for the start-up log line (no secrets)."""
        parts: list[str] = []
        if self.static is not None:
            parts.append(f"{len(self.static.tokens)} static bearer token(s)")
        if self.jwt is not None:
            source = self.settings.jwt_jwks_uri or "a configured key"
            parts.append(f"JWTs ({self.settings.jwt_algorithm}, keys from {source})")
        return " or ".join(parts) if parts else "no authentication"

    def reload_token_file(self) -> bool:
        """Re-read ``MCP_AUTH_TOKEN_FILE`` if it changed; True when the tokens were replaced.

        A file that became unreadable or empty keeps the previous tokens (and says so), so a
        half-written file never locks every client out.
        """
        path = self.settings.auth_token_file
        if path is None or self.static is None:
            return False
        stamp = _stamp(path)
        if stamp == self._token_file_stamp:
            return False
        self._token_file_stamp = stamp
        try:
            tokens = self.settings.auth_token_items
        except (OSError, ValueError) as exc:
            logger.error("token file %s unreadable (%s): keeping the previous tokens", path, exc)
            return False
        if not tokens:
            logger.error("token file %s holds no token: keeping the previous tokens", path)
            return False
        self.static.set_tokens(tokens)
        logger.info("token file %s reloaded: %d bearer token(s) accepted", path, len(tokens))
        return True

    async def verify_header(self, authorization: str | None) -> AccessToken | None:
        """Check an ``Authorization`` header value; the token's identity, or None."""
        if self.provider is None:
            return None
        token = bearer_token(authorization)
        if token is None:
            return None
        try:
            return await self.provider.verify_token(token)
        except Exception as exc:  # e.g. the JWKS endpoint is down: deny, and say why
            logger.warning("bearer token could not be verified: %s", exc)
            return None


def _stamp(path: str | None) -> tuple[float, int] | None:
    if path is None:
        return None
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def _jwt_verifier(settings: RouterSettings) -> JWTVerifier:
    key: str | None = None
    raw = settings.jwt_public_key
    if raw is not None:
        if _PEM_MARKER in raw:
            key = raw
        else:
            path = Path(raw).expanduser()
            # HS* algorithms take a shared secret: the value itself when it names no file.
            key = path.read_text(encoding="utf-8").strip() if path.is_file() else raw
    issuers = settings.jwt_issuer_list
    audiences = settings.jwt_audience_list
    return JWTVerifier(
        public_key=key,
        jwks_uri=settings.jwt_jwks_uri,
        issuer=(issuers[0] if len(issuers) == 1 else issuers) or None,
        audience=(audiences[0] if len(audiences) == 1 else audiences) or None,
        algorithm=settings.jwt_algorithm,
        required_scopes=settings.jwt_scope_list or None,
    )


# ------------------------------------------------------------------------------ rate limiting


def client_key(context: MiddlewareContext[Any]) -> str:
    """Who is asking: token identity, else MCP session id (HTTP), else IP address, else stdio.

    Without authentication a client can open new sessions to get fresh buckets; with it, the
    token's identity is the key and that does not help.
    """
    token = get_access_token()
    if token is not None:
        return f"token:{token.client_id}"
    try:
        request = get_http_request()
    except RuntimeError:
        return "stdio"  # one client per process
    session = request.headers.get("mcp-session-id")
    if session:
        return f"session:{session}"
    client = request.client
    return f"ip:{client.host}" if client is not None else "ip:unknown"


class ClientRateLimiter(Middleware):
    """Per-client token bucket on every MCP request; off while no rate is set.

    Over the limit, the request fails at once with a JSON-RPC error (-32000) that names the
    limit. Limits can change at run time (config reload) through :meth:`configure`. With
    ``shared`` the buckets live in Redis, one per client for the whole replica set; without,
    in this process.
    """

    def __init__(
        self,
        on_reject: Callable[[], None] | None = None,
        shared: SharedTokenBucket | None = None,
    ) -> None:
        self.rate: float | None = None
        self.burst = 1
        self.rejected = 0
        self.shared = shared
        self._on_reject = on_reject
        self._buckets: OrderedDict[str, TokenBucketRateLimiter] = OrderedDict()
        self._last_warning = 0.0

    def configure(self, rate: float | None, burst: int | None) -> None:
        """Set the sustained rate (requests/s; None = off) and burst (default: 2x rate, >= 1)."""
        changed = (rate, burst or max(1, int((rate or 0) * 2))) != (self.rate, self.burst)
        self.rate = rate
        self.burst = burst or max(1, int((rate or 0) * 2))
        if changed:
            self._buckets.clear()
            if rate is None:
                logger.info("per-client rate limit: off")
            else:
                where = "in this process" if self.shared is None else self.shared.where
                logger.info(
                    "per-client rate limit: %g requests/s, burst %d (buckets: %s)",
                    rate,
                    self.burst,
                    where,
                )

    def configure_from(self, settings: RouterSettings, config: RouterConfig) -> None:
        """Apply ``MCP_RATE_LIMIT_*`` if set, else the config's ``routing.rate_limit``."""
        limit = config.routing.rate_limit
        rate = settings.rate_limit_per_second or limit.requests_per_second
        burst = settings.rate_limit_burst or limit.burst
        self.configure(rate, burst)

    def _bucket(self, key: str) -> TokenBucketRateLimiter:
        bucket = self._buckets.get(key)
        if bucket is None:
            assert self.rate is not None
            bucket = TokenBucketRateLimiter(self.burst, self.rate)
            self._buckets[key] = bucket
            if len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    async def on_request(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        """Admit the request if the client's bucket has a token, else fail it."""
        if self.rate is None:
            return await call_next(context)
        key = client_key(context)
        if self.shared is not None:
            admitted = await self.shared.consume(key, self.rate, self.burst)
        else:
            admitted = await self._bucket(key).consume()
        if not admitted:
            self.rejected += 1
            if self._on_reject is not None:
                self._on_reject()
            now = time.monotonic()
            if now - self._last_warning > 10:  # one line per 10 s, not one per request
                self._last_warning = now
                logger.warning("rate limit hit by %s (%s)", key, context.method)
            raise RateLimitError(
                f"mcp-router: rate limit exceeded ({self.rate:g} requests/s per client, "
                f"burst {self.burst}); retry later"
            )
        return await call_next(context)

    async def aclose(self) -> None:
        """Release the shared buckets' Redis connections (the router is stopping)."""
        if self.shared is not None:
            await self.shared.aclose()
