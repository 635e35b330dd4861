"""What each backend session declares to its server, and which session serves which client.

A server may shape its catalog by what the client declares (server-everything lists
``trigger-sampling-request`` only to clients that declare sampling) and may use what is
declared (a server asks for roots when roots are declared). So a backend session must declare
no more than the clients it serves can do, and a client must be served the catalog of a
session that declared what that client declared.

The rule:
- ``session_mode: per_client``: the client's own session declares exactly the client's
  sampling, elicitation and roots capabilities (the three the router relays).
- shared sessions (the default): one session per capability *profile* — which of sampling and
  elicitation the client declared — so at most four per backend. The backend's main session
  (discovery, health probes) is the profile that declares nothing; the others are opened
  when the first client of their profile lists or calls, and live as long as the backend.
- shared sessions never declare roots. Roots are data of one client (its workspace); a
  session shared by several clients has no roots of its own, and a server that caches the
  roots of its session (server-everything, server-filesystem) would serve one client's roots
  to the next. Roots reach backends through ``per_client`` sessions.
- clients on the stateless 2026-07-28 era are asked through InputRequiredResult rounds when
  their backend session is a legacy one (gateway/rounds.py). A backend that speaks 2026-07-28
  itself is served to them over its modern channel (`Backend.modern_channel`), which declares
  nothing of its own: every request carries the calling client's capabilities, client info
  and log level in its ``_meta`` envelope (`DeclaringClient`; backends/eras.py).
"""

from __future__ import annotations

import weakref
from dataclasses import KW_ONLY, dataclass
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.session import ClientSession

from mcp_router.call_context import ENVELOPE_KEYS


@dataclass(frozen=True, slots=True)
class Profile:
    """Which relayed server-to-client requests a shared backend session declares."""

    sampling: bool = False
    elicitation: bool = False

    @classmethod
    def of(cls, capabilities: types.ClientCapabilities | None, *, modern: bool) -> Profile:
        """The profile of a client that declared ``capabilities``."""
        # A 2026-07-28 client is asked through InputRequiredResult rounds (gateway/rounds.py),
        # so what it declared counts as for a handshake-era client.
        if capabilities is None:
            return NO_CAPABILITIES
        return cls(
            sampling=capabilities.sampling is not None,
            elicitation=capabilities.elicitation is not None,
        )

    def declared(self) -> types.ClientCapabilities:
        """What a shared session of this profile declares (never roots: see the module doc)."""
        return types.ClientCapabilities(
            sampling=types.SamplingCapability() if self.sampling else None,
            elicitation=types.ElicitationCapability(
                form=types.FormElicitationCapability(), url=types.UrlElicitationCapability()
            )
            if self.elicitation
            else None,
        )

    @property
    def label(self) -> str:
        """``sampling+elicitation``, ``sampling``, ``elicitation`` or ``none``."""
        flags = (("sampling", self.sampling), ("elicitation", self.elicitation))
        return "+".join(name for name, on in flags if on) or "none"


NO_CAPABILITIES = Profile()


def exact(capabilities: types.ClientCapabilities | None) -> types.ClientCapabilities:
    """What a client's own (``per_client``) session declares: the client's sampling,
    elicitation and roots, verbatim. Other fields (experimental, extensions, tasks) stay out:
    the router relays nothing they would enable."""
    if capabilities is None:
        return types.ClientCapabilities()
    return types.ClientCapabilities(
        sampling=capabilities.sampling,
        elicitation=capabilities.elicitation,
        roots=capabilities.roots,
    )


def client_connection(front: Any) -> Any:
    """The long-lived front connection of a captured call or request session (or None)."""
    session = getattr(front, "session", front)
    return getattr(session, "_connection", None)


def declared_by(connection: Any) -> types.ClientCapabilities | None:
    """What the client behind a front connection declared (None if unknown)."""
    return getattr(connection, "client_capabilities", None)


@dataclass
class DeclaringClient(Client):
    """An SDK `Client` that declares exactly ``declared``, whatever callbacks it has.

    The SDK derives the declaration from the callbacks given; the router always installs its
    relay callbacks (to answer, or refuse with a reason) and declares per session instead.

    On a 2026-07-28 connection the declaration is only the default: the SDK stamps client
    info and capabilities on every request (overwriting what the caller put in ``_meta``),
    and here a request that carries its own envelope keys (`ENVELOPE_KEYS`, the calling
    client's) keeps them, so one modern channel serves every client as itself.
    """

    _: KW_ONLY
    declared: types.ClientCapabilities | None = None

    async def _build_session(self, exit_stack: Any) -> ClientSession:
        session = await super()._build_session(exit_stack)
        declared = self.declared
        if declared is not None:
            # The one place the SDK builds the initialize capabilities.
            session._build_capabilities = lambda _version: declared  # type: ignore[method-assign]
        adopt = session.adopt

        def adopt_keeping_envelopes(result: Any) -> None:
            adopt(result)
            # `adopt` installs the stamp every request goes through (the only hook there is).
            stamp = session._stamp

            def keep_callers_envelope(data: dict[str, Any], opts: Any) -> None:
                meta = (data.get("params") or {}).get("_meta") or {}
                own = {key: meta[key] for key in ENVELOPE_KEYS if key in meta}
                stamp(data, opts)
                if own:
                    data["params"]["_meta"].update(own)

            session._stamp = keep_callers_envelope

        session.adopt = adopt_keeping_envelopes  # type: ignore[method-assign]
        return session


class Owner:
    """The client a ``per_client`` session belongs to: where its requests outside a call go."""

    def __init__(self, connection: Any) -> None:
        self._ref = weakref.ref(connection)

    @property
    def connection(self) -> Any:
        """The owner's front connection (None once it is gone)."""
        return self._ref()

    def is_(self, connection: Any) -> bool:
        """Whether ``connection`` is the owner's."""
        return self._ref() is connection

    async def ask(
        self, request: Any, capability: types.ClientCapabilities, what: str, backend: str
    ) -> Any:
        """Send a server-to-client request to the owner outside any call; its answer or an error."""
        connection = self._ref()
        if connection is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message=f"mcp-router cannot relay {what} from backend '{backend}': "
                "its client has disconnected",
            )
        if not connection.check_capability(capability):
            return types.ErrorData(
                code=types.METHOD_NOT_FOUND,
                message=f"{what} is not supported: the client did not declare it",
            )
        return await connection.send_request(request)


def shared_roots_refusal(backend: str) -> types.ErrorData:
    """The answer of a shared session to roots/list outside a call.

    Method not found, as the spec says a client without the roots capability answers: a
    shared session declares no roots (it serves several clients, each with their own).
    """
    return types.ErrorData(
        code=types.METHOD_NOT_FOUND,
        message=f"roots are not available on the shared session of backend '{backend}' "
        "(it serves several clients); set `session_mode: per_client` to give the server "
        "each client's own roots",
    )
