"""Who is connecting, and what may they do. No I/O; the clock is an argument.

Three checks, all pure:

* :func:`extract_token` finds the JWT in a handshake (header, subprotocol entry, query, cookie);
* :class:`JwtVerifier` turns it into an :class:`Identity` or raises :class:`AuthError`;
* :func:`check_origin` and :func:`authorize` apply the Origin allowlist and the namespace policy.

``exp``/``nbf`` are checked here against the ``now`` we are given rather than by pyjwt against
the wall clock, so tests can move time and the dispatcher can tell "expired" from "forged".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qs

import jwt

from .channels import ChannelAuth, ChannelName, NamespacePolicy
from .protocol import AUTH_SUBPROTOCOL_PREFIX


class AuthError(Exception):
    """The token is missing, malformed, forged or expired; ``reason`` is safe to show the client."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified caller. ``user`` is the token's ``sub``; ``None`` for anonymous connections."""

    user: str | None
    exp: float | None = None
    """When the token expires (seconds since the epoch); the connection is closed with 4001 then."""
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def authenticated(self) -> bool:
        return self.user is not None


ANONYMOUS = Identity(user=None)


class TokenSource(enum.StrEnum):
    HEADER = "header"
    SUBPROTOCOL = "subprotocol"
    QUERY = "query"
    COOKIE = "cookie"


def extract_token(
    *,
    sources: Sequence[str],
    authorization: str | None = None,
    subprotocols: Sequence[str] = (),
    query: str = "",
    cookie_header: str | None = None,
    cookie_name: str = "wsforge_session",
) -> str | None:
    """The first token found, in contract order (header, subprotocol, query, cookie), among ``sources``."""
    enabled = set(sources)
    if TokenSource.HEADER.value in enabled and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if TokenSource.SUBPROTOCOL.value in enabled:
        for entry in subprotocols:
            if entry.startswith(AUTH_SUBPROTOCOL_PREFIX) and len(entry) > len(AUTH_SUBPROTOCOL_PREFIX):
                return entry[len(AUTH_SUBPROTOCOL_PREFIX) :]
    if TokenSource.QUERY.value in enabled and query:
        values = parse_qs(query).get("access_token")
        if values and values[0]:
            return values[0]
    if TokenSource.COOKIE.value in enabled and cookie_header:
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(cookie_name)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


class JwtVerifier:
    """Verifies JWTs with the algorithms pinned by configuration.

    ``alg: none`` is never accepted, whatever the configuration says, and a key meant for one
    family (HMAC secret, RSA/EC public key) is only ever used with that family, which is what
    defeats the HS/RS confusion attack.
    """

    def __init__(
        self,
        key: str,
        algorithms: Sequence[str],
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 5.0,
    ) -> None:
        algs = [a for a in algorithms if a.lower() != "none"]
        if not algs:
            raise ValueError("at least one JWT algorithm other than 'none' is required")
        families = {a[:2] for a in algs}
        if "HS" in families and len(families) > 1:
            raise ValueError("do not mix HMAC and public-key JWT algorithms with one key")
        if not key:
            raise ValueError("a JWT key is required (set the secret env var)")
        self._key = key
        self._algorithms = algs
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_s

    def verify(self, token: str, now: float) -> Identity:
        """Check signature, algorithm, ``aud``/``iss`` when configured, then ``exp``/``nbf`` at ``now``.

        Raises:
            AuthError: ``expired`` is True when only the expiry failed.
        """
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from exc
        except Exception as exc:  # malformed keys/headers surface as assorted errors in pyjwt
            raise AuthError("invalid token") from exc
        exp = claims.get("exp")
        sub = claims.get("sub")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise AuthError("invalid token: exp must be a number")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a non-empty string")
        nbf = claims.get("nbf")
        if nbf is not None and (not isinstance(nbf, (int, float)) or now + self._leeway < nbf):
            raise AuthError("token not valid yet")
        if now - self._leeway >= exp:
            raise AuthError("token expired", expired=True)
        return Identity(user=sub, exp=float(exp) + self._leeway, claims=claims)


def check_origin(origin: str | None, allowed: Sequence[str], *, allow_missing: bool) -> bool:
    """Exact-match Origin allowlist; ``*`` allows any. Browsers always send Origin, other clients rarely.

    An Origin equal to the request's Host is *not* trusted: a DNS-rebinding page (``evil.example``
    resolving to this server) sends ``Origin: http://evil.example:8765`` with ``Host:
    evil.example:8765``. Pages this server serves itself are allowed by listing their origin (the
    rendered default lists the demo page's ``http://localhost:8765`` and ``http://127.0.0.1:8765``).
    """
    if origin is None:
        return allow_missing
    return "*" in allowed or origin in allowed


class Operation(enum.StrEnum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"


def authorize(
    identity: Identity, channel: ChannelName, policy: NamespacePolicy, operation: Operation
) -> str | None:
    """None when allowed, else the reason (error ``unauthorized`` / ``forbidden`` decided by the caller).

    ``presence`` and ``history`` are reads, authorized like :attr:`Operation.SUBSCRIBE`.
    """
    if operation is _PUBLISH and not policy.client_publish:
        return f"clients may not publish to namespace {policy.name!r}"
    if policy.auth is _PUBLIC:
        return None
    if identity.user is None:
        return "this namespace requires an authenticated connection"
    if policy.auth is _PRIVATE and channel.name != identity.user:
        return "private channel of another user"
    return None


# Module constants for the per-request check above (an enum class attribute read costs ~75 ns).
_PUBLISH: Final = Operation.PUBLISH
_PUBLIC: Final = ChannelAuth.PUBLIC
_PRIVATE: Final = ChannelAuth.PRIVATE
