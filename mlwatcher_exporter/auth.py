"""The bearer token of ``serve``: where it is read from, and how a request is checked.

The token comes from an environment variable or a file, never from the command line
(where ``ps`` shows it) and is never logged; requests are compared with it in constant
time (:func:`hmac.compare_digest`), so the time of a refusal says nothing about how
much of a guess was right.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from typing import Mapping, Optional

__all__ = ["BearerToken", "load_token", "is_loopback", "MIN_TOKEN_LENGTH"]

#: Shortest token accepted: 16 characters (about 96 bits of a random base64 token).
MIN_TOKEN_LENGTH = 16
_MAX_TOKEN_BYTES = 4096


class BearerToken:
    """A secret that ``Authorization: Bearer <token>`` headers must carry.

    Its ``repr`` never shows the secret.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not isinstance(secret, str):
            raise TypeError("token must be a str")
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token has {len(secret)} characters, must have at least "
                             f"{MIN_TOKEN_LENGTH}")
        if any(c.isspace() for c in secret) or not secret.isprintable():
            raise ValueError("token must be printable characters without spaces")
        self._secret = secret.encode("utf-8")

    def check(self, authorization: Optional[str]) -> bool:
        """Whether an ``Authorization`` header value carries the token."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = credentials.strip().encode("utf-8", "replace")
        return hmac.compare_digest(given, self._secret)

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


def load_token(env_var: str, path: Optional[str],
               environ: Mapping[str, str] = os.environ) -> Optional[BearerToken]:
    """The token from the file `path` if given, else from the environment variable
    `env_var`; None when neither is set.

    Raises
    ------
    ValueError
        For an unreadable, empty, too large or too short token (the message never
        contains the token).
    """
    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(_MAX_TOKEN_BYTES + 1)
        except OSError as error:
            raise ValueError(f"token file {path!r}: cannot read it ({error.strerror})") \
                from None
        if len(data) > _MAX_TOKEN_BYTES:
            raise ValueError(f"token file {path!r}: larger than {_MAX_TOKEN_BYTES} bytes")
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"token file {path!r}: not UTF-8 text") from None
        source = f"token file {path!r}"
    else:
        value = environ.get(env_var)
        if value is None:
            return None
        text, source = value.strip(), f"environment variable {env_var}"
    if not text:
        raise ValueError(f"{source} is empty, must hold a token")
    try:
        return BearerToken(text)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def is_loopback(addr: str) -> bool:
    """Whether every address `addr` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(addr or None, 0, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    hosts = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(hosts) and all(ipaddress.ip_address(host).is_loopback for host in hosts)
