"""What is secret, and how it is hidden: one rule for everything the router writes.

The secret set (:func:`config_secrets` plus :func:`front_secrets`):

- every value the config loader substituted for a ``${VAR}`` reference, whatever the
  variable's name (``${GH_PAT}``, ``${DATABASE_URL}``); ``:-default`` values are not secret
  (they are written in the file);
- every header value (except a few standard non-credential headers such as ``Accept``), and the
  credential after an auth scheme (``Bearer abc`` also hides ``abc`` on its own);
- backend ``env:`` values whose name looks secret (:func:`secret_name`, the one name predicate,
  also used for query parameters and by ``mcp-router import --env-refs``);
- in every config string that is a URL: its userinfo, its credential-looking query values
  (``?api_key=``, ``&sig=``, ...), and for a backend's ``url`` the path segments listed in its
  ``secret_path_segments``;
- the front's bearer tokens (``MCP_AUTH_TOKENS``, ``MCP_AUTH_TOKEN_FILE``) and an HS* JWT
  shared secret (``MCP_JWT_PUBLIC_KEY``, or the file it names).

How they are hidden (:func:`redact`): known values (at least :data:`MIN_SECRET_LENGTH` long) are
replaced by ``***`` in one precompiled alternation, longest first so no partial leftover remains,
and a configured URL by its redacted form; then, structurally and whatever their length, the
userinfo of any URL, credential-looking query values and ``Bearer``/``Basic`` credentials.
The log formatter, the management tools, ``/status``, error texts sent to clients and metric
labels all go through :func:`redact` / :func:`redact_data`, so a value is hidden everywhere or
nowhere. The set is installed per router (:func:`install`) at start-up and on every reload.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

if TYPE_CHECKING:
    from mcp_router.config.models import BackendConfig, RouterConfig
    from mcp_router.settings import RouterSettings

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SecretSet",
    "config_secrets",
    "front_secrets",
    "install",
    "redact",
    "redact_data",
    "redact_url",
    "secret_header",
    "secret_name",
    "uninstall",
]

logger = logging.getLogger("mcp_router.secrets")

MASK = "***"

MIN_SECRET_LENGTH = 6
"""Known values shorter than this are not replaced in free text.

Replacing a very short value everywhere both corrupts ordinary text ("2026" in every timestamp,
"abc" inside words) and gives the value away: the masked spots in ``f***ricate`` spell it. Six
characters is the shortest password people really configure, and a random 6-character value is
unlikely to occur by chance in a log line. In URLs (userinfo, credential query values, secret
path segments) values are found by position, not by text, and are hidden whatever their length;
a shorter header/env/token secret is reported by a warning at start-up and reload.
"""

# Name predicate. Fragments that mark a secret anywhere in a name ("DB_PASSWORD", "apiKey",
# "X-Amz-Security-Token") ...
_SECRET_FRAGMENTS = (
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "credential",
    "cookie",
    "session",
    "bearer",
    "apikey",
    "signature",
    "private",
    "jwt",
)
# ... and short words that mark one only as a whole word ("GH_PAT", "sig", "API_KEY", but not
# "PATH", "KEYBOARD_LAYOUT" or "signal").
_SECRET_WORDS = frozenset({"key", "sig", "pat", "pass", "pw"})
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")

# Headers whose values are never credentials (and too common to scrub from every line); any
# other configured header value is a secret, whatever its name.
_PLAIN_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-type",
        "user-agent",
    }
)
_AUTH_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)\s+(\S.*)$", re.DOTALL)

# Structural patterns for free text (credentials no config lists: a client's JWT, a URL an
# exception message quotes).
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>\\]+@")
# A value ends where free text usually resumes after a URL (";", ",", ")" ...), not only at "&".
_PARAM_RE = re.compile(r"([?&#])([A-Za-z0-9_.~%\[\]-]+)=([^&#\s\"'<>;,()\[\]{}\\]+)")
_SCHEME_CREDENTIAL_RE = re.compile(
    r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})|\b(basic\s+)([A-Za-z0-9+/]{8,}={0,2})"
)

# A scheme is followed by a space; "basic_lookup" or "bearer_tokens" need no scan.
_SCHEME_HINTS = ("earer ", "EARER ", "asic ", "ASIC ")


@functools.lru_cache(maxsize=4096)
def secret_name(name: str) -> bool:
    """Whether an env variable or query parameter name says its value is a credential.

    The one predicate for names: backend ``env:`` keys, URL query parameters
    (``token``, ``api_key``, ``apikey``, ``api-key``, ``client_secret``, ``access-token``,
    ``sig``, ``signature``, ``session``, ``password``, ``pwd``, ...), and what
    ``mcp-router import`` reports or turns into ``${VAR}`` references. Case-insensitive.
    """
    lowered = _CAMEL_BOUNDARY.sub("_", name).lower()
    if any(fragment in lowered for fragment in _SECRET_FRAGMENTS):
        return True
    return any(word in _SECRET_WORDS for word in _WORD_SPLIT.split(lowered))


def secret_header(name: str) -> bool:
    """Whether a configured header's value is secret: all are, but a few standard ones."""
    return name.strip().lower() not in _PLAIN_HEADERS


def _header_credentials(value: str) -> list[str]:
    """``Bearer abc`` -> ``Bearer abc`` and ``abc`` (so the credential alone is caught too)."""
    found = [value]
    match = _AUTH_SCHEME.match(value.strip())
    if match:
        found.append(match.group(2).strip())
    return found


def _split_url(url: str) -> Any:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts


def _path_segments(path: str) -> list[str]:
    """The segments ``secret_path_segments`` counts: leading/trailing slashes do not count."""
    core = path.strip("/")
    return core.split("/") if core else []


def _segment_index(position: int, count: int) -> int | None:
    """1-based position (negative: from the end) -> list index, None when out of range."""
    index = position - 1 if position > 0 else count + position
    return index if 0 <= index < count else None


def url_secrets(url: str, secret_segments: Sequence[int] = ()) -> list[str]:
    """The secret parts of ``url``: userinfo, credential query values, listed path segments.

    Both the raw (percent-encoded) and the decoded form of each part are returned.
    """
    parts = _split_url(url)
    if parts is None:
        return []
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        for piece in userinfo.split(":", 1):
            found += [piece, unquote(piece)]
        # HTTP clients send userinfo as "Authorization: Basic base64(user:password)".
        user, _, password = userinfo.partition(":")
        basic = f"{unquote(user)}:{unquote(password)}".encode()
        found.append(base64.b64encode(basic).decode("ascii"))
    for query in (parts.query, parts.fragment):
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            if eq and value and secret_name(unquote_plus(name)):
                found += [value, unquote_plus(value)]
    segments = _path_segments(parts.path)
    for position in secret_segments:
        index = _segment_index(position, len(segments))
        if index is not None and segments[index]:
            found += [segments[index], unquote(segments[index])]
    return [v for v in dict.fromkeys(found) if v]


def _redact_params(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and secret_name(unquote_plus(name)):
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "&".join(pairs)


def redact_url(url: str | None, secret_segments: Sequence[int] = ()) -> str | None:
    """``url`` safe to show: no userinfo, no credential query values, no listed path segments.

    Structural: a part is hidden by where it is, whatever its length. ``secret_segments`` are
    1-based positions of path segments (negative ones count from the end), as a backend's
    ``secret_path_segments`` lists them. Text that is not an absolute URL gets :func:`redact`.
    """
    if url is None:
        return None
    parts = _split_url(url)
    if parts is None:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    path = parts.path
    if secret_segments:
        segments = _path_segments(path)
        for position in secret_segments:
            index = _segment_index(position, len(segments))
            if index is not None and segments[index]:
                segments[index] = MASK
        lead = "/" if path.startswith("/") else ""
        trail = "/" if path.endswith("/") and segments else ""
        path = lead + "/".join(segments) + trail
    shown = urlunsplit(
        (parts.scheme, netloc, path, _redact_params(parts.query), _redact_params(parts.fragment))
    )
    return redact(shown)


@dataclass(frozen=True)
class SecretSet:
    """The secrets of one router: values to hide, configured URLs and their shown form."""

    values: frozenset[str] = frozenset()
    """Hidden wherever they occur (each at least :data:`MIN_SECRET_LENGTH` long)."""
    urls: Mapping[str, str] = field(default_factory=dict)
    """A configured URL -> its redacted form (covers parts too short to be values)."""
    too_short: tuple[str, ...] = ()
    """Where a secret too short to be hidden in free text is configured (for a warning)."""


class _Collector:
    def __init__(self) -> None:
        self.values: set[str] = set()
        self.urls: dict[str, str] = {}
        self.too_short: list[str] = []

    def add(self, where: str, value: str, *, warn: bool = True) -> None:
        value = value.strip()
        if not value:
            return
        if len(value) >= MIN_SECRET_LENGTH:
            self.values.add(value)
        elif warn and where not in self.too_short:
            self.too_short.append(where)
        # A secret that is itself a URL (a DATABASE_URL) hides its password on its own too.
        self.add_url(value)

    def add_url(self, url: str | None, segments: Sequence[int] = ()) -> None:
        # No "too short" warning here: URL parts are hidden by position, whatever their length.
        if not url or "://" not in url:
            return
        for part in url_secrets(url, segments):
            if len(part) >= MIN_SECRET_LENGTH:
                self.values.add(part)
        shown = redact_url(url, segments)
        if shown is not None and shown != url:
            self.urls[url] = shown


def _backend_secrets(backend: BackendConfig, out: _Collector) -> None:
    where = f"backends.{backend.name}"
    for name, value in backend.headers.items():
        if secret_header(name):
            for credential in _header_credentials(value):
                out.add(f"{where}.headers.{name}", credential)
        else:
            out.add_url(value)
    for name, value in backend.env.items():
        if secret_name(name):
            out.add(f"{where}.env.{name}", value)
        else:
            out.add_url(value)
    out.add_url(backend.url, backend.secret_path_segments)
    out.add_url(backend.health_check.endpoint)
    for arg in backend.args:
        out.add_url(arg)


def config_secrets(config: RouterConfig, extra: Iterable[tuple[str, str]] = ()) -> SecretSet:
    """The secrets of ``config`` (see the module docstring), plus ``extra`` (where, value)."""
    out = _Collector()
    for name, value in config.expanded_env.items():
        # ${PORT} = "8080" is hidden when long enough, but too short is only worth a warning
        # when the name says it is a credential.
        out.add(f"${{{name}}}", value, warn=secret_name(name))
    for backend in config.backends:
        _backend_secrets(backend, out)
    for where, value in extra:
        out.add(where, value)
    return SecretSet(frozenset(out.values), dict(out.urls), tuple(out.too_short))


def front_secrets(settings: RouterSettings) -> list[tuple[str, str]]:
    """The front's credentials as (where, value): bearer tokens and an HS* JWT secret."""
    found: list[tuple[str, str]] = []
    try:
        tokens = settings.auth_token_list
    except OSError:  # an unreadable token file is reported by the auth set-up itself
        tokens = []
    found += [("MCP_AUTH_TOKENS / MCP_AUTH_TOKEN_FILE", t) for t in tokens]
    if settings.state_key:
        found.append(("MCP_STATE_KEY", settings.state_key))
    if settings.state_url:
        found += [("MCP_STATE_URL", s) for s in url_secrets(settings.state_url)]
    key = settings.jwt_public_key
    if key and settings.jwt_algorithm.upper().startswith("HS"):
        found.append(("MCP_JWT_PUBLIC_KEY", key))
        try:
            path = Path(key).expanduser()
            if "\n" not in key and path.is_file():
                found.append(("MCP_JWT_PUBLIC_KEY file", path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
    return found


@dataclass(frozen=True)
class _Compiled:
    pattern: re.Pattern[str] | None = None
    replace: Any = MASK  # MASK, or a function when configured URLs map to their shown form


def _variants(value: str) -> set[str]:
    """The forms a value takes in text: raw, JSON-escaped, percent-encoded."""
    return {value, json.dumps(value)[1:-1], quote(value, safe="")}


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex matching any of ``words``, longest first, as a trie (``ab(?:c|d(?:ef)?)``).

    A flat ``a|b|c`` alternation makes the engine try every value at every position of every
    log line; the trie tries one character per branch, so a line costs about the same whatever
    the number of secrets. At a word's end the longer continuations are tried first, so a value
    containing another one is replaced whole.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def build(node: dict[str, Any]) -> str:
        out: list[str] = []
        while True:  # single-child chains without a word end: plain literals, no recursion
            keys = [k for k in node if k]
            ends = "" in node
            if len(keys) != 1 or ends:
                break
            out.append(re.escape(keys[0]))
            node = node[keys[0]]
        if keys:
            group = "(?:" + "|".join(re.escape(k) + build(node[k]) for k in sorted(keys)) + ")"
            out.append(group + "?" if ends else group)
        return "".join(out)

    return build(trie)


class Redactor:
    """The process-wide secret set: the union of every installed router's :class:`SecretSet`.

    A router installs its set at start-up and on reload (:meth:`install`); the set leaves the
    union when the router is garbage-collected. Several routers in one process (tests, embedding)
    therefore never un-hide each other's secrets.
    """

    def __init__(self) -> None:
        self._sets: dict[int, SecretSet] = {}
        self._compiled = _Compiled()

    def install(self, owner: object, secrets: SecretSet) -> None:
        """Set ``owner``'s secrets (replacing what it installed before) and recompile."""
        key = id(owner)
        if key not in self._sets:
            with contextlib.suppress(TypeError):  # not weak-referenceable: stays installed
                weakref.finalize(owner, self.discard, key)
        self._sets[key] = secrets
        self._rebuild()

    def discard(self, key: int) -> None:
        """Drop the set installed under ``key`` (``id(owner)``)."""
        if self._sets.pop(key, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        mapping: dict[str, str] = {}
        for secrets in self._sets.values():
            mapping.update(secrets.urls)
        for secrets in self._sets.values():  # a value that is secret whole wins over its URL form
            for value in secrets.values:
                for variant in _variants(value):
                    mapping[variant] = MASK
        if not mapping:
            self._compiled = _Compiled()
            return
        pattern = re.compile(_trie_pattern(mapping))
        if all(shown == MASK for shown in mapping.values()):
            self._compiled = _Compiled(pattern, MASK)
        else:
            self._compiled = _Compiled(pattern, lambda m: mapping.get(m.group(0), MASK))

    def redact(self, text: str) -> str:
        """``text`` with every known secret and every structurally found credential hidden."""
        compiled = self._compiled  # one read: a reload swaps it whole
        if compiled.pattern is not None:
            text = compiled.pattern.sub(compiled.replace, text)
        if "://" in text:
            text = _USERINFO_RE.sub(rf"\1{MASK}@", text)
        if "=" in text:
            text = _PARAM_RE.sub(_param_replace, text)
        # Substring tests first: far cheaper than a case-insensitive scan of every line.
        if any(hint in text for hint in _SCHEME_HINTS):
            text = _SCHEME_CREDENTIAL_RE.sub(_scheme_replace, text)
        return text


def _param_replace(match: re.Match[str]) -> str:
    if secret_name(unquote_plus(match.group(2))):
        return f"{match.group(1)}{match.group(2)}={MASK}"
    return match.group(0)


def _scheme_replace(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + MASK
    # "Basic" is also an English word: only what decodes to "user:password" is a credential.
    try:
        decoded = base64.b64decode(match.group(4), validate=True)
    except ValueError:
        return match.group(0)
    return match.group(3) + MASK if b":" in decoded else match.group(0)


_REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with every secret hidden (see the module docstring). Fast: for the log path."""
    return _REDACTOR.redact(text)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with every string value passed through :func:`redact`.

    Mapping keys are kept as they are (they are field names, not values).
    """
    if isinstance(data, str):
        return _REDACTOR.redact(data)
    if isinstance(data, Mapping):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(item) for item in data]
    return data


def uninstall(owner: object) -> None:
    """Forget what ``owner`` installed (it also goes when ``owner`` is garbage-collected)."""
    _REDACTOR.discard(id(owner))


def install(
    owner: object, config: RouterConfig, settings: RouterSettings | None = None
) -> SecretSet:
    """Compute and install ``owner``'s secrets from ``config`` and the front ``settings``.

    Called when a router is built and whenever its config or token file is reloaded.
    """
    secrets = config_secrets(config, front_secrets(settings) if settings is not None else ())
    _REDACTOR.install(owner, secrets)
    for where in secrets.too_short:
        logger.warning(
            "secret at %s is shorter than %d characters: it is hidden in URLs, but cannot be "
            "hidden in log lines and error texts (use a longer one)",
            where,
            MIN_SECRET_LENGTH,
        )
    return secrets
