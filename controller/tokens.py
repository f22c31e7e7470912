"""Host-scoped API tokens: ``host.<HOST>.<MAC>``, where MAC is the hex HMAC-SHA256 of
``"plexus-host-token:" + HOST`` keyed with the controller's admin token.

Nothing is stored: a token is checked by computing it again. A host token therefore
lives as long as the admin token that signed it; **rotating the admin token (replacing
the token file and restarting the controller) revokes every host token at once**, and
there is no way to revoke one host's token alone but to rotate them all.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "host."
#: what is signed is the host's name under this label, never a bare name
LABEL = "plexus-host-token:"


def host_token(key: str, host: str) -> str:
    """The token of ``host`` under ``key`` (the admin token)."""
    mac = hmac.new(key.encode(), (LABEL + host).encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}{host}.{mac}"


def token_host(key: str, token: str) -> str | None:
    """The host ``token`` was issued for, or None when it is not a host token signed
    with ``key``. The MAC is compared in constant time (the host's name is not secret)."""
    if not token.startswith(PREFIX):
        return None
    host, sep, _ = token[len(PREFIX) :].rpartition(".")  # a host id may hold dots, a MAC not
    if not sep or not host:
        return None
    if hmac.compare_digest(token.encode(), host_token(key, host).encode()):
        return host
    return None
