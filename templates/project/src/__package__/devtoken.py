"""``python -m <package>.devtoken USER``: print a short-lived HS* token for local development.

The server verifies tokens your identity provider issues; until one is wired up, this signs a token
with the same secret the server reads (``Settings.from_env``), so the demo page (``/?token=...``),
the Python client and ``wsforge probe`` can connect at once. It refuses asymmetric algorithms:
a development helper must never need a private key.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import jwt

from .settings import Settings, SettingsError


def make_token(settings: Settings, user: str, *, ttl_s: float, now: float) -> str:
    """A token the server configured by ``settings`` accepts for ``user`` until ``now + ttl_s``."""
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), None)
    if algorithm is None:
        raise SettingsError("devtoken signs HS* tokens only; this server expects " + ", ".join(settings.jwt_algorithms))
    if not settings.jwt_key:
        raise SettingsError("the JWT secret is not set (see .env.example)")
    claims: dict[str, object] = {"sub": user, "iat": int(now), "exp": int(now + ttl_s)}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_key, algorithm=algorithm)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.devtoken", description=__doc__)
    parser.add_argument("user", help="the user id (the token's sub)")
    parser.add_argument("--ttl", type=float, default=3600.0, help="seconds until the token expires (default 3600)")
    args = parser.parse_args(argv)
    try:
        token = make_token(Settings.from_env(os.environ), args.user, ttl_s=args.ttl, now=time.time())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
